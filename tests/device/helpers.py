"""Helpers of the device runtime tests: the tone model, recordings, a real mosquitto broker."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from export.standin import SIREN_HZ, WAKE_HZ, WORD_S, YES_HZ, build_tone_model  # noqa: E402,F401
from device.audio_source import Tone, render_tones  # noqa: E402
from device.config import load_config  # noqa: E402

PY = sys.executable


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory) -> Path:
    """The hand-weighted int8 model (built once per session with TensorFlow, ~8 s)."""
    pytest.importorskip("tensorflow")
    return build_tone_model(tmp_path_factory.mktemp("model"), load_config("default"))


def make_cfg(model: Path, *overrides: str):
    return load_config("default", [f"stages.multitask.model={model}", *overrides])


# A "recording": wake word at 1.0 s, command "yes" at 2.4 s, a siren from 5 to 8 s, a lone
# "yes" (no wake word before it: must not be a command) at 9.5 s, wake word again at 11.0 s.
SCRIPT = [Tone(1.0, 1.0 + WORD_S, WAKE_HZ, 0.3), Tone(2.4, 2.4 + WORD_S, YES_HZ, 0.3),
          Tone(5.0, 8.0, SIREN_HZ, 0.3), Tone(9.5, 9.5 + WORD_S, YES_HZ, 0.3),
          Tone(14.0, 14.0 + WORD_S, WAKE_HZ, 0.3)]
SCRIPT_S = 15.5


@pytest.fixture(scope="session")
def recording(tmp_path_factory) -> Path:
    """SCRIPT as a 48 kHz stereo WAV (so replay also exercises downmix and resampling)."""
    import soundfile as sf
    x = render_tones(SCRIPT, SCRIPT_S, 48000)
    path = tmp_path_factory.mktemp("audio") / "script.wav"
    sf.write(path, np.stack([x, x], axis=1), 48000, subtype="PCM_16")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on 127.0.0.1:<free port>, with persistence so that a restart keeps
    a persistent subscriber's session (queued QoS 1 messages)."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"{self.user_line()}"
            f"persistence_location {root / 'data'}/\nautosave_interval 1\n"
            f"log_dest file {root / 'mosquitto.log'}\n")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def user_line() -> str:
        """As root, mosquitto drops to user 'mosquitto', which cannot read the test's private tmp
        folder (persistence, password file, certificates): stay the user the test runs as."""
        import getpass
        return f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.root / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


class Subscriber:
    """A persistent-session QoS 1 subscriber collecting everything under ``topic``."""

    def __init__(self, port: int, topic: str = "hopwise/#", client_id: str = "test-sub"):
        import threading
        import paho.mqtt.client as mqtt
        self.messages: list[tuple[str, dict, bool, float]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.topic = topic

        def on_connect(c, u, flags, rc, props=None):
            c.subscribe(self.topic, qos=1)
            self.connected.set()

        def on_disconnect(c, u, flags, rc, props=None):
            self.connected.clear()

        def on_message(c, u, msg):
            import json
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain),
                                      time.time()))

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.on_disconnect = on_disconnect
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.connected.wait(5), "test subscriber could not connect"
        time.sleep(0.1)  # the SUBACK

    def events(self, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [m[1] for m in self.messages if kind is None or m[0].endswith("/" + kind)]

    def wait_for(self, pred, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return True
            time.sleep(0.02)
        return pred(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def device_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env
