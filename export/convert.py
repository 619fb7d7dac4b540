"""Model conversion every exported model shares: int8 TFLite, float ONNX, manifests, checks.

A per-model export module (`export.multitask`, the coming ``export.esn``) loads its trained
network, builds the fixed-batch copy and says what its heads, labels, frontend and stride
are; `export_with_manifest` does the rest the same way for every model::

    fixed = fixed_batch_copy(model, lambda batch_size: build(cfg, batch_size=batch_size))
    summary = export_with_manifest(
        fixed, path, name="multitask", kind="multitask",
        heads={"keyword": [...], "scene": [...]}, frontend=("keyword", cfg.section(...)),
        normalizer=normalizer, raw_calibration=feats, stride_hops=10)

It converts to full-integer int8 (`convert_int8`), maps each output to its head by the
converter's signature names (`output_heads`), writes the manifest, then loads the model
through the device's own runner (`device.interpreter.TFLiteModel`: sha256, labels and
frontend checked, the device's quantisation arithmetic) to measure int8-vs-float agreement,
which the manifest then records. With ``onnx=True`` it also writes the float ONNX model and
its manifest, checked against Keras with onnxruntime.

TensorFlow, tf2onnx and onnxruntime are imported inside the functions: importing this module
costs nothing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from device.interpreter import TFLiteModel, load_interpreter
from device.manifest import write_manifest

__all__ = ["convert_int8", "convert_float16", "fixed_batch_copy", "output_heads", "export_onnx", "onnx_max_abs_diff",
           "predict_heads", "int8_manifest_fields", "export_with_manifest"]

log = logging.getLogger("export.convert")

# Calibration examples the int8-vs-float agreement is measured on (the training distribution).
AGREEMENT_EXAMPLES = 200
# Examples the ONNX model is checked against Keras on.
ONNX_CHECK_EXAMPLES = 20


def convert_int8(model, calibration: np.ndarray, as_input=None) -> bytes:
    """Full-integer int8 conversion (int8 in and out), calibrated on normalised features.

    Parameters
    ----------
    model : keras.Model
        With a fixed batch of 1.
    calibration : np.ndarray
        ``(n, frames, mels)`` *normalised* training features; a few hundred cover the ranges
        well, more only slows the conversion.
    as_input : callable, optional
        One calibration example -> the model's input tensor (default: ``(frames, mels)`` ->
        ``(1, frames, mels, 1)``; the ESN readout's vector is ``x[None, :]``).

    Returns
    -------
    bytes
        The ``.tflite`` flatbuffer.
    """
    import tensorflow as tf

    shape = as_input or (lambda x: x[None, :, :, None])

    def representative():
        for x in calibration:
            yield [shape(x).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def convert_float16(model) -> bytes:
    """Float16 TFLite: weights stored as float16 (half the float32 file), dequantised to float32
    at load, so the arithmetic is float32; float32 in and out. The route for layers the int8
    converter cannot calibrate (a looped LSTM in TF 2.21)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def fixed_batch_copy(model, build: Callable[..., object]):
    """The same network with the fixed batch of 1 the device feeds.

    Parameters
    ----------
    model : keras.Model
        The trained network (free batch size).
    build : callable
        ``build(batch_size=1)`` returns the same architecture with a fixed batch.
    """
    fixed = build(batch_size=1)
    fixed.set_weights(model.get_weights())
    return fixed


def output_heads(interpreter, heads: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Which TFLite output is which head: ``{head: {"index", "tensor_index", "shape", ...}}``.

    ``index`` is the position in ``get_output_details()`` and ``tensor_index`` the tensor's
    id (what `device.interpreter.TFLiteModel` maps by). The converter does not promise to keep
    the Keras output order, so heads are matched by the signature's output names (the Keras
    output names), and only when a model has no signature by class count.

    Parameters
    ----------
    interpreter
        An allocated interpreter (`device.interpreter.load_interpreter`).
    heads : mapping, optional
        ``{head: n_classes}``, for a model without a signature.
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


