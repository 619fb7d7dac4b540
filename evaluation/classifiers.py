"""Evaluate an exported sound classifier on any ESC-50-layout folder, as the device runs it.

::

    python -m evaluation.classifiers --model build/export/sound_cnn_int8.tflite \\
        --data ../shared/data/esc50                          # every clip of the model's classes
    python -m evaluation.classifiers --model build/export/real/sound_cnn_bn_all_int8.tflite \\
        --data ../shared/data/esc50 --files-from build/models/sound_cnn/real/bn_all/report.json

Each clip (``audio/*.wav|flac`` + ``meta/esc50.csv``, the full ESC-50 or a part) goes through
the device's frontend (``[frontend.classifier]`` of the profile, checked against the manifest),
is cut into the model's segments with near-silent ones dropped (`device.sound.segment`), and
each segment runs through the int8 model with `device.interpreter.TFLiteModel` (the device's
arithmetic); the segments vote per clip (`device.sound.vote`: probability and majority).
Clips of classes the model does not know are left out and counted.

Out come a JSON (``build/reports/<name>.json``: clip accuracy by both votes, segment accuracy,
per-class recall, the confusion matrix, milliseconds per segment and per clip) and the
confusion matrix as a PNG beside it. ``--files-from`` a run's ``report.json`` keeps only its
held-out test clips (the numbers training and export report); without it every clip counts,
training clips included, so say which.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.interpreter import TFLiteModel
from device.paths import BuildPaths
from device.sound import SegmentSpec, segment, vote
from train.classifiers import FRONTEND, clip_features, clip_metrics
from train.classifiers import plot_confusion as train_plot_confusion

__all__ = ["evaluate_classifier", "plot_confusion", "main"]

log = logging.getLogger("evaluation.classifiers")


def evaluate_classifier(cfg, model_path: str | Path, data: str | Path,
                        files: set[str] | None = None) -> dict:
    """Clip and segment figures of the int8 model at ``model_path`` on the ESC-50-layout
    ``data`` (only the clips whose path is in ``files``, when given)."""
    from train.datasets import load_esc50
    section = cfg.section(f"frontend.{FRONTEND}")
    model = TFLiteModel(model_path, frontend=section)
    (head, labels), = model.labels.items()
    spec = SegmentSpec.from_frontend(section, model.frames)
    clips = load_esc50(data, int(section["sample_rate"]))
    if files is not None:
        wanted = {Path(f).name for f in files}
        clips = [c for c in clips if Path(c.path).name in wanted]
    index = {lab: i for i, lab in enumerate(labels)}
    skipped: dict[str, int] = {}
    truth, prob, major, seg_ok, seg_n = [], [], [], 0, 0
    run_s = 0.0
    for c in clips:
        if c.label not in index:
            skipped[c.label] = skipped.get(c.label, 0) + 1
            continue
        segs, _ = segment(clip_features(c.audio, cfg), spec)
        t0 = time.perf_counter()
        p = model.predict(segs)[head]
        run_s += time.perf_counter() - t0
        truth.append(index[c.label])
        prob.append(vote(p, "probability"))
        major.append(vote(p, "majority"))
        seg_ok += int(np.sum(p.argmax(1) == index[c.label]))
        seg_n += len(p)
    if not truth:
        raise ValueError(f"no clip under {data} has one of the model's classes {labels}")
    truth_a = np.asarray(truth)
    return {
        "model": str(model_path), "data": str(data), "labels": labels,
        "frontend": {k: section[k] for k in section},
        "segment_frames": spec.segment_frames, "segment_hop_frames": spec.segment_hop_frames,
        "clips": len(truth), "segments": seg_n,
        "selection": "the run's test clips" if files is not None else "every clip",
        "skipped_classes": skipped,
        "probability_vote": clip_metrics(truth_a, np.asarray(prob), labels),
        "majority_vote": clip_metrics(truth_a, np.asarray(major), labels),
        "segment_accuracy": seg_ok / max(seg_n, 1),
        "ms_per_segment": 1000.0 * run_s / max(seg_n, 1),
        "ms_per_clip": 1000.0 * run_s / len(truth),
        "params": model.manifest.get("params"), "size_bytes": Path(model_path).stat().st_size,
    }


def plot_confusion(result: dict, path: Path) -> Path:
    """The probability-vote confusion matrix (rows: truth, shares per row) as a PNG."""
    return train_plot_confusion(result["labels"], result["probability_vote"]["confusion"], path,
                                Path(result["model"]).name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.classifiers", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Clip accuracy (probability and majority vote), per-class recall and a "
                    "confusion matrix of an exported int8 sound classifier on an ESC-50-layout "
                    "folder (audio/ + meta/esc50.csv; the full dataset or a part), run through "
                    "the device's frontend, segmenting and int8 runner.",
        epilog="example:\n  python -m evaluation.classifiers --model build/export/sound_cnn_int8."
               "tflite --data ../shared/data/esc50 --files-from build/models/sound_cnn/real/cnn/"
               "report.json")
    parser.add_argument("--model", required=True, type=Path, help="the _int8.tflite (manifest beside it)")
    parser.add_argument("--data", default=None, help="an ESC-50-layout folder (default: the "
                        "profile's data.real.esc50)")
    parser.add_argument("--files-from", type=Path, default=None, help="a training run's "
                        "report.json: evaluate only its test clips")
    parser.add_argument("--out", default=None, help="report name under build/reports/ (default: "
                        "eval_<model file stem>)")
    add_profile_arguments(parser, "frontend.classifier.silence_db=-30")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    from train.corpus import resolve_data_path
    data = Path(args.data) if args.data else resolve_data_path(cfg["data.real.esc50"], cfg)
    files = None
    if args.files_from is not None:
        files = set(json.loads(args.files_from.read_text())["test_files"])
    try:
        result = evaluate_classifier(cfg, args.model, data, files)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluation.classifiers: {exc}", file=sys.stderr)
        return 2
    name = args.out or f"eval_{args.model.stem}"
    out = BuildPaths(cfg).report(f"{name}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    png = plot_confusion(result, out.with_suffix(".png"))
    pv, mv = result["probability_vote"], result["majority_vote"]
    print(f"{args.model.name} on {data} ({result['selection']}): {result['clips']} clips, "
          f"clip accuracy {pv['accuracy']:.3f} (probability vote), {mv['accuracy']:.3f} "
          f"(majority), segments {result['segment_accuracy']:.3f}; "
          f"{result['ms_per_segment']:.2f} ms per segment, {result['ms_per_clip']:.1f} ms per clip")
    if result["skipped_classes"]:
        print(f"left out {sum(result['skipped_classes'].values())} clips of classes the model "
              f"does not know")
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
