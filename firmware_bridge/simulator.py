"""Host-side stand-in for the microcontroller end of the bridge.

Run ``python -m firmware_bridge.simulator --port /dev/pts/N`` against a pty or
USB-serial adapter to see what the Pi sends; it prints each event, acks it,
learns the label table, and can send config and pings, drop acks, or go away
for a while to exercise the Pi's retransmission and reconnection.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from collections import deque

from .codec import (
    CONFIG_KEYS,
    EVENT_KINDS,
    KIND_IDS,
    MAX_FRAME,
    Ack,
    Config,
    Decoder,
    Event,
    Heartbeat,
    Hello,
    LabelTable,
    Ping,
    Pong,
    encode,
    next_seq,
)

__all__ = ["McuSimulator", "main"]

_CONFIG_KEY_IDS = {name: key for key, name in CONFIG_KEYS.items()}


class McuSimulator:
    """Speaks the MCU side of the protocol on a serial port, for tests and demos.

    Call :meth:`step` in a loop (or :meth:`run`); each step reads what
    arrived, acknowledges sequenced frames, records events once each (a
    retransmission is acked again but not recorded twice), retransmits its own
    unacknowledged config frames and reopens the port if it vanished.

    Parameters
    ----------
    port : str
        Serial device, pty path or pyserial URL.
    baudrate : int
        Line speed (ignored by ptys).
    drop_acks : int
        Number of acks to swallow before acking normally, to make the Pi
        retransmit.
    drop_ack_rate : float
        Probability of swallowing any later ack (seeded by ``seed``, so runs
        are repeatable).
    reconnect_s : float
        Pause between attempts to reopen a vanished port.
    retransmit_s : float
        Retransmit interval of config frames until the Pi acks them.
    send_hello : bool
        Send a HELLO after each (re)open, as real firmware does after boot,
        so the Pi resends the label table.
    out : file-like or None
        Where to print received messages, one line each (None: silent).
    json_lines : bool
        Print JSON objects instead of human-readable lines.
    serial_factory : callable, optional
        ``factory(port, baudrate) -> serial-like``; default pyserial, non-blocking.

    Attributes
    ----------
    events : list of Event
        Events received, first copy of each, in arrival order.
    labels : dict of str to list of str
        Label table learned from the Pi.
    duplicates, acks_sent, acks_dropped, heartbeats : int
        Counters for tests.
    last_heartbeat : Heartbeat or None
        Most recent heartbeat.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        drop_acks: int = 0,
        drop_ack_rate: float = 0.0,
        reconnect_s: float = 0.1,
        retransmit_s: float = 0.2,
        send_hello: bool = True,
        out=None,
        json_lines: bool = False,
        seed: int = 0,
        serial_factory=None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.drop_acks = drop_acks
        self.drop_ack_rate = drop_ack_rate
        self.reconnect_s = reconnect_s
        self.retransmit_s = retransmit_s
        self.send_hello = send_hello
        self.out = out
        self.json_lines = json_lines
        self._rng = random.Random(seed)
        self._factory = serial_factory or _default_serial_factory
        # step() may run in a thread while a test or the CLI sends config/pings
        self._lock = threading.RLock()
        self._ser = None
        with self._lock:
            self._away = False
            self._next_open_s = 0.0
        self._decoder = Decoder()
        self._seen: deque = deque(maxlen=64)
        self.session = random.SystemRandom().getrandbits(16)
        self._peer_session = None
        self._seq = 0
        self._unacked: dict = {}  # seq -> [frame, last_sent_s]
        self.events: list = []
        self.labels: dict = {kind: [] for kind in EVENT_KINDS}
        self.duplicates = 0
        self.acks_sent = 0
        self.acks_dropped = 0
        self.heartbeats = 0
        self.opens = 0
        self.last_heartbeat = None
        self.pongs: list = []

    # ---------------------------------------------------------------- control

    @property
    def connected(self) -> bool:
        return self._ser is not None

    @property
    def corrupt_frames(self) -> int:
        return self._decoder.corrupt_frames

    def go_away(self) -> None:
        """Close the port and stay away until :meth:`come_back` (MCU unplugged or crashed)."""
        with self._lock:
            self._away = True
            self._close()

    def come_back(self) -> None:
        """Allow the port to be reopened on the next step."""
        with self._lock:
            self._away = False
            self._next_open_s = 0.0

    def send_config(self, key, value: int, kind: int | str = 0xFF, label_id: int = 0xFFFF) -> int:
        """Send a CONFIG (retransmitted until acked); returns its sequence number.

        ``key`` is a number or a name from ``CONFIG_KEYS`` (``"threshold_milli"``...).
        """
        key_id = _CONFIG_KEY_IDS[key] if isinstance(key, str) else int(key)
        kind_id = KIND_IDS[kind] if isinstance(kind, str) else int(kind)
        with self._lock:
            self._seq = next_seq(self._seq)
            frame = encode(Config(self._seq, key_id, kind_id, label_id, int(value)))
            self._unacked[self._seq] = [frame, time.monotonic()]
            self._write(frame)
            return self._seq

    def send_ping(self, nonce: int = 0) -> None:
        """Send a PING; the Pi's PONG ends up in ``pongs``."""
        with self._lock:
            self._write(encode(Ping(nonce & 0xFFFFFFFF)))

    def label_name(self, kind: str, label_id: int) -> str:
        names = self.labels.get(kind, [])
        if 0 <= label_id < len(names) and names[label_id] is not None:
            return names[label_id]
        return f"#{label_id}"

    # ---------------------------------------------------------------- loop

    def step(self, now: float | None = None) -> list:
        """Do one round of I/O; returns the messages received in it."""
        with self._lock:
            return self._step(time.monotonic() if now is None else now)

    def _step(self, now: float) -> list:
        if self._ser is None:
            if self._away or now < self._next_open_s:
                return []
            self._open(now)
            if self._ser is None:
                return []
        try:
            data = self._ser.read(4096)
        except Exception:
            self._close(now)
            return []
        received = self._decoder.feed(data) if data else []
        for msg in received:
            self._handle(msg)
        for seq, item in list(self._unacked.items()):
            if now - item[1] >= self.retransmit_s:
                item[1] = now
                self._write(item[0])
        return received

    def run(self, duration_s: float | None = None, stop=None, interval_s: float = 0.005) -> None:
        """Call :meth:`step` until ``duration_s`` passes or ``stop`` (a threading.Event) is set."""
        end_s = None if duration_s is None else time.monotonic() + duration_s
        while (end_s is None or time.monotonic() < end_s) and not (stop is not None and stop.is_set()):
            self.step()
            time.sleep(interval_s)

    def close(self) -> None:
        with self._lock:
            self._close()

    # ---------------------------------------------------------------- internals

    def _open(self, now: float) -> None:
        self._next_open_s = now + self.reconnect_s
        try:
            self._ser = self._factory(self.port, self.baudrate)
        except Exception:
            self._ser = None
            return
        self.opens += 1
        self._decoder.reset()
        self._write(b"\x00")
        if self.send_hello:
            self._write(encode(Hello(firmware_version=1, max_frame=MAX_FRAME, session=self.session)))

    def _close(self, now: float | None = None) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass
        self._next_open_s = (time.monotonic() if now is None else now) + self.reconnect_s

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            return
        try:
            self._ser.write(data)
        except Exception:
            self._close()

    def _handle(self, msg) -> None:
        if isinstance(msg, Ack):
            self._unacked.pop(msg.ack_seq, None)
            return
        if isinstance(msg, Hello) and msg.session != self._peer_session:
            self._peer_session = msg.session
            self._seen.clear()  # the Pi restarted: its sequence numbers begin again
        if msg.seq:
            if self.drop_acks > 0:
                self.drop_acks -= 1
                self.acks_dropped += 1
            elif self.drop_ack_rate and self._rng.random() < self.drop_ack_rate:
                self.acks_dropped += 1
            else:
                self._write(encode(Ack(msg.seq)))
                self.acks_sent += 1
            if msg.seq in self._seen:
                self.duplicates += 1
                return
            self._seen.append(msg.seq)
        if isinstance(msg, Event):
            self.events.append(msg)
        elif isinstance(msg, LabelTable):
            names = self.labels[msg.kind]
            del names[msg.total :]
            names.extend([None] * (msg.total - len(names)))
            for offset, name in enumerate(msg.names):
                if msg.start_id + offset < msg.total:
                    names[msg.start_id + offset] = name
        elif isinstance(msg, Heartbeat):
            self.heartbeats += 1
            self.last_heartbeat = msg
        elif type(msg) is Ping:
            self._write(encode(Pong(msg.nonce)))
        elif isinstance(msg, Pong):
            self.pongs.append(msg.nonce)
        self._print(msg)

    def _print(self, msg) -> None:
        if self.out is None:
            return
        if isinstance(msg, Event):
            label = self.label_name(msg.kind, msg.label_id)
            if self.json_lines:
                line = json.dumps(
                    {"type": "event", "seq": msg.seq, "kind": msg.kind, "label": label, "label_id": msg.label_id,
                     "confidence": round(msg.confidence, 4), "timestamp_ms": msg.timestamp_ms, "critical": msg.critical}
                )
            else:
                line = (
                    f"EVENT seq={msg.seq} kind={msg.kind} label={label} conf={msg.confidence:.3f} "
                    f"t_ms={msg.timestamp_ms}{' critical' if msg.critical else ''}"
                )
        elif self.json_lines:
            fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in msg.__dict__.items()}
            line = json.dumps({"type": type(msg).__name__.lower(), **fields})
        else:
            line = f"{type(msg).__name__.upper()} " + " ".join(f"{k}={v}" for k, v in msg.__dict__.items())
        print(line, file=self.out, flush=True)


