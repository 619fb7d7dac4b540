"""Export the keyword + scene multitask model: full-integer int8 TFLite, float ONNX, manifests.

``python -m export.multitask --profile default`` exports the deployed variant (chosen by the
seed table, ``build/models/multitask/<profile>/deployed.json``, else ``mt60j``) as::

    build/export/multitask_int8.tflite + multitask_int8.json   (what the device runs)
    build/export/multitask.onnx        + multitask.json        (float reference)

``--variant`` exports another variant; ``--all`` exports every trained variant to
``build/export/<profile>/<variant>_int8.tflite`` (what the seed table evaluates).

Only what is the multitask model's own is here: which trained variant, its fixed-batch
network (`train.multitask.build_for_variant`), its heads (``keyword``/``scene`` labels from
`device.config.Config.head_labels`), the keyword frontend, ``model.multitask.stride_hops`` and
the seed table's accuracies for the manifest's metrics. Conversion, output mapping, checks
and manifests are `export.convert.export_with_manifest`, shared by every model.

The int8 model takes the *normalised* log-mel quantised to int8: the device computes
``log_mel`` (frontend section in the manifest), applies ``input.normalization``
(``(x - mean[mel]) / std[mel]``), then ``q = round(x / input.scale) + input.zero_point``
clipped to [-128, 127]. Outputs are int8 probabilities: ``p = (q - zero_point) * scale``.
`device.interpreter.TFLiteModel` does exactly this, on the device and in host evaluation.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.paths import BuildPaths, profile_tag  # noqa: E402
from export.convert import export_with_manifest, fixed_batch_copy  # noqa: E402
from train import multitask as mt  # noqa: E402
from train.loop import configure_threads  # noqa: E402

log = logging.getLogger("export.multitask")


def export_variant(cfg: Config, variant_name: str, tflite_path: Path, name: str = mt.MODEL,
                   onnx: bool = True, metrics: Mapping | None = None) -> dict:
    """Convert a trained variant to int8 TFLite (+ ONNX) and write the manifests.

    Parameters
    ----------
    cfg : Config
        The profile the variant was trained with.
    variant_name : str
        One of `train.multitask.VARIANT_NAMES`, trained.
    tflite_path : Path
        Where the int8 model goes (`BuildPaths.deployed_model` or `.variant_export`).
    name : str
        The manifest's model name.
    onnx : bool
        Also write the float ONNX model.
    metrics : mapping, optional
        Measured accuracies for the manifest (`seed_table_metrics`).

    Returns
    -------
    dict
        `export.convert.export_with_manifest`'s summary.
    """
    t0 = time.perf_counter()
    variant = mt.variants(cfg)[variant_name]
    model, normalizer, info = mt.load_trained(cfg, variant_name)
    raw = np.load(mt.run_files(cfg, variant_name).calibration).astype(np.float32)
    fixed = fixed_batch_copy(model, lambda batch_size: mt.build_for_variant(cfg, variant,
                                                                             batch_size))
    summary = export_with_manifest(
        fixed, tflite_path, name=name, kind=mt.MODEL,
        heads={h: cfg.head_labels[h] for h in variant.tasks},
        frontend=("keyword", cfg.section("frontend.keyword")), normalizer=normalizer,
        raw_calibration=raw, stride_hops=int(cfg["model.multitask.stride_hops"]), onnx=onnx,
        metrics=metrics,
        extra={"variant": variant_name, "profile": profile_tag(cfg), "params": info["params"]})
    log.info("exported %s/%s -> %s (%d bytes, outputs %s, int8/float argmax agreement %s) in "
             "%.0f s", profile_tag(cfg), variant_name, tflite_path, summary["size_bytes"],
             {h: o["index"] for h, o in summary["outputs"].items()}, summary["argmax_agreement"],
             time.perf_counter() - t0)
    return summary


def seed_table_report(cfg: Config) -> Path:
    """The seed table's JSON for this profile (written by `evaluation.seed_table`, read here for
    the manifest's metrics): ``build/reports/seed_table_<profile>.json``."""
    return BuildPaths(cfg).seed_table_report()


def seed_table_accuracies(row: Mapping) -> dict:
    """``{"test_float": {set: accuracy}, "test_int8": {...}}`` of one seed-table row, for a manifest."""
    return {f"test_{kind}": {k: v["accuracy"] for k, v in row[kind].items()}
            for kind in ("float", "int8")}


def seed_table_metrics(cfg: Config, variant: str) -> dict:
    """The variant's measured test accuracies from the seed table, when it has been run."""
    path = seed_table_report(cfg)
    if not path.exists():
        return {}
    row = json.loads(path.read_text()).get("variants", {}).get(variant)
    if not row:
        return {}
    return {"profile": profile_tag(cfg), "source": str(path), **seed_table_accuracies(row)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.multitask",
        description="Export a trained keyword+scene model to full-integer int8 TFLite and float "
                    "ONNX, each with a manifest (labels per head, output indices, frontend, "
                    "input quantisation, normalisation, sha256).",
        epilog="Default: the profile's deployed variant -> build/export/multitask_int8.tflite.")
    add_profile_arguments(parser)
    parser.add_argument("--variant", default=None, choices=mt.VARIANT_NAMES,
                        help="the variant to export (default: the deployed variant chosen by "
                             "`python -m evaluation.seed_table`, else "
                             f"{mt.DEFAULT_VARIANT})")
    parser.add_argument("--all", action="store_true",
                        help="export every trained variant to build/export/<profile>/")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    if args.all:
        for name in mt.VARIANT_NAMES:
            if mt.run_files(cfg, name).trained():
                s = export_variant(cfg, name, paths.variant_export(name), name=f"{mt.MODEL}_{name}",
                                   onnx=not args.no_onnx)
                print(json.dumps(s, indent=1))
        return 0
    name = args.variant or mt.deployed_variant(cfg)
    summary = export_variant(cfg, name, paths.deployed_model(mt.MODEL), onnx=not args.no_onnx,
                             metrics=seed_table_metrics(cfg, name))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
