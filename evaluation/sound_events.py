"""Sound events as the user lives them: recall on real clips of the classifier's classes and
false ``sound`` events per hour on long audio of anything else, by threshold.

::

    python -m evaluation.sound_events                      # the profile's stages.sounds model
    python -m evaluation.sound_events --model build/export/sound_cnn_int8.tflite \\
        --esc50 ../shared/data/esc50 --long-audio ../shared/data/long_audio

Clip accuracy (`evaluation.classifiers`) says which class a clip's segments vote for; the device
raises events. Every file here goes through the device's own path: `device.audio_source.FileSource`
-> the profile's ``sound_frontend`` and ``sounds`` stages (`device.stages.classifier`: streaming
log-mel, segments, silence, probability vote every ``stride_hops``). The voted posteriors of each
run are recorded once, then replayed through `device.decisions.SoundTracker` at each threshold
(``decisions.sound_threshold_on``; ``threshold_off`` keeps its gap below it), which is exactly
what the stage would have raised with that setting.

* **positives**: the clips of an ESC-50-layout folder whose class the model knows. A clip is
  *caught* when an event of its class is raised, *confused* when only other classes are.
* **negatives**: every audio file of the long-audio folders (speech, music, nature: none of the
  classes), and the ESC-50 clips of the classes the model does not know. Every event there is a
  false one; the rate is per hour of that audio.

Writes ``build/reports/<out>.json`` and ``.md`` (the table) and a PNG of recall against false
events per hour.
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
from device.decisions import SoundTracker
from device.sound import OTHER
from device.paths import BuildPaths, resolve_build_path

log = logging.getLogger("evaluation.sound_events")

STAGES = ("sound_frontend", "sounds")
AUDIO = (".wav", ".flac", ".ogg")


def esc50_files(root: Path) -> list[tuple[Path, str]]:
    """``(audio file, category)`` of every row of an ESC-50-layout folder's ``meta/esc50.csv``
    whose file is there."""
    import csv
    root = Path(root)
    with open(root / "meta" / "esc50.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [(root / "audio" / r["filename"], r["category"]) for r in rows
            if (root / "audio" / r["filename"]).is_file()]


def record_runs(cfg, model: str | Path | None, path: Path) -> tuple[list, float, list[str]]:
    """The classifier stage's runs on one file: ``[(t_audio_s, voted posteriors)]``, the audio
    length in seconds and the model's labels. The stage's own tracker is bypassed (its events
    are replayed by threshold later)."""
    from device.audio_source import FileSource
    from device.pipeline import Pipeline
    sets = [] if model is None else [f"stages.sounds.model={model}"]
    cfg = cfg.with_overrides(sets) if sets else cfg
    pipe = Pipeline.from_config(cfg, stage_names=STAGES)
    stage = next(s for s in pipe.stages if s.name == "sounds")
    if stage.model is None:
        raise FileNotFoundError(f"no sound classifier at {stage.path}; build one with "
                                f"`make train export`")
    runs: list = []

    class _Recorder:
        def update(self, t, voted):
            runs.append((float(t), np.asarray(voted, np.float64).copy()))
            return []

        def reset(self):
            runs.append(None)                       # a gap: the replay resets there too

    stage.tracker = _Recorder()
    try:
        status = pipe.run(FileSource(str(path), rate=pipe.rate, realtime=False))
    finally:
        pipe.close()
    return runs, float(status["audio_s"]), list(stage.labels)


def replay(runs: Sequence, labels: Sequence[str], cfg, threshold_on: float) -> list[dict]:
    """The events `SoundTracker` raises on recorded ``runs`` at ``threshold_on`` (``threshold_off``
    keeps the profile's gap below it)."""
    gap = float(cfg["decisions.sound_threshold_on"]) - float(cfg["decisions.sound_threshold_off"])
    tracker = SoundTracker(labels, smoothing_s=cfg["decisions.sound_smoothing_ms"] / 1000.0,
                           threshold_on=threshold_on,
                           threshold_off=max(0.0, threshold_on - gap))
    events: list[dict] = []
    for run in runs:
        if run is None:
            tracker.reset()
            continue
        events += tracker.update(*run)
    return events


def evaluate(cfg, model=None, esc50: Path | None = None, long_audio: Sequence[Path] = (),
             thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
             only: set[str] | None = None) -> dict:
    """Record every file once, replay at each threshold; the result as a dict (see module doc).
    ``only``: the ESC-50 files to use (e.g. a training run's test clips); None: all of them."""
    files: list[tuple[Path, str | None]] = []        # (file, its class or None: a negative)
    labels = None
    if esc50 is not None:
        files += [(p, lab) for p, lab in esc50_files(esc50) if only is None or str(p) in only]
    for folder in long_audio:
        files += [(p, None) for p in sorted(Path(folder).rglob("*")) if p.suffix.lower() in AUDIO]
    if not files:
        raise FileNotFoundError("no audio: give --esc50 and/or --long-audio folders")
    recorded = []
    for i, (path, label) in enumerate(files):
        runs, audio_s, labels = record_runs(cfg, model, path)
        recorded.append((path, label, runs, audio_s))
        if (i + 1) % 25 == 0:
            log.info("recorded %d/%d files", i + 1, len(files))
    known = set(labels) - {OTHER}
    positives = [r for r in recorded if r[1] in known]
    negatives = [r for r in recorded if r[1] not in known]
    neg_s = sum(r[3] for r in negatives)
    long_s = sum(r[3] for r in negatives if r[1] is None)
    rows = []
    for th in thresholds:
        caught = confused = 0
        false_events: dict[str, int] = {}
        for path, label, runs, _ in positives:
            raised = {e["label"] for e in replay(runs, labels, cfg, th)}
            caught += label in raised
            confused += bool(raised) and label not in raised
        for path, label, runs, _ in negatives:
            for e in replay(runs, labels, cfg, th):
                key = "long_audio" if label is None else "esc50_other_classes"
                false_events[key] = false_events.get(key, 0) + 1
        rows.append(_row(th, len(positives), caught, confused, false_events, neg_s, long_s))
    return {"model": str(model or cfg["stages.sounds.model"]), "labels": labels,
            "negative_audio_s": round(neg_s, 1),
            "negative_files": {"long_audio": sum(1 for r in negatives if r[1] is None),
                               "esc50_other_classes": sum(1 for r in negatives if r[1] is not None)},
            "rows": rows, "profile": cfg.name}


def _row(threshold_on: float, positives: int, caught: int, confused: int,
         false_events: dict[str, int], negative_s: float, long_audio_s: float) -> dict:
    """One threshold's row: counts, recall, and false events per hour of all negative audio and
    of the long audio alone."""
    return {"threshold_on": threshold_on, "positives": positives, "caught": caught,
            "recall": caught / positives if positives else None, "confused": confused,
            "false_events": false_events,
            "false_per_hour": (sum(false_events.values()) / (negative_s / 3600.0)
                               if negative_s else None),
            "false_per_hour_long_audio": (false_events.get("long_audio", 0)
                                          / (long_audio_s / 3600.0) if long_audio_s else None),
            "long_audio_s": long_audio_s}


def evaluate_cv(cfg, cv_summary: Path, long_audio: Sequence[Path] = (),
                thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> dict:
    """Every fold of a cross-validation (`train.classifiers --cv`, exported with `export.
    classifiers --cv`): each fold's int8 model on its own test clips (positives, and its ESC-50
    clips of other classes) and on ``long_audio``; counts pooled over the folds, so every clip is
    a positive once, by a model that never trained on it. ``false_per_hour_long_audio`` counts the
    long audio once per fold (the same audio, five models)."""
    summary = json.loads(Path(cv_summary).read_text())
    model = summary["model"].removeprefix("sound_")
    paths = BuildPaths(cfg)
    esc50 = None
    folds = []
    for run in summary["runs"]:
        report = json.loads((paths.model_dir(f"sound_{model}", run) / "report.json").read_text())
        test = {str(f) for f in report["test_files"]}
        esc50 = Path(next(iter(f for f in test if "/audio/" in f))).parent.parent if esc50 is None \
            else esc50
        tflite = paths.variant_export(f"sound_{model}_{run}")
        if not tflite.exists():
            raise FileNotFoundError(f"{tflite} is missing: run `python -m export.classifiers "
                                    f"{model} --cv --variant {summary['variant']}` first")
        folds.append(evaluate(cfg, tflite, esc50, long_audio, thresholds, only=test))
    neg_s = sum(f["negative_audio_s"] for f in folds)
    rows = []
    for i, th in enumerate(thresholds):
        per = [f["rows"][i] for f in folds]
        fe: dict[str, int] = {}
        for r in per:
            for k, v in r["false_events"].items():
                fe[k] = fe.get(k, 0) + v
        rows.append(_row(th, sum(r["positives"] for r in per), sum(r["caught"] for r in per),
                         sum(r["confused"] for r in per), fe, neg_s,
                         sum(r["long_audio_s"] for r in per)))
    return {"model": f"{summary['model']}/{summary['variant']} ({len(folds)} folds)",
            "labels": folds[0]["labels"], "negative_audio_s": round(sum(
                f["negative_audio_s"] for f in folds), 1),
            "negative_files": {k: sum(f["negative_files"][k] for f in folds)
                               for k in ("long_audio", "esc50_other_classes")},
            "rows": rows, "profile": cfg.name, "folds": [f["rows"] for f in folds]}


def markdown(result: dict) -> str:
    lines = [f"Sound events of `{Path(result['model']).name}` ({len(result['labels'])} classes): "
             f"{result['rows'][0]['positives']} real clips of its classes; "
             f"{result['negative_audio_s'] / 60:.1f} min of other audio "
             f"({result['negative_files']['long_audio']} long files, "
             f"{result['negative_files']['esc50_other_classes']} ESC-50 clips of other classes).",
             "", "| threshold_on | clips caught | confused only | false events (long audio / "
             "other ESC-50) | false events per hour | on long audio alone, per hour |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        fe = r["false_events"]
        lines.append(f"| {r['threshold_on']:.2f} | {r['caught']}/{r['positives']} "
                     f"({100 * (r['recall'] or 0):.1f} %) | {r['confused']} | "
                     f"{fe.get('long_audio', 0)} / {fe.get('esc50_other_classes', 0)} | "
                     f"{r['false_per_hour']:.0f} | {r['false_per_hour_long_audio'] or 0:.0f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [r["false_per_hour"] for r in result["rows"]]
    ys = [100 * (r["recall"] or 0) for r in result["rows"]]
    ax.plot(xs, ys, "o-")
    for r, x, y in zip(result["rows"], xs, ys):
        ax.annotate(f"{r['threshold_on']:.2f}", (x, y), fontsize=8)
    ax.set_xlabel("false sound events per hour (other audio)")
    ax.set_ylabel("real clips caught (%)")
    ax.set_title(Path(result["model"]).name, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.sound_events",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Recall on real clips and false sound events per hour on other audio, by "
                    "threshold, through the device's classifier stage (see the module doc).",
        epilog="example:\n  python -m evaluation.sound_events --esc50 ../shared/data/esc50 "
               "--long-audio ../shared/data/long_audio")
    add_profile_arguments(parser, "decisions.sound_smoothing_ms=1500")
    parser.add_argument("--model", default=None, help="the classifier's _int8.tflite (default: "
                        "stages.sounds.model)")
    parser.add_argument("--esc50", default=None, help="an ESC-50-layout folder of positives "
                        "(default: data.real.esc50 when it exists)")
    parser.add_argument("--long-audio", action="append", default=None,
                        help="a folder of long audio with none of the classes (repeatable; "
                             "default: bench.wakeword's long_audio folder when it exists)")
    parser.add_argument("--cv", default=None, help="a cross-validation's <run>_cv.json "
                        "(train.classifiers --cv, export.classifiers --cv): every fold's model on "
                        "its own test clips, pooled")
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--out", default=None, help="report name under build/reports/ "
                        "(default: sound_events_<model file stem>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    from train.corpus import resolve_data_path
    esc50 = Path(args.esc50) if args.esc50 else resolve_data_path(cfg["data.real.esc50"], cfg)
    if esc50 is not None and not (esc50 / "meta" / "esc50.csv").is_file():
        esc50 = None
    long_audio = [Path(p) for p in args.long_audio] if args.long_audio else [
        p for p in [resolve_data_path(cfg["bench.wakeword.long_audio"], cfg)] if p and p.is_dir()]
    try:
        if args.cv:
            result = evaluate_cv(cfg, Path(args.cv), long_audio, args.thresholds)
        else:
            result = evaluate(cfg, args.model, esc50, long_audio, args.thresholds)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluation.sound_events: {exc}", file=sys.stderr)
        return 2
    model = Path(args.cv) if args.cv else Path(args.model) if args.model else resolve_build_path(
        cfg, cfg["stages.sounds.model"])
    name = args.out or f"sound_events_{model.stem}"
    paths = BuildPaths(cfg)
    out = paths.report(f"{name}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    plot(result, out.with_suffix(".png"))
    print(table)
    print(f"wrote {out} (+ .md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
