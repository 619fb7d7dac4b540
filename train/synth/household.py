"""Procedural stand-ins for eight household sound events of ESC-50 (the sound classifiers'
default classes, ``labels.sounds``).

Each generator ``f(rng, n_samples, sample_rate) -> float64`` draws its own parameters, so two
clips of a class differ (pitch, rhythm, timing, count) while the class keeps what tells it apart
on a log-mel spectrogram: a harmonic wail (crying baby) vs. short low thuds in a group (door
knock) vs. a broadband crash with ringing partials (glass) vs. a periodic beeping square tone
(clock alarm) vs. soft evenly spaced steps vs. short upward-chirping plinks (water drops) vs. a
steady motor whine over broadband noise (vacuum cleaner). The dog reuses the scene corpus' bark.
They are not realistic: they let the classifiers train and run offline; the real profile reads
ESC-50 with the same class names.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..waveforms import db_to_gain, rms
from .augment import coloured_noise
from .scenes import _band_noise, _burst_envelope, _harmonics, _time, dog_bark

__all__ = ["HOUSEHOLD_GENERATORS", "generate_household"]


def crying_baby(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    pos = rng.uniform(0.0, 0.3)
    clip_s = n_samples / sample_rate
    while pos < clip_s - 0.2:
        length = rng.uniform(0.4, 1.1)
        f0 = rng.uniform(350, 550) * (1 + 0.15 * np.sin(np.pi * np.clip((t - pos) / length, 0, 1)))
        f0 *= 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(5, 9) * t)      # vibrato
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        out += _harmonics(phase, [1.0, 0.8, 0.6, 0.4, 0.3, 0.2]) * _burst_envelope(
            n_samples, sample_rate, pos, length, 0.05, 0.1)
        pos += length + rng.uniform(0.15, 0.5)                           # breaths between wails
    return out


def door_wood_knock(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    clip_s = n_samples / sample_rate
    groups = int(rng.integers(1, 3))
    for g in range(groups):
        start = rng.uniform(0.0, max(0.01, clip_s - 0.8))
        for k in range(int(rng.integers(2, 5))):
            s = start + k * rng.uniform(0.12, 0.22)
            body = rng.uniform(120, 260)
            env = np.where(t >= s, np.exp(-(t - s) / rng.uniform(0.02, 0.05)), 0.0)
            out += env * (np.sin(2 * np.pi * body * (t - s)) +
                          0.3 * _band_noise(n_samples, sample_rate, 200, 2500, rng))
    return out


def glass_breaking(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    s = rng.uniform(0.0, 0.4 * n_samples / sample_rate)
    crash = np.where(t >= s, np.exp(-(t - s) / rng.uniform(0.05, 0.15)), 0.0)
    out = crash * _band_noise(n_samples, sample_rate, 2000, 7800, rng)
    for _ in range(int(rng.integers(4, 9))):                              # ringing shards
        f = rng.uniform(2500, 7500)
        start = s + rng.uniform(0.0, 0.6)
        out += 0.4 * np.where(t >= start, np.exp(-(t - start) / rng.uniform(0.05, 0.3)), 0.0) \
            * np.sin(2 * np.pi * f * (t - start))
    return out


def clock_alarm(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    f = rng.uniform(1800, 3500)
    square = np.sign(np.sin(2 * np.pi * f * t))
    beep_s = rng.uniform(0.05, 0.12)
    period = beep_s * rng.uniform(1.6, 2.5)
    gate = ((t % period) < beep_s).astype(np.float64)
    if rng.random() < 0.5:                                                # beep-beep ... pause
        gate *= ((t % (period * 4)) < period * 2.5)
    return square * gate


def footsteps(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    step = rng.uniform(0.45, 0.7)
    pos = rng.uniform(0.0, step)
    while pos < n_samples / sample_rate:
        env = np.where(t >= pos, np.exp(-(t - pos) / rng.uniform(0.03, 0.07)), 0.0)
        out += env * _band_noise(n_samples, sample_rate, 60, rng.uniform(800, 1600), rng) \
            * rng.uniform(0.6, 1.0)
        pos += step * rng.uniform(0.9, 1.1)
    return out


def water_drops(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    out = np.zeros(n_samples)
    for _ in range(int(rng.integers(3, 10))):
        s = rng.uniform(0.0, n_samples / sample_rate - 0.1)
        f0 = rng.uniform(800, 2000)
        tt = np.clip(t - s, 0.0, None)
        f = f0 * (1 + 2.0 * np.clip(tt / 0.03, 0, 1))                     # the upward "plink"
        phase = 2 * np.pi * np.cumsum(f) / sample_rate
        out += np.where(t >= s, np.exp(-tt / rng.uniform(0.015, 0.04)), 0.0) * np.sin(phase)
    return out


def vacuum_cleaner(rng, n_samples, sample_rate):
    t = _time(n_samples, sample_rate)
    f0 = rng.uniform(150, 350)
    phase = 2 * np.pi * f0 * t
    whine = _harmonics(phase, [0.6, 0.4, 0.5, 0.3, 0.3, 0.2, 0.2])
    noise = _band_noise(n_samples, sample_rate, 300, 7500, rng)
    return 0.3 * whine / max(rms(whine), 1e-12) + noise


HOUSEHOLD_GENERATORS: dict[str, Callable] = {
    "dog": dog_bark, "crying_baby": crying_baby, "door_wood_knock": door_wood_knock,
    "glass_breaking": glass_breaking, "clock_alarm": clock_alarm, "footsteps": footsteps,
    "water_drops": water_drops, "vacuum_cleaner": vacuum_cleaner}


def generate_household(label: str, rng: np.random.Generator, clip_s: float = 5.0,
                       sample_rate: int = 16000, level_db: tuple[float, float] = (-32.0, -14.0),
                       snr_db: tuple[float, float] = (15.0, 40.0)) -> np.ndarray:
    """One clip of a household event class, float32, random level, a faint pink noise floor.

    Parameters
    ----------
    label : str
        A key of `HOUSEHOLD_GENERATORS` (ESC-50's class names).
    rng : numpy.random.Generator
        All randomness comes from here.
    clip_s : float
        Length in seconds (ESC-50 clips are 5 s).
    sample_rate : int
        Hz.
    level_db, snr_db : (float, float)
        Ranges of the event's RMS level (dB full scale) and of event-to-noise-floor ratio.
    """
    if label not in HOUSEHOLD_GENERATORS:
        raise ValueError(f"no synthetic generator for sound {label!r}; synthetic sounds are "
                         f"{sorted(HOUSEHOLD_GENERATORS)} (set labels.sounds to a subset of "
                         f"them, or use data.source = \"real\")")
    n_samples = int(round(clip_s * sample_rate))
    audio = np.asarray(HOUSEHOLD_GENERATORS[label](rng, n_samples, sample_rate), np.float64)
    audio /= max(rms(audio), 1e-12)
    floor = coloured_noise(n_samples, "pink", rng, level_rms=db_to_gain(-rng.uniform(*snr_db)))
    audio = (audio + floor) * db_to_gain(rng.uniform(*level_db))
    peak = np.max(np.abs(audio))
    if peak > 0.99:
        audio *= 0.99 / peak
    return audio.astype(np.float32)
