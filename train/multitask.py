"""Keyword + scene multitask network: model, mixture data pipeline and training.

One small depthwise-separable CNN trunk (DS-CNN with residual blocks) reads 1 s of log-mel
(98 frames x 40 bands, `device.frontend.log_mel`) and feeds two softmax heads:

* ``keyword``: ``cfg.keyword_labels`` (``_silence_``, ``_unknown_``, the wake word, 10 commands);
* ``scene``: ``cfg["labels.scenes"]``.

Every multitask training example is a keyword clip mixed in the waveform domain with a 1 s
crop of a scene clip: the keyword gets ``share`` of the mixture's energy and the scene
``1 - share`` (``model.multitask.keyword_share``, jittered by ``share_jitter`` percentage
points per example). Both labels are trained; each head's loss is weighted per example by
its task's share. Fresh mixtures (new pairings, shares, shifts, gains, noise and SpecAugment
masks) are drawn every epoch from numpy by `MixtureSequence`.

Run ``python -m train.multitask --help``. Variants (`VARIANTS`): ``kw`` (keyword-only
baseline), ``scene`` (scene-only baseline), ``mt50``, ``mt60`` and ``mt60j`` (the profile's
share and jitter, the default deployed variant).

Everything written goes under ``cfg.build_dir``: ``models/multitask/<profile>/<variant>/``
(best checkpoint ``model.keras``, ``normalizer.json``, ``history.json``, ``train_info.json``)
and ``reports/multitask_<profile>_<variant>_curves.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.frontend import LogMelConfig  # noqa: E402
from train.features import Normalizer, log_mel_batch, spec_augment  # noqa: E402
from train import waveforms as wf  # noqa: E402
from train.waveforms import fit_length  # noqa: E402

log = logging.getLogger("train.multitask")

CLIP_SAMPLES = 16000  # 1 s at the keyword frontend's 16 kHz
HEADS = ("keyword", "scene")
CALIBRATION_EXAMPLES = 400  # raw training features kept for int8 calibration ([export] overrides)


# --------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One model to train: which heads, and how its training mixtures are made.

    Parameters
    ----------
    name : str
        Short id used in paths and tables (``kw``, ``scene``, ``mt50``, ``mt60``, ``mt60j``).
    tasks : tuple of str
        Heads the model has: ``("keyword",)``, ``("scene",)`` or both. Single-task variants
        train on clean clips of their task (plus noise), so they are the baselines.
    keyword_share : float
        Keyword-task share of each mixture's energy, in (0, 1); only for multitask variants.
    share_jitter : float
        Uniform jitter of the share in absolute share units (0.2: 0.6 becomes U(0.4, 0.8)).
        More jitter covers more real-world loudness ratios at the cost of harder examples.
    description : str
        For tables.
    """

    name: str
    tasks: tuple
    keyword_share: float = 0.5
    share_jitter: float = 0.0
    description: str = ""

    @property
    def multitask(self) -> bool:
        return len(self.tasks) == 2


def variants(cfg: Config) -> dict[str, Variant]:
    """The five variants of the seed table; ``mt60j`` takes share and jitter from the profile."""
    share = float(cfg.get("model.multitask.keyword_share", 0.6))
    jitter = float(cfg.get("model.multitask.share_jitter", 0.2))
    return {
        "kw": Variant("kw", ("keyword",), description="keyword-only baseline (clean keywords)"),
        "scene": Variant("scene", ("scene",), description="scene-only baseline (clean scenes)"),
        "mt50": Variant("mt50", HEADS, 0.5, 0.0, "multitask, mixed 50:50"),
        "mt60": Variant("mt60", HEADS, 0.6, 0.0, "multitask, mixed 60:40"),
        "mt60j": Variant("mt60j", HEADS, share, jitter,
                         f"multitask, mixed {share * 100:.0f}:{(1 - share) * 100:.0f} "
                         f"+-{jitter * 100:.0f} %"),
    }


DEFAULT_VARIANT = "mt60j"


