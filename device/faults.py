"""Stage faults: what the pipeline does about a stage that raises, so the device never goes deaf
without saying so.

A stage that raises on one hop is reported **once** — its traceback in the log at ERROR and a
``status`` event with label ``stage_failed`` (stage, error, hop) — and then only counted while it
keeps failing; a summary line goes to the log at most once every ``summary_every_s`` of audio.
After each failure the stage's state is reset (`Stage.on_gap`), so a stage that failed on one
odd input runs normally on the next hop ("restarted"). When it succeeds again a
``stage_recovered`` event says after how many failures.

When a stage fails ``failure_limit`` times in a row:

* a non-essential stage (the scene decisions, a classifier) is switched off for the rest of the
  run, with a ``stage_disabled`` event, and the rest of the pipeline keeps listening;
* an essential stage (the frontend, the keyword decisions) cannot be done without: `check`
  raises `EssentialStageFailed`, `Pipeline.run` ends, and the command line exits with code 1 so
  that the service manager restarts the device. A configuration error found at start-up exits
  with 2 instead, which the systemd unit does not restart (``RestartPreventExitStatus=2``):
  restarting cannot fix a bad profile.

Usage (the pipeline's own)::

    faults = StageFaults(failure_limit=cfg["runtime.stage_failure_limit"], report=emit_status)
    try:
        stage.process(ctx)
    except Exception as exc:
        faults.failed(stage, exc, hop, t_audio_s)
    else:
        faults.succeeded(stage, t_audio_s)
"""
from __future__ import annotations

import logging
from typing import Callable

__all__ = ["StageFaults", "EssentialStageFailed"]

log = logging.getLogger("hopwise.pipeline")


class EssentialStageFailed(RuntimeError):
    """An essential stage failed ``failure_limit`` hops in a row: the device cannot listen."""


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """The exception as one short line (LiteRT's messages grow with every failed call)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


class StageFaults:
    """Counts, reports and acts on stage failures.

    Parameters
    ----------
    failure_limit : int
        Consecutive failed runs of one stage before it is switched off (non-essential) or the
        run ends (essential). Smaller = a broken stage is given up on sooner; larger = more
        patience with a stage that fails on a stretch of odd input.
    report : callable
        ``report(label, **fields)`` sends a ``status`` event (`Pipeline.emit_status`).
    summary_every_s : float
        Audio seconds between the log lines that count a failure streak.
    """

    def __init__(self, failure_limit: int, report: Callable[..., dict],
                 summary_every_s: float = 60.0):
        if failure_limit < 1:
            raise ValueError(f"failure_limit must be >= 1, got {failure_limit}")
        self.failure_limit = int(failure_limit)
        self.report = report
        self.summary_every_s = summary_every_s
        self.streak: dict[str, int] = {}      # consecutive failures per stage
        self.total: dict[str, int] = {}       # all failures per stage
        self.disabled: set[str] = set()
        self._next_summary: dict[str, float] = {}
        self.fatal: EssentialStageFailed | None = None

    def failed(self, stage, exc: BaseException, hop: int, t_audio_s: float) -> None:
        name = stage.name
        self.total[name] = self.total.get(name, 0) + 1
        streak = self.streak[name] = self.streak.get(name, 0) + 1
        error = _one_line(exc)
        if streak == 1:
            log.error("stage %s failed on hop %d (reported once; further failures are counted): "
                      "%s", name, hop, error, exc_info=(type(exc), exc, exc.__traceback__))
            self.report("stage_failed", stage=name, error=error, hop=hop)
            self._next_summary[name] = t_audio_s + self.summary_every_s
        elif t_audio_s >= self._next_summary.get(name, 0.0):
            log.error("stage %s keeps failing: %d times in a row (%s)", name, streak, error)
            self._next_summary[name] = t_audio_s + self.summary_every_s
        try:
            stage.on_gap()  # start it afresh: the next hop must not build on a half-done one
        except Exception:  # noqa: BLE001 - a reset that fails too changes nothing here
            pass
        if streak < self.failure_limit:
            return
        if stage.essential:
            self.fatal = EssentialStageFailed(
                f"essential stage {name!r} failed {streak} hops in a row ({error}); without it "
                f"the device cannot listen, so the run stops (exit code 1: the service manager "
                f"restarts it). The first failure's traceback is in the log above")
            self.report("stage_fatal", stage=name, error=error, failures=streak)
        elif name not in self.disabled:
            self.disabled.add(name)
            log.error("stage %s failed %d hops in a row: switched off for the rest of the run "
                      "(the other stages keep running)", name, streak)
            self.report("stage_disabled", stage=name, error=error, failures=streak)

    def succeeded(self, stage, t_audio_s: float) -> None:
        streak = self.streak.get(stage.name, 0)
        if streak:
            self.streak[stage.name] = 0
            log.warning("stage %s runs again after %d failed hop(s)", stage.name, streak)
            self.report("stage_recovered", stage=stage.name, failures=streak)

    def runs(self, stage) -> bool:
        """False for a stage that was switched off."""
        return stage.name not in self.disabled

    def check(self) -> None:
        """Raise `EssentialStageFailed` if an essential stage has reached the limit."""
        if self.fatal is not None:
            raise self.fatal

    def summary(self) -> dict:
        return {"failures": dict(self.total), "disabled": sorted(self.disabled)}
