"""Helpers of the device runtime tests: the tone model, recordings, a real mosquitto broker."""
from __future__ import annotations

import os
import shutil
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
from benchmarks.mosquitto import Broker  # noqa: E402,F401  (the tests import it from here)

PY = sys.executable


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory) -> Path:
    """The hand-weighted int8 model (built once per session with TensorFlow, ~8 s)."""
    pytest.importorskip("tensorflow")
    return build_tone_model(tmp_path_factory.mktemp("model"), load_config("default"))


# The tone model's pipeline. The default profile's also runs the ESN (esn_frontend, esn), whose
# model is there only after `make export` (tests/device/test_esn.py tests it with its own): the
# tone tests pin the stages so that they mean the same before and after a build.
TONE_STAGES = 'pipeline.stages=["frontend", "multitask", "keywords", "scenes"]'


def make_cfg(model: Path, *overrides: str):
    return load_config("default", [f"stages.multitask.model={model}", TONE_STAGES, *overrides])


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
