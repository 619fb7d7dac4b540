"""Fixtures for the firmware_bridge tests: real pseudo-terminal links and a slow marker.

Tests marked ``slow`` (the long fuzz run) are skipped when no ``-m``
expression is given, unless ``HOPWISE_RUN_SLOW=1`` is set, so the default run
stays quick; ``-m slow`` selects them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_helpers import PtyLink  # noqa: E402


def pytest_configure(config):
    # also registered in pyproject.toml; repeated here so this directory works on its own
    config.addinivalue_line("markers", "slow: long-running (fuzzing); run with -m slow or HOPWISE_RUN_SLOW=1")


def pytest_collection_modifyitems(config, items):
    # With an explicit -m expression, pytest's own selection decides.
    if os.environ.get("HOPWISE_RUN_SLOW") == "1" or config.getoption("-m"):
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason="slow test: run with -m slow or HOPWISE_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def pty_link():
    with tempfile.TemporaryDirectory(prefix="hopwise_pty_") as directory:
        link = PtyLink(Path(directory))
        try:
            yield link
        finally:
            link.close()
