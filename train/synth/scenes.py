"""Procedural stand-ins for UrbanSound8K's ten classes.

Each generator ``f(rng, n_samples, sample_rate) -> float32`` draws its own parameters from the
generator, so two clips of a class differ (pitch, rhythm, timing) while each class keeps the
structure that tells it apart by ear and on a spectrogram: steady hum vs. two-tone bursts vs.
low pulse train vs. sweep. They are not realistic; they let the whole pipeline train and run
offline, and the real-data profile replaces them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..waveforms import db_to_gain, rms
from .augment import coloured_noise

__all__ = ["SCENE_GENERATORS", "generate_scene"]

# Vowel formants (F1, F2, F3 in Hz) of a child-like voice: the "babble" of children_playing.
_VOWELS = np.array([[850, 1600, 3000], [600, 2700, 3300], [400, 3100, 3600],
                    [700, 1200, 2900], [450, 1000, 2800], [550, 2000, 3000]], dtype=np.float64)


def _time(n_samples: int, sample_rate: int) -> np.ndarray:
    return np.arange(n_samples) / sample_rate


def _harmonics(phase: np.ndarray, weights) -> np.ndarray:
    """Sum of ``w_k * sin(k * phase)`` for k = 1, 2, ..."""
    return sum(w * np.sin((k + 1) * phase) for k, w in enumerate(weights) if w)


def _band_noise(n_samples: int, sample_rate: int, low_hz: float, high_hz: float,
                rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    out = np.fft.irfft(spectrum, n=n_samples)
    return out / max(rms(out), 1e-12)


def _burst_envelope(n_samples: int, sample_rate: int, start_s: float, length_s: float,
                    attack_s: float = 0.01, release_s: float = 0.03) -> np.ndarray:
    t = _time(n_samples, sample_rate) - start_s
    rise = np.clip(t / attack_s, 0.0, 1.0)
    fall = np.clip((length_s - t) / release_s, 0.0, 1.0)
    return np.where((t >= 0) & (t <= length_s), rise * fall, 0.0)


def _events(rng: np.random.Generator, clip_s: float, count: int, length_s: float,
            gap_s: float) -> list[float]:
    """Start times of ``count`` events of ``length_s`` that fit in the clip, in order."""
    span = count * length_s + (count - 1) * gap_s
    start = rng.uniform(0.0, max(0.0, clip_s - span))
    return [start + i * (length_s + gap_s) for i in range(count)]


# --------------------------------------------------------------------------- the ten classes
def air_conditioner(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    f0 = rng.uniform(80, 200)
    blade_hz = rng.uniform(4, 12)
    hum = _harmonics(2 * np.pi * f0 * t, [1.0, 0.5, 0.3, 0.15]) * (1 + 0.2 * np.sin(2 * np.pi * blade_hz * t))
    rumble = _band_noise(n_samples, sample_rate, 30, rng.uniform(1500, 3000), rng)
    return 0.3 * hum / max(rms(hum), 1e-12) + rumble


def car_horn(rng, n_samples, sample_rate):
    clip_s = n_samples / sample_rate
    t = _time(n_samples, sample_rate)
    f1 = rng.uniform(350, 500)
    f2 = f1 * rng.choice([1.25, 1.2, 1.33])
    # Horns are rich, square-ish: many harmonics with slow roll-off.
    weights = [1.0 / (k + 1) ** 0.7 for k in range(int(3800 // f2))]
    tone = _harmonics(2 * np.pi * f1 * t, weights) + _harmonics(2 * np.pi * f2 * t, weights)
    count = int(rng.integers(1, 3))
    length = rng.uniform(0.2, 0.8 * clip_s / count)
    env = sum(_burst_envelope(n_samples, sample_rate, s, length, 0.01, 0.02)
              for s in _events(rng, clip_s, count, length, rng.uniform(0.05, 0.15)))
    return tone * env + 0.05 * _band_noise(n_samples, sample_rate, 50, 4000, rng)


def children_playing(rng, n_samples, sample_rate):
    clip_s = n_samples / sample_rate
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    for _ in range(int(rng.integers(3, 7))):
        voice = np.zeros(n_samples)
        pos = rng.uniform(-0.1, 0.2)
        while pos < clip_s:
            length = rng.uniform(0.08, 0.3)
            f_start, f_end = rng.uniform(250, 450), rng.uniform(220, 500)
            f0 = np.clip(f_start + (f_end - f_start) * (t - pos) / length, 150, 600)
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            formants = _VOWELS[rng.integers(len(_VOWELS))]
            mean_f0 = (f_start + f_end) / 2
            weights = [np.sum(np.exp(-0.5 * ((k * mean_f0 - formants) / 150.0) ** 2)) + 0.02
                       for k in range(1, int(4000 // mean_f0))]
            voice += _harmonics(phase, weights) * _burst_envelope(n_samples, sample_rate, pos,
                                                                  length, 0.02, 0.04)
            pos += length + rng.uniform(0.02, 0.2)
        out += voice * rng.uniform(0.3, 1.0)
    return out + 0.1 * rms(out) * _band_noise(n_samples, sample_rate, 100, 6000, rng)


def dog_bark(rng, n_samples, sample_rate):
    clip_s = n_samples / sample_rate
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    count = int(rng.integers(1, 4))
    length = rng.uniform(0.08, 0.18)
    formant = rng.uniform(900, 1800)
    for start in _events(rng, clip_s, count, length, rng.uniform(0.08, 0.25)):
        f0 = rng.uniform(300, 650) * np.clip(1.0 - 0.4 * (t - start) / length, 0.6, 1.0)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        weights = [np.exp(-0.5 * ((k * 450 - formant) / 600.0) ** 2) + 0.1 for k in range(1, 10)]
        env = _burst_envelope(n_samples, sample_rate, start, length, 0.005, 0.06)
        rough = 0.4 * _band_noise(n_samples, sample_rate, 500, 4000, rng)
        out += (_harmonics(phase, weights) + rough) * env
    return out + 0.02 * _band_noise(n_samples, sample_rate, 50, 3000, rng)


def drilling(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    f0 = rng.uniform(600, 1800)
    wobble = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 8) * t)
    phase = 2 * np.pi * np.cumsum(f0 * wobble) / sample_rate
    whine = _harmonics(phase, [1.0, 0.6, 0.4, 0.25, 0.15])
    grind = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(20, 60) * t)
    noise = _band_noise(n_samples, sample_rate, 1000, 7000, rng)
    return whine * grind / max(rms(whine), 1e-12) + rng.uniform(0.2, 0.5) * noise


def engine_idling(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    f0 = rng.uniform(20, 40) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    # A firing pulse train: many harmonics, falling off above a few hundred Hz.
    pulses = _harmonics(phase, [1.0 / k ** 0.6 * np.exp(-k * 30 / 600) for k in range(1, 40)])
    return pulses / max(rms(pulses), 1e-12) + 0.2 * _band_noise(n_samples, sample_rate, 20, 600, rng)


def gun_shot(rng, n_samples, sample_rate):
    clip_s = n_samples / sample_rate
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    count = int(rng.integers(1, 3))
    for start in _events(rng, clip_s, count, 0.25, rng.uniform(0.05, 0.3)):
        tau = rng.uniform(0.02, 0.08)
        env = np.where(t >= start, np.exp(-np.maximum(t - start, 0) / tau), 0.0)
        tail = np.where(t >= start, np.exp(-np.maximum(t - start, 0) / (tau * 5)), 0.0)
        out += _band_noise(n_samples, sample_rate, 50, 7900, rng) * (env + 0.1 * tail)
    return out + 0.005 * _band_noise(n_samples, sample_rate, 50, 2000, rng)


def jackhammer(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    rate_hz = rng.uniform(10, 20)
    since_hit = np.mod(t + rng.uniform(0, 1 / rate_hz), 1 / rate_hz)
    env = np.exp(-since_hit / rng.uniform(0.008, 0.02))
    clank = np.sin(2 * np.pi * rng.uniform(1500, 3000) * t) * 0.3
    return (_band_noise(n_samples, sample_rate, 100, 7000, rng) + clank) * env + \
        0.05 * _band_noise(n_samples, sample_rate, 50, 1000, rng)


def siren(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    centre, depth = rng.uniform(700, 1100), rng.uniform(200, 450)
    # Wail (slow) or yelp (fast); within 1 s a wail is a slow glide, a yelp several sweeps.
    sweep_hz = rng.uniform(0.3, 0.8) if rng.random() < 0.5 else rng.uniform(3, 7)
    f = centre + depth * np.sin(2 * np.pi * sweep_hz * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f) / sample_rate
    return _harmonics(phase, [1.0, 0.3, 0.15]) + 0.05 * _band_noise(n_samples, sample_rate, 50, 3000, rng)


def street_music(rng, n_samples, sample_rate):
    clip_s = n_samples / sample_rate
    t = _time(n_samples, sample_rate)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    chord = [0, 4, 7] if rng.random() < 0.5 else [0, 3, 7]
    beat_s = 60.0 / rng.uniform(90, 160) / 2  # eighth notes
    out = np.zeros(n_samples)
    pos = rng.uniform(0, beat_s)
    while pos < clip_s:
        semitone = chord[rng.integers(3)] + 12 * rng.integers(1, 3)
        f = root * 2 ** (semitone / 12)
        since = t - pos
        env = np.where(since >= 0, np.exp(-np.maximum(since, 0) / rng.uniform(0.1, 0.3)), 0.0)
        out += _harmonics(2 * np.pi * f * t, [1.0, 0.5, 0.33, 0.25, 0.2, 0.1]) * env
        if rng.random() < 0.4:  # a bass note on some beats
            out += 0.8 * np.sin(2 * np.pi * root * t) * env
        pos += beat_s * rng.choice([1, 1, 2])
    return out + 0.03 * rms(out) * _band_noise(n_samples, sample_rate, 50, 5000, rng)


SCENE_GENERATORS: dict[str, Callable] = {f.__name__: f for f in (
    air_conditioner, car_horn, children_playing, dog_bark, drilling, engine_idling, gun_shot,
    jackhammer, siren, street_music)}


def generate_scene(label: str, rng: np.random.Generator, clip_s: float = 1.0,
                   sample_rate: int = 16000, level_db: tuple[float, float] = (-30.0, -12.0),
                   snr_db: tuple[float, float] = (15.0, 40.0)) -> np.ndarray:
    """One clip of a scene class, float32, with a random RMS level and a faint noise floor.

    Parameters
    ----------
    label : str
        A key of `SCENE_GENERATORS` (UrbanSound8K's class names).
    rng : numpy.random.Generator
        All randomness comes from here.
    clip_s : float
        Length in seconds.
    sample_rate : int
        Hz.
    level_db : (float, float)
        Range of the clip's RMS level in dB full scale.
    snr_db : (float, float)
        Range of the scene-to-pink-noise ratio, so no clip is digitally clean.
    """
    if label not in SCENE_GENERATORS:
        raise ValueError(f"no synthetic generator for scene {label!r}; synthetic scenes are "
                         f"{sorted(SCENE_GENERATORS)} (set labels.scenes to a subset of them, or "
                         f"use data.source = \"real\")")
    n_samples = int(round(clip_s * sample_rate))
    audio = np.asarray(SCENE_GENERATORS[label](rng, n_samples, sample_rate), dtype=np.float64)
    audio /= max(rms(audio), 1e-12)
    floor = coloured_noise(n_samples, "pink", rng, level_rms=db_to_gain(-rng.uniform(*snr_db)))
    audio = (audio + floor) * db_to_gain(rng.uniform(*level_db))
    peak = np.max(np.abs(audio))
    if peak > 0.99:  # gun shots are peaky: keep them unclipped
        audio *= 0.99 / peak
    return audio.astype(np.float32)
