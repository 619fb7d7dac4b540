"""The training loop every Keras model shares, and what a training run leaves behind.

A model module (`train.multitask`, and the coming ``train.classifiers``, ``train.separation``)
says what its data and network are; this module trains and records it the same way for all::

    from train import loop

    loop.configure_threads()
    seq = loop.epoch_sequence(draw, steps, batch_size, normalizer, seed, batch_transform=masks)
    model.compile(optimizer=loop.cosine_adam(3e-3, steps * epochs),
                  loss=loop.smoothed_sparse_crossentropy(0.1), ...)
    fitted = loop.fit(model, seq, validation, epochs=25, patience=6,
                      checkpoint=files.checkpoint, verbose=2)
    loop.save_run(files, fitted.history, info)
    loop.plot_history(fitted.history, paths.report("..._curves.png"), title)

Where things go: the folders come from `device.paths.BuildPaths` (``models/<model>/<profile>/
<variant>/``), the file names inside a run's folder from `RunFiles`, and the choice of the
deployed variant from `read_deployed` / `write_deployed` (``deployed.json``). Export reads a
run back with `load_run` and `RunFiles.calibration`.

Keras is imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from device.paths import BuildPaths
from train.features import Normalizer

__all__ = ["configure_threads", "smoothed_sparse_crossentropy", "cosine_adam", "epoch_sequence",
           "copy_matching_weights", "fit", "Fitted", "TrainResult", "RunFiles", "save_run",
           "load_run", "plot_history", "read_deployed", "write_deployed"]


# --------------------------------------------------------------------------- set-up
def configure_threads() -> None:
    """Keep TensorFlow to the shared machine's two cores unless the caller said otherwise.

    Call before TensorFlow is first imported: the variables are read once, at import.
    """
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")


def smoothed_sparse_crossentropy(smoothing: float = 0.0):
    """Sparse cross-entropy with label smoothing (Keras' sparse loss has none).

    ``(1 - smoothing) * CE(label) + smoothing * mean over classes of CE(class)``: the target
    is the one-hot label blended with a uniform distribution. A little smoothing keeps a small
    model from over-confident posteriors on a few hundred clips per class, and the device's
    thresholds work on those posteriors.

    Parameters
    ----------
    smoothing : float
        Weight of the uniform target in [0, 1); 0 returns Keras' plain
        ``"sparse_categorical_crossentropy"``.
    """
    import keras
    from keras import ops

    if smoothing <= 0:
        return "sparse_categorical_crossentropy"

    def loss(y_true, y_pred):
        ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        uniform = -ops.mean(ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)
        return (1.0 - smoothing) * ce + smoothing * uniform

    return loss


def cosine_adam(peak_learning_rate: float, total_steps: int, final_fraction: float = 0.05):
    """Adam with a cosine decay from ``peak_learning_rate`` to ``final_fraction`` of it over
    ``total_steps`` optimiser steps (epochs x steps per epoch)."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(peak_learning_rate, decay_steps=total_steps,
                                                      alpha=final_fraction)
    return keras.optimizers.Adam(schedule)


# --------------------------------------------------------------------------- data
_SEQUENCE_CLASS = None


