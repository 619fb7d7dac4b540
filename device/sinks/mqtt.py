"""MQTT sink (paho-mqtt 2.x) with an on-disk queue: no event is lost while the broker is away.

Topics: ``<prefix>/<device-id>/<type>`` (``wake``, ``command``, ``scene``, ``beat``, ``sound``, ``status``),
QoS 1. Status heartbeats are retained, and the broker holds a retained last will ``offline`` on
the status topic, so a subscriber always sees whether the device is alive.

Delivery is at-least-once: ``send`` appends the event to a SQLite queue (WAL, one commit per
event) and returns; a worker thread publishes queued rows in order while connected, and a row is
deleted only when the broker's PUBACK arrives. While the broker is down rows accumulate on disk
(bounded by ``max_queue``: the oldest are dropped and counted beyond it); when it comes back
(paho reconnects with backoff) they are published. A process that dies with rows queued sends them
after it restarts. Duplicates are possible after a reconnect; de-duplicate on ``(device, seq)``:
``seq`` only grows for one device, across restarts too (`device.sequence`; gaps are normal).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Sequence

from ..paths import BuildPaths
from .base import Sink, SinkSection, event_json, register_sink

__all__ = ["MqttSink", "DiskQueue"]

log = logging.getLogger("hopwise.sinks.mqtt")


class DiskQueue:
    """Append-only FIFO of (topic, payload, qos, retain) rows in SQLite; thread-safe.

    Parameters
    ----------
    path : SQLite file (its folder is created).
    max_rows : beyond it the oldest rows are deleted (counted in ``dropped``): an SD card must
        not fill up during a week without broker.
    """

    def __init__(self, path: str | Path, max_rows: int = 100_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_rows = int(max_rows)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "topic TEXT NOT NULL, payload TEXT NOT NULL, qos INTEGER, retain INTEGER)")
        self.dropped = 0

    def put(self, topic: str, payload: str, qos: int, retain: bool) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO q (topic, payload, qos, retain) VALUES (?,?,?,?)",
                                   (topic, payload, int(qos), int(bool(retain))))
            rowid = cur.lastrowid
            if self.max_rows and rowid % 256 == 0:
                n = self._db.execute("SELECT COUNT(*) FROM q").fetchone()[0]
                if n > self.max_rows:
                    self._db.execute("DELETE FROM q WHERE id IN (SELECT id FROM q ORDER BY id "
                                     "LIMIT ?)", (n - self.max_rows,))
                    self.dropped += n - self.max_rows
            return rowid

    def after(self, cursor: int, limit: int) -> list[tuple]:
        with self._lock:
            return self._db.execute("SELECT id, topic, payload, qos, retain FROM q WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (cursor, limit)).fetchall()

    def delete(self, rowid: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM q WHERE id = ?", (rowid,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM q").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _NoDiskQueue:
    """Stands in for `DiskQueue` when the state directory cannot hold one at all (full, read-
    only): every put fails, so events take the sink's memory path, and the log says why."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason, self.dropped = path, reason, 0

    def put(self, *row) -> int:
        raise sqlite3.OperationalError(f"no disk queue ({self.reason})")

    def after(self, cursor: int, limit: int) -> list:
        return []

    def delete(self, rowid: int) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        pass


