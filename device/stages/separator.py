"""``separator``: the deep attractor network in front of the keyword frontend (off by default)."""
from __future__ import annotations

import numpy as np

from ..paths import BuildPaths
from ..separation import Separator, SeparatorStream
from .base import REQUIRED, HopContext, Param, Stage, register_stage

__all__ = ["SeparatorStage"]


@register_stage("separator")
class SeparatorStage(Stage):
    """Streaming source separation: the pipeline's audio in, one separated source out.

    Every hop: the hop's audio is resampled to the separator's rate (8 kHz, ``[frontend.
    separation]``, with ``resample.stage_quality``), pushed into `device.separation.
    SeparatorStream`, and the same number of samples of the kept source is written to
    ``output`` (default ``audio.separated``), a fixed delay behind the input (``chunk_frames *
    hop + window``, 0.83 s at the defaults, plus ``worker_ms`` in the background: 1.03 s);
    zeros until the first chunk is separated. A ``logmel`` stage with ``input =
    "audio.separated"`` and ``input_rate = 8000`` reads it (the ``separated`` profile wires
    that up).

    The model runs once per chunk (every 0.8 s). In the foreground that call lands on one hop
    in 80, over the 10 ms hop on a loaded core. With ``background = true`` (the default
    profile's setting) a worker thread runs it and the hop path only queues the chunk and
    overlap-adds the separated frames a hop's worth at a time; a chunk the worker has not
    finished ``worker_ms`` after it was complete passes through unseparated (``when_behind =
    "pass"``, counted in ``stream.chunks_passed`` and logged) or is waited for (``"wait"``).
    Same samples either way when the worker keeps up (tests/export/test_separation_export.py).

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    model : str
        The exported separator (``.tflite`` with its manifest), relative to
        ``project.build_dir`` (default: ``model.separation.model``).
    keep : str
        The source passed on: one of the model's sources (``model.separation.sources``).
    output : str
        The stream written.
    background : bool
        Run the model on a worker thread (see above).
    worker_ms : float
        How long after a chunk is complete its output is due: the worker's time for it, and
        as much more delay (0 < worker_ms <= the chunk's 800 ms).
    when_behind : str
        ``"pass"`` (the chunk's mixture goes on unseparated: the stream keeps real time) or
        ``"wait"`` (the hop waits for the worker: identical output, the spike comes back).
    worker_nice : int
        The worker thread's nice increment (Linux): positive lets the hop thread preempt it on
        a shared core.
    """

    PARAMS = {**Stage.PARAMS,
              "model": Param("the exported separator, relative to project.build_dir "
                             "(default: model.separation.model)", None),
              "keep": Param("the source passed on (one of model.separation.sources)", "speech"),
              "output": Param("the audio stream written", "audio.separated"),
              "background": Param("run the model on a worker thread (worker_ms more delay, no "
                                  "per-chunk spike in the hop)", REQUIRED),
              "worker_ms": Param("background: ms after a chunk is complete that its output is "
                                 "due (the worker's time; as much more delay)", REQUIRED),
              "when_behind": Param('background: "pass" (the chunk goes on unseparated) or '
                                   '"wait" (the hop waits) when the worker is late', REQUIRED),
              "worker_nice": Param("background: the worker thread's nice increment", REQUIRED)}
    consumes = ("audio",)

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.separator = Separator.from_config(cfg, self.params["model"],
                                               num_threads=int(cfg["runtime.num_threads"]))
        self.stream = SeparatorStream(self.separator, keep=self.params["keep"],
                                      background=bool(self.params["background"]),
                                      worker_ms=float(self.params["worker_ms"]),
                                      when_behind=str(self.params["when_behind"]),
                                      worker_nice=int(self.params["worker_nice"]))
        self.rate = self.separator.stft_cfg.sample_rate
        self.emits = (self.params["output"],)
        self._resampler = None
        if self.rate != pipeline_rate:
            from ..resample import Resampler
            self._resampler = Resampler(pipeline_rate, self.rate, cfg["resample.stage_quality"])
        self.model_path = BuildPaths(cfg).resolve(self.params["model"]
                                                  or cfg["model.separation.model"])

    def process(self, ctx: HopContext) -> None:
        audio = ctx.audio if self._resampler is None else self._resampler(ctx.audio)
        ctx.put(self.emits[0], self.stream.push(np.asarray(audio, np.float32)))

    def describe(self) -> dict:
        return {**super().describe(), "delay_ms": self.stream.delay_samples * 1e3 / self.rate,
                "chunks_run": self.stream.chunks_run,
                "chunks_passed": self.stream.chunks_passed}

    def close(self) -> None:
        self.stream.close()

    def on_gap(self) -> None:
        self.stream.reset()
        if self._resampler is not None:
            self._resampler.reset()