def _sequence_class():
    global _SEQUENCE_CLASS
    if _SEQUENCE_CLASS is not None:
        return _SEQUENCE_CLASS
    import keras

    class EpochSequence(keras.utils.PyDataset):
        """Keras data source that draws a fresh epoch of examples from numpy at each epoch end.

        Made by `epoch_sequence`. An epoch is ``steps * batch_size`` examples drawn up front in
        one vectorised pass (on 2 cores that beats per-batch workers); the batch transform
        (SpecAugment masks) is drawn per batch from its own generator.
        """

        def __init__(self, draw, steps, batch_size, normalizer, seed, batch_transform,
                     channel_axis):
            super().__init__(workers=1, use_multiprocessing=False)
            self.draw, self.steps, self.batch = draw, steps, batch_size
            self.normalizer, self.batch_transform = normalizer, batch_transform
            self.channel_axis = channel_axis
            self.rng = np.random.default_rng(seed)
            self.mask_rng = np.random.default_rng(seed + 1)  # own generator per thread of use
            self.epoch = 0
            self._draw()

        def _draw(self):
            feats, labels, weights = self.draw(self.steps * self.batch, self.rng)
            # One reference swap: Keras may fetch a batch from another thread while the next
            # epoch is drawn, and must never pair new features with old labels.
            self.current = (self.normalizer(feats), labels, weights)

        def __len__(self):
            return self.steps

        def __getitem__(self, i):
            x_all, labels, weights = self.current
            sl = slice(i * self.batch, (i + 1) * self.batch)
            x = x_all[sl]
            if self.batch_transform is not None:
                x = self.batch_transform(x, self.mask_rng)
            if self.channel_axis:
                x = x[..., None]
            return x, {k: v[sl] for k, v in labels.items()}, {k: v[sl] for k, v in weights.items()}

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    _SEQUENCE_CLASS = EpochSequence
    return EpochSequence


def epoch_sequence(draw: Callable[[int, np.random.Generator], tuple], steps: int,
                   batch_size: int, normalizer: Normalizer, seed: int,
                   batch_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray]
                   | None = None, channel_axis: bool = True):
    """A Keras data source of fresh examples every epoch, for ``model.fit``.

    Parameters
    ----------
    draw : callable
        ``draw(n, rng) -> (features, {head: labels}, {head: loss weights})`` with raw features
        ``(n, frames, mels)``; called once up front and after every epoch.
    steps, batch_size : int
        Batches per epoch and examples per batch. More steps: more variety per epoch, slower
        epochs.
    normalizer : Normalizer
        Applied to each epoch's features.
    seed : int
        ``draw`` gets ``default_rng(seed)``, ``batch_transform`` ``default_rng(seed + 1)``.
    batch_transform : callable, optional
        ``f(normalised batch, rng) -> batch``, e.g. SpecAugment.
    channel_axis : bool
        Append a trailing channel axis (the 2-D convolutional models take ``(frames, mels, 1)``).
    """
    return _sequence_class()(draw, steps, batch_size, normalizer, seed, batch_transform,
                             channel_axis)


# --------------------------------------------------------------------------- training
def copy_matching_weights(source, target) -> int:
    """Warm start: copy weights layer by layer where names and shapes match.

    Returns
    -------
    int
        How many layers were copied (a head the source lacks keeps its fresh weights).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in target.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.weights:
            continue
        weights = src.get_weights()
        if [w.shape for w in weights] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(weights)
            copied += 1
    return copied


@dataclass
class Fitted:
    """What `fit` returns: ``{metric: [one float per epoch]}``, wall time, 1-based best epoch."""

    history: dict
    seconds: float
    best_epoch: int


def fit(model, data, validation, *, epochs: int, patience: int, checkpoint: Path,
        verbose: int = 2, monitor: str = "val_loss") -> Fitted:
    """Train a compiled model with early stopping on validation loss; keep the best checkpoint.

    Parameters
    ----------
    model : keras.Model
        Compiled.
    data : keras.utils.PyDataset
        Training batches (`epoch_sequence`).
    validation : tuple
        ``(x, labels, weights)`` as ``model.fit`` takes it.
    epochs : int
        Upper bound; early stopping usually ends sooner.
    patience : int
        Epochs without a better validation loss before stopping; the best weights are restored.
    checkpoint : Path
        Where the best model is saved (``.keras``).
    verbose : int
        Keras' per-epoch output (0: none, 2: one line per epoch).
    monitor : str
        What early stopping and the checkpoint follow: ``"val_loss"`` (lower is better) or a
        validation accuracy such as ``"val_accuracy"`` (higher is better; steadier than the
        loss on a validation set of a few dozen clips, whose loss grows with confidence).
    """
    import keras

    mode = "min" if monitor.endswith("loss") else "max"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, mode=mode,
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                      restore_best_weights=True),
    ]
    t0 = time.perf_counter()
    hist = model.fit(data, validation_data=validation, epochs=epochs, callbacks=callbacks,
                     verbose=verbose)
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best = np.argmin(history[monitor]) if mode == "min" else np.argmax(history[monitor])
    return Fitted(history, seconds, int(best) + 1)


@dataclass
class TrainResult:
    """What a model module's ``train_variant`` produced: paths and numbers for tables."""

    variant: str
    model_path: Path
    normalizer: Normalizer
    history: dict
    seconds: float
    params: int
    best_epoch: int