def export_onnx(model, path: Path, input_name: str = "log_mel", opset: int = 13) -> str:
    """Float ONNX of a fixed-batch Keras model; returns how it was made (tf2onnx first, Keras'
    own exporter as the fallback)."""
    import tensorflow as tf

    shape = [int(v) if v is not None else 1 for v in model.inputs[0].shape]
    try:
        import tf2onnx

        spec = (tf.TensorSpec(shape, tf.float32, name=input_name),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))
        return f"tf2onnx {tf2onnx.__version__} from_keras, opset {opset}"
    except Exception as exc:  # noqa: BLE001 - any tf2onnx failure: try the other route
        log.warning("tf2onnx.convert.from_keras failed (%s); trying keras Model.export(onnx)", exc)
        model.export(str(path), format="onnx", verbose=False)
        return "keras Model.export(format='onnx')"


def onnx_max_abs_diff(path: Path, x: np.ndarray, reference: Mapping[str, np.ndarray]) -> float:
    """Largest |ONNX - reference| output difference, one example at a time.

    Parameters
    ----------
    path : Path
        The ``.onnx`` file.
    x : np.ndarray
        Model inputs as Keras takes them (normalised, with the channel axis).
    reference : mapping
        ``{head: (n, classes)}`` Keras outputs on ``x``; ONNX outputs are matched by name.
    """
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


def predict_heads(model, x: np.ndarray, heads: Sequence[str], batch_size: int = 64) -> dict:
    """Keras outputs ``{head: (n, classes)}``, also for a one-head model that returns an array."""
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return out if isinstance(out, dict) else {heads[0]: out}


def int8_manifest_fields(path: Path, heads: Mapping[str, Sequence[str]], normalization: Mapping,
                         input_name: str = "log_mel",
                         layout: str = "NHWC: (1, frames, mels, 1)") -> tuple[dict, list, dict]:
    """The manifest's ``input`` and ``outputs`` of a converted int8 model, checked against the
    heads it should have.

    Parameters
    ----------
    path : Path
        The ``.tflite`` file.
    heads : mapping
        ``{head: labels}`` in the profile's order (`device.config.Config.head_labels`).
    normalization : mapping
        ``Normalizer.to_dict()``: what the device applies before quantising.

    Returns
    -------
    (input, outputs, output map)
        ``outputs`` in output order; the map is `output_heads`'.
    """
    it = load_interpreter(path)
    inp = it.get_input_details()[0]
    in_scale, in_zero = inp["quantization"]
    omap = output_heads(it, {h: len(labels) for h, labels in heads.items()})
    if set(omap) != set(heads):
        raise RuntimeError(f"converted model outputs {sorted(omap)} do not match the heads "
                           f"{sorted(heads)}; the conversion lost an output name")
    for head, o in omap.items():
        if o["shape"][-1] != len(heads[head]):
            raise RuntimeError(f"output '{head}' has {o['shape'][-1]} classes, the profile has "
                               f"{len(heads[head])} labels")
    outputs = [{"name": h, **o, "labels": list(heads[h])}
               for h, o in sorted(omap.items(), key=lambda kv: kv[1]["index"])]
    input_spec = {"name": input_name, "shape": [int(v) for v in inp["shape"]], "dtype": "int8",
                  "scale": float(in_scale), "zero_point": int(in_zero), "layout": layout,
                  "normalization": dict(normalization)}
    return input_spec, outputs, omap


