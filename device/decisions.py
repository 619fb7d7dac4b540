"""Decisions: from time-stamped posteriors to events (micro_speech's "recognize commands").

Pure Python + numpy, no I/O and no clocks: every call gets the audio time ``t`` (seconds into the
stream) of the posteriors it is given, so the same posteriors always give the same events
(tests/device/test_decisions.py).

* `PosteriorSmoother` — mean of the posteriors of the last ``window_s`` seconds of audio.
* `WakeWordTrigger` — threshold + minimum consecutive count + refractory time (suppression).
* `CommandWindow` — after a wake word, for ``window_s``, a command keyword becomes an event.
* `KeywordDecisions` — the three above over the keyword head; emits ``wake``/``command`` events.
* `SceneTracker` — smoothed scene posteriors with hysteresis; emits ``scene`` on a change.
* `BeatTracker` — per-frame percussion posteriors, hysteresis; one ``beat`` event per hit.
* `SoundTracker` — voted sound-classifier posteriors, hysteresis; one ``sound`` event per
  sustained sound.

Every window is a span of audio time, never a count of model outputs: like TFLite Micro's
``RecognizeCommands``, the smoother keeps a queue of ``(t, posteriors)`` and averages those whose
time falls in the last ``window_s``. A model that runs at another stride, or that was shed for a
while (its outputs stop, then resume), therefore averages over the same stretch of audio — never
over stale outputs from before a gap. The settings come from the profile's ``[decisions]``
(`KeywordDecisions.from_config`, `SceneTracker.from_config`); the classes have no defaults of
their own, so the profile is the one place the values live.

Events are plain dicts ``{"type", "label", "confidence", "t_audio_s"}``; the pipeline adds the
wall-clock time, a sequence number and the device id.
"""
from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from .sound import OTHER

__all__ = ["PosteriorSmoother", "WakeWordTrigger", "CommandWindow", "KeywordDecisions",
           "SceneTracker", "BeatTracker", "SoundTracker"]


def _event(kind: str, label: str, confidence: float, t: float, **extra) -> dict:
    ev = {"type": kind, "label": label, "confidence": round(float(confidence), 4),
          "t_audio_s": round(float(t), 4)}
    ev.update(extra)
    return ev


class PosteriorSmoother:
    """Mean of the posterior vectors whose times fall in the last ``window_s`` of audio.

    ``update(t, p)`` adds ``p`` at time ``t`` and returns the mean over ``(t - window_s, t]``;
    the newest vector is always included, so a window shorter than the model's stride means no
    smoothing. At the default 100 ms stride a 200 ms window averages exactly 2 vectors and a
    1000 ms window 10; at a 50 ms stride the same windows average 4 and 20.

    Parameters
    ----------
    window_s : float
        Seconds of audio averaged. Longer = fewer single-output false alarms, but a word must
        stay recognised longer and events come later (latency ~ window_s / 2).
    """

    EPSILON_S = 1e-6
    """Times are sums of hop lengths in floating point: ``1.6 - 0.2`` may come out a hair above
    or below ``1.4``. Treating anything within a microsecond (far below one sample, 62.5 us at
    16 kHz) of the window's start as outside it makes the count exact."""

    # Updates between two exact re-sums of the window (see `update`).
    RESUM_EVERY = 1024

    def __init__(self, window_s: float):
        if window_s < 0:
            raise ValueError(f"smoothing window must be >= 0 s, got {window_s}")
        self.window_s = float(window_s)
        self._queue: deque[tuple[float, np.ndarray]] = deque()
        self._sum: np.ndarray | None = None
        self._updates = 0

    def reset(self) -> None:
        self._queue.clear()
        self._sum = None

    def __len__(self) -> int:
        """Vectors in the current window."""
        return len(self._queue)

    def update(self, t: float, posteriors: Sequence[float]) -> np.ndarray:
        p = np.array(posteriors, dtype=np.float64)    # a copy: the window keeps it
        queue = self._queue
        if queue and (queue[-1][1].shape != p.shape or t < queue[-1][0]):
            queue.clear()  # another head, or time went backwards (a new stream)
        # A running sum: the vector in, the ones that left the window out. Summing the whole
        # window each time cost one array addition per vector in it: 25 per update for the
        # scenes' 1 s at the streaming model's 40 ms stride, a third of the keyword path's own
        # Python (cProfile of a long detect). Every RESUM_EVERY updates the window is summed
        # again in order, so rounding cannot accumulate over a long run.
        self._sum = p.copy() if not queue else self._sum + p
        queue.append((float(t), p))
        start = t - self.window_s + self.EPSILON_S
        while len(queue) > 1 and queue[0][0] <= start:
            self._sum -= queue.popleft()[1]
        self._updates += 1
        if len(queue) == 1:
            self._sum = p.copy()
        elif self._updates % self.RESUM_EVERY == 0:
            it = iter(queue)
            total = next(it)[1].copy()
            for _, q in it:
                total += q
            self._sum = total
        return self._sum / len(queue)


