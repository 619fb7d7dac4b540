"""The hop-budget report: what each part of the device pipeline costs against the hop budget.

    python -m device bench [--profile default] [--set bench.audio_s=60] [--model M] [--out DIR]

It runs wherever the device runs: on the host (``make bench``) and, from the deployed bundle, on
the Pi (``make bench TARGET=pi@host``, `benchmarks.hop_budget`). It needs only what the device
needs; the PNG is drawn where matplotlib is installed. What it measures, pinned to one core
(`one_core`):

* the profile's whole pipeline (``[pipeline] stages``, built as ``run`` builds it, shedding off)
  on ``bench.audio_s`` of synthetic audio (`scripted_tones`), as fast as it runs, or paced in
  real time with ``bench.realtime = true`` (what a stage with a worker thread needs: the idle
  time between hops; `measure_pipeline`): the real-time factor by CPU time (``process_time``: CPU seconds per
  second of audio) and by wall clock, the peak resident memory (VmHWM), and for every stage and
  model p50/p99 per invocation from the pipeline's own timing (`device.budget.HopBudget`);
* per event, ``bench.event_calls`` calls of each sink's ``send`` with nothing on the other end
  (`offline_sinks`) and of the serial codec (`measure_events`);
* the models' sizes and parameters (their manifests), and float vs int8 accuracy from the newest
  evaluation there is (`accuracy`).

Shares of the hop budget (one hop = ``pipeline.hop_ms``): ``share_p50`` / ``share_p99`` are one
invocation's time over one hop, what a stage takes of the hop it runs on; ``load`` is its time
per second of audio (mean time x invocations per second), its share of every hop once amortised
over its stride. The stages' loads add up to the pipeline's ``budget_use``; the real-time factor
adds what the hop loop itself costs.

`write_report` writes ``hop_budget.json``, ``hop_budget.md`` and ``hop_budget.png`` to
`device.paths.BuildPaths.bench_report_dir` (``build/reports/<profile>/``).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from .audio_source import SyntheticSource, Tone
from .config import REPO_ROOT
from .paths import BuildPaths, profile_tag, resolve_build_path
from .status import LatencyStats

__all__ = ["WAKE_HZ", "YES_HZ", "SIREN_HZ", "WORD_S", "scripted_tones", "one_core", "rss_mb",
           "measure_pipeline", "offline_sinks", "sample_event", "time_calls", "measure_events",
           "accuracy", "build_report", "write_report", "markdown", "run_report", "REPORT_NAME"]

log = logging.getLogger("hopwise.bench")

FORMAT = "hopwise-hop-budget"
VERSION = 1
REPORT_NAME = "hop_budget"           # hop_budget.json / .md / .png
WARMUP_CALLS = 20                    # untimed calls first: caches, lazy set-up, first allocations

# The scripted "words" of the benchmark audio. The hand-weighted tone model (export.standin) is
# built to recognise exactly these, so it takes them from here: one definition for both.
WAKE_HZ = 500.0
YES_HZ = 1500.0
SIREN_HZ = 3000.0
WORD_S = 0.5          # how long a "word" tone lasts


def scripted_tones(seconds: float) -> list[Tone]:
    """A wake word about every 4 s, a command 1.2 s after it, a siren now and then.

    Word ends fall at different phases of the model's 100 ms stride (steps of 37 ms), as real
    speech does, so latencies measured on it include the wait for the next model run.
    """
    tones = []
    t = 1.0
    k = 0
    while t + 3 < seconds:
        k += 1
        t = round(t + (0.037 * k) % 0.1, 4)
        tones += [Tone(t, t + WORD_S, WAKE_HZ, 0.3), Tone(t + 1.2, t + 1.2 + WORD_S, YES_HZ, 0.3)]
        if int(t) % 12 == 5:
            tones.append(Tone(t + 2.0, t + 3.8, SIREN_HZ, 0.3))
        t += 4.0
    return tones


# --------------------------------------------------------------------------- measuring
@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to one CPU (the lowest it may use) while the block runs.

    Yields the CPU's number, or None where the OS has no affinity call (the figures are then for
    whichever core the scheduler picks). One core is the device's budget: the Pi's other cores
    are for capture, the sinks' threads and whatever else the Pi does.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def rss_mb() -> dict:
    """This process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), in MB; empty
    where there is no ``/proc``."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def stats_ms(stats: LatencyStats) -> dict:
    """``n`` and p50/p99/max/mean in ms to 0.1 us, and the total in s. (`LatencyStats.summary`
    rounds to 1 us for log lines: too coarse for the codec's few microseconds.)"""
    return {"n": stats.count, "p50_ms": round(stats.percentile(50) * 1e3, 4),
            "p99_ms": round(stats.percentile(99) * 1e3, 4), "max_ms": round(stats.max_s * 1e3, 4),
            "mean_ms": round(stats.mean_s * 1e3, 5), "total_s": stats.total_s}


