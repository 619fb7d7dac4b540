"""The echo state network for vocal percussion: reservoir, frame labels, estimator, search.

::

    python -m train.esn --profile default            # fit on the synthetic drum hits, save
    python -m train.esn --profile real               # ../shared/data/beatbox, by recording
    python -m train.esn --profile real --search      # hyper-parameter search (progress bar)

The network (`build_reservoir`): ``grid_height x grid_width`` neurons on a 2-D grid; recurrent
weights normal, each divided by the grid distance between its two neurons (no self-loops), the
matrix then scaled to the spectral radius ``model.esn.spectral_radius`` (< 1: the echo-state
property); input weights uniform in ``±input_scaling`` with a random ``input_density`` of them
kept. The update is ``x <- (1 - a) x + a tanh(W x + W_in u)`` with ``a = model.esn.leak`` (see
`device.esn`), and by default it runs in the device's int16 fixed point: the ridge readout is
fit on the states the device will compute (``fixed_point=False`` gives the float reservoir, kept
for comparison).

Frame labels (`device.esn.frame_labels`, shared with enrolment on the device): a recording
holds one sound. Its frames' energy ``E`` (dB of the summed mel power) is compared with the
recording's own noise floor ``F`` (10th percentile of ``E``) and peak ``P``: the runs of
consecutive frames with ``E > F + max(label_min_rise_db, label_rise_fraction * (P - F))`` that
last at least ``label_min_sound_frames`` (shorter ones are clicks and pops) are candidates, and
the sound is the one with the loudest frame; every other frame (and every frame of a ``silent``
recording) is ``silent``. On the 28 beatbox recordings of a sound this rule agrees with the
author's own trimmed copies (``cripped_wav``, located in ``raw_wav`` by cross-correlation) on
96.7 % of frames, at least 93.8 % on each (it ends the sound a little earlier, in the tail);
without the click rule one hi-hat was labelled on a pop in its lead-in.

Cross-validation is always by recording (`sklearn.model_selection.StratifiedGroupKFold`), never
by frame: neighbouring frames of one recording are nearly the same example.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import Ridge

from device import esn as desn
from device.esn import SILENT, build_reservoir, frame_energy_db, frame_labels
from device.config import Config, add_profile_arguments, config_from_args
from device.frontend import LogMelConfig, log_mel
from device.paths import BuildPaths
from device.resample import to_frontend_rate

__all__ = ["Recording", "synthetic_recordings", "build_reservoir", "float_states",
           "frame_energy_db", "frame_labels", "EchoStateClassifier", "load_recordings",
           "cross_validate", "memory_frames", "search", "params_from_config", "SEARCH_SPACE",
           "main"]

log = logging.getLogger("hopwise.train.esn")


# --------------------------------------------------------------------------- data
@dataclass
class Recording:
    """One recording of one sound: its ESN log-mel frames and per-frame labels.

    Attributes
    ----------
    frames : np.ndarray
        float32 ``(T, n_mels)`` from `device.frontend.log_mel` at the ``esn`` frontend's rate.
    labels : np.ndarray
        ``(T,)`` class names (the sound's frames its class, the rest ``silent``).
    label : str
        The recording's class.
    group : str
        What cross-validation keeps together (the recording itself: its path).
    place : str
        The recording place (``loft`` or ``default``), for the cross-place figure.
    """

    frames: np.ndarray
    labels: np.ndarray
    label: str
    group: str
    place: str = "default"


def _recording(audio: np.ndarray, cfg: Config, label: str, group: str, place: str) -> Recording:
    frames = log_mel(to_frontend_rate(audio, cfg, "esn"), LogMelConfig.from_config(cfg, "esn"))
    labels = frame_labels(frames, label, cfg["model.esn.label_min_rise_db"],
                          cfg["model.esn.label_rise_fraction"],
                          cfg["model.esn.label_min_sound_frames"])
    return Recording(frames, labels, label, group, place)


def synthetic_recordings(cfg: Config, per_class: int, seed: int, tag: str = "esn",
                         clip_s: float = 0.6) -> list[Recording]:
    """``per_class`` synthetic drum hits of each percussion class (`train.synth`), one
    recording each: a small, fast data set for tests and experiments."""
    from .synth import clip_rng, percussion_clip
    rate = int(cfg["pipeline.rate"])
    return [_recording(percussion_clip(label, clip_rng(seed, tag, label, i), clip_s, rate)[0],
                       cfg, label, f"{label}/{i}", "synthetic")
            for label in cfg["labels.percussion"] for i in range(per_class)]


def load_recordings(cfg: Config, folder: str | Path | None = None) -> list[Recording]:
    """The profile's percussion recordings as `Recording` s (pipeline-rate audio, then the
    device's 16 -> 8 kHz resampling and log-mel).

    ``data.source = "real"`` (or a ``folder``): ``raw_wav/`` of the vocal-percussion layout
    (``data.real.vocal_percussion``). Its ``cripped_wav/`` holds the same recordings trimmed
    (checked: each is a sample-exact excerpt of a ``raw_wav`` file), so it adds no recording and
    would leak across a split; it is not read. Otherwise the synthetic drum hits of the corpus.
    """
    rate = int(cfg["pipeline.rate"])
    if folder is not None or cfg["data.source"] == "real":
        from .datasets import load_vocal_percussion
        root = Path(folder or cfg["data.real.vocal_percussion"])
        clips = load_vocal_percussion(root, rate)
        return [_recording(c.audio, cfg, c.label, str(c.path), c.meta.get("place", "default"))
                for c in clips if c.label in cfg["labels.percussion"]]
    from .corpus import build_corpus
    clips = build_corpus(cfg, progress=False).percussion
    return [_recording(c.audio, cfg, c.label, f"{c.label}/{i}", "synthetic")
            for i, c in enumerate(clips)]


# --------------------------------------------------------------------------- the reservoir
def float_states(w: np.ndarray, w_in: np.ndarray, leak: float, u: np.ndarray,
                 x0: np.ndarray | None = None) -> np.ndarray:
    """The float reservoir's states after each frame of ``u (T, m)``: ``(T, n)`` in [-1, 1]."""
    x = np.zeros(len(w)) if x0 is None else np.asarray(x0, np.float64).copy()
    out = np.empty((len(u), len(w)))
    drive = np.asarray(u, np.float64) @ w_in.T
    for t in range(len(u)):
        x = (1.0 - leak) * x + leak * np.tanh(w @ x + drive[t])
        out[t] = x
    return out


def memory_frames(states: Sequence[np.ndarray], max_lag: int = 30) -> float:
    """How long the reservoir remembers: the first lag (frames) at which the mean
    autocorrelation of the neurons' state falls below 0.5 (``max_lag`` if never).

    The original design's reservoir was scaled so that this was about one frame: a long snare
    then drifted to hi-hat once its onset was forgotten.
    """
    acs = np.zeros(max_lag + 1)
    count = 0
    for s in states:
        s = np.asarray(s, np.float64)
        if len(s) <= max_lag + 1:
            continue
        s = s - s.mean(0)
        var = (s * s).sum(0) + 1e-12
        acs += [np.mean((s[: len(s) - k] * s[k:]).sum(0) / var) for k in range(max_lag + 1)]
        count += 1
    if count == 0:
        return float("nan")
    acs /= count
    below = np.nonzero(acs < 0.5)[0]
    return float(below[0]) if len(below) else float(max_lag)


# --------------------------------------------------------------------------- the estimator
class EchoStateClassifier(ClassifierMixin, BaseEstimator):
    """Frame-by-frame vocal-percussion classifier: grid reservoir + ridge readout.

    Follows scikit-learn's estimator shape, with recordings as samples: ``X`` is a list of
    log-mel arrays ``(T_i, n_mels)`` and ``y`` a list of per-frame label arrays ``(T_i,)``.
    Each recording starts from the zero state.

    Parameters
    ----------
    grid_height, grid_width : int
        The neuron grid (``grid_height * grid_width`` neurons).
    leak : float
        Share of the new activation per frame, in (0, 1].
    spectral_radius : float
        Of the recurrent matrix; < 1 for the echo-state property.
    input_scaling : float
        Input weights are uniform in ``±input_scaling``.
    input_density : float
        Share of input weights kept (the rest are zero).
    ridge_alpha : float
        Ridge strength of the readout.
    concat_input : bool
        The readout sees ``[state, input frame]`` instead of the state alone.
    class_balance : float
        Frames weighted by their class's share to the power ``-class_balance`` in the ridge
        fit (`device.esn.class_weights`): 0 unweighted, 1 every class alike.
    fixed_point : bool
        Run the reservoir in the device's int16 arithmetic (`device.esn`); False: float.
    seed : int
        Seeds the reservoir.
    labels : sequence of str or None
        Class order of the readout (default: sorted classes of ``y``).

    Attributes
    ----------
    model_ : device.esn.EsnModel
        The fitted model as the device stores it (reservoir quantised even when
        ``fixed_point=False``; then ``float_w_`` / ``float_w_in_`` are what ran).
    classes_ : np.ndarray
    """

    def __init__(self, grid_height=20, grid_width=20, leak=0.5, spectral_radius=0.9,
                 input_scaling=0.5, input_density=0.3, ridge_alpha=1.0, concat_input=True,
                 class_balance=0.0, fixed_point=True, seed=1234, labels=None):
        self.grid_height = grid_height
        self.grid_width = grid_width
        self.leak = leak
        self.spectral_radius = spectral_radius
        self.input_scaling = input_scaling
        self.input_density = input_density
        self.ridge_alpha = ridge_alpha
        self.concat_input = concat_input
        self.class_balance = class_balance
        self.fixed_point = fixed_point
        self.seed = seed
        self.labels = labels

    # -- states ---------------------------------------------------------------------------
    def _build(self, n_inputs: int) -> None:
        w, w_in = build_reservoir(self.grid_height, self.grid_width, n_inputs,
                                  self.spectral_radius, self.input_scaling, self.input_density,
                                  self.seed)
        self.float_w_, self.float_w_in_ = w, w_in
        self.reservoir_ = desn.quantize_reservoir(w, w_in, self.leak)

    def _features(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(states as int16-scaled numbers, normalised input, quantised input) of one clip."""
        u, u_q = desn.normalise_frames(frames, self.mean_, 1.0 / self.std_)
        if self.fixed_point:
            states = desn.run(self.reservoir_, u_q)
        else:
            states = float_states(self.float_w_, self.float_w_in_, self.leak, u) * 2.0 ** desn.Q_STATE
        return states, u, u_q

    def states(self, X) -> list[np.ndarray]:
        """Reservoir states of each recording (int16 for the fixed point, else float scaled
        the same way, ``x * 2**15``)."""
        return [self._features(f)[0] for f in X]

    # -- scikit-learn API -------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the normaliser and the readout on recordings ``X`` with frame labels ``y``."""
        X = [np.asarray(f, np.float32) for f in X]
        if not X or len(X) != len(y):
            raise ValueError(f"fit needs as many label arrays as recordings, got {len(X)} "
                             f"recordings and {len(y)} label arrays")
        allf = np.concatenate(X)
        self.mean_ = allf.mean(0).astype(np.float64)
        self.std_ = np.maximum(allf.std(0), 1e-3).astype(np.float64)
        present = sorted({str(v) for lab in y for v in lab})
        labels = list(self.labels) if self.labels is not None else present
        stray = set(present) - set(labels)
        if stray:
            raise ValueError(f"frame labels {sorted(stray)} are not among the classes {labels}")
        self.classes_ = np.array(labels, dtype=object)
        self._build(allf.shape[1])
        feats, targets = [], []
        index = {lab: i for i, lab in enumerate(labels)}
        for frames, lab in zip(X, y):
            states, u, _ = self._features(frames)
            feats.append(self._readout_input(states, u))
            targets.append([index[str(v)] for v in lab])
        x, t = np.concatenate(feats), np.concatenate(targets)
        onehot = np.zeros((len(t), len(labels)))
        onehot[np.arange(len(t)), t] = 1.0
        ridge = Ridge(alpha=self.ridge_alpha).fit(
            x, onehot, sample_weight=desn.class_weights(t, len(labels), self.class_balance))
        readout = desn.Readout(np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_),
                               labels, bool(self.concat_input))
        self.model_ = desn.EsnModel(self.reservoir_, self.mean_, self.std_, readout,
                                    self.get_params())
        return self

    def _readout_input(self, states: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = states.astype(np.float64) / 2.0 ** desn.Q_STATE
        return np.concatenate([x, u], axis=1) if self.concat_input else x

    def decision_function(self, X, int8: bool = False) -> list[np.ndarray]:
        """Readout scores ``(T, n_classes)`` of each recording (``int8``: the int8 readout)."""
        out = []
        for frames in X:
            states, u, u_q = self._features(frames)
            ro = self.model_.readout
            out.append(ro.scores_int8(states.astype(np.int16), u_q) if int8
                       else ro.scores(states, u))
        return out

    def predict_proba(self, X, int8: bool = False) -> list[np.ndarray]:
        return [desn.Readout.proba(s) for s in self.decision_function(X, int8)]

    def predict(self, X, int8: bool = False) -> list[np.ndarray]:
        return [self.classes_[np.argmax(s, 1)] for s in self.decision_function(X, int8)]

    def score(self, X, y, sample_weight=None) -> float:
        """Balanced frame accuracy: the mean over classes of the share of each class's frames
        predicted right (silent frames count as one class, so calling everything a sound, or
        everything silence, scores low)."""
        return frame_metrics(np.concatenate([np.asarray(v, object) for v in y]),
                             np.concatenate(self.predict(X)), list(self.classes_))["balanced"]


# --------------------------------------------------------------------------- metrics
def sound_class(proba: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """The best of the sound classes (``silent`` left out) of each frame's posteriors."""
    sound = [i for i, lab in enumerate(labels) if lab != SILENT]
    return np.asarray(labels, object)[np.asarray(sound)[np.argmax(proba[:, sound], 1)]]


def frame_metrics(truth: np.ndarray, pred: np.ndarray, labels: Sequence[str],
                  sound_pred: np.ndarray | None = None) -> dict:
    """Frame metrics (rows of the confusion matrix are the truth, columns the prediction, in
    ``labels`` order).

    ``nonsilent_accuracy``: the share of the sound frames whose predicted class (of all five,
    ``silent`` included) is right, the strict figure. ``sound_class_accuracy`` (with
    ``sound_pred``, `sound_class`): the share of the sound frames whose best *sound* class is
    right, i.e. which of the four sounds it is, given that it is one. ``silent_accuracy``:
    silent frames predicted silent. ``balanced``: mean per-class recall.
    """
    truth, pred = np.asarray(truth, object), np.asarray(pred, object)
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), int)
    np.add.at(cm, ([idx[t] for t in truth], [idx[p] for p in pred]), 1)
    recall = {lab: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None)
              for i, lab in enumerate(labels)}
    sound = truth != SILENT
    return {"nonsilent_accuracy": float(np.mean(pred[sound] == truth[sound])) if sound.any() else None,
            "silent_accuracy": float(np.mean(pred[~sound] == SILENT)) if (~sound).any() else None,
            "balanced": float(np.mean([r for r in recall.values() if r is not None])),
            "sound_class_accuracy": (float(np.mean(np.asarray(sound_pred, object)[sound]
                                                    == truth[sound]))
                                     if sound_pred is not None and sound.any() else None),
            "frames": int(len(truth)), "nonsilent_frames": int(sound.sum()),
            "recall": recall, "labels": list(labels), "confusion": cm.tolist()}


