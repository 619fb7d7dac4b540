"""Cost of the streaming frontend per hop (pytest-benchmark).

Run: ``make bench`` (or ``pytest benchmarks/bench_frontend.py --benchmark-enable``).
Each round pushes one hop of int16 audio, as the capture loop does, so the figure is the
frontend's share of the hop budget (10 ms at 16 kHz, 16 ms for the ESN at 8 kHz).
"""
from __future__ import annotations

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig, LogMelStream, STFTConfig, STFTStream

PROFILE = load_config("default")


@pytest.mark.parametrize("hops_per_push", [1, 10])
@pytest.mark.parametrize("name", ["keyword", "esn", "classifier"])
def test_logmel_stream_per_push(benchmark, name, hops_per_push):
    """One push of ``hops_per_push`` hops: divide the time by it for the cost per hop. Capture
    blocks of several hops amortise numpy's per-call overhead."""
    cfg = LogMelConfig.from_config(PROFILE, name)
    stream = LogMelStream(cfg)
    block = (np.random.default_rng(0).standard_normal(cfg.hop_length * hops_per_push)
             * 3000).astype(np.int16)
    stream.push(np.zeros(cfg.window_length, np.int16))  # steady state: every hop yields a frame
    frames = benchmark(stream.push, block)
    assert frames.shape == (hops_per_push, cfg.n_mels)
    benchmark.extra_info["hop_ms"] = cfg.hop_ms
    benchmark.extra_info["hops_per_push"] = hops_per_push


def test_stft_stream_per_hop(benchmark):
    cfg = STFTConfig.from_config(PROFILE, "separation")
    stream = STFTStream(cfg)
    hop = np.random.default_rng(0).standard_normal(cfg.hop_length).astype(np.float32)
    frames = benchmark(stream.push, hop)
    assert frames.shape == (1, cfg.n_bins)
