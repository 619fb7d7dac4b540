"""A real mosquitto broker on a free loopback port, for the tests and the benchmarks alike.

    broker = Broker(tmp_path / "broker").start()   # listens on 127.0.0.1:broker.port
    ...
    broker.stop()

Persistence is on, so a restarted broker keeps a persistent subscriber's queued QoS 1 messages
(the delivery tests restart it on purpose), and it is saved on every change
(``autosave_on_changes``): with mosquitto's default of saving every ``autosave_interval``
seconds, a broker that is SIGKILLed loses the messages it acknowledged since the last save.
That is a broker's loss, not the device's; the fault tests kill brokers, so this one must keep
what it acknowledged. Nothing here is product code: it lives with the
benchmarks because they and the tests both start brokers, and tests may import benchmarks.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Broker", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on 127.0.0.1:<free port>, with persistence so that a restart keeps
    a persistent subscriber's session (queued QoS 1 messages)."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        (root / "data").mkdir(parents=True, exist_ok=True)
        self.conf = root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"{self.user_line()}"
            f"persistence_location {root / 'data'}/\nautosave_interval 1\nautosave_on_changes true\n"
            f"log_dest file {root / 'mosquitto.log'}\n")
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def user_line() -> str:
        """As root, mosquitto drops to user 'mosquitto', which cannot read the test's private tmp
        folder (persistence, password file, certificates): stay the user the test runs as."""
        import getpass
        return f"user {getpass.getuser()}\n" if os.geteuid() == 0 else ""

    def start(self) -> "Broker":
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.root / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing its connections (a crash, a power cut)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
