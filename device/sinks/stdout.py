"""JSON lines on stdout (or any text stream): one event per line, flushed at once."""
from __future__ import annotations

import sys
from typing import Sequence, TextIO

from .base import Sink, SinkSection, event_json, register_sink


class StdoutSink(Sink):
    """Writes ``event_json(event) + "\\n"`` and flushes, so a pipe sees events immediately.

    Parameters
    ----------
    stream : text stream, default ``sys.stdout`` (looked up at each write, so redirection works).
    types : event types to write (None = all); ``detect`` writes no heartbeats by default.
    """

    def __init__(self, stream: TextIO | None = None, types: Sequence[str] | None = None,
                 name: str = "stdout"):
        super().__init__(name, types)
        self._stream = stream

    def send(self, event: dict) -> None:
        stream = self._stream or sys.stdout
        stream.write(event_json(event) + "\n")
        stream.flush()
        self.sent += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        (self._stream or sys.stdout).flush()
        return True


@register_sink("stdout")
def from_config(section: SinkSection, cfg) -> StdoutSink:
    """``[sinks.<name>] kind = "stdout"``: only ``types`` (optional)."""
    return StdoutSink(types=section.get("types") or None, name=section.name)
