"""Keyword + scene multitask network: its variants, mixture data, network and training.

One small trunk reads 1 s of log-mel (98 frames x 40 bands, `device.frontend.log_mel`) and
feeds two softmax heads. The trunk is the profile's ``model.multitask.architecture``: a
depthwise-separable CNN with residual blocks (``"dscnn"``, `build_model`, the default and the
one that streams) or a broadcasted-residual network (``"bcresnet"``, `build_bc_resnet`).
The heads:

* ``keyword``: ``cfg.head_labels["keyword"]`` (``_silence_``, ``_unknown_``, the wake word,
  the commands);
* ``scene``: ``cfg.head_labels["scene"]``.

Every multitask training example is a keyword clip mixed in the waveform domain with a crop
of a scene clip: the keyword gets ``share`` of the mixture's energy and the scene
``1 - share`` (``model.multitask.keyword_share``, jittered by ``share_jitter`` percentage
points per example). Both labels are trained; each head's loss is weighted per example by
its task's share. Fresh mixtures (new pairings, shares, shifts, gains, noise and SpecAugment
masks) are drawn every epoch (`train.loop.epoch_sequence` over `draw_examples`).

What is the multitask model's own lives here: the variants (`VARIANTS`), scene crops, the
split's arrays (`TaskData`), example drawing, the seed table's test sets (`eval_sets`), the
network (`build_model`) and `train_variant`. What every model shares is elsewhere: waveform
augmentation in `train.waveforms`, features and the normaliser in `train.features`, the
Keras loop and the run's files in `train.loop`, paths in `device.paths.BuildPaths`.

Run ``python -m train.multitask --help``. Variants: ``kw`` (keyword-only baseline),
``scene`` (scene-only baseline), ``mt50``, ``mt60`` and ``mt60j`` (the profile's share and
jitter, the default deployed variant).

Everything written goes under ``cfg.build_dir``: ``models/multitask/<profile>/<variant>/``
(`train.loop.RunFiles`: best checkpoint ``model.keras``, ``normalizer.json``,
``calibration.npy``, ``history.json``, ``train_info.json``) and
``reports/multitask_<profile>_<variant>_curves.png``.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.frontend import LogMelConfig, num_frames  # noqa: E402
from device.paths import BuildPaths, profile_tag  # noqa: E402
from train import loop  # noqa: E402
from train import waveforms as wf  # noqa: E402
from train.features import Normalizer, log_mel_batch, spec_augment  # noqa: E402
from train.waveforms import fit_length  # noqa: E402

log = logging.getLogger("train.multitask")

MODEL = "multitask"  # the model family's name in build paths (`BuildPaths.model_dir`)
HEADS = ("keyword", "scene")
# Examples drawn once to fit the normaliser (and keep for int8 calibration): enough to pin
# each band's mean and spread, few enough to draw in seconds.
NORMALIZER_EXAMPLES = 2048


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
    from_profile : bool
        Share and jitter come from ``model.multitask.keyword_share`` / ``share_jitter``
        (filled in by `variants`).
    """

    name: str
    tasks: tuple
    keyword_share: float = 0.5
    share_jitter: float = 0.0
    description: str = ""
    from_profile: bool = False

    @property
    def multitask(self) -> bool:
        return len(self.tasks) == 2


