"""Export the deep attractor network for the device: TFLite with fixed attractors, + manifest.

``python -m export.separation`` reads ``build/models/separation/<profile>/<variant>/``
(`train.separation`) and writes, for the deployed variant (``model.separation.variant``)::

    build/export/separation.tflite + separation.json        (what the device loads)

and for every variant asked for (``--variant``/``--all``) its copy under
``build/export/<profile>/separation_<variant>_<quantization>.tflite`` (+ ``.json``).

The model: normalised log magnitude ``(1, chunk_frames, n_bins)`` -> masks ``(1,
chunk_frames, n_bins, n_sources)``, the fixed attractors baked in as a bias-free dense layer
and a softmax (`train.separation.build_inference_model`).

Quantisation (``model.separation.quantization``), measured on this TF 2.21 / LiteRT:

* ``float16``: weights in float16, float32 arithmetic; the LSTM stays a loop (TFLite WHILE).
* ``int8``: full-integer. The int8 calibrator crashes (segfault) on the looped Keras 3 LSTM,
  so this route unrolls the recurrence over the chunk's frames (``unroll=True``): a larger
  file (one copy of the cell per frame), integer kernels.

The manifest records the file's size, parameters, the quantisation, the fixed attractors and
the largest difference between the exported masks (run through the device's own runner,
`device.separation.Separator`) and the float Keras masks on calibration chunks.
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
from device.interpreter import load_interpreter  # noqa: E402
from device.manifest import write_manifest  # noqa: E402
from device.paths import BuildPaths  # noqa: E402
from export.convert import convert_float16, convert_int8, output_heads  # noqa: E402
from train import separation as tsep  # noqa: E402

__all__ = ["QUANTIZATIONS", "export_variant", "main"]

log = logging.getLogger("export.separation")

QUANTIZATIONS = ("float16", "int8")
# Calibration chunks the exported masks are compared with Keras' on.
CHECK_CHUNKS = 16


def export_variant(cfg: Config, variant: str, path: Path, quantization: str) -> dict:
    """Convert one trained variant to ``path`` (+ manifest); return a summary with the check.

    Raises
    ------
    FileNotFoundError
        The variant is not trained (the message names the command that trains it).
    ValueError
        An unknown quantisation.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"model.separation.quantization must be one of {QUANTIZATIONS}, got "
                         f"{quantization!r}")
    embedding, normalizer, attractors, info = tsep.load_trained(cfg, variant)
    spec = tsep.variants(cfg)[variant]
    chunk = int(cfg["model.separation.chunk_frames"])
    n_bins = int(embedding.inputs[0].shape[-1])
    sources = list(cfg["model.separation.sources"])
    if len(sources) != len(attractors):
        raise ValueError(f"{variant} has {len(attractors)} attractors, the profile names "
                         f"{len(sources)} sources {sources}: re-train with this profile")
    fixed = tsep.build_inference_model(spec, n_bins, attractors, chunk, batch_size=1,
                                       embedding=embedding, unroll=quantization == "int8")
    calib_raw = np.load(tsep.run_files(cfg, variant).calibration).astype(np.float32)
    calib = normalizer(calib_raw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if quantization == "int8":
        path.write_bytes(convert_int8(fixed, calib[:200], as_input=lambda x: x[None]))
    else:
        path.write_bytes(convert_float16(fixed))
    it = load_interpreter(path, allow_tensorflow=True)
    inp = it.get_input_details()[0]
    in_scale, in_zero = inp["quantization"]
    omap = output_heads(it, {"masks": len(sources)})
    o = omap["masks"]
    is_int8 = np.dtype(inp["dtype"]) == np.int8
    input_spec = {"name": "log_magnitude", "shape": [int(v) for v in inp["shape"]],
                  "dtype": np.dtype(inp["dtype"]).name,
                  "scale": float(in_scale) if is_int8 else None,
                  "zero_point": int(in_zero) if is_int8 else None,
                  "layout": "(1, chunk_frames, n_bins): log(|STFT| + floor), per-bin normalised",
                  "normalization": {**normalizer.to_dict(), "kind": "per_bin_affine",
                                    "formula": "(log_magnitude - mean[bin]) / std[bin]"}}
    output = {"name": "masks", **o, "labels": sources,
              "scale": o["scale"] if o["dtype"] == "int8" else None,
              "zero_point": o["zero_point"] if o["dtype"] == "int8" else None}
    frontend = {**cfg.section("frontend.separation"), "name": "separation"}
    extra = {"variant": variant, "variant_spec": spec.__dict__, "quantization": quantization,
             "params": int(info["params"]), "size_bytes": path.stat().st_size,
             "chunk_frames": chunk, "attractors": attractors.tolist(),
             "train_info": {k: info.get(k) for k in ("epochs_run", "best_epoch", "seconds",
                                                     "best_val_loss", "train_mixtures")},
             # magnitude pruning (train.separation, prune_from): the share of zero weights
             "sparsity": info.get("sparsity"), "pruned_from": info.get("pruned_from")}

    def manifest(more=None):
        write_manifest(path, name="separation", kind="separation", frontend=frontend,
                       input=input_spec, outputs=[output], stride_hops=None,
                       extra={**extra, **(more or {})})

    manifest()
    # The check through the device's runner: the arithmetic the Pi will do.
    from device.separation import Separator
    sep = Separator(path, frontend=cfg.section("frontend.separation"), allow_tensorflow=True)
    check = calib_raw[:CHECK_CHUNKS]
    keras_masks = np.asarray(fixed.predict(normalizer(check), batch_size=1, verbose=0)["masks"])
    device_masks = np.stack([sep.chunk_masks(c) for c in check])
    diff = float(np.abs(keras_masks - device_masks).max())
    mean_diff = float(np.abs(keras_masks - device_masks).mean())
    manifest({"vs_keras_on_calibration": {"max_abs_mask_diff": diff,
                                          "mean_abs_mask_diff": mean_diff,
                                          "chunks": len(check)}})
    summary = {"variant": variant, "tflite": str(path), "quantization": quantization,
               "size_bytes": path.stat().st_size, "params": int(info["params"]),
               "max_abs_mask_diff": diff, "mean_abs_mask_diff": mean_diff}
    log.info("%s %s: %s (%d B), masks vs Keras: max %.3g, mean %.3g", variant, quantization,
             path, summary["size_bytes"], diff, mean_diff)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.separation",
        description="Export trained DANet variants (build/models/separation/<profile>/) as "
                    "TFLite with the fixed attractors baked in, each with a manifest: the "
                    "deployed variant (model.separation.variant) to build/export/separation."
                    "tflite, every one asked for to build/export/<profile>/separation_<variant>_"
                    "<quantization>.tflite.",
        epilog="examples:\n  python -m export.separation\n"
               "  python -m export.separation --all --quantization float16 --quantization int8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "model.separation.quantization=int8")
    parser.add_argument("--variant", action="append", default=None,
                        help="also export this trained variant (repeatable)")
    parser.add_argument("--all", action="store_true", help="also export every trained variant")
    parser.add_argument("--quantization", action="append", choices=QUANTIZATIONS, default=None,
                        help="for the --variant/--all copies (repeatable; default: the "
                             "profile's model.separation.quantization)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    deployed = cfg["model.separation.variant"]
    quant = cfg["model.separation.quantization"]
    summaries = []
    try:
        summaries.append(export_variant(cfg, deployed, paths.resolve(cfg["model.separation.model"]),
                                        quant))
        names = [v for v in tsep.variants(cfg) if tsep.run_files(cfg, v).trained()] \
            if args.all else (args.variant or [])
        for name in names:
            for q in args.quantization or [quant]:
                summaries.append(export_variant(
                    cfg, name, paths.variant_export(f"separation_{name}_{q}", ".tflite"), q))
    except (FileNotFoundError, ValueError) as exc:
        print(f"export.separation: {exc}", file=sys.stderr)
        return 2
    for s in summaries:
        print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
