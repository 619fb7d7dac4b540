"""Serial sink through a REAL pseudo-terminal pair (socat) with the firmware_bridge MCU simulator
(``python -m firmware_bridge.simulator``) on the other end, including a port that vanishes and
comes back (socat and simulator restarted) with no event lost."""
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import PY, REPO, device_env

pytest.importorskip("serial")
pytest.importorskip("firmware_bridge.link")


class PtyPair:
    def __init__(self, root: Path):
        self.pi, self.mcu = root / "pi", root / "mcu"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={self.pi}",
                                      f"pty,raw,echo=0,link={self.mcu}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not (self.pi.exists() and self.mcu.exists()):
            assert time.monotonic() < deadline, "socat made no pty pair"
            time.sleep(0.02)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        deadline = time.monotonic() + 5
        while (self.pi.exists() or self.mcu.exists()) and time.monotonic() < deadline:
            time.sleep(0.02)


class Simulator:
    def __init__(self, port: Path):
        self.proc = subprocess.Popen([PY, "-m", "firmware_bridge.simulator", "--port", str(port),
                                      "--json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=device_env(), cwd=REPO)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def events(self):
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                msg = json.loads(line)
                if msg.get("type") == "event":
                    out.append(msg)
        return out

    def wait_events(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.events()) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self._t.join(2)


@pytest.fixture
def pty_pair(tmp_path):
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (apt-get install socat): no pseudo-terminal pair")
    pair = PtyPair(tmp_path).start()
    yield pair
    pair.stop()


def ev(i, kind, label, conf=0.9):
    return {"type": kind, "label": label, "confidence": conf, "t_audio_s": 1.25 * i,
            "t_wall": time.time(), "seq": i}


@pytest.mark.timeout(60)
def test_events_reach_the_mcu_simulator_and_survive_a_vanished_port(pty_pair):
    from device.sinks.serial import SerialSink
    sim = Simulator(pty_pair.mcu)
    sink = SerialSink(str(pty_pair.pi), labels={"wake": ["computer"], "command": ["yes", "no"]},
                      reconnect_s=0.2, retransmit_ms=100, heartbeat_s=0.5)
    sim2 = None
    try:
        sink.send(ev(1, "wake", "computer", 0.97))
        sink.send(ev(2, "command", "yes", 0.8))
        sink.send(ev(3, "status", "heartbeat"))          # not a bridge kind: not sent
        sink.send(ev(4, "scene", "siren", 0.7))
        got = sim.wait_events(3)
        assert [(e["kind"], e["label"]) for e in got] == [("wake", "computer"), ("command", "yes"),
                                                          ("scene", "siren")], sim.lines
        assert [e["timestamp_ms"] for e in got] == [1250, 2500, 5000]   # audio time in ms
        assert got[0]["confidence"] == pytest.approx(0.97, abs=1e-3)
        assert sink.flush(5) and sink.health()["connected"]

        sim.stop()                                        # the MCU and the port go away ...
        pty_pair.stop()
        for i in (5, 6):
            sink.send(ev(i, "command", "no"))             # ... events keep coming
        time.sleep(0.5)
        assert sink.health()["pending"] >= 2
        pty_pair.start()                                  # ... and come back
        sim2 = Simulator(pty_pair.mcu)
        got = sim2.wait_events(2, timeout=15)
        assert [(e["kind"], e["label"]) for e in got][-2:] == [("command", "no")] * 2, sim2.lines
        assert sink.flush(5)
        assert sink.health()["reconnects"] >= 1
    finally:
        sink.close(1)
        sim.stop()
        if sim2:
            sim2.stop()


@pytest.mark.timeout(60)
def test_pipeline_events_reach_the_mcu_over_the_configured_serial_sink(pty_pair, tone_model, recording):
    from device.audio_source import FileSource
    from device.pipeline import Pipeline
    from device.sinks import build_sinks
    from helpers import make_cfg
    sim = Simulator(pty_pair.mcu)
    cfg = make_cfg(tone_model, "sinks.stdout.enabled=false", "sinks.serial.enabled=true",
                   f"sinks.serial.port={pty_pair.pi}", "decisions.smoothing_ms=100",
                   "decisions.wake_min_count=1")
    pipe = Pipeline.from_config(cfg, sinks=build_sinks(cfg), keep_events=True)
    try:
        # Wait for the MCU's HELLO (it then has the label table): events that arrive before it
        # would be shown by the simulator as "#<id>" rather than by name.
        deadline = time.monotonic() + 10
        while pipe.sinks.health()["serial"]["frames_received"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        pipe.run(FileSource(recording, rate=16000))
        pipe.close(5)                                     # flushes: every event acknowledged
        assert pipe.sinks.health()["serial"]["pending"] == 0
        sent = sorted((round(e["t_audio_s"] * 1000), e["type"], e["label"])
                      for e in pipe.events if e["type"] != "status")
        got = sim.wait_events(len(sent))
        # (retransmissions may reorder frames on the wire; each event arrives once)
        assert sorted((e["timestamp_ms"], e["kind"], e["label"]) for e in got) == sent, sim.lines
        assert any(kind == "wake" and label == "computer" for _, kind, label in sent)
    finally:
        sim.stop()
