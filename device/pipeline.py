"""The streaming pipeline: audio in, hop by hop through the stages, events out.

Embedding hopwise in a Python program — push audio blocks of any length, get events back::

    from device.config import load_config
    from device.pipeline import Pipeline

    cfg = load_config("default", ["stages.multitask.model=build/export/multitask_int8.tflite"])
    pipe = Pipeline.from_config(cfg)      # no sinks: events are only returned
    for block in blocks:                  # float32 (or int16) mono at cfg["pipeline.rate"]
        for event in pipe.push(block):    # any length: re-chunked into 10 ms hops
            print(event["type"], event["label"], event["t_audio_s"])
    pipe.close()

Running it as the device does — a source until it ends or `stop()`, events to the sinks::

    pipe = Pipeline.from_config(cfg, sinks=build_sinks(cfg))          # device.sinks
    pipe.run(FileSource("x.flac", rate=pipe.rate))   # or SoundDeviceSource(...)
    pipe.close()                                     # a final status, flushes the sinks

Every hop (``pipeline.hop_ms``, 10 ms at 16 kHz) `process_hop` runs the due stages in order
(`device.stages`), times them against the hop budget and sheds or restores stages
(`device.budget`), then stamps each event raised on the hop (wall time, sequence number,
device id), sends it to the sinks and returns it; a ``status`` heartbeat goes out after the
first hop (so whoever started the service, e.g. a deploy, knows at once that audio flows through
every stage) and then every ``runtime.status_interval_s`` of audio. `run` reads hops from an audio source and watches it
for stalls and overruns (`device.supervision`).

Block processing: `run` takes up to ``pipeline.block_hops`` hops per read (what a real-time
source has buffered, never waiting for more) and `push` cuts its input into such blocks;
`process_block` lets the stages that can (a ``logmel`` on the raw audio) do the whole block's
work in one call, then runs every hop as `process_hop` always has: the same stages due on the
same hops, the same posteriors and events at the same ``t_audio_s``, per-hop timings kept. Every setting comes from the profile
(`PipelineSettings.from_config`): the code holds none of its own.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Iterable, Sequence

import numpy as np

from .budget import BudgetSettings, HopBudget
from .config import ConfigError
from .faults import StageFaults
from .frontend import as_float_audio
from .stages import HopContext, Stage, build_stage, check_wiring, stage_class
from .stages.model import TFLiteModelStage
from .status import PipelineSnapshot, status_report
from .supervision import CaptureSupervisor

__all__ = ["DETECTION_TYPES", "Pipeline", "PipelineSettings"]

# Every type of event a stage raises (``status`` is the pipeline's own): what `detect` prints
# and the deploy self-check compares. A new event type is added here.
DETECTION_TYPES = ("wake", "command", "scene", "beat", "sound")

log = logging.getLogger("hopwise.pipeline")


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything a `Pipeline` needs besides its stages, read from the profile.

    Attributes
    ----------
    rate : int
        ``pipeline.rate``: what sources deliver, Hz.
    hop_ms : float
        ``pipeline.hop_ms``: the pipeline clock. Shorter = finer event times, more per-hop
        overhead; the keyword frontend's hop is the natural choice.
    device_id : str
        ``project.device_id``, put in every event.
    status_interval_s : float
        ``runtime.status_interval_s``: heartbeat period in audio time (0 = none). The first
        heartbeat comes after the first hop, whatever the period.
    capture_stall_s : float
        ``runtime.capture_stall_s``: see `device.supervision.CaptureSupervisor`.
    flush_timeout_s : float
        ``runtime.flush_timeout_s``: how long `Pipeline.close` waits for the sinks.
    stage_failure_limit : int
        ``runtime.stage_failure_limit``: see `device.faults.StageFaults`.
    budget : device.budget.BudgetSettings
        ``runtime.*`` hop budget and shedding.
    block_hops : int
        ``pipeline.block_hops``: at most this many hops taken from the source in one read and
        passed through the block-capable stages in one call (`Pipeline.process_block`).
    """

    rate: int
    hop_ms: float
    device_id: str
    status_interval_s: float
    capture_stall_s: float
    flush_timeout_s: float
    stage_failure_limit: int
    budget: BudgetSettings
    block_hops: int = 1

    @classmethod
    def from_config(cls, cfg, *, shedding: bool | None = None) -> "PipelineSettings":
        """From ``[pipeline]``, ``[runtime]`` and ``project.device_id``; ``shedding`` overrides
        ``runtime.shedding`` (``detect`` turns it off for as-fast-as-possible replay)."""
        budget = BudgetSettings.from_config(cfg)
        if shedding is not None:
            budget = dataclasses.replace(budget, shedding=bool(shedding))
        return cls(rate=int(cfg["pipeline.rate"]), hop_ms=float(cfg["pipeline.hop_ms"]),
                   device_id=str(cfg["project.device_id"]),
                   status_interval_s=float(cfg["runtime.status_interval_s"]),
                   capture_stall_s=float(cfg["runtime.capture_stall_s"]),
                   flush_timeout_s=float(cfg["runtime.flush_timeout_s"]),
                   stage_failure_limit=int(cfg["runtime.stage_failure_limit"]), budget=budget,
                   block_hops=int(cfg["pipeline.block_hops"]))


