"""Shared test fixtures: where the real recordings are, a real SSH server, a quiet TensorFlow."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.mosquitto import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ logs drown pytest output; tests that need it import it lazily.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _no_real_fetch_cache(tmp_path_factory, monkeypatch):
    """Every test sees an empty fetch cache of its own and never reaches the internet: a user's
    ~/.cache/hopwise must not change what a test builds, and `make train`'s network probe
    (train/fetch.py) stays off. Tests of the fetcher point it at a loopback server."""
    monkeypatch.setenv("HOPWISE_CACHE", str(tmp_path_factory.mktemp("hopwise-cache")))
    monkeypatch.setenv("HOPWISE_OFFLINE", "1")


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the repo (or $HOPWISE_SHARED_DATA), None when absent."""
    env = os.environ.get("HOPWISE_SHARED_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings; tests that need them skip, saying why, when they are not here."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real recordings not found at ../shared/data (set HOPWISE_SHARED_DATA to "
                    "their folder to run this test)")
    return path


@pytest.fixture
def sshd(tmp_path):
    """A real OpenSSH server on 127.0.0.1 that accepts one freshly made key, as the user the
    tests run as: yields ``(port, ssh options)`` for ``export.deploy.SSHTarget(f"{user}@127.0.0.1",
    path, port)`` (deploy and ``make bench TARGET=...`` tests). Skips without openssh-server."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (make setup installs it as root)")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    os.chmod(d / "authorized_keys", 0o600)
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n")
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"sshd could not start here: {proc.stdout.read().decode()[-300:]}")
            time.sleep(0.1)
    options = ["-i", str(d / "client_key"), "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    yield port, options
    proc.terminate()
    proc.wait(timeout=10)
