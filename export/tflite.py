"""Export a trained multitask model: full-integer int8 TFLite, float ONNX, and their manifests.

``python -m export.tflite --profile default`` exports the deployed variant (the best
multitask variant, ``build/models/multitask/<profile>/deployed.json``) as::

    build/export/multitask_int8.tflite + multitask_int8.json   (what the device runs)
    build/export/multitask.onnx        + multitask.json        (float reference)

``--variant`` exports another variant; ``--all`` exports every trained variant to
``build/export/<profile>/<variant>_int8.tflite`` (what the seed table evaluates).

The int8 model takes the *normalised* log-mel quantised to int8: the device computes
``log_mel`` (frontend section in the manifest), applies ``input.normalization``
(``(x - mean[mel]) / std[mel]``), then ``q = round(x / input.scale) + input.zero_point``
clipped to [-128, 127]. Outputs are int8 probabilities: ``p = (q - zero_point) * scale``.
`TFLiteModel` does exactly this, so host evaluation runs the same arithmetic as the device.

Imports of TensorFlow are lazy: `TFLiteModel` and `output_map` need only ai-edge-litert.
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

from device.manifest import load_manifest, verify_model, write_manifest  # noqa: E402
from export.convert import convert_int8  # noqa: E402

log = logging.getLogger("export.tflite")


# --------------------------------------------------------------------------- running int8
def _interpreter(model_path: str | Path | None = None, model_content: bytes | None = None,
                 num_threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=None if model_path is None else str(model_path),
                     model_content=model_content, num_threads=num_threads)
    it.allocate_tensors()
    return it


def output_map(interpreter, heads: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Which TFLite output is which head: ``{head: {"index", "tensor_index", "shape", ...}}``.

    ``index`` is the position in ``get_output_details()`` (what a device loop iterates). The
    converter does not promise to keep the Keras output order, so heads are matched by the
    signature's output names (the Keras output names ``keyword``/``scene``), and only when a
    model has no signature by class count (``heads``: ``{name: n_classes}``).
    """
    details = interpreter.get_output_details()
    by_tensor = {d["index"]: i for i, d in enumerate(details)}
    signatures = interpreter._get_full_signature_list() or {}
    named: dict[str, int] = {}
    if signatures:
        sig = next(iter(signatures.values()))
        named = {name: by_tensor[t] for name, t in sig["outputs"].items() if t in by_tensor}
    if not named and heads:
        sizes = [int(d["shape"][-1]) for d in details]
        for name, n in heads.items():
            if sizes.count(n) != 1:
                raise ValueError(f"cannot tell which output is '{name}': the model has no "
                                 f"signature and {sizes.count(n)} outputs of size {n}")
            named[name] = sizes.index(n)
    out = {}
    for name, i in named.items():
        d = details[i]
        scale, zero = d["quantization"]
        out[name] = {"index": i, "tensor_index": int(d["index"]),
                     "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                     "scale": float(scale), "zero_point": int(zero)}
    return out


class TFLiteModel:
    """Run an exported int8 (or float) TFLite model the way the device does.

    Call ``TFLiteModel(path)`` (reads ``<path>.json`` beside it) or ``TFLiteModel(path,
    normalization=..., heads=...)`` for a model without manifest, then ``predict(raw_log_mel)``
    with features of shape ``(n, frames, mels)`` straight from `device.frontend.log_mel`; it
    returns ``{head: (n, classes)}`` float probabilities.

    Parameters
    ----------
    model_path : str or Path
        The ``.tflite`` file.
    num_threads : int
        Interpreter threads; 1 is what the latency budget is measured with.
    normalization : mapping, optional
        ``{"mean": [...], "std": [...]}``; default: the manifest's ``input.normalization``.
    heads : mapping, optional
        ``{head: n_classes}``, only needed when the model has no signature.
    verify : bool
        Check the file against its manifest's sha256 first (`device.manifest.verify_model`).
    """

    def __init__(self, model_path: str | Path, num_threads: int = 1,
                 normalization: Mapping | None = None, heads: Mapping[str, int] | None = None,
                 verify: bool = True):
        self.path = Path(model_path)
        self.manifest = None
        if normalization is None:
            self.manifest = verify_model(self.path) if verify else load_manifest(self.path)
            normalization = self.manifest["input"]["normalization"]
        self.mean = np.asarray(normalization["mean"], np.float32)
        self.std = np.asarray(normalization["std"], np.float32)
        self.interpreter = _interpreter(self.path, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.in_scale, self.in_zero = self.input["quantization"]
        self.outputs = output_map(self.interpreter, heads)
        self.labels = ({o["name"]: list(o["labels"]) for o in self.manifest["outputs"]}
                       if self.manifest else {})

    def quantize(self, feats: np.ndarray) -> np.ndarray:
        """Raw log-mel ``(n, frames, mels)`` -> the model's input tensors ``(n, frames, mels, 1)``."""
        x = ((np.asarray(feats, np.float32) - self.mean) / self.std)[..., None]
        if self.input["dtype"] == np.int8:
            x = np.clip(np.round(x / self.in_scale) + self.in_zero, -128, 127).astype(np.int8)
        return x

    def invoke(self, x_one: np.ndarray) -> dict[str, np.ndarray]:
        """One already-quantised input ``(1, frames, mels, 1)`` -> raw output tensors."""
        self.interpreter.set_tensor(self.input["index"], x_one)
        self.interpreter.invoke()
        return {h: self.interpreter.get_tensor(o["tensor_index"])[0] for h, o in self.outputs.items()}

    def predict(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        x = self.quantize(feats)
        out = {h: np.empty((len(x), o["shape"][-1]), np.float32) for h, o in self.outputs.items()}
        for i in range(len(x)):
            raw = self.invoke(x[i:i + 1])
            for h, o in self.outputs.items():
                v = raw[h].astype(np.float32)
                out[h][i] = (v - o["zero_point"]) * o["scale"] if o["scale"] else v
        return out


# --------------------------------------------------------------------------- conversion
def fixed_batch_copy(cfg, variant, model):
    """The same network with the fixed input ``[1, frames, mels, 1]`` the device feeds."""
    from train.multitask import build_for_variant

    fixed = build_for_variant(cfg, variant, batch_size=1)
    fixed.set_weights(model.get_weights())
    return fixed


def export_onnx(model, path: Path, opset: int = 13) -> str:
    """Float ONNX; returns how it was made. tf2onnx first, Keras' own exporter as fallback."""
    import tensorflow as tf

    shape = [int(v) if v is not None else 1 for v in model.inputs[0].shape]
    try:
        import tf2onnx

        spec = (tf.TensorSpec(shape, tf.float32, name="log_mel"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))
        return f"tf2onnx {tf2onnx.__version__} from_keras, opset {opset}"
    except Exception as exc:  # noqa: BLE001 - any tf2onnx failure: try the other route
        log.warning("tf2onnx.convert.from_keras failed (%s); trying keras Model.export(onnx)", exc)
        model.export(str(path), format="onnx", verbose=False)
        return "keras Model.export(format='onnx')"


def _check_onnx(path: Path, x: np.ndarray, reference: Mapping[str, np.ndarray]) -> float:
    """Largest |ONNX - Keras| probability difference on ``x`` (normalised, ``(n,f,m,1)``)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    for i in range(len(x)):
        outs = dict(zip(names, sess.run(None, {name: x[i:i + 1].astype(np.float32)})))
        for head, ref in reference.items():
            match = [v for k, v in outs.items() if head in k] or list(outs.values())
            worst = max(worst, float(np.abs(match[0][0] - ref[i]).max()))
    return worst


def export_model(cfg, variant_name: str, tflite_path: Path, name: str = "multitask",
                 onnx: bool = True, metrics: Mapping | None = None) -> dict:
    """Convert a trained variant to int8 TFLite (+ ONNX) and write the manifests.

    Returns a summary: paths, size in bytes, output map, float-vs-int8 agreement on the
    calibration sample, ONNX route.
    """
    from device.paths import profile_tag
    from train.multitask import load_trained, run_files, variants

    t0 = time.perf_counter()
    variant = variants(cfg)[variant_name]
    model, normalizer, info = load_trained(cfg, variant_name)
    calib_path = run_files(cfg, variant_name).calibration
    calibration = normalizer(np.load(calib_path).astype(np.float32))
    fixed = fixed_batch_copy(cfg, variant, model)
    tflite_path = Path(tflite_path)
    tflite_path.parent.mkdir(parents=True, exist_ok=True)
    tflite_path.write_bytes(convert_int8(fixed, calibration))
    it = _interpreter(tflite_path)
    inp = it.get_input_details()[0]
    in_scale, in_zero = inp["quantization"]
    label_sets = {"keyword": list(cfg.keyword_labels), "scene": list(cfg["labels.scenes"])}
    omap = output_map(it, {h: len(label_sets[h]) for h in variant.tasks})
    if set(omap) != set(variant.tasks):
        raise RuntimeError(f"converted model outputs {sorted(omap)} do not match the heads "
                           f"{variant.tasks}; the conversion lost an output name")
    for head, o in omap.items():
        if o["shape"][-1] != len(label_sets[head]):
            raise RuntimeError(f"output '{head}' has {o['shape'][-1]} classes, the profile has "
                               f"{len(label_sets[head])} labels")
    frontend = {**cfg.section("frontend.keyword"), "name": "keyword"}
    outputs = [{"name": h, **{k: v for k, v in o.items()}, "labels": label_sets[h]}
               for h, o in sorted(omap.items(), key=lambda kv: kv[1]["index"])]
    input_spec = {"name": "log_mel", "shape": [int(v) for v in inp["shape"]], "dtype": "int8",
                  "scale": float(in_scale), "zero_point": int(in_zero),
                  "layout": "NHWC: (1, frames, mels, 1)",
                  "normalization": normalizer.to_dict()}
    # How well int8 tracks float, on calibration features (training distribution).
    tfl = TFLiteModel(tflite_path, normalization=normalizer.to_dict(), verify=False)
    raw = np.load(calib_path).astype(np.float32)[:200]
    f_out = fixed.predict(normalizer(raw)[..., None], batch_size=64, verbose=0)
    f_out = f_out if isinstance(f_out, dict) else {variant.tasks[0]: f_out}
    q_out = tfl.predict(raw)
    agreement = {h: float(np.mean(f_out[h].argmax(1) == q_out[h].argmax(1))) for h in variant.tasks}
    max_diff = {h: float(np.abs(f_out[h] - q_out[h]).max()) for h in variant.tasks}
    extra = {"variant": variant_name, "profile": profile_tag(cfg), "params": info["params"],
             "size_bytes": tflite_path.stat().st_size,
             "int8_vs_float_on_calibration": {"argmax_agreement": agreement,
                                              "max_abs_prob_diff": max_diff}}
    write_manifest(tflite_path, name=name, kind="multitask", frontend=frontend, input=input_spec,
                   outputs=outputs, stride_hops=int(cfg.get("model.multitask.stride_hops", 10)),
                   metrics=metrics, extra=extra)
    summary = {"tflite": str(tflite_path), "size_bytes": tflite_path.stat().st_size,
               "outputs": omap, "input": {k: input_spec[k] for k in ("shape", "scale", "zero_point")},
               "argmax_agreement": agreement, "max_abs_prob_diff": max_diff}
    if onnx:
        onnx_path = tflite_path.with_name(tflite_path.name.replace("_int8.tflite", ".onnx"))
        if onnx_path == tflite_path:
            onnx_path = tflite_path.with_suffix(".onnx")
        route = export_onnx(fixed, onnx_path)
        diff = _check_onnx(onnx_path, normalizer(raw[:20])[..., None],
                           {h: f_out[h][:20] for h in variant.tasks})
        write_manifest(onnx_path, name=name, kind="multitask-float-onnx", frontend=frontend,
                       input={**input_spec, "dtype": "float32", "scale": None, "zero_point": None},
                       outputs=[{"name": h, "index": o["index"], "labels": label_sets[h],
                                 "dtype": "float32"} for h, o in omap.items()],
                       stride_hops=int(cfg.get("model.multitask.stride_hops", 10)),
                       metrics=metrics, extra={**extra, "size_bytes": onnx_path.stat().st_size,
                                               "onnx_route": route,
                                               "max_abs_prob_diff_vs_keras": diff})
        summary.update(onnx=str(onnx_path), onnx_route=route, onnx_max_abs_diff=diff)
    log.info("exported %s/%s -> %s (%d bytes, outputs %s, int8/float argmax agreement %s) in %.0f s",
             profile_tag(cfg), variant_name, tflite_path, tflite_path.stat().st_size,
             {h: o["index"] for h, o in omap.items()}, agreement, time.perf_counter() - t0)
    return summary


def export_dir(cfg) -> Path:
    return cfg.build_dir / "export"


def variant_tflite_path(cfg, variant: str) -> Path:
    from device.paths import profile_tag

    return export_dir(cfg) / profile_tag(cfg) / f"{variant}_int8.tflite"


def seed_table_accuracies(row: Mapping) -> dict:
    """``{"test_float": {set: accuracy}, "test_int8": {...}}`` of one seed-table row, for a manifest."""
    return {f"test_{kind}": {k: v["accuracy"] for k, v in row[kind].items()}
            for kind in ("float", "int8")}


def _seed_table_metrics(cfg, variant: str) -> dict:
    """The variant's measured test accuracies from the seed table, when it has been run."""
    from device.paths import BuildPaths, profile_tag

    path = BuildPaths(cfg).report(f"seed_table_{profile_tag(cfg)}.json")
    if not path.exists():
        return {}
    row = json.loads(path.read_text()).get("variants", {}).get(variant)
    if not row:
        return {}
    return {"profile": profile_tag(cfg), "source": str(path), **seed_table_accuracies(row)}


def main(argv: Sequence[str] | None = None) -> int:
    from device.config import add_profile_arguments, config_from_args
    from train.loop import configure_threads
    from train.multitask import deployed_variant, run_files, variants

    parser = argparse.ArgumentParser(
        prog="python -m export.tflite",
        description="Export a trained keyword+scene model to full-integer int8 TFLite and float "
                    "ONNX, each with a manifest (labels per head, output indices, frontend, "
                    "input quantisation, normalisation, sha256).",
        epilog="Default: the profile's deployed variant -> build/export/multitask_int8.tflite.")
    add_profile_arguments(parser)
    parser.add_argument("--variant", default=None,
                        help="kw, scene, mt50, mt60 or mt60j (default: the deployed variant "
                             "chosen by `python -m train.seed_table`, else mt60j)")
    parser.add_argument("--all", action="store_true",
                        help="export every trained variant to build/export/<profile>/")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    cfg = config_from_args(args)
    if args.all:
        for name in variants(cfg):
            if run_files(cfg, name).trained():
                s = export_model(cfg, name, variant_tflite_path(cfg, name), name=f"multitask_{name}",
                                 onnx=not args.no_onnx)
                print(json.dumps(s, indent=1))
        return 0
    name = args.variant or deployed_variant(cfg)
    summary = export_model(cfg, name, export_dir(cfg) / "multitask_int8.tflite",
                           onnx=not args.no_onnx, metrics=_seed_table_metrics(cfg, name))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
