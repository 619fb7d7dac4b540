"""What every stage shares: the per-hop `HopContext`, the `Stage` base class and the registry.

A stage type is a `Stage` subclass decorated with ``@register_stage("<type>")``; the profile
builds one with ``[stages.<name>] type = "<type>"``. The package's ``__init__`` imports every
module of `device.stages`, so the decorator is all it takes to make a new type buildable.

Each stage type declares the keys its section takes (``PARAMS``, a dict of `Param`): a key it
does not declare is a start-up error that names the nearest declared one (``strides_hops`` ->
"did you mean 'stride_hops'?"), and a required key that is missing names itself and the fix.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..config import ConfigError

__all__ = ["HopContext", "Stage", "Param", "REQUIRED", "STAGE_TYPES", "register_stage"]

REQUIRED = object()
"""`Param` default of a key the section must set (there is no sensible value to assume)."""


@dataclass(frozen=True)
class Param:
    """One key a stage type accepts in its ``[stages.<name>]`` section.

    ``doc`` says what it does (shown when it is missing); ``default`` is used when the section
    does not set it (`REQUIRED`: it must). A default of None means "derived at start-up", e.g.
    a model stage's stride from its manifest; the stage's docstring says from what.
    """

    doc: str
    default: Any = REQUIRED


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
        old = STAGE_TYPES.get(type_name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"stage type {type_name!r} is registered twice: by "
                             f"{old.__module__}.{old.__qualname__} and {cls.__module__}.{cls.__qualname__}")
        cls.type_name = type_name
        STAGE_TYPES[type_name] = cls
        return cls
    return deco


class Stage:
    """Base class of every stage. Subclasses set ``consumes``/``emits`` and implement ``process``.

    The pipeline builds a stage as ``cls(name, params, cfg, pipeline_rate, hop_s)`` (see
    `device.stages.build_stage`), checks its streams (`device.stages.check_wiring`, then
    `connect`), and calls `process` on the hops where it is due and not shed; `on_gap` after an
    overrun, `close` at the end. A subclass extends ``PARAMS`` with its own keys and reads them
    from ``self.params``, which holds every declared key (defaults filled in). A whole stage
    type, in a new module of `device.stages`::

        @register_stage("rms")
        class RmsStage(Stage):
            # Loudness of each hop in dB, for a consumer that gates on level.
            PARAMS = {**Stage.PARAMS, "floor_db": Param("level reported for silence", -100.0)}
            consumes, emits = ("audio",), ("level.rms_db",)

            def process(self, ctx):
                db = 10 * np.log10(np.mean(ctx.audio ** 2) + 1e-12)
                ctx.put("level.rms_db", max(db, self.params["floor_db"]))

    Parameters (all from the stage's ``[stages.<name>]`` section)
    ----------
    name : str
        The section name; shown in status, timings and shed reports.
    stride_hops : int
        Run every n-th hop. Larger = cheaper, later decisions.
    phase : int
        Which hop of the stride it runs on; default ``stride_hops - 1``, so the stage first runs
        once a whole stride of audio has arrived. Spread strided stages over different phases so
        their costs do not pile onto one hop.
    priority : int
        Shedding order: lowest first. Ties shed the later stage in the list first.
    essential : bool
        Never shed.
    """

    type_name = "base"
    block_cost_s = 0.0   # this hop's share of a block's `prepare_block` (timings only)
    # Set by the pipeline for a block stage that raises no events: per hop of the schedule's
    # period, whether a stage reading its streams runs then (None: assume every hop).
    readers_due: tuple[bool, ...] | None = None
    consumes: tuple[str, ...] = ()
    emits: tuple[str, ...] = ()
    # False for a stage that only computes streams for others (features, posteriors) and raises
    # no events: the pipeline leaves it out of the hop loop when no running stage reads them.
    raises_events = True
    # True for a stage that does work only on hops where its one input stream is fresh (the
    # decisions): the pipeline runs it on its producer's hops instead of every hop.
    follows_input = False
    # The streams an idle stage (see `idle`) would read once loaded, when it then declares no
    # `consumes` (so the wiring check does not ask for them): their producers go out with it.
    reads_when_loaded: tuple[str, ...] = ()
    PARAMS: dict[str, Param] = {
        "type": Param("the stage type, a name in device.stages.STAGE_TYPES (default: the "
                      "section's name)", None),
        "stride_hops": Param("run on every n-th hop", 1),
        "phase": Param("the hop of the stride it runs on (default stride_hops - 1)", None),
        "priority": Param("shedding order when behind the hop budget: lowest first", 0),
        "essential": Param("never shed", False),
    }

    def __init__(self, name: str, params: Mapping, cfg, pipeline_rate: int, hop_s: float):
        self.name = name
        self.given = frozenset(params)   # what the section set, as opposed to defaults
        self.params = self.check_params(name, params)
        self.cfg = cfg
        self.pipeline_rate = pipeline_rate
        self.rate = pipeline_rate
        self.hop_s = hop_s
        self.priority = int(self.params["priority"])
        self.essential = bool(self.params["essential"])
        self.stride_hops, self.phase = 1, 0
        if self.params["stride_hops"] is not None:  # None: the subclass schedules itself
            self.set_schedule(self.params["stride_hops"], self.params["phase"])

    @classmethod
    def check_params(cls, name: str, params: Mapping) -> dict:
        """``params`` with every declared key (defaults filled in); `ConfigError` for a key the
        type does not declare (naming the nearest one) or a required key that is missing."""
        known = cls.PARAMS
        for key in params:
            if key not in known:
                near = difflib.get_close_matches(key, list(known), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise ConfigError(f"stages.{name}: a {cls.type_name!r} stage has no key {key!r}; "
                                  f"{hint}its keys are {', '.join(sorted(known))}")
        out = {}
        for key, param in known.items():
            if key in params:
                out[key] = params[key]
            elif param.default is REQUIRED:
                raise ConfigError(f"stages.{name}.{key} is missing ({param.doc}): add it to "
                                  f"[stages.{name}] or pass --set stages.{name}.{key}=VALUE")
            else:
                out[key] = param.default
        return out

    def set_schedule(self, stride_hops: int, phase: int | None = None) -> None:
        """Run on hops where ``hop_index % stride_hops == phase`` (phase default: stride - 1)."""
        if int(stride_hops) < 1:
            raise ConfigError(f"stages.{self.name}.stride_hops must be >= 1, got {stride_hops!r}")
        self.stride_hops = int(stride_hops)
        self.phase = (self.stride_hops - 1 if phase is None else int(phase)) % self.stride_hops

    def due(self, hop_index: int) -> bool:
        return hop_index % self.stride_hops == self.phase

    def connect(self, producers: Mapping[str, "Stage | None"]) -> None:
        """Called once at pipeline construction, after the wiring check, with the stage that
        emits each stream this one consumes (None for ``audio``, the source's). Override it to
        check what stream names cannot say (a model checks that the feature window is long
        enough) and raise `ConfigError` with the fix."""

    def process(self, ctx: HopContext) -> None:
        """Do this hop's work: read ``ctx.data``, write with ``ctx.put``, raise events into
        ``ctx.events``. Called only on hops where the stage is due and not shed."""
        raise NotImplementedError

    def block_capable(self) -> bool:
        """Whether a stage with a ``prepare_block(samples, n_hops, first_hop)`` method takes a
        block of hops at once (`device.pipeline.Pipeline.process_block`): it does the whole
        block's work there, then its `process` hands out each hop's share on that hop. Stages
        without the method run hop by hop inside a block, as always. ``prepare_block`` returns
        None (call `process` on every hop) or one bool per hop: False where `process` would do
        nothing but write empty streams, so the pipeline leaves it out on that hop."""
        return False

    def end_block(self) -> None:
        """The block `prepare_block` was given has been processed: drop what is left of it."""
        self.block_cost_s = 0.0

    def idle(self) -> bool:
        """True when the stage can do nothing for the rest of the run (its model is missing and
        its section says ``if_missing = "warn"``): the pipeline leaves it out of the hop loop,
        and with it the stages that only compute what it alone would read."""
        return False

    def on_gap(self) -> None:
        """Audio was lost (overrun): forget state that assumed continuous samples."""

    def close(self) -> None:
        """Release resources (interpreters, files)."""

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type_name, "rate": self.rate,
                "stride_hops": self.stride_hops, "priority": self.priority,
                "essential": self.essential, "consumes": list(self.consumes),
                "emits": list(self.emits)}
