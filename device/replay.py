"""The keyword posteriors a pipeline's decision stage sees, and its wake decisions replayed over
them at other settings.

`keyword_run` runs a profile's pipeline over int16 audio already in memory, built exactly as
``python -m device detect`` builds it (`Pipeline.from_config`, no load shedding), with one extra
stage at the end (`PosteriorTap`) that records every fresh ``posteriors.keyword`` output. Over
those records `trigger_replay` gives the wake times the device's own decision classes
(`PosteriorSmoother` + `WakeWordTrigger`, as `KeywordDecisions` composes them) would raise at
any threshold and smoothing, without running the pipeline once per setting.

Two users: the wake-word benchmark sweeps its settings this way (`evaluation.wakeword_engines`,
which checks on every stream that the replay at the profile's setting is the pipeline's own
events), and `train.verifier` finds where the exported keyword model triggers on training audio,
so that the wake verifier is fit on the windows it will be shown. `first_command` replays the
command window the same way (`train.verifier`'s class readout, `evaluation.commands`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .decisions import CommandWindow, PosteriorSmoother, WakeWordTrigger
from .stages.base import Stage

__all__ = ["PosteriorTap", "KeywordRun", "keyword_run", "smoothed", "trigger_replay",
           "smoothed_posteriors", "first_command"]


class PosteriorTap(Stage):
    """Records every fresh ``posteriors.keyword`` output: ``(t_audio_s, probabilities)``."""
    type_name = "posterior_tap"

    def __init__(self, cfg, rate, hop_s, key="posteriors.keyword"):
        super().__init__("benchmark_tap", {}, cfg, rate, hop_s)
        self.key = key
        self.consumes = (key,)
        self.records: list[tuple[float, np.ndarray]] = []

    def process(self, ctx) -> None:
        if self.key in ctx.fresh:
            t, p = ctx.data[self.key]
            self.records.append((float(t), np.asarray(p, np.float32).copy()))


@dataclass
class KeywordRun:
    """One pipeline run: the keyword posteriors (``times_s``, ``posteriors`` rows in the order of
    ``cfg.keyword_labels``), the wake events the pipeline raised, and what it cost."""
    audio_s: float
    times_s: np.ndarray
    posteriors: np.ndarray
    wakes: list[float]
    cpu_s: float
    wall_s: float
    stage_s: float


def keyword_run(cfg, audio: np.ndarray, model: str | None = None) -> KeywordRun:
    """Run the profile's pipeline over int16 ``audio`` at the pipeline's rate, read
    ``pipeline.block_hops`` hops at a time (what `detect` reads from a file).

    Parameters
    ----------
    cfg : Config
        The profile; its ``stages.keywords.verifier`` runs too, so a caller that wants the
        keyword model's own triggers sets it to ``""``.
    audio : np.ndarray
        int16 samples, one channel.
    model : str, optional
        A keyword model other than the profile's.
    """
    from .audio_source import ArraySource
    from .pipeline import Pipeline
    built = Pipeline.from_config(cfg, model=model, shedding=False)
    tap = PosteriorTap(cfg, built.rate, built.hop_s)
    pipe = Pipeline(built.stages + [tap], built.settings, keep_events=True)
    source = ArraySource(np.asarray(audio, np.int16), rate=pipe.rate,
                         block_ms=pipe.settings.hop_ms * pipe.block_hops)
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        status = pipe.run(source)
    finally:
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        pipe.close()
    n_labels = len(cfg.keyword_labels)
    times = np.array([t for t, _ in tap.records])
    post = np.stack([p for _, p in tap.records]) if tap.records else np.zeros((0, n_labels))
    # Time inside the stages (features, model, decisions), without the hop loop and the reader.
    stage_s = sum(st["n"] * st["mean_ms"] for st in status["stages"].values()) / 1000.0
    return KeywordRun(status["audio_s"], times, post,
                      [float(e["t_audio_s"]) for e in pipe.events if e["type"] == "wake"],
                      cpu, wall, stage_s)


def smoothed(times_s: np.ndarray, wake_scores: np.ndarray, smoothing_s: float) -> np.ndarray:
    """The wake column of `device.decisions.KeywordDecisions`' smoothing (its smoother is
    column-wise, so the wake column alone gives the same numbers)."""
    column = np.asarray(wake_scores, np.float64).reshape(-1, 1)
    return smoothed_posteriors(times_s, column, smoothing_s).reshape(-1)


def trigger_replay(times_s: Sequence[float], smoothed_scores: Sequence[float], *, threshold: float,
                   min_count: int, refractory_s: float) -> list[float]:
    """Wake times of the device's `WakeWordTrigger` over smoothed wake scores."""
    trig = WakeWordTrigger(threshold, min_count, refractory_s)
    return [float(t) for t, s in zip(times_s, smoothed_scores)
            if trig.update(float(t), float(s)) is not None]


def smoothed_posteriors(times_s: np.ndarray, posteriors: np.ndarray, smoothing_s: float) -> np.ndarray:
    """All columns of `device.decisions.KeywordDecisions`' smoothing, ``(n, labels)``."""
    sm = PosteriorSmoother(smoothing_s)
    out = [sm.update(float(t), p) for t, p in zip(times_s, posteriors)]
    return np.stack(out) if out else np.zeros_like(np.asarray(posteriors, float))


def first_command(labels: Sequence[str], commands: Sequence[str], times_s: np.ndarray,
                  smoothed_posteriors: np.ndarray, open_s: float, close_s: float, *,
                  threshold: float, min_count: int,
                  verdict: Callable[[int], str | None] | None = None, delay_s: float = 0.0,
                  refused: list[int] | None = None) -> tuple[int, str] | None:
    """The first command the device's `CommandWindow`, opened at ``open_s`` (as by a wake word)
    and listening until ``close_s``, raises over the smoothed posteriors: ``(index into
    times_s, label)``, or None.

    With ``verdict`` (a trigger's index -> the command a second opinion names, or None), each
    trigger is judged as the keyword stage judges it: the label is the verdict's, and a refused
    trigger is withdrawn (`CommandWindow.withdraw`), the window taking nothing for ``delay_s``
    (while the stage waits for the verdict) before it listens on; ``refused`` collects the
    refused triggers' indices."""
    window = CommandWindow(labels, list(commands), float(close_s - open_s), threshold, min_count, 1)
    window.open(open_s)
    lo, hi = np.searchsorted(times_s, [open_s, close_s])
    busy_until = -np.inf
    for i in range(lo, hi):
        t = float(times_s[i])
        if t <= busy_until:
            continue
        hit = window.update(t, smoothed_posteriors[i])
        if hit is None:
            continue
        if verdict is None:
            return i, hit[0]
        label = verdict(i)
        if label is not None:
            return i, label
        if refused is not None:
            refused.append(i)
        busy_until = t + delay_s
        window.withdraw()
    return None