class Pipeline:
    """Ordered stages over a hop clock, with budget accounting, shedding and event fan-out.

    Build it with `from_config` (the profile's ``[pipeline] stages``), or from stages you made
    (`device.stages.build_stage`) and `PipelineSettings.from_config(cfg)`. Then feed it with
    `push` (any block size), `process_hop` (exactly one hop) or `run` (an audio source).

    Parameters
    ----------
    stages : sequence of Stage
        In processing order; checked at once: every stream a stage consumes must be emitted by
        an earlier stage (`device.stages.check_wiring`).
    settings : PipelineSettings
    sinks : device.sinks.SinkSet or None
        Where events go (None: they are only returned, and kept when ``keep_events``).
    keep_events : bool
        Keep every emitted event in ``self.events`` (tests, ``detect``). Memory grows with the
        run: leave it off on the device.
    sequence : device.sequence.SequenceStore or None
        Where event ``seq`` numbers come from: a store in the state directory keeps them unique
        across restarts (``python -m device run``); None counts from 0 (a file's ``detect``).
    """

    def __init__(self, stages: Sequence[Stage], settings: PipelineSettings, *, sinks=None,
                 keep_events: bool = False, sequence=None):
        self.stages = list(stages)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names repeat in pipeline.stages: {names}")
        check_wiring(self.stages)
        self.settings = settings
        self.rate = int(settings.rate)
        self.hop = int(round(self.rate * settings.hop_ms / 1000.0))
        self.hop_s = self.hop / self.rate
        self.budget = HopBudget(self.stages, settings.budget, hop_samples=self.hop, rate=self.rate)
        self.sinks = sinks
        self.keep_events = keep_events
        self.events: list[dict] = []
        self.event_counts: dict[str, int] = {}
        self.hops = 0
        self.samples_in = 0
        self.seq = 0                               # events emitted by this process
        self.sequence = sequence                   # device.sequence.SequenceStore or None
        self.data: dict = {}                       # the streams, kept across hops
        self.source = None
        self._lost_samples = 0
        self._pending = np.zeros(0, np.float32)    # push(): samples short of a whole hop
        self.started_monotonic = time.monotonic()
        # The first heartbeat goes out after the first hop: a deploy waiting for it (journal,
        # stdout or MQTT) confirms in seconds instead of one whole status_interval_s (30 s).
        self._next_status = 0.0 if settings.status_interval_s > 0 else float("inf")
        self._stop = threading.Event()
        self._raised: list[dict] = []              # status events raised inside a hop
        self.faults = StageFaults(settings.stage_failure_limit,
                                  lambda label, **kw: self._raised.append(self.emit_status(label, **kw)))
        self.block_hops = max(1, int(settings.block_hops))
        self._shedding = bool(settings.budget.shedding)   # balance() does nothing without it
        self._realtime = False                            # set by run() from its source
        self._schedule()

    def _schedule(self) -> None:
        """Which stages the hop loop runs, and on which hops (cProfile of a long ``detect``: the
        loop's own Python, per stage and hop, was as much as the stages' work).

        * Left out: an idle stage (`Stage.idle`: its model is missing), and a stage that raises
          no events and whose every reader is left out (the sound classifiers' log-mel when no
          classifier is built). They stay in ``self.stages`` (status, `on_gap`, `close`).
        * A stage that works only on hops where its input is fresh (`Stage.follows_input`: the
          decisions) runs on its producer's hops (stride and phase) instead of every hop: the
          same calls that did anything, without the ones that returned at once (unless its
          section sets ``stride_hops`` itself).
        * ``self._due[h % period]``: the (stage, timings) pairs due on hop ``h``, computed once.
        """
        # Only a producer whose every reader is out goes out with them: one that no stage reads
        # at all stays (a program may read its stream from `Pipeline.data`).
        readers = {s.name: [r for r in self.stages
                            if set(r.consumes + r.reads_when_loaded) & set(s.emits)]
                   for s in self.stages}
        running = [s for s in self.stages if not s.idle()]
        while True:
            unread = [s for s in running if not s.raises_events and readers[s.name]
                      and not any(r in running for r in readers[s.name])]
            if not unread:
                break
            running = [s for s in running if s not in unread]
        self.left_out = [s.name for s in self.stages if s not in running]
        if self.left_out:
            log.debug("stages with nothing to do, left out of the hop loop: %s",
                     ", ".join(self.left_out))
        producers = {stream: s for s in running for stream in s.emits}
        for stage in running:
            if stage.follows_input and "stride_hops" not in stage.given and \
                    len(stage.consumes) == 1:
                producer = producers.get(stage.consumes[0])
                if producer is not None and producer.stride_hops > 1:
                    stage.set_schedule(producer.stride_hops, producer.phase)
        period = 1
        for stage in running:
            period = math.lcm(period, stage.stride_hops)
        if period > 10_000:   # unusual strides: a table that long is not worth it
            period = 0
        stats = self.budget.stage_stats
        pairs = [(s, stats[s.name]) for s in running]
        self._running = pairs
        self._period = period
        self._due = [tuple(p for p in pairs if h % p[0].stride_hops == p[0].phase)
                     for h in range(period)]
        self._due_sets = [frozenset(s for s, _ in due) for due in self._due]
        # Stages that take a block of hops at once (a `prepare_block` method, e.g. a logmel
        # on the raw audio); the others run hop by hop inside the block as before.
        self._block_stages = [s for s, _ in pairs
                              if callable(getattr(s, "prepare_block", None)) and s.block_capable()]
        # A block stage that only feeds others (a frontend) needs its streams up to date only on
        # the hops where one of its readers runs: on which hops of the period that is.
        for stage in self._block_stages:
            stage.readers_due = None
            if stage.raises_events or not period:
                continue
            readers = [r for r, _ in pairs if r is not stage
                       and set(r.consumes + r.reads_when_loaded) & set(stage.emits)]
            if not readers:     # read from outside (Pipeline.data): kept up to date every hop
                continue
            stage.readers_due = tuple(any(r.stride_hops and h % r.stride_hops == r.phase
                                          for r in readers) for h in range(period))
        self._ctx = HopContext(0, 0.0, np.zeros(0, np.float32), self.data)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg, *, sinks=None, model: str | None = None,
                    stage_names: Iterable[str] | None = None, shedding: bool | None = None,
                    keep_events: bool = False, persist_seq: bool = False) -> "Pipeline":
        """The profile's ``[pipeline] stages`` (or ``stage_names``), each built from its
        ``[stages.<name>]``.

        ``model`` (``--model``) replaces the model of the pipeline's one ``tflite_model`` stage;
        with several, set ``stages.<name>.model`` for each. ``shedding`` overrides
        ``runtime.shedding``. ``persist_seq`` keeps event sequence numbers in
        ``<runtime.state_dir>/event_seq`` (`device.sequence`), unique across restarts.
        """
        settings = PipelineSettings.from_config(cfg, shedding=shedding)
        names = list(stage_names or cfg["pipeline.stages"])
        extra: dict[str, dict] = {name: {} for name in names}
        if model is not None:
            models = [n for n in names if issubclass(stage_class(cfg, n), TFLiteModelStage)]
            if len(models) != 1:
                raise ConfigError(f"--model sets the model of the pipeline's one tflite_model "
                                  f"stage, but it has {len(models)} ({', '.join(models)}): set "
                                  f"stages.<name>.model=PATH for each instead")
            extra[models[0]]["model"] = str(model)
        hop_s = settings.hop_ms / 1000.0
        stages = [build_stage(name, cfg, settings.rate, hop_s, **extra[name]) for name in names]
        sequence = None
        if persist_seq:
            from .paths import BuildPaths
            from .sequence import SequenceStore
            sequence = SequenceStore(BuildPaths(cfg).state_dir / "event_seq")
        return cls(stages, settings, sinks=sinks, keep_events=keep_events, sequence=sequence)

    # ------------------------------------------------------------------ audio in
    @property
    def t_audio_s(self) -> float:
        """Stream time at the end of the last processed hop (counting audio lost to overruns)."""
        return (self.samples_in + self._lost_samples) / self.rate

    def push(self, samples: np.ndarray) -> list[dict]:
        """Feed a block of any length; return the events raised (already sent to the sinks).

        ``samples``: mono at the pipeline rate, float32 in [-1, 1] or integer PCM (int16 is
        scaled by 1/32768). Whole hops are processed at once; a remainder shorter than a hop is
        kept for the next call, so the events and their ``t_audio_s`` are those of the same
        audio pushed hop by hop.
        """
        x = as_float_audio(np.asarray(samples))
        if x.ndim != 1:
            raise ValueError(f"push takes mono samples (1-D), got shape {x.shape}; downmix first")
        if self._pending.size:
            x = np.concatenate([self._pending, x])
        whole = len(x) - len(x) % self.hop
        events = []
        step = self.hop * self.block_hops
        for start in range(0, whole, step):
            events.extend(self.process_block(x[start:min(start + step, whole)]))
        self._pending = x[whole:].copy()  # a copy: the caller may reuse its buffer
        return events

    def process_block(self, samples: np.ndarray, backlog: int = 0) -> list[dict]:
        """Run whole hops (``len(samples)`` a multiple of the hop); return the events raised.

        The block-capable stages (a logmel on the raw audio) do the whole block's work in one
        call first (`prepare_block`: the frontend costs a fraction per hop of what it costs one
        hop at a time); then every hop runs as `process_hop` runs it, so each stage is due on
        the same hops, the decisions see the same posteriors at the same stream times and the
        events carry the same ``t_audio_s`` as hop by hop. A block-capable stage's block cost is
        spread evenly over the block's hops in its timings.
        """
        hop = self.hop
        n = len(samples) // hop
        if n * hop != len(samples):
            raise ValueError(f"process_block takes whole hops ({hop} samples each), got "
                             f"{len(samples)} samples; push() takes any length")
        if n == 1:
            return self.process_hop(samples, backlog)
        shed, faults = self.budget.shed, self.faults
        idle: list = [None] * n      # per hop: the block stages with nothing to do on it
        stats_of, carried_s = self.budget.stage_stats, 0.0
        for stage in self._block_stages:
            if stage.name in shed or not faults.runs(stage):
                continue
            t0 = time.perf_counter()
            try:
                busy = stage.prepare_block(samples, n, self.hops)
            except Exception as exc:  # the stage then works hop by hop (its process pushes)
                stage.block_cost_s = 0.0
                self._count(f"error.{stage.name}")
                faults.failed(stage, exc, self.hops, self.t_audio_s)
                continue
            cost = time.perf_counter() - t0
            if busy is None:
                stage.block_cost_s = cost / n
                continue
            # Skipped on the hops where its process would only write empty streams (a log-mel
            # hop that completes no frame, an ESN hop that releases none): the loop's Python per
            # stage and hop is as much as such a call. The block's cost is spread over the rest.
            runs = 0
            for k, b in enumerate(busy):
                if b:
                    runs += 1
                elif idle[k] is None:
                    idle[k] = {stage}
                else:
                    idle[k].add(stage)
            if not runs:
                # Nothing to hand out on any hop (a frontend whose reader runs later, an ESN
                # block that completes no frame): its time goes into its timings and the
                # block's last hop now, without a call that would only put empty streams
                # (and keep that hop from being quiet).
                stats_of[stage.name].add(cost)
                carried_s += cost
                stage.block_cost_s = 0.0
                continue
            stage.block_cost_s = cost / runs
        out = []
        period, due_sets = self._period, self._due_sets
        try:
            for k in range(n):
                skip = idle[k]
                extra_s = carried_s if k == n - 1 else 0.0
                # A hop on which every due stage is a block stage with nothing to do (two of a
                # 40 ms block's four hops by default) only advances the clocks: what
                # process_hop would do with its stage loop empty, without setting it up.
                if skip is not None and period and due_sets[self.hops % period] <= skip:
                    out.extend(self._quiet_hop(backlog, extra_s))
                else:
                    out.extend(self.process_hop(samples[k * hop:(k + 1) * hop], backlog, skip,
                                                extra_s))
        finally:
            for stage in self._block_stages:
                stage.end_block()
        return out

    def process_hop(self, samples: np.ndarray, backlog: int = 0, idle=None,
                    extra_s: float = 0.0) -> list[dict]:
        """Run the due stages on exactly one hop; return the events raised (already sent).

        ``backlog``: captured samples not yet read (real-time sources), which counts as
        falling behind for shedding. ``idle``: stages to leave out on this hop (`process_block`:
        block stages whose `prepare_block` said they have nothing to do on it). ``extra_s``:
        stage time spent for this hop outside its loop (`process_block`: the block work of
        stages with nothing to hand out), counted into the hop's time.
        """
        if len(samples) != self.hop:
            raise ValueError(f"process_hop expects {self.hop} samples, got {len(samples)}; "
                             f"push() takes any length")
        self.samples_in += len(samples)
        hops = self.hops
        t_audio_s = (self.samples_in + self._lost_samples) / self.rate   # once, not per use
        # One context, reset each hop (its `data` is the pipeline's own streams anyway).
        ctx = self._ctx
        ctx.hop_index, ctx.t_audio_s, ctx.audio = hops, t_audio_s, samples
        ctx.fresh.clear()
        ctx.events.clear()
        total = extra_s
        faults = self.faults
        shed = self.budget.shed
        disabled = faults.disabled
        streak = faults.streak
        period = self._period
        due = self._due[hops % period] if period else \
            [p for p in self._running if hops % p[0].stride_hops == p[0].phase]
        perf_counter = time.perf_counter
        for stage, stats in due:
            if (shed and stage.name in shed) or (disabled and stage.name in disabled) or \
                    (idle and stage in idle):
                continue
            t0 = perf_counter()
            try:
                stage.process(ctx)
            except Exception as exc:  # reported once, counted, acted on (device.faults)
                self._count(f"error.{stage.name}")
                faults.failed(stage, exc, self.hops, ctx.t_audio_s)
            else:
                if streak and streak.get(stage.name):
                    faults.succeeded(stage, ctx.t_audio_s)
            dt = perf_counter() - t0 + stage.block_cost_s
            stats.add(dt)    # budget.record, without the call
            total += dt
        self.budget.end_hop(total)
        self.hops += 1
        return self._after_hop([self.emit(ev) for ev in ctx.events] if ctx.events else [],
                               t_audio_s, backlog)

    def _quiet_hop(self, backlog: int, extra_s: float = 0.0) -> list[dict]:
        """`process_hop` for a hop with no stage to run: the stream clock, the hop's time in the
        budget (``extra_s``, as `process_hop`), and what follows every hop (`_after_hop`)."""
        self.samples_in += self.hop
        t_audio_s = (self.samples_in + self._lost_samples) / self.rate
        self.budget.end_hop(extra_s)
        self.hops += 1
        return self._after_hop([], t_audio_s, backlog)

    def _after_hop(self, out: list, t_audio_s: float, backlog: int) -> list[dict]:
        """Every hop's end: status events raised inside it, the fault check, shedding and the
        heartbeat, appended to ``out`` (the hop's events, already sent)."""
        faults = self.faults
        if self._raised:
            out.extend(self._raised)
            self._raised = []
        if faults.fatal is not None:
            faults.check()  # an essential stage that keeps failing ends the run (exit code 1)
        if self._shedding:
            for change in self.budget.balance(t_audio_s, backlog, self._realtime):
                out.append(self._report_budget_change(change))
        if t_audio_s >= self._next_status:
            first = self._next_status == 0.0
            interval = self.settings.status_interval_s
            # then on the period's grid (interval, 2 * interval, ...), as before
            self._next_status = interval if first else self._next_status + interval
            out.append(self.emit_status("heartbeat", **({"first": True} if first else {})))
        return out

    def _report_budget_change(self, change: dict) -> dict:
        change = dict(change)
        label = change.pop("label")
        if label == "shed":
            log.warning("behind the hop budget (load %.2f, backlog %d samples): shedding stage %s",
                        change["load"], change["backlog_samples"], change["stage"])
        else:
            log.warning("caught up (load %.2f): restoring stage %s", change["load"], change["stage"])
        return self.emit_status(label, **change)

    # ------------------------------------------------------------------ events out
    def _count(self, key: str) -> None:
        self.event_counts[key] = self.event_counts.get(key, 0) + 1

    def emit(self, event: dict) -> dict:
        """Stamp (wall time, sequence number, device id) and send an event to the sinks."""
        ev = dict(event)
        ev.setdefault("t_audio_s", round(self.t_audio_s, 4))
        ev["t_wall"] = time.time()
        ev["seq"] = self.sequence.next() if self.sequence is not None else self.seq
        ev["device"] = self.settings.device_id
        self.seq += 1
        self._count(ev["type"] if ev["type"] != "status" else f"status.{ev['label']}")
        if self.keep_events:
            self.events.append(ev)
        if self.sinks is not None:
            self.sinks.send(ev)
        return ev

    def emit_status(self, label: str, **extra) -> dict:
        """A ``status`` event; heartbeats and the final one carry the full `status` report."""
        ev = {"type": "status", "label": label, "confidence": 1.0,
              "t_audio_s": round(self.t_audio_s, 4)}
        if label in ("heartbeat", "final"):
            ev["status"] = self.status()
        ev.update(extra)
        return self.emit(ev)

    def snapshot(self) -> PipelineSnapshot:
        """The pipeline's counters and timings now (what the status report is made of)."""
        b = self.budget
        return PipelineSnapshot(
            uptime_s=time.monotonic() - self.started_monotonic, hops=self.hops,
            hop_s=self.hop_s, t_audio_s=self.t_audio_s, busy_s=b.busy_s, load=b.load,
            hop=b.hop_stats.summary(), deadline_misses=b.hop_stats.misses,
            stages={name: st.summary() for name, st in b.stage_stats.items()},
            shed=sorted(b.shed), shed_events=b.shed_count, events=dict(self.event_counts),
            faults=self.faults.summary())

    def status(self) -> dict:
        """The status report: the snapshot, the source's and the sinks' health."""
        return status_report(self.snapshot(), self.source, self.sinks)

    # ------------------------------------------------------------------ running
    def stop(self) -> None:
        """Ask `run` to return after the current hop (safe from a signal handler)."""
        self._stop.set()

    def run(self, source, max_audio_s: float | None = None) -> dict:
        """Read hops from ``source`` until it ends, `stop` or ``max_audio_s``; return `status`.

        A real-time source that stalls is reported and reopened, an overrun is counted into
        stream time and reported (`device.supervision.CaptureSupervisor`).
        """
        if source.rate != self.rate:
            raise ValueError(f"source delivers {source.rate} Hz but the pipeline runs at "
                             f"{self.rate} Hz; open the source at the pipeline rate")
        self.source = source
        self._realtime = bool(source.realtime)
        self.started_monotonic = time.monotonic()
        self.emit_status("online", stages=[s.describe() for s in self.stages])
        source.start()
        watch = CaptureSupervisor(source, stall_s=self.settings.capture_stall_s,
                                  report=self.emit_status)
        # Several hops per read where the source offers it: as many as are there, up to
        # pipeline.block_hops (a real-time source never waits for a whole block).
        read_hops = getattr(source, "read_hops", None) if self.block_hops > 1 else None
        try:
            while not self._stop.is_set():
                hop = (read_hops(self.hop, self.block_hops, timeout=0.5) if read_hops
                       else source.read(self.hop, timeout=0.5))
                if hop is None:
                    break  # the source has ended
                if len(hop) == 0:
                    watch.silent()
                    continue
                lost = watch.delivered()
                if lost:  # an overrun: samples are missing before this hop
                    self._lost_samples += lost
                    for stage in self.stages:
                        stage.on_gap()
                    watch.report_overrun(self.t_audio_s)
                self.process_block(hop, backlog=source.backlog)
                if max_audio_s is not None and self.t_audio_s >= max_audio_s:
                    break
        finally:
            source.stop()
        return self.status()

    def close(self, flush_timeout_s: float | None = None) -> None:
        """Send a final status, flush and close the sinks (waiting up to ``flush_timeout_s``,
        default ``runtime.flush_timeout_s``), release the stages."""
        if self.sinks is not None:
            try:
                self.emit_status("final")
            finally:
                timeout = self.settings.flush_timeout_s if flush_timeout_s is None else flush_timeout_s
                self.sinks.close(timeout)
        for stage in self.stages:
            stage.close()
