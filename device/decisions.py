"""Decisions: from per-stride posteriors to events (micro_speech's "recognize commands").

Pure Python + numpy, no I/O and no clocks: every call gets the audio time ``t`` (seconds into the
stream) of the posteriors it is given, so the same posteriors always give the same events
(tests/device/test_decisions.py).

* `PosteriorSmoother` — moving average of the last few posterior vectors.
* `WakeWordTrigger` — threshold + minimum consecutive count + refractory time (suppression).
* `CommandWindow` — after a wake word, for ``window_s``, a command keyword becomes an event.
* `KeywordDecisions` — the three above over the keyword head; emits ``wake``/``command`` events.
* `SceneTracker` — smoothed scene posteriors with hysteresis; emits ``scene`` on a change.

Events are plain dicts ``{"type", "label", "confidence", "t_audio_s"}``; the pipeline adds the
wall-clock time, a sequence number and the device id.
"""
from __future__ import annotations

from collections import deque
from typing import Mapping, Sequence

import numpy as np

__all__ = ["PosteriorSmoother", "WakeWordTrigger", "CommandWindow", "KeywordDecisions",
           "SceneTracker", "windows_from_config"]


def _event(kind: str, label: str, confidence: float, t: float, **extra) -> dict:
    ev = {"type": kind, "label": label, "confidence": round(float(confidence), 4),
          "t_audio_s": round(float(t), 4)}
    ev.update(extra)
    return ev


class PosteriorSmoother:
    """Moving average over the last ``window`` posterior vectors.

    Parameters
    ----------
    window : int
        Vectors averaged (>= 1; 1 = no smoothing). Longer = fewer single-frame false alarms,
        but a word must stay recognised longer and events come later (latency ~ window/2 strides).
    """

    def __init__(self, window: int):
        self.window = max(1, int(window))
        self._hist: deque[np.ndarray] = deque(maxlen=self.window)
        self._sum: np.ndarray | None = None

    def reset(self) -> None:
        self._hist.clear()
        self._sum = None

    def update(self, posteriors: Sequence[float]) -> np.ndarray:
        p = np.asarray(posteriors, dtype=np.float64)
        if self._sum is None or self._sum.shape != p.shape:
            self._hist.clear()
            self._sum = np.zeros_like(p)
        if len(self._hist) == self.window:
            self._sum -= self._hist[0]
        self._hist.append(p)
        self._sum += p
        return self._sum / len(self._hist)


class WakeWordTrigger:
    """Wake word: smoothed score above ``threshold`` for ``min_count`` consecutive updates, and
    at least ``refractory_s`` since the last trigger.

    Parameters
    ----------
    threshold : float
        Higher = fewer false accepts, more misses.
    min_count : int
        Consecutive updates above threshold. Each adds one stride of latency and removes
        one-stride flukes.
    refractory_s : float
        Suppression after a trigger: one utterance gives one event even though the posterior
        stays high for several strides.
    """

    def __init__(self, threshold: float = 0.6, min_count: int = 2, refractory_s: float = 1.5):
        self.threshold, self.min_count, self.refractory_s = threshold, max(1, int(min_count)), refractory_s
        self._count = 0
        self._peak = 0.0
        self._last = -np.inf
        self.suppressed = 0

    def update(self, t: float, score: float) -> float | None:
        """Returns the confidence (peak score of the run) when it triggers, else None."""
        if score >= self.threshold:
            self._count += 1
            self._peak = max(self._peak, score)
        else:
            self._count, self._peak = 0, 0.0
            return None
        if self._count < self.min_count:
            return None
        if t - self._last < self.refractory_s:
            if self._count == self.min_count:
                self.suppressed += 1
            return None
        self._last = t
        peak = self._peak
        self._count, self._peak = -10**9, 0.0  # no re-trigger until the score falls below
        return peak


class CommandWindow:
    """After a wake word at ``t_wake``, for ``window_s``, the first command keyword whose
    smoothed score is above ``threshold`` for ``min_count`` updates becomes a command event.

    Parameters
    ----------
    labels : the keyword head's labels; ``commands`` : those that are commands.
    window_s : float
        How long the device listens for a command after the wake word.
    threshold, min_count : as `WakeWordTrigger`.
    max_commands : int
        Commands accepted per wake word (1: "computer, lights on" gives one command).
    """

    def __init__(self, labels: Sequence[str], commands: Sequence[str], window_s: float = 4.0,
                 threshold: float = 0.6, min_count: int = 1, max_commands: int = 1):
        self.labels = list(labels)
        self.command_idx = [self.labels.index(c) for c in commands if c in self.labels]
        self.window_s, self.threshold = window_s, threshold
        self.min_count, self.max_commands = max(1, int(min_count)), max_commands
        self._open_until = -np.inf
        self._accepted = 0
        self._counts = np.zeros(len(self.labels), dtype=int)

    @property
    def is_open(self) -> bool:
        return self._accepted < self.max_commands and np.isfinite(self._open_until)

    def open(self, t_wake: float) -> None:
        self._open_until = t_wake + self.window_s
        self._accepted = 0
        self._counts[:] = 0

    def update(self, t: float, smoothed: np.ndarray) -> tuple[str, float] | None:
        if t > self._open_until or self._accepted >= self.max_commands:
            self._open_until = -np.inf if t > self._open_until else self._open_until
            return None
        above = np.zeros(len(self.labels), dtype=bool)
        above[self.command_idx] = smoothed[self.command_idx] >= self.threshold
        self._counts = np.where(above, self._counts + 1, 0)
        ready = [i for i in self.command_idx if self._counts[i] >= self.min_count]
        if not ready:
            return None
        best = max(ready, key=lambda i: smoothed[i])
        self._accepted += 1
        self._counts[:] = 0
        if self._accepted >= self.max_commands:
            self._open_until = -np.inf
        return self.labels[best], float(smoothed[best])


