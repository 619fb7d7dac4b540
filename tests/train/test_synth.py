"""Synthetic generators: determinism, levels, and classes that a trivial classifier separates."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import train.synth.speech as speech
from device.frontend import LogMelConfig, log_mel
from train.synth import (NOISE_COLOURS, PERCUSSION_GENERATORS, SCENE_GENERATORS, VOICES, Take,
                         augment_keyword, clip_rng, coloured_noise, fit_into, generate_scene,
                         percussion_clip, place_in_window, room_impulse_response, silence_clip,
                         trim_silence)
from train.waveforms import rms


def _available(backend: str) -> bool:
    try:
        return speech.backend_name(backend) == backend
    except speech.SpeechSynthError:
        return False


# --------------------------------------------------------------------------- augmentation
def test_coloured_noise_levels_and_slopes():
    rng = np.random.default_rng(0)
    spectra = {}
    for colour in NOISE_COLOURS:
        x = coloured_noise(32000, colour, rng, level_rms=0.05)
        assert x.dtype == np.float32 and rms(x) == pytest.approx(0.05, rel=1e-3)
        power = np.abs(np.fft.rfft(x)) ** 2
        spectra[colour] = (power[50:500].mean(), power[8000:12000].mean())
    low_high = {c: lo / hi for c, (lo, hi) in spectra.items()}
    assert low_high["brown"] > low_high["pink"] > low_high["white"] > low_high["blue"] > low_high["violet"]
    assert 0.5 < low_high["white"] < 2.0


def test_room_impulse_response_decays_by_rt60():
    ir = room_impulse_response(np.random.default_rng(2), 16000, rt60_s=0.4)
    assert len(ir) == 6400 and ir[0] == 1.0
    early, late = rms(ir[1:800]), rms(ir[-800:])
    assert 20 * np.log10(early / late) > 40


def test_place_in_window_and_fit_into():
    x = np.arange(1, 6, dtype=np.float32)
    assert place_in_window(x, 8, 2).tolist() == [0, 0, 1, 2, 3, 4, 5, 0]
    assert place_in_window(x, 4, 2).tolist() == [0, 0, 1, 2]
    assert len(fit_into(np.ones(20000, np.float32), 15000)) == 15000


def test_silence_is_quiet_but_not_zero():
    clips = [silence_clip(clip_rng(0, "silence", "s", i), 16000) for i in range(20)]
    levels = [20 * np.log10(rms(c)) for c in clips]
    assert all(-80 < lvl < -30 for lvl in levels)


# --------------------------------------------------------------------------- scenes and drums
def _features(audio, cfg=LogMelConfig()):
    mel = log_mel(audio, cfg)
    # Mean spectrum plus a temporal-modulation summary: enough for these designed classes.
    return np.concatenate([mel.mean(0), mel.std(0), np.abs(np.diff(mel, axis=0)).mean(0)])


def test_scene_generators_are_seeded_and_distinguishable():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a = generate_scene("siren", clip_rng(1, "scene", "siren", 0))
    assert np.array_equal(a, generate_scene("siren", clip_rng(1, "scene", "siren", 0)))
    assert not np.array_equal(a, generate_scene("siren", clip_rng(2, "scene", "siren", 0)))
    assert a.shape == (16000,) and a.dtype == np.float32 and np.max(np.abs(a)) <= 0.99
    # A linear classifier on summary log-mel features, tested on unseen seeds: the classes
    # must differ on the spectrogram the models see, not only by ear.
    labels = sorted(SCENE_GENERATORS)

    def data(indices):
        return ([_features(generate_scene(lab, clip_rng(1, "scene", lab, i)))
                 for lab in labels for i in indices], [lab for lab in labels for _ in indices])
    x_train, y_train = data(range(10))
    x_test, y_test = data(range(100, 104))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = np.mean(model.fit(x_train, y_train).predict(x_test) == np.array(y_test))
    assert accuracy >= 0.9


def test_unknown_scene_label_says_what_exists():
    with pytest.raises(ValueError, match="air_conditioner"):
        generate_scene("animals", np.random.default_rng(0))


@pytest.mark.parametrize("label", sorted(PERCUSSION_GENERATORS))
def test_percussion_onset_is_where_meta_says(label):
    audio, onset_s = percussion_clip(label, clip_rng(3, "drum", label, 0), 1.0, 16000)
    assert audio.shape == (16000,) and np.isfinite(audio).all()
    if label == "silent":
        assert onset_s is None and 20 * np.log10(rms(audio)) < -45
        return
    onset = int(onset_s * 16000)
    before, after = rms(audio[: max(onset - 10, 1)]), rms(audio[onset: onset + 800])
    assert 20 * np.log10(after / before) > 30


def test_percussion_classes_differ_in_brightness_and_length():
    def centroid_and_length(label, i):
        audio, onset_s = percussion_clip(label, clip_rng(4, "drum", label, i))
        power = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
        env = np.abs(audio) > 0.1 * np.max(np.abs(audio))
        return np.sum(freqs * power) / np.sum(power), np.ptp(np.flatnonzero(env)) / 16000
    stats = {lab: np.mean([centroid_and_length(lab, i) for i in range(5)], axis=0)
             for lab in ("bass", "snare", "k-snare", "hi-hat")}
    assert stats["bass"][0] < stats["snare"][0] < stats["k-snare"][0] < stats["hi-hat"][0]
    assert stats["k-snare"][1] < stats["snare"][1]


# --------------------------------------------------------------------------- speech
@pytest.mark.parametrize("backend", ["binary", "library"])
def test_espeak_backends_speak(backend):
    if not _available(backend):
        pytest.skip(f"espeak-ng {backend} backend not installed")
    audio = speech.synthesize(Take("computer", "en-us+f2", 160, 50), 16000, backend)
    trimmed = trim_silence(audio)
    assert audio.dtype == np.float32 and 0.3 < len(trimmed) / 16000 < 1.2
    assert 20 * np.log10(rms(trimmed)) > -30
    # Same take twice: same audio (the corpus relies on it for determinism).
    again = speech.synthesize(Take("computer", "en-us+f2", 160, 50), 16000, backend)
    assert np.array_equal(audio, again)


def test_every_voice_exists_in_the_binary():
    if not _available("binary"):
        pytest.skip("espeak-ng binary not installed")
    for voice in VOICES[::5]:
        assert len(speech.synthesize(Take("go", voice), 16000, "binary")) > 1000, voice


def test_no_espeak_gives_an_error_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now raises ImportError
    with pytest.raises(speech.SpeechSynthError, match="apt-get install espeak-ng.*espeakng-loader"):
        speech.synthesize(Take("yes"))


def test_augment_keyword_keeps_the_word_inside_the_window():
    rng = np.random.default_rng(5)
    word = np.sin(np.linspace(0, 400, 9000)).astype(np.float32)
    for _ in range(10):
        clip = augment_keyword(word, rng, 16000, noise_probability=0.0, room_probability=0.0)
        assert clip.shape == (16000,)
        loud = np.flatnonzero(np.abs(clip) > 1e-6)
        assert np.ptp(loud) + 1 >= 8900  # the whole word fits, shifted but not cut


def test_sentences_are_seeded_and_never_say_an_excluded_word():
    from train.synth.sentences import sentence
    exclude = ["computer", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    said = [sentence(np.random.default_rng(i), exclude) for i in range(300)]
    assert said[:5] == [sentence(np.random.default_rng(i), exclude) for i in range(5)]
    assert len(set(said)) > 250                                # varied
    words = {w for s in said for w in s.split()}
    assert not words & set(exclude) and "computer" not in " ".join(said)
    assert "computer" in {w for s in (sentence(np.random.default_rng(i)) for i in range(2000))
                          for w in s.split()}                   # excluded, not missing
    # A template's literal words count too: "is" and "was" are never said once excluded.
    no_is = {w for i in range(300) for w in sentence(np.random.default_rng(i), ["is", "was"]).split()}
    assert not no_is & {"is", "was"}
    from train.synth.sentences import VOCABULARY
    with pytest.raises(ValueError, match="excluded"):
        sentence(np.random.default_rng(0), VOCABULARY["det"] + VOCABULARY["pron"]
                 + VOCABULARY["adv"] + VOCABULARY["noun"])


def test_running_window_cuts_a_long_take_and_places_a_short_one():
    from train.synth.keywords import running_window
    take = np.sin(np.linspace(0, 3000, 48000)).astype(np.float32) * np.linspace(0.1, 1, 48000)
    a = running_window(take, np.random.default_rng(3), 16000, noise_probability=0.0,
                       room_probability=0.0)
    b = running_window(take, np.random.default_rng(3), 16000, noise_probability=0.0,
                       room_probability=0.0)
    assert a.shape == (16000,) and np.array_equal(a, b)
    assert (np.abs(a[:1000]) > 0).any() and (np.abs(a[-1000:]) > 0).any()   # no silent padding
    short = running_window(take[:4000], np.random.default_rng(3), 16000, noise_probability=0.0,
                           room_probability=0.0)
    assert short.shape == (16000,) and (short == 0).sum() >= 12000
