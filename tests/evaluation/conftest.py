"""Fixtures the evaluation tests share."""
from __future__ import annotations

import pytest

from device.config import load_config


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory):
    """The hand-weighted int8 tone model (`export.standin.build_tone_model`: its wake word is a
    tone), built once per session with TensorFlow."""
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_model
    return build_tone_model(tmp_path_factory.mktemp("tone"), load_config("default"))
