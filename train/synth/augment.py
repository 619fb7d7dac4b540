"""Seeded building blocks of the synthetic corpus: coloured noise, rooms, placement in a window.

Every function takes a ``numpy.random.Generator`` when it draws anything, so the corpus is a
pure function of the project seed. Level (`train.waveforms.rms`), gain in dB and mixing at an
SNR are the shared ones in `train.waveforms`, the same that training's augmentation uses.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from ..waveforms import db_to_gain, rms

__all__ = ["NOISE_COLOURS", "coloured_noise", "room_impulse_response", "apply_room",
           "place_in_window", "random_segment", "channel_response", "apply_channel"]

# Spectral slope of each colour, in powers of f: power spectral density ~ f**slope.
NOISE_COLOURS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}


def coloured_noise(n_samples: int, colour: str, rng: np.random.Generator,
                   level_rms: float = 0.1) -> np.ndarray:
    """Gaussian noise with a power spectrum ~ f**slope (see `NOISE_COLOURS`), scaled to an RMS.

    Shaped in the frequency domain: one FFT, exact slope, no filter design.
    """
    if colour not in NOISE_COLOURS:
        raise ValueError(f"unknown noise colour {colour!r}; use one of {sorted(NOISE_COLOURS)}")
    white = rng.standard_normal(n_samples)
    spectrum = np.fft.rfft(white)
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0  # keep DC finite; it is removed below anyway
    spectrum *= freqs ** (NOISE_COLOURS[colour] / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=n_samples)
    level = rms(noise)
    return (noise * (level_rms / level if level > 0 else 0.0)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, sample_rate: int = 16000,
                          rt60_s: float = 0.3, direct_to_reverb_db: float = 3.0) -> np.ndarray:
    """A crude room: a unit direct path followed by exponentially decaying noise.

    The tail decays by 60 dB over ``rt60_s``; this has the statistics of late reverberation
    (what smears keyword spectrograms) without simulating a geometry.
    """
    n = max(2, int(rt60_s * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9077552789821 * t / rt60_s)  # ln(1000) = 60 dB
    tail[0] = 0.0
    tail *= db_to_gain(-direct_to_reverb_db) / max(np.sqrt(np.sum(tail ** 2)), 1e-12)
    tail[0] = 1.0
    return tail.astype(np.float32)


def apply_room(audio: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """Convolve and keep the input's length, with the same RMS as the dry input."""
    x = np.asarray(audio, dtype=np.float32)
    wet = fftconvolve(x, impulse_response)[: len(x)].astype(np.float32)
    level = rms(wet)
    return wet * (rms(x) / level if level > 0 else 0.0)


def place_in_window(audio: np.ndarray, n_samples: int, offset: int) -> np.ndarray:
    """Put ``audio`` at sample ``offset`` of a zero window of ``n_samples`` (cropping overflow)."""
    out = np.zeros(n_samples, dtype=np.float32)
    x = np.asarray(audio, dtype=np.float32)
    start = max(0, offset)
    x = x[max(0, -offset):]
    x = x[: max(0, n_samples - start)]
    out[start:start + len(x)] = x
    return out


def random_segment(audio: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n_samples`` stretch of a long recording (tiled when it is shorter)."""
    x = np.asarray(audio, dtype=np.float32)
    if len(x) < n_samples:
        x = np.tile(x, int(np.ceil(n_samples / max(1, len(x)))) + 1)
    start = int(rng.integers(0, len(x) - n_samples + 1))
    return x[start:start + n_samples].copy()


def channel_response(rng: np.random.Generator, n_bins: int, sample_rate: int = 16000,
                     highpass_hz: tuple[float, float] = (60.0, 400.0),
                     lowpass_hz: tuple[float, float] = (2800.0, 7500.0),
                     ripple_db: float = 6.0, tilt_db_per_octave: float = 3.0) -> np.ndarray:
    """A random microphone-and-device magnitude response over ``n_bins`` rfft bins.

    Crowd-sourced recordings reach the model through phones and laptops: band-limited,
    tilted and coloured by small resonances. A synthetic voice heard only through a flat
    channel teaches the model that flatness, so each take gets one response drawn from:
    a second-order high-pass at U(``highpass_hz``), a fourth-order low-pass at U(``lowpass_hz``),
    a spectral tilt of U(+-``tilt_db_per_octave``) around 1 kHz, and three smooth bumps of up to
    +-``ripple_db``.

    Returns
    -------
    np.ndarray
        Linear gains, float64, shape ``(n_bins,)``.
    """
    freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    f = np.maximum(freqs, 1.0)
    hp, lp = rng.uniform(*highpass_hz), rng.uniform(*lowpass_hz)
    gain_db = -10.0 * np.log10(1.0 + (hp / f) ** 4)           # 2nd-order high-pass (power)
    gain_db += -10.0 * np.log10(1.0 + (f / lp) ** 8)          # 4th-order low-pass
    gain_db += rng.uniform(-tilt_db_per_octave, tilt_db_per_octave) * np.log2(f / 1000.0)
    for _ in range(3):
        centre = np.exp(rng.uniform(np.log(200.0), np.log(sample_rate / 2.0)))
        width_oct = rng.uniform(0.3, 1.5)
        gain_db += rng.uniform(-ripple_db, ripple_db) * np.exp(
            -0.5 * (np.log2(f / centre) / width_oct) ** 2)
    return 10.0 ** (gain_db / 20.0)


def apply_channel(audio: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000,
                  **kwargs) -> np.ndarray:
    """Filter ``audio`` through one `channel_response` (zero phase, one FFT), keeping its RMS."""
    x = np.asarray(audio, dtype=np.float32)
    if not x.size:
        return x
    n = int(2 ** np.ceil(np.log2(len(x) + 1)))
    spectrum = np.fft.rfft(x, n) * channel_response(rng, n // 2 + 1, sample_rate, **kwargs)
    y = np.fft.irfft(spectrum, n)[: len(x)].astype(np.float32)
    level = rms(y)
    return y * (rms(x) / level if level > 0 else 0.0)
