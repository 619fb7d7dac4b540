"""Does LiteRT's ``invoke`` release the GIL? Measured, for the separator's worker thread.

    python -m benchmarks.separator_worker [--profile default] [--seconds 3]

The separator stage (``stages.separator.background``) runs each chunk's model call on a worker
thread. That only takes the call off the hop path if the interpreter lets go of the GIL while
it computes; otherwise the hop thread stalls for the whole call whenever it needs the GIL. This
measures it: the hop thread spins a pure-Python loop (each iteration needs the GIL) while a
worker thread

* ``invoke``: calls the exported separator's ``invoke`` back to back (`device.separation.
  Separator.chunk_masks`, the worker's call),
* ``python``: the control, one C call of about the same time that keeps the GIL throughout
  (builtin ``sum`` over a ``range``: it never checks for a GIL request).

For each: the loop's iteration rate inside the worker's calls against its rate outside them
(`measure`). If invoke held the GIL, the loop would make almost no progress inside the calls.
Two cores are needed for the figure to mean anything (on one core the OS shares the CPU
whatever the GIL does); the machine's load average is printed beside the figures.
Writes JSON to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.separation import Separator


def measure(sep: Separator, worker: str, seconds: float) -> dict:
    """The hop thread's loop while ``worker`` runs (see the module docstring).

    The worker records the intervals of its calls (an invoke, or ~one invoke's time of pure
    Python); the hop thread stamps every 64th iteration. ``share_inside`` is the hop thread's
    iteration rate inside the worker's calls over its rate outside them: about 0 if the
    worker's call keeps the GIL, about 1 if it lets go (on a free core).
    """
    chunk = np.random.default_rng(0).standard_normal(
        (sep.chunk_frames, sep.stft_cfg.n_bins)).astype(np.float32)
    stop = threading.Event()
    intervals: list[tuple[float, float]] = []
    clock = time.perf_counter

    def work():
        while not stop.is_set():
            t0 = clock()
            if worker == "invoke":
                sep.chunk_masks(chunk)
            else:   # one C call of about an invoke's time that never lets go of the GIL
                sum(range(measure.sum_n))
            intervals.append((t0, clock()))
            time.sleep(0.001)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    stamps = []
    t_end = clock() + seconds
    n = 0
    while True:
        n += 1
        if n & 63 == 0:
            now = clock()
            stamps.append(now)
            if now >= t_end:
                break
    stop.set()
    thread.join()
    stamps = np.asarray(stamps)
    starts = np.array([a for a, _ in intervals])
    ends = np.array([b for _, b in intervals])
    # stamps falling inside any call interval
    idx = np.searchsorted(starts, stamps, side="right") - 1
    inside = (idx >= 0) & (stamps < ends[np.maximum(idx, 0)])
    t_inside = float((ends - starts).sum())
    t_total = float(stamps[-1] - stamps[0])
    rate_in = inside.sum() * 64 / max(t_inside, 1e-9)
    rate_out = (~inside).sum() * 64 / max(t_total - t_inside, 1e-9)
    return {"worker": worker, "calls": len(intervals),
            "call_ms_median": round(float(np.median(ends - starts)) * 1e3, 3),
            "loop_rate_inside_calls": round(rate_in), "loop_rate_outside": round(rate_out),
            "share_inside": round(rate_in / max(rate_out, 1), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.separator_worker",
                                     description=__doc__.split("\n\n")[0])
    add_profile_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    sep = Separator.from_config(cfg, num_threads=1)
    chunk = np.zeros((sep.chunk_frames, sep.stft_cfg.n_bins), np.float32)
    for _ in range(5):
        sep.chunk_masks(chunk)
    t = []
    for _ in range(30):
        t0 = time.perf_counter()
        sep.chunk_masks(chunk)
        t.append(time.perf_counter() - t0)
    # the control: builtin sum over a range runs in C without checking for a GIL request
    n = 1000
    while True:   # doubled until one call lasts an invoke (the median of 3 timings)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            sum(range(n))
            times.append(time.perf_counter() - t0)
        if np.median(times) >= float(np.median(t)):
            break
        n *= 2
    measure.sum_n = n
    out = {"model": str(sep.model.path), "backend": sep.model.backend,
           "invoke_ms_median": round(float(np.median(t)) * 1e3, 3),
           "switch_interval_ms": sys.getswitchinterval() * 1e3,
           "cores_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
           else None,
           "loadavg_before": os.getloadavg(),
           "runs": [measure(sep, w, args.seconds) for w in ("invoke", "python")],
           "loadavg_after": os.getloadavg()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
