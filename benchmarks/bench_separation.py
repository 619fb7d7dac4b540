"""Real-time factor of every exported source separator on one host (or Pi) core.

    .venv/bin/python -m pytest benchmarks/bench_separation.py --benchmark-enable \\
        -o python_files='bench_*.py' -p no:cacheprovider

Times `device.separation.Separator.separate` (STFT, one interpreter call per 100-frame
chunk, masks, inverse STFT: the whole offline path of ``python -m device separate``) on
``AUDIO_S`` of noise-plus-tone audio at 8 kHz, pinned to one core (`device.bench.one_core`),
for the deployed separator (``build/export/separation.tflite``) and every exported variant
(``build/export/<profile>/separation_*.tflite``). RTF = median time / audio length. Budget:
RTF <= 0.1 for the deployed one (the device must separate well faster than real time next to
the always-on models); the variants are measured and printed, and only the deployed one is held
to the budget. Skipped when nothing is exported (`make separation`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device.bench import one_core
from device.config import load_config
from device.paths import BuildPaths
from device.separation import Separator

AUDIO_S = 8.0
BUDGET_RTF = 0.1


def _models() -> list[Path]:
    cfg = load_config("default")
    paths = BuildPaths(cfg)
    found = [paths.resolve(cfg["model.separation.model"])] + sorted(
        (paths.export_dir / paths.profile).glob("separation_*.tflite"))
    return [p for p in found if p.exists() and p.with_suffix(".json").exists()]


_MODELS = _models()


@pytest.mark.skipif(not _MODELS, reason="no exported separator: run `make separation`")
@pytest.mark.parametrize("path", _MODELS, ids=[p.name for p in _MODELS])
def test_separation_real_time_factor(benchmark, path):
    sep = Separator(path, num_threads=1)
    rate = sep.stft_cfg.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(AUDIO_S * rate)) / rate
    x = (0.05 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    sep.separate(x[: rate])   # warm-up: XNNPACK packs its weights on the first call
    with one_core():
        out = benchmark.pedantic(sep.separate, args=(x,), rounds=5, iterations=1, warmup_rounds=1)
    assert out.shape == (len(sep.labels), len(x))
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not benchmark.disabled:
        rtf = stats.stats.median / AUDIO_S
        man = json.loads(path.with_suffix(".json").read_text())
        print(f"\n{path.name}: {man.get('variant')} {man.get('quantization')}, "
              f"{man.get('params')} params, {path.stat().st_size} B: RTF {rtf:.4f} on one core")
        if path == _MODELS[0]:
            assert rtf <= BUDGET_RTF
