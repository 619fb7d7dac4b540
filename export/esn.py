"""Export the vocal-percussion echo state network for the device.

``python -m export.esn --profile default`` reads ``build/models/esn/<profile>/esn/model.npz``
(`train.esn`) and writes::

    build/export/esn_int8.npz           + esn_int8.json            (what the esn stage loads)
    build/export/esn_readout_int8.tflite + esn_readout_int8.json   (the readout as int8 TFLite)

``esn_int8.npz`` holds the int16 reservoir, the input normaliser and the readout
(`device.esn.save_esn`); its manifest carries the sha256 of the file, the frontend, the labels,
the reservoir's Q formats and hyper-parameters, and the sha256 of the TFLite readout. The
readout is also converted to a one-Dense-layer int8 TFLite model over the features
``[state / 2**15, normalised log-mel]``: the device applies either it or the int8 weights
inside the ``.npz`` (no interpreter), whichever its start-up measurement finds faster.
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

from device import esn as desn  # noqa: E402
from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.manifest import sha256_file, write_manifest  # noqa: E402
from device.paths import BuildPaths  # noqa: E402
from export.convert import convert_int8, int8_manifest_fields  # noqa: E402

log = logging.getLogger("export.esn")

MODEL = "esn"
READOUT = "esn_readout"


def readout_keras(readout: desn.Readout):
    """The readout as a Keras model with a batch of 1: ``(1, features) -> (1, classes)``."""
    import keras
    inp = keras.Input(shape=(readout.n_features,), batch_size=1, name="esn_features")
    dense = keras.layers.Dense(len(readout.labels), name="percussion")
    model = keras.Model(inp, {"percussion": dense(inp)})   # a named output: the head's name
    dense.set_weights([readout.coef.T.astype(np.float32), readout.intercept.astype(np.float32)])
    return model


def export_esn(cfg: Config, model_path: Path | None = None, export_dir: Path | None = None) -> dict:
    """Write the two model files and their manifests; return a summary with the int8 checks."""
    paths = BuildPaths(cfg)
    model_path = model_path or paths.model_dir(MODEL, MODEL) / "model.npz"
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path} is missing: train the ESN first "
                                f"(python -m train.esn --profile {paths.profile})")
    model = desn.load_esn(model_path.read_bytes(), str(model_path))
    labels = list(cfg["labels.percussion"])
    if model.labels != labels:
        raise ValueError(f"{model_path} has labels {model.labels}, the profile {labels}: "
                         f"re-train with this profile")
    out_dir = Path(export_dir or paths.export_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frontend = {**cfg.section("frontend.esn"), "name": "esn"}
    report_path = model_path.parent / "report.json"
    metrics = {}
    if report_path.is_file():
        cv = json.loads(report_path.read_text()).get("cv", {})
        metrics = {k: {m: cv[k].get(m) for m in ("nonsilent_accuracy", "sound_class_accuracy",
                                                 "silent_accuracy", "recording_accuracy")}
                   for k in ("fixed", "fixed_int8", "float") if k in cv}

    # The readout as int8 TFLite, calibrated on training features of the fixed-point reservoir.
    calib_path = model_path.parent / "calibration.npy"
    calib = np.load(calib_path) if calib_path.is_file() else None
    if calib is None or calib.shape[1] != model.readout.n_features:
        raise FileNotFoundError(f"{calib_path} is missing or does not fit the model: re-run "
                                f"python -m train.esn --profile {paths.profile}")
    tflite = out_dir / f"{READOUT}_int8.tflite"
    keras_model = readout_keras(model.readout)
    tflite.write_bytes(convert_int8(keras_model, calib[:400], as_input=lambda x: x[None, :]))
    heads = {"percussion": labels}
    identity = {"kind": "identity", "mean": 0.0, "std": 1.0,
                "formula": "features = [state / 2**15, (log_mel - mean) / std of esn_int8.json]"}
    input_spec, outputs, _ = int8_manifest_fields(tflite, heads, identity, "esn_features",
                                                  "(1, neurons + mels)")
    write_manifest(tflite, name=READOUT, kind=READOUT, frontend=frontend, input=input_spec,
                   outputs=outputs, metrics=metrics)
    from device.interpreter import TFLiteModel
    runner = TFLiteModel(tflite, expected_labels=heads)
    check = calib[:300].astype(np.float64)
    f = check @ model.readout.coef.T + model.readout.intercept
    q = np.stack([runner.run(x[None, :])["percussion"] for x in check.astype(np.float32)])
    agree = float(np.mean(f.argmax(1) == q.argmax(1)))

    npz = out_dir / f"{MODEL}_int8.npz"
    desn.save_esn(model, npz)
    fields = desn.manifest_fields(model, frontend)
    fields["extra"]["readout_tflite"] = {"file": tflite.name, "sha256": sha256_file(tflite),
                                        "argmax_agreement_with_float": agree}
    write_manifest(npz, name=MODEL, kind=MODEL, metrics=metrics, **fields)
    summary = {"npz": str(npz), "npz_bytes": npz.stat().st_size, "tflite": str(tflite),
               "tflite_bytes": tflite.stat().st_size, "tflite_argmax_agreement": agree,
               "max_abs_score_diff": float(np.abs(f - q).max()), "metrics": metrics}
    log.info("exported %s (%d B) and %s (%d B); TFLite readout agrees with float on %.1f %% "
             "of calibration frames", npz.name, summary["npz_bytes"], tflite.name,
             summary["tflite_bytes"], 100 * agree)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.esn",
        description="Export the trained vocal-percussion ESN (build/models/esn/<profile>/esn) "
                    "to build/export: esn_int8.npz (reservoir, normaliser, readout) and "
                    "esn_readout_int8.tflite, each with a manifest (sha256).")
    add_profile_arguments(parser, "model.esn.leak=0.2")
    parser.add_argument("--model", type=Path, help="the model.npz to export (default: the "
                        "profile's trained one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = export_esn(config_from_args(args), args.model)
    except (FileNotFoundError, ValueError) as exc:
        print(f"export.esn: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
