"""Model inputs every log-mel model shares: batch features, the input normaliser, SpecAugment.

    from train.features import Normalizer, log_mel_batch, spec_augment

    feats = log_mel_batch(audio, LogMelConfig.from_config(cfg, "keyword"))   # (n, frames, mels)
    norm = Normalizer.fit(feats)            # per-mel affine, saved beside the checkpoint and
    x = norm(feats)                         # written to the manifest for the device
    x = spec_augment(x, rng, time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_bands=5)

Features come from `device.frontend.log_mel`, the device's own frontend, so a model trains on
exactly what it will be fed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from device.frontend import LogMelConfig, log_mel

__all__ = ["log_mel_batch", "Normalizer", "spec_augment"]


def log_mel_batch(audio: np.ndarray, frontend: LogMelConfig) -> np.ndarray:
    """Log-mel of each row with `device.frontend.log_mel`.

    A plain loop over the public frontend: a batched kernel over strided frames was measured
    slower on a 2-core host (cache-unfriendly temporaries), and the loop keeps training
    features byte-identical to the device's.

    Parameters
    ----------
    audio : np.ndarray
        ``(n, samples)`` (or one clip) at ``frontend.sample_rate``.
    frontend : LogMelConfig
        The model's frontend section (`LogMelConfig.from_config`).

    Returns
    -------
    np.ndarray
        float32, ``(n, frames, mels)``.
    """
    audio = np.atleast_2d(audio)
    first = log_mel(audio[0], frontend)
    out = np.empty((len(audio),) + first.shape, dtype=np.float32)
    out[0] = first
    for i in range(1, len(audio)):
        out[i] = log_mel(audio[i], frontend)
    return out


@dataclass
class Normalizer:
    """Fixed per-mel-band affine ``x' = (x - mean) / std`` from training features.

    The device reproduces it from the manifest (``input.normalization``) before quantising
    the input to int8. Per band rather than one global pair because low bands carry far more
    energy than high ones and the int8 grid should serve all bands alike.

    Attributes
    ----------
    mean, std : np.ndarray
        float32, one per mel band; ``std`` is at least 1e-3 (a constant band stays finite).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, feats: np.ndarray) -> "Normalizer":
        """Mean and standard deviation of each band over every frame of ``(..., mels)`` features."""
        flat = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
        return cls(flat.mean(0).astype(np.float32), np.maximum(flat.std(0), 1e-3).astype(np.float32))

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        """The manifest's ``input.normalization``."""
        return {"kind": "per_mel_affine", "formula": "(log_mel - mean[mel]) / std[mel]",
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Normalizer":
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Normalizer":
        return cls.from_dict(json.loads(Path(path).read_text()))


def spec_augment(feats: np.ndarray, rng: np.random.Generator, *, time_masks: int,
                 time_mask_frames: int, freq_masks: int, freq_mask_bands: int) -> np.ndarray:
    """SpecAugment: zero random time and band stripes of normalised features.

    Zero is the normalised mean, so a mask looks like "nothing unusual here" rather than
    silence. Vectorised over the batch; time masks are drawn before band masks.

    Parameters
    ----------
    feats : np.ndarray
        ``(n, frames, bands)`` normalised features; not modified.
    rng : numpy.random.Generator
        Draws every mask's width and start.
    time_masks, freq_masks : int
        Masks per example along time and along bands.
    time_mask_frames, freq_mask_bands : int
        Largest width of one mask, in frames / bands (widths are uniform in ``[0, max]``).

    Returns
    -------
    np.ndarray
        A masked copy.
    """
    n, frames, bands = feats.shape
    out = feats.copy()
    t = np.arange(frames)[None, :]
    f = np.arange(bands)[None, :]
    for _ in range(time_masks):
        width = rng.integers(0, time_mask_frames + 1, size=n)[:, None]
        start = rng.integers(0, frames, size=n)[:, None]
        out[((t >= start) & (t < start + width))[:, :, None].repeat(bands, 2)] = 0.0
    for _ in range(freq_masks):
        width = rng.integers(0, freq_mask_bands + 1, size=n)[:, None]
        start = rng.integers(0, bands, size=n)[:, None]
        out[((f >= start) & (f < start + width))[:, None, :].repeat(frames, 1)] = 0.0
    return out
