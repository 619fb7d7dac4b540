"""Serial sink: events to a microcontroller through ``firmware_bridge.link.BridgeLink``.

A thin wrapper: the bridge owns framing, acknowledgement, retransmission, the bounded queue and
reconnection (a USB adapter unplugged and plugged back in is reopened every ``reconnect_s``);
this sink maps hopwise events onto ``send_event(kind, label, confidence, timestamp_ms)`` and
reports the link's counters as its health. ``firmware_bridge`` (and pyserial) are imported only
when a serial sink is configured.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .base import Sink, SinkSection, register_sink

__all__ = ["SerialSink", "BRIDGE_KINDS", "bridge_labels"]

BRIDGE_KINDS = ("wake", "command", "scene", "beat", "sound")


class SerialSink(Sink):
    """Send ``wake``/``command``/``scene``/``beat``/``sound`` events over the hopwise bridge protocol.

    Usage::

        sink = SerialSink("/dev/ttyACM0", labels={"wake": ["computer"], "command": [...]})
        sink.send(event); sink.close()

    Parameters
    ----------
    port : serial device, pty path or pyserial URL.
    baudrate : line speed (115200 carries ~600 events/s).
    labels : {kind: [names]} announced to the MCU on each connect (ids instead of strings per
        event); unknown labels are added on the fly by the bridge.
    queue_size, retransmit_ms, heartbeat_s, reconnect_s : passed to BridgeLink (see there):
        more queue rides out a longer unplug, faster retransmits recover sooner at more line use.
    timestamp : "audio" sends the event's time in the audio stream (ms), "wall" unix time (ms),
        both modulo 2**32.
    """

    def __init__(self, port: str, baudrate: int = 115200, labels: Mapping[str, Sequence[str]] | None = None,
                 queue_size: int = 256, retransmit_ms: int = 200, heartbeat_s: float = 5.0,
                 reconnect_s: float = 1.0, timestamp: str = "audio",
                 types: Sequence[str] | None = None, name: str = "serial", link_factory=None):
        super().__init__(name, [t for t in (types or BRIDGE_KINDS) if t in BRIDGE_KINDS])
        if link_factory is None:
            from firmware_bridge.link import BridgeLink as link_factory  # lazy: pyserial only if used
        self.port = port
        self.timestamp = timestamp
        self.link = link_factory(port, baudrate=baudrate,
                                 labels={k: list(v) for k, v in (labels or {}).items()},
                                 queue_size=queue_size, retransmit_ms=retransmit_ms,
                                 heartbeat_s=heartbeat_s, reconnect_s=reconnect_s)
        self.link.start()

    def send(self, event: dict) -> None:
        if not self.wants(event):  # status events have no bridge kind; the MCU gets its heartbeat
            return
        t = event.get("t_audio_s", 0.0) if self.timestamp == "audio" else event.get("t_wall", 0.0)
        self.link.send_event(event["type"], str(event["label"]), float(event.get("confidence", 0.0)),
                             int(round(float(t) * 1000.0)) & 0xFFFFFFFF)
        self.sent += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        import time
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.link.health().get("pending", 0) == 0:
                return True
            time.sleep(0.01)
        return self.link.health().get("pending", 0) == 0

    def close(self, timeout_s: float = 5.0) -> None:
        self.link.close(flush_timeout_s=timeout_s)

    def health(self) -> dict:
        h = super().health()
        link = self.link.health()
        h.update(link)
        h["ok"] = bool(link.get("connected")) and self.errors == 0
        h["port"] = self.port
        return h


def bridge_labels(cfg) -> dict[str, list[str]]:
    """The label table announced to the MCU: the profile's wake word, commands, scenes and
    sounds (a classifier with other classes adds its labels on the fly)."""
    return {"wake": [cfg["labels.wake_word"]], "command": list(cfg["labels.commands"]),
            "scene": list(cfg["labels.scenes"]), "sound": list(cfg["labels.sounds"])}


@register_sink("serial")
def from_config(section: SinkSection, cfg) -> SerialSink:
    """Every key of the profile's ``[sinks.serial]``; the label table is `bridge_labels`."""
    return SerialSink(section["port"], section["baudrate"], labels=bridge_labels(cfg),
                      queue_size=section["queue_size"], retransmit_ms=section["retransmit_ms"],
                      heartbeat_s=section["heartbeat_s"], reconnect_s=section["reconnect_s"],
                      timestamp=section["timestamp"], types=section.get("types") or None,
                      name=section.name)