def _model_stages(pipe) -> list:
    from .stages.model import TFLiteModelStage
    return [s for s in pipe.stages if isinstance(s, TFLiteModelStage)]


def measure_pipeline(cfg, seconds: float, model: str | Path | None = None) -> dict:
    """Run the profile's pipeline on ``seconds`` of `scripted_tones`, as fast as it goes, pinned
    to one core, and say what it cost.

    Parameters
    ----------
    cfg : device.config.Config
        The profile: its ``[pipeline] stages``, each built from its ``[stages.<name>]``.
    seconds : float
        Audio to run. The percentiles rest on the invocations it gives (the model runs every
        ``stride_hops`` hops: 10 per second by default).
    model : path, optional
        ``--model``: the model of the pipeline's one ``tflite_model`` stage.

    Returns
    -------
    dict
        ``rtf`` (wall time / audio time) and ``rtf_cpu`` (process CPU time / audio time),
        ``audio_s``, ``wall_s``, ``cpu_s``, ``cpu`` (the core), ``loadavg``; ``stages`` (per
        stage, on the hops it ran: `stats_ms`) and ``hop`` (whole hops, with deadline
        ``misses``), ``deadline_misses``, ``budget_use`` (time in stages / audio time),
        ``events`` (emitted, by type), ``rss_mb`` (`rss_mb` after the run), ``backend`` (the
        TFLite interpreter), ``tensorflow_loaded``, ``stage_list`` and ``stage_info`` (name,
        type, kind, stride of each stage) and ``models`` (`model_info` of each model stage).
    """
    from .pipeline import Pipeline
    pipe = Pipeline.from_config(cfg, model=model, shedding=False)
    # bench.realtime: the audio arrives at its own pace, as from a microphone, so a stage's
    # worker thread has the idle time between hops that it has on the device
    source = SyntheticSource(scripted_tones(seconds), duration_s=seconds, rate=pipe.rate,
                             realtime=bool(cfg["bench.realtime"]))
    try:
        with one_core() as cpu:
            t0, c0 = time.perf_counter(), time.process_time()
            status = pipe.run(source)
            wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        memory = rss_mb()   # before anything else is loaded: the pipeline's own peak
        audio_s = status["audio_s"]
        budget = pipe.budget
        models = _model_stages(pipe)
        hop = stats_ms(budget.hop_stats)
        hop["misses"] = budget.hop_stats.misses
        return {
            "rtf": wall / audio_s, "rtf_cpu": cpu_s / audio_s, "audio_s": audio_s,
            "wall_s": wall, "cpu_s": cpu_s, "cpu": cpu,
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "stages": {name: stats_ms(st) for name, st in budget.stage_stats.items()},
            "hop": hop, "deadline_misses": budget.hop_stats.misses,
            "budget_use": budget.busy_s / audio_s, "events": dict(pipe.event_counts),
            "rss_mb": memory, "backend": models[0].model.backend if models else None,
            "tensorflow_loaded": any(m == "tensorflow" or m.startswith("tensorflow.")
                                     for m in sys.modules),
            "stage_list": [s.name for s in pipe.stages],
            "stage_info": [{"name": s.name, "type": s.type_name,
                            "kind": "model" if s in models else "stage",
                            "stride_hops": s.stride_hops,
                            "left_out": s.name in pipe.left_out} for s in pipe.stages],
            "models": [model_info(s) for s in models],
        }
    finally:
        pipe.close()


