"""A tiny DANet trained in seconds on an easy two-source set, for the separation tests.

The sources are easy on purpose: a harmonic tone below 1 kHz against band noise above 2 kHz,
so a few dozen steps of a one-layer LSTM with 8 units learn them, and the tests can check
what training, export, k-means and streaming do rather than how well a big model separates.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from device.config import load_config
from device.frontend import STFTConfig

RATE = 8000
# Settings small enough for a test: 20-frame chunks (0.16 s), a handful of short epochs.
OVERRIDES = [
    "model.separation.variants.lstm32.units=8",
    "model.separation.variants.lstm32.embedding_dim=4",
    "model.separation.variant=lstm32",
    "model.separation.chunk_frames=20",
    "model.separation.epochs=4",
    "model.separation.patience=4",
    "model.separation.steps_per_epoch=12",
    "model.separation.batch_size=8",
    "model.separation.learning_rate=0.01",
    "model.separation.validation_chunks=8",
    "export.calibration_examples=32",
]


def easy_sources(seed: int, seconds: float = 0.6) -> np.ndarray:
    """``(2, n)``: a gated harmonic tone (< 1 kHz) and band-limited noise (2-3.5 kHz)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = rng.uniform(150, 250)
    tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
    tone *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 4) * t)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[(f < 2000) | (f > 3500)] = 0
    noise = np.fft.irfft(spec, n)
    tone = tone / np.sqrt(np.mean(tone ** 2)) * 0.05
    noise = noise / np.sqrt(np.mean(noise ** 2)) * 0.05
    return np.stack([tone, noise]).astype(np.float32)


def easy_mixtures(count: int, seed: int) -> list[dict]:
    out = []
    for i in range(count):
        s = easy_sources(seed + i)
        out.append({"sources": s, "mixture": s.sum(0), "labels": ["tone", "noise"]})
    return out


def train_tiny(root: Path, *extra: str):
    """Train the tiny variant into ``root``; returns (cfg, TrainResult)."""
    from train import separation as tsep

    cfg = load_config("default", [f"project.build_dir='{root}'", *OVERRIDES, *extra])
    scfg = STFTConfig.from_config(cfg, "separation")
    train = tsep.source_spectra(easy_mixtures(12, 100), scfg)
    validation = tsep.source_spectra(easy_mixtures(4, 900), scfg)
    result = tsep.train_variant(cfg, train, validation, tsep.variants(cfg)["lstm32"], verbose=0)
    return cfg, result