class MqttSink(Sink):
    """Publish events to an MQTT broker, surviving broker restarts and network loss.

    Usage::

        sink = MqttSink(host="broker.local", port=1883, device_id="kitchen",
                        state_dir="/var/lib/hopwise")
        sink.send(event)        # returns at once; queued on disk, published in the background
        sink.close()            # waits (up to a timeout) for the queue to drain, publishes offline

    Parameters
    ----------
    host, port : broker address.
    device_id : the ``<device-id>`` topic level.
    topic_prefix : first topic level (default ``hopwise``).
    qos : 1 (at least once) by default; 0 gives up delivery guarantees for less traffic.
    state_dir : folder of the on-disk queue ``mqtt-queue.sqlite``.
    username, password : broker credentials (None: anonymous).
    tls : bool; ca_certs, certfile, keyfile : TLS settings (CA bundle, client cert/key);
        tls_insecure skips hostname verification (only for testing).
    keepalive_s : MQTT keepalive; also how fast the broker notices a dead device (will).
    reconnect_min_s, reconnect_max_s : paho's reconnect backoff.
    max_inflight : rows published and not yet acknowledged at a time.
    max_queue : rows kept on disk at most.
    retain_status : retain ``status`` messages (heartbeat/online/final/offline).
    """

    def __init__(self, host: str = "localhost", port: int = 1883, *, device_id: str = "hopwise",
                 topic_prefix: str = "hopwise", qos: int = 1, state_dir: str | Path = "state",
                 client_id: str | None = None, username: str | None = None,
                 password: str | None = None, tls: bool = False, ca_certs: str | None = None,
                 certfile: str | None = None, keyfile: str | None = None,
                 tls_insecure: bool = False, keepalive_s: int = 30, reconnect_min_s: float = 0.5,
                 reconnect_max_s: float = 10.0, max_inflight: int = 100,
                 max_queue: int = 100_000, retain_status: bool = True,
                 types: Sequence[str] | None = None, name: str = "mqtt"):
        super().__init__(name, types)
        import paho.mqtt.client as mqtt
        self._mqtt = mqtt
        self.host, self.port = host, int(port)
        self.device_id, self.prefix, self.qos = device_id, topic_prefix, int(qos)
        self.retain_status = retain_status
        self.max_inflight = int(max_inflight)
        queue_path = Path(state_dir) / "mqtt-queue.sqlite"
        try:
            self.queue = DiskQueue(queue_path, max_queue)
        except (sqlite3.Error, OSError) as exc:
            log.error("MQTT queue %s cannot be created (%s): events are kept in memory only and "
                      "do not survive a restart; free space in runtime.state_dir", queue_path, exc)
            self.queue = _NoDiskQueue(queue_path, str(exc))
        self.status_topic = self.topic("status")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"hopwise-{device_id}-{uuid.uuid4().hex[:6]}",
                                  clean_session=True)
        if username:
            self.client.username_pw_set(username, password)
        if tls or ca_certs:
            self.client.tls_set(ca_certs=ca_certs, certfile=certfile, keyfile=keyfile)
            if tls_insecure:
                self.client.tls_insecure_set(True)
        self.client.will_set(self.status_topic, self._presence("offline"), qos=1, retain=True)
        self.client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}
        # Acks that arrived before publish() returned its mid to the worker, with their time: an
        # entry nobody claims must not outlive paho's mid counter (it wraps at 65535), or a
        # later row that gets the same mid would be deleted without the broker's ack.
        self._early: dict[int, float] = {}
        self._undeleted: set[int] = set()   # acked rows the queue could not delete yet (disk full)
        self._own: set[int] = set()   # mids of the sink's own presence messages (no queue row)
        self._state = "starting"      # what was last logged: "connected" or "down: <reason>"
        # When the disk queue cannot grow (state directory full, SD card failing), events wait
        # here instead, oldest dropped first, and go back to disk (or out) as soon as they can.
        self._memory: collections.deque = collections.deque()
        self.max_memory = max(1, min(int(max_queue), 10_000))
        self.disk_errors = 0
        self.dropped_memory = 0
        self._disk_state = "ok"
        self.left_at_close = 0
        self._down_since: float | None = None
        self._cursor = 0
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self.acked = 0
        self.connects = 0
        self.disconnects = 0
        self.last_connect_error: str | None = None
        self.client.connect_async(self.host, self.port, keepalive=int(keepalive_s))
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, name=f"hopwise-{name}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ helpers
    def topic(self, kind: str) -> str:
        return f"{self.prefix}/{self.device_id}/{kind}"

    def _presence(self, label: str) -> str:
        return json.dumps({"type": "status", "label": label, "device": self.device_id,
                           "t_wall": time.time()})

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _log_state(self, state: str, message: str, *args, level: int = logging.WARNING) -> None:
        """Log a connection state once per change (a broker down for an hour is one line)."""
        if state != self._state:
            self._state = state
            log.log(level, message, *args)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.last_connect_error = str(reason_code)
            hint = ("; check sinks.%s.username and the password (password_file or "
                    "HOPWISE_MQTT_PASSWORD)" % self.name
                    if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower()
                    else "")
            self._log_state(f"down: {reason_code}", "MQTT broker %s:%d refused the connection "
                            "(%s)%s; %d event(s) kept on disk, retrying", self.host, self.port,
                            reason_code, hint, len(self.queue))
            return
        self.connects += 1
        self.last_connect_error = None
        down = "" if self._down_since is None else \
            f" after {time.monotonic() - self._down_since:.1f} s away"
        self._down_since = None
        self._log_state("connected", "MQTT connected to %s:%d%s; %d event(s) queued to send",
                        self.host, self.port, down, len(self.queue), level=logging.INFO)
        info = client.publish(self.status_topic, self._presence("online"), qos=1, retain=True)
        with self._lock:
            self._own.add(info.mid)
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata):
        # paho calls this inside its `except OSError` (refused, unreachable, TLS handshake).
        exc = sys.exc_info()[1]
        reason = (f"{type(exc).__name__}: {exc}" if exc is not None else "connection failed")
        self.last_connect_error = reason
        if self._down_since is None:
            self._down_since = time.monotonic()
        hint = (" (a TLS failure: check sinks.%s.ca_certs, certfile and keyfile)" % self.name
                if "SSL" in reason or "certificate" in reason.lower() else "")
        self._log_state(f"down: {reason}", "MQTT broker %s:%d unreachable (%s)%s; %d event(s) "
                        "kept on disk, retrying", self.host, self.port, reason, hint,
                        len(self.queue))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was_connected = self._connected.is_set()
        if was_connected:
            self.disconnects += 1
            self._down_since = time.monotonic()
        self._connected.clear()
        if reason_code is not None and reason_code != 0:
            self.last_error = f"disconnected: {reason_code}"
        # A refused login is followed by a disconnect too: only a lost connection is news.
        if was_connected and not self._stop.is_set():
            self._log_state(f"down: {reason_code}", "MQTT connection to %s:%d lost (%s); %d "
                            "event(s) kept on disk, reconnecting", self.host, self.port,
                            reason_code, len(self.queue))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        with self._lock:
            if mid in self._own:
                self._own.discard(mid)
                return
            rowid = self._inflight.pop(mid, None)
            if rowid is None:
                self._early[mid] = time.monotonic()  # acked before publish() returned its mid
                return
        self._ack(rowid)

    def _ack(self, rowid: int) -> None:
        """The broker has the row: delete it from the queue. Runs on paho's network thread, so a
        failing delete (a full state disk refuses even that) must not raise there, which would
        end the network loop: the row is remembered and the worker deletes it later (the cursor
        is past it, so it is not sent again)."""
        self.acked += 1
        try:
            self.queue.delete(rowid)
        except sqlite3.OperationalError as exc:
            with self._lock:
                first = not self._undeleted
                self._undeleted.add(rowid)
            if first:
                log.warning("mqtt: cannot delete delivered events from the queue (%s); retrying "
                            "as the state disk frees up", exc)
        self._wake.set()

    def _retry_deletes(self) -> None:
        with self._lock:
            rows, self._undeleted = sorted(self._undeleted), set()
        for i, rowid in enumerate(rows):
            try:
                self.queue.delete(rowid)
            except sqlite3.OperationalError:   # still full: keep the rest for the next wake
                with self._lock:
                    self._undeleted.update(rows[i:])
                return

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            if self._undeleted:
                self._retry_deletes()
            if self._memory:
                self._drain_memory()
            if not self._connected.is_set():
                continue
            try:
                self._publish_some()
            except Exception as exc:  # noqa: BLE001 - keep the worker alive, report it
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("mqtt publish failed: %s", self.last_error)
                time.sleep(0.2)

    def _publish_some(self) -> None:
        with self._lock:
            room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for rowid, topic, payload, qos, retain in self.queue.after(self._cursor, room):
            if not self._connected.is_set():
                return
            info = self.client.publish(topic, payload, qos=qos, retain=bool(retain))
            if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
                self.last_error = f"publish rc {info.rc}"
                return  # retried from the same cursor on the next wake
            self._cursor = rowid
            if qos == 0:
                self._ack(rowid)
                continue
            with self._lock:
                now = time.monotonic()
                if self._early:  # claim this publish's ack, forget unclaimed old ones
                    for mid in [m for m, t in self._early.items() if now - t > 30.0]:
                        del self._early[mid]
                if info.mid in self._early:
                    del self._early[info.mid]
                    early = True
                else:
                    self._inflight[info.mid] = rowid
                    early = False
            if early:
                self._ack(rowid)
            self.sent += 1

    # ------------------------------------------------------------------ Sink API
    def send(self, event: dict) -> None:
        kind = event.get("type", "event")
        retain = self.retain_status and kind == "status" and event.get("label") in (
            "heartbeat", "online", "final")
        row = (self.topic(kind), event_json(event), self.qos, retain)
        with self._lock:
            held = bool(self._memory)
        if held or not self._put_on_disk(row):
            self._hold(row)
        self._wake.set()

    def _put_on_disk(self, row) -> bool:
        try:
            self.queue.put(*row)
        except sqlite3.Error as exc:
            self.disk_errors += 1
            if self._disk_state == "ok":
                self._disk_state = "full"
                log.error("MQTT queue %s cannot take more events (%s): holding up to %d in memory "
                          "until there is room (free space in runtime.state_dir)", self.queue.path,
                          exc, self.max_memory)
            return False
        if self._disk_state != "ok":
            self._disk_state = "ok"
            log.warning("MQTT queue %s takes events again", self.queue.path)
        return True

    def _hold(self, row) -> None:
        with self._lock:
            if len(self._memory) >= self.max_memory:
                self._memory.popleft()
                self.dropped_memory += 1
                if self.dropped_memory == 1 or self.dropped_memory % 1000 == 0:
                    log.error("MQTT: %d event(s) dropped: the disk queue is full and so is the "
                              "memory buffer (%d)", self.dropped_memory, self.max_memory)
            self._memory.append(row)

    def _drain_memory(self) -> None:
        """Held events back onto the disk queue, oldest first, while it takes them; if it still
        does not and the broker is there, publish them straight from memory."""
        while True:
            with self._lock:
                if not self._memory:
                    return
                row = self._memory[0]
            if self._put_on_disk(row):
                with self._lock:
                    self._memory.popleft()
                continue
            break
        while self._connected.is_set():
            with self._lock:
                if not self._memory:
                    return
                topic, payload, qos, retain = self._memory.popleft()
            info = self.client.publish(topic, payload, qos=qos, retain=bool(retain))
            with self._lock:
                self._own.add(info.mid)  # paho retries it while connected; no row to delete
            self.sent += 1

    @property
    def pending(self) -> int:
        return -1 if self._closed else len(self.queue) + len(self._memory)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def flush(self, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pending <= 0:
                return True
            self._wake.set()
            time.sleep(0.01)
        return self.pending == 0

    def close(self, timeout_s: float = 5.0) -> None:
        """Drain the queue (up to ``timeout_s``; what is left stays on disk for the next start),
        publish a retained ``offline`` and disconnect cleanly."""
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=2.0)
        with self._lock:
            lost = len(self._memory)
        if lost:
            log.error("%d event(s) held in memory (the disk queue was full) are lost at shutdown",
                      lost)
        left = self.pending - lost
        self.left_at_close = max(0, left)   # kept on disk for the next start
        if left > 0:
            log.warning("%d event(s) not yet delivered to MQTT broker %s:%d stay queued in %s and "
                        "are sent at the next start", left, self.host, self.port, self.queue.path)
        if self.connected:
            info = self.client.publish(self.status_topic, self._presence("offline"), qos=1, retain=True)
            with self._lock:
                self._own.add(info.mid)
            try:
                info.wait_for_publish(timeout=min(2.0, max(0.1, timeout_s)))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._closed = True
        self.queue.close()

    def health(self) -> dict:
        h = super().health()
        h.update(connected=self.connected, queued=self.pending, acked=self.acked,
                 connects=self.connects, disconnects=self.disconnects,
                 dropped=self.queue.dropped + self.dropped_memory, held_in_memory=len(self._memory),
                 disk_errors=self.disk_errors, broker=f"{self.host}:{self.port}",
                 connect_error=self.last_connect_error)
        h["ok"] = self.connected and self.errors == 0 and self._disk_state == "ok"
        return h


