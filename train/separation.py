"""The deep attractor network (DANet) for two-source separation: data, network, training.

::

    python -m train.separation                        # the profile's deployed variant
    python -m train.separation --variant full --variant lstm64
    python -m train.separation --all                  # every [model.separation.variants] entry

The network, as the original DANet (Chen, Luo & Mesgarani 2017), at the sizes of
``[model.separation.variants]``:

* input: ``log(|STFT| + floor)`` of the mixture (`device.frontend.stft`, ``[frontend.
  separation]``: 8 kHz, 32 ms square-root Hann window, 8 ms hop, 129 bins), normalised per bin,
  in chunks of ``chunk_frames`` (100) frames;
* LSTM layers over time (bidirectional ones concatenate both directions: 2 x 300 = 600
  features in the ``full`` variant), a dense layer to ``n_bins x K`` (tanh) reshaped to one
  K-dimensional embedding ``V`` per time-frequency bin;
* training: the attractor of source c is the mean of ``V`` over the bins where c is the loudest
  source (the ideal binary mask ``Y``), bins more than ``silence_db`` below the chunk's loudest
  left out (``W``); masks ``M = softmax_c(A . V)``; the loss is ``sum_c |S_c - X * M_c|^2``
  divided by the number of bins (``X``, ``S_c``: the mixture's and the sources' magnitudes);
* inference: attractors from k-means on ``V`` (`kmeans_masks`, scikit-learn, host only) or the
  fixed attractors (the mean of the training attractors, `fixed_attractors`), which the export
  bakes into the model so the device does no clustering.

Data: the corpus's two-source mixtures (`train.corpus`, a keyword over a scene; with the
``real`` profile a real speech recording over an ESC-50/UrbanSound clip), split by voice. Each
epoch draws fresh 100-frame crops, the second source re-levelled by ``+-source_gain_db``
(the STFT is linear, so the mixture's spectrum is the sum of the sources').

Everything written goes under ``models/separation/<profile>/<variant>/`` (`train.loop.RunFiles`
plus ``attractors.npy``) and ``reports/separation_<profile>_<variant>_curves.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.frontend import STFTConfig, log_magnitude, stft  # noqa: E402
from device.paths import BuildPaths  # noqa: E402
from device.separation import chunk_log_magnitude, softmax_masks  # noqa: E402
from train import loop  # noqa: E402
from train.features import Normalizer  # noqa: E402

__all__ = ["MODEL", "Variant", "variants", "run_files", "SourceSpectra", "source_spectra",
           "draw_chunks", "ideal_masks", "build_embedding", "build_training_model",
           "build_inference_model", "danet_loss", "fixed_attractors", "embed", "kmeans_masks",
           "fixed_masks", "train_variant", "load_trained", "magnitude_masks", "sparsity_of",
           "main"]

log = logging.getLogger("train.separation")

MODEL = "separation"   # the model family's name in build paths
# Chunks the fixed attractors are averaged over, and the normaliser fitted on.
ATTRACTOR_CHUNKS = 256


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One size of the network (a ``[model.separation.variants]`` entry).

    Attributes
    ----------
    name : str
    layers : int
        LSTM layers. Each costs ``4 * units * (inputs + units)`` multiply-adds per frame and
        direction.
    units : int
        LSTM units per direction.
    bidirectional : bool
        Both directions over the chunk (twice the cost, and every output frame waits for the
        chunk's end either way) or one (causal within a chunk).
    embedding_dim : int
        K: the embedding's dimension per bin. The dense layer to ``n_bins * K`` outputs is the
        largest layer of the small variants.
    prune_from : str
        Magnitude pruning: the trained variant (same sizes) this one starts from ("" for none).
    sparsity : float
        With ``prune_from``: the share of each weight matrix (LSTM kernels, recurrent kernels,
        the embedding dense layer) set to zero, the smallest by magnitude, kept at zero through
        ``model.separation.prune_epochs`` of fine-tuning. Zeros save no time in LiteRT's dense
        int8/float kernels; they compress (README, separation table).
    """

    name: str
    layers: int
    units: int
    bidirectional: bool
    embedding_dim: int
    prune_from: str = ""
    sparsity: float = 0.0


