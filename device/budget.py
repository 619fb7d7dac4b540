"""The hop budget: how long each stage takes, how loaded the pipeline is, what to shed.

Every hop (10 ms of audio by default) must be processed in about 10 ms, or capture falls behind
and audio is lost. `HopBudget` measures each stage's time (`LatencyStats`: p50/p99) and each
whole hop's (a hop over ``runtime.hop_budget_ms`` is a deadline miss), and keeps the *load*: the
processing time of the last ``runtime.load_window_hops`` hops over their audio duration, so a
model that runs every 10th hop is amortised over its stride.

When the load rises above ``runtime.shed_above`` — or, with a real-time source, the capture
backlog exceeds ``runtime.backlog_shed_hops`` hops — the lowest-priority non-essential stage is
shed (the pipeline skips it). When the load falls below ``runtime.restore_below`` with room for
the shed stage's last measured cost, or after ``runtime.probe_after_s`` (doubling after each
failed probe), it is restored. After each change the budget waits one load window before the
next, so a change is judged on hops measured after it.

Usage (what `device.pipeline.Pipeline` does each hop)::

    budget = HopBudget(stages, BudgetSettings.from_config(cfg), hop_samples=160, rate=16000)
    for stage in stages:
        if stage.due(hop) and budget.runs(stage):
            ...; budget.record(stage, seconds)
    budget.end_hop(total_seconds)
    for change in budget.balance(t_audio_s, backlog_samples, realtime=True):
        ...  # {"label": "shed" | "restored", "stage": ..., ...}: the pipeline reports it

Pure bookkeeping: no clocks of its own, no events, no I/O.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

from .status import LatencyStats

__all__ = ["BudgetSettings", "HopBudget"]


@dataclass(frozen=True)
class BudgetSettings:
    """The profile's ``[runtime]`` budget and shedding settings (see `HopBudget`).

    Attributes
    ----------
    hop_budget_ms : float
        Per-hop deadline (usually the hop length); a longer hop is a counted miss.
    shedding : bool
        Shed stages when behind. Off for as-fast-as-possible replay, which has no deadline.
    shed_above, restore_below : float
        Load thresholds (processing time / audio time). The gap between them avoids flapping.
    load_window_hops : int
        Hops the load is averaged over: at least the longest stride. Longer = steadier, slower
        to react.
    backlog_shed_hops : int
        Real-time sources: unprocessed captured audio (in hops) that also counts as behind.
    probe_after_s : float
        A shed stage is tried again after this long (audio time) even if its cost looks too
        high — the overload may have been something else; the wait doubles after each failure.
    """

    hop_budget_ms: float
    shedding: bool
    shed_above: float
    restore_below: float
    load_window_hops: int
    backlog_shed_hops: int
    probe_after_s: float

    @classmethod
    def from_config(cls, cfg) -> "BudgetSettings":
        """From ``[runtime]``; a missing key is a `ConfigError` naming it."""
        return cls(hop_budget_ms=float(cfg["runtime.hop_budget_ms"]),
                   shedding=bool(cfg["runtime.shedding"]),
                   shed_above=float(cfg["runtime.shed_above"]),
                   restore_below=float(cfg["runtime.restore_below"]),
                   load_window_hops=int(cfg["runtime.load_window_hops"]),
                   backlog_shed_hops=int(cfg["runtime.backlog_shed_hops"]),
                   probe_after_s=float(cfg["runtime.probe_after_s"]))


class HopBudget:
    """Timing statistics, load and shedding decisions for one pipeline's stages.

    Parameters
    ----------
    stages : sequence of device.stages.Stage
        The pipeline's stages (their ``name``, ``priority``, ``essential``, ``stride_hops``).
    settings : BudgetSettings
    hop_samples, rate : int
        Samples per hop and the pipeline rate: one hop is ``hop_samples / rate`` seconds.

    Attributes
    ----------
    stage_stats : dict of str -> LatencyStats
        Per stage, on the hops it ran.
    hop_stats : LatencyStats
        Whole hops, with ``hop_budget_ms`` as the deadline.
    load : float
        Processing time over audio time of the last ``load_window_hops`` hops.
    shed : set of str
        Names of the stages shed now.
    shed_count : int
        Sheds so far.
    """

    def __init__(self, stages: Sequence, settings: BudgetSettings, *, hop_samples: int, rate: int):
        self.stages = list(stages)
        self.settings = settings
        self.hop_samples = int(hop_samples)
        self.hop_s = self.hop_samples / rate
        self.stage_stats = {s.name: LatencyStats() for s in self.stages}
        self.hop_stats = LatencyStats(deadline_s=settings.hop_budget_ms / 1000.0)
        self._window = max(1, settings.load_window_hops)
        self._recent: deque[float] = deque(maxlen=self._window)
        self._recent_sum = 0.0
        self.load = 0.0
        self.shed: set[str] = set()
        self.shed_count = 0
        self._shed_at: dict[str, float] = {}
        self._probe_wait: dict[str, float] = {}
        self._hold = 0

    # ------------------------------------------------------------------ accounting
    def runs(self, stage) -> bool:
        """Whether ``stage`` runs (is not shed)."""
        return stage.name not in self.shed

    def record(self, stage, seconds: float) -> None:
        """One run of ``stage`` took ``seconds``."""
        self.stage_stats[stage.name].add(seconds)

    def end_hop(self, seconds: float) -> None:
        """A whole hop took ``seconds``: update the deadline statistics and the load."""
        self.hop_stats.add(seconds)
        if len(self._recent) == self._window:
            self._recent_sum -= self._recent[0]
        self._recent.append(seconds)
        self._recent_sum += seconds
        self.load = self._recent_sum / (len(self._recent) * self.hop_s)

    @property
    def busy_s(self) -> float:
        """Total time spent in stages so far."""
        return sum(st.total_s for st in self.stage_stats.values())

    def stage_load(self, stage) -> float:
        """A stage's typical share of real time: p50 per run, amortised over its stride."""
        st = self.stage_stats[stage.name]
        return st.percentile(50) / stage.stride_hops / self.hop_s if st.count else 0.0

    # ------------------------------------------------------------------ shedding
    def balance(self, now_s: float, backlog_samples: int = 0, realtime: bool = False) -> list[dict]:
        """Shed or restore at most one stage; return what changed as status payloads.

        ``now_s`` is the stream time (for probe waits); ``backlog_samples`` the captured audio
        not yet processed, which counts only for a ``realtime`` source.
        """
        s = self.settings
        if not s.shedding:
            return []
        if self._hold > 0:
            self._hold -= 1
            return []
        if len(self._recent) < self._window:
            return []  # not a whole window measured yet (at start, and after each change)
        behind = self.load > s.shed_above or (
            realtime and backlog_samples > s.backlog_shed_hops * self.hop_samples)
        if behind:
            candidates = [st for st in self.stages if not st.essential and st.name not in self.shed]
            if not candidates:
                return []
            # min() keeps the first of equal priorities: reversed, that is the later stage.
            victim = min(reversed(candidates), key=lambda st: st.priority)
            self.shed.add(victim.name)
            self.shed_count += 1
            self._shed_at[victim.name] = now_s
            self._hold = self._window
            return [{"label": "shed", "stage": victim.name, "load": round(self.load, 3),
                     "backlog_samples": int(backlog_samples),
                     "stage_cost": round(self.stage_load(victim), 3)}]
        if not self.shed:
            return []
        best = max((st for st in self.stages if st.name in self.shed), key=lambda st: st.priority)
        wait = self._probe_wait.get(best.name, s.probe_after_s)
        fits = self.load + self.stage_load(best) < s.restore_below
        probe = now_s - self._shed_at[best.name] >= wait
        if not (fits or probe):
            return []
        self.shed.discard(best.name)
        self._hold = self._window
        # A probe that fails gets shed again; wait longer next time. A fit resets the wait.
        self._probe_wait[best.name] = s.probe_after_s if fits else wait * 2
        return [{"label": "restored", "stage": best.name, "load": round(self.load, 3),
                 "probe": not fits}]
