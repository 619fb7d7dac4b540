"""Synthetic drum hits standing in for vocal percussion (bass, snare, k-snare, hi-hat, silent).

Textbook drum-machine recipes: a bass drum is a low sine whose pitch drops, a snare a tone plus
noise, a k-snare (the beatboxer's "k") a shorter, brighter snare, a hi-hat short high-passed
noise, and silent a near-silent clip. Each hit is randomised and placed at a known onset, so the
echo state network's onset handling can be checked against ``meta["onset_s"]``.
"""
from __future__ import annotations

import numpy as np

from ..waveforms import db_to_gain
from .augment import coloured_noise, place_in_window
from .scenes import _band_noise

__all__ = ["drum_hit", "percussion_clip", "PERCUSSION_GENERATORS"]


def _decay(n_samples: int, sample_rate: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n_samples) / (tau_s * sample_rate))


def bass(rng, sample_rate):
    n = int(rng.uniform(0.2, 0.35) * sample_rate)
    t = np.arange(n) / sample_rate
    f_end, f_start = rng.uniform(45, 70), rng.uniform(120, 200)
    drop_s = rng.uniform(0.02, 0.06)
    f = f_end + (f_start - f_end) * np.exp(-t / drop_s)
    tone = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
    click = 0.3 * _band_noise(n, sample_rate, 1000, 4000, rng) * _decay(n, sample_rate, 0.003)
    return (tone + click) * _decay(n, sample_rate, rng.uniform(0.06, 0.12))


def snare(rng, sample_rate):
    n = int(rng.uniform(0.2, 0.3) * sample_rate)
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * rng.uniform(160, 240) * t) * _decay(n, sample_rate, 0.04)
    rattle = _band_noise(n, sample_rate, rng.uniform(800, 1500), 7000, rng)
    return 0.6 * tone + rattle * _decay(n, sample_rate, rng.uniform(0.05, 0.1))


def k_snare(rng, sample_rate):
    n = int(rng.uniform(0.08, 0.14) * sample_rate)
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * rng.uniform(300, 450) * t) * _decay(n, sample_rate, 0.015)
    rattle = _band_noise(n, sample_rate, rng.uniform(2000, 3000), 7900, rng)
    return 0.4 * tone + rattle * _decay(n, sample_rate, rng.uniform(0.015, 0.03))


def hi_hat(rng, sample_rate):
    n = int(rng.uniform(0.04, 0.1) * sample_rate)
    # Starts below 4 kHz: the echo state network hears 8 kHz audio, where a hi-hat above
    # 4 kHz would vanish and leave only silence.
    noise = _band_noise(n, sample_rate, rng.uniform(2500, 3500), 7990, rng)
    return noise * _decay(n, sample_rate, rng.uniform(0.01, 0.03))


def silent(rng, sample_rate):
    # A breath at most: very quiet band noise, so "silent" is not digital zero.
    n = int(rng.uniform(0.1, 0.3) * sample_rate)
    return 0.003 * _band_noise(n, sample_rate, 200, 3000, rng) * np.hanning(n)


PERCUSSION_GENERATORS = {"bass": bass, "snare": snare, "k-snare": k_snare, "hi-hat": hi_hat,
                         "silent": silent}


def drum_hit(label: str, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """One hit of class ``label`` (peak-normalised to 1 except ``silent``), float32."""
    if label not in PERCUSSION_GENERATORS:
        raise ValueError(f"no synthetic generator for percussion class {label!r}; they are "
                         f"{sorted(PERCUSSION_GENERATORS)}")
    hit = np.asarray(PERCUSSION_GENERATORS[label](rng, sample_rate), dtype=np.float64)
    if label != "silent":
        hit /= max(np.max(np.abs(hit)), 1e-12)
    return hit.astype(np.float32)


def percussion_clip(label: str, rng: np.random.Generator, clip_s: float = 1.0,
                    sample_rate: int = 16000) -> tuple[np.ndarray, float | None]:
    """A clip with one hit at a random onset over a faint noise floor.

    Returns
    -------
    audio : np.ndarray
        float32, ``clip_s`` long.
    onset_s : float or None
        Where the hit starts; None for ``silent`` (there is no onset to find).
    """
    n_samples = int(round(clip_s * sample_rate))
    hit = drum_hit(label, rng, sample_rate)
    onset = int(rng.uniform(0.05, 0.5) * clip_s * sample_rate)
    audio = place_in_window(hit * db_to_gain(rng.uniform(-12.0, -1.0)), n_samples, onset)
    audio += coloured_noise(n_samples, str(rng.choice(["pink", "brown", "white"])), rng,
                            level_rms=db_to_gain(rng.uniform(-70.0, -55.0)))
    return audio.astype(np.float32), (None if label == "silent" else onset / sample_rate)
