"""What every stage shares: the per-hop `HopContext`, the `Stage` base class and the registry.

A stage type is a `Stage` subclass decorated with ``@register_stage("<type>")``; the profile
builds one with ``[stages.<name>] type = "<type>"``. The package's ``__init__`` imports every
module of `device.stages`, so the decorator is all it takes to make a new type buildable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["HopContext", "Stage", "STAGE_TYPES", "register_stage"]


@dataclass
class HopContext:
    """What one hop carries between stages.

    Attributes
    ----------
    hop_index : int
        Hops processed before this one (0 for the first).
    t_audio_s : float
        Stream time at the *end* of this hop, counting audio lost to overruns: the time every
        event raised on this hop is stamped with.
    audio : np.ndarray
        This hop's samples, float32 mono at the pipeline rate (the ``audio`` stream).
    data : dict
        Named streams (``features.keyword``, ``posteriors.scene`` ...). The dict is the
        pipeline's own and persists across hops: a strided consumer finds the last value.
    fresh : set
        Names written on *this* hop: a consumer of a strided or shed producer checks it, so it
        does nothing when there is nothing new.
    events : list
        Events raised on this hop; the pipeline stamps and sends them after the last stage.
    """

    hop_index: int
    t_audio_s: float
    audio: np.ndarray
    data: dict = field(default_factory=dict)
    fresh: set = field(default_factory=set)
    events: list = field(default_factory=list)

    def put(self, name: str, value: Any) -> None:
        """Write stream ``name`` and mark it fresh for the rest of this hop."""
        self.data[name] = value
        self.fresh.add(name)


STAGE_TYPES: dict[str, type["Stage"]] = {}


def register_stage(type_name: str) -> Callable[[type], type]:
    """Class decorator: make a stage buildable from ``[stages.X] type = "<type_name>"``."""
    def deco(cls):
        cls.type_name = type_name
        STAGE_TYPES[type_name] = cls
        return cls
    return deco


class Stage:
    """Base class of every stage. Subclasses set ``consumes``/``emits`` and implement ``process``.

    The pipeline calls ``process(ctx)`` on the hops where the stage is due and not shed.

    Parameters (all from the stage's ``[stages.<name>]`` section)
    ----------
    name : str
        The section name; shown in status, timings and shed reports.
    stride_hops : int
        Run every n-th hop. Larger = cheaper, later decisions.
    phase : int
        Which hop of the stride it runs on: spread strided stages over different hops so their
        costs do not pile onto one hop.
    priority : int
        Shedding order: lowest first. Ties shed the later stage in the list first.
    essential : bool
        Never shed.
    """

    type_name = "base"
    consumes: tuple[str, ...] = ()
    emits: tuple[str, ...] = ()

    def __init__(self, name: str, params: Mapping, cfg, pipeline_rate: int, hop_s: float):
        self.name = name
        self.params = dict(params)
        self.cfg = cfg
        self.pipeline_rate = pipeline_rate
        self.rate = pipeline_rate
        self.hop_s = hop_s
        self.stride_hops = max(1, int(self.params.get("stride_hops", 1)))
        self.phase = int(self.params.get("phase", 0)) % self.stride_hops
        self.priority = int(self.params.get("priority", 0))
        self.essential = bool(self.params.get("essential", False))

    def due(self, hop_index: int) -> bool:
        return hop_index % self.stride_hops == self.phase

    def process(self, ctx: HopContext) -> None:
        raise NotImplementedError

    def on_gap(self) -> None:
        """Audio was lost (overrun): forget state that assumed continuous samples."""

    def close(self) -> None:
        """Release resources (interpreters, files)."""

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type_name, "rate": self.rate,
                "stride_hops": self.stride_hops, "priority": self.priority,
                "essential": self.essential, "consumes": list(self.consumes),
                "emits": list(self.emits)}
