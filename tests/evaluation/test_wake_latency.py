"""`python -m evaluation.wake_latency`: word end -> wake event, on a stream laid out as the
wake-word benchmark lays its positives out, with the tone model (a tone that has just ended is
the wake word) through the real pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from device.config import load_config


def test_latency_is_measured_from_the_word_end(tone_model, tmp_path):
    import soundfile as sf
    from device.audio_source import Tone, render_tones
    from evaluation.wake_latency import latencies, word_end_s
    from export.standin import WAKE_HZ, WORD_S
    # One "recording": 0.3 s of silence, the word, 0.5 s of silence.
    rec = render_tones([Tone(0.3, 0.3 + WORD_S, WAKE_HZ, 0.3)], 0.8 + WORD_S, 16000, noise=0.0)
    rec_path = tmp_path / "rec.wav"
    sf.write(rec_path, rec, 16000)
    assert word_end_s(rec_path) == pytest.approx(0.3 + WORD_S, abs=0.011)
    starts = [1.0, 4.0, 7.0]
    stream = np.zeros(10 * 16000, np.float32)
    for s in starts:
        stream[int(s * 16000):int(s * 16000) + len(rec)] = rec
    path = tmp_path / "positives.flac"
    sf.write(path, np.round(stream * 32767).astype(np.int16), 16000)
    entry = {"path": str(path), "segments": [[s, s + len(rec) / 16000, "positive", str(rec_path)]
                                             for s in starts]}
    cfg = load_config("default", ["decisions.smoothing_ms=100", "decisions.refractory_ms=500"])
    got = latencies(cfg, str(tone_model), entry)
    assert got["hits"] == 3 and got["positives"] == 3
    # The tone model says "word" from its first stride after the word's end (100 ms stride).
    assert 0.0 <= got["p50_ms"] <= 200.0, got


def test_delivery_waits_for_the_end_of_the_capture_block():
    """A live device reads a capture block once it has all arrived: an event at the end of a
    hop is out at the end of the block holding that hop (not before, not a block late)."""
    from evaluation.wake_latency import delivered_s
    t = np.array([0.01, 0.04, 0.05, 0.08, 1.23])
    assert np.allclose(delivered_s(t, 10.0), t)
    assert np.allclose(delivered_s(t, 40.0), [0.04, 0.04, 0.08, 0.08, 1.24])
    assert np.allclose(delivered_s(t, 32.0), [0.032, 0.064, 0.064, 0.096, 1.248])
