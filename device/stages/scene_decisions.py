"""``scene_decisions``: the acoustic scene, smoothed, with hysteresis."""
from __future__ import annotations

from ..decisions import SceneTracker
from .base import HopContext, Param, Stage, register_stage

__all__ = ["SceneDecisionStage"]


@register_stage("scene_decisions")
class SceneDecisionStage(Stage):
    """The acoustic scene over ``posteriors.scene``: `device.decisions.SceneTracker` (a time
    window of ``decisions.scene_smoothing_ms``, hysteresis between ``scene_threshold_on`` and
    ``scene_threshold_off``). Raises a ``scene`` event when the scene changes (``none`` when no
    scene is confident any more). Like `KeywordDecisionStage` it acts only on fresh posteriors.

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    input : str
        The posteriors stream read (default ``posteriors.scene``).
    """

    follows_input = True

    PARAMS = {**Stage.PARAMS, "input": Param("the posteriors stream", "posteriors.scene")}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params["input"]
        self.tracker = SceneTracker.from_config(cfg)
        self.consumes = (self.input_key,)
        self.emits = ("event.scene",)

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.tracker.update(t, probs))