class KeywordDecisions:
    """Wake word then command, over the keyword head's posteriors.

    Usage::

        kd = KeywordDecisions(cfg.keyword_labels, "computer", cfg["labels.commands"],
                              **windows_from_config(cfg))
        for t, probs in ...:  events = kd.update(t, probs)

    Parameters
    ----------
    labels, wake_word, commands : the head's labels, the wake word, the command words.
    smoothing : int
        Posterior vectors averaged (`PosteriorSmoother`).
    wake_threshold, wake_min_count, refractory_s : see `WakeWordTrigger`.
    command_window_s, command_threshold, command_min_count : see `CommandWindow`.
    """

    def __init__(self, labels: Sequence[str], wake_word: str, commands: Sequence[str], *,
                 smoothing: int = 3, wake_threshold: float = 0.6, wake_min_count: int = 2,
                 refractory_s: float = 1.5, command_window_s: float = 4.0,
                 command_threshold: float = 0.6, command_min_count: int = 1,
                 max_commands: int = 1):
        self.labels = list(labels)
        if wake_word not in self.labels:
            raise ValueError(f"wake word {wake_word!r} is not among the keyword labels {self.labels}")
        self.wake_idx = self.labels.index(wake_word)
        self.smoother = PosteriorSmoother(smoothing)
        self.wake = WakeWordTrigger(wake_threshold, wake_min_count, refractory_s)
        self.commands = CommandWindow(self.labels, commands, command_window_s, command_threshold,
                                      command_min_count, max_commands)

    def update(self, t: float, posteriors: Sequence[float]) -> list[dict]:
        smoothed = self.smoother.update(posteriors)
        events = []
        # Commands first: the update that opens a window must not also close it.
        cmd = self.commands.update(t, smoothed)
        if cmd is not None:
            events.append(_event("command", cmd[0], cmd[1], t))
        conf = self.wake.update(t, float(smoothed[self.wake_idx]))
        if conf is not None:
            events.append(_event("wake", self.labels[self.wake_idx], conf, t))
            self.commands.open(t)
        return events


class SceneTracker:
    """Acoustic scene with hysteresis: enter a scene when its smoothed posterior is the largest
    and at least ``threshold_on``; leave it only when it drops below ``threshold_off``.

    Parameters
    ----------
    labels : scene labels.
    smoothing : int
        Posterior vectors averaged; scenes change slowly, so longer than for keywords.
    threshold_on, threshold_off : float
        The gap between them stops flicker between two similar scenes.
    """

    def __init__(self, labels: Sequence[str], smoothing: int = 10, threshold_on: float = 0.55,
                 threshold_off: float = 0.4):
        if threshold_off > threshold_on:
            raise ValueError(f"scene hysteresis needs threshold_off <= threshold_on, got "
                             f"{threshold_off} > {threshold_on}")
        self.labels = list(labels)
        self.smoother = PosteriorSmoother(smoothing)
        self.on, self.off = threshold_on, threshold_off
        self.current: int | None = None

    def update(self, t: float, posteriors: Sequence[float]) -> list[dict]:
        p = self.smoother.update(posteriors)
        if self.current is not None and p[self.current] >= self.off:
            return []
        best = int(np.argmax(p))
        if p[best] >= self.on and best != self.current:
            self.current = best
            return [_event("scene", self.labels[best], p[best], t)]
        if self.current is not None and p[self.current] < self.off:
            self.current = None
            return [_event("scene", "none", float(1.0 - p.max()), t)]
        return []


def windows_from_config(cfg, stride_s: float) -> dict:
    """KeywordDecisions/SceneTracker keyword arguments from the profile's ``[decisions]``,
    converting milliseconds to counts of model strides (``stride_s`` seconds each)."""
    d: Mapping = cfg.section("decisions")
    def strides(ms: float) -> int:
        return max(1, int(round(ms / 1000.0 / stride_s)))
    return {
        "keyword": dict(
            smoothing=strides(d.get("smoothing_ms", 300)),
            wake_threshold=d.get("wake_threshold", 0.6),
            wake_min_count=d.get("wake_min_count", 2),
            refractory_s=d.get("refractory_ms", 1500) / 1000.0,
            command_window_s=d.get("command_window_ms", 4000) / 1000.0,
            command_threshold=d.get("command_threshold", 0.6),
            command_min_count=d.get("command_min_count", 1),
            max_commands=d.get("commands_per_wake", 1)),
        "scene": dict(
            smoothing=strides(d.get("scene_smoothing_ms", 1000)),
            threshold_on=d.get("scene_threshold_on", 0.55),
            threshold_off=d.get("scene_threshold_off", 0.4)),
    }
