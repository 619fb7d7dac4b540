"""The sound classifiers' cost on one core: per segment, per 5 s clip, and the stage per hop.

    .venv/bin/python -m pytest benchmarks/bench_classifiers.py --benchmark-enable \\
        -o python_files='bench_*.py' -p no:cacheprovider -s

Measures every exported sound classifier with a manifest (``build/export/sound_*_int8.tflite``
and each profile's ``build/export/<profile>/sound_*_int8.tflite``: `export.classifiers`), loaded
through the device's runner (`device.interpreter.TFLiteModel`) and pinned to one core
(`device.bench.one_core`):

* one segment: `TFLiteModel.run` on one model input (41 x 60 for the CNN, 50 x 60 for the
  ResNet: what the stage pays per non-silent segment);
* one clip: a 5 s clip (ESC-50's length) from samples to its voted class: the device's log-mel,
  `device.sound.segment`, a run per segment, the vote (what evaluation pays per clip);
* the stage per hop: ``sound_frontend`` + ``sounds`` of the default profile over 20 s of a tone
  over the noise floor (every segment loud, so the model always runs), timed by the pipeline's
  own per-stage clock; printed as p50/p99 per run and amortised per 10 ms hop.

Budget: the stage's amortised cost per hop stays under 10 % of the hop (1 ms of 10 ms) for the
device-sized model; the full-size models are measured and printed, not held to it.
Nothing exported: skipped (``make train-classifiers export-classifiers``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.audio_source import Tone, render_tones
from device.bench import one_core
from device.config import load_config
from device.frontend import LogMelConfig, log_mel
from device.interpreter import TFLiteModel
from device.paths import BuildPaths
from device.sound import SegmentSpec, segment, vote

STAGE_BUDGET_PER_HOP_MS = 1.0
DEVICE_SIZED_MAX_PARAMS = 100_000


def _exported() -> list[Path]:
    export = BuildPaths(load_config("default")).export_dir
    found = sorted(export.glob("sound_*_int8.tflite")) + sorted(export.glob("*/sound_*_int8.tflite"))
    return [p for p in found if p.with_suffix(".json").exists()]


_MODELS = _exported()
pytestmark = pytest.mark.skipif(not _MODELS, reason="no exported sound classifier: run `make "
                                "train-classifiers export-classifiers`")


@pytest.fixture(scope="module", params=[str(p) for p in _MODELS] or ["none"],
                ids=[f"{p.parent.name}/{p.name}" for p in _MODELS] or ["none"])
def model(request):
    return TFLiteModel(Path(request.param), num_threads=1)


def _section():
    return load_config("default").section("frontend.classifier")


def test_segment_latency(benchmark, model):
    x = np.random.default_rng(0).standard_normal((model.frames, model.input_shape[2])) - 5.0
    x = x.astype(np.float32)
    for _ in range(10):
        model.run(x)
    with one_core():
        out = benchmark.pedantic(model.run, args=(x,), rounds=200, iterations=1, warmup_rounds=10)
    (probs,) = out.values()
    assert probs.shape == (len(next(iter(model.labels.values()))),)
    print(f"\n{model.path.name}: {model.manifest.get('params')} parameters, "
          f"{model.path.stat().st_size} B")


def test_clip_latency(benchmark, model):
    section = _section()
    fcfg = LogMelConfig.from_mapping(section)
    spec = SegmentSpec.from_frontend(section, model.frames)
    clip = render_tones([Tone(0.5, 4.5, 1000.0, 0.3)], 5.0, fcfg.sample_rate)
    (head,) = model.labels

    def classify():
        segs, _ = segment(log_mel(clip, fcfg), spec)
        return vote(model.predict(segs)[head], "probability")

    with one_core():
        label = benchmark.pedantic(classify, rounds=20, iterations=1, warmup_rounds=2)
    assert 0 <= label < len(model.labels[head])


def test_stage_cost_per_hop(model):
    """The pipeline's own per-stage timing of the frontend and classifier stages."""
    from device.pipeline import Pipeline
    cfg = load_config("default", ['pipeline.stages=["sound_frontend", "sounds"]',
                                  f"stages.sounds.model={model.path}",
                                  'stages.sounds.if_missing="error"', "runtime.shedding=false"])
    pipe = Pipeline.from_config(cfg)
    audio = render_tones([Tone(0.0, 20.0, 1000.0, 0.3)], 20.0, 16000)
    with one_core():
        pipe.push(audio)
    stats = pipe.budget.stage_stats
    hops = pipe.hops
    rows = {}
    for name in ("sound_frontend", "sounds"):
        st = stats[name]
        rows[name] = {"runs": st.count, "p50_ms": st.percentile(50) * 1e3,
                      "p99_ms": st.percentile(99) * 1e3,
                      "per_hop_ms": st.total_s / hops * 1e3}
    stage = pipe.stages[-1]
    per_hop = sum(r["per_hop_ms"] for r in rows.values())
    print(f"\n{model.path.name}: {stage.model_runs} model runs in {stage.runs} stage runs; "
          + "; ".join(f"{k} p50 {r['p50_ms']:.3f} / p99 {r['p99_ms']:.3f} ms per run, "
                      f"{r['per_hop_ms']:.4f} ms per hop" for k, r in rows.items())
          + f"; together {per_hop:.4f} ms per 10 ms hop")
    pipe.close()
    # A loud tone: every run classifies, except those before one segment of frames exists.
    early = int(stage.spec.segment_frames * 0.032 / (stage.stride_hops * 0.01)) + 1
    assert stage.model_runs >= stage.runs - early
    if (model.manifest.get("params") or 0) <= DEVICE_SIZED_MAX_PARAMS:
        assert per_hop <= STAGE_BUDGET_PER_HOP_MS
