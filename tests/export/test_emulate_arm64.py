"""The bundle installs and passes its self-check on arm64 Debian under qemu-user emulation
(`export.emulate_arm64`). Slow: the first run makes the root with debootstrap (tens of minutes
emulated); later runs reuse it (``HOPWISE_ARM64_ROOT``, default /var/tmp/hopwise-arm64). Skips,
saying why, where it cannot run: not root, no debootstrap/qemu-user-static, binfmt_misc not
mountable, or no Debian mirror / PyPI."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from device.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]


def test_selfcheck_passes_on_emulated_arm64(tmp_path):
    pytest.importorskip("tensorflow")
    from export.emulate_arm64 import EmulationError, ensure_binfmt, selfcheck_emulated
    from export.standin import build_tone_model
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot, mounting binfmt_misc)")
    if shutil.which("debootstrap") is None or not Path("/usr/bin/qemu-aarch64-static").exists():
        pytest.skip("apt-get install debootstrap qemu-user-static binfmt-support")
    try:
        ensure_binfmt()
    except EmulationError as exc:
        pytest.skip(str(exc))
    export_dir = tmp_path / "build" / "export"
    build_tone_model(export_dir, load_config("default"), name="multitask_int8")
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'"])
    root = Path(os.environ.get("HOPWISE_ARM64_ROOT", "/var/tmp/hopwise-arm64"))
    assert selfcheck_emulated(cfg, root, "bookworm", "http://deb.debian.org/debian") == 0
    import json
    rows = {r["name"]: r for r in json.loads((root / "opt/hopwise/selfcheck.json").read_text())["checks"]}
    assert rows["bundle"]["status"] == rows["models"]["status"] == rows["signal"]["status"] == "ok"
    assert rows["budget"]["status"] == "skip"