def _default_serial_factory(port: str, baudrate: int):
    import serial

    return serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=0)


def _parse_config(text: str) -> tuple:
    """``KEY=VALUE[@KIND[:LABEL_ID]]`` -> (key, value, kind, label_id)."""
    target = "any"
    if "@" in text:
        text, target = text.split("@", 1)
    key, value = text.split("=", 1)
    kind, _, label = target.partition(":")
    kind_id = 0xFF if kind in ("", "any") else KIND_IDS[kind]
    label_id = 0xFFFF if label in ("", "any") else int(label)
    key_id = int(key) if key.isdigit() else _CONFIG_KEY_IDS[key]
    return key_id, int(value), kind_id, label_id


def main(argv: list | None = None) -> int:
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.simulator", description=__doc__)
    parser.add_argument("--port", required=True, help="serial device or pty path, e.g. /dev/pts/3")
    parser.add_argument("--baudrate", type=int, default=115200,
                        help="line speed in bit/s; must match the Pi side's sinks.serial.baudrate "
                             "(ignored on a pseudo-terminal) (default: %(default)s)")
    parser.add_argument("--duration-s", type=float, default=None, help="exit after this long (default: run forever)")
    parser.add_argument("--drop-acks", type=int, default=0, help="swallow the first N acks")
    parser.add_argument("--drop-ack-rate", type=float, default=0.0, help="then swallow each ack with this probability")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random ack drops (--drop-ack-rate), so a lossy run "
                             "repeats exactly (default: %(default)s)")
    parser.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE[@KIND[:LABEL]]",
        help="send a config after connecting, e.g. threshold_milli=850@wake:0 (repeatable)",
    )
    parser.add_argument("--ping-every-s", type=float, default=0.0, help="send a ping this often")
    parser.add_argument("--go-away-after-s", type=float, default=None, help="close the port after this long")
    parser.add_argument("--away-for-s", type=float, default=1.0, help="and reopen it after this long")
    parser.add_argument("--no-hello", action="store_true", help="do not send HELLO after opening")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the final summary")
    args = parser.parse_args(argv)

    sim = McuSimulator(
        args.port, args.baudrate, drop_acks=args.drop_acks, drop_ack_rate=args.drop_ack_rate, seed=args.seed,
        send_hello=not args.no_hello, out=None if args.quiet else sys.stdout, json_lines=args.json,
    )
    configs = [_parse_config(c) for c in args.config]
    start_s = time.monotonic()
    end_s = None if args.duration_s is None else start_s + args.duration_s
    next_ping_s = start_s + args.ping_every_s if args.ping_every_s > 0 else None
    went_away_s = None
    configs_sent_for_open = 0
    nonce = 0
    # SIGINT/SIGTERM set a flag the loop checks: an exception raised at an arbitrary point
    # could leave the simulator's lock held, and the close below would then wait forever.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.is_set() and (end_s is None or time.monotonic() < end_s):
            now = time.monotonic()
            sim.step(now)
            if sim.connected and configs and configs_sent_for_open != sim.opens:
                configs_sent_for_open = sim.opens
                for key, value, kind, label_id in configs:
                    sim.send_config(key, value, kind, label_id)
            if next_ping_s is not None and now >= next_ping_s and sim.connected:
                nonce += 1
                sim.send_ping(nonce)
                next_ping_s = now + args.ping_every_s
            if args.go_away_after_s is not None and went_away_s is None and now - start_s >= args.go_away_after_s:
                print("GOING AWAY", flush=True)
                sim.go_away()
                went_away_s = now
            if went_away_s is not None and sim._away and now - went_away_s >= args.away_for_s:
                print("COMING BACK", flush=True)
                sim.come_back()
            time.sleep(0.002)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
        print(
            f"SUMMARY events={len(sim.events)} duplicates={sim.duplicates} acks_sent={sim.acks_sent} "
            f"acks_dropped={sim.acks_dropped} heartbeats={sim.heartbeats} corrupt={sim.corrupt_frames} opens={sim.opens}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
