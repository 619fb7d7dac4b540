"""The streaming pipeline: hop by hop through the stages, within the hop budget.

Usage::

    cfg = load_config("default", overrides=["stages.multitask.model=build/export/multitask_int8.tflite"])
    sinks = build_sinks(cfg)                       # device.sinks
    pipe = Pipeline.from_config(cfg, sinks=sinks)
    pipe.run(FileSource("x.flac", realtime=False)) # or SoundDeviceSource(...), until the end/stop()
    pipe.close()                                   # flushes and closes the sinks

Or push audio yourself: ``events = pipe.process_hop(samples)`` (one hop, float32).

Every hop (``pipeline.hop_ms``, 10 ms at 16 kHz) the due stages run in order (see
`device.stages`); each stage's time is measured (`LatencyStats`: p50/p99), and a hop whose total
time exceeds ``runtime.hop_budget_ms`` is a deadline miss. The *load* is the processing time of the
last ``runtime.load_window_hops`` hops over their audio duration (so a model that runs every 10th
hop is amortised). When the load rises above ``runtime.shed_above`` — or, in real time, the capture
backlog exceeds ``runtime.backlog_shed_hops`` hops — the lowest-priority non-essential stage is shed
(and a ``status`` event with label ``shed`` says so); when the load falls below
``runtime.restore_below`` with room for the shed stage's last measured cost, or after
``runtime.probe_after_s`` (doubling after each failed probe), it is restored (label ``restored``).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Iterable, Sequence

import numpy as np

from .config import ConfigError
from .stages import HopContext, Stage, build_stage, check_wiring, stage_class
from .stages.model import TFLiteModelStage
from .status import LatencyStats, status_report

__all__ = ["Pipeline"]

log = logging.getLogger("hopwise.pipeline")


class Pipeline:
    """Ordered stages over a hop clock, with budget accounting, shedding and event fan-out.

    Parameters
    ----------
    stages : list of Stage
        In processing order (producers before consumers).
    rate : int
        Pipeline sample rate (what sources deliver).
    hop_ms : float
        Hop length; with ``rate`` it sets samples per hop.
    sinks : device.sinks.SinkSet or None
        Where events go (None: events are only returned / collected in ``self.events``).
    budget_ms : float
        Per-hop deadline (usually = hop_ms).
    shedding : bool
        Allow shedding (off for as-fast-as-possible replay, where there is no deadline).
    shed_above, restore_below : float
        Load thresholds (fraction of real time). The gap avoids flapping.
    load_window_hops : int
        Hops the load is averaged over; at least the longest stride. Longer = steadier, slower
        to react.
    backlog_shed_hops : int
        Real-time sources: unprocessed captured audio (in hops) that also counts as behind.
    probe_after_s : float
        A shed stage is tried again after this long even if its cost looks too high (the
        overload may have been something else); the wait doubles after each failed try.
    status_interval_s : float
        Heartbeat period in audio time (0 = none).
    device_id : str
        Put in every event.
    keep_events : bool
        Keep every emitted event in ``self.events`` (tests, ``detect``).
    capture_stall_s : float
        A real-time source silent this long is reported (``capture_stalled``) and reopened
        (its ``restart()``), again every period until audio flows (``capture_resumed``).
    """

    def __init__(self, stages: Sequence[Stage], *, rate: int = 16000, hop_ms: float = 10.0,
                 sinks=None, budget_ms: float | None = None, shedding: bool = True,
                 shed_above: float = 0.9, restore_below: float = 0.6, load_window_hops: int = 50,
                 backlog_shed_hops: int = 20, probe_after_s: float = 10.0,
                 status_interval_s: float = 30.0, device_id: str = "hopwise",
                 keep_events: bool = False, capture_stall_s: float = 2.0):
        self.stages = list(stages)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        check_wiring(self.stages)
        self.rate = int(rate)
        self.hop = int(round(self.rate * hop_ms / 1000.0))
        self.hop_s = self.hop / self.rate
        self.budget_s = (budget_ms if budget_ms is not None else hop_ms) / 1000.0
        self.sinks = sinks
        self.shedding = shedding
        self.shed_above, self.restore_below = shed_above, restore_below
        self.load_window_hops = max(1, int(load_window_hops))
        self.backlog_shed_hops = backlog_shed_hops
        self.probe_after_s = probe_after_s
        self.status_interval_s = status_interval_s
        self.device_id = device_id
        self.keep_events = keep_events
        self.capture_stall_s = capture_stall_s
        self.events: list[dict] = []
        self.event_counts: dict[str, int] = {}
        self.stage_stats = {s.name: LatencyStats() for s in self.stages}
        self.hop_stats = LatencyStats(deadline_s=self.budget_s)
        self._recent = deque(maxlen=self.load_window_hops)
        self._recent_sum = 0.0
        self.load = 0.0
        self.shed: set[str] = set()
        self.shed_count = 0
        self._shed_at: dict[str, float] = {}
        self._probe_wait: dict[str, float] = {}
        self._hold = 0
        self.hops = 0
        self.samples_in = 0
        self.seq = 0
        self.data: dict = {}
        self.source = None
        self._lost_samples = 0
        self.started_monotonic = time.monotonic()
        self._next_status = status_interval_s if status_interval_s > 0 else float("inf")
        self._stop = threading.Event()
        self.on_event = None  # optional callable(event) after the sinks got it (benchmarks)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg, *, sinks=None, model: str | None = None,
                    stage_names: Iterable[str] | None = None, shedding: bool | None = None,
                    keep_events: bool = False) -> "Pipeline":
        """Build ``[pipeline] stages`` from the profile (``model`` overrides the model stages')."""
        p = cfg.get("pipeline", {}) or {}
        rate = int(p.get("rate", cfg["frontend.keyword.sample_rate"]))
        hop_ms = float(p.get("hop_ms", cfg["frontend.keyword.hop_ms"]))
        names = list(stage_names or p.get("stages", ["frontend", "multitask", "keywords", "scenes"]))
        extra = {name: {} for name in names}
        if model is not None:
            models = [n for n in names if issubclass(stage_class(cfg, n), TFLiteModelStage)]
            if len(models) != 1:
                raise ConfigError(f"--model sets the model of the pipeline's one tflite_model "
                                  f"stage, but it has {len(models)} ({', '.join(models)}): set "
                                  f"stages.<name>.model=PATH for each instead")
            extra[models[0]]["model"] = str(model)
        stages = [build_stage(name, cfg, rate, hop_ms / 1000.0, **extra[name]) for name in names]
        r = cfg.get("runtime", {}) or {}
        return cls(stages, rate=rate, hop_ms=hop_ms, sinks=sinks,
                   budget_ms=r.get("hop_budget_ms", hop_ms),
                   shedding=r.get("shedding", True) if shedding is None else shedding,
                   shed_above=r.get("shed_above", 0.9), restore_below=r.get("restore_below", 0.6),
                   load_window_hops=r.get("load_window_hops", 50),
                   backlog_shed_hops=r.get("backlog_shed_hops", 20),
                   probe_after_s=r.get("probe_after_s", 10.0),
                   status_interval_s=r.get("status_interval_s", 30.0),
                   device_id=cfg.get("project.device_id", "hopwise"), keep_events=keep_events,
                   capture_stall_s=r.get("capture_stall_s", 2.0))

    # ------------------------------------------------------------------ one hop
    @property
    def t_audio_s(self) -> float:
        """Stream time at the end of the last processed hop (counting audio lost to overruns)."""
        return (self.samples_in + self._lost_samples) / self.rate

    def process_hop(self, samples: np.ndarray, backlog: int = 0) -> list[dict]:
        """Run the due stages on one hop of audio; return the events raised (already sent)."""
        if len(samples) != self.hop:
            raise ValueError(f"process_hop expects {self.hop} samples, got {len(samples)}")
        self.samples_in += len(samples)
        ctx = HopContext(self.hops, self.t_audio_s, samples, self.data)
        total = 0.0
        for stage in self.stages:
            if stage.name in self.shed or not stage.due(self.hops):
                continue
            t0 = time.perf_counter()
            try:
                stage.process(ctx)
            except Exception:  # a broken stage must not stop the device; it is reported
                log.exception("stage %s failed on hop %d", stage.name, self.hops)
                self.event_counts[f"error.{stage.name}"] = self.event_counts.get(f"error.{stage.name}", 0) + 1
            dt = time.perf_counter() - t0
            self.stage_stats[stage.name].add(dt)
            total += dt
        self.hop_stats.add(total)
        self.hops += 1
        if len(self._recent) == self._recent.maxlen:
            self._recent_sum -= self._recent[0]
        self._recent.append(total)
        self._recent_sum += total
        self.load = self._recent_sum / (len(self._recent) * self.hop_s)
        out = [self.emit(ev) for ev in ctx.events]
        if self.shedding:
            out.extend(self._balance(backlog))
        if self.t_audio_s >= self._next_status:
            self._next_status += self.status_interval_s
            out.append(self.emit_status("heartbeat"))
        return out

    # ------------------------------------------------------------------ shedding
    def _stage_load(self, stage: Stage) -> float:
        st = self.stage_stats[stage.name]
        return st.percentile(50) / stage.stride_hops / self.hop_s if st.count else 0.0

    def _balance(self, backlog: int) -> list[dict]:
        if self._hold > 0:
            self._hold -= 1
            return []
        if len(self._recent) < self._recent.maxlen:
            return []
        behind = self.load > self.shed_above or (
            backlog > self.backlog_shed_hops * self.hop and self.source is not None
            and self.source.realtime)
        now = self.t_audio_s
        if behind:
            candidates = [s for s in self.stages if not s.essential and s.name not in self.shed]
            if candidates:
                victim = min(reversed(candidates), key=lambda s: s.priority)
                self.shed.add(victim.name)
                self.shed_count += 1
                self._shed_at[victim.name] = now
                self._hold = self.load_window_hops
                load = self.load
                log.warning("behind the hop budget (load %.2f, backlog %d samples): shedding "
                            "stage %s (priority %d)", load, backlog, victim.name, victim.priority)
                return [self.emit_status("shed", stage=victim.name, load=round(load, 3),
                                         backlog_samples=backlog,
                                         stage_cost=round(self._stage_load(victim), 3))]
            return []
        if not self.shed:
            return []
        best = max((s for s in self.stages if s.name in self.shed), key=lambda s: s.priority)
        wait = self._probe_wait.get(best.name, self.probe_after_s)
        fits = self.load + self._stage_load(best) < self.restore_below
        probe = now - self._shed_at[best.name] >= wait
        if not (fits or probe):
            return []
        self.shed.discard(best.name)
        self._hold = self.load_window_hops
        # A probe that fails gets shed again; wait longer next time. A fit resets the wait.
        self._probe_wait[best.name] = self.probe_after_s if fits else wait * 2
        log.warning("caught up (load %.2f): restoring stage %s", self.load, best.name)
        return [self.emit_status("restored", stage=best.name, load=round(self.load, 3),
                                 probe=not fits)]

    # ------------------------------------------------------------------ events
    def emit(self, event: dict) -> dict:
        """Stamp (wall time, sequence number, device id) and send an event to the sinks."""
        ev = dict(event)
        ev.setdefault("t_audio_s", round(self.t_audio_s, 4))
        ev["t_wall"] = time.time()
        ev["seq"] = self.seq
        ev["device"] = self.device_id
        self.seq += 1
        key = ev["type"] if ev["type"] != "status" else f"status.{ev['label']}"
        self.event_counts[key] = self.event_counts.get(key, 0) + 1
        if self.keep_events:
            self.events.append(ev)
        if self.sinks is not None:
            self.sinks.send(ev)
        if self.on_event is not None:
            self.on_event(ev)
        return ev

    def emit_status(self, label: str, **extra) -> dict:
        ev = {"type": "status", "label": label, "confidence": 1.0,
              "t_audio_s": round(self.t_audio_s, 4)}
        if label in ("heartbeat", "final"):
            ev["status"] = status_report(self, self.source, self.sinks)
        ev.update(extra)
        return self.emit(ev)

    def status(self) -> dict:
        return status_report(self, self.source, self.sinks)

    # ------------------------------------------------------------------ running
    def stop(self) -> None:
        """Ask `run` to return after the current hop (safe from a signal handler)."""
        self._stop.set()

    def run(self, source, max_audio_s: float | None = None) -> dict:
        """Pull hops from ``source`` until it ends, ``stop()`` or ``max_audio_s``; return status."""
        if source.rate != self.rate:
            raise ValueError(f"source delivers {source.rate} Hz but the pipeline runs at "
                             f"{self.rate} Hz; open the source at the pipeline rate")
        self.source = source
        self.started_monotonic = time.monotonic()
        self.emit_status("online", stages=[s.describe() for s in self.stages])
        source.start()
        lost = source.dropped_samples
        last_audio = last_try = time.monotonic()
        stalled = False
        next_overrun_report = 0.0
        try:
            while not self._stop.is_set():
                hop = source.read(self.hop, timeout=0.5)
                if hop is None:
                    break
                now = time.monotonic()
                if len(hop) == 0:
                    # No audio: a live device that stops delivering (unplugged, ALSA error) is
                    # reported and reopened every capture_stall_s until it delivers again.
                    if source.realtime and now - max(last_audio, last_try) >= self.capture_stall_s:
                        last_try = now
                        if not stalled:
                            stalled = True
                            log.error("no audio for %.1f s: capture stalled", now - last_audio)
                            self.emit_status("capture_stalled", silent_s=round(now - last_audio, 1))
                        restart = getattr(source, "restart", None)
                        if restart is not None:
                            try:
                                restart()
                            except Exception as exc:  # noqa: BLE001 - retried next period
                                log.error("reopening the capture device failed: %s", exc)
                    continue
                last_audio = now
                if stalled:
                    stalled = False
                    self.emit_status("capture_resumed")
                if source.dropped_samples != lost:  # an overrun: samples are missing before this hop
                    self._lost_samples += source.dropped_samples - lost
                    lost = source.dropped_samples
                    for stage in self.stages:
                        stage.on_gap()
                    if self.t_audio_s >= next_overrun_report:  # reported, at most once a second
                        next_overrun_report = self.t_audio_s + 1.0
                        log.warning("audio overrun: %d samples lost so far (%d overruns)",
                                    lost, source.overruns)
                        self.emit_status("overrun", overruns=source.overruns, dropped_samples=lost)
                self.process_hop(hop, backlog=source.backlog)
                if max_audio_s is not None and self.t_audio_s >= max_audio_s:
                    break
        finally:
            source.stop()
        return self.status()

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Send a final status, flush and close the sinks, release the stages."""
        if self.sinks is not None:
            try:
                self.emit_status("final")
            finally:
                self.sinks.close(flush_timeout_s)
        for stage in self.stages:
            stage.close()
