"""`evaluation.runners`: the trained model on onnxruntime (float ONNX exported beside the int8
TFLite) raises the same events as LiteRT on the self-check signal. Runs where a trained default
build exists (``make train export``); slow: three replays of the pipeline plus quantisation."""
from __future__ import annotations

import pytest

from device.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_onnxruntime_raises_the_events_litert_raises():
    pytest.importorskip("onnxruntime")
    cfg = load_config("default")
    onnx = cfg.build_dir / "export" / "multitask.onnx"
    if not onnx.exists():
        pytest.skip(f"no {onnx}: run `make train export` first")
    from evaluation.runners import compare
    result = compare(cfg, qdq=True, repeats=1)
    runners = result["runners"]
    assert set(runners) == {"litert_int8", "onnxruntime_float", "onnxruntime_qdq_int8"}
    assert runners["litert_int8"]["events"] > 0 and result["windows"] > 100
    for name in ("onnxruntime_float", "onnxruntime_qdq_int8"):
        assert runners[name]["events_vs_litert"] == "same", (name, runners[name])
        assert min(runners[name]["argmax_agreement"].values()) > 0.8
        assert runners[name]["cost"]["n"] == result["windows"]
