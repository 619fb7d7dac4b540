"""Speech engines beyond espeak-ng: every synthesiser found is used, a missing one is reported
(not fatal), and the takes drawn from them are a pure function of the seed."""
from __future__ import annotations

import numpy as np
import pytest

import train.synth.voices as voices
from train.synth import VOICES, Take, clip_rng, plan_take, synthesize
from train.synth.voices import ENGINES, find_engines

REPORT = find_engines(ENGINES, VOICES)


def test_every_engine_is_found_or_said_missing_with_the_fix():
    assert set(REPORT.voices) | set(REPORT.missing) == set(ENGINES)
    assert not set(REPORT.voices) & set(REPORT.missing)
    lines = "\n".join(REPORT.lines())
    for name, why in REPORT.missing.items():
        assert f"{name}: not used ({why}; to add it:" in lines
    for name, found in REPORT.voices.items():
        assert found and all(voices.engine_of(v) == name for v in found)


@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "espeak-ng"])
def test_each_engine_found_speaks(engine):
    if engine not in REPORT.voices:
        pytest.skip(f"{engine} not on this machine: {REPORT.missing[engine]}")
    voice = REPORT.voices[engine][0]
    slow = synthesize(Take("computer", voice, rate_wpm=120), 16000)
    fast = synthesize(Take("computer", voice, rate_wpm=230), 16000)
    for audio in (slow, fast):
        assert audio.dtype == np.float32 and np.isfinite(audio).all()
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3, f"{voice} rendered silence"
    assert len(slow) > 1.2 * len(fast), "the speaking rate reaches the engine"


def test_a_missing_engine_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)  # no flite, no text2wave
    report = find_engines(("flite", "festival"), VOICES)
    assert report.voices == {}
    assert "no flite command" in report.missing["flite"]
    assert "apt-get install flite" in "\n".join(report.lines())
    with pytest.raises(ValueError, match="unknown speech engines"):
        find_engines(("flite", "sam"), VOICES)


def test_takes_are_drawn_per_engine_by_weight_and_seeded():
    pools = {"espeak-ng": VOICES, "flite": ("flite:a", "flite:b"), "piper": ("piper:joe",)}
    weights = {"espeak-ng": 0.5, "flite": 0.0, "piper": 0.5}

    def draw(seed):
        return [plan_take("computer", clip_rng(seed, "kw", "computer", i), pools,
                          warp=(0.88, 1.15), engine_weights=weights) for i in range(200)]

    takes = draw(7)
    assert takes == draw(7) and takes != draw(8)
    engines = [voices.engine_of(t.voice) for t in takes]
    assert "flite" not in engines, "a zero weight draws nothing from that engine"
    assert 60 < engines.count("piper") < 140
    warps = np.array([t.warp for t in takes])
    assert warps.min() >= 0.88 and warps.max() <= 1.15 and warps.std() > 0.03


def test_a_flat_voice_list_without_warp_draws_as_before():
    rng_a, rng_b = clip_rng(1, "kw", "yes", 3), clip_rng(1, "kw", "yes", 3)
    take = plan_take("yes", rng_a)
    assert take.warp == 1.0 and take.voice in VOICES
    # The draw order of earlier corpora: voice, rate, pitch and nothing else.
    assert take.voice == VOICES[int(rng_b.integers(len(VOICES)))]
    assert take.rate_wpm == int(rng_b.integers(120, 231))


def test_warp_raises_pitch_and_shortens():
    if "espeak-ng" not in REPORT.voices:
        pytest.skip("no espeak-ng")
    base = synthesize(Take("computer", "en-us+m3"), 16000)
    high = synthesize(Take("computer", "en-us+m3", warp=1.15), 16000)
    assert len(high) == pytest.approx(len(base) / 1.15, rel=0.01)

    def centroid(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return float((np.arange(len(power)) / len(power) * power).sum() / power.sum())

    assert centroid(high) > centroid(base) * 1.05
