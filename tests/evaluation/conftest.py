"""Fixtures the evaluation tests share."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from device.audio_source import Tone, render_tones
from device.config import load_config

RATE = 16000


@pytest.fixture(scope="session")
def tone_model(tmp_path_factory):
    """The hand-weighted int8 tone model (`export.standin.build_tone_model`: its wake word is a
    tone), built once per session with TensorFlow."""
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_model
    return build_tone_model(tmp_path_factory.mktemp("tone"), load_config("default"))


@pytest.fixture
def data(tmp_path):
    """A benchmark's recordings in their standard layouts, made of tones the tone model knows:
    6 wake words, 3 other phrases of the channel, 3 Speech Commands clips, an ESC-50 clip, 6 s of
    "continuous audio" with the wake tone planted at 3 s (the one false alarm), noise, and one
    undecodable file."""
    from export.standin import SIREN_HZ, WAKE_HZ, WORD_S, YES_HZ
    rng = np.random.default_rng(5)

    def write(path, tones, seconds, noise=0.0):
        path.parent.mkdir(parents=True, exist_ok=True)
        x = render_tones(tones, seconds, RATE) + noise * rng.standard_normal(int(seconds * RATE))
        sf.write(path, x.astype(np.float32), RATE, subtype="PCM_16")

    d = tmp_path / "data"
    word = WORD_S + 0.6
    for i in range(6):
        write(d / "wake_words" / "computer" / f"{i}.wav", [Tone(0.3, 0.3 + WORD_S, WAKE_HZ, 0.3)], word)
    for i in range(3):  # the channel's other phrase: a "yes" tone, never the wake word
        write(d / "wake_words" / "alexa" / f"{i}.wav", [Tone(0.3, 0.3 + WORD_S, YES_HZ, 0.3)], word)
    for i in range(3):
        write(d / "sc" / "yes" / f"spk{i}_nohash_0.wav", [], 1.0, noise=0.01)
    write(d / "esc50" / "audio" / "1-1-A-42.wav", [Tone(0.2, 1.8, SIREN_HZ, 0.3)], 2.0)
    # Continuous audio with the wake tone at 3 s: the one false alarm the benchmark must count.
    write(d / "long" / "speech_x.wav", [Tone(3.0, 3.0 + WORD_S, WAKE_HZ, 0.3)], 6.0)
    write(d / "noise" / "hum.wav", [], 5.0, noise=0.1)
    (d / "wake_words" / "alexa" / "broken.flac").write_bytes(b"not audio")  # named and skipped
    return d
