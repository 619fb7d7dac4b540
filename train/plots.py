"""Spectrogram grids: a quick look at whether the classes of a corpus really differ."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from device.frontend import LogMelConfig, log_mel

__all__ = ["save_spectrogram_grid"]


def save_spectrogram_grid(clips_by_class: Mapping[str, Sequence[np.ndarray]],
                          frontend_cfg: LogMelConfig, path, title: str | None = None,
                          max_examples: int = 4, max_s: float = 2.0) -> Path:
    """Save a PNG with one row per class and one log-mel spectrogram per example.

    Parameters
    ----------
    clips_by_class : mapping of str to sequence of np.ndarray
        Audio at ``frontend_cfg.sample_rate`` per class.
    frontend_cfg : LogMelConfig
        The features the model sees (device.frontend), so the picture shows what it learns from.
    path : str or Path
        Output PNG; folders are created.
    title : str, optional
        Figure title.
    max_examples : int
        Columns (examples per class).
    max_s : float
        Longer clips are cut to their first ``max_s`` seconds so columns stay comparable.

    Returns
    -------
    Path
        Where the PNG went.
    """
    import matplotlib
    matplotlib.use("Agg")  # no display on the Pi or in CI
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = list(clips_by_class)
    if not labels:
        raise ValueError("no classes to plot: clips_by_class is empty")
    cols = max(1, min(max_examples, max(len(v) for v in clips_by_class.values())))
    fig, axes = plt.subplots(len(labels), cols, figsize=(2.2 * cols, 1.3 * len(labels) + 0.6),
                             squeeze=False)
    n_max = int(max_s * frontend_cfg.sample_rate)
    # One colour scale for the whole figure, so loudness differences between classes show.
    feats = {(r, c): log_mel(np.asarray(a[:n_max], dtype=np.float32), frontend_cfg)
             for r, lab in enumerate(labels) for c, a in enumerate(clips_by_class[lab][:cols])}
    finite = np.concatenate([f.ravel() for f in feats.values() if f.size]) if feats else np.zeros(1)
    vmin, vmax = np.percentile(finite, 2), np.percentile(finite, 99.5)
    for r, lab in enumerate(labels):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if (r, c) in feats and feats[(r, c)].size:
                ax.imshow(feats[(r, c)].T, origin="lower", aspect="auto", vmin=vmin, vmax=vmax,
                          cmap="magma", interpolation="nearest")
            if c == 0:
                ax.set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(f"{title}: log-mel ({frontend_cfg.n_mels} bands, "
                     f"{frontend_cfg.fmin_hz:g}-{frontend_cfg.fmax_hz:g} Hz)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
