"""Cost of the decisions per model output (pytest-benchmark): `KeywordDecisions.update` (smoothing,
wake trigger, command window) and `SceneTracker.update` (smoothing, hysteresis).

Run: ``make bench`` (or ``pytest benchmarks/bench_decisions.py --benchmark-enable -o
python_files='bench_*.py'``). Each round is one model output, at the time the next one would come
(``model.multitask.stride_hops`` hops later): what the ``keywords`` and ``scenes`` stages do on the
hops where the model has run. The posteriors are peaked at random (a Dirichlet), so the wake word
and the scenes cross their thresholds now and then, as they do on real audio.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from device.config import load_config
from device.decisions import KeywordDecisions, SceneTracker

PROFILE = load_config("default")
STRIDE_S = PROFILE["model.multitask.stride_hops"] * PROFILE["pipeline.hop_ms"] / 1000.0


def _posteriors(n_labels: int, seed: int, n: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(n_labels, 0.3), size=n).astype(np.float32)


@pytest.mark.parametrize("kind", ["keyword", "scene"])
def test_decisions_update(benchmark, kind):
    if kind == "keyword":
        decisions, labels = KeywordDecisions.from_config(PROFILE), PROFILE.keyword_labels
    else:
        decisions, labels = SceneTracker.from_config(PROFILE), PROFILE["labels.scenes"]
    probs = _posteriors(len(labels), seed=len(labels))
    step = itertools.count()   # audio time only moves forwards, as in a stream

    def one_output():
        i = next(step)
        return decisions.update(i * STRIDE_S, probs[i % len(probs)])

    events = benchmark(one_output)
    assert isinstance(events, list)
    benchmark.extra_info["stride_s"] = STRIDE_S
