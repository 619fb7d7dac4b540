"""Sink interface and the fan-out (micro_speech's "command responder", several at once).

A sink takes event dicts and delivers them somewhere (stdout, a log file, MQTT, a serial link).
``send`` must return quickly (the pipeline calls it inside its hop); anything slow (network,
retries, disk queues) happens on the sink's own thread. `SinkSet` calls every sink, catches
whatever one raises, counts it, and carries on: a sink that fails never stops the pipeline, and
its health (``health()``) is reported in the status heartbeat.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..config import ConfigError

__all__ = ["Sink", "SinkSet", "SinkSection", "SINK_KINDS", "register_sink", "event_json"]

log = logging.getLogger("hopwise.sinks")


class SinkSection:
    """The settings of one ``[sinks.<name>]`` section, as a sink builder reads them.

    A section whose ``kind`` differs from its name (a second broker: ``[sinks.backup]
    kind = "mqtt"``) takes every key it does not set from the profile's section of that kind
    (``[sinks.mqtt]``), so it lists only what differs. ``section["key"]`` of a key neither has
    is a `ConfigError` naming it; ``section.get("key")`` is for optional keys (``types``).
    """

    def __init__(self, name: str, kind: str, values: Mapping[str, Any]):
        self.name, self.kind = name, kind
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(f"sinks.{self.name}.{key} is missing: add it to [sinks.{self.name}] "
                              f"or pass --set sinks.{self.name}.{key}=VALUE")
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)


SinkBuilder = Callable[[SinkSection, Any], "Sink"]
SINK_KINDS: dict[str, SinkBuilder] = {}


def register_sink(kind: str) -> Callable[[SinkBuilder], SinkBuilder]:
    """Decorator for a sink module's ``from_config(section, cfg) -> Sink``: makes it what
    ``[sinks.X] kind = "<kind>"`` (or a section named ``<kind>``) builds."""
    def deco(builder: SinkBuilder) -> SinkBuilder:
        old = SINK_KINDS.get(kind)
        if old is not None and old.__module__ != builder.__module__:
            raise ValueError(f"sink kind {kind!r} is registered twice: by {old.__module__} and "
                             f"{builder.__module__}")
        SINK_KINDS[kind] = builder
        return builder
    return deco


def event_json(event: dict) -> str:
    """One compact JSON line (no newline); numpy scalars become plain numbers."""
    return json.dumps(event, separators=(",", ":"), default=_default)


def _default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class Sink:
    """Base class.

    Parameters
    ----------
    name : str
        Shown in status.
    types : sequence of str or None
        Event types this sink takes (e.g. ``["wake", "command"]``); None = all.
    """

    def __init__(self, name: str, types: Sequence[str] | None = None):
        self.name = name
        self.types = set(types) if types else None
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None

    def wants(self, event: dict) -> bool:
        return self.types is None or event.get("type") in self.types

    def send(self, event: dict) -> None:
        raise NotImplementedError

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Deliver what is pending; True when nothing is left."""
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)

    def health(self) -> dict:
        return {"ok": self.errors == 0 or self.last_error is None, "sent": self.sent,
                "errors": self.errors, "last_error": self.last_error}


class SinkSet:
    """Fan-out to several sinks, isolating their failures.

    Usage: ``sinks = SinkSet([StdoutSink(), MqttSink(...)]); sinks.send(ev); sinks.close()``.
    """

    def __init__(self, sinks: Iterable[Sink] = ()):
        self.sinks = list(sinks)

    def __iter__(self):
        return iter(self.sinks)

    def __len__(self):
        return len(self.sinks)

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def send(self, event: dict) -> None:
        for sink in self.sinks:
            if not sink.wants(event):
                continue
            try:
                sink.send(event)
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                sink.errors += 1
                sink.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sink %s failed: %s", sink.name, sink.last_error)

    def flush(self, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        ok = True
        for sink in self.sinks:
            try:
                ok &= bool(sink.flush(max(0.0, deadline - time.monotonic())))
            except Exception as exc:  # noqa: BLE001
                sink.errors += 1
                sink.last_error = f"{type(exc).__name__}: {exc}"
                ok = False
        return ok

    def close(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        for sink in self.sinks:
            try:
                sink.close(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001
                sink.errors += 1
                sink.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sink %s failed to close: %s", sink.name, sink.last_error)

    def health(self) -> dict:
        out = {}
        for sink in self.sinks:
            try:
                out[sink.name] = sink.health()
            except Exception as exc:  # noqa: BLE001
                out[sink.name] = {"ok": False, "last_error": f"health failed: {exc}"}
        return out
