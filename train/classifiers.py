"""The environmental sound classifiers: the log-mel CNN after Piczak (2015) and a bottleneck
ResNet, trained on ESC-50-layout data or the built-in synthetic household sounds.

::

    python -m train.classifiers cnn --profile default             # synthetic household sounds
    python -m train.classifiers resnet --profile default
    python -m train.classifiers cnn --profile real --set model.sound_cnn.classes=all
    python -m train.classifiers cnn --variant plain --set model.sound_cnn.batchnorm=false \\
        --set model.sound_cnn.augment=false       # the paper's plain network and training

**Features** are the device's: `train.features.log_mel_batch` with ``[frontend.classifier]``
(60 bands, 1024-sample window, 512-sample hop at 16 kHz), cut into segments by
`device.sound.segment` (the model's input length at ``segment_overlap``, segments below
``silence_db`` dropped) and normalised per mel band over the training segments (a per-dataset
`train.features.Normalizer`, written to the manifest for the device).

**The CNN** (`build_cnn`, Piczak 2015): the input ``(41 frames, 60 bands, 1)`` gets a delta
channel inside the model (a fixed 5-frame regression filter, so the device feeds log-mel only
and the int8 model computes the delta), then conv 80 x (6 frames, 57 bands) + ReLU, max-pool
(3, 4) stride (3, 1), dropout, conv 80 x (3, 1) + ReLU, max-pool (3, 1), two dense layers with
dropout, softmax. ``batchnorm = true`` adds batch norm after each convolution and dense layer.
SGD with Nesterov momentum and L2 weight decay, as in the paper (``optimizer = "adam"``: Adam).

**The ResNet** (`build_resnet`): the 60 bands are averaged in threes (``band_pool``) into a
``(50 frames, 20 bands)`` patch inside the model; a 3x3 stem, then three stages of
``blocks_per_stage`` bottleneck blocks (1x1 -> 3x3 -> 1x1 convolutions, each with batch norm,
ReLU after the first two and after the sum; a 1x1 projection shortcut where the shape changes)
with 64, 128, 256 output filters times ``width`` (bottleneck width half of that) and stride 2
between stages; global average pooling; softmax. Adam, cosine-decayed.

**Augmentation** (``augment = true``): every epoch draws fresh segments at random frame offsets
(a time shift finer than the segment hop), mixes ``mix_prob`` of them with background noise at
``mix_snr_db`` (in the mel power domain: ``log(exp(a) + g exp(b))``, the expected power of two
independent sounds), and masks time and bands (SpecAugment); the ResNet also flips patches in
time at random. Without it, the epochs cycle the fixed 50 %-overlap segments (the paper's way).

**Clip prediction**: the segments of a clip vote (`device.sound.vote`): by summed probability
(the paper's better rule) and, for comparison, by majority.

**Splits**: a clip's takes share a source recording (ESC-50's ``src_file``), so every split is by
it (`train.splits.split_by_group`, seeded by ``project.seed``): 65/15/20 % train/validation/test
by default. With the full ESC-50 (``--cv``) the dataset's five folds are used instead: each fold
the test fold once, the next one validation, as in the published 5-fold protocol.

Each run leaves ``build/models/sound_<model>/<profile>/<variant>/`` (`train.loop.RunFiles`:
``model.keras``, ``normalizer.json``, ``calibration.npy``, ``history.json``, ``train_info.json``)
plus ``test.npz`` (the test clips' segments for the export's int8 check) and ``report.json``
(float test accuracy by both votes, per-class recall, the split).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args
from device.frontend import LogMelConfig
from device.paths import BuildPaths
from device.sound import OTHER, SegmentSpec, segment, segment_level_db, vote
from train import loop
from train.features import Normalizer, log_mel_batch, spec_augment

__all__ = ["MODELS", "SoundClip", "load_clips", "split_clips", "clip_features", "build_cnn",
           "build_resnet", "build", "input_frames", "other_clips", "SegmentPool", "predict_clips",
           "clip_metrics", "cv_folds", "pool_cv", "cv_summary_path", "write_cv_summary",
           "plot_confusion", "train_model", "main"]

log = logging.getLogger("hopwise.train.classifiers")

MODELS = ("cnn", "resnet")
# Batch-norm moving averages: 0.9 instead of Keras' 0.99, since runs here are a few hundred
# steps; at 0.99 the averages of an early best epoch are still near their initial values and
# the saved model mispredicts what it scored well on in training mode.
BN_MOMENTUM = 0.9
FRONTEND = "classifier"


def section_of(model: str) -> str:
    """The profile section of ``model``: ``model.sound_cnn`` or ``model.sound_resnet``."""
    if model not in MODELS:
        raise ValueError(f"unknown sound classifier {model!r}; use one of {', '.join(MODELS)}")
    return f"model.sound_{model}"


def input_frames(cfg: Config, model: str) -> int:
    """Frames of one model input: ``segment_frames`` (CNN) or ``patch_frames`` (ResNet)."""
    key = "segment_frames" if model == "cnn" else "patch_frames"
    return int(cfg[f"{section_of(model)}.{key}"])


def segment_spec(cfg: Config, model: str) -> SegmentSpec:
    return SegmentSpec.from_frontend(cfg.section(f"frontend.{FRONTEND}"), input_frames(cfg, model))


# --------------------------------------------------------------------------- data
@dataclass
class SoundClip:
    """One labelled clip as the classifiers see it: log-mel frames of ``[frontend.classifier]``.

    ``group`` is what splits keep together (ESC-50's ``src_file``), ``path`` the file (None for
    synthetic clips), ``fold`` the dataset's fold (ESC-50) or None.
    """

    frames: np.ndarray
    label: str
    group: str
    path: str | None = None
    fold: int | None = None
    meta: dict = field(default_factory=dict)


def clip_features(audio: np.ndarray, cfg: Config) -> np.ndarray:
    """``(frames, n_mels)`` log-mel of one clip at the frontend's rate (the device's features)."""
    return log_mel_batch(np.asarray(audio, np.float32)[None], LogMelConfig.from_config(cfg, FRONTEND))[0]


def synthetic_clips(cfg: Config, labels: Sequence[str], per_class: int, clip_s: float,
                    tag: str = "sounds") -> list[SoundClip]:
    """``per_class`` synthetic clips of each household class (`train.synth.household`)."""
    from .synth import clip_rng, generate_household
    rate = int(cfg[f"frontend.{FRONTEND}.sample_rate"])
    seed = int(cfg["project.seed"])
    return [SoundClip(clip_features(generate_household(label, clip_rng(seed, tag, label, i),
                                                       clip_s, rate), cfg),
                      label, f"{label}/{i}")
            for label in labels for i in range(per_class)]


def load_clips(cfg: Config, model: str, folder: str | Path | None = None
               ) -> tuple[list[SoundClip], list[str]]:
    """The clips ``model`` trains on and its class list.

    ``data.source = "real"`` or a ``folder``: an ESC-50-layout folder (``data.real.esc50``),
    keeping the classes of ``labels.sounds`` (``classes = "labels"``) or every class in it
    (``"all"``). Otherwise ``synthetic_clips_per_class`` synthetic clips of each class of
    ``labels.sounds``.
    """
    sec = section_of(model)
    which = cfg[f"{sec}.classes"]
    if which not in ("labels", "all"):
        raise ValueError(f"{sec}.classes = {which!r}; use \"labels\" (labels.sounds) or \"all\"")
    if folder is not None or cfg["data.source"] == "real":
        from .corpus import resolve_data_path
        from .datasets import load_esc50
        root = Path(folder) if folder is not None else resolve_data_path(cfg["data.real.esc50"], cfg)
        rate = int(cfg[f"frontend.{FRONTEND}.sample_rate"])
        raw = load_esc50(root, rate)
        present = sorted({c.label for c in raw})
        if which == "all":
            labels = present
        else:
            labels = list(cfg["labels.sounds"])
            missing = [lab for lab in labels if lab not in present]
            if missing:
                log.warning("labels.sounds %s have no clips under %s; training without them",
                            missing, root)
                labels = [lab for lab in labels if lab in present]
        keep = set(labels)
        clips = [SoundClip(clip_features(c.audio, cfg), c.label, c.group, c.path, c.fold,
                           dict(c.meta)) for c in raw if c.label in keep]
        if which == "labels" and other_count(cfg):
            rest = [c for c in raw if c.label not in keep]
            clips += other_clips(cfg, labels, other_count(cfg), rest)
            labels = labels + [OTHER]
        return clips, labels
    labels = list(cfg["labels.sounds"])
    clips = synthetic_clips(cfg, labels, int(cfg["model.sound_classifiers.synthetic_clips_per_class"]),
                            float(cfg["model.sound_classifiers.clip_s"]))
    if other_count(cfg):
        clips += other_clips(cfg, labels, other_count(cfg))
        labels = labels + [OTHER]
    return clips, labels


def other_count(cfg: Config) -> int:
    """``model.sound_classifiers.other_clips``: clips of the `_other_` class (0: a closed set)."""
    return int(cfg["model.sound_classifiers.other_clips"])


def other_clips(cfg: Config, labels: Sequence[str], count: int, esc50_rest: Sequence = ()
                ) -> list[SoundClip]:
    """``count`` clips of the class `device.sound.OTHER`: what the device hears that is none of
    ``labels``.

    Half of them (at most) are whole ESC-50 clips of the classes not in ``labels``
    (``esc50_rest``, real data only; each keeps its source recording and fold); the rest are
    ``clip_s`` collages of the keyword corpus' speech (real or synthetic voices), its scenes
    (synthetic data only: a real profile's scenes are ESC-50 clips, maybe of ``labels``; a scene
    named like a sound, e.g. dog_bark, is left out) and its noise recordings, 0.5-1 s pieces at
    levels +-10 dB apart, so a segment often spans two kinds. Drawn with ``project.seed``.
    """
    from .corpus import build_corpus
    from .synth import clip_rng
    rate = int(cfg[f"frontend.{FRONTEND}.sample_rate"])
    seed = int(cfg["project.seed"])
    rng = clip_rng(seed, "sound-other", OTHER, 0)
    out: list[SoundClip] = []
    if esc50_rest:
        picks = rng.choice(len(esc50_rest), min(count // 2, len(esc50_rest)), replace=False)
        out = [SoundClip(clip_features(esc50_rest[i].audio, cfg), OTHER, esc50_rest[i].group,
                         esc50_rest[i].path, esc50_rest[i].fold, dict(esc50_rest[i].meta))
               for i in sorted(int(i) for i in picks)]
    corpus = build_corpus(cfg, progress=False)
    if int(corpus.keywords[0].sample_rate if corpus.keywords else rate) != rate:
        raise ValueError(f"the corpus is at {corpus.keywords[0].sample_rate} Hz and "
                         f"[frontend.classifier] at {rate} Hz; give them one rate")
    named = {w for lab in labels for w in lab.split("_")}
    pieces = [c.audio for c in corpus.keywords if c.label != "_silence_"]
    if corpus.source == "synthetic":
        pieces += [c.audio for c in corpus.scenes if not named & set(c.label.split("_"))]
    pieces += [n[i:i + rate] for n in corpus.noise for i in range(0, len(n) - rate + 1, rate)]
    if not pieces:
        raise ValueError("no speech, scene or noise clips in the corpus for the _other_ class")
    clip_n = int(round(float(cfg["model.sound_classifiers.clip_s"]) * rate))
    for i in range(count - len(out)):
        parts, n = [], 0
        while n < clip_n:
            piece = np.asarray(pieces[int(rng.integers(len(pieces)))], np.float64)
            take = int(rng.uniform(0.5, 1.0) * rate)
            start = int(rng.integers(0, max(1, len(piece) - take + 1)))
            part = piece[start:start + take]
            part = part / (np.sqrt(np.mean(part ** 2)) + 1e-9) * 0.05 * 10 ** (rng.uniform(-10, 10) / 20)
            parts.append(part)
            n += len(part)
        audio = np.clip(np.concatenate(parts)[:clip_n], -1.0, 1.0).astype(np.float32)
        out.append(SoundClip(clip_features(audio, cfg), OTHER, f"{OTHER}/{i}"))
    return out


def split_clips(cfg: Config, clips: Sequence[SoundClip], test_fold: int | None = None
                ) -> tuple[list, list, list]:
    """Train, validation and test clips, disjoint by source recording.

    ``test_fold`` (full ESC-50, ``--cv``): that fold is the test set and the next one
    (cyclically) validation. Otherwise `train.splits.split_by_group` on ``group`` with
    ``model.sound_classifiers.validation_split`` / ``test_split``.
    """
    from .splits import esc50_split, split_by_group
    if test_fold is not None:
        folds = sorted({c.fold for c in clips})
        val_fold = folds[(folds.index(test_fold) + 1) % len(folds)]
        return esc50_split(clips, (test_fold,), (val_fold,))
    val = float(cfg["model.sound_classifiers.validation_split"])
    test = float(cfg["model.sound_classifiers.test_split"])
    return split_by_group(clips, (1.0 - val - test, val, test), int(cfg["project.seed"]))


def cv_folds(clips: Sequence[SoundClip], seed: int, n_folds: int = 5,
             min_share: float = 0.1) -> tuple[list[SoundClip], str]:
    """The clips with the folds a cross-validation uses, and a line saying which.

    The dataset's own ``fold`` column (full ESC-50: five folds of 400 clips, each source
    recording in one fold) when it has at least 3 folds, each holding ``min_share`` of the clips.
    Otherwise (the ESC-50 part here: 275 of 285 clips in fold 4) ``n_folds`` folds by source
    recording from `train.splits.group_folds`, each class spread over them.
    """
    from collections import Counter
    from dataclasses import replace
    from .splits import group_folds
    counts = Counter(c.fold for c in clips)
    if (None not in counts and len(counts) >= 3
            and min(counts.values()) >= min_share * len(clips)):
        return list(clips), (f"the dataset's {len(counts)} folds ({dict(sorted(counts.items()))} "
                             f"clips)")
    fold_of = group_folds(clips, n_folds, seed)
    out = [replace(c, fold=fold_of[c.group]) for c in clips]
    sizes = dict(sorted(Counter(c.fold for c in out).items()))
    have = dict(sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
    return out, (f"{n_folds} folds by source recording (train.splits.group_folds, seed {seed}; "
                 f"{sizes} clips), since the dataset's fold column is degenerate here ({have})")


def pool_cv(reports: Sequence[dict], how: str = "float") -> dict:
    """Cross-validation figures pooled over the folds of ``reports`` (`train_model`'s).

    Every clip is tested once, so the summed confusion matrices give the accuracy over all clips
    (``accuracy``) and each class's recall; ``fold_accuracy`` lists each fold's. ``how``:
    "float" or "int8" (after `export.classifiers` added it).
    """
    labels = list(reports[0]["labels"])
    out: dict = {"folds": len(reports)}
    for vote_rule in ("probability_vote", "majority_vote"):
        cm = np.zeros((len(labels), len(labels)), np.int64)
        folds = []
        for rep in reports:
            if list(rep["labels"]) != labels:
                raise ValueError(f"fold {rep['variant']} has other labels than the first fold")
            m = rep[how][vote_rule]
            cm += np.asarray(m["confusion"], np.int64)
            folds.append(m["accuracy"])
        rows = cm.sum(1)
        sounds = [i for i, lab in enumerate(labels) if lab != OTHER]
        out[vote_rule] = {
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "clips": int(cm.sum()),
            # the clips of the sound classes alone (an _other_ class's clips left out)
            "accuracy_sounds": float(sum(cm[i, i] for i in sounds) / max(rows[sounds].sum(), 1)),
            "fold_accuracy": [float(a) for a in folds],
            "fold_mean": float(np.mean(folds)), "fold_sd": float(np.std(folds, ddof=1))
            if len(folds) > 1 else 0.0,
            "per_class_recall": {lab: (float(cm[i, i] / rows[i]) if rows[i] else None)
                                 for i, lab in enumerate(labels)},
            "confusion": cm.tolist()}
    return out


def cv_summary_path(cfg: Config, model: str, variant: str | None = None) -> Path:
    """``build/models/sound_<model>/<profile>/<variant>_cv.json``: the pooled folds."""
    folder = BuildPaths(cfg).model_dir(f"sound_{model}", variant or model)
    return folder.parent / f"{folder.name}_cv.json"


def write_cv_summary(cfg: Config, model: str, variant: str | None, reports: Sequence[dict],
                     folds_line: str) -> dict:
    """Pool ``reports`` (float, and int8 when every fold has it), write the JSON and the
    probability-vote confusion PNG beside it; return the summary."""
    summary = {"model": f"sound_{model}", "variant": variant or model, "profile": cfg.name,
               "labels": list(reports[0]["labels"]), "params": int(reports[0]["params"]),
               "folds": folds_line, "runs": [r["variant"] for r in reports],
               "best_epochs": [r["best_epoch"] for r in reports],
               "train_s": [r["train_s"] for r in reports],
               "float": pool_cv(reports, "float")}
    if all("int8" in r for r in reports):
        summary["int8"] = pool_cv(reports, "int8")
    path = cv_summary_path(cfg, model, variant)
    path.write_text(json.dumps(summary, indent=1) + "\n")
    for how in ("float", "int8"):
        if how in summary:
            try:
                plot_confusion(summary["labels"], summary[how]["probability_vote"]["confusion"],
                               path.with_name(f"{path.stem}_{how}.png"),
                               f"sound_{model}/{variant or model} {how}, pooled folds")
            except Exception as exc:  # noqa: BLE001 - a missing plot is not a failed run
                log.warning("no confusion plot: %s", exc)
    return summary


def plot_confusion(labels: Sequence[str], confusion, path: Path, title: str) -> Path:
    """A clip confusion matrix (probability vote) as a PNG (`train.plots.save_confusion_matrix`)."""
    from .plots import save_confusion_matrix
    return save_confusion_matrix(labels, confusion, path, f"{title}: clips",
                                 xlabel="predicted (probability vote)")


def _segments(clips: Sequence[SoundClip], spec: SegmentSpec, index: dict[str, int]):
    """All kept segments of ``clips``: (segments, labels, clip index of each)."""
    segs, labels, owner = [], [], []
    for i, c in enumerate(clips):
        s, _ = segment(c.frames, spec)
        segs.append(s)
        labels += [index[c.label]] * len(s)
        owner += [i] * len(s)
    return np.concatenate(segs), np.asarray(labels, np.int32), np.asarray(owner, np.int64)


def background_power(cfg: Config) -> list[np.ndarray]:
    """Mel power ``(frames, mels)`` of the background recordings training segments are mixed
    with: ``data.real.background_noise`` for real data, the synthetic noise pool otherwise."""
    rate = int(cfg[f"frontend.{FRONTEND}.sample_rate"])
    audio: list[np.ndarray] = []
    if cfg["data.source"] == "real":
        from .corpus import resolve_data_path
        from .datasets import load_background_noise
        path = resolve_data_path(cfg["data.real.background_noise"], cfg)
        if path is not None and Path(path).is_dir():
            audio = load_background_noise([path], rate)
    if not audio:
        from .synth import clip_rng, noise_recording
        audio = [noise_recording(clip_rng(int(cfg["project.seed"]), "sound-bg", colour, i), 20.0,
                                 rate, colour) for i, colour in enumerate(("pink", "brown", "white"))]
    floor = float(cfg[f"frontend.{FRONTEND}.log_floor"])
    return [np.maximum(np.exp(clip_features(a, cfg)) - floor, 0.0) for a in audio]


class SegmentPool:
    """Draws training segments for `train.loop.epoch_sequence`: ``draw(n, rng)``.

    With ``augment``: each example is a random clip's segment at a random frame offset among
    the non-silent ones (a time shift), mixed with a random stretch of background noise with
    probability ``mix_prob`` at an SNR in ``mix_snr_db``, flipped in time with probability
    ``flip_prob``. Without: the clips' fixed 50 %-overlap segments, shuffled and cycled.
    """

    def __init__(self, clips, labels, spec: SegmentSpec, *, augment: bool, background,
                 mix_prob: float, mix_snr_db: Sequence[float], flip_prob: float, log_floor: float):
        self.spec, self.augment = spec, augment
        self.index = {lab: i for i, lab in enumerate(labels)}
        self.fixed, self.fixed_labels, _ = _segments(clips, spec, self.index)
        self.clips = [c.frames for c in clips]
        self.clip_labels = np.asarray([self.index[c.label] for c in clips], np.int32)
        self.background = background
        self.mix_prob, self.snr = float(mix_prob), tuple(float(v) for v in mix_snr_db)
        self.flip_prob, self.floor = float(flip_prob), float(log_floor)
        F = spec.segment_frames
        # Offsets whose segment is loud enough, per clip (the loudest when none is).
        self.offsets = []
        for fr in self.clips:
            if len(fr) < F:
                self.offsets.append(np.zeros(1, np.int64))
                continue
            starts = np.arange(len(fr) - F + 1)
            power = np.exp(fr.astype(np.float64)).sum(1)
            csum = np.concatenate([[0.0], np.cumsum(power)])
            level = 10 * np.log10((csum[starts + F] - csum[starts]) / F + 1e-20)
            ok = starts[level >= spec.silence_db]
            self.offsets.append(ok if len(ok) else starts[[int(np.argmax(level))]])
        self._cursor = 0
        self._order = None

    def draw(self, n: int, rng: np.random.Generator):
        F = self.spec.segment_frames
        if not self.augment:
            if self._order is None or self._cursor + n > len(self._order):
                self._order = rng.permutation(np.resize(np.arange(len(self.fixed)),
                                                        max(n, len(self.fixed))))
                self._cursor = 0
            take = self._order[self._cursor:self._cursor + n]
            self._cursor += n
            x, y = self.fixed[take], self.fixed_labels[take]
        else:
            which = rng.integers(len(self.clips), size=n)
            x = np.empty((n, F, self.fixed.shape[-1]), np.float32)
            for k, c in enumerate(which):
                fr = self.clips[c]
                offs = self.offsets[c]
                s = int(offs[rng.integers(len(offs))])
                seg = fr[s:s + F]
                if len(seg) < F:
                    seg = np.concatenate([seg, np.repeat(seg[-1:], F - len(seg), 0)])
                if self.background and rng.random() < self.mix_prob:
                    seg = self._mix(seg, rng)
                if rng.random() < self.flip_prob:
                    seg = seg[::-1]
                x[k] = seg
            y = self.clip_labels[which]
        return x, {"sound": y}, {"sound": np.ones(len(y), np.float32)}

    def _mix(self, seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        F = len(seg)
        bg = self.background[int(rng.integers(len(self.background)))]
        s = int(rng.integers(max(1, len(bg) - F)))
        b = bg[s:s + F]
        if len(b) < F:
            return seg
        fg = np.maximum(np.exp(seg.astype(np.float64)) - self.floor, 0.0)
        snr = rng.uniform(*self.snr)
        gain = fg.sum() / max(b.sum(), 1e-20) * 10 ** (-snr / 10.0)
        return np.log(fg + gain * b + self.floor).astype(np.float32)


# --------------------------------------------------------------------------- networks
def _delta_layer(keras, name="delta"):
    """A fixed 5-frame regression delta along time (librosa's width 5, zero padded at the
    ends): ``d_t = sum_n n (x_{t+n} - x_{t-n}) / 10``, n = 1, 2. Not trainable."""
    conv = keras.layers.Conv2D(1, (5, 1), padding="same", use_bias=False, trainable=False,
                               name=name)
    return conv


def build_cnn(n_frames: int, n_mels: int, n_classes: int, *, conv_filters: int,
              dense_units: int, batchnorm: bool, dropout: float, l2: float,
              batch_size: int | None = None):
    """The Piczak-style CNN: ``(frames, mels, 1)`` log-mel -> ``{"sound": (classes,)}``.

    Parameters
    ----------
    n_frames, n_mels : int
        The input segment (41 x 60 in the paper).
    conv_filters, dense_units : int
        80 and 5000 in the paper; dense_units dominates the parameter count.
    batchnorm : bool
        Batch norm after each convolution and hidden dense layer (before ReLU).
    dropout, l2 : float
        Before each dense layer; L2 weight decay of every kernel.
    """
    import keras
    reg = keras.regularizers.l2(l2) if l2 > 0 else None
    inp = keras.Input((n_frames, n_mels, 1), batch_size=batch_size, name="log_mel")
    delta = _delta_layer(keras)
    x = keras.layers.Concatenate(axis=-1, name="with_delta")([inp, delta(inp)])
    kernel_bands = min(57, n_mels)
    pool_bands = min(4, n_mels - kernel_bands + 1)

    def act(x, name):
        if batchnorm:
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return keras.layers.ReLU(name=f"{name}_relu")(x)

    x = keras.layers.Conv2D(conv_filters, (min(6, n_frames), kernel_bands), use_bias=not batchnorm,
                            kernel_regularizer=reg, name="conv1")(x)
    x = act(x, "conv1")
    x = keras.layers.MaxPooling2D((3, pool_bands), strides=(3, 1), name="pool1")(x)
    x = keras.layers.Dropout(dropout, name="drop_conv")(x)
    x = keras.layers.Conv2D(conv_filters, (3, 1), use_bias=not batchnorm, kernel_regularizer=reg,
                            name="conv2")(x)
    x = act(x, "conv2")
    x = keras.layers.MaxPooling2D((3, 1), strides=(3, 1), name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = keras.layers.Dropout(dropout, name=f"drop{i}")(x)
        x = keras.layers.Dense(dense_units, use_bias=not batchnorm, kernel_regularizer=reg,
                               name=f"dense{i}")(x)
        x = act(x, f"dense{i}")
    out = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg,
                             name="sound")(x)
    model = keras.Model(inp, {"sound": out}, name="sound_cnn")
    k = np.zeros((5, 1, 1, 1), np.float32)
    k[:, 0, 0, 0] = np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) / 10.0
    delta.set_weights([k])
    return model


def build_resnet(n_frames: int, n_mels: int, n_classes: int, *, width: float, band_pool: int,
                 blocks_per_stage: int, batch_size: int | None = None):
    """The bottleneck ResNet: ``(frames, mels, 1)`` -> bands averaged by ``band_pool`` ->
    3 stages (64/128/256 x ``width`` filters, stride 2 between) -> ``{"sound": (classes,)}``."""
    import keras
    L = keras.layers

    def filters(n):
        return max(4, int(round(n * width)))

    def block(x, out_ch, stride, name):
        mid = max(2, out_ch // 2)
        shortcut = x
        if stride != 1 or x.shape[-1] != out_ch:
            shortcut = L.Conv2D(out_ch, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
            shortcut = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
        y = L.Conv2D(mid, 1, use_bias=False, name=f"{name}_a")(x)
        y = L.ReLU(name=f"{name}_a_relu")(L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_a_bn")(y))
        y = L.Conv2D(mid, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_b")(y)
        y = L.ReLU(name=f"{name}_b_relu")(L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y))
        y = L.Conv2D(out_ch, 1, use_bias=False, name=f"{name}_c")(y)
        y = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_c_bn")(y)
        return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([y, shortcut]))

    inp = keras.Input((n_frames, n_mels, 1), batch_size=batch_size, name="log_mel")
    x = inp
    if band_pool > 1:
        x = L.AveragePooling2D((1, band_pool), name="band_pool")(x)
    x = L.Conv2D(filters(32), 3, padding="same", use_bias=False, name="stem")(x)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x))
    for s, base in enumerate((64, 128, 256)):
        for b in range(blocks_per_stage):
            x = block(x, filters(base), 2 if (b == 0 and s > 0) else 1, f"s{s + 1}b{b + 1}")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(n_classes, activation="softmax", name="sound")(x)
    return keras.Model(inp, {"sound": out}, name="sound_resnet")


def build(cfg: Config, model: str, n_classes: int, batch_size: int | None = None,
          settings: dict | None = None):
    """The profile's ``model`` ("cnn" or "resnet") for ``n_classes``; ``settings`` (a run's
    ``report.json`` ``settings``) override the profile's section, so export rebuilds exactly
    the network a run trained whatever the profile says now."""
    sec = section_of(model)
    s = {**cfg.section(sec), **{k: v for k, v in (settings or {}).items() if k != "frontend"}}
    n_mels = int(cfg[f"frontend.{FRONTEND}.n_mels"])
    frames = int(s["segment_frames"] if model == "cnn" else s["patch_frames"])
    if model == "cnn":
        return build_cnn(frames, n_mels, n_classes, conv_filters=int(s["conv_filters"]),
                         dense_units=int(s["dense_units"]), batchnorm=bool(s["batchnorm"]),
                         dropout=float(s["dropout"]), l2=float(s["l2"]), batch_size=batch_size)
    return build_resnet(frames, n_mels, n_classes, width=float(s["width"]),
                        band_pool=int(s["band_pool"]),
                        blocks_per_stage=int(s["blocks_per_stage"]), batch_size=batch_size)


# --------------------------------------------------------------------------- clip figures
def predict_clips(predict, segs: np.ndarray, owner: np.ndarray, n_clips: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment posteriors and both votes per clip.

    ``predict(segments) -> (n, classes)``. Returns (segment posteriors, probability-vote class
    per clip, majority-vote class per clip).
    """
    p = predict(segs)
    prob = np.empty(n_clips, np.int64)
    major = np.empty(n_clips, np.int64)
    for i in range(n_clips):
        mine = p[owner == i]
        prob[i] = vote(mine, "probability")
        major[i] = vote(mine, "majority")
    return p, prob, major


