"""The wake-word benchmark: misses and false alarms per hour, hopwise against its peers.

    python -m evaluation.wakeword --profile real                 # computer: hopwise real + peers
    python -m evaluation.wakeword --profile real --engine hopwise --engine hopwise:default \\
        --engine porcupine
    python -m evaluation.wakeword --profile evaluation/profiles/alexa.toml   # alexa: + openWakeWord
    python -m evaluation.wakeword --profile real --positives my_word/ --extra-negatives podcasts/
    python -m evaluation.wakeword --engine hopwise --verifier-threshold 0.7 \
        --verifier other/export/wake_verifier.tflite    # other verdicts, the same triggers

After the method of Picovoice's open wake-word benchmark (`evaluation.wakeword_streams` builds
the audio, `evaluation.wakeword_scoring` scores it, `evaluation.wakeword_engines` runs the
engines): wake-word recordings over environmental noise at each ``bench.wakeword.snr_db``, and a
long stream of other speech, other wake phrases of the same recording channel, environmental
sound and continuous speech and music. Every engine runs on the same int16 streams in the same
run; hopwise runs the ``device detect`` code path. For each engine and SNR the report has the
DET curve (miss rate against false alarms per hour over the sensitivity setting), the miss rate
at the most sensitive setting with no false alarm, the false alarms per hour at a 5 % miss rate,
the miss rate at ``bench.wakeword.target_false_alarms_per_hour`` (by extrapolation, stated as
such, when the stream is too short to show that rate) and the CPU real-time factor. For hopwise
it chooses an **operating point** (threshold and smoothing) that meets the target with the
fewest misses; ``--write-operating-point`` records it in the model's manifest.

Outputs: ``build/reports/<profile>/wakeword_<word>.json``, ``.md`` and ``_det.png``.
Recordings a compared hopwise model trained on (the train part of its profile's split) are left
out of the streams; the report lists which recordings were used.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args, load_config
from device.paths import BuildPaths
from train.corpus import resolve_data_path

from .wakeword_engines import Engine, EngineRun, HopwiseEngine, peer_engines
from .wakeword_scoring import (StreamScore, det_points, extrapolate_miss_at_rate,
                               false_alarms_at_miss, miss_at_zero_false_alarms, operating_point,
                               poisson_upper_rate, score_stream)
from .wakeword_streams import (StreamSet, audio_files, build_streams, select_recordings,
                               trained_paths)

log = logging.getLogger("evaluation.wakeword")

THRESHOLDS = tuple(round(x, 3) for x in [*np.arange(0.05, 0.951, 0.025), 0.96, 0.97, 0.98,
                                          0.99, 0.995, 0.998, 0.999])
"""Score thresholds swept for hopwise and openWakeWord (replayed: free after one run)."""
SENSITIVITIES = tuple(round(x, 2) for x in np.arange(0.0, 1.001, 0.1))
"""Porcupine sensitivities (one run each)."""


# ------------------------------------------------------------------ engines from the command line
def hopwise_engine(spec: str, base: Config, overrides: Sequence[str]) -> HopwiseEngine:
    """``hopwise`` (the --profile), ``hopwise=MODEL.tflite``, ``hopwise:PROFILE`` or
    ``hopwise:PROFILE=MODEL.tflite``."""
    rest = spec[len("hopwise"):]
    profile, _, model = rest.lstrip(":").partition("=") if rest.startswith(":") else ("", "", rest[1:])
    cfg = base if not profile else load_config(profile, list(overrides))
    model_path = model or None
    engine_name = f"hopwise {Path(str(cfg.name)).stem}" + (f" {Path(model).stem}" if model else "")
    engine = HopwiseEngine(cfg, model_path, name=engine_name, thresholds=THRESHOLDS,
                           smoothing_ms=cfg["bench.wakeword.sweep_smoothing_ms"])
    if model_path is None and not engine.profile_model().exists():
        raise FileNotFoundError(f"no exported model for profile {cfg.name}: "
                                f"{engine.profile_model()}; run "
                                f"`make train export PROFILE={cfg.name}` first, or give "
                                f"--engine hopwise:{cfg.name}=MODEL.tflite")
    return engine


def _kind(spec: str) -> str:
    return spec.split(":")[0].split("=")[0]


def build_engines(specs: Sequence[str], cfg: Config, overrides: Sequence[str]
                  ) -> tuple[list[Engine], list[str]]:
    """The engines of ``--engine`` specs (default: hopwise + every installed peer), and a note
    for each peer left out."""
    specs = list(specs) or ["hopwise", "porcupine", "openwakeword"]
    engines: list[Engine] = [hopwise_engine(s, cfg, overrides) for s in specs
                             if _kind(s) == "hopwise"]
    wake = engines[0].wake_word if engines else cfg["labels.wake_word"]
    for e in engines:
        if e.wake_word != wake:
            raise ValueError(f"{e.name} listens for {e.wake_word!r}, {engines[0].name} for "
                             f"{wake!r}: one benchmark is for one wake word")
    peers = [s for s in specs if _kind(s) != "hopwise"]
    unknown = set(peers) - {"porcupine", "openwakeword"}
    if unknown:
        raise ValueError(f"unknown engine(s) {sorted(unknown)}: give hopwise[:PROFILE[=MODEL]], "
                         f"porcupine or openwakeword")
    refractory = cfg["decisions.refractory_ms"] / 1000.0
    found, notes = peer_engines(wake, THRESHOLDS, SENSITIVITIES, refractory, peers)
    return engines + found, notes


# ------------------------------------------------------------------ streams
def streams_for(cfg: Config, wake_word: str, hopwise: Sequence[HopwiseEngine],
                positives: str | None = None) -> tuple[StreamSet, dict]:
    """The benchmark's streams, without what any compared hopwise model trained on."""
    b = lambda k: cfg[f"bench.wakeword.{k}"]  # noqa: E731
    excluded: set[str] = set()
    trained_by = []
    for e in hopwise:
        got = trained_paths(e.cfg)
        if got:
            trained_by.append(f"{e.name}: {len(got)} training recordings left out")
        excluded |= got
    # Profile folders resolve as training resolves them (repository root); --positives is a
    # command-line path (the current directory).
    d = lambda k: resolve_data_path(cfg[f"data.real.{k}"], cfg)  # noqa: E731
    pos_dir = Path(positives).expanduser().resolve() if positives else \
        resolve_data_path(b("positives"), cfg)
    pos, neg = select_recordings(
        wake_word, positives=pos_dir, wake_words=d("wake_words"),
        speech_commands=d("speech_commands"), esc50=d("esc50"),
        long_audio=resolve_data_path(b("long_audio"), cfg),
        extra_negatives=[resolve_data_path(p, cfg) for p in b("extra_negatives")], exclude=excluded)
    if not pos:
        raise FileNotFoundError(f"no recordings of {wake_word!r} to benchmark: put them in "
                                f"{d('wake_words')}/{wake_word}/ or pass --positives DIR")
    noise_dir = resolve_data_path(b("noise"), cfg)
    noise = [str(p) for p in audio_files(noise_dir)] if noise_dir and noise_dir.is_dir() else []
    if not noise:
        raise FileNotFoundError(f"no noise recordings in {noise_dir}: set bench.wakeword.noise to "
                                f"a folder of environmental noise")
    heard = [line for e in hopwise for line in noise_heard_in_training(e.cfg, noise, e.name)]
    streams = build_streams(
        wake_word, pos, neg, noise, snr_db=b("snr_db"), speech_dbfs=b("speech_dbfs"),
        gap_s=tuple(b("gap_s")), negative_gap_s=b("negative_gap_s"), after_s=b("after_s"),
        max_positives=b("max_positives"), seed=b("seed"),
        cache_dir=BuildPaths(cfg).cache_dir)
    return streams, {"left_out": trained_by, "excluded_files": len(excluded),
                     "noise_heard_in_training": heard}


