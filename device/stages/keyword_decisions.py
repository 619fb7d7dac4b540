"""``keyword_decisions``: wake word, then a command (micro_speech's "recognize commands")."""
from __future__ import annotations

from ..decisions import KeywordDecisions
from .base import HopContext, Param, Stage, register_stage

__all__ = ["KeywordDecisionStage"]


@register_stage("keyword_decisions")
class KeywordDecisionStage(Stage):
    """Wake word, then a command, over ``posteriors.keyword`` (micro_speech's "recognize
    commands"): `device.decisions.KeywordDecisions` with the profile's ``[decisions]``.

    Runs on every hop but acts only when new posteriors arrived (``ctx.fresh``), so it follows
    its producer's stride, whatever it is; the smoothing and windows are in milliseconds of audio
    (the posteriors carry their time), so a model at another stride, or one shed for a while,
    gets the same decisions over the same stretch of audio. Raises ``wake`` and ``command``
    events. Mark it ``essential`` in the profile: a device that drops wake words when busy is
    broken, one that reports scenes late is not.

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    input : str
        The posteriors stream read: ``(t_audio_s, probabilities)`` over the profile's keyword
        labels (default ``posteriors.keyword``).
    """

    follows_input = True

    PARAMS = {**Stage.PARAMS, "input": Param("the posteriors stream", "posteriors.keyword")}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params["input"]
        self.decider = KeywordDecisions.from_config(cfg)
        self.consumes = (self.input_key,)
        self.emits = ("event.wake", "event.command")

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.decider.update(t, probs))
