"""The sink registry: every kind builds from its profile section, a second section of a kind
inherits the first's keys, and paho/pyserial load only when their sink is built."""
import subprocess
import sys

import pytest

from device.config import ConfigError, load_config
from device.sinks import (SINK_KINDS, LogFileSink, MqttSink, SerialSink, StdoutSink, build_sinks)
from helpers import REPO, device_env


class FakeLink:
    """Stands in for firmware_bridge.link.BridgeLink: records what the sink asked for."""

    def __init__(self, port, **kw):
        self.port, self.kw = port, kw
        self.started = self.closed = False

    def start(self):
        self.started = True

    def close(self, flush_timeout_s=1.0):
        self.closed = True

    def health(self):
        return {"connected": False, "pending": 0}


def test_the_registry_finds_every_sink_module():
    assert set(SINK_KINDS) == {"stdout", "logfile", "mqtt", "serial"}


def test_each_kind_builds_from_its_profile_section(tmp_path, monkeypatch):
    import firmware_bridge.link
    monkeypatch.setattr(firmware_bridge.link, "BridgeLink", FakeLink)
    cfg = load_config("default", [f"runtime.state_dir={tmp_path}", "project.device_id=kitchen",
                                  "sinks.logfile.enabled=true", "sinks.mqtt.enabled=true",
                                  "sinks.mqtt.port=1", "sinks.serial.enabled=true",
                                  "sinks.serial.baudrate=9600", 'sinks.stdout.types=["wake"]'])
    sinks = build_sinks(cfg)
    try:
        by_name = {s.name: s for s in sinks}
        assert {n: type(s) for n, s in by_name.items()} == {
            "stdout": StdoutSink, "logfile": LogFileSink, "mqtt": MqttSink, "serial": SerialSink}
        assert by_name["stdout"].types == {"wake"}
        assert by_name["logfile"].path == tmp_path / "events.jsonl"      # under runtime.state_dir
        mqtt = by_name["mqtt"]
        assert (mqtt.port, mqtt.topic("wake")) == (1, "hopwise/kitchen/wake")
        assert mqtt.queue.path == tmp_path / "mqtt" / "mqtt-queue.sqlite"
        link = by_name["serial"].link
        assert link.started and link.port == "/dev/ttyUSB0" and link.kw["baudrate"] == 9600
        assert link.kw["labels"]["wake"] == ["computer"]
    finally:
        sinks.close(0.2)


def test_a_second_section_of_a_kind_inherits_its_keys(tmp_path):
    cfg = load_config("default", [f"runtime.state_dir={tmp_path}", "sinks.stdout.enabled=false",
                                  "sinks.backup.kind=mqtt", "sinks.backup.enabled=true",
                                  "sinks.backup.host=127.0.0.2", "sinks.backup.port=1"])
    sinks = build_sinks(cfg)
    try:
        (backup,) = list(sinks)
        assert backup.name == "backup" and backup.host == "127.0.0.2"
        assert backup.prefix == cfg["sinks.mqtt.topic_prefix"] and backup.qos == cfg["sinks.mqtt.qos"]
        assert backup.queue.path.parent == tmp_path / "backup"            # its own queue
    finally:
        sinks.close(0.2)


def test_a_missing_key_or_kind_is_named():
    cfg = load_config("default", ["sinks.x.enabled=true", "sinks.x.kind=logfile"])
    data = cfg.to_dict()
    del data["sinks"]["logfile"]["max_bytes"]
    from device.config import Config
    with pytest.raises(ConfigError, match=r"sinks.x.max_bytes is missing: add it to \[sinks.x\]"):
        build_sinks(Config(data, "trimmed"))
    with pytest.raises(ConfigError, match="sinks.y.enabled is missing"):
        build_sinks(load_config("default", ["sinks.y.kind=stdout"]))
    with pytest.raises(ConfigError, match="unknown sink kind 'pigeon'; use one of logfile, mqtt"):
        build_sinks(load_config("default", ["sinks.x.enabled=true", "sinks.x.kind=pigeon"]))


def test_paho_and_pyserial_load_only_for_their_sinks():
    code = ("import sys\nfrom device.config import load_config\nfrom device.sinks import build_sinks\n"
            "build_sinks(load_config('default')).close(0.1)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paho', 'serial', 'firmware_bridge')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=device_env(), cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
