"""``keyword_decisions``: wake word, then a command (micro_speech's "recognize commands")."""
from __future__ import annotations

from ..decisions import KeywordDecisions, windows_from_config
from .base import HopContext, Param, Stage, register_stage

__all__ = ["KeywordDecisionStage"]


@register_stage("keyword_decisions")
class KeywordDecisionStage(Stage):
    """Wake word and commands (micro_speech's "recognize commands") over
    ``posteriors.keyword``, with the profile's ``[decisions]`` (see `device.decisions`). Runs
    whenever new posteriors arrived; raises ``wake`` and ``command`` events.

    Parameters: ``input`` (default ``posteriors.keyword``); ``model_stride_hops`` (the producer's
    stride, to turn the ``_ms`` settings into counts; default ``model.multitask.stride_hops``).
    """

    PARAMS = {**Stage.PARAMS, "input": Param("the posteriors stream", "posteriors.keyword"),
              "model_stride_hops": Param("the producer's stride", None)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params["input"]
        stride = int(self.params["model_stride_hops"] or cfg["model.multitask.stride_hops"])
        w = windows_from_config(cfg, stride * hop_s)["keyword"]
        self.decider = KeywordDecisions(cfg.keyword_labels, cfg["labels.wake_word"],
                                        cfg["labels.commands"], **w)
        self.consumes = (self.input_key,)
        self.emits = ("event.wake", "event.command")

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.decider.update(t, probs))
