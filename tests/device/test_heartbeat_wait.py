"""``python -m device heartbeat`` (what deploy runs on the Pi with deploy.heartbeat_via = "mqtt")
against a REAL mosquitto on a free loopback port: a heartbeat retained from before ``--since``
does not count, one published after does; a broker that is not there is named."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from benchmarks.mosquitto import free_port
from device.config import load_config
from device.sinks.mqtt import MqttSink
from helpers import PY, REPO, device_env

pytestmark = pytest.mark.timeout(60)


def _wait(port: int, since: float, timeout_s: float) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "device", "heartbeat", "--set", "sinks.mqtt.host=127.0.0.1",
                             "--set", f"sinks.mqtt.port={port}", "--set",
                             "project.device_id=dev1", "--since", str(since), "--timeout-s",
                             str(timeout_s)], cwd=REPO, env=device_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _beat(t_wall: float, t_audio_s: float) -> dict:
    return {"type": "status", "label": "heartbeat", "confidence": 1.0, "t_audio_s": t_audio_s,
            "t_wall": t_wall, "seq": 0, "device": "dev1", "first": True}


def test_only_a_heartbeat_after_since_counts(broker, tmp_path):
    sink = MqttSink("127.0.0.1", broker.port, device_id="dev1", state_dir=tmp_path)
    try:
        old = time.time() - 100
        sink.send(_beat(old, 0.01))            # retained, from an earlier start
        assert sink.flush(5)
        since = time.time()
        waiter = _wait(broker.port, since, 2)
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 1 and "no heartbeat on MQTT" in err and "(connected)" in err, err
        waiter = _wait(broker.port, since, 20)
        time.sleep(1.0)
        sink.send({**_beat(time.time(), 30.0), "first": False})   # the old process, periodic
        sink.send(_beat(time.time(), 0.01))
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        got = json.loads(out)
        assert got["label"] == "heartbeat" and got["t_wall"] >= since and got["t_audio_s"] == 0.01
    finally:
        sink.close(2)


def test_no_broker_is_named_and_a_missing_section_is_a_config_error():
    waiter = _wait(free_port(), time.time(), 2)
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 1 and "could not be reached" in err and "127.0.0.1" in err, err
    from device.config import ConfigError
    from device.heartbeat import mqtt_section
    with pytest.raises(ConfigError, match="no \\[sinks.backup\\]"):
        mqtt_section(load_config("default"), "backup")
