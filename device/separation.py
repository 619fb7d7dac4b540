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

import logging
import os
import threading
from pathlib import Path

import numpy as np

from .frontend import STFTConfig, STFTStream, _edge_pad, _stft_window, istft, log_magnitude, stft

__all__ = ["chunk_log_magnitude", "softmax_masks", "Separator", "StreamingISTFT",
           "SeparatorStream", "source_index"]

log = logging.getLogger("hopwise.separator")


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
    ``chunk_frames``; each full chunk is masked and overlap-added (`StreamingISTFT`), a frame at
    a time as the output needs it. What comes out is exactly what `Separator.separate` gives
    for the same audio, delayed: ``push`` returns as many samples as went in, the first
    ``delay_samples`` of them zeros (the output before the first chunk is complete), so a
    consumer downstream sees a steady stream.

    In the foreground (``background=False``) the push that completes a chunk runs the model:
    that call's whole cost (a few ms to tens of ms) lands on one hop in ``chunk_frames *
    hop / pipeline hop`` (80 at the defaults). In the background the chunk goes to a worker
    thread (LiteRT's ``invoke`` releases the GIL: benchmarks/separator_worker.py measures it)
    and its separated frames are due ``worker_ms`` later, which the delay adds: the hop path
    only queues a chunk and takes its result. A worker that has not finished by then is
    *behind*: with ``when_behind="pass"`` that chunk's mixture passes through unseparated (the
    mask 1, so the overlap-add stays seamless), counted in ``chunks_passed`` and logged; with
    ``"wait"`` the push waits for the worker (identical output, the spike back on that hop:
    for offline use and tests that push faster than real time).

    Parameters
    ----------
    separator : Separator
        The loaded model.
    keep : str or int
        The source to pass on (a label of the model's sources, e.g. ``"speech"``, or an index).
    background : bool
        Run each chunk's model call on a worker thread. Call `close` when done.
    worker_ms : float
        Background only: how long after a chunk is complete its output is due, the time the
        worker has for it (0 < worker_ms <= the chunk's duration, so at most one chunk is out
        at a time). More is safer against a busy core, and is as much more delay.
    when_behind : {"pass", "wait"}
        Background only: a chunk the worker has not finished when due passes through
        unseparated ("pass": the stream keeps real time) or is waited for ("wait").
    worker_nice : int
        Background only: the worker thread's nice value increment (Linux; 0: the hop thread's
        priority). A positive value lets a hop thread that shares the worker's core preempt it.
    """

    WHEN_BEHIND = ("pass", "wait")

    def __init__(self, separator: Separator, keep: str | int = 0, background: bool = False,
                 worker_ms: float = 200.0, when_behind: str = "pass", worker_nice: int = 0):
        self.separator = separator
        self.cfg = separator.stft_cfg
        self.keep = source_index(separator.labels, keep)
        self.chunk_frames = separator.chunk_frames
        self.background = bool(background)
        if when_behind not in self.WHEN_BEHIND:
            raise ValueError(f"when_behind={when_behind!r}: use one of {self.WHEN_BEHIND} "
                             f"(stages.<name>.when_behind)")
        self.when_behind = when_behind
        chunk_samples = self.chunk_frames * self.cfg.hop_length
        chunk_ms = chunk_samples * 1000.0 / self.cfg.sample_rate
        self.worker_samples = 0
        if self.background:
            self.worker_samples = int(round(float(worker_ms) * self.cfg.sample_rate / 1000.0))
            if not 0 < self.worker_samples <= chunk_samples:
                raise ValueError(f"worker_ms={worker_ms} must be above 0 and at most a chunk "
                                 f"({chunk_ms:g} ms), so one chunk at most is with the worker "
                                 f"(stages.<name>.worker_ms)")
        # The longest wait of a sample for its output: a whole chunk of frames, plus the window
        # its last frame needs (the stream's leading edge padding is inside that window), plus
        # in the background the worker's time for the chunk.
        self.delay_samples = chunk_samples + self.cfg.window_length + self.worker_samples
        self.worker_nice = int(worker_nice)
        self._executor = None
        if self.background:
            from concurrent.futures import ThreadPoolExecutor
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="hopwise-separator",
                                                initializer=self._lower_priority)
        self._future = None
        self.chunks_passed = 0
        self.reset()

    def _lower_priority(self) -> None:
        """The worker thread's nice increment (Linux threads each have their own)."""
        if self.worker_nice and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                               os.getpriority(os.PRIO_PROCESS, 0) + self.worker_nice)
            except OSError as exc:   # e.g. a container that forbids it: the worker still runs
                log.warning("separator worker: nice +%d not applied (%s)", self.worker_nice, exc)

    def reset(self) -> None:
        """Start over (after a gap in the audio). A chunk with the worker is abandoned (its
        result is dropped; nothing waits for it)."""
        if self._future is not None:
            self._future[2].cancel()
            self._future = None
        self._stft = STFTStream(self.cfg)
        self._istft = StreamingISTFT(self.cfg)
        self._frames = np.zeros((0, self.cfg.n_bins), np.complex64)   # not yet a whole chunk
        self._masked = np.zeros((0, self.cfg.n_bins), np.complex64)   # separated, not yet audio
        self._ready = np.zeros(0, np.float32)      # audio, not yet handed out
        self._owed = self.delay_samples            # zeros still to hand out first
        self.chunks_run = 0

    def close(self) -> None:
        """Stop the background worker (if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _separate(self, chunk: np.ndarray) -> np.ndarray:
        """A chunk's complex frames -> the kept source's masked frames (the worker's job)."""
        masks = self.separator.chunk_masks(
            chunk_log_magnitude(chunk, self.chunk_frames, self.cfg)[0])
        return (chunk * masks[..., self.keep]).astype(np.complex64)

    def _settle(self) -> None:
        """The chunk with the worker is due: take its frames, wait for them ("wait"), or pass
        its mixture through ("pass") when the worker is behind."""
        index, chunk, future = self._future
        self._future = None
        if future.done() or self.when_behind == "wait":
            masked = future.result()   # a worker's exception is raised here, in the stage
        else:
            future.cancel()            # if it has not started: the worker catches up sooner
            masked = chunk
            self.chunks_passed += 1
            if self.chunks_passed == 1 or self.chunks_passed % 100 == 0:
                log.warning("separator worker behind: chunk %d passed through unseparated "
                            "(%d so far); raise worker_ms or use a smaller variant",
                            index, self.chunks_passed)
        self._masked = np.concatenate([self._masked, masked])

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Mono audio at 8 kHz in; as many samples of the kept source out."""
        n_in = len(samples)
        frames = self._stft.push(samples)
        if len(frames):
            self._frames = np.concatenate([self._frames, frames])
        while len(self._frames) >= self.chunk_frames:
            chunk, self._frames = (self._frames[: self.chunk_frames],
                                   self._frames[self.chunk_frames:])
            if self._future is not None:
                self._settle()   # a push of more than worker_ms of audio: its deadline is past
            if self._executor is not None:
                self._future = (self.chunks_run, chunk,
                                self._executor.submit(self._separate, chunk))
            else:
                self._masked = np.concatenate([self._masked, self._separate(chunk)])
            self.chunks_run += 1
        lead = min(self._owed, n_in)
        self._owed -= lead
        need = n_in - lead
        hop = self.cfg.hop_length
        parts, have = [self._ready], len(self._ready)
        while have < need:
            if len(self._masked):
                # just the frames this push hands out: the overlap-add spread over the hops
                k = max(1, -(-(need - have) // hop))
                done = self._istft.push(self._masked[:k])
                self._masked = self._masked[k:]
                parts.append(done)
                have += len(done)
            elif self._future is not None:
                self._settle()   # the worker's chunk is due now
            else:
                break   # not reached: the delay covers the longest wait (see __init__)
        ready = np.concatenate(parts) if len(parts) > 1 else self._ready
        out = np.zeros(n_in, np.float32)
        take = min(need, len(ready))
        out[lead: lead + take] = ready[:take]
        self._ready = ready[take:]
        return out
