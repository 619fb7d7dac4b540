"""End to end over real pseudo-terminals: BridgeLink <-> pty <-> pty <-> McuSimulator.

The ``pty_link`` fixture (conftest.py) joins two kernel pty pairs back to
back, like socat, with stable symlink paths; it can cut the line (paths vanish,
open ports get I/O errors) and restore it.  One test also drives the simulator
through its command line in a subprocess, and one uses socat itself when it is
installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bridge_helpers import wait_until
from firmware_bridge.codec import Config, Ping, Pong
from firmware_bridge.link import BridgeLink
from firmware_bridge.simulator import McuSimulator

REPO = Path(__file__).resolve().parents[2]
LABELS = {"wake": ["hey_hop"], "command": ["lights_on", "lights_off", "stop"], "scene": ["speech", "music", "quiet"]}


class SimThread:
    """Runs an McuSimulator in a thread; stops and closes it on exit."""

    def __init__(self, sim: McuSimulator) -> None:
        self.sim = sim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=sim.run, kwargs={"stop": self._stop, "interval_s": 0.002}, daemon=True)

    def __enter__(self) -> McuSimulator:
        self._thread.start()
        return self.sim

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sim.close()


def delivered(sim: McuSimulator) -> list:
    return [(e.kind, sim.label_name(e.kind, e.label_id), e.timestamp_ms) for e in sim.events]


@pytest.mark.timeout(20)
def test_events_and_acks_over_pty(pty_link):
    sim = McuSimulator(pty_link.mcu_path, reconnect_s=0.05)
    # The link opens first: opening a port discards bytes already waiting in it
    # (pyserial flushes input), as a booting MCU loses what came before it listened.
    link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=100, heartbeat_s=0.2, reconnect_s=0.05)
    link.start()
    try:
        with SimThread(sim):
            # the simulator's HELLO has arrived: from now on nothing is lost, so order is kept
            assert wait_until(lambda: link.health()["frames_received"] >= 1, 5)
            sent = []
            for i in range(40):
                kind, label = [("wake", "hey_hop"), ("command", "stop"), ("scene", "music")][i % 3]
                link.send_event(kind, label, 0.5 + i / 100, 1000 + i)
                sent.append((kind, label, 1000 + i))
            assert wait_until(lambda: link.health()["acked"] == 40, 10)
            assert wait_until(lambda: sim.heartbeats >= 1, 5)
    finally:
        link.close(flush_timeout_s=1.0)
    assert delivered(sim) == sent  # in order, named through the label table, each once
    health = link.health()
    assert (health["pending"], health["sent"], health["dropped_overflow"], health["corrupt_frames"]) == (0, 40, 0, 0)
    assert sim.corrupt_frames == 0 and sim.duplicates == 0
    assert abs(sim.events[5].confidence - 0.55) < 1e-4


@pytest.mark.timeout(30)
def test_disconnect_and_reconnect_mid_stream_loses_nothing(pty_link):
    sim = McuSimulator(pty_link.mcu_path, reconnect_s=0.05)
    with SimThread(sim):
        link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=100, heartbeat_s=0.5, reconnect_s=0.05)
        link.start()
        try:
            expected = []

            def send(n: int, kind: str, label: str) -> None:
                for _ in range(n):
                    t_ms = len(expected)
                    link.send_event(kind, label, 0.9, t_ms)
                    expected.append((kind, label, t_ms))

            send(10, "wake", "hey_hop")
            assert wait_until(lambda: link.health()["acked"] == 10, 10)
            # acks get lost just before the cable is pulled: these are in flight, unacknowledged
            sim.drop_acks = 1000
            send(5, "command", "lights_on")
            assert wait_until(lambda: len(sim.events) == 15, 5)
            pty_link.cut()
            assert wait_until(lambda: not link.health()["connected"], 5)
            # events raised while the port is gone are queued, never raise
            send(5, "scene", "quiet")
            send(3, "command", "brand_new_label")  # a label the MCU has never heard of
            time.sleep(0.2)  # several reconnect attempts against a missing path
            assert link.health()["pending"] == 13
            sim.drop_acks = 0
            pty_link.restore()
            assert wait_until(lambda: link.health()["pending"] == 0, 10), link.health()
        finally:
            link.close(flush_timeout_s=1.0)
    assert sorted(delivered(sim), key=lambda e: e[2]) == expected  # each exactly once
    health = link.health()
    assert health["reconnects"] >= 1 and health["acked"] == len(expected) and health["dropped_overflow"] == 0
    assert health["retransmits"] >= 5  # the in-flight ones went out again
    assert sim.duplicates >= 5  # ...and the simulator suppressed the copies it had already seen
    assert sim.labels["command"][-1] == "brand_new_label"


@pytest.mark.timeout(20)
def test_mcu_goes_away_and_comes_back(pty_link):
    sim = McuSimulator(pty_link.mcu_path, reconnect_s=0.05)
    with SimThread(sim):
        link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=50, heartbeat_s=1.0, reconnect_s=0.05)
        link.start()
        try:
            link.send_event("wake", "hey_hop", 0.9, 1)
            assert wait_until(lambda: link.health()["acked"] == 1, 5)
            sim.go_away()  # MCU resets: its port is closed, the Pi's stays open
            seqs = [link.send_event("command", "lights_off", 0.8, 2 + i) for i in range(4)]
            time.sleep(0.3)
            assert link.health()["pending"] == 4 and link.health()["retransmits"] >= 4
            sim.come_back()
            assert wait_until(lambda: link.health()["pending"] == 0, 10), link.health()
        finally:
            link.close(flush_timeout_s=1.0)
    assert sorted(e.seq for e in sim.events if e.kind == "command") == seqs
    assert sim.opens == 2


@pytest.mark.timeout(20)
def test_line_noise_is_survived_and_counted(pty_link):
    sim = McuSimulator(pty_link.mcu_path, reconnect_s=0.05)
    with SimThread(sim):
        link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=50, heartbeat_s=1.0, reconnect_s=0.05)
        link.start()
        try:
            assert wait_until(lambda: sim.connected, 5)
            for i in range(20):
                link.send_event("scene", "speech", 0.5, i)
                if i % 4 == 0:
                    pty_link.inject("mcu", b"\x7f\x13noise\xff" * 3 + b"\x00\x05\x01")  # noise and a torn frame
                    pty_link.inject("pi", b"\x02\x02\x02\x00\x11")
            assert wait_until(lambda: link.health()["pending"] == 0, 10), link.health()
        finally:
            link.close(flush_timeout_s=1.0)
    assert sorted(e.timestamp_ms for e in sim.events) == list(range(20))
    assert sim.corrupt_frames >= 5
    assert link.health()["corrupt_frames"] >= 5


@pytest.mark.timeout(20)
def test_config_and_ping_from_the_mcu(pty_link):
    sim = McuSimulator(pty_link.mcu_path, reconnect_s=0.05)
    configs = []
    with SimThread(sim):
        link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=50, heartbeat_s=1.0, reconnect_s=0.05)
        link.on_config = configs.append
        received = []
        try:
            assert wait_until(lambda: sim.connected, 5, step=link.poll)
            sim.send_config("threshold_milli", 850, kind="wake", label_id=0)
            sim.send_ping(77)
            link.ping(5)
            assert wait_until(
                lambda: configs and 77 in sim.pongs and link.health()["last_pong_rtt_ms"] is not None,
                5,
                step=lambda: received.extend(link.poll()),
            )
            assert wait_until(lambda: not sim._unacked, 5, step=link.poll)  # the Pi acked the config
        finally:
            link.close(flush_timeout_s=0.5)
    assert configs == [Config(1, 1, 0, 0, 850)]
    assert Ping(77) in received  # pings are returned to the caller (and answered)
    assert Pong(5) in received
    assert 0 <= link.health()["last_pong_rtt_ms"] < 5000


@pytest.mark.timeout(30)
def test_send_event_never_blocks_on_a_port_nobody_reads():
    # a real pty whose other end is never read: the kernel buffer fills up,
    # yet send_event and poll return at once and the queue stays bounded
    master, slave = os.openpty()
    path = os.ttyname(slave)
    link = BridgeLink(path, labels=LABELS, queue_size=64, retransmit_ms=10, heartbeat_s=0.05, reconnect_s=0.05)
    try:
        worst_s = 0.0
        for i in range(3000):
            t0 = time.monotonic()
            link.send_event("scene", "music", 0.5, i)
            link.poll()
            worst_s = max(worst_s, time.monotonic() - t0)
        health = link.health()
        assert health["connected"] and health["pending"] == 64
        assert health["dropped_overflow"] == 3000 - 64
        assert health["sent"] < 3000  # the port really stopped taking data (~17 KB pty buffer)
        assert worst_s < 1.0, worst_s  # generous for a loaded CI box; a blocking write would hang here
    finally:
        t0 = time.monotonic()
        link.close(flush_timeout_s=0.2)
        assert time.monotonic() - t0 < 2.0
        os.close(master)
        os.close(slave)


def _start_simulator_cli(port: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.simulator", "--port", port, "--json", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.stdout.read()


@pytest.mark.timeout(30)
def test_simulator_command_line(pty_link):
    link = BridgeLink(pty_link.pi_path, labels=LABELS, retransmit_ms=100, heartbeat_s=1.0, reconnect_s=0.05)
    configs = []
    link.on_config = configs.append
    link.start()
    proc = _start_simulator_cli(pty_link.mcu_path, "--config", "threshold_milli=700@command", "--drop-acks", "2")
    try:
        try:
            assert wait_until(lambda: link.health()["frames_received"] >= 1, 10)  # its HELLO: it listens now
            for i in range(6):
                link.send_event("command", ["lights_on", "lights_off", "stop"][i % 3], 0.8, 500 + i)
            assert wait_until(lambda: link.health()["acked"] == 6 and configs, 15), link.health()
        finally:
            link.close(flush_timeout_s=1.0)
    finally:
        output = _stop(proc)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [line for line in lines if line["type"] == "event"]
    assert [(e["label"], e["timestamp_ms"]) for e in events] == [
        (["lights_on", "lights_off", "stop"][i % 3], 500 + i) for i in range(6)
    ]
    assert configs[0].key_name == "threshold_milli" and configs[0].value == 700 and configs[0].kind == 1
    # two acks were swallowed, yet every event was shown exactly once
    assert re.search(r"SUMMARY events=6 duplicates=\d+ acks_sent=\d+ acks_dropped=2 ", output), output[-500:]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed (apt-get install socat)")
@pytest.mark.timeout(30)
def test_reconnect_through_socat():
    with tempfile.TemporaryDirectory(prefix="hopwise_socat_") as directory:
        pi, mcu = f"{directory}/pi", f"{directory}/mcu"

        def start_socat() -> subprocess.Popen:
            proc = subprocess.Popen(
                ["socat", f"pty,raw,echo=0,link={pi}", f"pty,raw,echo=0,link={mcu}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            assert wait_until(lambda: os.path.exists(pi) and os.path.exists(mcu), 5)
            return proc

        socat = start_socat()
        sim = McuSimulator(mcu, reconnect_s=0.05)
        try:
            with SimThread(sim):
                link = BridgeLink(pi, labels=LABELS, retransmit_ms=100, heartbeat_s=1.0, reconnect_s=0.05)
                link.start()
                try:
                    for i in range(5):
                        link.send_event("wake", "hey_hop", 0.9, i)
                    assert wait_until(lambda: link.health()["acked"] == 5, 10)
                    socat.terminate()
                    socat.wait(timeout=5)
                    assert wait_until(lambda: not link.health()["connected"], 5)
                    for i in range(5, 10):
                        link.send_event("wake", "hey_hop", 0.9, i)
                    socat = start_socat()
                    assert wait_until(lambda: link.health()["pending"] == 0, 10), link.health()
                finally:
                    link.close(flush_timeout_s=1.0)
        finally:
            socat.terminate()
            socat.wait(timeout=5)
    assert sorted(e.timestamp_ms for e in sim.events) == list(range(10))
    assert link.health()["reconnects"] == 1
