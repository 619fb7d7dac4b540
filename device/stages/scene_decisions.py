"""``scene_decisions``: the acoustic scene, smoothed, with hysteresis."""
from __future__ import annotations

from ..decisions import SceneTracker, windows_from_config
from .base import HopContext, Param, Stage, register_stage

__all__ = ["SceneDecisionStage"]


@register_stage("scene_decisions")
class SceneDecisionStage(Stage):
    """Acoustic scene with smoothing and hysteresis over ``posteriors.scene``; raises a ``scene``
    event when the scene changes (see `device.decisions.SceneTracker`)."""

    PARAMS = {**Stage.PARAMS, "input": Param("the posteriors stream", "posteriors.scene"),
              "model_stride_hops": Param("the producer's stride", None)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params["input"]
        stride = int(self.params["model_stride_hops"] or cfg["model.multitask.stride_hops"])
        w = windows_from_config(cfg, stride * hop_s)["scene"]
        self.tracker = SceneTracker(cfg["labels.scenes"], **w)
        self.consumes = (self.input_key,)
        self.emits = ("event.scene",)

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.tracker.update(t, probs))