PASSWORD_ENV = "HOPWISE_MQTT_PASSWORD"


def resolve_password(section: SinkSection) -> str | None:
    """The broker password, from (first that is set) the environment variable
    ``HOPWISE_MQTT_PASSWORD`` (``HOPWISE_MQTT_PASSWORD_<NAME>`` for a section other than
    ``mqtt``), the file ``password_file`` (its first line; it must not be readable by group or
    others), or ``password`` in the profile (discouraged: profiles are copied into bundles).
    """
    from ..config import ConfigError

    env = PASSWORD_ENV if section.name == "mqtt" else f"{PASSWORD_ENV}_{section.name.upper()}"
    if os.environ.get(env):
        return os.environ[env]
    path = section["password_file"]
    if path:
        p = Path(path).expanduser()
        try:
            mode = p.stat().st_mode
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"sinks.{section.name}.password_file {p} cannot be read ({exc}); "
                              f"create it with the password on one line, mode 600") from None
        if mode & 0o077:
            raise ConfigError(f"sinks.{section.name}.password_file {p} is readable by others "
                              f"(mode {mode & 0o777:o}); run: chmod 600 {p}")
        return text.splitlines()[0] if text else ""
    return section["password"] or None


@register_sink("mqtt")
def from_config(section: SinkSection, cfg) -> MqttSink:
    """Every key of the profile's ``[sinks.mqtt]``; the queue lives in
    ``<runtime.state_dir>/<section name>`` (one per broker). Empty strings mean "not set". The
    password comes from `resolve_password` (environment, a mode-600 file, or the profile)."""
    def optional(key):
        return section[key] or None
    return MqttSink(
        section["host"], section["port"], device_id=cfg["project.device_id"],
        topic_prefix=section["topic_prefix"], qos=section["qos"],
        state_dir=BuildPaths(cfg).state_dir / section.name, client_id=optional("client_id"),
        username=optional("username"), password=resolve_password(section), tls=section["tls"],
        ca_certs=optional("ca_certs"), certfile=optional("certfile"), keyfile=optional("keyfile"),
        tls_insecure=section["tls_insecure"], keepalive_s=section["keepalive_s"],
        max_queue=section["max_queue"], types=section.get("types") or None, name=section.name)
