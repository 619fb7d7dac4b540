"""Shared test fixtures: where the real recordings are, and a quiet TensorFlow."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ logs drown pytest output; tests that need it import it lazily.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
