"""Wake-word end -> ``wake`` event: how long after the speaker stops the device reacts.

On the wake-word benchmark's positive stream at one SNR (`evaluation.wakeword`: every recording
of the wake word over a noise bed; its cache must exist, ``make bench-wakeword`` builds it),
each model given runs through the device pipeline (keyword frontend, the model, the keyword
decisions with the profile's wake verifier, whose verdict the event waits for; `Pipeline.run`
over the decoded samples, no shedding). A recording's word end is the
end of its last 10 ms frame within 20 dB of its loudest one; the latency of a hit is the first
``wake`` event's ``t_audio_s`` from the recording's start to 1 s after its end (the benchmark's
hit window), minus that word end. Audio time, so the figures hold on any machine; a real-time
device adds its processing time (a fraction of a millisecond per call) and the sink's delivery.

``python -m evaluation.wake_latency --profile default --model export/multitask_int8.tflite
--model export/multitask_stream_int8.tflite --set decisions.wake_threshold=0.3`` writes
``build/reports/<profile>/wake_latency.json`` and prints a table. ``--capture-block-ms`` (default
10 and the profile's ``capture.block_ms``) adds the latency to the event's delivery on a live
device whose capture hands over blocks that long: a wake on the first hop of a 40 ms block waits
for the block's other 30 ms before the pipeline reads it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.paths import BuildPaths, profile_tag

__all__ = ["word_end_s", "latencies", "main"]

RATE = 16000
STAGES = ["frontend", "multitask", "keywords"]


def word_end_s(path: str | Path, frame_s: float = 0.01, below_peak_db: float = 20.0) -> float:
    """Seconds from a recording's start to the end of its last frame within ``below_peak_db``
    of its loudest frame (the word's end, trailing silence and breath excluded)."""
    import soundfile as sf
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    hop = max(1, int(rate * frame_s))
    n = len(x) // hop
    rms = np.sqrt((x[:n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-below_peak_db / 20.0))
    return float((loud[-1] + 1) * hop / rate)


def delivered_s(t_audio_s: np.ndarray, capture_block_ms: float) -> np.ndarray:
    """When an event stamped ``t_audio_s`` (the end of its hop) can be out on a live device
    whose capture hands over ``capture_block_ms`` at a time: the end of the capture block that
    holds its hop (blocks from the stream's start), since the pipeline reads a block only once
    it has all arrived. Processing time not included (a fraction of a millisecond)."""
    block_s = float(capture_block_ms) / 1000.0
    # round(): an event at exactly a block's end must not move to the next block
    return np.ceil(np.round(np.asarray(t_audio_s, float) / block_s, 6)) * block_s


def latencies(cfg, model: str, stream: dict, after_s: float = 1.0,
              capture_blocks_ms: Sequence[float] = ()) -> dict:
    """One model on one positive stream (an entry of the benchmark's ``streams.json``);
    for each of ``capture_blocks_ms`` also the latency to the event's delivery on a live device
    capturing blocks that long (`delivered_s`), under ``capture_block_ms``."""
    from device.audio_source import ArraySource
    from device.pipeline import Pipeline
    from evaluation.wakeword_streams import load_int16
    run_cfg = cfg.with_overrides([f"stages.multitask.model={model}"])
    pipe = Pipeline.from_config(run_cfg, stage_names=STAGES, keep_events=True, shedding=False)
    pipe.run(ArraySource(load_int16(stream["path"]), RATE))
    pipe.close()
    # A verified wake goes out at its verdict (`t_verdict_s`), after the trigger it is about.
    wakes = np.array([e.get("t_verdict_s", e["t_audio_s"]) for e in pipe.events
                      if e["type"] == "wake"])
    lat, first, ends = [], [], []
    for start, end, _kind, path in stream["segments"]:
        hit = wakes[(wakes >= start) & (wakes <= end + after_s)]
        if len(hit):
            ends.append(start + word_end_s(path))
            first.append(float(hit[0]))
            lat.append(first[-1] - ends[-1])
    lat_ms = np.asarray(lat) * 1000.0
    out = {"model": model, "positives": len(stream["segments"]), "hits": len(lat),
           "wake_events": int(len(wakes)),
           "wake_threshold": float(run_cfg["decisions.wake_threshold"]),
           "smoothing_ms": float(run_cfg["decisions.smoothing_ms"])}
    keywords = next((st for st in pipe.stages if getattr(st, "verifier", None) is not None), None)
    if keywords is not None:   # the trigger before the verifier, and the verdict's wait
        out.update(verified_wake_threshold=float(run_cfg["decisions.verified_wake_threshold"]),
                   wake_verifier_threshold=keywords.verifier_threshold,
                   verifier_delay_ms=round(1000 * keywords.verifier.wake_delay_s))
    if len(lat):
        out.update({f"p{q}_ms": round(float(np.percentile(lat_ms, q)), 1) for q in (10, 50, 90)})
        out["mean_ms"] = round(float(lat_ms.mean()), 1)
        out["capture_block_ms"] = {}
        for block_ms in capture_blocks_ms:
            d_ms = (delivered_s(first, block_ms) - np.asarray(ends)) * 1000.0
            out["capture_block_ms"][f"{float(block_ms):g}"] = {
                **{f"p{q}_ms": round(float(np.percentile(d_ms, q)), 1) for q in (10, 50, 90)},
                "mean_ms": round(float(d_ms.mean()), 1)}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.wake_latency",
        description="Wake-word end -> wake event latency (audio time) per model, on the "
                    "wake-word benchmark's positive stream.",
        epilog="Example: python -m evaluation.wake_latency --model export/multitask_int8.tflite "
               "--model export/multitask_stream_int8.tflite --set decisions.wake_threshold=0.3")
    add_profile_arguments(parser)
    parser.add_argument("--model", action="append", default=None,
                        help="model(s) to compare (repeat; default: the profile's)")
    parser.add_argument("--snr", type=float, default=None,
                        help="which positive stream (default: bench.wakeword.snr_db's first)")
    parser.add_argument("--capture-block-ms", type=float, action="append", default=None,
                        help="also the latency to delivery on a live device whose capture hands "
                             "over blocks this long (repeat; default: 10 and the profile's "
                             "capture.block_ms): the pipeline reads a block once it has arrived")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default build/reports/<profile>/wake_latency.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    from evaluation.wakeword_streams import cached_streams
    found = cached_streams(paths.cache_dir, "streams.json", cfg["labels.wake_word"])
    if not found:
        raise SystemExit(f"evaluation.wake_latency: no wake-word benchmark streams in "
                         f"{paths.cache_dir}; run `make bench-wakeword PROFILE={profile_tag(cfg)}` "
                         f"once to build them")
    streams = json.loads(found[-1].read_text())["positives"]
    snr = float(args.snr if args.snr is not None else cfg["bench.wakeword.snr_db"][0])
    key = next((k for k in streams if float(k) == snr), None)
    if key is None:
        raise SystemExit(f"evaluation.wake_latency: no positive stream at {snr:g} dB; there are "
                         f"{', '.join(streams)}")
    models = args.model or [cfg["stages.multitask.model"]]
    blocks = args.capture_block_ms or sorted({10.0, float(cfg["capture.block_ms"])})
    rows = []
    for model in models:
        rows.append(latencies(cfg, model, streams[key], float(cfg["bench.wakeword.after_s"]),
                              blocks))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = {"profile": profile_tag(cfg), "snr_db": snr, "stream": streams[key]["path"],
              "models": rows}
    out = args.out or (paths.reports_dir / profile_tag(cfg) / "wake_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    heads = " | ".join(f"delivered, {b:g} ms capture blocks" for b in blocks)
    print(f"| model | hits / positives | latency p10 / median / p90 ms (audio time) | {heads} |\n"
          + "|---" * (3 + len(blocks)) + "|")
    for r in rows:
        lat = (f"{r['p10_ms']} / **{r['p50_ms']}** / {r['p90_ms']}" if r["hits"] else "no hits")
        per = [(lambda d: f"{d['p10_ms']} / **{d['p50_ms']}** / {d['p90_ms']}")(
            r["capture_block_ms"][f"{b:g}"]) if r["hits"] else "–" for b in blocks]
        print(f"| {Path(r['model']).name} | {r['hits']} / {r['positives']} | {lat} | "
              + " | ".join(per) + " |")
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