def model_info(stage) -> dict:
    """A model stage's file: size in bytes, parameters and variant (from its manifest, when the
    export wrote them), stride, input shape, interpreter, and its `accuracy`."""
    manifest = stage.model.manifest
    path = stage.model.path
    return {"stage": stage.name, "file": path.name, "path": str(path),
            "bytes": path.stat().st_size, "params": manifest.get("params"),
            "name": manifest.get("name"), "variant": manifest.get("variant"),
            "stride_hops": stage.stride_hops, "input_shape": list(stage.model.input_shape),
            "backend": stage.model.backend, "accuracy": accuracy(stage.cfg, manifest)}


def _timestamp(iso: str | None) -> float:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _same_model(path: str | None, manifest: Mapping) -> bool | None:
    """Whether the seed table's int8 file is this model (by sha256); None when it is gone. A
    variant retrained and exported after the table was made is another model."""
    from .manifest import sha256_file
    if not path or not Path(path).is_file():
        return None
    return sha256_file(path) == manifest.get("sha256")


def accuracy(cfg, manifest: Mapping) -> dict:
    """Float vs int8 accuracy of a model, from the newest evaluation there is.

    Two places hold both figures: the manifest's ``metrics`` (``test_float``/``test_int8``: the
    seed table's test accuracies, copied in at export; they travel to the Pi with the model) and
    the seed table itself (`BuildPaths.seed_table_report`, the row of the manifest's
    ``variant``; ``same_model`` says whether the file it evaluated is this model, by sha256).
    The newer one wins: the manifest's ``created_utc`` against the table's modification time. Every export also checks int8 against float on calibration examples
    (training data): that top-1 agreement is given as ``calibration_agreement`` when the
    manifest has it.

    Returns
    -------
    dict
        ``status`` ("measured" or "no evaluation yet"), ``variant``, and when measured
        ``source``, ``evaluated_utc``, ``float`` and ``int8`` (``{test set: accuracy}``).
    """
    found = []
    metrics = manifest.get("metrics") or {}
    if metrics.get("test_float") and metrics.get("test_int8"):
        found.append((_timestamp(manifest.get("created_utc")), {
            "source": f"{manifest.get('_path', 'manifest')} metrics (from "
                      f"{metrics.get('source', 'the seed table')}, at export)",
            "float": dict(metrics["test_float"]), "int8": dict(metrics["test_int8"])}))
    variant = manifest.get("variant")
    table = BuildPaths(cfg).seed_table_report()
    if variant and table.is_file():
        try:
            row = json.loads(table.read_text()).get("variants", {}).get(variant) or {}
        except (OSError, ValueError) as exc:
            log.warning("seed table %s cannot be read (%s): its accuracies are left out", table, exc)
            row = {}
        if row.get("float") and row.get("int8"):
            found.append((table.stat().st_mtime, {
                "source": str(table),
                "float": {k: v["accuracy"] for k, v in row["float"].items()},
                "int8": {k: v["accuracy"] for k, v in row["int8"].items()},
                "same_model": _same_model(row.get("int8_file"), manifest)}))
    out: dict = {"status": "no evaluation yet", "variant": variant}
    if found:
        when, newest = max(found, key=lambda item: item[0])
        out.update(status="measured", evaluated_utc=datetime.fromtimestamp(
            when, timezone.utc).isoformat(timespec="seconds"), **newest)
    agreement = (manifest.get("int8_vs_float_on_calibration") or {}).get("argmax_agreement")
    if agreement:
        out["calibration_agreement"] = dict(agreement)
    return out