class WakeWordTrigger:
    """Wake word: smoothed score above ``threshold`` for ``min_count`` consecutive updates, and
    at least ``refractory_s`` since the last trigger.

    Parameters
    ----------
    threshold : float
        Higher = fewer false accepts, more misses.
    min_count : int
        Consecutive updates (model outputs) above threshold. Each adds one model stride of
        latency and removes one-output flukes.
    refractory_s : float
        Suppression after a trigger: one utterance gives one event even though the posterior
        stays high for several strides.
    """

    def __init__(self, threshold: float, min_count: int, refractory_s: float):
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

    def __init__(self, labels: Sequence[str], commands: Sequence[str], window_s: float,
                 threshold: float, min_count: int, max_commands: int):
        self.labels = list(labels)
        self.command_idx = [self.labels.index(c) for c in commands if c in self.labels]
        self.window_s, self.threshold = window_s, threshold
        self.min_count, self.max_commands = max(1, int(min_count)), max_commands
        self._open_until = -np.inf
        self._until = -np.inf    # the end of the window the last wake word opened
        self._accepted = 0
        self._counts = np.zeros(len(self.labels), dtype=int)

    @property
    def is_open(self) -> bool:
        return self._accepted < self.max_commands and np.isfinite(self._open_until)

    def open(self, t_wake: float) -> None:
        self._open_until = self._until = t_wake + self.window_s
        self._accepted = 0
        self._counts[:] = 0

    def close(self) -> None:
        """Stop listening (the wake word that opened the window was withdrawn)."""
        self._open_until = self._until = -np.inf
        self._counts[:] = 0

    def withdraw(self) -> None:
        """Take back the last accepted command (a second opinion refused it): the window
        listens on until its own end, as if the command had not been heard."""
        if self._accepted > 0:
            self._accepted -= 1
            self._open_until = self._until
            # The refused word's score is still up: no new trigger until it falls below.
            self._counts[:] = -10**9

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

        kd = KeywordDecisions.from_config(cfg)        # the profile's [decisions]
        for t, probs in ...:  events = kd.update(t, probs)

    Parameters
    ----------
    labels, wake_word, commands : the head's labels, the wake word, the command words.
    smoothing_s : float
        Seconds of posteriors averaged (`PosteriorSmoother`).
    wake_threshold, wake_min_count, refractory_s : see `WakeWordTrigger`.
    command_window_s, command_threshold, command_min_count, max_commands : see `CommandWindow`.
    """

    def __init__(self, labels: Sequence[str], wake_word: str, commands: Sequence[str], *,
                 smoothing_s: float, wake_threshold: float, wake_min_count: int,
                 refractory_s: float, command_window_s: float, command_threshold: float,
                 command_min_count: int, max_commands: int):
        self.labels = list(labels)
        if wake_word not in self.labels:
            raise ValueError(f"wake word {wake_word!r} is not among the keyword labels {self.labels}")
        self.wake_idx = self.labels.index(wake_word)
        self.smoother = PosteriorSmoother(smoothing_s)
        self.smoothed = np.zeros(len(self.labels))
        self.wake = WakeWordTrigger(wake_threshold, wake_min_count, refractory_s)
        self.commands = CommandWindow(self.labels, commands, command_window_s, command_threshold,
                                      command_min_count, max_commands)

    @classmethod
    def from_config(cls, cfg) -> "KeywordDecisions":
        """The profile's keyword labels and ``[decisions]`` (a missing key is a ConfigError)."""
        return cls(cfg.keyword_labels, cfg["labels.wake_word"], cfg["labels.commands"],
                   smoothing_s=cfg["decisions.smoothing_ms"] / 1000.0,
                   wake_threshold=cfg["decisions.wake_threshold"],
                   wake_min_count=cfg["decisions.wake_min_count"],
                   refractory_s=cfg["decisions.refractory_ms"] / 1000.0,
                   command_window_s=cfg["decisions.command_window_ms"] / 1000.0,
                   command_threshold=cfg["decisions.command_threshold"],
                   command_min_count=cfg["decisions.command_min_count"],
                   max_commands=cfg["decisions.commands_per_wake"])

    def update(self, t: float, posteriors: Sequence[float]) -> list[dict]:
        smoothed = self.smoother.update(t, posteriors)
        self.smoothed = smoothed   # what the events of this update were decided on
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


