"""A second opinion on every wake trigger: a frozen speech embedding and a small readout.

The keyword model runs on every stride and decides alone whether the wake word was said; most of
its false wake-ups come from running speech, where some stretch sounds enough like the word. The
verifier runs only when that trigger fires (a few times an hour on other speech, so its cost
averages to nothing) and asks a model that has heard far more speech: Google's
``speech_embedding`` (https://tfhub.dev/google/speech_embedding/1, Apache 2.0), in the TFLite
conversion that openWakeWord's wheel ships (``melspectrogram.tflite`` and
``embedding_model.tflite``; the wheel is Apache 2.0, its bundled wake-word models, which are not
used, CC BY-NC-SA 4.0). Each 1 s window around the trigger becomes embedding frames (96 values
every 80 ms), pooled (mean and max over frames), and a readout fit on the training split
(`train.verifier`) says how likely the window holds the wake word: a logistic regression, or the
mean of a few one-hidden-layer networks (`readout_probabilities`). The wake event goes out only
when the best window reaches ``decisions.wake_verifier_threshold``. On the device the windows
are scored as their audio arrives (`WakeVerdict`): the first one to reach the threshold sends
the event, so the windows that end late, there for a word the trigger caught early, delay only
the words that need them.

It can also judge commands. With a class readout (a multinomial readout of the same two forms
over the keyword head's labels, fit on the same clips), a command trigger is decided by the keyword
model's smoothed posteriors and the embedding's class probabilities together
(`combine`: their product, the embedding's raised to ``weight``): the small model hears the
word in its stride, the embedding has heard far more voices. Cross-validated over 4,163
recorded clips of held-out speakers, the product names the word right where either alone
fails (README "A second opinion on commands").

Usage::

    v = WakeVerifier.load("build/export/wake_verifier.tflite")   # checks both models' sha256
    p = v.score(history, end_index)   # history: float audio at 16 kHz; end_index: the sample of
                                      # the trigger; needs v.wake_delay_s of audio after it
    verdict = WakeVerdict(v, trigger_sample, threshold=0.7)   # or window by window, as the audio
    verdict.update(history, end_sample)   # arrives: True (the wake word), False, None (wait)
    if v.classes is not None:         # a command trigger: the keyword model's smoothed posteriors
        q = v.class_probabilities(history, end_index)   # over v.classes
        combined = combine(posteriors, q, weight=1.0)

Training and the device use this same code (`train.verifier` embeds its clips with `embed`), so
the readout is fit on the numbers the device computes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .interpreter import load_interpreter
from .manifest import ManifestError, read_verified

__all__ = ["RATE_HZ", "SpeechEmbedding", "WakeVerifier", "WakeVerdict", "AudioHistory", "pooled",
           "combine", "windows_around", "readout_probabilities"]

RATE_HZ = 16000          # the embedding's input rate
MEL_BANDS = 32
WINDOW_FRAMES = 76       # mel frames (10 ms) per embedding frame: 0.76 s
STEP_FRAMES = 8          # 80 ms between embedding frames
EMBEDDING_DIM = 96


def pooled(frames: np.ndarray) -> np.ndarray:
    """``(..., frames, dim)`` -> ``(..., 2 * dim)``: mean then max over frames (where a word is
    and how strongly); one clip ``(frames, dim)`` or a batch ``(n, frames, dim)``."""
    frames = np.asarray(frames, dtype=np.float32)
    return np.concatenate([frames.mean(axis=-2), frames.max(axis=-2)], axis=-1)


def _parse_readout(readout: dict, n_out: int, what: str) -> tuple[np.ndarray, np.ndarray, list]:
    """A readout's standardisation (``mean``, ``scale``) and its ``(hidden_weights, hidden_bias,
    coef, intercept)`` per member, checked: one member with no hidden layer (``coef`` and
    ``intercept`` at the top: a logistic regression), or ``hidden``'s members (one ReLU layer
    each). ``n_out`` 0: one sigmoid output (``coef`` a vector, ``intercept`` a number); else
    ``n_out`` softmax outputs. ``what`` names the readout in the errors."""
    n = 2 * EMBEDDING_DIM
    fix = "re-run `make train export`"
    mean = np.asarray(readout.get("mean", []), np.float64)
    scale = np.asarray(readout.get("scale", []), np.float64)
    if not (mean.shape == scale.shape == (n,)):
        raise ManifestError(f"the verifier's {what} must have {n} values in mean and scale; {fix}")
    if not np.all(scale > 0):
        raise ManifestError(f"the verifier's {what} has a zero scale; {fix}")
    out_shape = (lambda h: (h,)) if n_out == 0 else (lambda h: (n_out, h))
    bias_shape = () if n_out == 0 else (n_out,)
    try:
        if "hidden" not in readout:
            members = [(None, None, np.asarray(readout["coef"], np.float64),
                        np.asarray(readout["intercept"], np.float64))]
        else:
            members = [(np.asarray(m["weights"], np.float64), np.asarray(m["bias"], np.float64),
                        np.asarray(m["coef"], np.float64), np.asarray(m["intercept"], np.float64))
                       for m in readout["hidden"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"the verifier's {what} lacks {exc}; {fix}") from None
    if not members:
        raise ManifestError(f"the verifier's {what} has no hidden members; {fix}")
    for w, b, coef, intercept in members:
        width = n if w is None else (w.shape[1] if w.ndim == 2 else -1)
        if (w is not None and (w.shape != (n, width) or b.shape != (width,))) \
                or coef.shape != out_shape(width) or intercept.shape != bias_shape:
            raise ManifestError(f"the verifier's {what} must map {n} values to "
                                f"{'one output' if n_out == 0 else f'{n_out} outputs'} (coef "
                                f"{coef.shape}, intercept {intercept.shape}); {fix}")
    return mean, scale, members


def readout_probabilities(x: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                          members: Sequence[tuple], softmax: bool) -> np.ndarray:
    """A readout over pooled embeddings ``(n, 192)``: standardise by ``mean`` and ``scale``, then
    each member's ``relu(z @ weights + bias)`` (no hidden layer: ``z`` itself) times ``coef`` plus
    ``intercept``, through a sigmoid (``(n,)``) or a softmax (``(n, outputs)``); the members'
    probabilities averaged."""
    z = (np.asarray(x, np.float64) - mean) / scale
    total = 0.0
    for w, b, coef, intercept in members:
        h = z if w is None else np.maximum(z @ w + b, 0.0)
        if softmax:
            logits = h @ coef.T + intercept
            e = np.exp(logits - logits.max(axis=-1, keepdims=True))
            total = total + e / e.sum(axis=-1, keepdims=True)
        else:
            total = total + 1.0 / (1.0 + np.exp(-(h @ coef + intercept)))
    return total / len(members)


def windows_around(audio: np.ndarray, trigger_index: int, ends_s: Sequence[float],
                   clip_samples: int) -> np.ndarray:
    """Windows ``(len(ends_s), clip_samples)`` of ``audio``, each ending ``ends_s`` seconds after
    the sample ``trigger_index`` (negative: before it); zeros where they reach outside it."""
    out = np.zeros((len(ends_s), int(clip_samples)), np.float32)
    for i, end_s in enumerate(ends_s):
        e = int(trigger_index) + int(round(float(end_s) * RATE_HZ))
        b = e - int(clip_samples)
        lo, hi = max(b, 0), min(e, len(audio))
        if hi > lo:
            out[i, lo - b:hi - b] = audio[lo:hi]
    return out


def combine(posteriors: np.ndarray, class_probs: np.ndarray, weight: float = 1.0,
            floor: float = 1e-4) -> np.ndarray:
    """Two opinions over the same labels -> one distribution: ``posteriors * class_probs **
    weight``, renormalised (in logs, each probability floored at ``floor`` so that one model's
    certainty that a class is absent cannot veto the other outright).

    Parameters
    ----------
    posteriors, class_probs : array (n_labels,) or (n, n_labels)
        The keyword model's (smoothed) posteriors and the embedding readout's probabilities.
    weight : float
        How much the embedding counts against the keyword model: 0 is the keyword model alone,
        1 the plain product, more leans on the embedding.
    """
    z = (np.log(np.maximum(np.asarray(posteriors, np.float64), floor))
         + float(weight) * np.log(np.maximum(np.asarray(class_probs, np.float64), floor)))
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class SpeechEmbedding:
    """The mel-spectrogram and embedding models, one TFLite interpreter each (one thread).

    ``embed(clips)`` turns float clips ``(n, samples)`` at 16 kHz in [-1, 1] into pooled
    embeddings ``(n, 192)``. Each clip gets ``context_ms`` of silence on both sides first: the
    embedding's window is 0.76 s and moves in 80 ms steps, so a bare 1 s clip gives only three
    frames and a word at its edge none of its own.

    Parameters
    ----------
    mel_model, embedding_model : bytes
        The two models' bytes (already checked against their manifests).
    context_ms : float
        Silence around each clip: more frames per clip (cost grows with it), the same word.
    """

    def __init__(self, mel_model: bytes, embedding_model: bytes, context_ms: float = 250.0,
                 names: tuple[str, str] = ("mel", "embedding")):
        self.context = int(round(float(context_ms) * RATE_HZ / 1000.0))
        # Two verifiers with the same key embed any audio alike (only their readouts differ).
        self.key = hashlib.sha256(hashlib.sha256(mel_model).digest()
                                  + hashlib.sha256(embedding_model).digest()
                                  + str(self.context).encode()).hexdigest()
        # Both models have dynamic dimensions: allocated at a real shape, resized per call.
        self._mel_len = RATE_HZ + 2 * self.context
        self._emb_batch = 1
        self.mel = load_interpreter(names[0], content=mel_model, input_shape=[1, self._mel_len])
        self.emb = load_interpreter(names[1], content=embedding_model,
                                    input_shape=[1, WINDOW_FRAMES, MEL_BANDS, 1])

    def _mel(self, pcm: np.ndarray) -> np.ndarray:
        """``(samples,)`` int16-scaled float -> ``(frames, 32)``, scaled as the embedding expects."""
        inp = self.mel.get_input_details()[0]
        if self._mel_len != len(pcm):
            self.mel.resize_tensor_input(inp["index"], [1, len(pcm)], strict=True)
            self.mel.allocate_tensors()
            self._mel_len = len(pcm)
        self.mel.set_tensor(inp["index"], pcm[None, :].astype(np.float32))
        self.mel.invoke()
        out = self.mel.get_tensor(self.mel.get_output_details()[0]["index"])
        # openWakeWord's scaling of this model's output (its AudioFeatures._get_melspectrogram).
        return np.squeeze(out).reshape(-1, MEL_BANDS) / 10.0 + 2.0

    def frames(self, clip: np.ndarray) -> np.ndarray:
        """Embedding frames ``(k, 96)`` of one float clip in [-1, 1] (with the context added)."""
        x = np.clip(np.asarray(clip, np.float32) * 32767.0, -32768, 32767)
        x = np.rint(x)  # the int16 PCM a microphone would give
        x = np.pad(x, (self.context, self.context))
        mel = self._mel(x)
        if len(mel) < WINDOW_FRAMES:
            mel = np.pad(mel, ((WINDOW_FRAMES - len(mel), 0), (0, 0)))
        starts = range(0, len(mel) - WINDOW_FRAMES + 1, STEP_FRAMES)
        batch = np.stack([mel[s:s + WINDOW_FRAMES] for s in starts])[..., None].astype(np.float32)
        inp = self.emb.get_input_details()[0]
        if self._emb_batch != len(batch):
            self.emb.resize_tensor_input(inp["index"], list(batch.shape), strict=True)
            self.emb.allocate_tensors()
            self._emb_batch = len(batch)
        self.emb.set_tensor(inp["index"], batch)
        self.emb.invoke()
        return self.emb.get_tensor(self.emb.get_output_details()[0]["index"]).reshape(
            len(batch), EMBEDDING_DIM)

    def embed(self, clips: np.ndarray, progress: bool = False) -> np.ndarray:
        """Pooled embeddings ``(n, 192)`` of float clips ``(n, samples)``."""
        clips = np.asarray(clips, dtype=np.float32)
        if clips.ndim != 2:
            raise ValueError(f"embed takes clips as (n, samples), got shape {clips.shape}")
        rows = range(len(clips))
        if progress:
            from tqdm import tqdm
            rows = tqdm(rows, desc="verifier embeddings", unit="clip", mininterval=5.0)
        out = np.zeros((len(clips), 2 * EMBEDDING_DIM), np.float32)
        for i in rows:
            out[i] = pooled(self.frames(clips[i]))
        return out


class WakeVerifier:
    """The speech embedding and its readout: a probability that audio around a trigger holds
    the wake word.

    Parameters
    ----------
    embedding : SpeechEmbedding
    readout : dict
        ``mean``, ``scale`` (standardisation, 192 each), and either ``coef`` (192) and
        ``intercept`` (a logistic regression) or ``hidden``: members, each ``weights`` (192 x
        units), ``bias`` (units), ``coef`` (units), ``intercept``, whose probabilities are
        averaged (`readout_probabilities`); as `train.verifier` fit it.
    window_ends_ms : sequence of float
        Where each 1 s window ends, in ms after the trigger (negative: before). The score is the
        best window's: the trigger fires at a varying point of the word, the readout was fit on
        whole words. The largest end (``wake_delay_s``) is the longest a wake event can wait
        for audio after the trigger: scored window by window (`WakeVerdict`), one that passes
        sends it at its own end.
    clip_ms : float
        The windows' length (the training clips').
    classes : dict, optional
        The class readout: ``labels`` (the keyword head's), ``mean``, ``scale`` (192 each),
        ``coef`` (labels x 192) and ``intercept`` (labels), or ``hidden`` members as above with
        ``coef`` labels x units and ``intercept`` per label, and ``window_ends_ms``: the windows
        whose class probabilities are averaged (a command trigger comes early in the word, so
        a window ending after it hears more of it). None: wake triggers only.
    """

    def __init__(self, embedding: SpeechEmbedding, readout: dict,
                 window_ends_ms: Sequence[float] = (0.0,), clip_ms: float = 1000.0,
                 classes: dict | None = None):
        self.embedding = embedding
        self.mean, self.scale, self._members = _parse_readout(readout, 0, "wake readout")
        self.path, self.sha256 = None, None    # set by `load`
        self.window_ends = np.asarray(sorted(float(e) for e in window_ends_ms)) / 1000.0
        self.clip = int(round(float(clip_ms) * RATE_HZ / 1000.0))
        self.classes = None
        ends = self.window_ends
        self.wake_delay_s = max(0.0, float(ends.max()))
        self.class_delay_s = 0.0
        if classes is not None:
            self._set_classes(classes)
            ends = np.concatenate([ends, self.class_window_ends])
            self.class_delay_s = max(0.0, float(self.class_window_ends.max()))
        # Samples before the trigger the earliest window needs.
        self.history_s = float(clip_ms) / 1000.0 - float(ends.min())

    def _set_classes(self, classes: dict) -> None:
        labels = [str(v) for v in classes.get("labels", [])]
        ends = [float(e) for e in classes.get("window_ends_ms", [])]
        if len(labels) < 2 or not ends:
            raise ManifestError("the verifier's class readout must have labels and "
                                "window_ends_ms; re-run `make train export`")
        self._class_mean, self._class_scale, self._class_members = _parse_readout(
            classes, len(labels), "class readout")
        self.classes = labels
        self.class_window_ends = np.asarray(sorted(ends)) / 1000.0

    @property
    def delay_s(self) -> float:
        """The most audio after a trigger any verdict needs (wake or command)."""
        return max(self.wake_delay_s, self.class_delay_s)

    @classmethod
    def load(cls, path: str | Path) -> "WakeVerifier":
        """The verifier exported as ``wake_verifier.tflite`` (the embedding model) with its
        manifest, which holds the readout and names the mel model beside it; both models are
        checked against their sha256 before they run."""
        path = Path(path)
        manifest, emb_bytes = read_verified(path)
        v = manifest.get("verifier")
        if not isinstance(v, dict) or "readout" not in v or "mel_model" not in v:
            raise ManifestError(f"{path}: its manifest has no verifier section; re-run "
                                f"`make train export`")
        mel_path = path.parent / str(v["mel_model"])
        mel_manifest, mel_bytes = read_verified(mel_path)
        if mel_manifest["sha256"] != v.get("mel_sha256"):
            raise ManifestError(f"{mel_path} is not the mel model {path.name} was fit with; "
                                f"re-run `make train export` and deploy both")
        emb = SpeechEmbedding(mel_bytes, emb_bytes, float(v.get("context_ms", 250.0)),
                              names=(str(mel_path), str(path)))
        out = cls(emb, v["readout"], v.get("window_ends_ms", [0.0]), float(v.get("clip_ms", 1000.0)),
                  classes=v.get("classes"))
        out.path, out.sha256 = path, str(manifest["sha256"])   # what the self-check lists
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """The readout over pooled embeddings ``(n, 192)`` -> ``(n,)``."""
        return readout_probabilities(x, self.mean, self.scale, self._members, softmax=False)

    def class_readout(self, x: np.ndarray) -> np.ndarray:
        """The class readout over pooled embeddings ``(n, 192)`` -> ``(n, len(classes))``."""
        if self.classes is None:
            raise ValueError("this verifier has no class readout; re-run `make train export` "
                             "with model.wake_verifier.classes = true")
        return readout_probabilities(x, self._class_mean, self._class_scale, self._class_members,
                                     softmax=True)

    def class_probabilities(self, audio: np.ndarray, trigger_index: int) -> np.ndarray:
        """The class readout ``(len(classes),)`` averaged over the class windows around sample
        ``trigger_index`` of ``audio``."""
        if self.classes is None:
            raise ValueError("this verifier has no class readout; re-run `make train export` "
                             "with model.wake_verifier.classes = true")
        x = self.embedding.embed(self.windows(audio, trigger_index, self.class_window_ends))
        return self.class_readout(x).mean(axis=0)

    def judge_command(self, posteriors: np.ndarray, labels: Sequence[str], commands,
                      audio: np.ndarray, trigger_index: int, weight: float) -> tuple:
        """A command trigger's verdict: ``(label, probability, embedding's probability)`` of the
        word the keyword model's smoothed ``posteriors`` (over ``labels``) and the class readout
        name together (`combine`), label None when that word is not among ``commands``."""
        q = self.class_probabilities(audio, trigger_index)[[self.classes.index(l) for l in labels]]
        p = combine(posteriors, q, weight)
        best = int(np.argmax(p))
        label = labels[best] if labels[best] in commands else None
        return label, float(p[best]), float(q[best])

    def windows(self, audio: np.ndarray, trigger_index: int,
                ends_s: Sequence[float] | None = None) -> np.ndarray:
        """The 1 s windows ``(len(ends_s), clip)`` ending ``ends_s`` seconds after the sample
        ``trigger_index`` of ``audio`` (default: the wake windows; zeros where they reach
        outside it)."""
        return windows_around(audio, trigger_index,
                              self.window_ends if ends_s is None else ends_s, self.clip)

    def wake_embeddings(self, audio: np.ndarray, trigger_index: int) -> np.ndarray:
        """The wake windows' pooled embeddings ``(len(window_ends), 192)`` around sample
        ``trigger_index`` of ``audio``: what `score` judges (any verifier with the same
        embedding and windows computes the same, whatever its readout)."""
        return self.embedding.embed(self.windows(audio, trigger_index))

    def score_embeddings(self, x: np.ndarray) -> float:
        """The best window's probability over `wake_embeddings`' ``x``."""
        return float(self.probabilities(x).max())

    def score(self, audio: np.ndarray, trigger_index: int) -> float:
        """The best window's probability around sample ``trigger_index`` of ``audio``."""
        return self.score_embeddings(self.wake_embeddings(audio, trigger_index))