def recording_vote(pred: np.ndarray, truth: np.ndarray) -> str:
    """A recording's class: the majority of the predictions over its sound frames (by the
    labels), ``silent`` predictions counting only when no frame is called a sound; a recording
    with no sound frame (a ``silent`` one) is ``silent``. With `sound_class` predictions this
    is "which of the four sounds it is"; with five-way predictions the strict vote."""
    sound = np.asarray(truth, object) != SILENT
    votes = np.asarray(pred, object)[sound]
    if len(votes) == 0:
        return SILENT
    non_silent = votes[votes != SILENT]
    pool = non_silent if len(non_silent) else votes
    values, counts = np.unique(pool.astype(str), return_counts=True)
    return str(values[np.argmax(counts)])


# --------------------------------------------------------------------------- CV and search
def params_from_config(cfg: Config) -> dict:
    """The estimator's parameters from ``[model.esn]``, ``project.seed`` and the labels."""
    keys = ("grid_height", "grid_width", "leak", "spectral_radius", "input_scaling",
            "input_density", "ridge_alpha", "concat_input", "class_balance")
    return {**{k: cfg[f"model.esn.{k}"] for k in keys}, "seed": int(cfg["project.seed"]),
            "labels": list(cfg["labels.percussion"])}


def _folds(recs: Sequence[Recording], n_folds: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold
    y = [r.label for r in recs]
    groups = [r.group for r in recs]
    n = min(n_folds, len(set(groups)))
    return list(StratifiedGroupKFold(n_splits=max(2, n), shuffle=True,
                                     random_state=seed).split(np.zeros(len(recs)), y, groups))


def cross_validate(recs: Sequence[Recording], params: dict, n_folds: int, seed: int,
                   both: bool = False) -> dict:
    """Out-of-fold predictions for every recording (each by a model that never saw it).

    Returns metrics of the fixed-point reservoir (float readout and int8 readout) and, with
    ``both``, of the float reservoir; per-recording votes; memory in frames; fit time.
    """
    variants = {"fixed": dict(fixed_point=True)}
    if both:
        variants["float"] = dict(fixed_point=False)
    labels = params.get("labels") or sorted({r.label for r in recs} | {SILENT})
    out: dict = {"folds": 0}
    probas = {name: [None] * len(recs) for name in [*variants, "fixed_int8"]}
    fit_s, mem = [], []
    folds = _folds(recs, n_folds, seed)
    out["folds"] = len(folds)
    for train, test in folds:
        for name, extra in variants.items():
            est = EchoStateClassifier(**{**params, **extra, "labels": labels})
            t0 = time.perf_counter()
            est.fit([recs[i].frames for i in train], [recs[i].labels for i in train])
            fit_s.append(time.perf_counter() - t0)
            test_x = [recs[i].frames for i in test]
            for i, p in zip(test, est.predict_proba(test_x)):
                probas[name][i] = p
            if name == "fixed":
                for i, p in zip(test, est.predict_proba(test_x, int8=True)):
                    probas["fixed_int8"][i] = p
                mem.append(memory_frames(est.states(test_x)))
    truth = np.concatenate([r.labels for r in recs])
    lab = np.asarray(labels, object)
    for name, pr in probas.items():
        if pr[0] is None:
            continue
        p = [lab[np.argmax(q, 1)] for q in pr]
        m = frame_metrics(truth, np.concatenate(p), labels,
                          sound_class(np.concatenate(pr), labels))
        votes = [recording_vote(pi, r.labels) for pi, r in zip(p, recs)]
        sound_votes = [recording_vote(sound_class(q, labels), r.labels) for q, r in zip(pr, recs)]
        m["recording_accuracy"] = float(np.mean([v == r.label for v, r in zip(votes, recs)]))
        m["recording_sound_class_accuracy"] = float(np.mean(
            [v == r.label for v, r in zip(sound_votes, recs)]))
        m["recordings"] = {r.group: {"label": r.label, "vote": v, "sound_class_vote": sv}
                           for r, v, sv in zip(recs, votes, sound_votes)}
        out[name] = m
    out["memory_frames"] = float(np.nanmean(mem)) if mem else None
    out["fit_s_mean"] = float(np.mean(fit_s))
    return out


def cross_place(recs: Sequence[Recording], params: dict) -> dict:
    """Train on one recording place, test on the other (both ways): non-silent frame and
    recording accuracy of the fixed-point ESN."""
    places = sorted({r.place for r in recs})
    out = {}
    labels = params.get("labels")
    for place in places:
        train = [r for r in recs if r.place == place]
        test = [r for r in recs if r.place != place]
        if not train or not test:
            continue
        est = EchoStateClassifier(**params).fit([r.frames for r in train], [r.labels for r in train])
        proba = est.predict_proba([r.frames for r in test])
        pred = [est.classes_[np.argmax(q, 1)] for q in proba]
        m = frame_metrics(np.concatenate([r.labels for r in test]), np.concatenate(pred),
                          list(est.classes_), sound_class(np.concatenate(proba), list(est.classes_)))
        votes = [recording_vote(p, r.labels) for p, r in zip(pred, test)]
        m["recording_accuracy"] = float(np.mean([v == r.label for v, r in zip(votes, test)]))
        out[f"train_{place}_test_others"] = {k: m[k] for k in (
            "nonsilent_accuracy", "sound_class_accuracy", "silent_accuracy", "balanced", "recording_accuracy", "recall",
            "nonsilent_frames")} | {"train_recordings": len(train), "test_recordings": len(test)}
    return out


SEARCH_SPACE = {
    "grid": [(10, 10), (20, 20), (20, 30)],
    "leak": [0.2, 0.35, 0.5, 0.8],
    "input_scaling": [0.1, 0.25, 0.5, 1.0],
    "spectral_radius": [0.5, 0.8, 0.9, 0.97],
    "input_density": [0.1, 0.3, 1.0],
    "ridge_alpha": [0.1, 1.0, 10.0],
    "concat_input": [True, False],
    "class_balance": [0.0, 0.5, 1.0],
}
"""What `search` draws from (uniformly, independently)."""


def search(recs: Sequence[Recording], base: dict, iterations: int, n_folds: int, seed: int,
           progress: bool = True) -> list[dict]:
    """Random search over `SEARCH_SPACE` with cross-validation by recording; the profile's
    own configuration is tried first. Returns rows sorted best first by the balanced frame
    accuracy of the fixed-point ESN (ties: higher non-silent accuracy)."""
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    configs = [dict(base)]
    while len(configs) < iterations:
        grid = SEARCH_SPACE["grid"][rng.integers(len(SEARCH_SPACE["grid"]))]
        c = {**base, "grid_height": int(grid[0]), "grid_width": int(grid[1])}
        for key, values in SEARCH_SPACE.items():
            if key != "grid":
                v = values[rng.integers(len(values))]
                c[key] = bool(v) if isinstance(v, (bool, np.bool_)) else float(v)
        configs.append(c)
    rows = []
    for c in tqdm(configs, desc="esn search", disable=not progress, file=sys.stderr):
        cv = cross_validate(recs, c, n_folds, seed)
        f = cv["fixed"]
        rows.append({"params": {k: v for k, v in c.items() if k != "labels"},
                     "balanced": f["balanced"], "nonsilent_accuracy": f["nonsilent_accuracy"],
                     "sound_class_accuracy": f["sound_class_accuracy"],
                     "silent_accuracy": f["silent_accuracy"],
                     "recording_accuracy": f["recording_accuracy"],
                     "memory_frames": cv["memory_frames"], "fit_s": cv["fit_s_mean"]})
    rows.sort(key=lambda r: (-r["balanced"], -(r["nonsilent_accuracy"] or 0)))
    return rows


def _search_table(rows: list[dict]) -> str:
    head = ("| # | neurons | leak | radius | in scale | in density | alpha | concat | class "
            "balance | balanced | non-silent | sound class | silent | recordings | memory "
            "(frames) |\n|" + "---|" * 15 + "\n")
    body = ""
    for i, r in enumerate(rows):
        p = r["params"]
        body += (f"| {i + 1} | {p['grid_height']}x{p['grid_width']} | {p['leak']} | "
                 f"{p['spectral_radius']} | {p['input_scaling']} | {p['input_density']} | "
                 f"{p['ridge_alpha']} | {p['concat_input']} | {p.get('class_balance', 0.0)} | "
                 f"{r['balanced']:.3f} | "
                 f"{r['nonsilent_accuracy']:.3f} | {r['sound_class_accuracy']:.3f} | "
                 f"{r['silent_accuracy']:.3f} | "
                 f"{r['recording_accuracy']:.3f} | {r['memory_frames']:.1f} |\n")
    return head + body


# --------------------------------------------------------------------------- command line
def save_trained(est: EchoStateClassifier, recs: Sequence[Recording], folder: Path) -> Path:
    """``model.npz`` and ``calibration.npy`` (readout inputs of up to 40 training recordings,
    for the TFLite readout's int8 calibration) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    desn.save_esn(est.model_, folder / "model.npz")
    sample = [est._features(r.frames) for r in recs[:: max(1, len(recs) // 40)]]
    np.save(folder / "calibration.npy", np.concatenate(
        [est._readout_input(s, u) for s, u, _ in sample]).astype(np.float32))
    return folder


def train_and_save(cfg: Config, recs: Sequence[Recording], params: dict) -> tuple[Path, dict]:
    """Fit on every recording and save the model and its report under
    ``BuildPaths.model_dir("esn", "esn")``; the report holds the cross-validated figures."""
    t0 = time.perf_counter()
    cv = cross_validate(recs, params, int(cfg["model.esn.cv_folds"]), int(cfg["project.seed"]),
                        both=True)
    places = cross_place(recs, params) if len({r.place for r in recs}) > 1 else {}
    est = EchoStateClassifier(**params)
    t1 = time.perf_counter()
    est.fit([r.frames for r in recs], [r.labels for r in recs])
    fit_s = time.perf_counter() - t1
    folder = save_trained(est, recs, BuildPaths(cfg).model_dir("esn", "esn"))
    report = {"profile": cfg.name, "recordings": len(recs),
              "frames": int(sum(len(r.labels) for r in recs)), "params": params,
              "cv": cv, "cross_place": places, "final_fit_s": round(fit_s, 3),
              "total_s": round(time.perf_counter() - t0, 2)}
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return folder, report


def summary(report: dict) -> str:
    cv = report["cv"]
    lines = [f"ESN ({report['params']['grid_height']}x{report['params']['grid_width']} neurons), "
             f"{report['recordings']} recordings, {cv['folds']}-fold CV by recording:"]
    for name, title in (("fixed", "fixed-point reservoir, float readout"),
                        ("fixed_int8", "fixed-point reservoir, int8 readout"),
                        ("float", "float reservoir, float readout")):
        if name in cv:
            m = cv[name]
            lines.append(f"  {title:38s} non-silent frames {m['nonsilent_accuracy']:.3f} (sound "
                         f"class {m['sound_class_accuracy']:.3f})  silent "
                         f"{m['silent_accuracy']:.3f}  recordings {m['recording_accuracy']:.3f}")
    lines.append(f"  memory {cv['memory_frames']:.1f} frames, fit {cv['fit_s_mean']:.2f} s per fold")
    for name, m in report.get("cross_place", {}).items():
        lines.append(f"  cross-place {name}: non-silent frames {m['nonsilent_accuracy']:.3f} "
                     f"(sound class {m['sound_class_accuracy']:.3f}), recordings {m['recording_accuracy']:.3f} ({m['test_recordings']} recordings)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.esn", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit the vocal-percussion echo state network ([model.esn]) on the profile's "
                    "percussion recordings, report cross-validated (by recording) frame and "
                    "recording accuracy of the fixed-point and float reservoirs, and save the "
                    "model under build/models/esn/<profile>/esn/. --search runs a random "
                    "hyper-parameter search first and writes its table to build/reports/.")
    add_profile_arguments(parser, "model.esn.leak=0.35")
    parser.add_argument("--search", action="store_true", help="random search before fitting "
                        "(model.esn.search_iterations configurations); the best is reported, "
                        "the profile's configuration is what is saved")
    parser.add_argument("--data", default=None, help="a folder in the vocal-percussion layout "
                        "(default: the profile's data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    recs = load_recordings(cfg, args.data)
    if not recs:
        print("no percussion recordings found: check data.real.vocal_percussion or the corpus",
              file=sys.stderr)
        return 2
    params = params_from_config(cfg)
    if args.search:
        rows = search(recs, params, int(cfg["model.esn.search_iterations"]),
                      int(cfg["model.esn.cv_folds"]), int(cfg["project.seed"]))
        paths = BuildPaths(cfg)
        tag = paths.profile
        paths.report(f"esn_search_{tag}.json").write_text(json.dumps(rows, indent=1) + "\n")
        paths.report(f"esn_search_{tag}.md").write_text(_search_table(rows))
        print(_search_table(rows[:10]))
    folder, report = train_and_save(cfg, recs, params)
    print(summary(report))
    print(f"saved {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