def noise_heard_in_training(cfg: Config, noise_files: Sequence[str], name: str = "") -> list[str]:
    """A line when a real-data profile trained over the benchmark's own noise recordings.

    Training mixes its noise folders (`train.corpus.background_noise_folders`) into ``model.multitask.augment.noise_prob`` of its examples; where those are the very
    recordings the benchmark lays its words over, its misses are measured in noise the model
    has heard (at a milder SNR), and the report says so. Empty for a synthetic profile, one
    without noise augmentation, or noise it never trained on.
    """
    from train.corpus import background_noise_folders
    from train.datasets import background_noise_files
    aug = cfg.section("model.multitask.augment")
    if cfg["data.source"] != "real" or float(aug["noise_prob"]) <= 0:
        return []
    trained = {p.resolve() for p in background_noise_files(background_noise_folders(cfg))}
    both = sorted(p for p in (Path(f).resolve() for f in noise_files) if p in trained)
    if not both:
        return []
    lo, hi = aug["noise_snr_db"]
    return [f"{name or cfg.name}: trained over {len(both)} of the {len(noise_files)} noise "
            f"recordings ({', '.join(p.name for p in both)}) as background noise in "
            f"{100 * float(aug['noise_prob']):.0f} % of its examples at {lo:g}-{hi:g} dB SNR; "
            f"for noise it never heard, set bench.wakeword.noise to another folder"]