class WakeVerdict:
    """One wake trigger's verdict, reached window by window as the audio after it arrives.

    Each call to ``update`` scores the verifier's wake windows (`WakeVerifier.window_ends`, in
    the order of their ends) whose audio is complete and not yet scored: the first to reach
    ``threshold`` accepts the trigger there and then; the last one below it refuses it. The
    outcome is `WakeVerifier.score`'s (the best window against the threshold); only the time
    differs: a word the trigger caught late is accepted at once, by a window that ended before
    the trigger, and one caught early waits for the windows that hear the rest of it. So the
    windows that end late cost latency only to the words that need them, and a refused trigger
    costs one embedding per window, spread over the hops (``max_windows``).

    Parameters
    ----------
    verifier : WakeVerifier
    trigger_sample : int
        The trigger's sample, counted in the stream (as `AudioHistory.end` counts).
    threshold : float
        ``decisions.wake_verifier_threshold``.
    """

    def __init__(self, verifier: "WakeVerifier", trigger_sample: int, threshold: float):
        self.verifier = verifier
        self.trigger = int(trigger_sample)
        self.threshold = float(threshold)
        self.ends = [self.trigger + int(round(float(e) * RATE_HZ)) for e in verifier.window_ends]
        self.scored = 0            # windows scored so far
        self.best = 0.0            # their best probability
        self.accepted: bool | None = None

    def update(self, audio: np.ndarray, end_sample: int, max_windows: int | None = None
               ) -> bool | None:
        """Score the windows complete in ``audio`` (the stream's history, ending at stream
        sample ``end_sample``), at most ``max_windows`` of them in this call (None: all; the
        device scores one a hop, so that no hop carries several embeddings): True accepted,
        False refused, None not yet decided."""
        if self.accepted is not None:
            return self.accepted
        v = self.verifier
        at = self.trigger - (int(end_sample) - len(audio))   # the trigger's index in `audio`
        budget = len(self.ends) if max_windows is None else int(max_windows)
        while (budget > 0 and self.scored < len(self.ends)
               and self.ends[self.scored] <= end_sample):
            budget -= 1
            window = windows_around(audio, at, v.window_ends[self.scored:self.scored + 1], v.clip)
            p = float(v.probabilities(v.embedding.embed(window))[0])
            self.scored += 1
            self.best = max(self.best, p)
            if p >= self.threshold:
                self.accepted = True
                return True
        if self.scored == len(self.ends):
            self.accepted = False
        return self.accepted


class AudioHistory:
    """The last ``seconds`` of a stream, for looking back at a trigger.

    ``write(hop)`` every hop; ``view()`` gives the history oldest first, ending at the newest
    sample; ``end`` counts every sample written (the stream position of the view's end).
    """

    def __init__(self, seconds: float, rate: int = RATE_HZ):
        self.capacity = int(np.ceil(seconds * rate))
        self._buf = np.zeros(2 * self.capacity, np.float32)
        self._n = 0          # valid samples in _buf[:_n]
        self.end = 0

    def write(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float32).reshape(-1)[-self.capacity:]
        if self._n + len(x) > len(self._buf):
            keep = self.capacity - len(x)
            self._buf[:keep] = self._buf[self._n - keep:self._n]
            self._n = keep
        self._buf[self._n:self._n + len(x)] = x
        self._n += len(x)
        self.end += len(np.asarray(samples).reshape(-1))

    def view(self) -> np.ndarray:
        return self._buf[max(0, self._n - self.capacity):self._n]
