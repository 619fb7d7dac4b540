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
    on_closed : callable or None
        Called once when the reader has gone (``detect ... | head``: a broken pipe). The sink
        then writes nothing more; ``detect`` uses it to stop, as a Unix filter does.
    """

    def __init__(self, stream: TextIO | None = None, types: Sequence[str] | None = None,
                 name: str = "stdout", on_closed=None):
        super().__init__(name, types)
        self._stream = stream
        self.on_closed = on_closed
        self.closed_by_reader = False

    def send(self, event: dict) -> None:
        if self.closed_by_reader:
            return
        stream = self._stream or sys.stdout
        try:
            stream.write(event_json(event) + "\n")
            stream.flush()
        except BrokenPipeError:
            self._reader_gone(stream)
            return
        self.sent += 1

    def _reader_gone(self, stream) -> None:
        self.closed_by_reader = True
        if stream is sys.stdout:
            # Python would report the broken pipe again when it flushes stdout at exit.
            import os
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        if self.on_closed is not None:
            self.on_closed()

    def flush(self, timeout_s: float = 5.0) -> bool:
        if not self.closed_by_reader:
            try:
                (self._stream or sys.stdout).flush()
            except BrokenPipeError:
                self._reader_gone(self._stream or sys.stdout)
        return True


@register_sink("stdout")
def from_config(section: SinkSection, cfg) -> StdoutSink:
    """``[sinks.<name>] kind = "stdout"``: only ``types`` (optional)."""
    return StdoutSink(types=section.get("types") or None, name=section.name)