# ------------------------------------------------------------------ scoring an engine
def segments_at(times_s: Sequence[float], segments: Sequence[list]) -> list[list | None]:
    """The negative-stream segment each time (a false alarm, a command) falls in (a detection in
    the gap after a file belongs to that file), None before the first."""
    starts = np.array([seg[0] for seg in segments]) if segments else np.zeros(0)
    idx = np.searchsorted(starts, np.asarray(times_s, float), side="right") - 1
    return [segments[i] if i >= 0 else None for i in idx]


def _fa_by_kind(sources: Sequence[list | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for seg in sources:
        kind = seg[2] if seg is not None else "gap"
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items()))


def _fa_files(sources: Sequence[list | None], top: int = 8) -> list:
    files: dict[str, int] = {}
    for seg in sources:
        if seg is not None:
            files[seg[3]] = files.get(seg[3], 0) + 1
    return sorted(files.items(), key=lambda kv: -kv[1])[:top]


def score_engine(engine: Engine, runs: dict[str, EngineRun], streams: StreamSet,
                 target_per_hour: float, smoothing_ms: float | None = None,
                 headline_setting: float | None = None) -> dict:
    """DET points per SNR, the summary figures and where the false alarms came from."""
    neg = streams.negative
    kw = {} if smoothing_ms is None else {"smoothing_ms": smoothing_ms}
    # The negative stream is the same for every SNR: scored once per setting.
    negative = {s: score_stream(engine.detect(runs[neg.name], s, **kw), [], neg.duration_s)
                for s in engine.settings}
    per_snr = {}
    for snr, pos in streams.positives.items():
        scores: dict[float, StreamScore] = {}
        for s in engine.settings:
            sp = score_stream(engine.detect(runs[pos.name], s, **kw), pos.windows, pos.duration_s)
            scores[float(s)] = sp + negative[s]
        pts = det_points(scores)
        zero = miss_at_zero_false_alarms(pts)
        at5 = false_alarms_at_miss(pts, 0.05)
        ext = extrapolate_miss_at_rate(pts, target_per_hour,
                                       higher_is_stricter=engine.higher_is_stricter)
        op = operating_point(pts, target_per_hour, higher_is_stricter=engine.higher_is_stricter)
        hours = pts[0].negative_h if pts else 0.0
        per_snr[f"{snr:g}"] = {
            "det": [p.as_dict() for p in pts],
            "miss_at_0_fa": zero.as_dict() if zero else None,
            "fa_per_hour_at_5pct_miss": at5.as_dict() if at5 else None,
            "miss_at_target": ext,
            "operating_point": op,
            "negative_h": round(hours, 4),
            "zero_fa_upper_per_hour": round(poisson_upper_rate(0, hours), 2),
        }
    out = {"engine": engine.describe(), "smoothing_ms": smoothing_ms, "per_snr": per_snr}
    if headline_setting is not None:
        fas = engine.detect(runs[neg.name], headline_setting, **kw)
        sources = segments_at(fas, neg.segments)
        out["at_setting"] = {"setting": headline_setting, "negative_false_alarms": len(fas),
                             "by_kind": _fa_by_kind(sources), "top_files": _fa_files(sources)}
    return out


