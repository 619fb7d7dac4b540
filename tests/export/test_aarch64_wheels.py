"""Do the device requirements install on a Raspberry Pi? Each one resolved to wheels for 64-bit
Raspberry Pi OS with ``pip download --only-binary=:all:`` (aarch64; Bookworm: Python 3.11,
glibc 2.36; Trixie: Python 3.13, glibc 2.41). Slow, and it needs PyPI (skips without it).

Every manylinux_2_N tag the OS's glibc allows is offered: with ``manylinux2014_aarch64`` alone
pip finds no ai-edge-litert at all, since its aarch64 wheels (2.3.0: cp311 and cp313) are
tagged manylinux_2_27."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from export.deploy import _requirements

# (Python, the newest manylinux glibc the OS has)
RASPBERRY_PI_OS = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41)}


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def resolve(requirement: str, python: str, glibc_minor: int, dest) -> tuple[bool, str]:
    """``(found, pip's last line)`` for one requirement and its dependencies."""
    platforms = [f"--platform=manylinux_2_{m}_aarch64" for m in range(17, glibc_minor + 1)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--platform=manylinux2014_aarch64", *platforms, "--platform=linux_aarch64",
         f"--python-version={python}", "--implementation=cp", "-d", str(dest), requirement],
        capture_output=True, text=True, timeout=600)
    last = (proc.stderr.strip().splitlines() or ["ok"])[-1]
    return proc.returncode == 0, last


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("release", sorted(RASPBERRY_PI_OS))
def test_every_device_requirement_has_aarch64_wheels(release, tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable from here: the wheel check needs it")
    python, glibc = RASPBERRY_PI_OS[release]
    env = {"python_version": python, "platform_machine": "aarch64", "sys_platform": "linux"}
    results = {}
    for text in _requirements():
        req = Requirement(text)
        if req.marker and not req.marker.evaluate(env):
            continue
        results[text] = resolve(text, python, glibc, tmp_path)
    print(f"\n{release} (Python {python}, aarch64):")
    for text, (ok, last) in results.items():
        print(f"  {'ok  ' if ok else 'NONE'} {text}{'' if ok else ': ' + last}")
    missing = [t for t, (ok, _) in results.items() if not ok]
    assert not missing, (f"no aarch64 wheel for Python {python} ({release}): "
                         f"{', '.join(missing)}")
