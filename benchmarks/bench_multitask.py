"""Latency of one int8 invocation of the keyword + scene model on one host core.

    .venv/bin/python -m pytest benchmarks/bench_multitask.py --benchmark-enable \\
        -o python_files='bench_*.py' -p no:cacheprovider

Measures the deployed model (``build/export/multitask_int8.tflite``) and every profile's
``build/export/<profile>/multitask_int8.tflite`` that exists (profiles may size the trunk
differently); with none it converts an untrained model of the default size, which costs
exactly the same per invocation. Every model is loaded through the device's runner
(`device.interpreter.TFLiteModel`: manifest and sha256 checked, the interpreter the Pi uses),
and one invocation of its interpreter is timed. Budget: 1.5 ms p50 per invocation with
``num_threads=1`` (the device runs it every 100 ms), model file <= 100 KB.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from device.config import load_config
from device.interpreter import TFLiteModel
from device.paths import BuildPaths

BUDGET_P50_MS = 1.5
BUDGET_BYTES = 100_000


def _exported_models() -> list[Path]:
    """The deployed model and each profile's deployed export, whichever exist.

    Profiles may size the trunk differently (``model.multitask.width``), so each export is
    measured against the budget, not only the one ``make export`` deployed last.
    """
    paths = BuildPaths(load_config("default"))
    deployed = paths.deployed_model("multitask")
    found = [deployed] + sorted(paths.export_dir.glob(f"*/{deployed.name}"))
    return [p for p in found if p.exists()]


def _untrained_model(tmp_path_factory) -> Path:
    # Weights do not change the cost of an invocation: an untrained model of the default
    # profile's size stands in when nothing has been exported yet.
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


def test_invoke_latency(benchmark, model):
    interpreter = model.interpreter
    inp = interpreter.get_input_details()[0]
    x = np.random.default_rng(1).integers(-128, 128, size=inp["shape"], dtype=np.int8)
    interpreter.set_tensor(inp["index"], x)
    for _ in range(20):  # warm caches and XNNPACK's packed weights
        interpreter.invoke()
    # One host core, as the budget says: pin the process while measuring.
    old = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if old:
        os.sched_setaffinity(0, {min(old)})
    try:
        benchmark.pedantic(interpreter.invoke, rounds=500, iterations=1, warmup_rounds=20)
    finally:
        if old:
            os.sched_setaffinity(0, old)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not benchmark.disabled:
        p50_ms = stats.stats.median * 1e3
        print(f"\n{model.path.name}: invoke p50 {p50_ms:.3f} ms on one core")
        assert p50_ms <= BUDGET_P50_MS
