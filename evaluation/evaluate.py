"""Judge an exported model on a dataset folder it has never seen: accuracy and per-class recall.

    python -m evaluation.evaluate --data ../shared/data/speech_commands_v2_test \\
        [--profile real] [--model build/export/multitask_int8.tflite] [--layout auto] \\
        [--out report.json]

``--profile``/``--set`` (as every hopwise command line) pick the defaults: ``--model`` is the
profile's deployed model (`device.paths.BuildPaths.deployed_model`), the report goes to the
profile's ``build/reports/evaluate_<model>_<data>.json``.

The folder is read in its dataset's standard layout (``speech_commands``, ``wake_words``,
``esc50``, ``urbansound8k``; ``auto`` tells them apart by their files). Keyword layouts are
scored on the ``keyword`` head, scene layouts on the ``scene`` head. The model runs exactly as
on the device (`device.interpreter.TFLiteModel`: frontend -> manifest normalisation -> int8).

Label mapping, from the manifest's labels (never from a profile, so any model can be judged):

* speech_commands: folders named like a keyword label keep it; other words -> ``_unknown_``.
* wake_words: the phrase that is a keyword label (the wake word) keeps it; other phrases
  (``alexa``, ``snowboy``) -> ``_unknown_``; the loudest 1 s of each recording is scored.
* esc50: the five major groups when the scene head has them, else the 50 categories.
* urbansound8k: the dataset's class names.

Scene clips longer than 1 s are scored clip-wise on the mean posterior of 1 s windows every
``--scene-hop-s`` (a device smooths scene posteriors over time the same way). Clips whose
label the head does not have are counted under ``skipped``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.frontend import LogMelConfig, log_mel
from device.interpreter import TFLiteModel
from device.paths import BuildPaths
from train.multitask import MODEL
from train.waveforms import fit_length

log = logging.getLogger("evaluation.evaluate")

LAYOUTS = ("speech_commands", "wake_words", "esc50", "urbansound8k")
KEYWORD_LAYOUTS = ("speech_commands", "wake_words")


def detect_layout(root: Path) -> str:
    """Tell the four standard layouts apart by their tell-tale files and folders."""
    root = Path(root)
    if (root / "meta" / "esc50.csv").is_file():
        return "esc50"
    if (root / "metadata" / "UrbanSound8K.csv").is_file():
        return "urbansound8k"
    folders = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    if not folders:
        raise ValueError(f"{root} has no sub-folders: not a speech_commands/wake_words/esc50/"
                         f"urbansound8k folder; pass --layout or point --data at the dataset root")
    sc_marks = {"_silence_", "_unknown_", "_background_noise_", "yes", "no", "up", "down", "left",
                "right", "on", "off", "stop", "go"}
    if folders & sc_marks or (root / "testing_list.txt").is_file():
        return "speech_commands"
    return "wake_words"


def load_clips(root: Path, layout: str, keyword_labels: Sequence[str],
               scene_labels: Sequence[str], sample_rate: int):
    """Clips of the folder with labels mapped onto the model's heads; returns (clips, head)."""
    from train import datasets

    if layout == "speech_commands":
        clips = datasets.load_speech_commands(root, sample_rate, commands=list(keyword_labels))
        return clips, "keyword"
    if layout == "wake_words":
        clips = datasets.load_wake_words(root, sample_rate, clip_s=1.0)
        for c in clips:
            if c.label not in keyword_labels:
                c.meta["word"], c.label = c.label, "_unknown_"
        return clips, "keyword"
    if layout == "esc50":
        major = set(scene_labels) <= set(datasets.ESC50_MAJOR_GROUPS)
        return datasets.load_esc50(root, sample_rate, major_groups=major), "scene"
    if layout == "urbansound8k":
        return datasets.load_urbansound8k(root, sample_rate), "scene"
    raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)} or auto")


def _windows(audio: np.ndarray, n: int, hop: int) -> np.ndarray:
    """Windows of ``n`` samples every ``hop``, the last one flush with the end; a clip no
    longer than ``n`` is one centred window."""
    x = np.asarray(audio, np.float32)
    if len(x) <= n:
        return fit_length(x, n, align="centre")[None]
    starts = list(range(0, len(x) - n + 1, hop))
    if starts[-1] != len(x) - n:
        starts.append(len(x) - n)
    return np.stack([x[s:s + n] for s in starts])


