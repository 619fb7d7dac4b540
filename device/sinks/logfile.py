"""Rotating JSON-lines log file (``logging.handlers.RotatingFileHandler``)."""
from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path
from typing import Sequence

from ..paths import BuildPaths
from .base import Sink, SinkSection, event_json, register_sink


class LogFileSink(Sink):
    """Appends one JSON line per event to ``path``, rotating at ``max_bytes`` and keeping
    ``backup_count`` old files (``events.jsonl.1`` ...). Bounded disk use on an SD card: total is
    at most ``max_bytes * (backup_count + 1)``.
    """

    def __init__(self, path: str | Path, max_bytes: int = 1_000_000, backup_count: int = 5,
                 types: Sequence[str] | None = None, name: str = "logfile"):
        super().__init__(name, types)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=int(max_bytes), backupCount=int(backup_count), encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.Logger(f"hopwise.events.{name}")  # private: not the root's handlers
        self._logger.addHandler(self._handler)
        self._logger.propagate = False

    def send(self, event: dict) -> None:
        self._logger.info(event_json(event))
        self.sent += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        self._handler.flush()
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self._handler.flush()
        self._handler.close()

    def health(self) -> dict:
        h = super().health()
        h["path"] = str(self.path)
        return h


@register_sink("logfile")
def from_config(section: SinkSection, cfg) -> LogFileSink:
    """``path`` (relative: under ``runtime.state_dir``), ``max_bytes``, ``backup_count``."""
    path = Path(section["path"])
    path = path if path.is_absolute() else BuildPaths(cfg).state_dir / path
    return LogFileSink(path, section["max_bytes"], section["backup_count"],
                       types=section.get("types") or None, name=section.name)