# The one definition of the variants: `variants`, the command lines' choices and the seed
# table's rows all come from it.
VARIANTS = (
    Variant("kw", ("keyword",), description="keyword-only baseline (clean keywords)"),
    Variant("scene", ("scene",), description="scene-only baseline (clean scenes)"),
    Variant("mt50", HEADS, 0.5, 0.0, "multitask, mixed 50:50"),
    Variant("mt60", HEADS, 0.6, 0.0, "multitask, mixed 60:40"),
    Variant("mt60j", HEADS, from_profile=True),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
DEFAULT_VARIANT = "mt60j"


def variants(cfg: Config) -> dict[str, Variant]:
    """`VARIANTS` by name, with the profile's share and jitter filled in where they apply."""
    share = float(cfg["model.multitask.keyword_share"])
    jitter = float(cfg["model.multitask.share_jitter"])
    out = {}
    for v in VARIANTS:
        if v.from_profile:
            v = replace(v, keyword_share=share, share_jitter=jitter,
                        description=f"multitask, mixed {share * 100:.0f}:{(1 - share) * 100:.0f} "
                                    f"+-{jitter * 100:.0f} %")
        out[v.name] = v
    return out


def run_files(cfg: Config, variant: str) -> loop.RunFiles:
    """The files of one trained variant (``models/multitask/<profile>/<variant>/``)."""
    return loop.RunFiles(BuildPaths(cfg).model_dir(MODEL, variant))


# --------------------------------------------------------------------------- audio helpers
def clip_samples(cfg: Config) -> int:
    """Samples of one model input window: ``data.clip_s`` at the keyword frontend's rate."""
    return int(round(cfg["data.clip_s"] * cfg["frontend.keyword.sample_rate"]))


def stack_clips(clips: Sequence, n_samples: int) -> np.ndarray:
    """Clips (objects with ``.audio``) -> float32 array ``(n, n_samples)``, each centred."""
    out = np.zeros((len(clips), n_samples), dtype=np.float32)
    for i, clip in enumerate(clips):
        out[i] = fit_length(clip.audio, n_samples, align="centre")
    return out


class SceneCrops:
    """Model-input windows of scene clips that hold sound, for training draws and fixed test crops.

    Scene clips are 1-5 s and often quiet for part of it (ESC-50 pads short events with
    silence); a window is a candidate when its energy is at least ``min_rel_energy`` of the
    clip's loudest window, so the scene head is not taught to call silence a dog bark.

    Parameters
    ----------
    clips : sequence of Clip
        Scene clips at the keyword frontend's rate.
    labels : sequence of str
        The scene head's labels; a clip's label must be one of them.
    clip_samples : int
        Window length in samples: the model's input (1 s, ``data.clip_s``).
    sample_rate_hz : int
        The clips' rate.
    hop_s : float
        Spacing of candidate windows in seconds: smaller gives more variety, more memory.
    min_rel_energy : float
        Energy threshold relative to the loudest window.
    """

    def __init__(self, clips: Sequence, labels: Sequence[str], clip_samples: int,
                 sample_rate_hz: int, hop_s: float = 0.25, min_rel_energy: float = 0.1):
        index = {name: i for i, name in enumerate(labels)}
        self.clip_samples = n = int(clip_samples)
        self.audio = [np.asarray(c.audio, dtype=np.float32) for c in clips]
        self.labels = np.array([index[c.label] for c in clips], dtype=np.int64)
        hop = max(1, int(round(hop_s * sample_rate_hz)))
        self.starts: list[np.ndarray] = []
        self.ranked: list[np.ndarray] = []
        for x in self.audio:
            if len(x) <= n:
                self.starts.append(np.array([0]))
                self.ranked.append(np.array([0]))
                continue
            starts = np.arange(0, len(x) - n + 1, hop)
            cum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
            energy = cum[starts + n] - cum[starts]
            keep = energy >= min_rel_energy * energy.max()
            self.starts.append(starts[keep])
            self.ranked.append(starts[np.argsort(-energy)])

    def __len__(self) -> int:
        return len(self.audio)

    def crop(self, clip_index: int, start: int) -> np.ndarray:
        n = self.clip_samples
        return fit_length(self.audio[clip_index][start:start + n], n, align="centre")

    def random(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random crops, class-balanced: (audio ``(n, clip_samples)``, labels)."""
        # Balance classes: small scene classes would otherwise be rare in every epoch.
        classes = np.unique(self.labels)
        by_class = {c: np.flatnonzero(self.labels == c) for c in classes}
        chosen = np.array([rng.choice(by_class[c]) for c in rng.choice(classes, size=n)])
        out = np.empty((n, self.clip_samples), dtype=np.float32)
        for i, k in enumerate(chosen):
            out[i] = self.crop(k, int(rng.choice(self.starts[k])))
        return out, self.labels[chosen]

    def loudest(self, per_clip: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic evaluation crops: up to ``per_clip`` loudest non-overlapping windows."""
        audio, labels = [], []
        for k, ranked in enumerate(self.ranked):
            taken: list[int] = []
            for s in ranked:
                if all(abs(int(s) - t) >= self.clip_samples for t in taken):
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
    """Waveform and spectrogram augmentation settings: ``[model.multitask.augment]``.

    Made with ``Augment.from_config(cfg)``; the profile is the one place the values live.

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
    junctions : float
        The fraction of keyword examples replaced by a window across the junction of two
        ``_unknown_`` clips (the last part of one, then the first part of another, cut at a
        uniform 20-80 % of the window), labelled ``_unknown_``. A streaming device mostly sees
        such windows (the end of one word and the start of the next) while a clip corpus holds
        only centred words; its false wake-ups in continuous speech come from them. 0 turns it
        off and draws exactly as before.
    """

    shift_ms: float
    gain_db: float
    noise_prob: float
    noise_snr_db: tuple
    time_masks: int
    time_mask_frames: int
    freq_masks: int
    freq_mask_bands: int
    speed: float
    clean_keywords: float
    junctions: float

    @classmethod
    def from_config(cls, cfg: Config) -> "Augment":
        """The profile's ``[model.multitask.augment]``; a missing key is a ConfigError naming it."""
        return cls(**{f.name: cfg[f"model.multitask.augment.{f.name}"] for f in fields(cls)})

    def spec_augment(self, feats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`train.features.spec_augment` with these mask settings."""
        return spec_augment(feats, rng, time_masks=self.time_masks,
                            time_mask_frames=self.time_mask_frames, freq_masks=self.freq_masks,
                            freq_mask_bands=self.freq_mask_bands)


# --------------------------------------------------------------------------- data
@dataclass
class TaskData:
    """One split's audio as arrays: keyword clips ``(n, clip_samples)`` + labels, scene crops.

    Made with ``TaskData.from_corpus(split, cfg)``; ``clip_samples`` is ``data.clip_s`` at
    the keyword frontend's rate (1 s: 16000).
    """

    keyword_audio: np.ndarray
    keyword_labels: np.ndarray
    scenes: SceneCrops
    noise: list = field(default_factory=list)
    silence_index: int = 0
    keyword_recorded: np.ndarray | None = None  # bool per keyword clip: recorded, not synthetic
    keyword_groups: np.ndarray | None = None    # str per keyword clip: its speaker/voice (Clip.group)
    # Distillation (`train.teacher`): per keyword clip, the keyword head's soft target
    # ``(n, classes)``, rows summing to 1; None trains on the hard labels.
    keyword_targets: np.ndarray | None = None
    unknown_index: int | None = None            # the `_unknown_` class, which junctions take

    @classmethod
    def from_corpus(cls, corpus, cfg: Config) -> "TaskData":
        kw_labels = cfg.head_labels["keyword"]
        kw_index = {name: i for i, name in enumerate(kw_labels)}
        bad = sorted({c.label for c in corpus.keywords} - set(kw_index))
        if bad:
            raise ValueError(f"keyword clips carry labels {bad} that are not in "
                             f"the keyword head's labels {kw_labels}; fix the corpus")
        rate = int(cfg["frontend.keyword.sample_rate"])
        n = clip_samples(cfg)
        return cls(stack_clips(corpus.keywords, n),
                   np.array([kw_index[c.label] for c in corpus.keywords], np.int64),
                   SceneCrops(corpus.scenes, cfg.head_labels["scene"], n, rate),
                   list(getattr(corpus, "noise", None) or []),
                   kw_index["_silence_"],
                   np.array([not (c.meta or {}).get("synthetic") for c in corpus.keywords], bool),
                   np.array([str(c.group) for c in corpus.keywords], dtype=object),
                   unknown_index=kw_index.get("_unknown_"))


def draw_examples(data: TaskData, variant: Variant, n: int, rng: np.random.Generator,
                  lm_cfg: LogMelConfig, aug: Augment | None) -> tuple[np.ndarray, dict, dict]:
    """Draw ``n`` training examples for ``variant``: raw log-mel, labels and loss weights.

    Multitask: each keyword clip (a shuffled pass over the keyword set) is mixed with a random
    scene crop at a jittered share; head weights are ``2 * share`` and ``2 * (1 - share)`` so
    a 50:50 mixture weighs each head 1. Single-task: clean clips of the one task.

    With ``data.keyword_targets`` (distillation) the keyword labels are those soft rows of the
    drawn clips, ``(n, classes)``, taken by the same index as the audio (the target belongs to
    the clip, whatever scene it is mixed over); else class indices ``(n,)``.
    """
    kw_idx = rng.permutation(np.resize(rng.permutation(len(data.keyword_audio)), n))[:n]
    shift = int(round((aug.shift_ms if aug else 0.0) * lm_cfg.sample_rate / 1000.0))
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
        silent = labels["keyword"] == data.silence_index
        if data.keyword_targets is not None:
            labels["keyword"] = data.keyword_targets[kw_idx]
        if aug and aug.junctions > 0:
            silent = junction_negatives(data, kw, labels["keyword"], silent, aug.junctions, rng)
        if variant.multitask:
            scene, labels["scene"] = data.scenes.random(n, rng)
            share = np.clip(variant.keyword_share
                            + rng.uniform(-variant.share_jitter, variant.share_jitter, n), 0.05, 0.95)
            audio = wf.mix_at_share(kw, scene, share, silent)
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


def junction_negatives(data: TaskData, kw: np.ndarray, labels: np.ndarray, silent: np.ndarray,
                       fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Replace ``fraction`` of the drawn keyword examples by junctions of two unknown clips.

    In place on ``kw`` (the examples' audio) and ``labels`` (class indices, or soft rows under
    distillation, which become the one-hot ``_unknown_`` row): each chosen example becomes the
    last ``c`` samples of one random ``_unknown_`` clip followed by the first ``n - c`` of
    another, ``c`` uniform in 20-80 % of the window. Returns the silence mask with those
    examples marked not silent. See `Augment.junctions`.
    """
    pool = (np.flatnonzero(data.keyword_labels == data.unknown_index)
            if data.unknown_index is not None else np.zeros(0, np.int64))
    if len(pool) < 2:
        raise ValueError("model.multitask.augment.junctions needs `_unknown_` clips in the "
                         "training corpus (labels.keywords with an `_unknown_` class); set it to 0")
    chosen = np.flatnonzero(rng.random(len(kw)) < fraction)
    n = kw.shape[1]
    first, second = rng.choice(pool, len(chosen)), rng.choice(pool, len(chosen))
    cuts = rng.integers(int(0.2 * n), int(0.8 * n) + 1, len(chosen))
    for i, a, b, c in zip(chosen, first, second, cuts):
        kw[i, :c] = data.keyword_audio[a, n - c:]
        kw[i, c:] = data.keyword_audio[b, :n - c]
    if labels.ndim == 2:
        labels[chosen] = 0.0
        labels[chosen, data.unknown_index] = 1.0
    else:
        labels[chosen] = data.unknown_index
    silent = silent.copy()
    silent[chosen] = False
    return silent


def eval_sets(data: TaskData, lm_cfg: LogMelConfig, keyword_share: float, seed: int,
              scene_crops_per_clip: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The four seed-table test sets, deterministic for a seed: name -> (features, labels, head).

    ``keyword_only``: clean keyword clips. ``scene_only``: the loudest crops of each scene
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
def _with_heads(inp, trunk, n_keyword: int | None, n_scene: int | None, dropout: float):
    """Global average pool -> dropout -> one Dense+softmax per head: the end of every trunk."""
    import keras
    from keras import layers

    x = layers.GlobalAveragePooling2D(name="pool")(trunk)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = {}
    if n_keyword:
        outputs["keyword"] = layers.Dense(n_keyword, activation="softmax", name="keyword")(x)
    if n_scene:
        outputs["scene"] = layers.Dense(n_scene, activation="softmax", name="scene")(x)
    if not outputs:
        raise ValueError("a model needs at least one head: give n_keyword and/or n_scene")
    return keras.Model(inp, outputs, name="hopwise_multitask")


def build_model(n_keyword: int | None, n_scene: int | None, *, width: int, blocks: int,
                input_frames: int, n_mels: int, dropout: float, batch_size: int | None = None):
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
    input_frames, n_mels : int
        Input size: frames of one window and mel bands (98 x 40 for 1 s of the keyword frontend).
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
    return _with_heads(inp, x, n_keyword, n_scene, dropout)


def build_bc_resnet(n_keyword: int | None, n_scene: int | None, *, scale: float,
                    time_stride: int, input_frames: int, n_mels: int, dropout: float,
                    batch_size: int | None = None):
    """Broadcasted-residual trunk (BC-ResNet, Kim et al. 2021) with one softmax head per task.

    Each block convolves along frequency on the whole map (depthwise 1x3), averages frequency
    away, convolves along time on that one row (depthwise 3x1, dilated) plus a pointwise 1x1,
    and broadcasts the row back onto the map. The pointwise work runs on ``time x 1`` instead
    of ``time x mel`` positions, so channels are cheap: more of them at the MACs of a DS-CNN.

    Layout (time x mel; the stem strides 2 in frequency, ``time_stride`` in time): Conv 5x5
    (16 s) -> stages of 2, 2, 4, 4 blocks with 8 s, 12 s, 16 s, 20 s channels (the first block
    of a stage whose width differs from its input's is a transition: pointwise to the new width
    first, no identity shortcut), the second and third stages halving frequency, time dilation
    1, 2, 4, 8 -> depthwise 5 x remaining bands -> pointwise 32 s -> global average -> dropout
    -> Dense+softmax per head.
    Departures from the paper, for int8 on a small CPU: BatchNorm instead of sub-spectral
    norm and ReLU instead of swish (both fold or fuse at conversion).

    Parameters
    ----------
    scale : float
        The paper's tau: channels of every layer scale with it, params ~ scale**2
        (1: ~9 k params, 2: ~27 k, 3: ~53 k).
    time_stride : int
        The stem's stride in time: 1 keeps the paper's 10 ms rows (the dilations then span
        about 1 s), 2 halves the MACs with 20 ms rows.
    Others as `build_model`.
    """
    import keras
    from keras import layers

    def ch(c):
        return max(1, int(round(c * scale)))

    def bn(x, name):
        return layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)

    inp = keras.Input((input_frames, n_mels, 1), batch_size=batch_size, name="log_mel")
    x = layers.Conv2D(ch(16), (5, 5), strides=(time_stride, 2), padding="same", use_bias=False,
                      name="stem")(inp)
    x = layers.ReLU(name="stem_relu")(bn(x, "stem"))
    channels = ch(16)
    for s, (width, n_blocks, f_stride, dilation) in enumerate(
            [(ch(8), 2, 1, 1), (ch(12), 2, 2, 2), (ch(16), 4, 2, 4), (ch(20), 4, 1, 8)]):
        for b in range(n_blocks):
            name = f"s{s}b{b}"
            transition = b == 0 and width != channels
            if transition:
                x = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_in")(x)
                x = layers.ReLU(name=f"{name}_in_relu")(bn(x, f"{name}_in"))
                channels = width
            stride = (1, f_stride) if b == 0 else (1, 1)
            f2 = bn(layers.DepthwiseConv2D((1, 3), strides=stride, padding="same",
                                           use_bias=False, name=f"{name}_freq")(x), f"{name}_freq")
            mels = int(f2.shape[2])
            f1 = layers.AveragePooling2D((1, mels), name=f"{name}_avg")(f2)
            f1 = layers.DepthwiseConv2D((3, 1), dilation_rate=(dilation, 1), padding="same",
                                        use_bias=False, name=f"{name}_time")(f1)
            f1 = layers.ReLU(name=f"{name}_time_relu")(bn(f1, f"{name}_time"))
            f1 = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_pw")(f1)
            f1 = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(f1)
            parts = [f2, f1] if transition or stride != (1, 1) else [x, f2, f1]
            x = layers.ReLU(name=f"{name}_relu")(layers.Add(name=f"{name}_add")(parts))
    x = layers.DepthwiseConv2D((5, int(x.shape[2])), padding="valid", use_bias=False,
                               name="head_dw")(x)
    x = layers.Conv2D(ch(32), 1, use_bias=False, name="head_pw")(bn(x, "head_dw"))
    x = layers.ReLU(name="head_relu")(bn(x, "head_pw"))
    return _with_heads(inp, x, n_keyword, n_scene, dropout)


def build_for_variant(cfg: Config, variant: Variant, batch_size: int | None = None):
    """The profile's trunk (``model.multitask.architecture``) sized by ``[model.multitask]`` and
    ``[frontend.keyword]``: `build_model` for ``"dscnn"``, `build_bc_resnet` for ``"bcresnet"``."""
    lm = LogMelConfig.from_config(cfg, "keyword")
    frames = num_frames(clip_samples(cfg), lm.window_length, lm.hop_length)
    labels = cfg.head_labels
    heads = (len(labels["keyword"]) if "keyword" in variant.tasks else None,
             len(labels["scene"]) if "scene" in variant.tasks else None)
    shape = dict(input_frames=frames, n_mels=lm.n_mels,
                 dropout=float(cfg["model.multitask.dropout"]), batch_size=batch_size)
    if cfg["model.multitask.architecture"] == "bcresnet":  # the schema allows these two only
        return build_bc_resnet(*heads, scale=float(cfg["model.multitask.bc_scale"]),
                               time_stride=int(cfg["model.multitask.bc_time_stride"]), **shape)
    return build_model(*heads, width=int(cfg["model.multitask.width"]),
                       blocks=int(cfg["model.multitask.blocks"]), **shape)


def predict(model, feats: np.ndarray, normalizer: Normalizer, batch_size: int = 256) -> dict:
    """Float Keras posteriors ``{head: (n, classes)}`` for raw log-mel features."""
    out = model.predict(normalizer(feats)[..., None], batch_size=batch_size, verbose=0)
    return out if isinstance(out, dict) else {model.output_names[0]: out}


# --------------------------------------------------------------------------- training
def train_variant(cfg: Config, train: TaskData, validation: TaskData, variant: Variant,
                  out_dir: Path | None = None, verbose: int = 2) -> loop.TrainResult:
    """Train one variant with early stopping on validation loss; keep the best checkpoint.

    Validation is a fixed set drawn once (seeded, no augmentation) the way training draws
    for this variant, so the loss that early stopping watches is the task the model trains on.

    With ``model.multitask.init_from = "kw"`` a multitask variant starts from the trained
    keyword-only baseline (trunk, keyword head and normaliser): keywords are learnt far
    faster on clean clips than on mixtures, and on two CPU cores that is the difference
    between a useful model and a chance-level keyword head within the epoch budget.

    With ``model.multitask.distill_weight`` > 0 the keyword head also learns from a frozen
    speech-embedding teacher (`train.teacher`, host only): its target becomes
    ``(1 - w) * one_hot + w * teacher`` (out-of-fold probabilities, softened by
    ``distill_temperature``) unless ``train.keyword_targets`` already holds targets.
    """
    import keras

    seed = int(cfg["project.seed"])
    keras.utils.set_random_seed(seed)
    files = loop.RunFiles(Path(out_dir)) if out_dir else run_files(cfg, variant.name)
    files.folder.mkdir(parents=True, exist_ok=True)
    lm_cfg = LogMelConfig.from_config(cfg, "keyword")
    batch = int(cfg["model.multitask.batch_size"])
    epochs = int(cfg["model.multitask.epochs"])
    n_train = len(train.keyword_audio) if "keyword" in variant.tasks else 8 * len(train.scenes)
    steps = max(int(cfg["model.multitask.min_steps_per_epoch"]),
                int(np.ceil(n_train * float(cfg["model.multitask.examples_per_clip"]) / batch)))
    aug = Augment.from_config(cfg)
    distill = float(cfg["model.multitask.distill_weight"]) > 0 and "keyword" in variant.tasks
    teacher_info = None
    if distill and train.keyword_targets is None:
        # Host-only teacher (train.teacher): out-of-fold soft targets for the training clips;
        # validation keeps the hard labels, so early stopping watches the real task.
        from train.teacher import distill_targets

        targets, teacher_info = distill_targets(cfg, train, validation, progress=verbose > 0)
        train = replace(train, keyword_targets=targets)

    rng = np.random.default_rng(seed + 1)
    norm_feats, _, _ = draw_examples(train, variant, min(NORMALIZER_EXAMPLES, steps * batch), rng,
                                     lm_cfg, None)
    init_from = str(cfg["model.multitask.init_from"])
    init = run_files(cfg, init_from) if init_from and variant.multitask else None
    if init is not None and not init.trained():
        log.warning("%s: model.multitask.init_from=%s but %s has no trained model; training "
                    "from scratch", variant.name, init_from, init.folder)
        init = None
    # A warm start keeps the trunk's input scaling: the initialising model's normaliser.
    normalizer = (Normalizer.load(init.normalizer) if init is not None
                  else Normalizer.fit(norm_feats))
    normalizer.save(files.normalizer)
    # Int8 calibration needs training features; keeping a sample beside the checkpoint lets
    # export run without rebuilding the corpus.
    n_calib = int(cfg["export.calibration_examples"])
    np.save(files.calibration, norm_feats[:n_calib].astype(np.float16))
    n_val = len(validation.keyword_audio) if "keyword" in variant.tasks else 3 * len(validation.scenes)
    vx, vy, vw = draw_examples(validation, variant, max(n_val, 1), np.random.default_rng(seed + 2),
                               lm_cfg, None)
    if distill and vy["keyword"].ndim == 1:
        # The keyword head's loss is categorical when distilling: hard labels as one-hot rows.
        vy["keyword"] = np.eye(len(cfg.head_labels["keyword"]), dtype=np.float32)[vy["keyword"]]
    seq = loop.epoch_sequence(lambda n, r: draw_examples(train, variant, n, r, lm_cfg, aug),
                              steps, batch, normalizer, seed + 3, batch_transform=aug.spec_augment)

    model = build_for_variant(cfg, variant)
    if init is not None:
        copied = loop.copy_matching_weights(
            keras.models.load_model(init.checkpoint, compile=False), model)
        log.info("%s: warm start from %s (%d layers copied: trunk and matching heads)",
                 variant.name, init.folder, copied)
    lr = float(cfg["model.multitask.learning_rate"])
    if init is not None:
        # A warm start already knows the keywords: it needs fewer epochs, and a gentler rate
        # keeps what the baseline learnt while the trunk learns to hear words through scenes.
        # 0 in the profile means "the same as the cold start".
        epochs = int(cfg["model.multitask.warm_start_epochs"]) or epochs
        lr = float(cfg["model.multitask.warm_start_learning_rate"]) or lr
    smoothing = float(cfg["model.multitask.label_smoothing"])
    losses = {h: loop.smoothed_sparse_crossentropy(smoothing) for h in variant.tasks}
    metrics = {h: ["accuracy"] for h in variant.tasks}
    if distill:
        # Soft rows: categorical cross-entropy, whose label_smoothing is the same uniform blend
        # as the sparse loss's; accuracy against the rows' argmax (the hard label while
        # distill_weight <= 0.5).
        losses["keyword"] = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
        metrics["keyword"] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=loop.cosine_adam(lr, steps * epochs), loss=losses, metrics=metrics)
    tag = profile_tag(cfg)
    log.info("training %s (%s) on %s: %d params, %d epochs x %d steps x %d, %d validation "
             "examples -> %s", variant.name, variant.description, tag,
             model.count_params(), epochs, steps, batch, len(vx), files.folder)
    fitted = loop.fit(model, seq, (normalizer(vx)[..., None], vy, vw), epochs=epochs,
                      patience=int(cfg["model.multitask.patience"]), checkpoint=files.checkpoint,
                      verbose=verbose)
    history, best_epoch = fitted.history, fitted.best_epoch
    info = {"variant": variant.name, "description": variant.description, "tasks": list(variant.tasks),
            "keyword_share": variant.keyword_share, "share_jitter": variant.share_jitter,
            "profile": tag, "params": int(model.count_params()),
            "train_seconds": round(fitted.seconds, 1), "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch, "train_keyword_clips": int(len(train.keyword_audio)),
            "train_scene_clips": int(len(train.scenes)),
            "init_from": str(init.folder) if init is not None else None,
            "labels": {h: cfg.head_labels[h] for h in HEADS}}
    if distill:
        info["distill"] = teacher_info or {"weight": float(cfg["model.multitask.distill_weight"]),
                                           "temperature": float(cfg["model.multitask.distill_temperature"]),
                                           "targets": "given by the caller"}
    loop.save_run(files, history, info)
    curves = BuildPaths(cfg).report(f"{MODEL}_{tag}_{variant.name}_curves.png")
    loop.plot_history(history, curves, f"{variant.name}: {variant.description} ({tag})")
    best_val = {k: round(v[best_epoch - 1], 4) for k, v in history.items() if k.startswith("val_")}
    log.info("trained %s in %.0f s (%d epochs, best %d: %s); curves %s", variant.name,
             fitted.seconds, len(history["loss"]), best_epoch, best_val, curves)
    return loop.TrainResult(variant.name, files.checkpoint, normalizer, history, fitted.seconds,
                            int(model.count_params()), best_epoch)


def load_trained(cfg: Config, variant: str):
    """(keras model, normalizer, train_info) of a trained variant."""
    return loop.load_run(run_files(cfg, variant),
                         f"python -m train.multitask --profile {profile_tag(cfg)} "
                         f"--variant {variant}")


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
    """The variant chosen for deployment (``models/multitask/<profile>/deployed.json``, written
    by the seed table), else `DEFAULT_VARIANT`."""
    return loop.read_deployed(cfg, MODEL, DEFAULT_VARIANT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.multitask",
        description="Train the keyword + scene multitask network on keyword/scene mixtures "
                    "(or a single-task baseline). Writes the best checkpoint, normaliser, "
                    "history and training-curve PNG under the profile's build folder.",
        epilog="Example: python -m train.multitask --profile default --variant mt60j "
               "--set model.multitask.epochs=3")
    add_profile_arguments(parser)
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=VARIANT_NAMES,
                        help="kw/scene: single-task baselines; mt50/mt60: fixed 50:50 / 60:40 "
                             "mixtures; mt60j: the profile's share with jitter (default)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch Keras lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    loop.configure_threads()
    cfg = config_from_args(args)
    splits = load_splits(cfg)
    all_variants = variants(cfg)
    variant = all_variants[args.variant]
    init_from = str(cfg["model.multitask.init_from"])
    if variant.multitask and init_from and not run_files(cfg, init_from).trained():
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
