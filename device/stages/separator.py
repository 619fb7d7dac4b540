"""``separator``: the deep attractor network in front of the keyword frontend (off by default)."""
from __future__ import annotations

import numpy as np

from ..paths import BuildPaths
from ..separation import Separator, SeparatorStream
from .base import HopContext, Param, Stage, register_stage

__all__ = ["SeparatorStage"]


@register_stage("separator")
class SeparatorStage(Stage):
    """Streaming source separation: the pipeline's audio in, one separated source out.

    Every hop: the hop's audio is resampled to the separator's rate (8 kHz, ``[frontend.
    separation]``, with ``resample.stage_quality``), pushed into `device.separation.
    SeparatorStream`, and the same number of samples of the kept source is written to
    ``output`` (default ``audio.separated``), a fixed ``chunk_frames * hop + window`` (0.83 s
    at the defaults) behind the input; zeros until the first chunk is separated. A ``logmel``
    stage with ``input = "audio.separated"`` and ``input_rate = 8000`` reads it (the
    ``separated`` profile wires that up). The model runs once per chunk (every 0.8 s), so its
    whole cost lands on one hop in 80: the pipeline's hop budget sees that hop's spike.

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
        Run the model on a worker thread: the hop that completes a chunk no longer pays for the
        model call (the interpreter releases the GIL), the output comes one chunk (0.8 s) later.
    """

    PARAMS = {**Stage.PARAMS,
              "model": Param("the exported separator, relative to project.build_dir "
                             "(default: model.separation.model)", None),
              "keep": Param("the source passed on (one of model.separation.sources)", "speech"),
              "output": Param("the audio stream written", "audio.separated"),
              "background": Param("run the model on a worker thread (one chunk more delay, no "
                                  "per-chunk spike in the hop)", False)}
    consumes = ("audio",)

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.separator = Separator.from_config(cfg, self.params["model"],
                                               num_threads=int(cfg["runtime.num_threads"]))
        self.stream = SeparatorStream(self.separator, keep=self.params["keep"],
                                      background=bool(self.params["background"]))
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

    def close(self) -> None:
        self.stream.close()

    def on_gap(self) -> None:
        self.stream.reset()
        if self._resampler is not None:
            self._resampler.reset()