class _NullPort:
    """A serial port that takes every byte and never answers: the bridge link's send path with
    no microcontroller on the line."""

    def write(self, data: bytes) -> int:
        return len(data)

    def read(self, size: int = 1) -> bytes:
        return b""

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Hold back the warnings of sinks that have nothing on the other end: an unreachable
    broker and unacknowledged serial events are what the timing set up, not news."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


@contextlib.contextmanager
def offline_sinks(cfg, folder: Path, max_events: int) -> Iterator[dict]:
    """Every sink kind, built with the profile's settings and nothing on the other end, so that
    ``send`` — what the pipeline's thread pays per event — can be timed without a network.

    * ``stdout``: JSON lines into /dev/null;
    * ``logfile``: the rotating file, under ``folder`` (``sinks.logfile`` sizes);
    * ``serial``: the bridge link (framing, queueing, writing) over a port that takes every
      byte; retransmission and heartbeats are off, and the queue holds ``max_events``, since
      no microcontroller acknowledges anything;
    * ``mqtt``: the on-disk queue under ``folder`` with the broker refusing connections (the
      publishing happens on the sink's own thread, against a real broker in
      benchmarks/bench_pipeline.py). Without paho-mqtt the entry is the reason instead.

    Yields ``{kind: sink, or the reason it could not be built}``; closes them all at the end.
    """
    from firmware_bridge.link import BridgeLink
    from .sinks import LogFileSink, StdoutSink
    from .sinks.serial import SerialSink, bridge_labels

    sinks: dict = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet("hopwise.sinks.mqtt", "firmware_bridge.link"))
        devnull = stack.enter_context(open(os.devnull, "w", encoding="utf-8"))
        sinks["stdout"] = StdoutSink(stream=devnull)
        sinks["logfile"] = LogFileSink(folder / "events.jsonl", cfg["sinks.logfile.max_bytes"],
                                       cfg["sinks.logfile.backup_count"])
        sinks["serial"] = SerialSink(
            "null", cfg["sinks.serial.baudrate"], labels=bridge_labels(cfg),
            queue_size=max_events + 1, retransmit_ms=10**9, heartbeat_s=0.0,
            link_factory=lambda port, **kw: BridgeLink(
                port, serial_factory=lambda _port, _baud: _NullPort(), **kw))
        try:
            from .sinks.mqtt import MqttSink
            refusing = stack.enter_context(socket.socket())
            refusing.bind(("127.0.0.1", 0))   # bound, never listening: a connect is refused
            sinks["mqtt"] = MqttSink("127.0.0.1", refusing.getsockname()[1],
                                     device_id=cfg["project.device_id"],
                                     topic_prefix=cfg["sinks.mqtt.topic_prefix"],
                                     qos=cfg["sinks.mqtt.qos"], state_dir=folder / "mqtt",
                                     reconnect_min_s=60.0, reconnect_max_s=60.0)
        except ImportError as exc:
            sinks["mqtt"] = f"paho-mqtt is not installed ({exc})"
        for sink in sinks.values():
            if not isinstance(sink, str):
                stack.callback(sink.close, 0.0)   # before /dev/null and the socket close
        yield sinks


def sample_event(cfg) -> dict:
    """A wake event as the pipeline stamps it (`device.pipeline.Pipeline.emit`): what a sink
    is given."""
    return {"type": "wake", "label": cfg["labels.wake_word"], "confidence": 0.9312,
            "t_audio_s": 123.45, "t_wall": time.time(), "seq": 1,
            "device": cfg["project.device_id"]}


def time_calls(fn: Callable[[], object], calls: int, warmup: int = WARMUP_CALLS) -> LatencyStats:
    """``calls`` timed calls of ``fn`` (after ``warmup`` untimed ones), each on its own."""
    for _ in range(warmup):
        fn()
    stats = LatencyStats(window=calls)
    clock = time.perf_counter
    for _ in range(calls):
        t0 = clock()
        fn()
        stats.add(clock() - t0)
    return stats