class _HysteresisTracker:
    """What the scene and sound trackers share: labels, a `PosteriorSmoother` over
    ``smoothing_s`` seconds, the two thresholds (checked: ``threshold_off <= threshold_on``)
    and the active class. ``kind`` names the tracker in the error."""

    kind = ""

    def __init__(self, labels: Sequence[str], *, smoothing_s: float, threshold_on: float,
                 threshold_off: float):
        if threshold_off > threshold_on:
            raise ValueError(f"{self.kind} hysteresis needs threshold_off <= threshold_on, got "
                             f"{threshold_off} > {threshold_on}")
        self.labels = list(labels)
        self.smoother = PosteriorSmoother(smoothing_s)
        self.on, self.off = float(threshold_on), float(threshold_off)
        self.current: int | None = None


class SceneTracker(_HysteresisTracker):
    """Acoustic scene with hysteresis: enter a scene when its smoothed posterior is the largest
    and at least ``threshold_on``; leave it only when it drops below ``threshold_off``.

    Usage: ``st = SceneTracker.from_config(cfg); events = st.update(t, probs)``.

    Parameters
    ----------
    labels : scene labels.
    smoothing_s : float
        Seconds of posteriors averaged; scenes change slowly, so longer than for keywords.
    threshold_on, threshold_off : float
        The gap between them stops flicker between two similar scenes.
    """

    kind = "scene"

    @classmethod
    def from_config(cls, cfg) -> "SceneTracker":
        """The profile's scene labels and ``[decisions] scene_*`` settings."""
        return cls(cfg["labels.scenes"], smoothing_s=cfg["decisions.scene_smoothing_ms"] / 1000.0,
                   threshold_on=cfg["decisions.scene_threshold_on"],
                   threshold_off=cfg["decisions.scene_threshold_off"])

    def update(self, t: float, posteriors: Sequence[float]) -> list[dict]:
        p = self.smoother.update(t, posteriors)
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


class BeatTracker:
    """Vocal-percussion hits from per-frame posteriors: one ``beat`` event per hit.

    Each frame's posteriors are averaged over the last ``smoothing_s`` of frames. A hit starts
    when the smoothed share of the sound classes (everything but ``silent``) rises to
    ``threshold_on`` and ends when it falls below ``threshold_off`` (hysteresis: a hit that
    wavers around one threshold is still one hit). Its label is the sound class with the largest
    mean posterior over the hit's first ``decision_s`` (or over the whole hit when it is
    shorter); the event is raised then, stamped with the hit's onset: the start of the first
    frame of the smoothing window whose own sound share was above ``threshold_off``. Silence
    raises nothing.

    Usage: ``bt = BeatTracker.from_config(cfg, frame_s); events = bt.update(t_frame_start, p)``.

    Parameters
    ----------
    labels : sequence of str
        The readout's classes, ``silent`` among them.
    frame_s : float
        The frame hop of the posteriors (16 ms for the ESN frontend).
    smoothing_s, decision_s : float
        See above; both at least one frame.
    threshold_on, threshold_off : float
        ``threshold_off <= threshold_on``.
    """

    def __init__(self, labels: Sequence[str], frame_s: float, *, smoothing_s: float,
                 threshold_on: float, threshold_off: float, decision_s: float,
                 silent: str = "silent"):
        if threshold_off > threshold_on:
            raise ValueError(f"beat hysteresis needs threshold_off <= threshold_on, got "
                             f"{threshold_off} > {threshold_on}")
        if silent not in labels:
            raise ValueError(f"the beat labels {list(labels)} have no {silent!r} class")
        self.labels = list(labels)
        self.silent = self.labels.index(silent)
        self.sound = np.array([i for i in range(len(self.labels)) if i != self.silent])
        self.k = max(1, int(round(smoothing_s / frame_s)))
        self.decision_frames = max(1, int(round(decision_s / frame_s)))
        self.on, self.off = float(threshold_on), float(threshold_off)
        self._window = np.zeros((self.k, len(self.labels)))
        self._times = np.zeros(self.k)
        self._silent_ring = [0.0] * self.k
        self._silent_sum = 0.0
        self._filled = 0
        self._pos = 0
        self.active = False
        self._sum = np.zeros(len(self.labels))
        self._hit_frames = 0
        self._onset = 0.0
        self._emitted = False

    @classmethod
    def from_config(cls, cfg, labels: Sequence[str], frame_s: float) -> "BeatTracker":
        """``[decisions] beat_*`` settings."""
        return cls(labels, frame_s, smoothing_s=cfg["decisions.beat_smoothing_ms"] / 1000.0,
                   threshold_on=cfg["decisions.beat_threshold_on"],
                   threshold_off=cfg["decisions.beat_threshold_off"],
                   decision_s=cfg["decisions.beat_decision_ms"] / 1000.0)

    def reset(self) -> None:
        self._filled = self._pos = 0
        self._silent_ring = [0.0] * self.k
        self._silent_sum = 0.0
        self.active = False

    def _emit(self) -> dict:
        self._emitted = True
        mean = self._sum / max(self._hit_frames, 1)
        best = int(self.sound[np.argmax(mean[self.sound])])
        return _event("beat", self.labels[best], mean[best], self._onset)

    def update(self, t: float, posteriors: np.ndarray) -> list[dict]:
        """One frame: ``t`` its start in the stream (s), ``posteriors`` over ``labels``.

        Runs every 16 ms on the device: the smoothing is a running sum of the silent share
        (plain floats), so a frame of silence costs a couple of microseconds."""
        p = posteriors
        pos = self._pos
        silent_now = float(p[self.silent])
        self._silent_sum += silent_now - self._silent_ring[pos]
        self._silent_ring[pos] = silent_now
        self._window[pos] = p
        self._times[pos] = t
        self._pos = (pos + 1) % self.k
        if self._filled < self.k:
            self._filled += 1
        share = 1.0 - self._silent_sum / self._filled
        events = []
        if not self.active:
            if share >= self.on:
                self.active, self._emitted = True, False
                self._sum[:] = 0.0
                self._hit_frames = 0
                # The onset: the first frame in the window that already sounded.
                order = [(self._pos + i) % self.k for i in range(self.k)][self.k - self._filled:]
                starts = [self._times[i] for i in order if 1.0 - self._window[i, self.silent] > self.off]
                self._onset = starts[0] if starts else t
                for i in order:
                    if self._times[i] >= self._onset:
                        self._sum += self._window[i]
                        self._hit_frames += 1
                if self._hit_frames >= self.decision_frames:
                    events.append(self._emit())
            return events
        if share < self.off:
            self.active = False
            if not self._emitted:
                events.append(self._emit())
            return events
        if not self._emitted:
            self._sum += p
            self._hit_frames += 1
            if self._hit_frames >= self.decision_frames:
                events.append(self._emit())
        return events


