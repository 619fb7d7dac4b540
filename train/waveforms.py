"""Waveform helpers every model's data pipeline shares: length, level, mixing and augmentation.

Small pure functions on float32 audio, one clip ``(samples,)`` or a batch ``(n, samples)``;
every function that draws anything takes a ``numpy.random.Generator``, so a pipeline built
from them is a pure function of its seed::

    from train import waveforms as wf

    clip = wf.fit_length(audio, 16000, align="centre")
    mixed = wf.mix_at_share(keywords, scenes, 0.6)             # keyword: 60 % of the energy
    noisy = wf.mix_at_snr(mixed, noise, snr_db=20.0)
    batch = wf.speed_perturb(batch, 0.15, rng, sample_rate_hz=16000)

Level is measured one way everywhere (`mean_square`, `rms`: whole-clip, float64; a word's level
without the silence around it: `active_level_db`, which the wake-word benchmark uses too), and there is
one mixer at an SNR (`mix_at_snr`, the synthetic corpus and training alike) and one at an
energy share (`mix_at_share`). Resampling goes through `device.resample`, the device's own.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from device.resample import INPUT_QUALITY, resample

__all__ = ["ALIGNMENTS", "fit_length", "mean_square", "rms", "active_level_db", "db_to_gain", "snr_gain",
           "mix_at_snr", "mix_at_share", "time_shift", "speed_perturb", "noise_segments",
           "add_background_noise", "random_gain"]

ALIGNMENTS = ("start", "centre")
# Energies below this count as digital silence where a ratio of energies needs a divisor.
_ENERGY_FLOOR = 1e-12


# --------------------------------------------------------------------------- length
def fit_length(audio: np.ndarray, n_samples: int, *, align: str, offset: int = 0) -> np.ndarray:
    """Pad with zeros or trim one clip to exactly ``n_samples``.

    Parameters
    ----------
    audio : np.ndarray
        One clip, ``(samples,)``.
    n_samples : int
        Length of the result in samples.
    align : {"start", "centre"}
        ``"start"`` keeps the beginning: pads or trims at the end (a Speech Commands clip a
        few samples short keeps its word where the speaker put it). ``"centre"`` keeps the
        middle: pads or trims equally at both ends (the odd sample at the end), for clips
        whose content is centred, such as a keyword window or a speed-perturbed take.
    offset : int
        Samples dropped from the start before fitting (0: none).

    Returns
    -------
    np.ndarray
        float32, ``(n_samples,)``, a new array.
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    x = np.asarray(audio, dtype=np.float32)[max(0, int(offset)):]
    excess = len(x) - n_samples
    if align == "start":
        return x[:n_samples].copy() if excess >= 0 else np.pad(x, (0, -excess))
    if excess >= 0:
        start = excess // 2
        return x[start:start + n_samples].copy()
    return np.pad(x, (-excess // 2, -excess - (-excess // 2)))


# --------------------------------------------------------------------------- level
def _scalar_or_array(value: np.ndarray):
    # A 0-d result becomes a Python float: numpy (NEP 50) keeps ``float32_clip * python_float``
    # in float32, while a numpy float64 scalar would silently promote the clip to float64.
    return float(value) if np.ndim(value) == 0 else value


def mean_square(audio: np.ndarray, axis: int = -1):
    """Mean of the squared samples (energy per sample) along ``axis``, in float64.

    Parameters
    ----------
    audio : np.ndarray
        One clip or a batch of rows.
    axis : int
        Axis of samples.

    Returns
    -------
    float or np.ndarray
        A float for one clip, an array of one value per row for a batch; 0 for no samples.
    """
    x = np.asarray(audio)
    if x.shape[axis] == 0:
        return _scalar_or_array(np.zeros(np.delete(x.shape, axis % x.ndim)))
    return _scalar_or_array(np.mean(np.square(x, dtype=np.float64), axis=axis))


def rms(audio: np.ndarray, axis: int = -1):
    """Root mean square along ``axis`` (see `mean_square`; 0 for no samples)."""
    return _scalar_or_array(np.sqrt(mean_square(audio, axis)))


def active_level_db(x: np.ndarray, rate: int = 16000, frame_ms: float = 20.0,
                    floor_db: float = 30.0) -> float:
    """Active level of a recording in dBFS: RMS over the frames within ``floor_db`` of the
    loudest frame (a speech level that the silence around a word does not dilute)."""
    x = np.asarray(x, dtype=np.float64)
    n = max(1, int(rate * frame_ms / 1000))
    frames = x[: len(x) - len(x) % n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    power = np.mean(frames ** 2, axis=1) + 1e-20
    db = 10 * np.log10(power)
    active = power[db >= db.max() - floor_db]
    return float(10 * np.log10(np.mean(active)))


def db_to_gain(level_db):
    """Amplitude factor of a level in dB: ``10 ** (level_db / 20)``; a float for one level,
    float64 array for an array of levels."""
    if np.ndim(level_db) == 0:
        return float(10.0 ** (level_db / 20.0))
    return 10.0 ** (np.asarray(level_db, dtype=np.float64) / 20.0)


# --------------------------------------------------------------------------- mixing
def snr_gain(signal: np.ndarray, noise: np.ndarray, snr_db):
    """The factor ``k`` for which ``signal + k * noise`` has the signal-to-noise ratio ``snr_db``.

    The ratio is of whole-clip energies (as usual for keyword-spotting augmentation). ``k`` is
    0 where the signal or the noise is digital silence: an SNR against nothing means nothing.

    Parameters
    ----------
    signal, noise : np.ndarray
        One clip each, or batches of the same number of rows.
    snr_db : float or np.ndarray
        Wanted SNR in dB, one or one per row.

    Returns
    -------
    float or np.ndarray
        float64, one per row.
    """
    e_signal, e_noise = np.asarray(mean_square(signal)), np.asarray(mean_square(noise))
    live = (e_signal > 0) & (e_noise > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.sqrt(e_signal / e_noise / 10.0 ** (np.asarray(snr_db, dtype=np.float64) / 10.0))
    return _scalar_or_array(np.where(live, k, 0.0))


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db) -> np.ndarray:
    """``signal + k * noise`` at the signal-to-noise ratio ``snr_db`` (see `snr_gain`).

    Parameters
    ----------
    signal, noise : np.ndarray
        One clip each, or ``(n, samples)`` batches; ``noise`` as long as ``signal``.
    snr_db : float or np.ndarray
        SNR in dB, one or one per row.

    Returns
    -------
    np.ndarray
        float32, the shape of ``signal``; the signal unchanged where either part is silent.
    """
    s = np.asarray(signal, dtype=np.float32)
    n = np.asarray(noise, dtype=np.float32)
    k = np.asarray(snr_gain(s, n, snr_db), dtype=np.float32)
    return (s + k[..., None] * n).astype(np.float32)


def mix_at_share(foreground: np.ndarray, background: np.ndarray, foreground_share,
                 foreground_is_empty: np.ndarray | None = None) -> np.ndarray:
    """Mix so that the foreground holds ``foreground_share`` of the mixture's energy.

    The mixture keeps the foreground clip's level (its energy is the reference), so a share
    of 0.6 means ``E(foreground part) : E(background part) = 0.6 : 0.4`` at the foreground's
    natural level. Rows marked empty (a keyword model's ``_silence_`` clips: no word in them)
    keep their own level, and their background is scaled against the median energy of the
    other rows instead, so "silence + scene" still sounds like the scene at the level it has
    beside speech.

    Parameters
    ----------
    foreground, background : np.ndarray
        ``(n, samples)`` float32 (or one clip each).
    foreground_share : float or np.ndarray
        Share of the energy in (0, 1), one or one per row.
    foreground_is_empty : np.ndarray of bool, optional
        Which rows of ``foreground`` hold no foreground sound.

    Returns
    -------
    np.ndarray
        float32, the shape of ``foreground``.
    """
    fg = np.atleast_2d(np.asarray(foreground, dtype=np.float32))
    bg = np.atleast_2d(np.asarray(background, dtype=np.float32))
    share = np.broadcast_to(np.asarray(foreground_share, dtype=np.float64), (len(fg),))
    e_fg = np.maximum(mean_square(fg), _ENERGY_FLOOR)
    e_bg = np.maximum(mean_square(bg), _ENERGY_FLOOR)
    empty = (np.zeros(len(fg), bool) if foreground_is_empty is None
             else np.asarray(foreground_is_empty, bool))
    e_ref = e_fg.copy()
    if empty.any():
        full = e_fg[~empty]
        e_ref[empty] = np.median(full) if full.size else 1e-3
    fg_gain = np.where(empty, 1.0, np.sqrt(share))
    bg_gain = np.sqrt((1.0 - share) * e_ref / e_bg)
    out = fg * fg_gain[:, None].astype(np.float32) + bg * bg_gain[:, None].astype(np.float32)
    return out.reshape(np.shape(foreground)) if np.ndim(foreground) == 1 else out


# --------------------------------------------------------------------------- augmentation
def time_shift(audio: np.ndarray, max_shift_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each row by a random whole number of samples in ``[-max_shift_samples,
    max_shift_samples]``, filling with zeros (words are not always centred in a window)."""
    n, length = audio.shape
    if max_shift_samples <= 0:
        return audio
    shifts = rng.integers(-max_shift_samples, max_shift_samples + 1, size=n)
    out = np.zeros_like(audio)
    for i, s in enumerate(shifts):  # slice copies: far cheaper than a gathered index array
        if s >= 0:
            out[i, s:] = audio[i, :length - s]
        else:
            out[i, :s] = audio[i, -s:]
    return out


def speed_perturb(audio: np.ndarray, max_change: float, rng: np.random.Generator, *,
                  sample_rate_hz: int, quality: str = INPUT_QUALITY) -> np.ndarray:
    """Play each row faster or slower by a factor in ``U(1 - max_change, 1 + max_change)``.

    Tempo and pitch change together, as with a faster talker or a higher voice. Each row is
    resampled with `device.resample.resample` (soxr, the device's resampler) as if it had been
    recorded at ``factor * sample_rate_hz``, then centred in the original length
    (`fit_length` ``align="centre"``): a faster clip gets zeros at both ends, a slower one
    loses its ends.

    Parameters
    ----------
    audio : np.ndarray
        ``(n, samples)`` float32.
    max_change : float
        Largest relative change of speed; 0 returns ``audio`` itself and draws nothing.
    rng : numpy.random.Generator
        Draws the ``n`` factors (one call).
    sample_rate_hz : int
        The clips' rate. Only the ratio matters to soxr; the rate sets how finely a factor is
        resolved (factors are rounded to whole Hz: 1/16000 at 16 kHz).
    quality : str
        soxr quality; `INPUT_QUALITY` (HQ), as for any recording's rate change. About 0.5 ms
        per 1 s clip on one host core.

    Returns
    -------
    np.ndarray
        float32, the shape of ``audio``.
    """
    if max_change <= 0:
        return audio
    n, length = audio.shape
    factors = rng.uniform(1.0 - max_change, 1.0 + max_change, size=n)
    out = np.empty((n, length), dtype=np.float32)
    for i, factor in enumerate(factors):
        played = resample(audio[i], int(round(factor * sample_rate_hz)), sample_rate_hz, quality)
        out[i] = fit_length(played, length, align="centre")
    return out


def noise_segments(n_rows: int, n_samples: int, rows: np.ndarray, noise_pool: Sequence[np.ndarray],
                   rng: np.random.Generator) -> np.ndarray:
    """Background noise for the chosen ``rows`` of a batch, zeros elsewhere.

    Each chosen row gets a random stretch of a random pool recording at least ``n_samples``
    long, or white noise when the pool has none that long.

    Returns
    -------
    np.ndarray
        float32, ``(n_rows, n_samples)``.
    """
    segs = np.zeros((n_rows, n_samples), dtype=np.float32)
    long_noise = [x for x in noise_pool if len(x) >= n_samples]
    for i in rows:
        if long_noise:
            src = long_noise[rng.integers(len(long_noise))]
            start = rng.integers(0, len(src) - n_samples + 1)
            segs[i] = src[start:start + n_samples]
        else:
            segs[i] = rng.standard_normal(n_samples).astype(np.float32)
    return segs


def add_background_noise(audio: np.ndarray, noise_pool: Sequence[np.ndarray], probability: float,
                         snr_db_range: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Add pool noise (`noise_segments`) to each row with ``probability``, at an SNR drawn
    uniformly from ``snr_db_range`` (dB) per row (`mix_at_snr`).

    Returns ``audio`` itself, after one draw, when no row is chosen.
    """
    n, length = audio.shape
    use = rng.random(n) < probability
    if not use.any():
        return audio
    segs = noise_segments(n, length, np.flatnonzero(use), noise_pool, rng)
    lo, hi = snr_db_range
    return mix_at_snr(audio, segs, rng.uniform(lo, hi, size=n))


def random_gain(audio: np.ndarray, max_gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """Scale each row by a gain drawn uniformly in ``[-max_gain_db, max_gain_db]`` dB (the
    microphone level is unknown); float32 out."""
    gains = db_to_gain(rng.uniform(-max_gain_db, max_gain_db, len(audio)))
    # The product in float64, rounded once to float32.
    return (audio * gains[:, None]).astype(np.float32)
