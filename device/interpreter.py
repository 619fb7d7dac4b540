"""Model loading: a verified int8 TFLite model with float-in / float-out helpers.

`load_interpreter` takes the first interpreter available of ``ai_edge_litert`` (the Pi's),
``tflite_runtime`` (older images), and — only when ``allow_tensorflow=True``, on a host —
``tensorflow.lite``. TensorFlow is imported lazily inside that fallback and never at import time
of anything under ``device/`` (tests/device/test_no_tensorflow.py).

`TFLiteModel` checks the manifest first (`device.manifest.verify_model`: sha256, labels against
the profile, frontend against the profile), then quantises float features with the manifest's
normalisation and the input's scale/zero point, runs, and dequantises each named output.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .manifest import ManifestError, check_against_config, read_verified

__all__ = ["load_interpreter", "TFLiteModel", "interpreter_backend"]

try:
    import numba as _numba
except ImportError:  # pragma: no cover - numba is a device dependency; NumPy does the same
    _numba = None
    _quantize_into = None
else:
    @_numba.njit(cache=True, nogil=True, boundscheck=False)
    def _quantize_into(x, a, b, lo, hi, out):
        # `TFLiteModel.quantize`'s arithmetic value by value, in one call: float32 x * a[mel]
        # + b[mel], round half to even, clip, to the integer type: the same operations in
        # the same order (no fused multiply-add without fastmath), so the same integers
        # (tests/device/test_runtime_parts.py), for a tenth of the five NumPy calls' time on
        # a streaming model's 4 x 40 input.
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                v = x[i, j] * a[j]
                v += b[j]
                v = np.rint(v)
                if v < lo:
                    v = lo
                elif v > hi:
                    v = hi
                out[i, j] = v

_BACKENDS = (("ai_edge_litert", "ai_edge_litert.interpreter"),
             ("tflite_runtime", "tflite_runtime.interpreter"))


def _interpreter_class(allow_tensorflow: bool = False):
    errors = []
    for name, module in _BACKENDS:
        try:
            return name, importlib.import_module(module).Interpreter
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    if allow_tensorflow:
        try:
            tf = importlib.import_module("tensorflow")
            return "tensorflow.lite", tf.lite.Interpreter
        except ImportError as exc:
            errors.append(f"tensorflow: {exc}")
    raise ImportError("no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert) "
                      "or tflite-runtime; tried " + "; ".join(errors))


def _pick(manifest_value, tensor_value):
    """The manifest's quantisation parameter when it gives one, else the tensor's."""
    return tensor_value if manifest_value is None else manifest_value


def interpreter_backend(allow_tensorflow: bool = False) -> str:
    """Name of the interpreter `load_interpreter` would use."""
    return _interpreter_class(allow_tensorflow)[0]


def load_interpreter(path: str | Path, num_threads: int = 1, allow_tensorflow: bool = False,
                     content: bytes | None = None, input_shape: Sequence[int] | None = None):
    """An allocated TFLite interpreter for ``path`` (or for ``content``, the model's bytes already
    read and checked; ``path`` then only names it in messages).

    Parameters
    ----------
    num_threads : int
        Interpreter threads. 1 leaves the Pi's other cores to capture, MQTT and other stages;
        more lowers one call's latency but not the pipeline's total CPU.
    allow_tensorflow : bool
        Permit the ``tensorflow.lite`` fallback (host only; never on the device).
    input_shape : sequence of int, optional
        Resize the first input to this before allocating: a model with dynamic dimensions
        cannot be allocated at its placeholder shape (LiteRT's XNNPACK refuses it).
    """
    _, cls = _interpreter_class(allow_tensorflow)
    source = {"model_path": str(path)} if content is None else {"model_content": content}
    try:
        try:
            interp = cls(**source, num_threads=int(num_threads))
        except TypeError:  # very old interpreters have no num_threads
            interp = cls(**source)
        if input_shape is not None:
            interp.resize_tensor_input(interp.get_input_details()[0]["index"],
                                       [int(v) for v in input_shape], strict=True)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        # One line of LiteRT's text: it can be long, and the fix is the same whatever it says.
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"model {path} is not a valid TFLite model ({first}); re-run "
                            f"`make export`") from None
    return interp


def _dequantize_table(output: Mapping) -> np.ndarray | None:
    """An 8-bit output's 256 float values, indexed by its raw byte: ``(q - zero) * scale``
    computed once per value with the arithmetic `TFLiteModel.run` used per call (the same
    floats), so a call looks its outputs up instead of three array operations each. None for a
    float output."""
    dtype = output["dtype"]
    if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return None
    values = np.arange(256, dtype=np.uint8).view(dtype)
    return (values.astype(np.float32) - output["zero_point"]) * output["scale"]


class TFLiteModel:
    """A verified model: ``probs = model.run(features)`` -> ``{output name: float array}``.

    Usage::

        model = TFLiteModel("build/export/multitask_int8.tflite",
                            expected_labels={"keyword": cfg.keyword_labels,
                                             "scene": cfg["labels.scenes"]},
                            frontend=cfg.section("frontend.keyword"))
        out = model.run(frames)   # frames: (98, 40) float log-mels -> {"keyword": (13,), ...}

    Parameters
    ----------
    path : the ``.tflite`` file; its ``.json`` manifest must be beside it.
    expected_labels, frontend : passed to `verify_model`; a mismatch raises `ManifestError`.
    num_threads, allow_tensorflow : see `load_interpreter`.
    """

    def __init__(self, path: str | Path, *, expected_labels: Mapping[str, Sequence[str]] | None = None,
                 frontend: Mapping | None = None, num_threads: int = 1,
                 allow_tensorflow: bool = False):
        self.path = Path(path)
        # The bytes that were hashed are the bytes that run: no second read of the file.
        self.manifest, content = read_verified(self.path)
        check_against_config(self.manifest, expected_labels=expected_labels, frontend=frontend)
        self.interpreter = load_interpreter(self.path, num_threads, allow_tensorflow, content=content)
        self.backend = interpreter_backend(allow_tensorflow)
        inp = self.interpreter.get_input_details()
        if len(inp) != 1:
            raise ManifestError(f"model {self.path.name} has {len(inp)} inputs; hopwise models have one")
        self._in = inp[0]
        self.input_shape = tuple(int(s) for s in self._in["shape"])
        want = tuple(self.manifest["input"].get("shape", self.input_shape))
        if want != self.input_shape:
            raise ManifestError(f"model {self.path.name} input shape {self.input_shape} differs from "
                                f"its manifest's {want}; re-run `make export`")
        self.input_dtype = np.dtype(self._in["dtype"])
        scale, zp = self._in.get("quantization", (0.0, 0))
        self.in_scale = float(_pick(self.manifest["input"].get("scale"), scale) or 0.0)
        self.in_zero = int(_pick(self.manifest["input"].get("zero_point"), zp))
        if self.input_dtype.kind in "iu" and self.in_scale <= 0:
            raise ManifestError(f"model {self.path.name} has an integer input without a positive "
                                f"quantisation scale (got {self.in_scale}); re-run `make export`")
        norm = self.manifest.get("normalization") or self.manifest["input"].get("normalization") or {}
        self.norm_mean = np.asarray(norm.get("mean", 0.0), dtype=np.float32)
        self.norm_std = np.asarray(norm.get("std", 1.0), dtype=np.float32)
        self.outputs = self._map_outputs()
        self.labels = {name: list(o["labels"]) for name, o in
                       ((o["name"], o) for o in self.manifest["outputs"])}
        self.stride_hops = self.manifest.get("stride_hops")
        # Looked up once, not on every run (a streaming model runs 25 times a second).
        self._in_index = self._in["index"]
        self._limits = None
        if self.input_dtype in (np.dtype(np.int8), np.dtype(np.uint8)):
            info = np.iinfo(self.input_dtype)
            self._limits = (float(info.min), float(info.max))
            # Normalisation and quantisation folded into one multiply-add per value:
            # q = x * a + b with a = 1 / (std * scale), b = zero - mean * a.
            a = 1.0 / (self.norm_std.astype(np.float64) * self.in_scale)
            self._qa = a.astype(np.float32)
            self._qb = (self.in_zero - self.norm_mean.astype(np.float64) * a).astype(np.float32)
        self._out_plan = [(name, o["tensor"], o["shape"], _dequantize_table(o))
                          for name, o in self.outputs.items()]
        self.frames = self.input_shape[1] if len(self.input_shape) >= 3 else self.input_shape[-1]
        # `run`'s path for the usual call, float32 (frames, n_mels): quantised by one compiled
        # call into a buffer kept for it (the per-mel constants broadcast once).
        self._fast = None
        if _quantize_into is not None and self._limits is not None and len(self.input_shape) >= 3:
            rows = (self.frames, self.input_shape[2])
            buf = np.zeros(self.input_shape, self.input_dtype)
            consts = (np.ascontiguousarray(np.broadcast_to(self._qa, rows[1:])),
                      np.ascontiguousarray(np.broadcast_to(self._qb, rows[1:])),
                      np.float32(self._limits[0]), np.float32(self._limits[1]))
            # compiled (or loaded from numba's cache) now, not inside the first live hop
            _quantize_into(np.zeros(rows, np.float32), *consts, buf.reshape(rows))
            self._fast = (rows, buf, buf.reshape(rows), *consts)
        # A streaming model (export.streaming) takes only the new frames of each stride and
        # keeps the rest as state inside the interpreter; `reset_state` gives it a long silence.
        self.streaming = self.manifest.get("streaming") or None
        if self.streaming is not None:
            from .frontend import silence_value
            n_mels = self.input_shape[2] if len(self.input_shape) >= 3 else self.input_shape[-1]
            self._silence = np.full((self.frames, n_mels), silence_value(self.manifest["frontend"]),
                                    np.float32)
            self.window_frames = int(self.streaming.get("window_frames", self.frames))
            self.reset_state()

    def _map_outputs(self) -> dict:
        details = self.interpreter.get_output_details()
        by_tensor = {d["index"]: d for d in details}
        out = {}
        for spec in self.manifest["outputs"]:
            idx, tidx = spec.get("index"), spec.get("tensor_index")
            if tidx is not None and tidx in by_tensor:
                det = by_tensor[tidx]              # the exporter names the tensor index ...
            elif isinstance(idx, int) and 0 <= idx < len(details):
                det = details[idx]                 # ... and "index", the output position
            elif idx in by_tensor:
                det = by_tensor[idx]               # older manifests: "index" was the tensor index
            else:
                raise ManifestError(f"model {self.path.name}: output '{spec['name']}' index {idx} is "
                                    f"neither a position among its {len(details)} outputs nor a "
                                    f"tensor index; re-run `make export`")
            n = int(np.prod(det["shape"]))
            shape = tuple(int(v) for v in det["shape"])
            if spec.get("shape") is not None:
                # A dense output (the separator's masks, one per bin and source): the manifest
                # gives the tensor's shape and the labels name its last axis.
                if tuple(spec["shape"]) != shape or shape[-1] != len(spec["labels"]):
                    raise ManifestError(f"model {self.path.name}: output '{spec['name']}' has "
                                        f"shape {list(shape)}, the manifest says {spec['shape']} "
                                        f"with {len(spec['labels'])} labels on the last axis; "
                                        f"re-run the export")
                out_shape = shape[1:]
            elif n != len(spec["labels"]):
                raise ManifestError(f"model {self.path.name}: output '{spec['name']}' has {n} values "
                                    f"but the manifest lists {len(spec['labels'])} labels; re-run "
                                    f"`make export`")
            else:
                out_shape = (n,)
            q_scale, q_zero = det.get("quantization", (0.0, 0))
            out[spec["name"]] = {
                "tensor": det["index"], "dtype": np.dtype(det["dtype"]),
                "scale": float(_pick(spec.get("scale"), q_scale) or 1.0),
                "zero_point": int(_pick(spec.get("zero_point"), q_zero)), "shape": out_shape,
            }
        return out

    def quantize(self, features: np.ndarray) -> np.ndarray:
        """Float log-mel frames -> the model's input tensor (normalised, quantised, shaped)."""
        x = np.asarray(features, dtype=np.float32)
        limits = self._limits
        if limits is None:
            return ((x - self.norm_mean) / self.norm_std).astype(self.input_dtype).reshape(
                self.input_shape)
        # One multiply-add, round half to even, clip: five array operations where the
        # normalise-then-quantise sequence took nine (12 us of a streaming call's 32 us on
        # this host); np.minimum/maximum in place of np.clip, whose argument checks cost more
        # than the sums on a 4-frame input. The folded constants can move a value that sits
        # on a rounding boundary by one step; every user of the model (export checks,
        # evaluation, the device) runs this same function.
        y = x * self._qa
        y += self._qb
        np.rint(y, out=y)
        np.minimum(y, limits[1], out=y)
        np.maximum(y, limits[0], out=y)
        return y.astype(self.input_dtype).reshape(self.input_shape)

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """One invocation on ``(frames, n_mels)`` float features; float outputs by name: a
        class output ``(classes,)``, a dense one (its manifest gives a ``shape``) that shape
        without the batch axis."""
        interp = self.interpreter
        fast = self._fast
        if fast is not None and type(features) is np.ndarray and features.shape == fast[0] \
                and features.dtype == np.float32:
            shape, buf, rows, a, b, lo, hi = fast
            _quantize_into(features, a, b, lo, hi, rows)
            interp.set_tensor(self._in_index, buf)       # copied in: buf is free again
        else:
            interp.set_tensor(self._in_index, self.quantize(features))
        interp.invoke()
        result = {}
        for name, tensor, shape, table in self._out_plan:
            raw = interp.get_tensor(tensor).reshape(shape)
            result[name] = raw.astype(np.float32) if table is None else table[raw.view(np.uint8)]
        return result

    def reset_state(self) -> None:
        """Streaming models: the state of a long digital silence (log-floor frames fed for the
        manifest's ``warmup_calls``, after which no state depends on anything older), as at
        start and after an overrun gap. Nothing for a non-streaming model."""
        if self.streaming is None:
            return
        for _ in range(int(self.streaming["warmup_calls"])):
            self.run(self._silence)

    def run_window(self, window: np.ndarray) -> dict[str, np.ndarray]:
        """A whole window ``(frames, n_mels)`` through a streaming model from silence: reset,
        then its frames a stride at a time ending at its last frame (a leading remainder
        shorter than a stride is dropped); the last call's outputs. A non-streaming model: `run`."""
        if self.streaming is None:
            return self.run(window)
        self.reset_state()
        n = self.frames
        out = None
        for end in range(len(window), n - 1, -n)[::-1]:
            out = self.run(window[end - n:end])
        if out is None:
            raise ValueError(f"a window of {len(window)} frames is shorter than one call "
                             f"({n} frames)")
        return out

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """A batch ``(n, frames, n_mels)`` of float features -> ``{output name: (n, classes)}``.

        One `run` per example (the model has a fixed batch of 1): evaluation, export checks and
        benchmarks get exactly the device's arithmetic, call for call. A streaming model runs
        each example as a window from silence (`run_window`).
        """
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"predict takes (n, frames, n_mels) features, got shape {x.shape}")
        out = {name: np.empty((len(x), len(self.labels[name])), np.float32)
               for name in self.outputs}
        run = self.run_window if self.streaming is not None else self.run
        for i in range(len(x)):
            for name, probs in run(x[i]).items():
                out[name][i] = probs
        return out
