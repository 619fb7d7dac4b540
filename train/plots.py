"""Figures a person would rather look at than read: spectrogram grids (do the classes of a corpus
really differ?) and confusion matrices (which classes does a model mix up?)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from device.frontend import LogMelConfig, log_mel

__all__ = ["save_spectrogram_grid", "save_confusion_matrix"]


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


def save_confusion_matrix(labels: Sequence[str], confusion, path, title: str,
                          xlabel: str = "predicted", ylabel: str = "true",
                          max_counts: int = 12) -> Path:
    """Save a confusion matrix as a PNG: rows are the truth, shaded by their share of the row
    (so a rare class is as readable as a common one), counts written in the cells when there are
    at most ``max_counts`` classes. The title gets the total and the accuracy appended.

    Returns
    -------
    Path
        Where the PNG went (folders are created).
    """
    import matplotlib
    matplotlib.use("Agg")  # no display on the Pi or in CI
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(confusion, np.float64)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(labels)
    size = max(4.6, 0.22 * n + 3)
    small = n > max_counts
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90 if small else 45, ha="center" if small else "right",
                  fontsize=7 if small else 9)
    ax.set_yticks(range(n), labels, fontsize=7 if small else 9)
    if not small:
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, int(v), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: {int(cm.sum())}\naccuracy {100 * np.trace(cm) / max(cm.sum(), 1):.1f} %",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
