"""Scoring of a wake-word benchmark: hits, false alarms, DET points and the summary figures.

Pure functions over detection times (seconds into a stream) and the windows where the wake word
was spoken; nothing here runs an engine or reads audio, so every rule can be checked on crafted
streams with known answers (tests/evaluation/test_wakeword_scoring.py).

The rules, after Picovoice's open wake-word benchmark:

* A positive is spoken over ``[start_s, end_s]``; it is **hit** when at least one detection falls
  in ``[start_s, end_s + after_s]`` (engines report a word after it ends: the model's window,
  smoothing and a decision). Further detections in the same window are neither hits nor false
  alarms (one utterance, one answer; engines debounce differently).
* Every detection outside all windows, in any stream, is a **false alarm**. The rate is false
  alarms per hour of the audio outside the windows.
* A **DET curve** is (false alarms per hour, miss rate) over an engine's sensitivity setting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["Window", "StreamScore", "score_stream", "DetPoint", "det_points",
           "miss_at_zero_false_alarms", "false_alarms_at_miss", "extrapolate_miss_at_rate",
           "operating_point", "poisson_upper_rate", "detections_from_scores"]


@dataclass(frozen=True)
class Window:
    """Where one positive was spoken in a stream, seconds; hits count up to ``end_s + after_s``."""
    start_s: float
    end_s: float
    after_s: float = 1.0

    @property
    def close_s(self) -> float:
        return self.end_s + self.after_s

    def __contains__(self, t: float) -> bool:
        return self.start_s <= t <= self.close_s


@dataclass
class StreamScore:
    """Hits and false alarms of one engine at one setting on one stream.

    Attributes
    ----------
    positives, hits : int
        Windows in the stream, windows with a detection.
    false_alarms : list of float
        Times of the detections outside every window.
    extra_in_window : int
        Detections after the first inside a window (ignored; reported).
    negative_s : float
        Seconds of the stream outside every window: what the false-alarm rate is per.
    """
    positives: int
    hits: int
    false_alarms: list[float] = field(default_factory=list)
    extra_in_window: int = 0
    negative_s: float = 0.0

    def __add__(self, other: "StreamScore") -> "StreamScore":
        return StreamScore(self.positives + other.positives, self.hits + other.hits,
                           self.false_alarms + other.false_alarms,
                           self.extra_in_window + other.extra_in_window,
                           self.negative_s + other.negative_s)

    @property
    def misses(self) -> int:
        return self.positives - self.hits

    @property
    def miss_rate(self) -> float:
        return self.misses / self.positives if self.positives else float("nan")

    @property
    def false_alarms_per_hour(self) -> float:
        return len(self.false_alarms) * 3600.0 / self.negative_s if self.negative_s > 0 else float("nan")


def score_stream(detections_s: Iterable[float], windows: Sequence[Window],
                 duration_s: float) -> StreamScore:
    """Hits and false alarms of detections against the positives' windows.

    Parameters
    ----------
    detections_s : iterable of float
        Detection times, seconds into the stream (any order).
    windows : sequence of Window
        The positives (none for a negative-only stream). Windows must not overlap.
    duration_s : float
        Length of the stream; the false-alarm rate is per second of it outside the windows.
    """
    wins = sorted(windows, key=lambda w: w.start_s)
    for a, b in zip(wins, wins[1:]):
        if b.start_s <= a.close_s:
            raise ValueError(f"positive windows overlap ({a} and {b}): leave more than after_s "
                             f"of gap between positives")
    starts = np.array([w.start_s for w in wins])
    hit = np.zeros(len(wins), dtype=bool)
    false_alarms: list[float] = []
    extra = 0
    for t in sorted(float(t) for t in detections_s):
        i = int(np.searchsorted(starts, t, side="right")) - 1
        if i >= 0 and t in wins[i]:
            if hit[i]:
                extra += 1
            hit[i] = True
        else:
            false_alarms.append(t)
    covered = sum(min(w.close_s, duration_s) - max(w.start_s, 0.0) for w in wins)
    return StreamScore(len(wins), int(hit.sum()), false_alarms, extra,
                       max(0.0, float(duration_s) - covered))


def detections_from_scores(times_s: Sequence[float], scores: Sequence[float], threshold: float,
                           refractory_s: float) -> list[float]:
    """Detections of an engine that only gives a score per frame (openWakeWord): a detection
    when the score rises to ``threshold`` or above, then none for ``refractory_s`` and none until
    the score has fallen below the threshold again (one utterance, one detection)."""
    out: list[float] = []
    armed, last = True, -math.inf
    for t, s in zip(times_s, scores):
        if s >= threshold:
            if armed and t - last >= refractory_s:
                out.append(float(t))
                last = t
            armed = False
        else:
            armed = True
    return out


@dataclass(frozen=True)
class DetPoint:
    """One sensitivity setting's result: the setting, miss rate and false alarms per hour
    (over all streams of the run, positives at one SNR)."""
    setting: float
    miss_rate: float
    false_alarms: int
    false_alarms_per_hour: float
    negative_h: float

    def as_dict(self) -> dict:
        return {"setting": self.setting, "miss_rate": round(self.miss_rate, 4),
                "false_alarms": self.false_alarms,
                "false_alarms_per_hour": round(self.false_alarms_per_hour, 3),
                "negative_h": round(self.negative_h, 4)}


def det_points(scores: dict[float, StreamScore]) -> list[DetPoint]:
    """DET points from ``{setting: StreamScore}``, from the least to the most sensitive (by
    false-alarm rate, then miss rate)."""
    pts = [DetPoint(float(k), s.miss_rate, len(s.false_alarms), s.false_alarms_per_hour,
                    s.negative_s / 3600.0) for k, s in scores.items()]
    return sorted(pts, key=lambda p: (p.false_alarms_per_hour, -p.miss_rate, p.setting))


def miss_at_zero_false_alarms(points: Sequence[DetPoint]) -> DetPoint | None:
    """The most sensitive setting with no false alarm (lowest miss rate among them), or None
    when every setting raised one."""
    zero = [p for p in points if p.false_alarms == 0]
    return min(zero, key=lambda p: (p.miss_rate, p.setting)) if zero else None


def false_alarms_at_miss(points: Sequence[DetPoint], miss_rate: float = 0.05) -> DetPoint | None:
    """The setting with the fewest false alarms among those that miss at most ``miss_rate``,
    or None when no setting gets that low."""
    ok = [p for p in points if p.miss_rate <= miss_rate + 1e-12]
    return min(ok, key=lambda p: (p.false_alarms_per_hour, p.miss_rate)) if ok else None


def poisson_upper_rate(events: int, hours: float, confidence: float = 0.95) -> float:
    """Upper confidence bound of a Poisson rate per hour (0 events in ``hours``: -ln(1-c)/h,
    the "rule of three"): what 0 false alarms in a short stream can and cannot tell."""
    if hours <= 0:
        return float("inf")
    if events == 0:
        return -math.log(1.0 - confidence) / hours
    # Wilson-Hilferty approximation of the chi-square quantile, good to ~1 % for any count.
    k = events + 1
    z = {0.9: 1.2816, 0.95: 1.6449, 0.99: 2.3263}.get(confidence, 1.6449)
    return k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3 / hours


def extrapolate_miss_at_rate(points: Sequence[DetPoint], target_per_hour: float,
                             fit_points: int = 4, higher_is_stricter: bool = True) -> dict | None:
    """Miss rate at a false-alarm rate below what the stream can show, **by extrapolation**.

    The false-alarm rate of a score threshold falls roughly exponentially in the threshold at
    the tail (the score distribution's tail), so ``log10(false alarms per hour)`` is fitted
    as a line in the setting over the ``fit_points`` least sensitive settings that still raised
    false alarms; the setting where the line reaches ``target_per_hour`` is read off, and the miss
    rate at that setting is interpolated between the measured points (linear in the setting).
    Returns None when fewer than two settings raised false alarms (nothing to fit) or the fit
    does not fall with the setting; else ``{"setting", "miss_rate", "fit": [slope, intercept],
    "extrapolated": True, "beyond_measured": bool}``. ``higher_is_stricter``: a threshold is
    (higher = fewer detections); Porcupine's sensitivity is the reverse (False).
    """
    sign = 1.0 if higher_is_stricter else -1.0
    with_fa = sorted((p for p in points if p.false_alarms > 0), key=lambda p: sign * p.setting)
    if len(with_fa) < 2:
        return None
    tail = with_fa[-fit_points:]
    x = np.array([sign * p.setting for p in tail])
    y = np.log10([p.false_alarms_per_hour for p in tail])
    if np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    if slope >= 0:
        return None
    strict = (math.log10(target_per_hour) - intercept) / slope
    measured = sorted(points, key=lambda p: sign * p.setting)
    xs = np.array([sign * p.setting for p in measured])
    ms = np.array([p.miss_rate for p in measured])
    miss = float(np.interp(strict, xs, ms))
    return {"setting": float(sign * strict), "miss_rate": miss,
            "fit": [float(slope), float(intercept)], "extrapolated": True,
            "beyond_measured": bool(strict > xs.max())}


def operating_point(points: Sequence[DetPoint], target_per_hour: float,
                    higher_is_stricter: bool = True) -> dict | None:
    """The most sensitive setting that meets a false-alarm target.

    The target is usually below what the stream can show (1 per 10 h on a stream of minutes), so
    a setting qualifies when it raised no false alarm *and*, where the tail can be fitted
    (`extrapolate_miss_at_rate`), it is at or above the setting the fit puts at the target.
    Among qualifying settings the lowest miss rate wins (then the least sensitive); a setting
    that misses every positive never qualifies (a deaf device has no false alarms). When no
    setting qualifies, the most sensitive setting with no false alarm on the streams is
    returned with ``meets_target`` False (the best these streams can show; the fit says the
    target needs a stricter one). Returns ``{"setting", "miss_rate", "false_alarms",
    "false_alarms_per_hour", "rule", "meets_target", "extrapolation"}`` or None (every
    setting either raised a false alarm or heard nothing).
    """
    sign = 1.0 if higher_is_stricter else -1.0
    ext = extrapolate_miss_at_rate(points, target_per_hour, higher_is_stricter=higher_is_stricter)
    clean = [p for p in points if p.false_alarms == 0 and p.miss_rate < 1.0]
    ok = [p for p in clean if ext is None or sign * p.setting >= sign * ext["setting"] - 1e-9]
    if ok:
        meets = True
        rule = ("0 false alarms on the streams and at or above the setting extrapolated to "
                f"{target_per_hour:g}/h" if ext is not None else "0 false alarms on the streams "
                "(too few false alarms to extrapolate the tail)")
    elif clean:
        ok, meets = clean, False
        where = ("beyond the strictest setting swept" if ext["beyond_measured"]
                 else f"at {ext['setting']:.4g}")
        rule = (f"target {target_per_hour:g}/h not shown: the most sensitive setting with 0 false "
                f"alarms on the streams; the tail's fit puts the target {where}")
    else:
        return None
    best = min(ok, key=lambda p: (p.miss_rate, -sign * p.setting))
    return {"setting": best.setting, "miss_rate": best.miss_rate,
            "false_alarms": best.false_alarms, "false_alarms_per_hour": best.false_alarms_per_hour,
            "rule": rule, "meets_target": meets, "extrapolation": ext}