def variants(cfg: Config) -> dict[str, Variant]:
    """Every ``[model.separation.variants]`` entry as a `Variant`."""
    out = {name: Variant(name, int(v["layers"]), int(v["units"]), bool(v["bidirectional"]),
                         int(v["embedding_dim"]), str(v.get("prune_from", "")),
                         float(v.get("sparsity", 0.0)))
           for name, v in cfg["model.separation.variants"].items()}
    for v in out.values():
        if not v.prune_from:
            continue
        parent = out.get(v.prune_from)
        if parent is None or parent.prune_from or (parent.layers, parent.units,
                                                   parent.bidirectional, parent.embedding_dim) \
                != (v.layers, v.units, v.bidirectional, v.embedding_dim):
            raise ValueError(f"model.separation.variants.{v.name}: prune_from = "
                             f"{v.prune_from!r} must name an unpruned variant of the same sizes")
        # sparsity's range [0, 1) is the profile schema's (device/schema.py RANGES)
    return out


def magnitude_masks(model, sparsity: float) -> dict:
    """``{variable path: 0/1 mask}`` keeping the largest ``1 - sparsity`` of each weight matrix
    (every LSTM kernel and recurrent kernel, the embedding dense kernel) by magnitude; biases
    and the attractor-free rest are kept whole."""
    masks = {}
    for var in model.trainable_variables:
        if len(var.shape) != 2:
            continue   # biases
        w = np.abs(np.asarray(var))
        k = int(round(sparsity * w.size))
        if k == 0:
            continue
        threshold = np.partition(w.reshape(-1), k - 1)[k - 1]
        masks[var.path] = (w > threshold).astype(np.float32)
    return masks


def sparsity_of(model) -> float:
    """The share of exact zeros over the weight matrices (what `magnitude_masks` prunes)."""
    mats = [np.asarray(v) for v in model.trainable_variables if len(v.shape) == 2]
    return float(sum((m == 0).sum() for m in mats) / max(1, sum(m.size for m in mats)))


def run_files(cfg: Config, variant: str) -> loop.RunFiles:
    """The files of one trained variant (``models/separation/<profile>/<variant>/``)."""
    return loop.RunFiles(BuildPaths(cfg).model_dir(MODEL, variant))


def attractors_path(files: loop.RunFiles) -> Path:
    return files.folder / "attractors.npy"


# --------------------------------------------------------------------------- data
@dataclass
class SourceSpectra:
    """The complex STFT of every source of every mixture: ``(n_sources, frames, bins)`` each."""

    spectra: list
    cfg: STFTConfig


def source_spectra(mixtures: Sequence[dict], cfg: STFTConfig) -> SourceSpectra:
    """`SourceSpectra` of corpus mixtures (``{"sources": (n_sources, n_samples)}``)."""
    return SourceSpectra([np.stack([stft(s, cfg) for s in m["sources"]]) for m in mixtures], cfg)


