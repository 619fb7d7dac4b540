"""Pi-side end of the bridge: a serial link that queues, retransmits and reconnects.

See ``PROTOCOL.md`` for the rules implemented here (sequence numbers,
acknowledgements, bounded retransmit queue, overflow policy, heartbeats).
"""

from __future__ import annotations

import logging
import random
import select
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from .codec import (
    EVENT_KINDS,
    MAX_LABEL_BYTES,
    MAX_PAYLOAD,
    Ack,
    Config,
    Decoder,
    Event,
    MAX_FRAME,
    Heartbeat,
    Hello,
    LabelTable,
    Ping,
    Pong,
    confidence_to_q16,
    encode,
    next_seq,
)

log = logging.getLogger(__name__)

__all__ = ["BridgeLink", "CRITICAL_KINDS", "split_label_table", "truncate_label"]

#: Kinds whose events are kept over others when the queue overflows.
CRITICAL_KINDS = frozenset({"wake", "command"})
#: Retransmit interval doubles per unanswered attempt up to this factor, so a
#: silent MCU costs a bounded share of the line instead of a retransmit storm.
RETRANSMIT_BACKOFF_MAX = 8
#: Bytes we hold for a port that is not draining; beyond this, frames wait in
#: the retransmit queue instead (they are resent from there anyway).
OUT_BUFFER_LIMIT_BYTES = 4096
#: Sequence numbers of MCU frames remembered to drop duplicates.
SEEN_WINDOW = 64
#: firmware_version field of the Pi's HELLO.
PI_SOFTWARE_VERSION = 1


def truncate_label(name: str) -> str:
    """Cut ``name`` to at most ``MAX_LABEL_BYTES`` UTF-8 bytes without splitting a character."""
    raw = name.encode("utf-8")[:MAX_LABEL_BYTES]
    return raw.decode("utf-8", errors="ignore") or "?"


def split_label_table(kind: str, names: list, start_id: int = 0, total: int | None = None) -> list:
    """Split one kind's names into ``(start_id, names)`` slices that each fit a frame."""
    total = len(names) if total is None else total
    slices = []
    current: list = []
    size = 6  # kind u8, total u16, start u16, count u8
    first = start_id
    for offset, name in enumerate(names):
        entry = 1 + len(name.encode("utf-8"))
        if current and (size + entry > MAX_PAYLOAD or len(current) == 255):
            slices.append((first, tuple(current)))
            current, size, first = [], 6, start_id + offset
        current.append(name)
        size += entry
    if current or not slices:
        slices.append((first, tuple(current)))
    return slices


@dataclass
class _Pending:
    msg: object
    frame: bytes
    is_event: bool
    critical: bool
    attempts: int = 0  # transmissions so far
    last_sent_s: float | None = None  # poll clock of the last transmission
    stamped: bool = False  # written by send_event, waits for poll to stamp the time