# --------------------------------------------------------------------------- run files
@dataclass(frozen=True)
class RunFiles:
    """The files of one trained variant, in its folder (`BuildPaths.model_dir`).

    Attributes
    ----------
    folder : Path
    checkpoint : Path
        ``model.keras``, the best epoch's model.
    normalizer : Path
        ``normalizer.json`` (`Normalizer.save`).
    history : Path
        ``history.json``: every metric per epoch.
    train_info : Path
        ``train_info.json``: what was trained, how long, from what.
    calibration : Path
        ``calibration.npy``: raw training features (float16) for int8 calibration at export.
    """

    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / "model.keras"

    @property
    def normalizer(self) -> Path:
        return self.folder / "normalizer.json"

    @property
    def history(self) -> Path:
        return self.folder / "history.json"

    @property
    def train_info(self) -> Path:
        return self.folder / "train_info.json"

    @property
    def calibration(self) -> Path:
        return self.folder / "calibration.npy"

    def trained(self) -> bool:
        return self.checkpoint.exists()


def save_run(files: RunFiles, history: Mapping, info: Mapping) -> None:
    """Write ``history.json`` and ``train_info.json``."""
    files.history.write_text(json.dumps(history, indent=1) + "\n")
    files.train_info.write_text(json.dumps(info, indent=1) + "\n")


def load_run(files: RunFiles, how_to_train: str = ""):
    """(keras model, `Normalizer`, train_info dict) of a trained variant.

    Raises
    ------
    FileNotFoundError
        No checkpoint; the message ends with ``how_to_train`` (the command that makes one).
    """
    import keras

    if not files.trained():
        raise FileNotFoundError(f"no trained model at {files.checkpoint}"
                                + (f"; run `{how_to_train}` first" if how_to_train else ""))
    model = keras.models.load_model(files.checkpoint, compile=False)
    info = json.loads(files.train_info.read_text())
    return model, Normalizer.load(files.normalizer), info


def plot_history(history: Mapping[str, list], path: Path, title: str) -> None:
    """Training curves PNG: loss and every accuracy, training beside validation, per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc_keys = sorted(k for k in history if k.endswith("accuracy") and not k.startswith("val_"))
    fig, axes = plt.subplots(1, 1 + len(acc_keys), figsize=(5 * (1 + len(acc_keys)), 3.6))
    axes = np.atleast_1d(axes)
    for key, ax in zip(["loss"] + acc_keys, axes):
        ax.plot(history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(history[f"val_{key}"], label="validation")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- deployment choice
def read_deployed(cfg, model: str, default: str) -> str:
    """The variant of ``model`` chosen for deployment (``deployed.json``), else ``default``."""
    path = BuildPaths(cfg).deployed_choice(model)
    if path.exists():
        return json.loads(path.read_text())["variant"]
    return default


def write_deployed(cfg, model: str, variant: str, reason: str) -> Path:
    """Record ``variant`` as the deployed one of ``model``, and why; returns the file."""
    path = BuildPaths(cfg).deployed_choice(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"variant": variant, "reason": reason}, indent=1) + "\n")
    return path
