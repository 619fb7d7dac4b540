"""Event sinks: stdout, MQTT, serial (firmware_bridge) and a rotating log file.

`build_sinks(cfg)` makes one sink per enabled ``[sinks.<name>]`` section; the section's ``kind``
(default: its name) picks the class, so two MQTT brokers are two sections with ``kind = "mqtt"``.
Every section accepts ``types = [...]`` to limit which event types it takes.
"""
from __future__ import annotations

from pathlib import Path

from .base import Sink, SinkSet, event_json
from .logfile import LogFileSink
from .stdout import StdoutSink

__all__ = ["Sink", "SinkSet", "StdoutSink", "LogFileSink", "MqttSink", "SerialSink",
           "build_sinks", "event_json", "state_dir"]


def __getattr__(name):  # lazy: paho / pyserial only when those sinks are used
    if name == "MqttSink":
        from .mqtt import MqttSink
        return MqttSink
    if name == "SerialSink":
        from .serial import SerialSink
        return SerialSink
    raise AttributeError(name)


def state_dir(cfg) -> Path:
    """``runtime.state_dir`` (relative paths are under ``project.build_dir``)."""
    p = Path(cfg.get("runtime.state_dir", "state"))
    return p if p.is_absolute() else cfg.build_dir / p


def build_sinks(cfg, only: list[str] | None = None) -> SinkSet:
    """Sinks for every ``[sinks.X]`` with ``enabled = true`` (or those named in ``only``)."""
    sinks = SinkSet()
    for name, sec in (cfg.get("sinks", {}) or {}).items():
        if not isinstance(sec, dict):
            continue
        if only is not None and name not in only:
            continue
        if only is None and not sec.get("enabled", False):
            continue
        kind = sec.get("kind", name)
        types = sec.get("types") or None
        if kind == "stdout":
            sinks.add(StdoutSink(types=types, name=name))
        elif kind == "logfile":
            path = Path(sec.get("path", "events.jsonl"))
            path = path if path.is_absolute() else state_dir(cfg) / path
            sinks.add(LogFileSink(path, sec.get("max_bytes", 1_000_000), sec.get("backup_count", 5),
                                  types=types, name=name))
        elif kind == "mqtt":
            from .mqtt import MqttSink
            sinks.add(MqttSink(
                sec.get("host", "localhost"), sec.get("port", 1883),
                device_id=cfg.get("project.device_id", "hopwise"),
                topic_prefix=sec.get("topic_prefix", "hopwise"), qos=sec.get("qos", 1),
                state_dir=state_dir(cfg) / name, client_id=sec.get("client_id") or None,
                username=sec.get("username") or None, password=sec.get("password") or None,
                tls=sec.get("tls", False), ca_certs=sec.get("ca_certs") or None,
                certfile=sec.get("certfile") or None, keyfile=sec.get("keyfile") or None,
                tls_insecure=sec.get("tls_insecure", False),
                keepalive_s=sec.get("keepalive_s", 30), max_queue=sec.get("max_queue", 100_000),
                types=types, name=name))
        elif kind == "serial":
            from .serial import SerialSink
            labels = {"wake": [cfg["labels.wake_word"]], "command": list(cfg["labels.commands"]),
                      "scene": list(cfg["labels.scenes"])}
            sinks.add(SerialSink(sec.get("port", "/dev/ttyUSB0"), sec.get("baudrate", 115200),
                                 labels=labels, queue_size=sec.get("queue_size", 256),
                                 retransmit_ms=sec.get("retransmit_ms", 200),
                                 heartbeat_s=sec.get("heartbeat_s", 5.0),
                                 reconnect_s=sec.get("reconnect_s", 1.0),
                                 timestamp=sec.get("timestamp", "audio"), types=types, name=name))
        else:
            raise ValueError(f"sinks.{name}: unknown kind {kind!r}; use stdout, logfile, mqtt or serial")
    return sinks