def _hopwise_entry(entry: dict, engine: HopwiseEngine, runs: dict[str, EngineRun],
                   streams: StreamSet, target: float, headline: str) -> dict:
    """A hopwise engine's scores at each smoothing, and its operating point, into ``entry``."""
    entry["stage_rtf"] = round(sum(r.extra["stage_s"] for r in runs.values())
                               / entry["audio_s"], 5) if entry["audio_s"] else None
    entry["replay_check"] = {k: r.extra.get("replay_check") for k, r in runs.items()}
    by_smoothing = [score_engine(engine, runs, streams, target, s, engine.default_setting)
                    for s in engine.smoothing_ms]
    entry["scores"] = by_smoothing[0]
    entry["smoothing_sweep"] = by_smoothing
    candidates = [(s["per_snr"][headline]["operating_point"], s["smoothing_ms"])
                  for s in by_smoothing if s["per_snr"][headline]["operating_point"]]
    if candidates:
        # A point that meets the target beats one that does not, then fewer misses.
        op, sm = min(candidates, key=lambda c: (not c[0]["meets_target"],
                                                c[0]["miss_rate"], c[1]))
        entry["operating_point"] = {"wake_threshold": op["setting"], "smoothing_ms": sm,
                                    "miss_rate": op["miss_rate"], "snr_db": float(headline),
                                    "false_alarms": op["false_alarms"], "rule": op["rule"],
                                    "meets_target": op["meets_target"],
                                    "target_false_alarms_per_hour": target,
                                    "setting": engine.setting_name}
        if getattr(engine, "verifier", None) is not None:
            # wake_threshold is then the keyword model's trigger before the verifier.
            entry["operating_point"]["wake_verifier_threshold"] = engine.verifier_threshold
    return entry


def verifier_variants(engine: HopwiseEngine, thresholds: Sequence[float] = (),
                      verifiers: Sequence[str] = ()) -> list[HopwiseEngine]:
    """``engine`` with each verifier of ``verifiers`` (its own first) at each threshold of
    ``thresholds`` (its own first), less itself: what `run_benchmark` scores on its runs."""
    if engine.verifier is None or not (thresholds or verifiers):
        return []
    own = engine.verifier_threshold
    levels = [own] + [float(t) for t in thresholds if float(t) != own]
    out = []
    for path in [None, *verifiers]:
        for t in levels:
            if path is None and t == own:
                continue
            out.append(engine.with_verifier(t, path))
    return out


def run_benchmark(cfg: Config, engines: Sequence[Engine], streams: StreamSet,
                  notes: Sequence[str] = (), streams_info: dict | None = None,
                  variants: dict[Engine, Sequence[HopwiseEngine]] | None = None) -> dict:
    """Run every engine on every stream, score them, choose hopwise's operating points.

    ``variants`` (a hopwise engine -> its `verifier_variants`) adds one entry per variant after
    its engine's, scored on that engine's runs: the same triggers, other verdicts."""
    b = lambda k: cfg[f"bench.wakeword.{k}"]  # noqa: E731
    target = float(b("target_false_alarms_per_hour"))
    headline = f"{float(b('snr_db')[0]):g}"
    results = []
    for engine in engines:
        runs: dict[str, EngineRun] = {}
        for stream in streams.all():
            log.info("%s on %s (%.0f s)", engine.name, stream.name, stream.duration_s)
            runs[stream.name] = engine.run(stream)
        audio = sum(r.audio_s for r in runs.values())
        cpu = sum(r.cpu_s for r in runs.values())
        entry = {"name": engine.name, "describe": engine.describe(),
                 "cpu_rtf": round(cpu / audio, 5) if audio else None, "audio_s": round(audio, 1),
                 "cpu_s": round(cpu, 2)}
        if isinstance(engine, HopwiseEngine):
            results.append(_hopwise_entry(entry, engine, runs, streams, target, headline))
            for variant in (variants or {}).get(engine, ()):
                log.info("%s: scored on %s's runs", variant.name, engine.name)
                results.append(_hopwise_entry(dict(entry, name=variant.name,
                                                   describe=variant.describe()),
                                              variant, runs, streams, target, headline))
        else:
            entry["scores"] = score_engine(engine, runs, streams, target, None,
                                           engine.default_setting)
            results.append(entry)
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wake_word": streams.wake_word, "headline_snr_db": float(headline),
        "target_false_alarms_per_hour": target,
        "streams": {"positives": {k: {"path": v.path, "duration_s": round(v.duration_s, 1),
                                      "positives": len(v.windows)}
                                  for k, v in ((f"{s:g}", p) for s, p in streams.positives.items())},
                    "negative": {"path": streams.negative.path,
                                 "duration_s": round(streams.negative.duration_s, 1)},
                    "info": streams.info, **(streams_info or {})},
        "engines": results, "notes": list(notes),
        "licences": {e.name: e.licence for e in engines if e.licence},
    }