class BridgeLink:
    """Reliable event channel from the Pi to a microcontroller over a serial port.

    Events are numbered, kept in a bounded queue until the MCU acknowledges
    them, and retransmitted (with backoff) until it does.  The port may vanish
    at any time (USB unplugged, pty closed): every call keeps working, events
    keep queueing, and :meth:`poll` reopens the port every ``reconnect_s``.
    After each (re)connect the label table is sent again and every
    unacknowledged event is retransmitted, so nothing that needs acknowledged
    delivery is lost across a disconnect (unless the queue overflowed, which is
    counted).

    Call :meth:`send_event` from the audio pipeline (it never blocks and never
    raises for I/O), and either call :meth:`poll` regularly from your own loop
    or :meth:`start` a background thread that does.  All methods are
    thread-safe.  The constructor tries once to open the port (a missing port
    is not an error; :meth:`poll` keeps trying).

    Parameters
    ----------
    port : str
        Serial device or pyserial URL (``/dev/ttyACM0``, ``/dev/pts/3``, a socat link).
    baudrate : int
        Line speed; 115200 carries about 600 event frames per second.
    labels : dict of str to list of str, optional
        Label names per kind (``{"wake": ["hey_hop"], "command": [...]}``); the
        MCU learns them once per connection instead of receiving names in every
        event.  Labels first seen in :meth:`send_event` are appended and sent.
    queue_size : int
        Most unacknowledged events kept.  Larger rides out longer outages but
        delivers staler events afterwards; on overflow the oldest non-critical
        (scene/beat/sound) event is dropped first, then the oldest critical one.
    retransmit_ms : int
        Wait before the first retransmission of an unacknowledged frame; it
        doubles per attempt up to 8x.  Lower recovers losses faster but wastes
        line time when the MCU is merely slow.
    heartbeat_s : float
        Period of heartbeat frames carrying the link counters; the MCU can use
        their absence to detect a dead Pi.  0 disables them.
    reconnect_s : float
        Pause between attempts to reopen a vanished port.
    serial_factory : callable, optional
        ``factory(port, baudrate) -> serial-like`` (``read``, ``write``,
        ``close``); the default opens ``serial.serial_for_url`` non-blocking.

    Attributes
    ----------
    on_config : callable or None
        Called with each new :class:`~firmware_bridge.codec.Config` from the
        MCU (duplicates from retransmissions are filtered out).  Exceptions
        it raises are logged, not propagated into the link.
    poll_interval_s : float
        Sleep between polls of the background thread.
    """

    poll_interval_s = 0.01

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        labels: dict | None = None,
        queue_size: int = 256,
        retransmit_ms: int = 200,
        heartbeat_s: float = 5.0,
        reconnect_s: float = 1.0,
        serial_factory=None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.port = port
        self.baudrate = baudrate
        self.queue_size = queue_size
        self.retransmit_ms = retransmit_ms
        self.heartbeat_s = heartbeat_s
        self.reconnect_s = reconnect_s
        self.on_config = None
        self._factory = serial_factory or _default_serial_factory
        self._lock = threading.RLock()
        self._labels: dict = {kind: [] for kind in EVENT_KINDS}
        self._label_ids: dict = {}
        for kind, names in (labels or {}).items():
            if kind not in self._labels:
                raise ValueError(f"unknown event kind {kind!r} in labels; expected one of {EVENT_KINDS}")
            for name in names:
                self._label_id(kind, name)
        self._pending: "OrderedDict[int, _Pending]" = OrderedDict()
        self._n_events_pending = 0
        self._seq = 0
        self._decoder = Decoder()
        self._seen_mcu: deque = deque(maxlen=SEEN_WINDOW)
        # New per process: tells the MCU our sequence numbers started over.
        self.session = random.SystemRandom().getrandbits(16)
        self._peer_session: int | None = None
        self._out = bytearray()
        self._ser = None
        self._ever_connected = False
        self._open_error: str | None = None
        self._start_s = time.monotonic()
        self._now_s = self._start_s
        self._next_connect_s = self._start_s
        self._next_heartbeat_s = self._start_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self.sent = 0
        self.acked = 0
        self.retransmits = 0
        self.dropped_overflow = 0
        self.dropped_critical = 0
        self.discarded_at_close = 0
        self.reconnects = 0
        self.last_pong_rtt_ms: float | None = None
        self._ping_sent: dict = {}
        with self._lock:
            self._connect(self._now_s)
            self._flush()

    # ------------------------------------------------------------------ public API

    def send_event(self, kind: str, label: str, confidence: float, timestamp_ms: int) -> int:
        """Queue an event for acknowledged delivery and try to send it at once.

        Parameters
        ----------
        kind : str
            ``"wake"``, ``"command"``, ``"scene"``, ``"beat"`` or ``"sound"``.
        label : str
            Label name; an unseen name is added to the table and announced.
        confidence : float
            In [0, 1]; clamped, NaN becomes 0, sent with 1/65535 resolution.
        timestamp_ms : int
            Pi-side time of the event; sent modulo 2**32.

        Returns
        -------
        int
            The event's sequence number (1..65535).

        Raises
        ------
        ValueError
            Only for an unknown ``kind`` (a caller bug); I/O problems never raise.
        """
        if kind not in self._labels:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        with self._lock:
            label_id = self._label_id(kind, label, announce=True)
            seq = self._take_seq()
            critical = kind in CRITICAL_KINDS
            msg = Event(seq, kind, label_id, confidence_to_q16(float(confidence)), int(timestamp_ms) & 0xFFFFFFFF, critical)
            if self._n_events_pending >= self.queue_size:
                self._drop_one()
            self._pending[seq] = _Pending(msg, encode(msg), True, critical)
            self._n_events_pending += 1
            entry = self._pending[seq]
            if self._ser is not None and self._write(entry.frame):
                entry.attempts = 1
                entry.stamped = True
                self.sent += 1
                self._flush()
            return seq

    def poll(self, now: float | None = None) -> list:
        """Do all due work once: reconnect, read, retransmit, heartbeat.

        Parameters
        ----------
        now : float, optional
            Current time in seconds on the ``time.monotonic`` scale; tests pass
            their own clock.

        Returns
        -------
        list
            Messages from the MCU other than acks (config, ping, pong, hello, ...).
        """
        with self._lock:
            now = time.monotonic() if now is None else now
            self._now_s = now
            if self._ser is None:
                if now >= self._next_connect_s:
                    self._connect(now)
                if self._ser is None:
                    return []
            out = self._read_and_handle(now)
            if self._ser is not None:
                self._send_due(now)
            if self._ser is not None and self.heartbeat_s > 0 and now >= self._next_heartbeat_s:
                self._send_heartbeat(now)
            if self._ser is not None:
                self._flush()
            return out

    def ping(self, nonce: int | None = None) -> int:
        """Send a ping; the answer's round-trip time lands in ``health()['last_pong_rtt_ms']``."""
        with self._lock:
            nonce = (int(time.monotonic() * 1000) if nonce is None else nonce) & 0xFFFFFFFF
            self._ping_sent[nonce] = time.monotonic()
            if len(self._ping_sent) > 16:
                self._ping_sent.pop(next(iter(self._ping_sent)))
            if self._write(encode(Ping(nonce))):
                self._flush()
            return nonce

    def start(self) -> None:
        """Run :meth:`poll` every ``poll_interval_s`` in a daemon thread."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"BridgeLink({self.port})", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (the port stays open)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        self._thread = None

    def close(self, flush_timeout_s: float = 1.0) -> None:
        """Wait up to ``flush_timeout_s`` for pending events to be acked, then close the port."""
        deadline = time.monotonic() + max(0.0, flush_timeout_s)
        running = self._thread is not None and self._thread.is_alive()
        while time.monotonic() < deadline:
            with self._lock:
                if self._n_events_pending == 0 and not self._out:
                    break
            if not running:
                self.poll()
            time.sleep(0.005)
        self.stop()
        with self._lock:
            self._closed = True
            left = self._n_events_pending
            if left:
                # Not kept for the next start: an MCU acting on a wake word from before a
                # restart would act on stale news. They are counted and said.
                self.discarded_at_close += left
                log.warning("BridgeLink: %d event(s) not acknowledged by the microcontroller on "
                            "%s within %.1f s are discarded at shutdown", left, self.port,
                            flush_timeout_s)
            self._disconnect(reason=None)

    def health(self) -> dict:
        """Link counters (cumulative) and state, for logs and metrics."""
        with self._lock:
            dec = self._decoder.counters()
            return {
                "connected": self._ser is not None,
                "pending": self._n_events_pending,
                "sent": self.sent,
                "acked": self.acked,
                "retransmits": self.retransmits,
                "dropped_overflow": self.dropped_overflow,
                "dropped_critical": self.dropped_critical,
                "discarded_at_close": self.discarded_at_close,
                "open_error": self._open_error,
                "corrupt_frames": dec["corrupt_frames"],
                "reconnects": self.reconnects,
                "frames_received": dec["frames_ok"],
                "last_pong_rtt_ms": self.last_pong_rtt_ms,
            }

    @property
    def labels(self) -> dict:
        """Current label table (a copy), including labels added by :meth:`send_event`."""
        with self._lock:
            return {kind: list(names) for kind, names in self._labels.items()}

    def __enter__(self) -> "BridgeLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the thread must survive anything; poll itself should not raise
                log.exception("BridgeLink poll failed")
            self._stop.wait(self.poll_interval_s)

    def _take_seq(self) -> int:
        self._seq = next_seq(self._seq)
        # after 65535 events a long-unacked seq could still be pending: skip it
        while self._seq in self._pending:
            self._seq = next_seq(self._seq)
        return self._seq

    def _label_id(self, kind: str, label: str, announce: bool = False) -> int:
        key = (kind, label)
        found = self._label_ids.get(key)
        if found is not None:
            return found
        names = self._labels[kind]
        if len(names) >= 0xFFFF:
            return 0xFFFF  # "unknown" id; the table is full
        label_id = len(names)
        names.append(truncate_label(str(label)))
        self._label_ids[key] = label_id
        if announce:
            self._queue_label_slices(kind, [(label_id, (names[-1],))])
        return label_id

    def _queue_label_slices(self, kind: str, slices: list) -> None:
        total = len(self._labels[kind])
        for start_id, names in slices:
            seq = self._take_seq()
            msg = LabelTable(seq, kind, total, start_id, names)
            entry = _Pending(msg, encode(msg), False, True)
            self._pending[seq] = entry
            if self._ser is not None and self._write(entry.frame):
                entry.attempts = 1
                entry.stamped = True

    def _queue_full_label_table(self) -> None:
        # A fresh table supersedes any slices still waiting from before.
        for seq in [s for s, e in self._pending.items() if not e.is_event]:
            del self._pending[seq]
        for kind in EVENT_KINDS:
            if self._labels[kind]:
                self._queue_label_slices(kind, split_label_table(kind, self._labels[kind]))

    def _drop_one(self) -> None:
        victim = None
        for seq, entry in self._pending.items():
            if entry.is_event and not entry.critical:
                victim = seq
                break
        victim_critical = victim is None
        if victim is None:
            victim = next(seq for seq, entry in self._pending.items() if entry.is_event)
            self.dropped_critical += 1
        del self._pending[victim]
        self._n_events_pending -= 1
        self.dropped_overflow += 1
        if self.dropped_overflow == 1 or self.dropped_overflow % 100 == 0:
            log.warning("BridgeLink: the queue to %s is full (%d events unacknowledged): dropped "
                        "the oldest %s event (%d dropped so far; health: dropped_overflow)",
                        self.port, self.queue_size,
                        "critical" if victim_critical else "scene/beat/sound", self.dropped_overflow)

    def _connect(self, now: float) -> None:
        self._next_connect_s = now + self.reconnect_s
        if self._closed:
            return
        try:
            ser = self._factory(self.port, self.baudrate)
        except Exception as exc:  # missing device, permission, busy: try again later
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._open_error:  # once per reason, not once per retry
                self._open_error = reason
                log.warning("BridgeLink: cannot open %s (%s); retrying every %.1f s, %d event(s) "
                            "queued", self.port, reason, self.reconnect_s, self._n_events_pending)
            else:
                log.debug("BridgeLink: cannot open %s: %s", self.port, exc)
            return
        if self._open_error is not None:
            log.warning("BridgeLink: %s is open again", self.port)
        self._open_error = None
        self._ser = ser
        if self._ever_connected:
            self.reconnects += 1
        self._ever_connected = True
        self._decoder.reset()
        self._out.clear()
        # A lone delimiter ends whatever half frame the MCU may hold from before.
        self._write(b"\x00")
        self._write(encode(Hello(firmware_version=PI_SOFTWARE_VERSION, max_frame=MAX_FRAME, session=self.session)))
        self._queue_full_label_table()
        for entry in self._pending.values():
            if entry.is_event and entry.attempts:
                entry.last_sent_s = -float("inf")  # resend now, not after the backoff
                entry.stamped = False
        self._next_heartbeat_s = now
        log.info("BridgeLink: connected to %s", self.port)

    def _disconnect(self, reason) -> None:
        ser, self._ser = self._ser, None
        self._out.clear()
        if ser is not None:
            if reason is not None:
                log.warning("BridgeLink: lost %s: %s", self.port, reason)
            try:
                ser.close()
            except Exception:
                pass
        self._next_connect_s = self._now_s + self.reconnect_s

    def _write(self, frame: bytes) -> bool:
        """Append a frame to the output buffer; False if there is no room or no port."""
        if self._ser is None or len(self._out) + len(frame) > OUT_BUFFER_LIMIT_BYTES:
            return False
        self._out += frame
        return True

    def _flush(self) -> None:
        ser = self._ser
        if ser is None or not self._out:
            return
        try:
            fd = ser.fileno()
        except Exception:  # URL handlers (loop://, socket://) may have no usable fd
            fd = None
        try:
            if fd is not None:
                # pyserial's non-blocking write spins on EAGAIN; only write when there is room.
                _, writable, _ = select.select([], [fd], [], 0)
                if not writable:
                    return
            written = ser.write(bytes(self._out))
        except Exception as exc:
            self._disconnect(exc)
            return
        if written is None:  # some serial-likes return None for "all of it"
            written = len(self._out)
        del self._out[:written]

    def _read_and_handle(self, now: float) -> list:
        try:
            data = self._ser.read(4096)
        except Exception as exc:
            self._disconnect(exc)
            return []
        if not data:
            return []
        out = []
        for msg in self._decoder.feed(data):
            if isinstance(msg, Ack):
                entry = self._pending.pop(msg.ack_seq, None)
                if entry is not None and entry.is_event:
                    self._n_events_pending -= 1
                    self.acked += 1
                continue
            if msg.seq:
                self._write(encode(Ack(msg.seq)))
                if msg.seq in self._seen_mcu:
                    continue  # a retransmission of something already handled
                self._seen_mcu.append(msg.seq)
            if isinstance(msg, Ping):
                if type(msg) is Ping:
                    self._write(encode(Pong(msg.nonce)))
                else:
                    sent_s = self._ping_sent.pop(msg.nonce, None)
                    if sent_s is not None:
                        self.last_pong_rtt_ms = (time.monotonic() - sent_s) * 1000.0
            elif isinstance(msg, Hello):
                if msg.session != self._peer_session:
                    # the MCU restarted: its sequence numbers begin again
                    self._peer_session = msg.session
                    self._seen_mcu.clear()
                # it may have lost the label table (reboot): send it again
                self._queue_full_label_table()
            elif isinstance(msg, Config):
                self._apply_config(msg)
            out.append(msg)
        return out

    def _apply_config(self, msg: Config) -> None:
        if msg.key == 3 and msg.value > 0:  # heartbeat_ms is a link setting: apply it here
            self.heartbeat_s = msg.value / 1000.0
            self._next_heartbeat_s = min(self._next_heartbeat_s, self._now_s + self.heartbeat_s)
        callback = self.on_config
        if callback is not None:
            try:
                callback(msg)
            except Exception:
                log.exception("BridgeLink: on_config callback failed")

    def _send_due(self, now: float) -> None:
        base_s = self.retransmit_ms / 1000.0
        # label slices first so the MCU can name the events that follow
        order = sorted(self._pending.values(), key=lambda e: e.is_event)
        for entry in order:
            if entry.stamped:
                # written by send_event between polls: start its timer on this clock
                entry.stamped = False
                entry.last_sent_s = now
                continue
            if entry.attempts and entry.last_sent_s is not None:
                wait_s = base_s * min(2 ** (entry.attempts - 1), RETRANSMIT_BACKOFF_MAX)
                if now - entry.last_sent_s + 1e-9 < wait_s:  # tolerance: float clocks summed in steps
                    continue
            if not self._write(entry.frame):
                break  # output full: the rest waits for the next poll
            if entry.attempts == 0:
                if entry.is_event:
                    self.sent += 1
            elif entry.is_event:
                self.retransmits += 1
            if entry.last_sent_s == -float("inf"):
                entry.attempts = 1  # resent after a reconnect: restart the backoff
            else:
                entry.attempts += 1
            entry.last_sent_s = now

    def _send_heartbeat(self, now: float) -> None:
        msg = Heartbeat(
            uptime_ms=int((now - self._start_s) * 1000) & 0xFFFFFFFF,
            pending=min(self._n_events_pending, 0xFFFF),
            dropped_overflow=self.dropped_overflow & 0xFFFFFFFF,
            corrupt_frames=self._decoder.corrupt_frames & 0xFFFFFFFF,
            reconnects=self.reconnects & 0xFFFF,
        )
        if self._write(encode(msg)):
            # keep the schedule (polls are not exactly periodic) unless we fell behind it
            self._next_heartbeat_s += self.heartbeat_s
            if self._next_heartbeat_s <= now:
                self._next_heartbeat_s = now + self.heartbeat_s


def _default_serial_factory(port: str, baudrate: int):
    import serial  # pyserial; imported late so the codec works without it

    # timeout=0 / write_timeout=0: never block the caller; poll() comes back.
    return serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=0)
