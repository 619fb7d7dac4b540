"""Capture supervision: what `Pipeline.run` does about a source that misbehaves.

A microphone on a Pi fails in two ways, and neither may go unnoticed:

* it **stalls** — unplugged, an ALSA error — and delivers nothing. A real-time source silent for
  ``runtime.capture_stall_s`` is reported (``capture_stalled``) and reopened (its ``restart()``),
  again every period until audio flows; then ``capture_resumed`` is reported.
* it **overruns** — the pipeline fell behind and the ring buffer dropped its oldest audio. The
  lost samples still count in stream time (events keep their true ``t_audio_s``), the stages are
  told (``on_gap``: their streaming state no longer joins up) and an ``overrun`` is reported, at
  most once per second of stream time so a long overload does not flood the sinks.

Usage (what `device.pipeline.Pipeline.run` does)::

    watch = CaptureSupervisor(source, stall_s=2.0, report=pipeline.emit_status)
    while (hop := source.read(n)) is not None:
        if len(hop) == 0:
            watch.silent(); continue
        lost = watch.delivered()            # samples dropped since the last hop (0 mostly)
        if lost: ...; watch.report_overrun(t_audio_s)
"""
from __future__ import annotations

import logging
import time
from typing import Callable

__all__ = ["CaptureSupervisor"]

log = logging.getLogger("hopwise.capture")


class CaptureSupervisor:
    """Stall detection, reopening and overrun accounting for one audio source.

    Parameters
    ----------
    source : device.audio_source.AudioSource
        Read by the caller; this object looks at its ``realtime``, ``dropped_samples``,
        ``overruns`` and calls its optional ``restart()``.
    stall_s : float
        Silence (wall time) after which a real-time source counts as stalled, and the period of
        reopening attempts. Shorter notices an unplugged microphone sooner, but a reopen costs
        a device open/close in the capture path.
    report : callable(label, **extra)
        How a status is reported (the pipeline's ``emit_status``).
    clock : callable() -> float
        Monotonic seconds (replaceable for tests).
    """

    def __init__(self, source, *, stall_s: float, report: Callable[..., object],
                 clock: Callable[[], float] = time.monotonic):
        self.source = source
        self.stall_s = float(stall_s)
        self.report = report
        self.clock = clock
        self.stalled = False
        self._dropped = source.dropped_samples
        self._last_audio = self._last_try = clock()
        self._next_overrun_report_s = 0.0

    def silent(self) -> None:
        """A read returned no samples: report and reopen a real-time source silent too long."""
        now = self.clock()
        if not self.source.realtime or now - max(self._last_audio, self._last_try) < self.stall_s:
            return
        self._last_try = now
        if not self.stalled:
            self.stalled = True
            log.error("no audio for %.1f s: capture stalled", now - self._last_audio)
            self.report("capture_stalled", silent_s=round(now - self._last_audio, 1))
        restart = getattr(self.source, "restart", None)
        if restart is not None:
            try:
                restart()
            except Exception as exc:  # noqa: BLE001 - retried next period
                log.error("reopening the capture device failed: %s", exc)

    def delivered(self) -> int:
        """A read returned samples: report a resumed capture; return the samples the source
        dropped since the last call (an overrun before this hop), 0 when none."""
        self._last_audio = self.clock()
        if self.stalled:
            self.stalled = False
            self.report("capture_resumed")
        lost = self.source.dropped_samples - self._dropped
        self._dropped = self.source.dropped_samples
        return lost

    def report_overrun(self, t_audio_s: float) -> None:
        """Report the overrun `delivered` found, at most once per second of stream time."""
        if t_audio_s < self._next_overrun_report_s:
            return
        self._next_overrun_report_s = t_audio_s + 1.0
        log.warning("audio overrun: %d samples lost so far (%d overruns)", self._dropped,
                    self.source.overruns)
        self.report("overrun", overruns=self.source.overruns, dropped_samples=self._dropped)
