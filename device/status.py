"""Timing statistics and the status/heartbeat report.

`LatencyStats` keeps the last N durations of one stage (or of whole hops) and answers p50/p99,
the count and deadline misses; `status_report` assembles the heartbeat the pipeline sends every
``runtime.status_interval_s``: uptime, budget use, p50/p99 per stage, misses, shed stages,
overruns and each sink's health.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

__all__ = ["LatencyStats", "status_report"]


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


def status_report(pipeline, source=None, sinks=None) -> dict:
    """The heartbeat payload (the pipeline wraps it into a ``status`` event)."""
    hop_s = pipeline.hop_s
    audio_s = pipeline.hops * hop_s
    busy = sum(st.total_s for st in pipeline.stage_stats.values())
    report = {
        "uptime_s": round(time.monotonic() - pipeline.started_monotonic, 1),
        "audio_s": round(audio_s, 2),            # audio processed
        "stream_s": round(pipeline.t_audio_s, 2),  # stream time, counting audio lost to overruns
        "hops": pipeline.hops,
        "budget_ms": round(hop_s * 1e3, 3),
        "budget_use": round(busy / audio_s, 4) if audio_s else 0.0,
        "load_recent": round(pipeline.load, 4),
        "hop": pipeline.hop_stats.summary(),
        "deadline_misses": pipeline.hop_stats.misses,
        "stages": {name: st.summary() for name, st in pipeline.stage_stats.items()},
        "shed": sorted(pipeline.shed),
        "shed_events": pipeline.shed_count,
        "events": pipeline.event_counts,
    }
    if source is not None:
        report["audio"] = source.health()
        report["overruns"] = source.overruns
    if sinks is not None:
        report["sinks"] = sinks.health()
    return report
