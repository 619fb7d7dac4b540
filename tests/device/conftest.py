"""Fixtures of the device runtime tests (helpers.py holds the classes they use)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from helpers import broker, recording, tone_model  # noqa: E402,F401  (fixtures)
