"""Timing statistics and the status/heartbeat report.

`LatencyStats` keeps the last N durations of one stage (or of whole hops) and answers p50/p99,
the count and deadline misses; `status_report` assembles the heartbeat the pipeline sends every
``runtime.status_interval_s`` from a `PipelineSnapshot` (`Pipeline.snapshot`): uptime, budget
use, p50/p99 per stage, misses, shed stages, overruns and each sink's health.
"""
from __future__ import annotations

import dataclasses

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyStats", "PipelineSnapshot", "status_report"]


class LatencyStats:
    """Durations in seconds over a sliding window of ``window`` samples.

    Parameters
    ----------
    window : int
        Samples kept for the percentiles. 6000 hops = 1 minute: p99 then rests on 60 samples.
    deadline_s : float or None
        A sample above it counts as a miss (kept as a running total, not windowed).
    """

    def __init__(self, window: int = 6000, deadline_s: float | None = None):
        self._d: deque[float] = deque(maxlen=window)
        self.deadline_s = deadline_s
        self.count = 0
        self.misses = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self._d.append(seconds)
        self.count += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds
        if self.deadline_s is not None and seconds > self.deadline_s:
            self.misses += 1

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self._d, float), q)) if self._d else 0.0

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0

    def summary(self) -> dict:
        """Milliseconds, rounded for a log line."""
        return {"n": self.count, "p50_ms": round(self.percentile(50) * 1e3, 3),
                "p99_ms": round(self.percentile(99) * 1e3, 3),
                "max_ms": round(self.max_s * 1e3, 3), "mean_ms": round(self.mean_s * 1e3, 4),
                **({"misses": self.misses} if self.deadline_s is not None else {})}


@dataclass(frozen=True)
class PipelineSnapshot:
    """What the pipeline reports about itself at one moment (`Pipeline.snapshot`): the input of
    `status_report`, so the report reads no pipeline internals.

    Attributes
    ----------
    uptime_s : float
        Wall time since ``run`` started (or since construction).
    hops : int
        Hops processed; ``audio_s`` = hops * hop_s.
    hop_s : float
        Audio per hop, seconds.
    t_audio_s : float
        Stream time, counting audio lost to overruns.
    busy_s : float
        Time spent in stages so far.
    load : float
        Recent processing time over audio time (`device.budget.HopBudget.load`).
    hop, stages : dict
        `LatencyStats.summary` of whole hops and of each stage.
    deadline_misses : int
        Hops over the hop budget.
    shed : list of str
        Stages shed now; ``shed_events``: sheds so far.
    events : dict of str -> int
        Events emitted so far by type (``status.<label>`` for status events).
    faults : dict
        `device.faults.StageFaults.summary`: failures per stage, stages switched off.
    """

    uptime_s: float
    hops: int
    hop_s: float
    t_audio_s: float
    busy_s: float
    load: float
    hop: dict
    stages: dict
    deadline_misses: int
    shed: list
    shed_events: int
    events: dict
    faults: dict = dataclasses.field(default_factory=dict)

    @property
    def audio_s(self) -> float:
        return self.hops * self.hop_s


def status_report(snapshot: PipelineSnapshot, source=None, sinks=None) -> dict:
    """The heartbeat payload (the pipeline wraps it into a ``status`` event): the snapshot, the
    audio source's health and overruns, and each sink's health."""
    audio_s = snapshot.audio_s
    report = {
        "uptime_s": round(snapshot.uptime_s, 1),
        "audio_s": round(audio_s, 2),                # audio processed
        "stream_s": round(snapshot.t_audio_s, 2),    # stream time, counting audio lost to overruns
        "hops": snapshot.hops,
        "budget_ms": round(snapshot.hop_s * 1e3, 3),
        "budget_use": round(snapshot.busy_s / audio_s, 4) if audio_s else 0.0,
        "load_recent": round(snapshot.load, 4),
        "hop": snapshot.hop,
        "deadline_misses": snapshot.deadline_misses,
        "stages": snapshot.stages,
        "shed": sorted(snapshot.shed),
        "shed_events": snapshot.shed_events,
        "events": dict(snapshot.events),
        "faults": dict(snapshot.faults),
    }
    if source is not None:
        report["audio"] = source.health()
        report["overruns"] = source.overruns
    if sinks is not None:
        report["sinks"] = sinks.health()
    return report
