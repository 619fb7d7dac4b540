"""Device pipeline benchmarks: real-time factor, per-stage p50/p99, memory, wake -> MQTT latency.

Script mode (prints a table; what the README quotes)::

    .venv/bin/python benchmarks/bench_pipeline.py [--model build/export/multitask_int8.tflite]
                                                   [--seconds 120] [--no-latency]

pytest-benchmark mode::

    .venv/bin/python -m pytest benchmarks/bench_pipeline.py --benchmark-enable -p no:cacheprovider

What is measured, and how:

* **RTF**: by wall clock and by CPU time (``process_time``: what the pipeline itself used,
  robust to a shared machine); a worker process (no TensorFlow in it) runs every stage of the
  profile's ``[pipeline]`` on ``--seconds`` of synthetic audio (tones over noise) as fast as it
  can, pinned to one core: `device.bench.measure_pipeline`, which the hop-budget report
  (``python -m device bench``) uses too; RTF = wall time / audio time.
* **per stage**: p50/p99 of each stage's time on the hops it runs (the model every 10th hop),
  and of whole hops, from the pipeline's own `LatencyStats`.
* **RSS**: VmHWM (peak resident set) of that worker after the run: interpreter, numpy, soxr,
  paho, the model, the ring buffers.
* **wake -> MQTT**: a real mosquitto on a loopback port, the pipeline in *real-time* replay
  with an MQTT sink, and a subscriber in the same process. For each wake word the latency is the
  subscriber's receive time minus the wall time at which the word's last sample was pushed into
  the ring buffer. Split into the detection delay in the audio (event ``t_audio_s`` minus word end:
  model window + stride + smoothing) and the delivery delay (receive time minus the push of the
  sample at ``t_audio_s``: processing + sink queue + broker). Uses the hand-weighted tone model
  (`export.standin.build_tone_model`), whose "words" are known tones.

The cost model is the deployed ``export/multitask_int8.tflite`` under ``project.build_dir``
(`device.paths.BuildPaths`) when it exists, else a stand-in with the same DS-CNN layout and
random weights (`export.standin.build_standin_model`: same cost, meaningless posteriors).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from device.audio_source import SyntheticSource  # noqa: E402
from device.bench import WAKE_HZ, measure_pipeline, scripted_tones  # noqa: E402
from device.config import load_config  # noqa: E402
from device.paths import BuildPaths  # noqa: E402


def cost_model(tmp: Path) -> tuple[Path, str]:
    """The deployed model of the default profile (or its per-profile export), else a stand-in
    (which needs TensorFlow: a host without it, a Pi, gets ImportError)."""
    paths = BuildPaths(load_config("default"))
    for path in (paths.deployed_model("multitask"), paths.profile_export("multitask")):
        if path.exists() and path.with_suffix(".json").exists():
            return path, f"exported ({path})"
    from export.standin import build_standin_model
    return build_standin_model(tmp, load_config("default")), "stand-in (DS-CNN layout, random weights)"


# --------------------------------------------------------------------------- workers (no TF)
def worker_rtf(model: str, seconds: float) -> dict:
    return measure_pipeline(load_config("default"), seconds, model=model)


def worker_latency(model: str, port: int, seconds: float, overrides: list[str]) -> dict:
    import threading
    import paho.mqtt.client as mqtt
    from device.pipeline import Pipeline
    from device.sinks import SinkSet
    from device.sinks.mqtt import MqttSink

    received = []
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("hopwise/bench/wake", qos=1), ready.set())
    sub.on_message = lambda c, u, m: received.append((time.time(), json.loads(m.payload)))
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    ready.wait(5)
    time.sleep(0.2)

    cfg = load_config("default", [f"stages.multitask.model={model}", "project.device_id=bench",
                                  *overrides])
    with tempfile.TemporaryDirectory() as state:
        sink = MqttSink("127.0.0.1", port, device_id="bench", state_dir=state)
        deadline = time.monotonic() + 5
        while not sink.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        pipe = Pipeline.from_config(cfg, sinks=SinkSet([sink]))   # events reach us over MQTT
        tones = scripted_tones(seconds)
        src = SyntheticSource(tones, duration_s=seconds, realtime=True, block_ms=10)
        pushes = []  # (end sample, wall time of the push)
        src.on_block = lambda end, wall: pushes.append((end, wall))
        pipe.run(src)
        time.sleep(0.5)
        pipe.close(3)
    sub.loop_stop()
    sub.disconnect()

    ends = np.array([t.end_s for t in tones if t.freq_hz == WAKE_HZ])
    push_end = np.array([e for e, _ in pushes])
    push_wall = np.array([w for _, w in pushes])

    def pushed_at(t_s: float) -> float:
        i = int(np.searchsorted(push_end, int(round(t_s * 16000)), side="left"))
        return float(push_wall[min(i, len(push_wall) - 1)])

    rows = []
    for t_recv, ev in received:
        word_end = float(ends[np.argmin(np.abs(ends - ev["t_audio_s"] + 0.2))])
        rows.append({"word_end_s": word_end, "t_audio_s": ev["t_audio_s"],
                     "end_to_publish_ms": (t_recv - pushed_at(word_end)) * 1e3,
                     "detect_delay_ms": (ev["t_audio_s"] - word_end) * 1e3,
                     "delivery_ms": (t_recv - pushed_at(ev["t_audio_s"])) * 1e3})
    return {"words": len(ends), "received": len(received), "rows": rows}


# --------------------------------------------------------------------------- orchestration
def run_worker(*args: str, timeout: float = 600) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_latency(tone_model: Path, seconds: float, overrides: list[str]) -> dict:
    from benchmarks.mosquitto import Broker  # a throw-away mosquitto on a free loopback port
    with tempfile.TemporaryDirectory() as root:
        broker = Broker(Path(root)).start()
        try:
            return run_worker("latency", "--model", str(tone_model), "--port", str(broker.port),
                              "--seconds", str(seconds), "--set", json.dumps(overrides))
        finally:
            broker.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model for the RTF run (default: trained or stand-in)")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio for the RTF run")
    ap.add_argument("--latency-seconds", type=float, default=25.0, help="real-time audio per latency run")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--set", default="[]", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "rtf":
        print(json.dumps(worker_rtf(args.model, args.seconds)))
        return 0
    if args.worker == "latency":
        print(json.dumps(worker_latency(args.model, args.port, args.seconds, json.loads(args.set))))
        return 0

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            model, kind = Path(args.model), "given"
        else:
            model, kind = cost_model(tmp)
        r = run_worker("rtf", "--model", str(model), "--seconds", str(args.seconds))
        results["rtf"] = {**r, "model": str(model), "model_kind": kind}
        print(f"\nwhole pipeline, one core (cpu {r['cpu']}), {r['audio_s']:.0f} s of audio, model: {kind}")
        print(f"  stages: {', '.join(r['stage_list'])}; interpreter: {r['backend']}; "
              f"TensorFlow loaded: {r['tensorflow_loaded']}")
        print(f"  real-time factor  {r['rtf']:.4f} by wall clock, {r['rtf_cpu']:.4f} by CPU time   (aim <= 0.02)")
        print(f"  (load average during the run {r['loadavg'][0]:.1f} on {os.cpu_count()} cores: wall time "
              f"includes waiting for a shared core; CPU time is what the pipeline itself used)")
        print(f"  resident memory   {r['rss_mb'].get('VmHWM')} MB peak, {r['rss_mb'].get('VmRSS')} MB at the end   (aim <= 150)")
        print(f"  deadline misses   {r['deadline_misses']} of {r['hop']['n']} hops")
        print(f"\n  {'stage':<12}{'runs':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'mean ms':>10}")
        for name, s in {**r["stages"], "whole hop": r["hop"]}.items():
            print(f"  {name:<12}{s['n']:>8}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['max_ms']:>10.3f}{s['mean_ms']:>10.4f}")

        if not args.no_latency:
            from export.standin import build_tone_model
            cfg = load_config("default")
            tone = build_tone_model(tmp / "tone", cfg)
            results["latency"] = {}
            profile = (f"profile decisions (smoothing {cfg['decisions.smoothing_ms']} ms, min count "
                       f"{cfg['decisions.wake_min_count']})")
            for name, ov in ((profile, []),
                             ("heavier smoothing (smoothing 300 ms, min count 2)",
                              ["decisions.smoothing_ms=300", "decisions.wake_min_count=2"]),
                             ("no smoothing (smoothing 100 ms, min count 1)",
                              ["decisions.smoothing_ms=100", "decisions.wake_min_count=1"])):
                lat = measure_latency(tone, args.latency_seconds, ov)
                results["latency"][name] = lat
                rows = lat["rows"]
                print(f"\nwake word end -> MQTT message received (real mosquitto, real-time replay), {name}:")
                print(f"  wake words {lat['words']}, received {lat['received']}")
                if rows:
                    e2p = np.array([x["end_to_publish_ms"] for x in rows])
                    det = np.array([x["detect_delay_ms"] for x in rows])
                    dlv = np.array([x["delivery_ms"] for x in rows])
                    print(f"  end of word -> received: median {np.median(e2p):.0f} ms, max {e2p.max():.0f} ms   (aim <= 200)")
                    print(f"    detection delay in the audio: median {np.median(det):.0f} ms (window tail + stride + smoothing)")
                    print(f"    delivery (push of the deciding sample -> received): median {np.median(dlv):.1f} ms, max {dlv.max():.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


# --------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def bench_model(tmp_path_factory):
        try:
            return cost_model(tmp_path_factory.mktemp("bench"))[0]
        except ImportError as exc:  # no exported model, and no TensorFlow for a stand-in
            pytest.skip(f"no exported model and no TensorFlow for a stand-in ({exc}): "
                        f"run `make train export` first")

    @pytest.fixture(scope="module")
    def bench_pipeline(bench_model):
        from device.pipeline import Pipeline
        cfg = load_config("default", [f"stages.multitask.model={bench_model}"])
        return Pipeline.from_config(cfg, shedding=False)

    def test_one_second_of_audio(benchmark, bench_pipeline):
        """100 hops (1 s of audio, 10 model calls) through every stage: time = RTF in seconds."""
        audio = SyntheticSource(scripted_tones(10), duration_s=10).signal
        hops = audio[: 16000].reshape(100, 160)

        def one_second():
            for h in hops:
                bench_pipeline.process_hop(h)

        benchmark(one_second)
        assert benchmark.stats is None or benchmark.stats.stats.median < 1.0  # faster than real time

    def test_frontend_hop(benchmark, bench_pipeline):
        stage = bench_pipeline.stages[0]
        from device.stages import HopContext
        hop = np.random.default_rng(0).standard_normal(160).astype(np.float32) * 0.1
        benchmark(lambda: stage.process(HopContext(0, 0.0, hop, {})))

    def test_model_invoke(benchmark, bench_pipeline):
        model = bench_pipeline.stages[1].model
        x = np.random.default_rng(0).standard_normal((98, 40)).astype(np.float32)
        benchmark(model.run, x)


if __name__ == "__main__":
    sys.exit(main())