# ------------------------------------------------------------------ report
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def summary_rows(report: dict) -> list[dict]:
    """One row per engine at the headline SNR: the table the README quotes."""
    h = f"{report['headline_snr_db']:g}"
    rows = []
    for r in report["engines"]:
        s = r["scores"]["per_snr"][h]
        zero, at5, ext = s["miss_at_0_fa"], s["fa_per_hour_at_5pct_miss"], s["miss_at_target"]
        rows.append({
            "engine": r["name"],
            "miss_at_0_fa": zero["miss_rate"] if zero else None,
            "setting_at_0_fa": zero["setting"] if zero else None,
            "fa_per_hour_at_5pct_miss": at5["false_alarms_per_hour"] if at5 else None,
            "miss_at_target_extrapolated": ext["miss_rate"] if ext else None,
            "target_beyond_sweep": bool(ext and ext["beyond_measured"]),
            "cpu_rtf": r["cpu_rtf"], "stage_rtf": r.get("stage_rtf"),
            "miss_at_0_fa_by_snr": {k: (v["miss_at_0_fa"] or {}).get("miss_rate")
                                    for k, v in r["scores"]["per_snr"].items()},
        })
    return rows


def markdown(report: dict) -> str:
    h = report["headline_snr_db"]
    st = report["streams"]
    neg_h = st["negative"]["duration_s"] / 3600
    lines = [f"# Wake-word benchmark: `{report['wake_word']}`", "",
             f"{report['created_utc']}. Positives over noise at {', '.join(st['positives'])} dB "
             f"SNR ({next(iter(st['positives'].values()))['positives']} recordings per stream); "
             f"negative stream {st['negative']['duration_s'] / 60:.1f} min "
             f"({neg_h:.2f} h). Headline: {h:g} dB.", "",
             "| engine | miss at 0 false alarms | false alarms/h at 5 % miss | "
             f"miss at {report['target_false_alarms_per_hour']:g}/h (extrapolated) | "
             "miss at 0 FA by SNR | CPU real-time factor (one core) |",
             "|---|---|---|---|---|---|"]
    for row in summary_rows(report):
        fa5 = row["fa_per_hour_at_5pct_miss"]
        by = ", ".join(f"{k} dB {_pct(v)}" for k, v in row["miss_at_0_fa_by_snr"].items())
        target = _pct(row["miss_at_target_extrapolated"])
        if row["target_beyond_sweep"]:
            target = f"beyond the sweep (>= {target} at the strictest setting)"
        cpu = f"{row['cpu_rtf']:.4f}" + ("" if row["stage_rtf"] is None
                                        else f" (stages, wall clock: {row['stage_rtf']:.4f})")
        lines.append(f"| {row['engine']} | {_pct(row['miss_at_0_fa'])} (setting "
                     f"{row['setting_at_0_fa']}) | {'not reached' if fa5 is None else f'{fa5:.2f}'} "
                     f"| {target} | {by} | "
                     f"{cpu} |")
    zero_upper = poisson_upper_rate(0, neg_h) if neg_h else float("inf")
    lines += ["", f"0 false alarms in {neg_h:.2f} h of negative audio bounds the rate below "
              f"{zero_upper:.1f}/h (95 %); a lower target is shown by extrapolating the DET "
              f"curve's tail (log false-alarm rate linear in the setting), and is marked as such.",
              ""]
    for r in report["engines"]:
        op = r.get("operating_point")
        if op:
            lines.append(f"- **{r['name']}** operating point"
                         f"{'' if op['meets_target'] else ' (target NOT met)'}: "
                         f"{op.get('setting', 'decisions.wake_threshold').split('.')[-1]} "
                         f"{op['wake_threshold']:g}"
                         + (f" (verifier at {op['wake_verifier_threshold']:g})"
                            if "wake_verifier_threshold" in op else "")
                         + f", smoothing_ms {op['smoothing_ms']:g}: miss "
                         f"{_pct(op['miss_rate'])} at {op['snr_db']:g} dB ({op['rule']}).")
        elif r["describe"]["kind"] == "hopwise":
            lines.append(f"- **{r['name']}**: no setting both wakes and raises no false alarm "
                         f"on these streams.")
        at = r["scores"].get("at_setting")
        if at:
            lines.append(f"- {r['name']} at its default setting ({at['setting']:g}): "
                         f"{at['negative_false_alarms']} false alarms on the negative stream, by "
                         f"source {at['by_kind'] or 'none'}")
        if r.get("replay_check") and not r["describe"].get("variant_of"):
            lines.append(f"- {r['name']}: decisions replay = pipeline on every stream "
                         f"({'; '.join(f'{k}: {v}' for k, v in r['replay_check'].items())})")
    info = st["info"]
    lines += ["", "## Recordings", "",
              f"- positives: {info['positives']} recordings ({info['positive_files_skipped']} "
              f"unreadable, skipped), scaled to {info['speech_dbfs']} dBFS active level, "
              f"{info['gap_s'][0]}-{info['gap_s'][1]} s noise between; hit = a detection from "
              f"the start to {info['after_s']} s after the end",
              f"- noise: {', '.join(Path(p).name for p in info['noise_files'])}",
              *(f"- noise heard in training: {line}"
                for line in st.get("noise_heard_in_training", [])),
              f"- negatives ({info['negative_files']} files): " + ", ".join(
                  f"{k} {info['negative_files_by_kind'][k]} files / {v / 60:.1f} min"
                  for k, v in info["negative_s_by_kind"].items())]
    if info.get("file_list"):
        lines.append(f"- every file and where it sits in the streams: {info['file_list']}")
    for line in st.get("left_out", []):
        lines.append(f"- left out: {line}")
    for note in report["notes"]:
        lines.append(f"- not compared: {note}")
    for k, v in report["licences"].items():
        lines.append(f"- licence: {v}")
    return "\n".join(lines) + "\n"


