"""Event sequence numbers that stay unique across restarts.

Consumers de-duplicate on ``(device, seq)`` (MQTT delivers at least once, so a message can come
twice after a reconnect). A counter that starts at 0 with every process would make a restarted
device's new events look like duplicates of old ones, and a de-duplicating consumer would drop
them. `SequenceStore` keeps the counter in the state directory instead:

* at start it reads the stored value and continues from there;
* it *reserves* numbers a block at a time (``block``) and writes the end of the reserved block
  to disk before handing any of it out, so a crash (no clean shutdown) can skip numbers but can
  never hand one out twice;
* a write is atomic (a temporary file renamed over the old one).

The rule for consumers: ``seq`` of one device only grows, across restarts too; gaps are normal
(a restart after a crash skips the rest of a block). Usage::

    store = SequenceStore(BuildPaths(cfg).state_dir / "event_seq")
    seq = store.next()
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["SequenceStore"]

log = logging.getLogger("hopwise.pipeline")


class SequenceStore:
    """A persistent, strictly increasing counter.

    Parameters
    ----------
    path : str or Path
        The file holding the first number not yet reserved (created with its folder).
    block : int
        Numbers reserved per disk write: larger = fewer writes, bigger gaps after a crash.
    """

    def __init__(self, path: str | Path, block: int = 1000):
        self.path = Path(path)
        self.block = max(1, int(block))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.current = self._read()
        self.reserved = self.current
        self._reserve()

    def _read(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise OSError(f"cannot read the event counter {self.path} ({exc}); check the "
                          f"state directory's permissions (runtime.state_dir)") from exc
        try:
            value = int(text)
        except ValueError:
            # A damaged counter must not restart numbering at 0 silently: jump well past any
            # number it could have handed out (a day of events at 100 per second).
            value = 10_000_000
            log.warning("event counter %s is damaged (%r): continuing from %d", self.path,
                        text[:40], value)
        return max(0, value)

    def _reserve(self) -> None:
        self.reserved = self.current + self.block
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{self.reserved}\n", encoding="ascii")
        os.replace(tmp, self.path)

    def next(self) -> int:
        """The next sequence number (reserving a new block on disk when this one is used up)."""
        value = self.current
        self.current += 1
        if self.current >= self.reserved:
            self._reserve()
        return value
