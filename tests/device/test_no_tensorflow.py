"""device/ is what runs on the Pi: it must not import TensorFlow, directly or through a module."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

DEVICE = Path(__file__).resolve().parents[2] / "device"
FORBIDDEN = ("tensorflow", "keras", "tf_keras", "librosa")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_module_in_device_imports_tensorflow_at_top_level():
    offenders = []
    for path in DEVICE.rglob("*.py"):
        # A fallback interpreter import inside a function is allowed only in interpreter.py,
        # and only for `tensorflow.lite` on a host; anything else is an offence.
        for name in _imports(path):
            root = name.split(".")[0]
            if root in FORBIDDEN and not (path.name == "interpreter.py" and name.startswith("tensorflow")):
                offenders.append(f"{path.relative_to(DEVICE.parent)}: import {name}")
    assert not offenders, "device/ must not import host-only packages:\n" + "\n".join(offenders)


def test_importing_every_device_module_loads_no_tensorflow():
    def module_name(p: Path) -> str:
        parts = p.relative_to(DEVICE.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)  # a package: its name
    modules = sorted({module_name(p) for p in DEVICE.rglob("*.py") if p.name != "__main__.py"})
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=DEVICE.parent, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing device/ pulled in: {out.stdout.strip()}"
