"""Latency of one int8 invocation of each exported model on one host (or Pi) core.

    .venv/bin/python -m pytest benchmarks/bench_multitask.py --benchmark-enable \\
        -o python_files='bench_*.py' -p no:cacheprovider

Measures every exported model with a manifest: the deployed ones (``build/export/*.tflite``:
the keyword + scene model, and whatever model a profile adds) and every profile's
``build/export/<profile>/*.tflite`` (profiles may size the trunk differently). With none it
converts an untrained keyword + scene model of the default size, which costs exactly the same
per invocation (host only: that needs TensorFlow, and is skipped without it). Every model is
loaded through the device's runner (`device.interpreter.TFLiteModel`: manifest and sha256
checked, the interpreter the Pi uses) and timed pinned to one core (`device.bench.one_core`):
one bare ``invoke`` of its interpreter, and one `TFLiteModel.run` (quantise, invoke,
dequantise: what the pipeline's model stage pays). Budget: 1.5 ms p50 per invocation with
``num_threads=1`` (the device runs the keyword + scene model every 100 ms), model file <= 100 KB.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device.bench import one_core
from device.config import load_config
from device.interpreter import TFLiteModel
from device.paths import BuildPaths

BUDGET_P50_MS = 1.5
BUDGET_BYTES = 100_000


def _exported_models() -> list[Path]:
    """Every exported model with its manifest: the deployed ones and each profile's exports.

    Profiles may size the trunk differently (``model.multitask.width``), so each export is
    measured against the budget, not only the one ``make export`` deployed last.
    """
    export = BuildPaths(load_config("default")).export_dir
    found = sorted(export.glob("*.tflite")) + sorted(export.glob("*/*.tflite"))
    # The sound classifiers run every 0.5 s and the source separator once per 0.8 s chunk, not
    # every 100 ms: each has its own budget and suite (bench_classifiers.py, bench_separation.py).
    return [p for p in found if p.with_suffix(".json").exists() and not p.name.startswith("sound_")
            and json.loads(p.with_suffix(".json").read_text()).get("kind") != "separation"]


def _untrained_model(tmp_path_factory) -> Path:
    # Weights do not change the cost of an invocation: an untrained model of the default
    # profile's size stands in when nothing has been exported yet (on a host with TensorFlow).
    pytest.importorskip("tensorflow", reason="no exported model, and no TensorFlow to convert "
                        "a stand-in: run `make train export` first")
    from device.manifest import write_manifest
    from export.convert import convert_int8, int8_manifest_fields
    from train.features import Normalizer
    from train.multitask import build_for_variant, variants

    cfg = load_config("default")
    variant = variants(cfg)["mt60j"]
    model = build_for_variant(cfg, variant, batch_size=1)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("bench") / "untrained_int8.tflite"
    path.write_bytes(convert_int8(model, rng.standard_normal((64, 98, 40)).astype(np.float32)))
    identity = Normalizer(np.zeros(40, np.float32), np.ones(40, np.float32))
    heads = {h: cfg.head_labels[h] for h in variant.tasks}
    input_spec, outputs, _ = int8_manifest_fields(path, heads, identity.to_dict())
    write_manifest(path, name="untrained", kind="multitask",
                   frontend={**cfg.section("frontend.keyword"), "name": "keyword"},
                   input=input_spec, outputs=outputs,
                   stride_hops=int(cfg["model.multitask.stride_hops"]))
    return path


_MODELS = _exported_models()


@pytest.fixture(scope="module",
                params=[str(p) for p in _MODELS] or ["untrained"],
                ids=[f"{p.parent.name}/{p.name}" for p in _MODELS] or ["untrained"])
def model(request, tmp_path_factory):
    path = (_untrained_model(tmp_path_factory) if request.param == "untrained"
            else Path(request.param))
    return TFLiteModel(path, num_threads=1)


def test_model_size(model):
    size = model.path.stat().st_size
    print(f"\n{model.path}: {size} bytes")
    assert size <= BUDGET_BYTES


def _p50_within_budget(benchmark, what: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not benchmark.disabled:
        p50_ms = stats.stats.median * 1e3
        print(f"\n{what}: p50 {p50_ms:.3f} ms on one core")
        assert p50_ms <= BUDGET_P50_MS


def test_invoke_latency(benchmark, model):
    interpreter = model.interpreter
    inp = interpreter.get_input_details()[0]
    x = np.random.default_rng(1).integers(-128, 128, size=inp["shape"], dtype=np.int8)
    interpreter.set_tensor(inp["index"], x)
    for _ in range(20):  # warm caches and XNNPACK's packed weights
        interpreter.invoke()
    with one_core():   # one core, as the budget says
        benchmark.pedantic(interpreter.invoke, rounds=500, iterations=1, warmup_rounds=20)
    _p50_within_budget(benchmark, f"{model.path.name} invoke")


def test_run_latency(benchmark, model):
    """`TFLiteModel.run` on float features: the model stage's whole cost per invocation."""
    shape = model.input_shape
    frames, mels = (shape[1], shape[2]) if len(shape) >= 3 else (shape[-1], 1)
    x = np.random.default_rng(2).standard_normal((frames, mels)).astype(np.float32)
    with one_core():
        out = benchmark.pedantic(model.run, args=(x,), rounds=500, iterations=1, warmup_rounds=20)
    assert set(out) == set(model.outputs)
    _p50_within_budget(benchmark, f"{model.path.name} run")