def evaluate(model_path: str | Path, data_dir: str | Path, layout: str = "auto",
             scene_hop_s: float = 0.5, num_threads: int = 1) -> dict:
    """Score the model on the folder; returns the report (see the module docstring)."""
    t0 = time.perf_counter()
    model = TFLiteModel(model_path, num_threads=num_threads)
    manifest = model.manifest
    labels = {o["name"]: list(o["labels"]) for o in manifest["outputs"]}
    lm_cfg = LogMelConfig.from_mapping(manifest["frontend"])
    data_dir = Path(data_dir)
    layout = detect_layout(data_dir) if layout == "auto" else layout
    clips, head = load_clips(data_dir, layout, labels.get("keyword", []), labels.get("scene", []),
                             lm_cfg.sample_rate)
    if head not in labels:
        raise ValueError(f"{model_path} has no '{head}' head (it has {sorted(labels)}); a "
                         f"{layout} folder cannot judge it")
    head_labels = labels[head]
    index = {name: i for i, name in enumerate(head_labels)}
    n = lm_cfg.sample_rate  # 1 s: the model's input length
    hop = max(1, int(round(scene_hop_s * lm_cfg.sample_rate)))
    y_true, y_pred, skipped = [], [], {}
    for clip in clips:
        if clip.label not in index:
            skipped[clip.label] = skipped.get(clip.label, 0) + 1
            continue
        if head == "scene":
            wins = _windows(clip.audio, n, hop)
        else:  # keyword clips are 1 s already (loaders fit / crop them); centre anything longer
            wins = fit_length(clip.audio, n, align="centre")[None]
        feats = np.stack([log_mel(w, lm_cfg) for w in wins])
        probs = model.predict(feats)[head].mean(0)
        y_true.append(index[clip.label])
        y_pred.append(int(np.argmax(probs)))
    if not y_true:
        raise ValueError(f"no clip under {data_dir} has a label of the '{head}' head "
                         f"({head_labels}); skipped {skipped}")
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    confusion = np.zeros((len(head_labels), len(head_labels)), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    present = [i for i in range(len(head_labels)) if confusion[i].sum()]
    recall = {head_labels[i]: round(float(confusion[i, i] / confusion[i].sum()), 4) for i in present}
    return {
        "model": str(model_path), "sha256": manifest["sha256"], "data": str(data_dir),
        "layout": layout, "head": head, "clips": int(len(y_true)),
        "accuracy": round(float(np.mean(y_true == y_pred)), 4),
        "balanced_accuracy": round(float(np.mean(list(recall.values()))), 4),
        "per_class_recall": recall, "support": {head_labels[i]: int(confusion[i].sum()) for i in present},
        "labels": head_labels, "confusion": confusion.tolist(), "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.evaluate",
        description="Accuracy and per-class recall of an exported int8 model on a dataset "
                    "folder in a standard layout, run exactly as on the device.",
        epilog="Example: python -m evaluation.evaluate --profile real --data ../shared/data/esc50")
    add_profile_arguments(parser)
    parser.add_argument("--model", default=None,
                        help=".tflite file with its .json manifest beside it (default: the "
                             "profile's deployed model, build/export/multitask_int8.tflite)")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS,
                        help="folder layout (default: detect)")
    parser.add_argument("--scene-hop-s", type=float, default=0.5,
                        help="hop between 1 s windows of long scene clips, seconds")
    parser.add_argument("--out", default=None,
                        help="JSON report path (default: the profile's "
                             "build/reports/evaluate_<model>_<data>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    model = Path(args.model) if args.model else paths.deployed_model(MODEL)
    report = evaluate(model, args.data, args.layout, args.scene_hop_s)
    out = (Path(args.out) if args.out
           else paths.report(f"evaluate_{model.stem}_{Path(args.data).name}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    log.info("%s on %s (%s, %d clips): accuracy %.4f, balanced %.4f -> %s", model.name,
             args.data, report["layout"], report["clips"], report["accuracy"],
             report["balanced_accuracy"], out)
    json.dump({k: report[k] for k in ("layout", "head", "clips", "accuracy", "balanced_accuracy",
                                      "per_class_recall", "skipped")}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
