"""Source separation on the device: the deep attractor network's exported model, offline and
streaming. No TensorFlow: the model runs through `device.interpreter.TFLiteModel`.

The exported model (``export/separation.py``) takes one chunk of ``chunk_frames`` STFT frames of
normalised log magnitude, ``(1, chunk_frames, n_bins)``, and returns one mask per source,
``(1, chunk_frames, n_bins, n_sources)``: the embedding network, then ``softmax(A . V)`` over
the sources with the *fixed* attractors ``A`` learned in training baked in, so the device does
no clustering. A source's estimate is its mask times the complex mixture spectrum, turned back
into audio with the mixture's phase by `device.frontend.istft`.

Both paths cut the spectrogram into the same chunks (frame 0, ``chunk_frames``, ...), so the
streaming `SeparatorStream` gives the same samples as the offline `Separator.separate` of the
same audio (tests/device/test_separation.py states the tolerance)::

    sep = Separator.from_config(cfg)                 # build/export/separation.tflite
    sources = sep.separate(audio_8k)                 # (n_sources, n_samples) float32
    stream = SeparatorStream(sep, keep="speech")
    out = stream.push(chunk_8k)                      # the kept source, a fixed delay behind
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .frontend import STFTConfig, STFTStream, _edge_pad, _stft_window, istft, log_magnitude, stft

__all__ = ["chunk_log_magnitude", "softmax_masks", "Separator", "StreamingISTFT",
           "SeparatorStream", "source_index"]


def chunk_log_magnitude(spectrum: np.ndarray, chunk_frames: int,
                        cfg: STFTConfig = STFTConfig()) -> np.ndarray:
    """``(n_frames, n_bins)`` complex STFT -> ``(n_chunks, chunk_frames, n_bins)`` log magnitude.

    The last chunk is filled up with the log floor (digital silence); the caller keeps only the
    first ``n_frames`` frames of what comes back.
    """
    logmag = log_magnitude(spectrum, cfg)
    n = len(logmag)
    n_chunks = max(1, -(-n // chunk_frames))
    out = np.full((n_chunks * chunk_frames, logmag.shape[1]), np.log(cfg.log_floor), np.float32)
    out[:n] = logmag
    return out.reshape(n_chunks, chunk_frames, logmag.shape[1])


def softmax_masks(embeddings: np.ndarray, attractors: np.ndarray) -> np.ndarray:
    """DANet masks: ``softmax`` over sources of ``A . V``.

    Parameters
    ----------
    embeddings : np.ndarray
        ``(..., n_bins, K)``, one K-dimensional embedding per time-frequency bin.
    attractors : np.ndarray
        ``(n_sources, K)``.

    Returns
    -------
    np.ndarray
        ``(..., n_bins, n_sources)`` masks summing to 1 over the sources.
    """
    logits = np.einsum("...k,ck->...c", embeddings, attractors)
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def source_index(labels, keep: str | int) -> int:
    """The position of source ``keep`` (a label or an index) among ``labels``."""
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        if not 0 <= int(keep) < len(labels):
            raise ValueError(f"source index {keep} is out of range: the model separates "
                             f"{len(labels)} sources {list(labels)}")
        return int(keep)
    if keep not in labels:
        raise ValueError(f"the separation model has no source {keep!r}; its sources are "
                         f"{list(labels)} (set stages.<name>.keep to one of them)")
    return list(labels).index(keep)


class Separator:
    """The exported separator, verified and loaded: masks and separated audio of 8 kHz clips.

    Call ``separate(audio)`` with mono audio at ``stft.sample_rate`` (8 kHz) for every source's
    estimate, or ``masks(spectrum)`` for the masks of an STFT. Every chunk is one interpreter
    call (the model has a fixed input of ``chunk_frames`` frames); a longer chunk gives the
    recurrent layers more context but delays a streaming output by as much.

    Parameters
    ----------
    path : str or Path
        The ``.tflite`` (float16 or int8) with its manifest beside it.
    frontend : mapping, optional
        The profile's ``[frontend.separation]``; the manifest must match it.
    num_threads : int
        Interpreter threads (1 on the device: the other cores serve capture and the other
        models).
    allow_tensorflow : bool
        Let the host fall back to ``tensorflow.lite`` (never on the device).
    """

    def __init__(self, path: str | Path, frontend=None, num_threads: int = 1,
                 allow_tensorflow: bool = False):
        from .interpreter import TFLiteModel  # the one runner of exported models

        self.model = TFLiteModel(path, frontend=frontend, num_threads=num_threads,
                                 allow_tensorflow=allow_tensorflow)
        manifest = self.model.manifest
        self.stft_cfg = STFTConfig.from_mapping(manifest["frontend"])
        out = manifest["outputs"][0]
        self.output_name = out["name"]
        self.labels = list(out["labels"])
        self.chunk_frames = int(self.model.input_shape[1])
        if self.model.input_shape[2] != self.stft_cfg.n_bins:
            raise ValueError(f"separation model {path} reads {self.model.input_shape[2]} bins, "
                             f"its frontend has {self.stft_cfg.n_bins}; re-run `make "
                             f"separation-export`")

    @classmethod
    def from_config(cls, cfg, model: str | Path | None = None, **kwargs) -> "Separator":
        """The profile's separator (``model.separation.model`` under the build folder, or
        ``model``), checked against ``[frontend.separation]``."""
        from .paths import BuildPaths

        path = BuildPaths(cfg).resolve(model or cfg["model.separation.model"])
        if not Path(path).exists():
            raise FileNotFoundError(f"no separation model at {path}: run `make separation` "
                                    f"(train + export), or pass --model")
        return cls(path, frontend=cfg.section("frontend.separation"), **kwargs)

    def chunk_masks(self, logmag_chunk: np.ndarray) -> np.ndarray:
        """One chunk ``(chunk_frames, n_bins)`` of log magnitude -> masks ``(chunk_frames,
        n_bins, n_sources)``."""
        return self.model.run(logmag_chunk)[self.output_name]

    def masks(self, spectrum: np.ndarray) -> np.ndarray:
        """Masks ``(n_frames, n_bins, n_sources)`` of a complex STFT, chunk by chunk."""
        chunks = chunk_log_magnitude(spectrum, self.chunk_frames, self.stft_cfg)
        out = np.concatenate([self.chunk_masks(c) for c in chunks])
        return out[: len(spectrum)]

    def separate(self, audio: np.ndarray) -> np.ndarray:
        """Mono audio at ``stft_cfg.sample_rate`` -> ``(n_sources, n_samples)`` estimates."""
        spectrum = stft(audio, self.stft_cfg)
        masks = self.masks(spectrum)
        return np.stack([istft(spectrum * masks[..., c], self.stft_cfg, length=len(audio))
                         for c in range(masks.shape[-1])]).astype(np.float32)


class StreamingISTFT:
    """Weighted overlap-add one frame at a time: the same samples as `device.frontend.istft`.

    ``push(frames)`` takes complex frames ``(k, n_bins)`` and returns the samples they completed
    (``hop`` per frame, after the first ``window - hop`` of edge padding, which `stft` added and
    is dropped here as `istft` drops it).
    """

    def __init__(self, cfg: STFTConfig = STFTConfig()):
        self.cfg = cfg
        self.window = _stft_window(cfg)[: cfg.window_length]
        self.w2 = self.window ** 2
        self._acc = np.zeros(cfg.window_length, np.float32)
        self._norm = np.zeros(cfg.window_length, np.float32)
        self._drop = _edge_pad(cfg)

    def push(self, frames: np.ndarray) -> np.ndarray:
        hop, win = self.cfg.hop_length, self.cfg.window_length
        if len(frames) == 0:
            return np.zeros(0, np.float32)
        time = np.fft.irfft(frames, n=self.cfg.n_fft, axis=-1).astype(np.float32)[:, :win]
        out = np.empty(len(frames) * hop, np.float32)
        for i, frame in enumerate(time):
            self._acc += frame * self.window
            self._norm += self.w2
            # the first hop samples are complete: no later frame reaches them
            out[i * hop:(i + 1) * hop] = self._acc[:hop] / np.maximum(self._norm[:hop], 1e-8)
            self._acc = np.concatenate([self._acc[hop:], np.zeros(hop, np.float32)])
            self._norm = np.concatenate([self._norm[hop:], np.zeros(hop, np.float32)])
        if self._drop:
            cut = min(self._drop, len(out))
            out, self._drop = out[cut:], self._drop - cut
        return out


class SeparatorStream:
    """Streaming separation: push 8 kHz audio, get one source back at a fixed delay.

    Frames from `device.frontend.STFTStream` are collected into chunks of the model's
    ``chunk_frames``; each full chunk is masked and overlap-added (`StreamingISTFT`). What
    comes out is exactly what `Separator.separate` gives for the same audio, delayed: ``push``
    returns as many samples as went in, the first ``delay_samples`` of them zeros (the output
    before the first chunk is complete), so a consumer downstream sees a steady stream.

    Parameters
    ----------
    separator : Separator
        The loaded model.
    keep : str or int
        The source to pass on (a label of the model's sources, e.g. ``"speech"``, or an index).
    background : bool
        Run each chunk's model call on a worker thread (the interpreter releases the GIL), so
        the hop that completes a chunk does not pay for it; the output comes one chunk later.
        Same samples either way. Call `close` when done.
    """

    def __init__(self, separator: Separator, keep: str | int = 0, background: bool = False):
        self.separator = separator
        self.cfg = separator.stft_cfg
        self.keep = source_index(separator.labels, keep)
        self.chunk_frames = separator.chunk_frames
        self.background = bool(background)
        # The longest wait of a sample for its output: a whole chunk of frames, plus the window
        # its last frame needs (the stream's leading edge padding is inside that window); in
        # the background, one chunk more, the time the worker has for a chunk's masks.
        chunk_samples = self.chunk_frames * self.cfg.hop_length
        self.delay_samples = chunk_samples * (2 if self.background else 1) + self.cfg.window_length
        self._executor = None
        if self.background:
            from concurrent.futures import ThreadPoolExecutor
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="hopwise-separator")
        self._future = None
        self.reset()

    def reset(self) -> None:
        """Start over (after a gap in the audio)."""
        if self._future is not None:
            self._future[1].result()   # let the worker finish; its chunk is dropped
            self._future = None
        self._stft = STFTStream(self.cfg)
        self._istft = StreamingISTFT(self.cfg)
        self._frames = np.zeros((0, self.cfg.n_bins), np.complex64)
        self._ready = np.zeros(0, np.float32)      # separated, not yet handed out
        self._owed = self.delay_samples            # zeros still to hand out first
        self.chunks_run = 0

    def close(self) -> None:
        """Stop the background worker (if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _masks(self, chunk: np.ndarray) -> np.ndarray:
        return self.separator.chunk_masks(
            chunk_log_magnitude(chunk, self.chunk_frames, self.cfg)[0])

    def _collect(self) -> np.ndarray:
        """The background chunk's separated samples (waits for the worker if it is not done)."""
        chunk, future = self._future
        self._future = None
        return self._istft.push(chunk * future.result()[..., self.keep])

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono audio at 8 kHz in; as many samples of the kept source out."""
        n_in = len(samples)
        frames = self._stft.push(samples)
        if len(frames):
            self._frames = np.concatenate([self._frames, frames])
        parts = [self._ready]
        while len(self._frames) >= self.chunk_frames:
            chunk, self._frames = (self._frames[: self.chunk_frames],
                                   self._frames[self.chunk_frames:])
            if self._executor is not None:
                if self._future is not None:
                    parts.append(self._collect())
                self._future = (chunk, self._executor.submit(self._masks, chunk))
            else:
                parts.append(self._istft.push(chunk * self._masks(chunk)[..., self.keep]))
            self.chunks_run += 1
        ready = np.concatenate(parts) if len(parts) > 1 else self._ready
        lead = min(self._owed, n_in)
        if len(ready) < n_in - lead and self._future is not None:
            # Not reached at a steady rate (the delay leaves the worker a whole chunk's time);
            # a caller pushing far more than a chunk at once waits here instead.
            ready = np.concatenate([ready, self._collect()])
        out = np.zeros(n_in, np.float32)
        self._owed -= lead
        take = min(n_in - lead, len(ready))
        out[lead: lead + take] = ready[:take]
        self._ready = ready[take:]
        # take == n_in - lead always: the delay covers the longest wait (see __init__)
        return out
