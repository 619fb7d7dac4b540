"""BridgeLink logic (queue, acks, retransmit timing, overflow, reconnect) on an in-memory port.

Timing is driven through ``poll(now=...)`` so these tests need no sleeps; the
real-pty behaviour is covered in test_bridge_e2e.py.
"""

from __future__ import annotations

import errno
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec
from firmware_bridge.codec import Ack, Config, Decoder, Event, Heartbeat, Hello, LabelTable, Ping, Pong, encode
from firmware_bridge.link import BridgeLink, split_label_table


class MemoryPort:
    """Serial-like object: the link's writes collect in ``tx``; tests append incoming bytes to ``rx``."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()
        self.gone = False
        self.closed = False

    def read(self, size: int) -> bytes:
        if self.gone:
            raise OSError(errno.EIO, "device vanished")
        data = bytes(self.rx[:size])
        del self.rx[:size]
        return data

    def write(self, data: bytes) -> int:
        if self.gone:
            raise OSError(errno.EIO, "device vanished")
        self.tx += data
        return len(data)

    def fileno(self):
        raise AttributeError("no fd")

    def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.ports: list = []

    def __call__(self, port: str, baudrate: int) -> MemoryPort:
        if not self.available:
            raise OSError(errno.ENOENT, "no such device")
        self.ports.append(MemoryPort())
        return self.ports[-1]

    @property
    def port(self) -> MemoryPort:
        return self.ports[-1]

    def sent(self) -> list:
        """Messages written to the current port since the last call."""
        msgs = Decoder().feed(bytes(self.port.tx))
        self.port.tx.clear()
        return msgs


LABELS = {"wake": ["hey_hop"], "command": ["lights_on", "lights_off"], "scene": ["speech", "music"]}


def make_link(factory=None, **kwargs) -> tuple:
    factory = factory or Factory()
    kwargs.setdefault("labels", LABELS)
    kwargs.setdefault("heartbeat_s", 0)
    return BridgeLink("mem", serial_factory=factory, **kwargs), factory


def ack_all(factory: Factory, msgs: list) -> None:
    for m in msgs:
        if m.seq:
            factory.port.rx += encode(Ack(m.seq))


def test_connect_sends_hello_and_label_table():
    link, factory = make_link()
    msgs = factory.sent()
    assert isinstance(msgs[0], Hello) and msgs[0].session == link.session
    tables = {m.kind: m for m in msgs if isinstance(m, LabelTable)}
    assert set(tables) == {"wake", "command", "scene"}
    assert tables["command"].names == ("lights_on", "lights_off") and tables["command"].total == 2
    assert link.health()["connected"] is True


def test_event_is_sent_at_once_and_cleared_by_ack():
    link, factory = make_link()
    factory.sent()
    seq = link.send_event("command", "lights_off", 0.75, 123_456)
    (event,) = factory.sent()
    assert event == Event(seq, "command", 1, codec.confidence_to_q16(0.75), 123_456, True)
    assert link.health()["pending"] == 1
    factory.port.rx += encode(Ack(seq))
    assert link.poll(now=0.0) == []  # acks are consumed, not returned
    health = link.health()
    assert (health["pending"], health["sent"], health["acked"], health["retransmits"]) == (0, 1, 1, 0)


def test_retransmit_with_backoff_until_acked():
    link, factory = make_link(retransmit_ms=100)
    ack_all(factory, factory.sent())
    link.poll(now=0.0)
    seq = link.send_event("wake", "hey_hop", 0.9, 1)
    factory.sent()
    link.poll(now=0.0)  # starts the retransmit timer
    resent_at = []
    for step in range(1, 101):
        now = step * 0.01
        link.poll(now=now)
        if any(isinstance(m, Event) and m.seq == seq for m in factory.sent()):
            resent_at.append(round(now, 2))
    # 100 ms, then 200, 400, 800 (capped at 8x) after each previous attempt
    assert resent_at == [0.1, 0.3, 0.7]
    assert link.health()["retransmits"] == 3
    factory.port.rx += encode(Ack(seq))
    link.poll(now=1.01)
    link.poll(now=5.0)
    assert factory.sent() == []
    assert link.health()["pending"] == 0


def test_overflow_drops_oldest_non_critical_first_and_reports_it():
    factory = Factory(available=False)  # nothing acks: everything stays queued
    link, _ = make_link(factory, queue_size=3)
    seqs = {}
    for kind, label in [("scene", "speech"), ("wake", "hey_hop"), ("beat", "beat"), ("command", "lights_on")]:
        seqs[kind] = link.send_event(kind, label, 0.5, 0)
    # the fourth event pushed out the oldest non-critical one (scene)
    assert link.health()["dropped_overflow"] == 1
    seqs["command2"] = link.send_event("command", "lights_off", 0.5, 0)  # pushes out beat
    seqs["wake2"] = link.send_event("wake", "hey_hop", 0.5, 0)  # only critical left: oldest (wake) goes
    health = link.health()
    assert (health["pending"], health["dropped_overflow"], health["dropped_critical"]) == (3, 3, 1)
    factory.available = True
    link.heartbeat_s = 1.0
    link.poll(now=link._next_connect_s)
    msgs = factory.sent()
    events = [m.seq for m in msgs if isinstance(m, Event)]
    assert events == [seqs["command"], seqs["command2"], seqs["wake2"]]
    (heartbeat,) = [m for m in msgs if isinstance(m, Heartbeat)]
    assert heartbeat.dropped_overflow == 3 and heartbeat.pending == 3


def test_port_absent_then_vanishing_then_back():
    factory = Factory(available=False)
    link, _ = make_link(factory, reconnect_s=1.0)
    seq1 = link.send_event("wake", "hey_hop", 0.9, 1)  # no port: queued, no exception
    assert link.health()["connected"] is False
    link.poll(now=0.5)
    factory.available = True
    link.poll(now=0.5)  # too early to retry
    assert factory.ports == []
    link.poll(now=link._next_connect_s)
    msgs = factory.sent()
    assert [m.seq for m in msgs if isinstance(m, Event)] == [seq1]
    assert link.health()["reconnects"] == 0  # first connection is not a reconnect

    factory.port.gone = True
    seq2 = link.send_event("command", "lights_on", 0.8, 2)  # write fails inside: still no exception
    assert link.health()["connected"] is False
    assert factory.port.closed
    t_lost = link._now_s
    link.poll(now=t_lost + 0.5)
    assert len(factory.ports) == 1
    link.poll(now=t_lost + 1.0)
    assert len(factory.ports) == 2
    msgs = factory.sent()
    assert isinstance(msgs[0], Hello)
    assert {m.kind for m in msgs if isinstance(m, LabelTable)} == {"wake", "command", "scene"}
    # both unacknowledged events are delivered again on the new port, label table first
    kinds = [type(m).__name__ for m in msgs]
    assert kinds.index("Event") > max(i for i, k in enumerate(kinds) if k == "LabelTable")
    assert sorted(m.seq for m in msgs if isinstance(m, Event)) == [seq1, seq2]
    ack_all(factory, msgs)
    link.poll(now=t_lost + 1.1)
    health = link.health()
    assert (health["pending"], health["acked"], health["reconnects"], health["connected"]) == (0, 2, 1, True)


def test_config_is_acked_applied_once_and_returned():
    link, factory = make_link()
    factory.sent()
    seen = []
    link.on_config = seen.append
    config = Config(7, 1, codec.KIND_IDS["wake"], 0, 850)
    factory.port.rx += encode(config) + encode(config)  # the MCU retransmitted it
    assert link.poll(now=0.0) == [config]
    assert seen == [config]
    assert factory.sent() == [Ack(7), Ack(7)]  # every copy is acked


def test_config_callback_errors_do_not_escape():
    link, factory = make_link()

    def broken(msg):
        raise RuntimeError("application bug")

    link.on_config = broken
    factory.port.rx += encode(Config(1, 2, 0xFF, 0xFFFF, 0))
    assert len(link.poll(now=0.0)) == 1


def test_heartbeat_period_config_is_applied():
    link, factory = make_link(heartbeat_s=5.0)
    factory.port.rx += encode(Config(1, 3, 0xFF, 0xFFFF, 250))
    link.poll(now=100.0)
    assert link.heartbeat_s == 0.25
    factory.sent()
    beats = 0
    for step in range(1, 201):
        link.poll(now=100.0 + step * 0.01)
        beats += sum(isinstance(m, Heartbeat) for m in factory.sent())
    assert 7 <= beats <= 8  # one per 250 ms over 2 s (the last one sits on the boundary)


def test_ping_is_answered_and_pong_gives_rtt():
    link, factory = make_link()
    factory.sent()
    factory.port.rx += encode(Ping(42))
    assert link.poll(now=0.0) == [Ping(42)]
    assert factory.sent() == [Pong(42)]
    nonce = link.ping(99)
    assert factory.sent() == [Ping(99)]
    factory.port.rx += encode(Pong(nonce))
    link.poll(now=0.1)
    assert link.health()["last_pong_rtt_ms"] is not None


def test_mcu_hello_resends_labels_and_new_session_resets_duplicate_filter():
    link, factory = make_link()
    factory.sent()
    seen = []
    link.on_config = seen.append
    factory.port.rx += encode(Hello(1, 249, 1000)) + encode(Config(1, 2, 0, 0, 1))
    link.poll(now=0.0)
    assert any(isinstance(m, LabelTable) for m in factory.sent())
    # same session, same seq: a duplicate
    factory.port.rx += encode(Config(1, 2, 0, 0, 1))
    link.poll(now=0.1)
    assert len(seen) == 1
    # the MCU rebooted (new session): its seq 1 is new again
    factory.port.rx += encode(Hello(1, 249, 2000)) + encode(Config(1, 2, 0, 0, 0))
    link.poll(now=0.2)
    assert [c.value for c in seen] == [1, 0]


def test_new_label_is_added_and_announced_before_the_event():
    link, factory = make_link()
    factory.sent()
    seq = link.send_event("scene", "x" * 40, 0.3, 5)
    table, event = factory.sent()
    assert isinstance(table, LabelTable) and table.kind == "scene"
    assert table.start_id == 2 and table.total == 3 and table.names == ("x" * 32,)
    assert event.seq == seq and event.label_id == 2
    assert link.labels["scene"] == ["speech", "music", "x" * 32]
    # the same name again reuses the id and announces nothing
    link.send_event("scene", "x" * 40, 0.3, 6)
    assert [type(m) for m in factory.sent()] == [Event]


def test_corrupt_input_is_counted():
    link, factory = make_link()
    factory.port.rx += b"\x01\x02garbage\x00" + encode(Ping(1))[:-3] + encode(Ping(2))
    assert link.poll(now=0.0) == [Ping(2)]
    assert link.health()["corrupt_frames"] == 2


def test_health_has_the_documented_keys():
    link, _ = make_link()
    required = {"connected", "pending", "sent", "acked", "retransmits", "dropped_overflow", "corrupt_frames", "reconnects"}
    assert required <= set(link.health())


def test_invalid_kind_is_a_caller_error():
    link, _ = make_link()
    with pytest.raises(ValueError):
        link.send_event("sneeze", "x", 0.5, 0)
    with pytest.raises(ValueError):
        BridgeLink("mem", labels={"sneeze": ["x"]}, serial_factory=Factory())


def test_sequence_numbers_skip_zero_and_pending():
    factory = Factory(available=False)
    link, _ = make_link(factory, queue_size=10)
    link._seq = 0xFFFE
    first = link.send_event("wake", "hey_hop", 1.0, 0)
    second = link.send_event("wake", "hey_hop", 1.0, 0)
    assert (first, second) == (0xFFFF, 1)
    link._seq = 0xFFFE
    assert link.send_event("wake", "hey_hop", 1.0, 0) == 2  # 0xFFFF and 1 are still pending


@pytest.mark.timeout(10)
def test_close_gives_up_after_flush_timeout_and_closes_port():
    link, factory = make_link()
    link.send_event("wake", "hey_hop", 0.9, 0)  # never acked
    t0 = time.monotonic()
    link.close(flush_timeout_s=0.2)
    assert 0.2 <= time.monotonic() - t0 < 2.0
    assert factory.port.closed
    assert link.health()["connected"] is False
    link.send_event("wake", "hey_hop", 0.9, 1)  # after close: queued, no exception
    link.poll()
    assert len(factory.ports) == 1  # a closed link does not reopen


@pytest.mark.timeout(10)
def test_background_thread_delivers_and_stops():
    link, factory = make_link(retransmit_ms=20)
    link.start()
    try:
        seq = link.send_event("wake", "hey_hop", 0.9, 0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and link.health()["retransmits"] == 0:
            time.sleep(0.005)
        assert link.health()["retransmits"] >= 1
        factory.port.rx += encode(Ack(seq))
        while time.monotonic() < deadline and link.health()["pending"]:
            time.sleep(0.005)
        assert link.health()["pending"] == 0
    finally:
        link.close(flush_timeout_s=0.1)
    assert link._thread is None


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12).map(lambda s: s[:32]), max_size=60))
def test_split_label_table_fits_frames(names):
    names = [n for n in names if 0 < len(n.encode()) <= codec.MAX_LABEL_BYTES]
    slices = split_label_table("command", names)
    assert [n for _, chunk in slices for n in chunk] == names
    for start_id, chunk in slices:
        msg = LabelTable(1, "command", len(names), start_id, chunk)
        assert len(encode(msg)) <= codec.MAX_FRAME
        assert names[start_id : start_id + len(chunk)] == list(chunk)


def test_a_missing_port_overflow_and_unacked_events_at_close_are_logged_and_counted(caplog):
    """Nothing the link loses or cannot do is silent: a missing port is a warning once per
    reason (not per retry), the port coming back is said, overflow drops and events discarded
    at shutdown are logged with their counts and in health()."""
    import logging
    factory = Factory(available=False)
    link, _ = make_link(factory, queue_size=3, reconnect_s=0.01)
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG, "firmware_bridge.link"):
        for i in range(5):
            link.poll(now=t0 + i * 0.1)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len([m for m in warnings if "cannot open mem" in m]) == 1
        assert "no such device" in warnings[0] and link.health()["open_error"]
        for i in range(5):
            link.send_event("scene", "speech", 0.9, 1000 + i)
        assert link.health()["dropped_overflow"] == 2
        assert any("queue to mem is full" in r.getMessage() for r in caplog.records)
        factory.available = True
        link.poll(now=t0 + 1.0)
        assert any("mem is open again" in r.getMessage() for r in caplog.records)
        link.close(flush_timeout_s=0.0)
    assert link.health()["discarded_at_close"] == 3
    assert any("3 event(s) not acknowledged" in r.getMessage() for r in caplog.records)