def export_with_manifest(fixed, path: Path, *, name: str, kind: str,
                         heads: Mapping[str, Sequence[str]], frontend: tuple[str, Mapping],
                         normalizer, raw_calibration: np.ndarray, stride_hops: int | None,
                         onnx: bool = True, metrics: Mapping | None = None,
                         extra: Mapping | None = None) -> dict:
    """Convert a fixed-batch model to int8 TFLite (+ float ONNX), with manifests and checks.

    Parameters
    ----------
    fixed : keras.Model
        Batch 1 (`fixed_batch_copy`); one softmax output per head, named like the head.
    path : Path
        The ``.tflite`` to write (``<name>_int8.tflite``); the manifest goes beside it, the
        ONNX model to ``<name>.onnx`` in the same folder.
    name, kind : str
        The manifest's model name and kind (the ONNX manifest's kind is ``<kind>-float-onnx``).
    heads : mapping
        ``{head: labels}`` the model outputs, in the profile's label order.
    frontend : (str, mapping)
        The frontend's name and its profile section (``cfg.section("frontend.<name>")``):
        the features the device must compute.
    normalizer : train.features.Normalizer
        The model's input normaliser.
    raw_calibration : np.ndarray
        Raw (un-normalised) training features ``(n, frames, mels)``: int8 calibration, and
        the examples the int8 and ONNX models are checked on.
    stride_hops : int or None
        How often the device runs the model, in pipeline hops.
    onnx : bool
        Also write the float ONNX model.
    metrics, extra : mapping, optional
        Measured figures for the manifest's ``metrics``; more top-level manifest fields.

    Returns
    -------
    dict
        Paths, size in bytes, output map, input quantisation, int8-vs-float argmax agreement
        and largest probability difference (and the ONNX route and its difference).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.asarray(raw_calibration, dtype=np.float32)
    path.write_bytes(convert_int8(fixed, normalizer(raw)))
    frontend_name, frontend_section = frontend
    frontend_spec = {**frontend_section, "name": frontend_name}
    input_spec, outputs, omap = int8_manifest_fields(path, heads, normalizer.to_dict())
    extra = {**(extra or {}), "size_bytes": path.stat().st_size}

    def manifest(more: Mapping | None = None):
        write_manifest(path, name=name, kind=kind, frontend=frontend_spec, input=input_spec,
                       outputs=outputs, stride_hops=stride_hops, metrics=metrics,
                       extra={**extra, **(more or {})})

    # The manifest first: the device's runner checks the model against it (sha256, labels,
    # frontend) and quantises with its numbers, so the agreement below is the device's.
    manifest()
    device_model = TFLiteModel(path, expected_labels=heads, frontend=frontend_section)
    check = raw[:AGREEMENT_EXAMPLES]
    f_out = predict_heads(fixed, normalizer(check)[..., None], list(heads))
    q_out = device_model.predict(check)
    agreement = {h: float(np.mean(f_out[h].argmax(1) == q_out[h].argmax(1))) for h in heads}
    max_diff = {h: float(np.abs(f_out[h] - q_out[h]).max()) for h in heads}
    manifest({"int8_vs_float_on_calibration": {"argmax_agreement": agreement,
                                               "max_abs_prob_diff": max_diff}})
    summary = {"tflite": str(path), "size_bytes": path.stat().st_size, "outputs": omap,
               "input": {k: input_spec[k] for k in ("shape", "scale", "zero_point")},
               "argmax_agreement": agreement, "max_abs_prob_diff": max_diff}
    if onnx:
        onnx_path = path.with_name(path.name.replace("_int8.tflite", ".onnx"))
        if onnx_path == path:
            onnx_path = path.with_suffix(".onnx")
        route = export_onnx(fixed, onnx_path, input_spec["name"])
        n = ONNX_CHECK_EXAMPLES
        diff = onnx_max_abs_diff(onnx_path, normalizer(raw[:n])[..., None],
                                 {h: f_out[h][:n] for h in heads})
        write_manifest(onnx_path, name=name, kind=f"{kind}-float-onnx", frontend=frontend_spec,
                       input={**input_spec, "dtype": "float32", "scale": None, "zero_point": None},
                       outputs=[{"name": h, "index": o["index"], "labels": list(heads[h]),
                                 "dtype": "float32"} for h, o in omap.items()],
                       stride_hops=stride_hops, metrics=metrics,
                       extra={**extra, "size_bytes": onnx_path.stat().st_size,
                              "onnx_route": route, "max_abs_prob_diff_vs_keras": diff})
        summary.update(onnx=str(onnx_path), onnx_route=route, onnx_max_abs_diff=diff)
    return summary