class SoundTracker(_HysteresisTracker):
    """Sound events from the classifier stage's voted posteriors: one ``sound`` event per
    sustained sound, however many runs it spans.

    Each update is one classifier run: the mean posterior of the non-silent segments of the
    recent audio (zeros when every segment was near-silent, which lets an active sound end).
    Updates are averaged over the last ``smoothing_s`` of audio (`PosteriorSmoother`). A sound
    starts when the smoothed best class reaches ``threshold_on`` and is not the active one; the
    active sound lasts until its own smoothed posterior falls below ``threshold_off``, so a dog
    barking for five seconds (ten runs at a 0.5 s stride) is one event, and a bark that wavers
    around one threshold is still one. The event carries the label, the smoothed posterior and
    the ``t_audio_s`` of the run that started it. No event marks the end. A class named
    ``_other_`` (`device.sound.OTHER`: speech, music, anything else) wins like any class but
    raises no event.

    Usage: ``st = SoundTracker.from_config(cfg, labels); events = st.update(t, voted)``.

    Parameters
    ----------
    labels : sequence of str
        The classifier's classes (from its manifest).
    smoothing_s : float
        Seconds of runs averaged: longer = fewer one-run false events, later events.
    threshold_on, threshold_off : float
        ``threshold_off <= threshold_on``; the gap is the hysteresis.
    """

    kind = "sound"

    @classmethod
    def from_config(cls, cfg, labels: Sequence[str]) -> "SoundTracker":
        """``[decisions] sound_*`` settings."""
        return cls(labels, smoothing_s=cfg["decisions.sound_smoothing_ms"] / 1000.0,
                   threshold_on=cfg["decisions.sound_threshold_on"],
                   threshold_off=cfg["decisions.sound_threshold_off"])

    def __init__(self, labels: Sequence[str], **kwargs):
        super().__init__(labels, **kwargs)
        self._other = self.labels.index(OTHER) if OTHER in self.labels else -1

    def reset(self) -> None:
        self.smoother.reset()
        self.current = None

    def update(self, t: float, posteriors: Sequence[float]) -> list[dict]:
        """One classifier run at audio time ``t``: its voted posteriors (zeros: silence)."""
        p = self.smoother.update(t, posteriors)
        if self.current is not None:
            if p[self.current] >= self.off:
                return []
            self.current = None
        best = int(np.argmax(p))
        if p[best] >= self.on and best != self._other:
            self.current = best
            return [_event("sound", self.labels[best], p[best], t)]
        return []