def measure_events(cfg, calls: int) -> dict:
    """What one event costs the pipeline's thread, pinned to one core: each `offline_sinks`
    sink's ``send`` and the serial codec's encode and decode of an event frame.

    Returns ``{name: stats_ms(...)}`` (``sink <kind>``, ``codec encode``, ``codec decode``, and
    ``timer floor``: an empty call, what the clock and the call itself add to each figure), or
    ``{"skipped": reason}`` for a sink that could not be built.
    """
    from firmware_bridge.codec import Decoder, Event, confidence_to_q16, encode

    event = sample_event(cfg)
    out = {}
    with tempfile.TemporaryDirectory(prefix="hopwise-bench-") as tmp, \
            offline_sinks(cfg, Path(tmp), calls + WARMUP_CALLS) as sinks, one_core():
        for kind, sink in sinks.items():
            if isinstance(sink, str):
                out[f"sink {kind}"] = {"skipped": sink}
            else:
                out[f"sink {kind}"] = stats_ms(time_calls(lambda s=sink: s.send(event), calls))
        frame_of = Event(1, "wake", 0, confidence_to_q16(0.93), 123_450, True)
        frame = encode(frame_of)
        decoder = Decoder()   # the link keeps one: this is the per-frame cost it pays
        out["codec encode"] = stats_ms(time_calls(lambda: encode(frame_of), calls))
        out["codec decode"] = stats_ms(time_calls(lambda: decoder.feed(frame), calls))
        # What timing a call that does nothing reads: the floor under every figure above.
        out["timer floor"] = stats_ms(time_calls(lambda: None, calls))
    return out


# --------------------------------------------------------------------------- the report
def _machine() -> dict:
    """Where the figures were measured: host, OS, CPU model, cores, Python and numpy."""
    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            # x86 names the CPU in "model name"; a Raspberry Pi names the board in "Model"
            if key.strip() in ("model name", "Model") and value.strip():
                cpu_model = value.strip()
                if key.strip() == "Model":
                    break
    except OSError:
        pass
    return {"host": platform.node(), "system": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "cpu_model": cpu_model, "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__}


def _bundle_profile() -> str | None:
    """The profile a deployed bundle was built from (its bundle.json), None in a checkout."""
    try:
        return json.loads((REPO_ROOT / "bundle.json").read_text()).get("profile")
    except (OSError, ValueError):
        return None


def check_models(cfg, model: str | Path | None = None) -> None:
    """Every model the pipeline will load exists, or a `FileNotFoundError` that says to build
    it (before anything is measured)."""
    from .stages import stage_class
    from .stages.model import TFLiteModelStage, model_path
    for name in cfg["pipeline.stages"]:
        if not issubclass(stage_class(cfg, name), TFLiteModelStage):
            continue
        section = cfg.get(f"stages.{name}", {}) or {}
        path = (resolve_build_path(cfg, model) if model else
                model_path(cfg, section.get("model", ""), section.get("fallback"), name))
        if not path.is_file():
            raise FileNotFoundError(f"no model at {path} for stage {name!r}: run `make train "
                                    f"export` first (or pass --model PATH)")


def _row(name: str, kind: str, stats: Mapping, per_s: float, hop_ms: float, **extra) -> dict:
    return {"name": name, "kind": kind, **extra, "runs": stats["n"],
            "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"],
            "mean_ms": stats["mean_ms"], "invocations_per_s": round(per_s, 4),
            "share_p50": round(stats["p50_ms"] / hop_ms, 6),
            "share_p99": round(stats["p99_ms"] / hop_ms, 6),
            "load": round(stats["mean_ms"] / 1e3 * per_s, 7)}


