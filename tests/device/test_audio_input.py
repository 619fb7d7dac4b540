"""Odd audio gets a clear error or a counted warning, never a traceback or a silent change:
empty, random, truncated files, folders, NaN/inf samples, samples beyond +-1, short tails, and a
capture device that does not exist."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from device.audio_source import AudioInputError, FileSource


def _drain(src: FileSource) -> int:
    n = 0
    with src:
        while (hop := src.read(160)) is not None:
            n += len(hop)
    return n


@pytest.fixture
def noise():
    return (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "not audio that libsndfile"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: None, "does not exist"),
])
def test_unreadable_files_are_one_clear_error(tmp_path, make, match):
    path = tmp_path / "x.wav"
    make(path)
    with pytest.raises(AudioInputError, match=match):
        FileSource(path)


def test_dev_null_is_not_audio():
    with pytest.raises(AudioInputError, match="not audio"):
        FileSource("/dev/null")


def test_nan_and_inf_become_silence_and_are_counted(tmp_path, noise, caplog):
    x = noise.copy()
    x[100:150] = np.nan
    x[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    src = FileSource(path)
    with caplog.at_level(logging.WARNING, "hopwise.audio"):
        _drain(src)
    assert src.health()["nonfinite_samples"] == 51
    assert sum("NaN or infinite" in r.message for r in caplog.records) == 1  # warned once


def test_audio_far_beyond_full_scale_is_clipped_and_counted(tmp_path, noise, caplog):
    path = tmp_path / "loud.wav"
    sf.write(path, noise * 30, 16000, subtype="FLOAT")
    src = FileSource(path)
    with caplog.at_level(logging.WARNING, "hopwise.audio"):
        _drain(src)
    assert src.health()["clipped_samples"] > 1000
    assert any("beyond +-1" in r.message for r in caplog.records)


def test_truncated_wav_and_short_tail_are_warned_about(tmp_path, noise, caplog):
    good = tmp_path / "good.wav"
    sf.write(good, np.concatenate([noise, noise[:77]]), 16000)
    cut = tmp_path / "cut.wav"
    data = good.read_bytes()
    cut.write_bytes(data[:len(data) // 2 + 1])
    with caplog.at_level(logging.WARNING, "hopwise.audio"):
        src = FileSource(cut)
        _drain(src)
        full = FileSource(good)
        assert _drain(full) == 16000
    assert src.health()["truncated"] and not full.health()["truncated"]
    messages = " ".join(r.message for r in caplog.records)
    assert "is truncated" in messages and "(about 0.50 s)" in messages
    assert "shorter than one hop" in messages and full.tail_samples == 77


def test_a_capture_device_that_does_not_exist_is_named():
    pytest.importorskip("sounddevice")
    from device.audio_source import SoundDeviceSource
    with pytest.raises(AudioInputError, match="no input device"):
        SoundDeviceSource(device=99)