def profile_tag(cfg: Config) -> str:
    """``default`` / ``real`` / the stem of a profile file: keeps profiles' outputs apart."""
    return Path(str(cfg.name)).stem


def model_dir(cfg: Config, variant: str) -> Path:
    return cfg.build_dir / "models" / "multitask" / profile_tag(cfg) / variant


def reports_dir(cfg: Config) -> Path:
    path = cfg.build_dir / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- audio helpers
def stack_clips(clips: Sequence, n_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """Clips (objects with ``.audio``) -> float32 array ``(n, n_samples)``."""
    out = np.zeros((len(clips), n_samples), dtype=np.float32)
    for i, clip in enumerate(clips):
        out[i] = fit_length(clip.audio, n_samples, align="centre")
    return out


class SceneCrops:
    """1 s windows of scene clips that hold sound, for training draws and fixed test crops.

    Scene clips are 1-5 s and often quiet for part of it (ESC-50 pads short events with
    silence); a window is a candidate when its energy is at least ``min_rel_energy`` of the
    clip's loudest window, so the scene head is not taught to call silence a dog bark.

    Parameters
    ----------
    clips : sequence of Clip
        Scene clips at 16 kHz.
    labels : sequence of str
        The scene head's labels; a clip's label must be one of them.
    hop_s : float
        Spacing of candidate windows in seconds: smaller gives more variety, more memory.
    min_rel_energy : float
        Energy threshold relative to the loudest window.
    """

    def __init__(self, clips: Sequence, labels: Sequence[str], hop_s: float = 0.25,
                 min_rel_energy: float = 0.1):
        index = {name: i for i, name in enumerate(labels)}
        self.audio = [np.asarray(c.audio, dtype=np.float32) for c in clips]
        self.labels = np.array([index[c.label] for c in clips], dtype=np.int64)
        hop = max(1, int(round(hop_s * CLIP_SAMPLES)))
        self.starts: list[np.ndarray] = []
        self.ranked: list[np.ndarray] = []
        for x in self.audio:
            if len(x) <= CLIP_SAMPLES:
                self.starts.append(np.array([0]))
                self.ranked.append(np.array([0]))
                continue
            starts = np.arange(0, len(x) - CLIP_SAMPLES + 1, hop)
            cum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
            energy = cum[starts + CLIP_SAMPLES] - cum[starts]
            keep = energy >= min_rel_energy * energy.max()
            self.starts.append(starts[keep])
            self.ranked.append(starts[np.argsort(-energy)])

    def __len__(self) -> int:
        return len(self.audio)

    def crop(self, clip_index: int, start: int) -> np.ndarray:
        return fit_length(self.audio[clip_index][start:start + CLIP_SAMPLES], CLIP_SAMPLES,
                          align="centre")

    def random(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random crops (class-balanced clip choice) -> (audio ``(n, 16000)``, labels)."""
        # Balance classes: small scene classes would otherwise be rare in every epoch.
        classes = np.unique(self.labels)
        by_class = {c: np.flatnonzero(self.labels == c) for c in classes}
        chosen = np.array([rng.choice(by_class[c]) for c in rng.choice(classes, size=n)])
        out = np.empty((n, CLIP_SAMPLES), dtype=np.float32)
        for i, k in enumerate(chosen):
            out[i] = self.crop(k, int(rng.choice(self.starts[k])))
        return out, self.labels[chosen]

    def loudest(self, per_clip: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic evaluation crops: up to ``per_clip`` loudest non-overlapping windows."""
        audio, labels = [], []
        for k, ranked in enumerate(self.ranked):
            taken: list[int] = []
            for s in ranked:
                if all(abs(int(s) - t) >= CLIP_SAMPLES for t in taken):
                    taken.append(int(s))
                if len(taken) == per_clip:
                    break
            for s in taken:
                audio.append(self.crop(k, s))
                labels.append(self.labels[k])
        return np.stack(audio).astype(np.float32), np.array(labels, dtype=np.int64)


# --------------------------------------------------------------------------- augmentation
@dataclass
class Augment:
    """Waveform and spectrogram augmentation settings.

    Parameters
    ----------
    shift_ms : float
        Keyword clips are shifted by up to this much either way (zero fill): words are not
        always centred in the device's 1 s window.
    gain_db : float
        Random mixture gain in +-dB: the microphone level is unknown.
    noise_prob : float
        Probability of adding background noise (``corpus.noise`` or white noise when none).
    noise_snr_db : tuple
        SNR range of that noise against the mixture.
    time_masks, time_mask_frames, freq_masks, freq_mask_bands : int
        SpecAugment: number and maximum width of masks (set to the normalised mean, 0).
    speed : float
        Speed perturbation (`train.waveforms.speed_perturb`): each keyword clip is resampled
        by a factor drawn from ``U(1 - speed, 1 + speed)`` (tempo and pitch together, as a
        faster talker or a higher voice would): with a few hundred speakers per word, more
        voices per word is what the model lacks most. 0 turns it off.
    clean_keywords : float
        Multitask training only: the fraction of examples whose keyword is left unmixed (no
        scene; the scene head's loss weight is 0 there). Mixtures alone teach the trunk to
        hear words *through* scenes and it forgets quiet rooms; measured on the real profile,
        clean-keyword accuracy fell 2-3 points from the warm start without these.
    """

    shift_ms: float = 100.0
    gain_db: float = 6.0
    noise_prob: float = 0.25
    noise_snr_db: tuple = (15.0, 35.0)
    time_masks: int = 2
    time_mask_frames: int = 10
    freq_masks: int = 2
    freq_mask_bands: int = 5
    speed: float = 0.0
    clean_keywords: float = 0.0


# --------------------------------------------------------------------------- data
@dataclass
class TaskData:
    """One split's audio as arrays: keyword clips ``(n, 16000)`` + labels, scene crops."""

    keyword_audio: np.ndarray
    keyword_labels: np.ndarray
    scenes: SceneCrops
    noise: list = field(default_factory=list)
    silence_index: int = 0
    keyword_recorded: np.ndarray | None = None  # bool per keyword clip: recorded, not synthetic

    @classmethod
    def from_corpus(cls, corpus, cfg: Config) -> "TaskData":
        kw_index = {name: i for i, name in enumerate(cfg.keyword_labels)}
        bad = sorted({c.label for c in corpus.keywords} - set(kw_index))
        if bad:
            raise ValueError(f"keyword clips carry labels {bad} that are not in "
                             f"cfg.keyword_labels {cfg.keyword_labels}; fix the corpus")
        return cls(stack_clips(corpus.keywords),
                   np.array([kw_index[c.label] for c in corpus.keywords], np.int64),
                   SceneCrops(corpus.scenes, cfg["labels.scenes"]),
                   list(getattr(corpus, "noise", None) or []),
                   kw_index["_silence_"],
                   np.array([not (c.meta or {}).get("synthetic") for c in corpus.keywords], bool))


def draw_examples(data: TaskData, variant: Variant, n: int, rng: np.random.Generator,
                  lm_cfg: LogMelConfig, aug: Augment | None) -> tuple[np.ndarray, dict, dict]:
    """Draw ``n`` training examples for ``variant``: raw log-mel, labels and loss weights.

    Multitask: each keyword clip (a shuffled pass over the keyword set) is mixed with a random
    scene crop at a jittered share; head weights are ``2 * share`` and ``2 * (1 - share)`` so
    a 50:50 mixture weighs each head 1. Single-task: clean clips of the one task.
    """
    kw_idx = rng.permutation(np.resize(rng.permutation(len(data.keyword_audio)), n))[:n]
    shift = int(round((aug.shift_ms if aug else 0.0) * CLIP_SAMPLES / 1000.0))
    labels, weights = {}, {}
    if variant.tasks == ("scene",):
        audio, labels["scene"] = data.scenes.random(n, rng)
        weights["scene"] = np.ones(n, np.float32)
    else:
        kw = data.keyword_audio[kw_idx]
        if aug:
            kw = wf.speed_perturb(kw, aug.speed, rng, sample_rate_hz=lm_cfg.sample_rate)
            kw = wf.time_shift(kw, shift, rng)
        labels["keyword"] = data.keyword_labels[kw_idx]
        if variant.multitask:
            scene, labels["scene"] = data.scenes.random(n, rng)
            share = np.clip(variant.keyword_share
                            + rng.uniform(-variant.share_jitter, variant.share_jitter, n), 0.05, 0.95)
            audio = wf.mix_at_share(kw, scene, share, labels["keyword"] == data.silence_index)
            weights["keyword"] = (2.0 * share).astype(np.float32)
            weights["scene"] = (2.0 * (1.0 - share)).astype(np.float32)
            if aug and aug.clean_keywords > 0:
                # Some words are heard with no scene at all: keep the keyword clean there and
                # give the scene head nothing to learn from it (weight 0).
                clean = rng.random(n) < aug.clean_keywords
                audio[clean] = kw[clean]
                weights["keyword"][clean] = 1.0
                weights["scene"][clean] = 0.0
        else:
            audio = kw
            weights["keyword"] = np.ones(n, np.float32)
    if aug:
        audio = wf.add_background_noise(audio, data.noise, aug.noise_prob, aug.noise_snr_db, rng)
        audio = wf.random_gain(audio, aug.gain_db, rng)
    return log_mel_batch(audio.astype(np.float32), lm_cfg), labels, weights


def eval_sets(data: TaskData, lm_cfg: LogMelConfig, keyword_share: float, seed: int,
              scene_crops_per_clip: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The four seed-table test sets, deterministic for a seed: name -> (features, labels, head).

    ``keyword_only``: clean keyword clips. ``scene_only``: the loudest 1 s crops of each scene
    clip (up to ``scene_crops_per_clip``). ``mixed_keyword``: each keyword clip with a random
    scene crop at ``keyword_share``. ``mixed_scene``: each scene crop with a random keyword
    clip at the same share. The same seed gives the same mixtures for every variant.
    ``keyword_recorded``: the clean clips of recorded speakers alone (no synthetic voices),
    present when the split has both kinds: the figure that says how the model does on people.
    """
    rng = np.random.default_rng(seed)
    scene_audio, scene_labels = data.scenes.loudest(scene_crops_per_clip)
    partner_scene = rng.integers(0, len(scene_audio), size=len(data.keyword_audio))
    partner_kw = rng.integers(0, len(data.keyword_audio), size=len(scene_audio))
    silence = data.keyword_labels == data.silence_index
    mixed_kw = wf.mix_at_share(data.keyword_audio, scene_audio[partner_scene], keyword_share,
                               silence)
    mixed_sc = wf.mix_at_share(data.keyword_audio[partner_kw], scene_audio, keyword_share,
                               silence[partner_kw])
    kw_feats = log_mel_batch(data.keyword_audio, lm_cfg)
    sets = {
        "keyword_only": (kw_feats, data.keyword_labels, "keyword"),
        "scene_only": (log_mel_batch(scene_audio, lm_cfg), scene_labels, "scene"),
        "mixed_keyword": (log_mel_batch(mixed_kw, lm_cfg), data.keyword_labels, "keyword"),
        "mixed_scene": (log_mel_batch(mixed_sc, lm_cfg), scene_labels, "scene"),
    }
    recorded = data.keyword_recorded
    if recorded is not None and recorded.any() and not recorded.all():
        sets["keyword_recorded"] = (kw_feats[recorded], data.keyword_labels[recorded], "keyword")
    return sets


# --------------------------------------------------------------------------- model
def build_model(n_keyword: int | None, n_scene: int | None, width: int = 48, blocks: int = 4,
                input_frames: int = 98, n_mels: int = 40, dropout: float = 0.1,
                batch_size: int | None = None):
    """DS-CNN trunk with residual depthwise-separable blocks and one softmax head per task.

    Layout: Conv 10x4 stride 2 (time x mel) -> ``blocks`` x [depthwise 3x3 -> BN -> ReLU ->
    pointwise 1x1 -> BN -> ReLU] (the first block strides 2 again, the others add a residual)
    -> global average pool -> dropout -> Dense+softmax per head. Every op has an int8 TFLite
    kernel; BatchNorm folds into the convolutions at conversion.

    Parameters
    ----------
    n_keyword, n_scene : int or None
        Classes per head; None leaves that head out (single-task baselines).
    width : int
        Channels throughout the trunk: params and MACs grow ~width**2 (48 -> ~16 k params).
    blocks : int
        Depthwise-separable blocks: receptive field and depth vs. latency.
    dropout : float
        Before the heads; small, because the model is small.
    batch_size : int or None
        None to train; 1 to export a model with the fixed input ``[1, 98, 40, 1]``.

    Returns
    -------
    keras.Model
        Input ``log_mel`` ``(batch, frames, mels, 1)``; outputs a dict ``{head: probs}``.
    """
    import keras
    from keras import layers

    inp = keras.Input((input_frames, n_mels, 1), batch_size=batch_size, name="log_mel")

    def bn_relu(x, name):
        # momentum 0.9 rather than Keras' 0.99: short trainings (tens of steps per epoch)
        # otherwise validate and export with moving statistics that have not converged.
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    x = layers.Conv2D(width, (10, 4), strides=(2, 2), padding="same", use_bias=False,
                      name="stem")(inp)
    x = bn_relu(x, "stem")
    for i in range(blocks):
        stride = (2, 2) if i == 0 else (1, 1)
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"b{i}_dw")(x)
        y = bn_relu(y, f"b{i}_dw")
        y = layers.Conv2D(width, 1, use_bias=False, name=f"b{i}_pw")(y)
        y = bn_relu(y, f"b{i}_pw")
        x = y if stride != (1, 1) else layers.Add(name=f"b{i}_add")([x, y])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = {}
    if n_keyword:
        outputs["keyword"] = layers.Dense(n_keyword, activation="softmax", name="keyword")(x)
    if n_scene:
        outputs["scene"] = layers.Dense(n_scene, activation="softmax", name="scene")(x)
    if not outputs:
        raise ValueError("a model needs at least one head: give n_keyword and/or n_scene")
    return keras.Model(inp, outputs, name="hopwise_multitask")


def build_for_variant(cfg: Config, variant: Variant, batch_size: int | None = None):
    lm = LogMelConfig.from_config(cfg, "keyword")
    frames = 1 + (lm.sample_rate - lm.window_length) // lm.hop_length
    mt = cfg.section("model.multitask")
    return build_model(len(cfg.keyword_labels) if "keyword" in variant.tasks else None,
                       len(cfg["labels.scenes"]) if "scene" in variant.tasks else None,
                       width=int(mt.get("width", 48)), blocks=int(mt.get("blocks", 4)),
                       input_frames=frames, n_mels=lm.n_mels,
                       dropout=float(mt.get("dropout", 0.1)), batch_size=batch_size)


def predict(model, feats: np.ndarray, normalizer: Normalizer, batch_size: int = 256) -> dict:
    """Float Keras posteriors ``{head: (n, classes)}`` for raw log-mel features."""
    out = model.predict(normalizer(feats)[..., None], batch_size=batch_size, verbose=0)
    return out if isinstance(out, dict) else {model.output_names[0]: out}


# --------------------------------------------------------------------------- training
def smoothed_sparse_crossentropy(smoothing: float = 0.0):
    """Sparse cross-entropy with label smoothing (Keras' sparse loss has none).

    ``(1 - smoothing) * CE(label) + smoothing * mean over classes of CE(class)``: the target
    is the one-hot label blended with a uniform distribution. A little smoothing keeps a small
    model from over-confident posteriors on a few hundred clips per word, and the device's
    thresholds work on those posteriors. 0 is plain sparse cross-entropy.
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


def _keras_sequence_class():
    import keras

    class MixtureSequence(keras.utils.PyDataset):
        """Keras data source that draws a fresh epoch of mixtures from numpy at each epoch end.

        Call ``MixtureSequence(data, variant, steps, batch_size, lm_cfg, normalizer, aug,
        seed)`` and pass it to ``model.fit``. An epoch is ``steps * batch_size`` examples made
        up front in one vectorised pass (on 2 cores that beats per-batch workers); SpecAugment
        masks are drawn per batch. More steps per epoch: more variety per epoch, slower epochs.
        """

        def __init__(self, data, variant, steps, batch_size, lm_cfg, normalizer, aug, seed):
            super().__init__(workers=1, use_multiprocessing=False)
            self.data, self.variant, self.steps, self.batch = data, variant, steps, batch_size
            self.lm_cfg, self.normalizer, self.aug = lm_cfg, normalizer, aug
            self.rng = np.random.default_rng(seed)
            self.mask_rng = np.random.default_rng(seed + 1)  # own generator per thread of use
            self.epoch = 0
            self._draw()

        def _draw(self):
            t0 = time.perf_counter()
            feats, labels, weights = draw_examples(
                self.data, self.variant, self.steps * self.batch, self.rng, self.lm_cfg, self.aug)
            # One reference swap: Keras may fetch a batch from another thread while the next
            # epoch is drawn, and must never pair new features with old labels.
            self.current = (self.normalizer(feats), labels, weights)
            log.debug("epoch %d: drew %d mixtures in %.1f s", self.epoch, len(feats),
                      time.perf_counter() - t0)

        def __len__(self):
            return self.steps

        def __getitem__(self, i):
            x_all, labels, weights = self.current
            sl = slice(i * self.batch, (i + 1) * self.batch)
            x = x_all[sl]
            if self.aug is not None:
                x = spec_augment(x, self.mask_rng, time_masks=self.aug.time_masks,
                                     time_mask_frames=self.aug.time_mask_frames,
                                     freq_masks=self.aug.freq_masks,
                                     freq_mask_bands=self.aug.freq_mask_bands)
            return (x[..., None], {k: v[sl] for k, v in labels.items()},
                    {k: v[sl] for k, v in weights.items()})

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    return MixtureSequence


@dataclass
class TrainResult:
    """What `train_variant` produced: paths and numbers for the seed table."""

    variant: str
    model_path: Path
    normalizer: Normalizer
    history: dict
    seconds: float
    params: int
    best_epoch: int


def plot_history(history: Mapping[str, list], path: Path, title: str) -> None:
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


def _copy_weights(source, target) -> int:
    """Copy weights layer by layer where names and shapes match; return how many layers."""
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


def train_variant(cfg: Config, train: TaskData, validation: TaskData, variant: Variant,
                  out_dir: Path | None = None, verbose: int = 2) -> TrainResult:
    """Train one variant with early stopping on validation loss; keep the best checkpoint.

    Validation is a fixed set drawn once (seeded, no augmentation) the way training draws
    for this variant, so the loss that early stopping watches is the task the model trains on.

    With ``model.multitask.init_from = "kw"`` a multitask variant starts from the trained
    keyword-only baseline (trunk, keyword head and normaliser): keywords are learnt far
    faster on clean clips than on mixtures, and on two CPU cores that is the difference
    between a useful model and a chance-level keyword head within the epoch budget.
    """
    import keras

    mt = cfg.section("model.multitask")
    seed = int(cfg.get("project.seed", 1234))
    keras.utils.set_random_seed(seed)
    out_dir = Path(out_dir or model_dir(cfg, variant.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    lm_cfg = LogMelConfig.from_config(cfg, "keyword")
    batch = int(mt.get("batch_size", 64))
    epochs = int(mt.get("epochs", 30))
    n_train = len(train.keyword_audio) if "keyword" in variant.tasks else 8 * len(train.scenes)
    steps = max(int(mt.get("min_steps_per_epoch", 1)),
                int(np.ceil(n_train * float(mt.get("examples_per_clip", 1.0)) / batch)))
    aug = Augment(**mt.get("augment", {}))

    rng = np.random.default_rng(seed + 1)
    norm_feats, _, _ = draw_examples(train, variant, min(2048, steps * batch), rng, lm_cfg, None)
    init_from = str(mt.get("init_from", "") or "")
    init_dir = model_dir(cfg, init_from) if init_from and variant.multitask else None
    if init_dir is not None and not (init_dir / "model.keras").exists():
        log.warning("%s: model.multitask.init_from=%s but %s has no trained model; training "
                    "from scratch", variant.name, init_from, init_dir)
        init_dir = None
    # A warm start keeps the trunk's input scaling: the initialising model's normaliser.
    normalizer = (Normalizer.load(init_dir / "normalizer.json") if init_dir is not None
                  else Normalizer.fit(norm_feats))
    normalizer.save(out_dir / "normalizer.json")
    # Int8 calibration needs training features; keeping a sample beside the checkpoint lets
    # export run without rebuilding the corpus.
    n_calib = int(cfg.get("export.calibration_examples", CALIBRATION_EXAMPLES))
    np.save(out_dir / "calibration.npy", norm_feats[:n_calib].astype(np.float16))
    n_val = len(validation.keyword_audio) if "keyword" in variant.tasks else 3 * len(validation.scenes)
    vx, vy, vw = draw_examples(validation, variant, max(n_val, 1), np.random.default_rng(seed + 2),
                               lm_cfg, None)
    seq = _keras_sequence_class()(train, variant, steps, batch, lm_cfg, normalizer, aug, seed + 3)

    model = build_for_variant(cfg, variant)
    if init_dir is not None:
        copied = _copy_weights(keras.models.load_model(init_dir / "model.keras", compile=False), model)
        log.info("%s: warm start from %s (%d layers copied: trunk and matching heads)",
                 variant.name, init_dir, copied)
    lr = float(mt.get("learning_rate", 3e-3))
    if init_dir is not None:
        # A warm start already knows the keywords: it needs fewer epochs, and a gentler rate
        # keeps what the baseline learnt while the trunk learns to hear words through scenes.
        epochs = int(mt.get("warm_start_epochs", 0) or epochs)
        lr = float(mt.get("warm_start_learning_rate", 0.0) or lr)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs, alpha=0.05)
    loss = smoothed_sparse_crossentropy(float(mt.get("label_smoothing", 0.0)))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss={h: loss for h in variant.tasks},
                  metrics={h: ["accuracy"] for h in variant.tasks})
    ckpt = out_dir / "model.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(mt.get("patience", 6)),
                                      restore_best_weights=True),
    ]
    log.info("training %s (%s) on %s: %d params, %d epochs x %d steps x %d, %d validation "
             "examples -> %s", variant.name, variant.description, profile_tag(cfg),
             model.count_params(), epochs, steps, batch, len(vx), out_dir)
    t0 = time.perf_counter()
    hist = model.fit(seq, validation_data=(normalizer(vx)[..., None], vy, vw), epochs=epochs,
                     callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    (out_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    info = {"variant": variant.name, "description": variant.description, "tasks": list(variant.tasks),
            "keyword_share": variant.keyword_share, "share_jitter": variant.share_jitter,
            "profile": profile_tag(cfg), "params": int(model.count_params()),
            "train_seconds": round(seconds, 1), "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch, "train_keyword_clips": int(len(train.keyword_audio)),
            "train_scene_clips": int(len(train.scenes)),
            "init_from": str(init_dir) if init_dir is not None else None,
            "labels": {"keyword": cfg.keyword_labels, "scene": list(cfg["labels.scenes"])}}
    (out_dir / "train_info.json").write_text(json.dumps(info, indent=1) + "\n")
    curves = reports_dir(cfg) / f"multitask_{profile_tag(cfg)}_{variant.name}_curves.png"
    plot_history(history, curves, f"{variant.name}: {variant.description} ({profile_tag(cfg)})")
    best_val = {k: round(v[best_epoch - 1], 4) for k, v in history.items() if k.startswith("val_")}
    log.info("trained %s in %.0f s (%d epochs, best %d: %s); curves %s", variant.name, seconds,
             len(history["loss"]), best_epoch, best_val, curves)
    return TrainResult(variant.name, ckpt, normalizer, history, seconds,
                       int(model.count_params()), best_epoch)


def load_trained(cfg: Config, variant: str):
    """(keras model, normalizer, train_info) of a trained variant."""
    import keras

    path = model_dir(cfg, variant)
    if not (path / "model.keras").exists():
        raise FileNotFoundError(f"no trained model at {path}/model.keras; run "
                                f"`python -m train.multitask --profile {profile_tag(cfg)} "
                                f"--variant {variant}` first")
    model = keras.models.load_model(path / "model.keras", compile=False)
    info = json.loads((path / "train_info.json").read_text())
    return model, Normalizer.load(path / "normalizer.json"), info


def load_splits(cfg: Config, progress: bool = True) -> dict[str, TaskData]:
    """Build the profile's corpus, split it, and turn each split into `TaskData`."""
    from train.corpus import build_corpus, split_corpus

    t0 = time.perf_counter()
    corpus = build_corpus(cfg, progress=progress)
    splits = split_corpus(corpus, cfg)
    out = {name: TaskData.from_corpus(part, cfg) for name, part in splits.items()}
    for name, part in out.items():
        log.info("%s: %d keyword clips, %d scene clips, %d noise recordings", name,
                 len(part.keyword_audio), len(part.scenes), len(part.noise))
    log.info("corpus ready in %.0f s", time.perf_counter() - t0)
    return out


def deployed_variant(cfg: Config) -> str:
    """The variant chosen for deployment (``models/multitask/<profile>/deployed.json``)."""
    path = cfg.build_dir / "models" / "multitask" / profile_tag(cfg) / "deployed.json"
    if path.exists():
        return json.loads(path.read_text())["variant"]
    return DEFAULT_VARIANT


def write_deployed(cfg: Config, variant: str, reason: str) -> Path:
    path = cfg.build_dir / "models" / "multitask" / profile_tag(cfg) / "deployed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"variant": variant, "reason": reason}, indent=1) + "\n")
    return path


def configure_threads() -> None:
    """Keep TensorFlow to the shared machine's two cores unless the caller said otherwise."""
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.multitask",
        description="Train the keyword + scene multitask network on keyword/scene mixtures "
                    "(or a single-task baseline). Writes the best checkpoint, normaliser, "
                    "history and training-curve PNG under the profile's build folder.",
        epilog="Example: python -m train.multitask --profile default --variant mt60j "
               "--set model.multitask.epochs=3")
    add_profile_arguments(parser)
    parser.add_argument("--variant", default=DEFAULT_VARIANT,
                        choices=["kw", "scene", "mt50", "mt60", "mt60j"],
                        help="kw/scene: single-task baselines; mt50/mt60: fixed 50:50 / 60:40 "
                             "mixtures; mt60j: the profile's share with jitter (default)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch Keras lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    cfg = config_from_args(args)
    splits = load_splits(cfg)
    all_variants = variants(cfg)
    variant = all_variants[args.variant]
    init_from = str(cfg.get("model.multitask.init_from", "") or "")
    if variant.multitask and init_from and not (model_dir(cfg, init_from) / "model.keras").exists():
        # The warm start is part of the recipe: without it the keyword head stays near chance
        # within the epoch budget, so a fresh clone trains the baseline first.
        log.info("%s starts from %s (model.multitask.init_from), which is not trained yet: "
                 "training %s first", variant.name, init_from, init_from)
        base = train_variant(cfg, splits["train"], splits["validation"], all_variants[init_from],
                             verbose=0 if args.quiet else 2)
        print(f"{init_from}: best checkpoint {base.model_path} (epoch {base.best_epoch}, "
              f"{base.params} params, {base.seconds:.0f} s)")
    result = train_variant(cfg, splits["train"], splits["validation"], variant,
                           verbose=0 if args.quiet else 2)
    print(f"{variant.name}: best checkpoint {result.model_path} (epoch {result.best_epoch}, "
          f"{result.params} params, {result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
