"""CPU seconds per audio second of hopwise's pipelines and of Porcupine, in one run.

Every engine hears the same int16 stream, already decoded in memory (a microphone hands over
samples; decoding a FLAC file is no part of either engine's work), in one process pinned to one
core, and the engines take turns round after round, so a machine whose speed drifts (other
work, a VM's neighbours) slows them alike. For each engine: CPU time (``process_time``) over the
stream divided by its length, the minimum and median over rounds, and its ratio to Porcupine's
in the same round (the median of those ratios is the headline: a ratio measured seconds apart).

* ``porcupine``: Porcupine 1.9.5 on the profile's wake word, one sensitivity (``make peers``).
* hopwise: `device.pipeline.Pipeline.from_config` run over a `device.audio_source.ArraySource`,
  no shedding: ``python -m device detect``'s path without the file reader. For each model given
  (default: the non-streaming reference and the streaming model, where exported), the whole
  profile pipeline and the keyword path alone (``pipeline.stages`` = the keyword frontend, the
  model and the two decision stages). ``--from-file`` adds each pipeline fed from the file, as
  ``detect`` is, to show what decoding costs.

``python -m evaluation.cpu --profile default --seconds 300 --rounds 3`` (``--capture-block``,
``--hop-by-hop``: also at a live device's reads) writes
``build/reports/<profile>/cpu_vs_porcupine.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device.bench import one_core
from device.config import add_profile_arguments, config_from_args
from device.paths import BuildPaths, profile_tag

__all__ = ["Engine", "hopwise_engines", "measure", "main"]

log = logging.getLogger("evaluation.cpu")

KEYWORD_PATH = ["frontend", "multitask", "keywords", "scenes"]
RATE = 16000


class Engine:
    """One thing to time: ``run(samples, path)`` -> CPU seconds spent on the stream.

    Parameters
    ----------
    name : str
        The row's name in the report.
    sets : list of str or None
        hopwise: the ``--set`` overrides of its pipeline; None: Porcupine.
    from_file : bool
        hopwise only: read the stream from its file (``detect``'s `FileSource`, decoding
        included) instead of the decoded samples.
    """

    def __init__(self, name: str, sets: list[str] | None, cfg=None, from_file: bool = False):
        self.name, self.sets, self.cfg, self.from_file = name, sets, cfg, from_file

    def run(self, samples: np.ndarray, path: Path) -> float:
        if self.sets is None:
            return _porcupine_cpu(samples, self.cfg["labels.wake_word"])
        from device.audio_source import ArraySource, FileSource
        from device.pipeline import Pipeline
        cfg = self.cfg.with_overrides(self.sets)
        pipe = Pipeline.from_config(cfg, shedding=False)
        # Handed over as a capture ring buffer is read when the pipeline is behind it (what
        # `SoundDeviceSource.read_hops` takes): pipeline.block_hops hops per read.
        block_ms = float(cfg["pipeline.hop_ms"]) * int(cfg["pipeline.block_hops"])
        source = (FileSource(path, rate=RATE) if self.from_file
                  else ArraySource(samples, RATE, block_ms=block_ms))
        c0 = time.process_time()
        pipe.run(source)
        cpu = time.process_time() - c0
        pipe.close()
        return cpu


def _porcupine_cpu(samples: np.ndarray, keyword: str) -> float:
    import pvporcupine
    handle = pvporcupine.create(keywords=[keyword], sensitivities=[0.5])
    try:
        n = handle.frame_length
        c0 = time.process_time()
        for i in range(0, len(samples) - n + 1, n):
            handle.process(samples[i:i + n])
        return time.process_time() - c0
    finally:
        handle.delete()


def capture_block_hops(cfg) -> int:
    """Hops per read on a live device that keeps up: one capture period (``capture.block_ms``)
    of hops, at most ``pipeline.block_hops``."""
    per_read = max(1, int(round(float(cfg["capture.block_ms"]) / float(cfg["pipeline.hop_ms"]))))
    return min(per_read, int(cfg["pipeline.block_hops"]))


def hopwise_engines(cfg, models: Sequence[str], from_file: bool = False,
                    hop_by_hop: bool = False, capture_block: bool = False) -> list[Engine]:
    """For each model: the whole profile pipeline and the keyword path alone, read
    ``pipeline.block_hops`` hops at a time (a replay, or a device that has fallen behind); with
    ``capture_block`` both again at a live device's read, one capture period
    (`capture_block_hops`: ``capture.block_ms`` = 40 ms is 4 hops); with ``hop_by_hop`` one hop
    per read (``pipeline.block_hops=1``: a device whose capture hands over every 10 ms, so no
    block ever forms)."""
    keyword_path = "pipeline.stages=[" + ", ".join(f'"{s}"' for s in KEYWORD_PATH) + "]"
    out = []
    live = capture_block_hops(cfg)
    for model in models:
        tag = Path(model).name
        base = [f"stages.multitask.model={model}"]
        out.append(Engine(f"whole pipeline, {tag}", base, cfg))
        out.append(Engine(f"keyword path, {tag}", [*base, keyword_path], cfg))
        if capture_block:
            at = f"pipeline.block_hops={live}"
            name = f"live capture blocks ({cfg['capture.block_ms']:g} ms, {live} hops)"
            out.append(Engine(f"whole pipeline, {tag}, {name}", [*base, at], cfg))
            out.append(Engine(f"keyword path, {tag}, {name}", [*base, keyword_path, at], cfg))
        if hop_by_hop:
            one = "pipeline.block_hops=1"
            out.append(Engine(f"whole pipeline, {tag}, hop by hop", [*base, one], cfg))
            out.append(Engine(f"keyword path, {tag}, hop by hop", [*base, keyword_path, one], cfg))
        if from_file:
            out.append(Engine(f"whole pipeline, {tag}, from the file", base, cfg, from_file=True))
    return out


def measure(engines: Sequence[Engine], samples: np.ndarray, path: Path, rounds: int) -> dict:
    """Every engine once per round, in turn, on one core; the report's ``engines`` rows."""
    seconds = len(samples) / RATE
    cpu: dict[str, list[float]] = {e.name: [] for e in engines}
    with one_core() as core:
        for r in range(rounds):
            for e in engines:
                cpu[e.name].append(e.run(samples, path) / seconds)
                print(f"round {r + 1}/{rounds}: {e.name}: {cpu[e.name][-1]:.5f} CPU s per audio s",
                      file=sys.stderr, flush=True)
    peer = next((e.name for e in engines if e.sets is None), None)
    rows = []
    for e in engines:
        v = cpu[e.name]
        row = {"name": e.name, "cpu_per_audio_s": {"min": min(v), "median": statistics.median(v),
                                                   "rounds": v}}
        if peer is not None:
            ratios = [a / b for a, b in zip(v, cpu[peer])]
            row["ratio_to_porcupine"] = {"median": statistics.median(ratios),
                                         "min": min(ratios), "max": max(ratios),
                                         "rounds": ratios}
        rows.append(row)
    return {"audio_s": seconds, "rounds": rounds, "core": core, "engines": rows,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def markdown(report: dict) -> str:
    lines = [f"# CPU per audio second, one run: profile `{report['profile']}`", "",
             f"{report['created_utc']}: {report['audio_s']:.0f} s of `{report['stream']}` "
             f"(from {report['offset_s']:.0f} s), decoded to int16 in memory, {report['rounds']} "
             f"rounds, engines in turn, one core (CPU {report['core']}); load average at the end "
             f"{report['loadavg']}.", "",
             "| engine | CPU s per audio s, median (min) | × Porcupine, median of the rounds' "
             "ratios (range) |", "|---|---|---|"]
    for r in report["engines"]:
        c = r["cpu_per_audio_s"]
        ratio = r.get("ratio_to_porcupine")
        rt = (f"**{ratio['median']:.2f}** ({ratio['min']:.2f}–{ratio['max']:.2f})"
              if ratio else "–")
        lines.append(f"| {r['name']} | {c['median']:.5f} ({c['min']:.5f}) | {rt} |")
    lines += ["", "Whole pipeline: the profile's `pipeline.stages`; keyword path: "
              + " → ".join(KEYWORD_PATH) + ". hopwise runs `Pipeline.run` over an `ArraySource` "
              "(the `detect` path without the file reader) read `pipeline.block_hops` hops at a "
              "time (hop by hop: one), no shedding; Porcupine 1.9.5 `process` on 512-sample "
              "frames, sensitivity 0.5.", ""]
    return "\n".join(lines)


def default_stream(cfg) -> Path:
    """The wake-word benchmark's cached negative stream (speech, sounds, music, end to end)."""
    from evaluation.wakeword_streams import cached_streams
    found = cached_streams(BuildPaths(cfg).cache_dir, "negatives.flac")
    if not found:
        raise SystemExit("evaluation.cpu: no stream given and no wake-word benchmark stream in "
                         f"{BuildPaths(cfg).cache_dir}: pass --stream FILE (16 kHz mono) or run "
                         "`make bench-wakeword` once")
    return found[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.cpu",
        description="CPU seconds per audio second of hopwise's pipelines (whole, keyword path; "
                    "per model) and of Porcupine 1.9.5, on the same decoded stream, one core, "
                    "engines in turn over several rounds: one run, so the ratios hold however "
                    "busy the machine is.",
        epilog="Example: python -m evaluation.cpu --profile default --seconds 300 --rounds 3 "
               "--model export/multitask_int8.tflite --model export/multitask_stream_int8.tflite")
    add_profile_arguments(parser)
    parser.add_argument("--stream", type=Path, default=None,
                        help="16 kHz mono audio file (default: the wake-word benchmark's cached "
                             "negative stream)")
    parser.add_argument("--seconds", type=float, default=300.0, help="audio per run (default 300)")
    parser.add_argument("--offset-s", type=float, default=0.0,
                        help="where in the stream to start (default 0)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every engine (default 3)")
    parser.add_argument("--model", action="append", default=None,
                        help="keyword model(s) to compare, relative to project.build_dir or a "
                             "path (repeat; default: the reference and the streaming model)")
    parser.add_argument("--no-porcupine", action="store_true", help="hopwise engines only")
    parser.add_argument("--from-file", action="store_true",
                        help="also run each whole pipeline from the file (decoding included)")
    parser.add_argument("--hop-by-hop", action="store_true",
                        help="also run each pipeline one hop per read (pipeline.block_hops=1), "
                             "as a real-time device with 10 ms capture blocks does")
    parser.add_argument("--capture-block", action="store_true",
                        help="also run each pipeline at a live device's read: one capture period "
                             "(capture.block_ms, 40 ms = 4 hops) per read")
    parser.add_argument("--out", type=Path, default=None,
                        help="report path stem (default build/reports/<profile>/cpu_vs_porcupine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    import soundfile as sf
    stream = args.stream or default_stream(cfg)
    info = sf.info(str(stream))
    if info.samplerate != RATE or info.channels != 1:
        raise SystemExit(f"evaluation.cpu: {stream} is {info.samplerate} Hz x {info.channels} "
                         f"channels; give 16 kHz mono (e.g. `sox in.wav -r 16000 -c 1 out.wav`)")
    start = int(args.offset_s * RATE)
    samples = sf.read(str(stream), dtype="int16", start=start,
                      frames=int(args.seconds * RATE))[0]
    clip = paths.report(f"cpu_stream_{profile_tag(cfg)}.flac")
    sf.write(str(clip), samples, RATE)            # the file the --from-file rows read
    models = args.model or [m for m in ("export/multitask_int8.tflite",
                                         "export/multitask_stream_int8.tflite")
                            if (paths.root / m).exists()]
    engines = [] if args.no_porcupine else [Engine("Porcupine 1.9.5", None, cfg)]
    engines += hopwise_engines(cfg, models, args.from_file, args.hop_by_hop, args.capture_block)
    report = {"format": "hopwise-cpu", "profile": profile_tag(cfg),
              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "stream": str(stream), "offset_s": args.offset_s, "models": models,
              **measure(engines, samples, clip, args.rounds)}
    stem = args.out or (paths.reports_dir / profile_tag(cfg) / "cpu_vs_porcupine")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"report: {stem.with_suffix('.json')}, {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
