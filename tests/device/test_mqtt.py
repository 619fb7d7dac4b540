"""MQTT sink against a REAL mosquitto on a free loopback port (started and stopped by the test)."""
import subprocess
import time

import pytest

from device.sinks.mqtt import MqttSink
from helpers import PY, REPO, Subscriber, device_env


def ev(i, kind="wake", label="computer"):
    return {"type": kind, "label": label, "confidence": 0.9, "t_audio_s": i * 0.1,
            "t_wall": time.time(), "seq": i, "device": "dev1"}


@pytest.mark.timeout(30)
def test_events_are_published_on_their_topics_with_retained_status(broker, tmp_path):
    sub = Subscriber(broker.port)
    sink = MqttSink("127.0.0.1", broker.port, device_id="dev1", state_dir=tmp_path)
    try:
        sink.send(ev(0))
        sink.send(ev(1, "command", "yes"))
        sink.send({**ev(2, "status", "heartbeat"), "status": {"uptime_s": 1}})
        assert sink.flush(5)
        assert sub.wait_for(lambda s: len(s.events("command")) == 1 and len(s.events("wake")) == 1)
        assert sub.events("command")[0]["label"] == "yes"
        assert sink.health()["connected"] and sink.health()["queued"] == 0
    finally:
        sink.close(2)
        sub.close()
    # A late subscriber gets the retained status: the clean close published "offline".
    late = Subscriber(broker.port, "hopwise/dev1/status", client_id="late")
    try:
        assert late.wait_for(lambda s: len(s.events()) >= 1, 5)
        assert late.events()[-1]["label"] == "offline"
    finally:
        late.close()


@pytest.mark.timeout(60)
def test_broker_restart_in_the_middle_loses_no_event(broker, tmp_path):
    sub = Subscriber(broker.port)
    sink = MqttSink("127.0.0.1", broker.port, device_id="dev1", state_dir=tmp_path,
                    reconnect_min_s=0.1, reconnect_max_s=0.5)
    try:
        for i in range(20):
            sink.send(ev(i))
        assert sink.flush(5)
        broker.stop()                                   # the broker goes away...
        deadline = time.monotonic() + 5
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not sink.connected
        for i in range(20, 50):                         # ...events keep coming: queued on disk
            sink.send(ev(i))
            time.sleep(0.005)
        assert sink.pending >= 30 and not sink.health()["ok"]
        broker.start()                                  # ...and it comes back on the same port
        assert sink.flush(15), sink.health()
        assert sub.wait_for(lambda s: {e["seq"] for e in s.events("wake")} >= set(range(50)), 15), \
            sorted({e["seq"] for e in sub.events("wake")})
        assert sink.health()["disconnects"] >= 1 and sink.health()["connects"] >= 2
    finally:
        sink.close(2)
        sub.close()


@pytest.mark.timeout(30)
def test_queue_on_disk_survives_a_restart_of_the_device(broker, tmp_path):
    broker.stop()
    sink = MqttSink("127.0.0.1", broker.port, device_id="dev1", state_dir=tmp_path)
    for i in range(5):
        sink.send(ev(i, "command", "go"))
    sink.close(0.2)                                     # broker away: rows stay on disk
    broker.start()
    sub = Subscriber(broker.port)
    sink = MqttSink("127.0.0.1", broker.port, device_id="dev1", state_dir=tmp_path)
    try:
        assert sink.flush(10)
        assert sub.wait_for(lambda s: sorted(e["seq"] for e in s.events("command")) == list(range(5)))
    finally:
        sink.close(2)
        sub.close()


@pytest.mark.timeout(30)
def test_last_will_says_offline_when_the_device_dies(broker, tmp_path):
    code = ("import os, time\nfrom device.sinks.mqtt import MqttSink\n"
            f"s = MqttSink('127.0.0.1', {broker.port}, device_id='dying', state_dir=r'{tmp_path}')\n"
            "assert s.flush(5)\n"
            "t = time.monotonic()\n"
            "while not s.connected and time.monotonic() - t < 5: time.sleep(0.01)\n"
            "print('CONNECTED', s.connected, flush=True)\n"
            "os._exit(0)\n")                            # no clean disconnect: the broker sends the will
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=device_env(),
                         cwd=REPO, timeout=20)
    assert "CONNECTED True" in out.stdout, out.stderr
    sub = Subscriber(broker.port, "hopwise/dying/status", client_id="watcher")
    try:
        assert sub.wait_for(lambda s: any(e["label"] == "offline" for e in s.events()), 10)
        assert sub.messages[-1][2]                       # retained
    finally:
        sub.close()


@pytest.mark.timeout(30)
def test_a_failing_sink_never_stops_the_others(tmp_path):
    from device.sinks import LogFileSink, Sink, SinkSet

    class Broken(Sink):
        def send(self, event):
            raise OSError("disk on fire")

    log = LogFileSink(tmp_path / "e.jsonl")
    sinks = SinkSet([Broken("broken"), log])
    for i in range(3):
        sinks.send(ev(i))
    sinks.close(1)
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 3
    h = sinks.health()
    assert h["broken"]["errors"] == 3 and "disk on fire" in h["broken"]["last_error"]
    assert h["logfile"]["sent"] == 3


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs for the MQTT queue: a state directory that really fills up."""
    import subprocess
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_full_state_disk_loses_no_event(broker, tiny_disk, caplog):
    """The queue's disk fills up while the broker is away: events wait in memory (said once in
    the log), and every one is delivered when the broker is back. Deleting a delivered row can
    fail too on a full disk: that must not raise in paho's network thread (it once did)."""
    import logging
    from device.sinks.mqtt import MqttSink
    sub = Subscriber(broker.port, "hopwise/full/#", client_id="full-sub")  # persistent session
    broker.stop()
    sink = MqttSink("127.0.0.1", broker.port, device_id="full", state_dir=tiny_disk,
                    reconnect_min_s=0.1, reconnect_max_s=0.3)
    n = 1500   # ~300 KB of payload: three times the disk
    with caplog.at_level(logging.WARNING, "hopwise.sinks.mqtt"):
        for seq in range(n):
            sink.send({"type": "scene", "label": "street_music", "confidence": 0.9,
                       "t_audio_s": float(seq), "seq": seq, "pad": "x" * 150})
        h = sink.health()
        assert h["held_in_memory"] > 0 and h["disk_errors"] > 0 and not h["ok"]
        broker.start()
        try:
            assert sub.wait_for(lambda s: len({e["seq"] for e in s.events("scene")}) == n, 60), \
                (len({e["seq"] for e in sub.events("scene")}), sink.health())
        finally:
            sink.close(2)
            sub.close()
    full = [r for r in caplog.records if "cannot take more events" in r.getMessage()]
    assert len(full) == 1