def clip_metrics(truth: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, per-class recall (None for a class without clips) and the confusion matrix
    (rows: truth, columns: prediction)."""
    n = len(labels)
    cm = np.zeros((n, n), np.int64)
    for t, p in zip(truth, pred):
        cm[int(t), int(p)] += 1
    rows = cm.sum(1)
    return {"accuracy": float(np.mean(truth == pred)) if len(truth) else float("nan"),
            "clips": int(len(truth)),
            "per_class_recall": {lab: (float(cm[i, i] / rows[i]) if rows[i] else None)
                                 for i, lab in enumerate(labels)},
            "confusion": cm.tolist()}


# --------------------------------------------------------------------------- training
def _compile(cfg: Config, model: str, net, total_steps: int) -> None:
    import keras
    sec = section_of(model)
    lr = float(cfg[f"{sec}.learning_rate"])
    if model == "cnn" and cfg[f"{sec}.optimizer"] == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    elif model == "resnet" or cfg[f"{sec}.optimizer"] == "adam":
        opt = loop.cosine_adam(lr, total_steps)
    else:
        raise ValueError(f"{sec}.optimizer = {cfg[f'{sec}.optimizer']!r}; use \"sgd\" or \"adam\"")
    net.compile(optimizer=opt, loss={"sound": "sparse_categorical_crossentropy"},
                metrics={"sound": ["accuracy"]})


def train_model(cfg: Config, model: str, variant: str | None = None, data: str | None = None,
                test_fold: int | None = None, verbose: int = 2,
                clips_labels: tuple | None = None) -> dict:
    """Train ``model`` on the profile's data, save the run and return its report.

    Parameters
    ----------
    cfg : Config
    model : "cnn" or "resnet"
    variant : str, optional
        The run folder's name (default ``model``); ``--cv`` appends ``_fold<k>``.
    data : str, optional
        An ESC-50-layout folder instead of the profile's data.
    test_fold : int, optional
        The ESC-50 fold held out (5-fold cross-validation); None: the ``src_file`` split.
    clips_labels : (clips, labels), optional
        Already loaded data (cross-validation loads once).
    """
    loop.configure_threads()
    import keras
    sec = section_of(model)
    variant = variant or model
    if test_fold is not None:
        variant = f"{variant}_fold{test_fold}"
    seed = int(cfg["project.seed"])
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    clips, labels = clips_labels or load_clips(cfg, model, data)
    if len(labels) < 2:
        raise ValueError(f"{len(labels)} class(es) with clips: a classifier needs at least 2")
    train, val, test = split_clips(cfg, clips, test_fold)
    if not train or not val or not test:
        raise ValueError(f"the split left a part empty ({len(train)}/{len(val)}/{len(test)} "
                         f"clips): use more data or other split fractions")
    spec = segment_spec(cfg, model)
    index = {lab: i for i, lab in enumerate(labels)}
    aug = bool(cfg[f"{sec}.augment"])
    shared = cfg.section("model.sound_classifiers")
    pool = SegmentPool(train, labels, spec, augment=aug,
                       background=background_power(cfg) if aug else [],
                       mix_prob=shared["mix_prob"], mix_snr_db=shared["mix_snr_db"],
                       flip_prob=0.5 if (aug and model == "resnet") else 0.0,
                       log_floor=cfg[f"frontend.{FRONTEND}.log_floor"])
    norm = Normalizer.fit(pool.fixed)
    masks = None
    if aug:
        def masks(x, rng):
            return spec_augment(x, rng, time_masks=int(shared["time_masks"]),
                                time_mask_frames=int(shared["time_mask_frames"]),
                                freq_masks=int(shared["freq_masks"]),
                                freq_mask_bands=int(shared["freq_mask_bands"]))
    steps = int(cfg[f"{sec}.steps_per_epoch"])
    batch = int(cfg[f"{sec}.batch_size"])
    epochs = int(cfg[f"{sec}.epochs"])
    seq = loop.epoch_sequence(pool.draw, steps, batch, norm, seed, batch_transform=masks)
    vx, vy, _ = _segments(val, spec, index)
    validation = (norm(vx)[..., None], {"sound": vy}, {"sound": np.ones(len(vy), np.float32)})
    net = build(cfg, model, len(labels))
    _compile(cfg, model, net, steps * epochs)
    folder = BuildPaths(cfg).model_dir(f"sound_{model}", variant)
    folder.mkdir(parents=True, exist_ok=True)
    files = loop.RunFiles(folder)
    log.info("sound_%s/%s: %d classes, clips %d/%d/%d (train/val/test), %d train segments, "
             "%d parameters", model, variant, len(labels), len(train), len(val), len(test),
             len(pool.fixed), net.count_params())
    fitted = loop.fit(net, seq, validation, epochs=epochs, patience=int(cfg[f"{sec}.patience"]),
                      checkpoint=files.checkpoint, verbose=verbose,
                      monitor=str(shared["early_stopping_on"]))
    norm.save(files.normalizer)
    rng = np.random.default_rng(seed)
    calib = pool.fixed[rng.permutation(len(pool.fixed))[:int(cfg["export.calibration_examples"])]]
    np.save(files.calibration, calib.astype(np.float16))

    tx, ty, towner = _segments(test, spec, index)
    truth = np.asarray([index[c.label] for c in test])

    def predict(x):
        return net.predict(norm(x)[..., None], batch_size=256, verbose=0)["sound"]

    p, prob, major = predict_clips(predict, tx, towner, len(test))
    np.savez_compressed(folder / "test.npz", segments=tx.astype(np.float32), owner=towner,
                        truth=truth, float_posteriors=p.astype(np.float32))
    report = {
        "model": f"sound_{model}", "variant": variant, "profile": cfg.name,
        "labels": labels, "params": int(net.count_params()),
        "segment_frames": spec.segment_frames, "segment_hop_frames": spec.segment_hop_frames,
        "split": ("ESC-50 fold %d test, next fold validation" % test_fold if test_fold is not None
                  else f"by source recording (group), seed {seed}, "
                       f"{len(train)}/{len(val)}/{len(test)} clips"),
        "test_files": [c.path or c.group for c in test],
        "train_segments": int(len(pool.fixed)), "test_segments": int(len(tx)),
        "float": {"probability_vote": clip_metrics(truth, prob, labels),
                  "majority_vote": clip_metrics(truth, major, labels),
                  "segment_accuracy": float(np.mean(p.argmax(1) == ty))},
        "epochs_run": len(fitted.history["loss"]), "best_epoch": fitted.best_epoch,
        "train_s": round(fitted.seconds, 1), "total_s": round(time.perf_counter() - t0, 1),
        "settings": {**cfg.section(sec), "frontend": cfg.section(f"frontend.{FRONTEND}")},
    }
    loop.save_run(files, fitted.history, {k: report[k] for k in (
        "model", "variant", "profile", "labels", "params", "split", "best_epoch", "train_s",
        "settings")})
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    try:
        loop.plot_history(fitted.history, BuildPaths(cfg).report(
            f"sound_{model}_{variant}_{BuildPaths(cfg).profile}_curves.png"),
            f"sound_{model} {variant} ({cfg.name})")
    except Exception as exc:  # noqa: BLE001 - a missing plot is not a failed training
        log.warning("no training curves: %s", exc)
    return report


def summary(report: dict) -> str:
    f = report["float"]
    return (f"sound {report['model']}/{report['variant']}: {report['params']} parameters, "
            f"{len(report['labels'])} classes, test clips {f['probability_vote']['clips']}: "
            f"clip accuracy {f['probability_vote']['accuracy']:.3f} (probability vote), "
            f"{f['majority_vote']['accuracy']:.3f} (majority), segments "
            f"{f['segment_accuracy']:.3f}; best epoch {report['best_epoch']} of "
            f"{report['epochs_run']}, {report['train_s']} s")


def deployed_model(cfg: Config) -> str:
    """Which classifier the pipeline's ``stages.sounds`` runs: "cnn" or "resnet", from its model
    file's name (``export/sound_<model>_int8.tflite``)."""
    name = Path(str(cfg["stages.sounds.model"])).name
    for model in MODELS:
        if name.startswith(f"sound_{model}"):
            return model
    raise ValueError(f"stages.sounds.model = {cfg['stages.sounds.model']!r} is no sound "
                     f"classifier this trains; name export/sound_cnn_int8.tflite or "
                     f"export/sound_resnet_int8.tflite")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.classifiers", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an environmental sound classifier ([model.sound_cnn]: the log-mel "
                    "CNN after Piczak 2015; [model.sound_resnet]: the bottleneck ResNet) on the "
                    "profile's data (synthetic household sounds, or ESC-50 with PROFILE=real), "
                    "report float clip accuracy on the held-out source recordings and save the "
                    "run under build/models/sound_<model>/<profile>/<variant>/.",
        epilog="examples:\n  python -m train.classifiers cnn\n"
               "  python -m train.classifiers resnet --profile real\n"
               "  python -m train.classifiers cnn --profile real --variant plain "
               "--set model.sound_cnn.batchnorm=false --set model.sound_cnn.augment=false\n"
               "  python -m train.classifiers cnn --profile real --cv   # full ESC-50, 5 folds")
    parser.add_argument("model", choices=MODELS + ("both", "deployed"),
                        help="which classifier; deployed: the one stages.sounds.model runs "
                             "(what make train trains)")
    add_profile_arguments(parser, "model.sound_resnet.width=1.0")
    parser.add_argument("--variant", default=None, help="run folder name (default: the model)")
    parser.add_argument("--data", default=None, help="an ESC-50-layout folder (default: the "
                        "profile's data)")
    parser.add_argument("--cv", action="store_true", help="cross-validation, one run per fold: "
                        "by the dataset's fold column (full ESC-50), or, where that is "
                        "degenerate (the ESC-50 part here), --folds folds by source recording; "
                        "pooled figures in <run>_cv.json + a confusion PNG")
    parser.add_argument("--folds", type=int, default=5, help="folds by source recording when "
                        "the dataset has none (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    try:
        models = (MODELS if args.model == "both" else (deployed_model(cfg),)
                  if args.model == "deployed" else (args.model,))
    except ValueError as exc:
        print(f"train.classifiers: {exc}", file=sys.stderr)
        return 2
    try:
        for model in models:
            if args.cv:
                clips, labels = load_clips(cfg, model, args.data)
                clips, folds_line = cv_folds(clips, int(cfg["project.seed"]), args.folds)
                print(f"sound_{model}: cross-validation over {folds_line}")
                folds = sorted({c.fold for c in clips})
                reports = []
                for k in folds:
                    rep = train_model(cfg, model, args.variant, args.data, test_fold=k,
                                      verbose=0 if args.quiet else 2,
                                      clips_labels=(clips, labels))
                    print(summary(rep))
                    reports.append(rep)
                pooled = write_cv_summary(cfg, model, args.variant, reports, folds_line)
                pv = pooled["float"]["probability_vote"]
                print(f"sound_{model}: {len(folds)} folds, {pv['clips']} clips each tested once: "
                      f"clip accuracy {pv['accuracy']:.3f} (fold mean {pv['fold_mean']:.3f} +- "
                      f"{pv['fold_sd']:.3f}) -> {cv_summary_path(cfg, model, args.variant)}")
            else:
                rep = train_model(cfg, model, args.variant, args.data,
                                  verbose=0 if args.quiet else 2)
                print(summary(rep))
    except FileNotFoundError as exc:
        if args.model == "deployed":
            # make train: a profile whose sound data is not here still trains everything else;
            # the pipeline's sounds stage then says once that it has no model.
            print(f"train.classifiers: no sound classifier trained: {exc} (the pipeline runs "
                  f"without sound events)", file=sys.stderr)
            return 0
        print(f"train.classifiers: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"train.classifiers: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
