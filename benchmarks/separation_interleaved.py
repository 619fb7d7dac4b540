"""CPU real-time factor of several exported separators, interleaved in one run on one core.

    python -m benchmarks.separation_interleaved build/export/separation.tflite \\
        build/export/default/separation_blstm128_p50_int8.tflite ... [--rounds 10]

On a host shared with other work, wall-clock timings of one model after another drift with
the load (benchmarks/bench_separation.py, pytest-benchmark, times each model on its own). This
one takes turns: every round separates the same 8 s of audio with each model once, pinned to
one core (`device.bench.one_core`), timing this thread's CPU (``time.thread_time``: what the
model cost, not what other processes took), and prints per model the median and minimum CPU
RTF and the ratio to the first model's median. Made to compare a magnitude-pruned separator
with its dense parent: LiteRT's int8 kernels are dense, so zeros are expected to save no time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from device.bench import one_core
from device.separation import Separator

AUDIO_S = 8.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.separation_interleaved",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="exported separators (.tflite + .json)")
    parser.add_argument("--rounds", type=int, default=10, help="turns per model")
    args = parser.parse_args(argv)
    seps = [Separator(p, num_threads=1) for p in args.models]
    rate = seps[0].stft_cfg.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(AUDIO_S * rate)) / rate
    x = (0.05 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    for sep in seps:
        sep.separate(x[:rate])   # warm-up: XNNPACK packs its weights on the first call
    cpu = [[] for _ in seps]
    with one_core():
        for _ in range(args.rounds):
            for i, sep in enumerate(seps):
                c0 = time.thread_time()
                sep.separate(x)
                cpu[i].append((time.thread_time() - c0) / AUDIO_S)
    base = float(np.median(cpu[0]))
    rows = [{"model": p, "variant": s.model.manifest.get("variant"),
             "rtf_cpu_median": round(float(np.median(c)), 5), "rtf_cpu_min": round(min(c), 5),
             "ratio_to_first": round(float(np.median(c)) / base, 3)}
            for p, s, c in zip(args.models, seps, cpu)]
    print(json.dumps({"audio_s": AUDIO_S, "rounds": args.rounds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
