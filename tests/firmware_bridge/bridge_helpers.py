"""Helpers for the firmware_bridge tests: a real pty link and a polling wait."""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import tty
from pathlib import Path


class PtyLink:
    """Two real pty pairs joined back to back, like ``socat pty,link=A pty,link=B``.

    ``pi_path`` and ``mcu_path`` are symlinks to the two slave devices, so the
    link and the simulator open ordinary serial device paths.  :meth:`cut`
    closes the masters and removes the symlinks (the cable is pulled: open
    ports get I/O errors, the paths vanish); :meth:`restore` makes fresh pty
    pairs behind the same paths.  :meth:`inject` writes raw bytes towards one
    side, to simulate line noise.
    """

    def __init__(self, directory: Path) -> None:
        self.pi_path = str(directory / "pi")
        self.mcu_path = str(directory / "mcu")
        self._lock = threading.Lock()
        self._masters: dict = {}
        self._slaves: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name="PtyLink", daemon=True)
        self.restore()
        self._thread.start()

    def _make_pair(self, link_path: str) -> int:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before the port is opened
        os.set_blocking(master, False)
        try:
            os.unlink(link_path)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(slave), link_path)
        # Holding a slave fd keeps the master from seeing EIO whenever the
        # simulator closes its side (it may reopen the same path).
        self._slaves.append(slave)
        return master

    def restore(self) -> None:
        with self._lock:
            if self._masters:
                return
            self._masters = {"pi": self._make_pair(self.pi_path), "mcu": self._make_pair(self.mcu_path)}

    def cut(self) -> None:
        with self._lock:
            for path in (self.pi_path, self.mcu_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            for fd in list(self._masters.values()) + self._slaves:
                os.close(fd)
            self._masters = {}
            self._slaves = []

    def inject(self, side: str, data: bytes) -> None:
        """Write ``data`` so that the ``side`` ("pi" or "mcu") port reads it."""
        with self._lock:
            os.write(self._masters[side], data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.cut()

    def _relay(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                masters = dict(self._masters)
            if not masters:
                time.sleep(0.005)
                continue
            try:
                readable, _, _ = select.select(list(masters.values()), [], [], 0.01)
            except (OSError, ValueError):
                continue  # a master was closed by cut() meanwhile
            with self._lock:
                if self._masters != masters:
                    continue
                for side, other in (("pi", "mcu"), ("mcu", "pi")):
                    if masters[side] not in readable:
                        continue
                    try:
                        data = os.read(masters[side], 4096)
                    except OSError as exc:
                        if exc.errno not in (errno.EIO, errno.EAGAIN):
                            raise
                        continue
                    try:
                        os.write(masters[other], data)
                    except OSError:
                        pass  # a full buffer loses bytes, like an overrun UART


def wait_until(predicate, timeout_s: float, step=None, interval_s: float = 0.002) -> bool:
    """Call ``step()`` and check ``predicate()`` until true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
