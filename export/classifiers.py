"""Export the sound classifiers as int8 TFLite with manifests, checked on their test clips.

``python -m export.classifiers cnn resnet --profile default`` reads each trained run
(``build/models/sound_<model>/<profile>/<variant>/``, `train.classifiers`) and writes::

    build/export/sound_cnn_int8.tflite    + .json    (the stage's model; --variant VARIANT
    build/export/sound_resnet_int8.tflite + .json     exports another run, to export/<profile>/)

through `export.convert.export_with_manifest` (full-integer int8, calibrated on training
segments; head ``sound`` with the run's labels; frontend ``classifier``; the per-band
normaliser), then runs the int8 model through the device's runner on the run's held-out test
segments (``test.npz``) and votes per clip as the float model was judged: the manifest's
``metrics`` carry float and int8 clip accuracy (probability and majority votes) side by side.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.interpreter import TFLiteModel  # noqa: E402
from device.paths import BuildPaths  # noqa: E402
from export.convert import export_with_manifest, fixed_batch_copy  # noqa: E402
from train import loop  # noqa: E402
from train.classifiers import (FRONTEND, MODELS, build, clip_metrics, cv_summary_path,  # noqa: E402
                               predict_clips, write_cv_summary)

log = logging.getLogger("export.classifiers")


def export_classifier(cfg: Config, model: str, variant: str | None = None,
                      out: Path | None = None, onnx: bool = False) -> dict:
    """Convert one trained run to int8 with its manifest; return a summary with float and int8
    test figures. ``variant`` None: the run named like the model, written to the deployed path
    ``export/sound_<model>_int8.tflite``; another variant goes to ``export/<profile>/``."""
    paths = BuildPaths(cfg)
    name = f"sound_{model}"
    run = variant or model
    files = loop.RunFiles(paths.model_dir(name, run))
    net, norm, info = loop.load_run(files, f"python -m train.classifiers {model} --profile "
                                           f"{paths.profile}")
    report = json.loads((files.folder / "report.json").read_text())
    labels = list(report["labels"])
    fixed = fixed_batch_copy(net, lambda batch_size: build(cfg, model, len(labels), batch_size,
                                                           settings=report.get("settings")))
    if out is None:
        out = (paths.deployed_model(name) if run == model
               else paths.variant_export(f"{name}_{run}"))
    calib = np.load(files.calibration).astype(np.float32)
    test = np.load(files.folder / "test.npz")
    segs, owner, truth = test["segments"], test["owner"], test["truth"]
    fl = report["float"]
    metrics = {"float_clip_accuracy": fl["probability_vote"]["accuracy"],
               "float_clip_accuracy_majority": fl["majority_vote"]["accuracy"],
               "test_clips": int(len(truth)), "split": report["split"]}
    summary = export_with_manifest(
        fixed, out, name=name, kind=name, heads={"sound": labels},
        frontend=(FRONTEND, cfg.section(f"frontend.{FRONTEND}")), normalizer=norm,
        raw_calibration=calib, stride_hops=None, onnx=onnx, metrics=metrics,
        extra={"params": int(report["params"]), "variant": run,
               "segment_frames": int(report["segment_frames"])})
    device_model = TFLiteModel(out, expected_labels={"sound": labels},
                               frontend=cfg.section(f"frontend.{FRONTEND}"))
    _, prob, major = predict_clips(lambda x: device_model.predict(x)["sound"], segs, owner,
                                   len(truth))
    int8 = {"probability_vote": clip_metrics(truth, prob, labels),
            "majority_vote": clip_metrics(truth, major, labels)}
    metrics.update(int8_clip_accuracy=int8["probability_vote"]["accuracy"],
                   int8_clip_accuracy_majority=int8["majority_vote"]["accuracy"])
    # The metrics now hold both: update the manifest in place (same model bytes and sha256).
    from device.manifest import manifest_path_for
    mpath = manifest_path_for(out)
    manifest = json.loads(mpath.read_text())
    manifest["metrics"] = metrics
    mpath.write_text(json.dumps(manifest, indent=2, default=float) + "\n", encoding="utf-8")
    report["int8"] = int8
    (files.folder / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    summary.update(model=name, variant=run, params=int(report["params"]), metrics=metrics)
    log.info("%s (%s): %d parameters, %d B int8; test clips %d: float %.3f, int8 %.3f "
             "(probability vote)", name, run, report["params"], summary["size_bytes"],
             len(truth), metrics["float_clip_accuracy"], metrics["int8_clip_accuracy"])
    return summary


def export_cv(cfg: Config, model: str, variant: str | None = None) -> dict:
    """Export every fold of a cross-validation (``train.classifiers --cv``) to int8 and pool
    the int8 clip figures next to the float ones in ``<run>_cv.json``; return that summary."""
    path = cv_summary_path(cfg, model, variant)
    if not path.exists():
        raise FileNotFoundError(f"no cross-validation at {path}; run `python -m train.classifiers "
                                f"{model} --cv --profile {cfg.name}` first")
    pooled = json.loads(path.read_text())
    for run in pooled["runs"]:
        export_classifier(cfg, model, run)
    paths = BuildPaths(cfg)
    reports = [json.loads((paths.model_dir(f"sound_{model}", run) / "report.json").read_text())
               for run in pooled["runs"]]
    return write_cv_summary(cfg, model, variant, reports, pooled["folds"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.classifiers",
        description="Export trained sound classifiers (build/models/sound_<model>/<profile>/"
                    "<variant>) as int8 TFLite with manifests: build/export/sound_<model>_int8."
                    "tflite for the run named like the model (what stages.sounds runs), "
                    "build/export/<profile>/sound_<model>_<variant>_int8.tflite for others. "
                    "Prints float and int8 clip accuracy on the run's test clips.")
    parser.add_argument("models", nargs="*", default=list(MODELS),
                        help=f"which of {', '.join(MODELS)} (default: both; a missing run is "
                             f"skipped with a note)")
    add_profile_arguments(parser, "model.sound_resnet.width=0.25")
    parser.add_argument("--variant", default=None, help="the run to export (default: the "
                        "run named like the model)")
    parser.add_argument("--onnx", action="store_true", help="also write the float ONNX model")
    parser.add_argument("--cv", action="store_true", help="export every fold of `python -m "
                        "train.classifiers MODEL --cv` and pool int8 beside float in its "
                        "<run>_cv.json")
    parser.add_argument("--if-trained", action="store_true", help="skip a model that has no "
                        "trained run quietly (make export)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    done = 0
    for model in args.models:
        if model not in MODELS:
            print(f"export.classifiers: unknown model {model!r}; use {', '.join(MODELS)}",
                  file=sys.stderr)
            return 2
        if args.cv:
            try:
                pooled = export_cv(cfg, model, args.variant)
            except FileNotFoundError as exc:
                print(f"export.classifiers: {exc}", file=sys.stderr)
                return 2
            for how in ("float", "int8"):
                pv = pooled[how]["probability_vote"]
                print(f"sound_{model}/{args.variant or model} {how}: {pv['clips']} clips over "
                      f"{len(pooled['runs'])} folds: clip accuracy {pv['accuracy']:.3f} "
                      f"(majority {pooled[how]['majority_vote']['accuracy']:.3f})")
            done += 1
            continue
        run = BuildPaths(cfg).model_dir(f"sound_{model}", args.variant or model)
        if not loop.RunFiles(run).trained():
            if not args.if_trained:
                print(f"export.classifiers: no trained sound_{model} at {run}; run `python -m "
                      f"train.classifiers {model} --profile {cfg.name}` (make "
                      f"train-classifiers)", file=sys.stderr)
            continue
        summary = export_classifier(cfg, model, args.variant, onnx=args.onnx)
        print(json.dumps({k: summary[k] for k in ("tflite", "size_bytes", "params", "metrics",
                                                  "argmax_agreement")}, default=str))
        done += 1
    if not done and not args.if_trained:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