def ideal_masks(source_mags: np.ndarray, mixture_mag: np.ndarray, silence_db: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Ideal binary masks and the bins that count.

    Parameters
    ----------
    source_mags : np.ndarray
        ``(..., n_sources, frames, bins)`` magnitudes.
    mixture_mag : np.ndarray
        ``(..., frames, bins)``.
    silence_db : float
        Bins more than this far below the loudest bin of the same chunk get weight 0.

    Returns
    -------
    (Y, W)
        ``Y`` ``(..., frames, bins, n_sources)`` one-hot of the loudest source per bin; ``W``
        ``(..., frames, bins)`` 1 for bins that count, 0 for near-silent ones.
    """
    n_sources = source_mags.shape[-3]
    loudest = np.argmax(source_mags, axis=-3)
    y = (loudest[..., None] == np.arange(n_sources)).astype(np.float32)
    peak = mixture_mag.max(axis=(-2, -1), keepdims=True)
    w = (mixture_mag > peak * 10.0 ** (-silence_db / 20.0)).astype(np.float32)
    return y, w


def draw_chunks(data: SourceSpectra, n: int, rng: np.random.Generator, chunk_frames: int,
                gain_db: float, silence_db: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random crops of ``chunk_frames`` frames, the second source re-levelled by
    ``U(-gain_db, gain_db)``.

    Returns
    -------
    (packed, target)
        ``packed`` ``(n, frames, bins, 2 + n_sources)``: raw log magnitude (channel 0, the
        network's input before normalisation), ``W`` (channel 1), ``Y`` (the rest): what the
        training model reads. ``target`` ``(n, frames, bins, 1 + n_sources)``: the mixture's
        magnitude, then the sources'.
    """
    n_sources, _, n_bins = data.spectra[0].shape
    packed = np.empty((n, chunk_frames, n_bins, 2 + n_sources), np.float32)
    target = np.empty((n, chunk_frames, n_bins, 1 + n_sources), np.float32)
    for i in range(n):
        spec = data.spectra[int(rng.integers(len(data.spectra)))]
        start = int(rng.integers(0, max(1, spec.shape[1] - chunk_frames + 1)))
        crop = spec[:, start:start + chunk_frames]
        if crop.shape[1] < chunk_frames:   # a clip shorter than a chunk: silence after it
            crop = np.pad(crop, ((0, 0), (0, chunk_frames - crop.shape[1]), (0, 0)))
        gains = np.ones(n_sources, np.float32)
        gains[1:] = 10.0 ** (rng.uniform(-gain_db, gain_db, n_sources - 1) / 20.0)
        crop = crop * gains[:, None, None]
        mix = crop.sum(axis=0)
        mags = np.abs(crop)
        mix_mag = np.abs(mix)
        y, w = ideal_masks(mags, mix_mag, silence_db)
        packed[i, ..., 0] = log_magnitude(mix, data.cfg)
        packed[i, ..., 1] = w
        packed[i, ..., 2:] = y
        target[i, ..., 0] = mix_mag
        target[i, ..., 1:] = np.moveaxis(mags, 0, -1)
    return packed, target


class _PackedNormalizer:
    """Normalise channel 0 (the log magnitude) of a packed batch with a `Normalizer`."""

    def __init__(self, normalizer: Normalizer):
        self.normalizer = normalizer

    def __call__(self, packed: np.ndarray) -> np.ndarray:
        out = packed.copy()
        out[..., 0] = self.normalizer(packed[..., 0])
        return out


# --------------------------------------------------------------------------- network
def _custom_layers():
    """The training model's layers that Keras lacks, registered for saving and loading."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="hopwise_separation")
    class PackedChannels(keras.layers.Layer):
        """Channels ``[start, stop)`` of the packed training input (squeezed when one)."""

        def __init__(self, start, stop, **kwargs):
            super().__init__(**kwargs)
            self.start, self.stop = int(start), int(stop)

        def call(self, x):
            part = x[..., self.start:self.stop]
            return part[..., 0] if self.stop - self.start == 1 else part

        def get_config(self):
            return {**super().get_config(), "start": self.start, "stop": self.stop}

    @keras.saving.register_keras_serializable(package="hopwise_separation")
    class AttractorMasks(keras.layers.Layer):
        """DANet training masks: attractors from the ideal binary masks, then softmax(A.V).

        Inputs ``[V (B,T,F,K), Y (B,T,F,C), W (B,T,F)]``; output ``(B,T,F,C)``.
        """

        def call(self, inputs):
            v, y, w = inputs
            yw = y * w[..., None]
            num = ops.einsum("btfk,btfc->bck", v, yw)
            den = ops.sum(yw, axis=(1, 2))[..., None] + 1e-6
            attractors = num / den
            return ops.softmax(ops.einsum("btfk,bck->btfc", v, attractors), axis=-1)

    return PackedChannels, AttractorMasks


def build_embedding(variant: Variant, n_bins: int, chunk_frames: int | None = None,
                    batch_size: int | None = None, unroll: bool = False):
    """Log magnitude ``(B, T, n_bins)`` -> embeddings ``V`` ``(B, T, n_bins, K)``.

    ``unroll`` (a fixed ``chunk_frames`` only) writes the recurrence out step by step: the
    int8 converter calibrates that graph, while the looped one (a TFLite WHILE) crashes its
    calibrator in TF 2.21; the unrolled file is larger (one copy of the cell's ops per frame).

    Layer names are fixed so the weights move between the training and inference models by
    name (`train.loop.copy_matching_weights`).
    """
    import keras

    inp = keras.Input((chunk_frames, n_bins), batch_size=batch_size, name="log_magnitude")
    x = inp
    for i in range(variant.layers):
        lstm = keras.layers.LSTM(variant.units, return_sequences=True, name=f"lstm{i}",
                                 unroll=unroll)
        x = keras.layers.Bidirectional(lstm, name=f"blstm{i}")(x) if variant.bidirectional \
            else lstm(x)
    x = keras.layers.Dense(n_bins * variant.embedding_dim, activation="tanh",
                           name="embedding_dense")(x)
    v = keras.layers.Reshape((chunk_frames or -1, n_bins, variant.embedding_dim),
                             name="embedding")(x)
    return keras.Model(inp, v, name=f"danet_embedding_{variant.name}")


def build_training_model(variant: Variant, n_bins: int, n_sources: int, chunk_frames: int):
    """Packed input (see `draw_chunks`) -> masks from the ideal attractors (``"masks"``)."""
    import keras

    packed_channels, attractor_masks = _custom_layers()
    packed = keras.Input((chunk_frames, n_bins, 2 + n_sources), name="packed")
    logmag = packed_channels(0, 1, name="log_magnitude_in")(packed)
    w = packed_channels(1, 2, name="weights_in")(packed)
    y = packed_channels(2, 2 + n_sources, name="ibm_in")(packed)
    embedding = build_embedding(variant, n_bins, chunk_frames)
    v = embedding(logmag)
    masks = attractor_masks(name="masks")([v, y, w])
    return keras.Model(packed, {"masks": masks}, name=f"danet_train_{variant.name}")


def embedding_of(training_model):
    """The embedding sub-model inside a training model."""
    return next(layer for layer in training_model.layers
                if layer.name.startswith("danet_embedding_"))


def build_inference_model(variant: Variant, n_bins: int, attractors: np.ndarray,
                          chunk_frames: int, batch_size: int | None = 1, embedding=None,
                          unroll: bool = False):
    """What the device runs: log magnitude -> ``softmax(A . V)`` with fixed attractors.

    Parameters
    ----------
    attractors : np.ndarray
        ``(n_sources, K)``, baked in as a bias-free dense layer (one FULLY_CONNECTED op).
    embedding : keras.Model, optional
        A trained embedding network whose weights are copied in.
    """
    import keras

    inner = build_embedding(variant, n_bins, chunk_frames, batch_size, unroll)
    if embedding is not None:
        inner.set_weights(embedding.get_weights())
    inp = keras.Input((chunk_frames, n_bins), batch_size=batch_size, name="log_magnitude")
    v = inner(inp)
    logits = keras.layers.Dense(len(attractors), use_bias=False, name="attractors")(v)
    masks = keras.layers.Softmax(axis=-1, name="masks")(logits)
    model = keras.Model(inp, {"masks": masks}, name=f"danet_{variant.name}")
    model.get_layer("attractors").set_weights([np.asarray(attractors, np.float32).T])
    return model


def danet_loss(y_true, y_pred):
    """``sum_c |S_c - X * M_c|^2`` over the bins, divided by their number (per example)."""
    from keras import ops

    mixture, sources = y_true[..., :1], y_true[..., 1:]
    err = ops.sum(ops.square(sources - mixture * y_pred), axis=-1)
    return ops.mean(err, axis=(1, 2))


# --------------------------------------------------------------------------- inference (host)
def embed(embedding, logmag_chunks: np.ndarray, normalizer: Normalizer) -> np.ndarray:
    """Embeddings ``(n_chunks, T, bins, K)`` of raw log-magnitude chunks."""
    return np.asarray(embedding.predict(normalizer(logmag_chunks), verbose=0, batch_size=16))


def fixed_attractors(embedding, data: SourceSpectra, normalizer: Normalizer, chunk_frames: int,
                     silence_db: float, seed: int, n_chunks: int = ATTRACTOR_CHUNKS) -> np.ndarray:
    """The mean over training chunks of each source's ideal-mask attractor: ``(C, K)``."""
    packed, _ = draw_chunks(data, n_chunks, np.random.default_rng(seed), chunk_frames, 0.0,
                            silence_db)
    v = embed(embedding, packed[..., 0], normalizer)
    yw = packed[..., 2:] * packed[..., 1:2]
    per_chunk = np.einsum("ntfk,ntfc->nck", v, yw) / (yw.sum(axis=(1, 2))[..., None] + 1e-6)
    return per_chunk.mean(axis=0).astype(np.float32)


def kmeans_masks(v: np.ndarray, logmag: np.ndarray, n_sources: int, silence_db: float,
                 seed: int) -> np.ndarray:
    """Masks of one chunk with attractors from k-means on its embeddings (scikit-learn).

    The clusters are fitted on the bins within ``silence_db`` of the chunk's loudest (silent
    bins carry no source and only blur the centres); their centres are the attractors.
    """
    from sklearn.cluster import KMeans

    flat = v.reshape(-1, v.shape[-1])
    loud = (logmag > logmag.max() - silence_db * np.log(10.0) / 20.0).reshape(-1)
    fit_on = flat[loud] if loud.sum() >= n_sources else flat
    km = KMeans(n_clusters=n_sources, n_init=3, random_state=seed).fit(fit_on)
    return softmax_masks(v, km.cluster_centers_.astype(np.float32))


def fixed_masks(v: np.ndarray, attractors: np.ndarray) -> np.ndarray:
    """Masks of embeddings with the fixed attractors (what the exported model computes)."""
    return softmax_masks(v, attractors)


def separate_keras(embedding, normalizer: Normalizer, audio: np.ndarray, cfg: STFTConfig,
                   chunk_frames: int, attractors: np.ndarray | None = None, n_sources: int = 2,
                   silence_db: float = 40.0, seed: int = 0) -> np.ndarray:
    """Float (Keras) separation of one clip: fixed attractors, or k-means per chunk when
    ``attractors`` is None. Returns ``(n_sources, n_samples)``."""
    from device.frontend import istft

    spectrum = stft(audio, cfg)
    chunks = chunk_log_magnitude(spectrum, chunk_frames, cfg)
    v = embed(embedding, chunks, normalizer)
    masks = np.concatenate([
        fixed_masks(v[i], attractors) if attractors is not None
        else kmeans_masks(v[i], chunks[i], n_sources, silence_db, seed)
        for i in range(len(chunks))])[: len(spectrum)]
    return np.stack([istft(spectrum * masks[..., c], cfg, length=len(audio))
                     for c in range(masks.shape[-1])]).astype(np.float32)


# --------------------------------------------------------------------------- training
def _settings(cfg: Config) -> dict:
    s = cfg.section("model.separation")
    return {k: s[k] for k in ("chunk_frames", "silence_db", "epochs", "patience",
                              "steps_per_epoch", "batch_size", "learning_rate", "source_gain_db",
                              "validation_chunks", "prune_epochs", "prune_learning_rate")}


def train_variant(cfg: Config, train: SourceSpectra, validation: SourceSpectra, variant: Variant,
                  out_dir: Path | None = None, verbose: int = 2) -> loop.TrainResult:
    """Train one variant (fresh crops every epoch, early stopping on a fixed validation set),
    then compute its fixed attractors; everything goes to the run's folder."""
    import keras

    s = _settings(cfg)
    seed = int(cfg["project.seed"])
    keras.utils.set_random_seed(seed)
    files = loop.RunFiles(Path(out_dir)) if out_dir else run_files(cfg, variant.name)
    files.folder.mkdir(parents=True, exist_ok=True)
    chunk, silence, gain = int(s["chunk_frames"]), float(s["silence_db"]), float(s["source_gain_db"])
    n_sources, _, n_bins = train.spectra[0].shape

    sample, _ = draw_chunks(train, ATTRACTOR_CHUNKS, np.random.default_rng(seed + 1), chunk,
                            gain, silence)
    normalizer = Normalizer.fit(sample[..., 0])
    normalizer.save(files.normalizer)
    n_calib = int(cfg["export.calibration_examples"])
    np.save(files.calibration, sample[:n_calib, ..., 0].astype(np.float16))
    packed_norm = _PackedNormalizer(normalizer)
    vx, vy = draw_chunks(validation, int(s["validation_chunks"]), np.random.default_rng(seed + 2),
                         chunk, gain, silence)
    validation_data = (packed_norm(vx), {"masks": vy})

    def draw(n, rng):
        x, y = draw_chunks(train, n, rng, chunk, gain, silence)
        return x, {"masks": y}, {"masks": np.ones(n, np.float32)}

    steps, batch, epochs = int(s["steps_per_epoch"]), int(s["batch_size"]), int(s["epochs"])
    seq = loop.epoch_sequence(draw, steps, batch, packed_norm, seed + 3, channel_axis=False)
    model = build_training_model(variant, n_bins, n_sources, chunk)
    learning_rate = float(s["learning_rate"])
    if variant.prune_from:
        # Magnitude pruning: the parent's weights (same normaliser: same seed, same crops),
        # the smallest zeroed, then a short fine-tune in which the optimiser re-applies the
        # masks after every step (Keras 3 applies a variable's constraint after each update).
        parent, _, _ = loop.load_run(run_files(cfg, variant.prune_from),
                                     f"python -m train.separation --variant {variant.prune_from}")
        model.set_weights(parent.get_weights())
        masks = magnitude_masks(model, variant.sparsity)
        for var in model.trainable_variables:
            if var.path in masks:
                mask = masks[var.path]
                var.assign(np.asarray(var) * mask)
                var.constraint = lambda w, m=mask: w * m
        epochs = int(s["prune_epochs"])
        learning_rate = float(s["prune_learning_rate"])
        log.info("%s: %.0f %% of %s's weight matrices pruned by magnitude; fine-tuning %d x %d "
                 "steps", variant.name, 100 * sparsity_of(model), variant.prune_from, epochs,
                 steps)
    model.compile(optimizer=loop.cosine_adam(learning_rate, steps * epochs),
                  loss={"masks": danet_loss})
    if variant.prune_from:   # the loss before any fine-tuning: what pruning alone cost
        pruned_val_loss = float(model.evaluate(*validation_data, verbose=0, batch_size=batch))
    fitted = loop.fit(model, seq, validation_data, epochs=epochs, patience=int(s["patience"]),
                      checkpoint=files.checkpoint, verbose=verbose)
    embedding = embedding_of(model)
    attractors = fixed_attractors(embedding, train, normalizer, chunk, silence, seed + 4)
    np.save(attractors_path(files), attractors)
    params = int(embedding.count_params())
    info = {"model": MODEL, "variant": variant.name, "variant_spec": variant.__dict__,
            "profile": str(cfg.name), "epochs_run": len(fitted.history["loss"]),
            "best_epoch": fitted.best_epoch, "seconds": round(fitted.seconds, 1),
            "params": params, "train_mixtures": len(train.spectra),
            "validation_mixtures": len(validation.spectra), "settings": s,
            "sources": list(cfg["model.separation.sources"]),
            "best_val_loss": float(min(fitted.history["val_loss"]))}
    if variant.prune_from:
        info.update(sparsity=sparsity_of(model), pruned_from=variant.prune_from,
                    val_loss_pruned_before_fine_tune=pruned_val_loss)
    loop.save_run(files, fitted.history, info)
    paths = BuildPaths(cfg)
    loop.plot_history(fitted.history, paths.report(f"separation_{paths.profile}_{variant.name}"
                                                   f"_curves.png"),
                      f"DANet {variant.name} ({params:,} params)")
    return loop.TrainResult(variant.name, files.checkpoint, normalizer, fitted.history,
                            fitted.seconds, params, fitted.best_epoch)


def load_trained(cfg: Config, variant: str):
    """(embedding model, `Normalizer`, attractors ``(C, K)``, train_info) of a trained variant."""
    _custom_layers()
    files = run_files(cfg, variant)
    model, normalizer, info = loop.load_run(files, f"python -m train.separation --variant "
                                                   f"{variant}")
    return embedding_of(model), normalizer, np.load(attractors_path(files)), info


def corpus_spectra(cfg: Config, progress: bool = False) -> dict[str, SourceSpectra]:
    """The profile's mixtures, split by voice, as `SourceSpectra` per split."""
    from train.corpus import build_corpus, split_corpus

    stft_cfg = STFTConfig.from_config(cfg, "separation")
    parts = split_corpus(build_corpus(cfg, progress=progress), cfg)
    out = {name: source_spectra(p.separation, stft_cfg) for name, p in parts.items()}
    if not out["train"].spectra or not out["validation"].spectra:
        raise ValueError("the corpus has no separation mixtures for training/validation: set "
                         "data.synthetic.separation_mixtures (>= 20) or check data.real")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.separation", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the deep attractor network ([model.separation]) on the corpus's "
                    "two-source mixtures: one or more variants of [model.separation.variants] "
                    "(default: model.separation.variant, the deployed one), each with the same "
                    "epoch budget, then its fixed attractors. Writes "
                    "build/models/separation/<profile>/<variant>/ and the training curves.",
        epilog="examples:\n  python -m train.separation\n"
               "  python -m train.separation --all --set model.separation.epochs=3\n"
               "  python -m train.separation --variant full --variant lstm64")
    add_profile_arguments(parser, "model.separation.epochs=3")
    parser.add_argument("--variant", action="append", default=None,
                        help="a [model.separation.variants] name (repeatable)")
    parser.add_argument("--all", action="store_true", help="every variant")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loop.configure_threads()
    cfg = config_from_args(args)
    known = variants(cfg)
    names = list(known) if args.all else (args.variant or [cfg["model.separation.variant"]])
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; [model.separation.variants] has "
              f"{list(known)}", file=sys.stderr)
        return 2
    data = corpus_spectra(cfg, progress=not args.quiet)
    for name in names:
        t0 = time.perf_counter()
        result = train_variant(cfg, data["train"], data["validation"], known[name],
                               verbose=0 if args.quiet else 2)
        print(f"{name}: {result.params:,} params, best epoch {result.best_epoch}, val loss "
              f"{min(result.history['val_loss']):.3g}, {time.perf_counter() - t0:.0f} s -> "
              f"{result.model_path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