def plot_det(report: dict, path: Path) -> Path | None:
    """DET curves (miss rate against false alarms per hour), one panel per SNR."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no DET plot")
        return None
    snrs = list(report["streams"]["positives"])
    fig, axes = plt.subplots(1, len(snrs), figsize=(5 * len(snrs), 4.2), squeeze=False)
    neg_h = report["streams"]["negative"]["duration_s"] / 3600
    floor = 0.5 / max(neg_h, 1e-9)  # where "0 false alarms" is drawn on a log axis
    for ax, snr in zip(axes[0], snrs):
        for r in report["engines"]:
            pts = r["scores"]["per_snr"][snr]["det"]
            x = [max(p["false_alarms_per_hour"], floor) for p in pts]
            y = [100 * p["miss_rate"] for p in pts]
            ax.plot(x, y, marker=".", label=r["name"])
        ax.axvline(floor, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("false alarms per hour (left dotted line: none)")
        ax.set_ylabel("miss rate (%)")
        ax.set_title(f"'{report['wake_word']}' at {snr} dB SNR")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_operating_point(engine: HopwiseEngine, entry: dict, report_path: Path) -> Path:
    """Record the chosen operating point and its figures in the model's manifest."""
    from device.manifest import load_manifest, manifest_path_for
    model = Path(engine.describe()["model"])
    path = manifest_path_for(model)
    data = load_manifest(path)
    data.pop("_path", None)
    data["operating_point"] = dict(entry["operating_point"], report=str(report_path),
                                   measured_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path.write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.wakeword",
        description="Wake-word benchmark: miss rate against false alarms per hour on long "
                    "audio, for hopwise (the `device detect` code path) and, when installed "
                    "(`make peers`), Porcupine 1.9.5 and openWakeWord, on the same streams in "
                    "one run. Settings: [bench.wakeword] of the profile.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m evaluation.wakeword --profile real --engine hopwise "
               "--engine hopwise:default --engine porcupine\n"
               "  python -m evaluation.wakeword --profile evaluation/profiles/alexa.toml\n"
               "  python -m evaluation.wakeword --profile real --positives my_word/ "
               "--set 'bench.wakeword.extra_negatives=[\"podcasts/\"]'")
    add_profile_arguments(parser, "bench.wakeword.snr_db=[10.0]")
    parser.add_argument("--engine", action="append", default=[],
                        help="hopwise (the profile's deployed model), hopwise:PROFILE, "
                             "hopwise:PROFILE=MODEL.tflite, porcupine, openwakeword; repeat "
                             "(default: hopwise + every installed peer that knows the word)")
    parser.add_argument("--positives", default=None,
                        help="folder of wake-word recordings (default: bench.wakeword.positives, "
                             "else data.real.wake_words/<labels.wake_word>)")
    parser.add_argument("--write-operating-point", action="store_true",
                        help="record each hopwise engine's chosen operating point in its model's "
                             "manifest")
    parser.add_argument("--verifier-threshold", action="append", type=float, default=[],
                        metavar="V",
                        help="also score each hopwise engine's wake verifier at V (repeat), on "
                             "the same runs: the same triggers, other verdicts")
    parser.add_argument("--verifier", action="append", default=[], metavar="PATH",
                        help="also score another wake verifier (a wake_verifier.tflite with its "
                             "manifest) behind each hopwise engine's triggers, at its own and "
                             "each --verifier-threshold (repeat)")
    parser.add_argument("--out", default=None,
                        help="report path stem (default: build/reports/<profile>/wakeword_<word>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    try:
        engines, notes = build_engines(args.engine, cfg, args.overrides)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wake = engines[0].wake_word if engines else cfg["labels.wake_word"]
    hopwise = [e for e in engines if isinstance(e, HopwiseEngine)]
    variants: dict[Engine, list[HopwiseEngine]] = {}
    if args.verifier_threshold or args.verifier:
        # Built (their verifiers loaded and checked) before hours of audio are run, not after.
        if not any(e.verifier is not None for e in hopwise):
            print("error: --verifier-threshold / --verifier need a hopwise engine with a wake "
                  "verifier (its profile's stages.keywords.verifier)", file=sys.stderr)
            return 2
        try:
            variants = {e: verifier_variants(e, args.verifier_threshold, args.verifier)
                        for e in hopwise}
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        streams, info = streams_for(cfg, wake, hopwise, args.positives)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_benchmark(cfg, engines, streams, notes, info, variants)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    stem = Path(args.out) if args.out else \
        BuildPaths(cfg).bench_report_dir() / f"wakeword_{wake.replace(' ', '_')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    png = plot_det(report, stem.parent / f"{stem.name}_det.png")
    if args.write_operating_point:
        own = [e for e in report["engines"] if not e["describe"].get("variant_of")]
        for engine, entry in zip(engines, own):
            if isinstance(engine, HopwiseEngine) and entry.get("operating_point"):
                log.info("operating point of %s -> %s", engine.name,
                         write_operating_point(engine, entry, json_path))
    sys.stdout.write(text)
    log.info("report: %s, %s%s (%.0f s)", json_path, stem.with_suffix(".md"),
             f", {png}" if png else "", report["wall_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