def build_report(cfg, model: str | Path | None = None, command: str | None = None) -> dict:
    """Measure everything the report holds (see the module docstring) and return it as a dict:
    the content of ``hop_budget.json``."""
    from .sinks.serial import BRIDGE_KINDS
    check_models(cfg, model)
    hop_ms = float(cfg["pipeline.hop_ms"])
    calls = int(cfg["bench.event_calls"])
    run = measure_pipeline(cfg, float(cfg["bench.audio_s"]), model)
    audio_s = run["audio_s"]
    stages = []
    for info in run["stage_info"]:
        st = run["stages"][info["name"]]
        stages.append(_row(info["name"], info["kind"], st, st["n"] / audio_s, hop_ms,
                           type=info["type"], stride_hops=info["stride_hops"],
                           **({"left_out": True} if info.get("left_out") else {})))
    stages.append(_row("whole hop", "hop", run["hop"], run["hop"]["n"] / audio_s, hop_ms,
                       type="pipeline", stride_hops=1))
    # How often each sink is called: the events the run emitted (the serial link takes only
    # the bridge kinds), so a sink's load is for this audio; its share is per event.
    events_per_s = sum(run["events"].values()) / audio_s
    bridge_per_s = sum(run["events"].get(k, 0) for k in BRIDGE_KINDS) / audio_s
    per_event = []
    timed = measure_events(cfg, calls)
    timer_floor_ms = timed.pop("timer floor")["p50_ms"]
    for name, st in timed.items():
        kind = name.split()[0]
        if "skipped" in st:
            per_event.append({"name": name, "kind": kind, "skipped": st["skipped"]})
            continue
        rate = bridge_per_s if name == "sink serial" or kind == "codec" else events_per_s
        per_event.append(_row(name, kind, st, rate, hop_ms))
    loadavg = run["loadavg"]
    return {
        "format": FORMAT, "version": VERSION, "profile": profile_tag(cfg),
        "bundle_profile": _bundle_profile(), "runtime_root": str(REPO_ROOT),
        "command": command,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**_machine(), "load_average": list(loadavg) if loadavg else None},
        "hop_ms": hop_ms, "hop_budget_ms": float(cfg["runtime.hop_budget_ms"]),
        "audio": {"seconds": audio_s, "what": "synthetic tones over noise "
                  "(device.bench.scripted_tones), " + (
                      "paced in real time (bench.realtime)" if cfg["bench.realtime"]
                      else "processed as fast as the pipeline runs")},
        "pipeline": {"stages": run["stage_list"], "rtf_cpu": run["rtf_cpu"], "rtf_wall": run["rtf"],
                     "cpu_s": run["cpu_s"], "wall_s": run["wall_s"], "cpu": run["cpu"],
                     "budget_use": run["budget_use"], "hops": run["hop"]["n"],
                     "deadline_misses": run["deadline_misses"], "events": run["events"],
                     "interpreter": run["backend"], "tensorflow_loaded": run["tensorflow_loaded"]},
        "memory": {"peak_rss_mb": run["rss_mb"].get("VmHWM"),
                   "rss_mb": run["rss_mb"].get("VmRSS")},
        "stages": stages, "event_calls": calls, "per_event": per_event,
        "timer_floor_ms": timer_floor_ms, "models": run["models"],
    }


def _pct(share: float) -> str:
    return f"{share * 100:.3g} %"


def _acc(value) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f} %"


