"""Event sinks: stdout, MQTT, serial (firmware_bridge) and a rotating log file.

`build_sinks(cfg)` makes one sink per enabled ``[sinks.<name>]`` section. The section's ``kind``
(default: its name) picks the builder from a registry, the same idiom as the stages': each sink
module registers a ``from_config(section, cfg)`` with ``@register_sink("<kind>")``, and this
package imports every module in it. So two MQTT brokers are two sections with
``kind = "mqtt"`` (the second lists only what differs from ``[sinks.mqtt]``), and a new kind of
sink is one new module here. Every section accepts ``types = [...]`` to limit which event types
it takes.

=========  ===========  =================================================================
kind       module       delivers
=========  ===========  =================================================================
stdout     `stdout`     JSON lines on stdout
logfile    `logfile`    JSON lines in a rotating file under ``runtime.state_dir``
mqtt       `mqtt`       MQTT topics, through an on-disk queue (paho-mqtt)
serial     `serial`     a microcontroller over the hopwise bridge protocol (pyserial)
=========  ===========  =================================================================

The modules import paho and pyserial (through ``firmware_bridge``) only when a sink of theirs is
built, so a device without those packages runs the other sinks.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..config import ConfigError
from .base import SINK_KINDS, Sink, SinkSection, SinkSet, event_json, register_sink
from .logfile import LogFileSink
from .mqtt import MqttSink
from .serial import SerialSink
from .stdout import StdoutSink

__all__ = ["Sink", "SinkSet", "SinkSection", "SINK_KINDS", "register_sink", "StdoutSink",
           "LogFileSink", "MqttSink", "SerialSink", "build_sinks", "event_json"]


def _import_sink_modules() -> None:
    """Import every module of this package, so that each one's ``@register_sink`` runs."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_sink_modules()


def build_sinks(cfg, only: list[str] | None = None) -> SinkSet:
    """Sinks for every ``[sinks.X]`` with ``enabled = true`` (or exactly those named in
    ``only``, enabled or not)."""
    sinks = SinkSet()
    for name, sec in (cfg.get("sinks", {}) or {}).items():
        if not isinstance(sec, dict):
            continue
        if only is not None and name not in only:
            continue
        if only is None:
            if "enabled" not in sec:
                raise ConfigError(f"sinks.{name}.enabled is missing: set it to true or false")
            if not sec["enabled"]:
                continue
        kind = sec.get("kind", name)
        if kind not in SINK_KINDS:
            raise ConfigError(f"sinks.{name}: unknown kind {kind!r}; known kinds: "
                              f"{', '.join(sorted(SINK_KINDS))} (set sinks.{name}.kind)")
        inherited = (cfg.get(f"sinks.{kind}", {}) or {}) if kind != name else {}
        section = SinkSection(name, kind, {**inherited, **sec})
        sinks.add(SINK_KINDS[kind](section, cfg))
    return sinks
