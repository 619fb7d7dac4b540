"""A tiny corpus with the real `train.corpus.Corpus` fields, for tests that must not need the data
layer: keyword clips are short tone bursts whose pitch encodes the class, scene clips are noise
whose band encodes the class, so a few training steps are enough to see learning happen."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from train.datasets import Clip

SR = 16000


def _keyword_clip(label_index: int, rng: np.random.Generator, n_labels: int) -> np.ndarray:
    t = np.arange(SR) / SR
    audio = 0.003 * rng.standard_normal(SR)
    if label_index != 0:  # _silence_ is background only
        f0 = 200.0 + 3000.0 * label_index / n_labels
        start = rng.integers(1000, 4000)
        env = np.zeros(SR)
        env[start:start + 11000] = np.hanning(11000)
        audio += 0.3 * env * np.sin(2 * np.pi * f0 * t)
    return audio.astype(np.float32)


def _scene_clip(label_index: int, rng: np.random.Generator, n_labels: int,
                seconds: float = 1.5) -> np.ndarray:
    n = int(seconds * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    lo = 100.0 + 3500.0 * label_index / n_labels
    spec[(freqs < lo) | (freqs > lo + 400.0)] = 0
    audio = np.fft.irfft(spec, n)
    return (0.1 * audio / (np.abs(audio).max() + 1e-9)).astype(np.float32)


def fake_corpus(cfg, n_per_keyword: int = 6, n_per_scene: int = 4, seed: int = 0):
    """A tiny corpus with the real Corpus's fields, for tests that must not need the data layer."""
    rng = np.random.default_rng(seed)
    kw_labels, scene_labels = cfg.keyword_labels, cfg["labels.scenes"]
    keywords = [Clip(_keyword_clip(i, rng, len(kw_labels)), SR, label, f"spk{j % 3}")
                for i, label in enumerate(kw_labels) for j in range(n_per_keyword)]
    scenes = [Clip(_scene_clip(i, rng, len(scene_labels)), SR, label, f"src{j}")
              for i, label in enumerate(scene_labels) for j in range(n_per_scene)]
    noise = [(0.01 * rng.standard_normal(3 * SR)).astype(np.float32)]
    return SimpleNamespace(keywords=keywords, scenes=scenes, percussion=[], separation=[],
                           noise=noise, source="test")