def markdown(report: Mapping) -> str:
    """The report as Markdown: the summary, stages, per-event costs, models, accuracy."""
    m, p = report["machine"], report["pipeline"]
    profile = report.get("bundle_profile") or report["profile"]
    where = "the deployed bundle" if report.get("bundle_profile") else "a checkout"
    lines = [
        f"# Hop-budget report: profile `{profile}`", "",
        f"Measured {report['created_utc']} on `{m['host']}` ({m['machine']}, "
        f"{m.get('cpu_model') or 'CPU unknown'}, {m['cores']} cores, {m['system']}), Python "
        f"{m['python']}, interpreter `{p['interpreter']}`, from {where} "
        f"(`{report.get('command') or 'python -m device bench'}`).", "",
        f"The profile's pipeline ({' → '.join(p['stages'])}) ran on "
        f"{report['audio']['seconds']:.0f} s of {report['audio']['what']}, pinned to one core "
        f"(cpu {p['cpu']}); sinks and the serial codec were timed per event, "
        f"{report['event_calls']} calls each. Load average at the end: "
        f"{', '.join(f'{v:.2f}' for v in m['load_average'] or []) or 'unknown'}.", "",
        "| figure | value |", "|---|---|",
        f"| real-time factor, CPU time (CPU s per audio s, one core) | {p['rtf_cpu']:.4f} |",
        f"| real-time factor, wall clock | {p['rtf_wall']:.4f} |",
        f"| time in stages per audio s (sum of the stages' loads) | {p['budget_use']:.4f} |",
        f"| hop budget | {report['hop_ms']:g} ms (`pipeline.hop_ms`); {p['deadline_misses']} of "
        f"{p['hops']} hops over the {report['hop_budget_ms']:g} ms deadline "
        f"(`runtime.hop_budget_ms`) |",
        f"| peak resident memory | {report['memory']['peak_rss_mb']} MB (VmHWM after the run) |",
        f"| TensorFlow loaded | {'yes' if p['tensorflow_loaded'] else 'no'} |", "",
        "## Stages and models, per invocation", "",
        "| stage | type | runs | per s | p50 ms | p99 ms | p50 share of hop | p99 share of hop "
        "| load (share of every hop) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["stages"]:
        if r.get("left_out"):
            lines.append(f"| {r['name']} | {r['type']} | left out of the hop loop: its model is "
                         f"missing, or no running stage reads what it computes |||||||")
            continue
        lines.append(f"| {r['name']} | {r['type']} | {r['runs']} | {r['invocations_per_s']:g} | "
                     f"{r['p50_ms']:.4f} | {r['p99_ms']:.4f} | {_pct(r['share_p50'])} | "
                     f"{_pct(r['share_p99'])} | {_pct(r['load'])} |")
    lines += ["", "## Per event: sinks (nothing on the other end) and the serial codec", "",
              "| what | p50 ms | p99 ms | p50 share of hop | p99 share of hop | events per s "
              "in this audio | load |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["per_event"]:
        if "skipped" in r:
            lines.append(f"| {r['name']} | skipped: {r['skipped']} ||||||")
            continue
        lines.append(f"| {r['name']} | {r['p50_ms']:.4f} | {r['p99_ms']:.4f} | "
                     f"{_pct(r['share_p50'])} | {_pct(r['share_p99'])} | "
                     f"{r['invocations_per_s']:g} | {_pct(r['load'])} |")
    lines += ["", f"Each event figure is one call timed on its own: it includes about "
              f"{report['timer_floor_ms'] * 1e3:.2g} us (p50) that timing an empty call reads "
              f"here. pytest-benchmark's suites (`make bench`) time calls back to back in batches "
              f"and can read less for calls of a few microseconds."]
    lines += ["", "## Models", "", "| stage | file | bytes | parameters | variant | stride |",
              "|---|---|---:|---:|---|---:|"]
    for mod in report["models"]:
        lines.append(f"| {mod['stage']} | `{mod['file']}` | {mod['bytes']} | "
                     f"{mod['params'] if mod['params'] is not None else 'not in manifest'} | "
                     f"{mod['variant'] or '-'} | {mod['stride_hops']} hops |")
    lines += ["", "## Float vs int8 accuracy", ""]
    for mod in report["models"]:
        acc = mod["accuracy"]
        if acc["status"] != "measured":
            lines.append(f"- `{mod['file']}`: no evaluation yet (`make seed-table "
                         f"PROFILE={report['profile']}` measures float and int8 on the test "
                         f"split).")
        else:
            caveat = {False: " — **not this model's bytes**: the variant was retrained or "
                             "re-exported since; re-run the seed table",
                      None: " (the file it evaluated is gone: not checked against this model)"}
            lines += [f"- `{mod['file']}` (variant {acc.get('variant') or '-'}), from "
                      f"{acc['source']}, {acc['evaluated_utc']}"
                      f"{caveat.get(acc.get('same_model'), '')}:", "",
                      "  | test set | float | int8 |", "  |---|---:|---:|"]
            for name in acc["float"]:
                lines.append(f"  | {name} | {_acc(acc['float'][name])} | "
                             f"{_acc(acc['int8'].get(name))} |")
            lines.append("")
        if acc.get("calibration_agreement"):
            lines.append("  - export check, int8 vs float top-1 agreement on calibration "
                         "examples (training data): " + ", ".join(
                             f"{h} {_acc(v)}" for h, v in acc["calibration_agreement"].items()))
    lines += ["", "p50/p99: per invocation, on the invocations the run made (the last 6000 at "
              "most). Share of hop: that time over one hop (`pipeline.hop_ms`), what it takes of "
              "the hop it runs on. Load: mean time x invocations per second, its share of every "
              "hop once amortised over its stride. Real-time factor: the whole run's time over "
              "the audio's duration."]
    return "\n".join(lines) + "\n"


def plot(report: Mapping, path: Path) -> bool:
    """Horizontal bars of each stage's and per-event cost's share of the hop budget, p50 and
    p99, as a PNG (matplotlib, Agg). False, with a log line, where matplotlib is not installed
    (a Pi usually): the JSON and Markdown are the report then."""
    try:
        # Not an import statement: device/ never depends on a host package
        # (tests/test_architecture.py); the picture is drawn only where matplotlib happens to be.
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        log.info("matplotlib is not installed here: %s not drawn (the JSON and Markdown are "
                 "the report)", path.name)
        return False
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    rows = [r for r in (*report["stages"], *report["per_event"])
            if "skipped" not in r and not r.get("left_out")]
    names = [r["name"] for r in rows][::-1]
    p50 = np.array([r["share_p50"] for r in rows][::-1]) * 100
    p99 = np.array([r["share_p99"] for r in rows][::-1]) * 100
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.42 * len(rows)))
    ax.barh(y + 0.2, p50, height=0.4, label="p50", color="#4c72b0")
    ax.barh(y - 0.2, p99, height=0.4, label="p99", color="#dd8452")
    for yi, v in zip(y - 0.2, p99):
        ax.text(v, yi, f" {v:.3g} %", va="center", fontsize=7)
    ax.set_yticks(y, names)
    per_event = sum(1 for r in report["per_event"] if "skipped" not in r)
    if per_event:   # below the line: costs per event, not per hop
        ax.axhline(per_event - 0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"share of the {report['hop_ms']:g} ms hop budget, per invocation (%)")
    m, p = report["machine"], report["pipeline"]
    ax.set_title(f"hop budget, profile {report.get('bundle_profile') or report['profile']} on "
                 f"{m['host']} ({m['machine']}); RTF {p['rtf_cpu']:.4f} (CPU, one core)",
                 fontsize=9)
    ax.set_xlim(0, max(float(p99.max(initial=0)) * 1.25, 1e-3))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(report: dict, out_dir: Path) -> dict:
    """Write ``hop_budget.md``, ``hop_budget.png`` (when matplotlib is there) and
    ``hop_budget.json`` (which lists the files) to ``out_dir``; return ``{kind: path or None}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / f"{REPORT_NAME}.json", "markdown": out_dir / f"{REPORT_NAME}.md",
             "png": out_dir / f"{REPORT_NAME}.png"}
    files["markdown"].write_text(markdown(report), encoding="utf-8")
    if files["png"].exists():
        files["png"].unlink()   # an old picture must not pass for this run's
    if not plot(report, files["png"]):
        files["png"] = None
    report["files"] = {k: (v.name if v else None) for k, v in files.items()}
    files["json"].write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    return files


def run_report(cfg, model: str | Path | None = None, out_dir: str | Path | None = None,
               command: str | None = None) -> dict:
    """`build_report` then `write_report` into ``out_dir`` (default
    `BuildPaths.bench_report_dir`); returns the paths written."""
    report = build_report(cfg, model, command)
    out = Path(out_dir) if out_dir else BuildPaths(cfg).bench_report_dir()
    return write_report(report, out)
