"""Streaming conversion of the keyword + scene trunk: a stateful int8 TFLite model fed only the
new frames of each stride.

The non-streaming model (`train.multitask.build_model`) re-reads the whole 1 s window (98
frames) every stride although only a stride's frames are new. The streaming model computes the
same network with the same trained weights (BatchNorm folded into the convolutions) row by row
in time, keeping what it has already computed as **resource variables inside the TFLite model**
(the method of Google's kws_streaming and of microWakeWord): the device sets one input, invokes,
reads the heads, exactly as for the non-streaming model, and no state crosses Python.

How each layer streams (the time axis; the mel axis keeps its ``same`` padding):

* A row of a layer's output is *final* once every input row it reads is final and inside the
  window; it is computed once, and the rows later calls need are kept in a ring buffer (the
  layer's state: ``k - s`` rows or so of its input, `LayerPlan.state_rows`).
* The newest rows of each layer read the zero padding that ``same`` puts after the window's
  last frame in the non-streaming model. The streaming model recomputes those *provisional*
  rows on every call, with the same zero padding, so the right edge of the window — where the
  newest speech is, and where a wake word ends — is computed exactly as the reference does.
* The oldest rows of the window are the one difference: the reference pads the window's start
  with zeros, the streaming model has real history there (it never forgets a row until it
  leaves the window). That touches the first rows of each layer (the first ~200 ms of the
  1 s window) and moves the posteriors a little; `compare` measures it and the tests bound it.
* Global average pooling keeps a ring of the last window's per-row means.

The stride must be a multiple of the trunk's time decimation (4 frames: the stem and the first
block stride 2 each), so every call adds whole rows to every layer; ``streaming.stride_hops =
4`` (40 ms) adds one. The model's state after a long silence is reached by feeding log-floor
frames (`device.stages.model`: at start and after an overrun gap), so no state needs storing.

``python -m export.streaming --profile default`` writes ``build/export/multitask_stream_int8
.tflite`` + manifest next to the non-streaming model, which stays the reference and the fallback
(`[stages.multitask] model` in the profile picks one).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from device.config import Config, add_profile_arguments, config_from_args  # noqa: E402
from device.frontend import LogMelConfig, silence_value  # noqa: E402
from device.interpreter import TFLiteModel  # noqa: E402
from device.manifest import write_manifest  # noqa: E402
from device.paths import BuildPaths, profile_tag  # noqa: E402
from export.convert import int8_manifest_fields  # noqa: E402

log = logging.getLogger("export.streaming")

__all__ = ["LayerPlan", "plan_layer", "FoldedTrunk", "fold_trunk", "StreamingTrunk",
           "convert_streaming_int8", "stream_features", "export_streaming", "warmup_calls",
           "check_agreement"]

# The trunk's time decimation: stem stride 2, first block stride 2.
TIME_DECIMATION = 4


# --------------------------------------------------------------------------- row bookkeeping
def same_padding(n_in: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow's ``same`` padding: (output size, pad before, pad after)."""
    n_out = -(-n_in // stride)
    total = max((n_out - 1) * stride + kernel - n_in, 0)
    return n_out, total // 2, total - total // 2


@dataclass(frozen=True)
class LayerPlan:
    """Which rows (time steps) one layer computes per call, and what it keeps.

    Attributes
    ----------
    n_in, n_out : int
        Rows of the layer's input and output in the non-streaming window.
    new_in, new_out : int
        Final rows that arrive per call, in and out (``new_in / stride``).
    prov_in, prov_out : int
        Provisional rows (touching the window's right zero padding): recomputed each call.
    state_rows : int
        Final input rows kept from earlier calls (the ring buffer).
    zero_rows : int
        Zero rows appended after the provisional ones (the window's right padding).
    """

    n_in: int
    n_out: int
    kernel: int
    stride: int
    new_in: int
    new_out: int
    prov_in: int
    prov_out: int
    state_rows: int
    zero_rows: int
    skip_new: int  # leading new input rows no output of this call reads (stride > kernel)


def plan_layer(n_in: int, kernel: int, stride: int, new_in: int, prov_in: int) -> LayerPlan:
    """The rows a ``same``-padded layer computes per call over a sliding window (see module)."""
    if new_in % stride:
        raise ValueError(f"{new_in} new rows per call do not divide by the stride {stride}: "
                         f"the stride in frames must be a multiple of {TIME_DECIMATION}")
    n_out, pad_before, _ = same_padding(n_in, kernel, stride)
    last_final_in = n_in - prov_in - 1
    last_final = (last_final_in - kernel + 1 + pad_before) // stride
    new_out = new_in // stride
    first = last_final - new_out + 1          # first output row computed this call
    a0 = stride * first - pad_before          # first input row it reads
    end = stride * (n_out - 1) - pad_before + kernel   # one past the last input row read
    new_start = n_in - prov_in - new_in
    state_rows = new_start - a0
    return LayerPlan(n_in=n_in, n_out=n_out, kernel=kernel, stride=stride, new_in=new_in,
                     new_out=new_out, prov_in=prov_in, prov_out=n_out - 1 - last_final,
                     state_rows=max(state_rows, 0), zero_rows=end - n_in,
                     skip_new=max(-state_rows, 0))


# --------------------------------------------------------------------------- weights
@dataclass
class FoldedTrunk:
    """The trained network's weights with BatchNorm folded in: what both paths compute.

    ``stem``: ``(kernel, bias, strides)``; ``blocks``: per block ``{"dw": (kernel, bias,
    strides), "pw": (kernel, bias)}``; ``heads``: ``{head: (weights, bias)}``; ``frames`` and
    ``n_mels``: the reference's input window.
    """

    stem: tuple
    blocks: list
    heads: dict
    frames: int
    n_mels: int


def _fold(layer, bn) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    w = np.asarray(layer.get_weights()[0], np.float64)
    if type(layer).__name__ == "DepthwiseConv2D":
        w = w * scale[None, None, :, None]
    else:
        w = w * scale[None, None, None, :]
    return w.astype(np.float32), (beta - mean * scale).astype(np.float32)


def fold_trunk(model) -> FoldedTrunk:
    """`FoldedTrunk` of a `train.multitask.build_model` network (trained or not)."""
    by = {layer.name: layer for layer in model.layers}
    if "b0_dw" not in by:  # e.g. build_bc_resnet's: its frequency averages are not planned here
        raise ValueError("the streaming export folds the DS-CNN trunk only (model.multitask."
                         "architecture = \"dscnn\"); deploy this network's non-streaming model")
    frames, n_mels = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2])
    stem = (*_fold(by["stem"], by["stem_bn"]), tuple(by["stem"].strides))
    blocks, i = [], 0
    while f"b{i}_dw" in by:
        blocks.append({"dw": (*_fold(by[f"b{i}_dw"], by[f"b{i}_dw_bn"]), tuple(by[f"b{i}_dw"].strides)),
                       "pw": _fold(by[f"b{i}_pw"], by[f"b{i}_pw_bn"])})
        i += 1
    heads = {name: tuple(np.asarray(w, np.float32) for w in by[name].get_weights())
             for name in ("keyword", "scene") if name in by}
    return FoldedTrunk(stem, blocks, heads, frames, n_mels)


# --------------------------------------------------------------------------- the model
class StreamingTrunk:
    """The streaming network as a ``tf.Module``: ``step(new_frames)`` -> ``{head: probs}``.

    Build it from a `FoldedTrunk`, call `plan` for the rows, run ``step`` in float (TensorFlow)
    or convert it (`convert_streaming_int8`). ``new_frames`` is ``(1, new, mels, 1)``
    normalised log-mel, ``new`` a multiple of 4.

    Parameters
    ----------
    trunk : FoldedTrunk
    new_frames : int
        Frames per call: the stride in frames (4 = 40 ms). Longer strides cost fewer calls and
        more latency.
    """

    def __init__(self, trunk: FoldedTrunk, new_frames: int):
        import tensorflow as tf

        self.trunk, self.new_frames = trunk, int(new_frames)
        self.plans = self.plan()
        width = trunk.stem[0].shape[-1]
        mels = [trunk.n_mels]
        for strides in [trunk.stem[2]] + [b["dw"][2] for b in trunk.blocks]:
            mels.append(-(-mels[-1] // strides[1]))      # "same": ceil(columns / stride)
        self.mels = mels            # mel columns at each layer's input (and the last output)
        module = tf.Module()
        self.module = module
        self._vars = {}

        def var(name, rows, cols, ch):
            if rows <= 0:
                return None
            v = tf.Variable(np.zeros((1, rows, cols, ch), np.float32), trainable=False, name=name)
            self._vars[name] = v
            return v

        # One ring buffer per stream (the stem's input, each block's input, the pooled rows),
        # holding the most final rows any reader of that stream needs: the block's depthwise
        # convolution and, for a residual block, its skip connection.
        self.keep = self.kept_rows()
        module.stem_state = var("stem_state", self.keep["stem"], mels[0], 1)
        for i, _ in enumerate(trunk.blocks):
            setattr(module, f"b{i}_state", var(f"b{i}_state", self.keep[f"b{i}"], mels[i + 1], width))
        last = self.plans[f"b{len(trunk.blocks) - 1}"]
        self.pool_rows = last.n_out
        self.pool_keep = self.keep["pool"]
        module.pool_state = var("pool_state", self.pool_keep, 1, width)
        spec = tf.TensorSpec([1, self.new_frames, trunk.n_mels, 1], tf.float32, name="log_mel")
        module.step = tf.function(self._step, input_signature=[spec])
        self.step = module.step

    def plan(self) -> dict:
        """`LayerPlan` per layer (``stem``, ``b<i>``) and the residual delays (``b<i>_delay``)."""
        t = self.trunk
        out = {}
        pl = plan_layer(t.frames, t.stem[0].shape[0], t.stem[2][0], self.new_frames, 0)
        out["stem"] = pl
        for i, b in enumerate(t.blocks):
            prev = pl
            pl = plan_layer(prev.n_out, b["dw"][0].shape[0], b["dw"][2][0], prev.new_out,
                            prev.prov_out)
            out[f"b{i}"] = pl
            # A residual adds the block's input row to its output row of the same time: the
            # input's final rows arrive earlier (fewer provisional rows), so wait for them.
            out[f"b{i}_delay"] = pl.prov_out - prev.prov_out if b["dw"][2][0] == 1 else 0
        return out

    def kept_rows(self) -> dict:
        """Final rows kept per stream (``stem``, ``b<i>``: a layer's input; ``pool``: the last
        block's per-row means): the most any reader of the stream needs from earlier calls."""
        p = self.plans
        keep = {"stem": p["stem"].state_rows}
        for i, _ in enumerate(self.trunk.blocks):
            keep[f"b{i}"] = max(p[f"b{i}"].state_rows, p[f"b{i}_delay"])
        last = p[f"b{len(self.trunk.blocks) - 1}"]
        keep["pool"] = last.n_out - last.prov_out - last.new_out
        return keep

    @staticmethod
    def _buffer(state, rows, n_final: int, keep: int):
        """A stream's window this call: its kept final rows, then this call's ``rows`` (``n_final``
        final rows, then provisional ones) — **one** concatenation, which every reader of the
        stream slices and from which the state is written back.

        Why one: an int8 CONCATENATION has a single scale for all its inputs and its output,
        and TFLite's quantiser gives each tensor one scale. A tensor that enters two
        concatenations (the state read and the new rows entering both the convolution's
        window and the state update, or both a convolution and a residual) ties their two
        calibrated ranges together, and conversion fails ("same scale constraint") whenever
        the trained weights make those ranges differ. With one concatenation per stream, the
        state variable, the rows and every slice of them share the concatenation's scale by
        construction, whatever the weights.
        """
        import tensorflow as tf

        if state is None:
            return rows
        buf = tf.concat([state.read_value(), rows], axis=1)
        state.assign(buf[:, n_final:n_final + keep])   # the last `keep` final rows
        return buf

    def _conv_rows(self, buf, keep: int, plan: LayerPlan, weights, depthwise: bool):
        """One layer's rows this call from its input stream's buffer (`_buffer`): ``y`` with
        ``plan.new_out`` final rows, then ``plan.prov_out`` provisional ones."""
        import tensorflow as tf

        kernel, bias, (_, s_mel) = weights
        first = keep - plan.state_rows + plan.skip_new     # the oldest row this call reads
        x = buf[:, first:] if first else buf
        cols = int(x.shape[2])
        _, m_before, m_after = same_padding(cols, kernel.shape[1], s_mel)
        x = tf.pad(x, [[0, 0], [0, plan.zero_rows], [m_before, m_after], [0, 0]])
        strides = [1, plan.stride, s_mel, 1]
        if depthwise:
            y = tf.nn.depthwise_conv2d(x, kernel, strides, "VALID")
        else:
            y = tf.nn.conv2d(x, kernel, strides, "VALID")
        return tf.nn.relu(y + bias)

    def _step(self, frames):
        import tensorflow as tf

        m, t, p, keep = self.module, self.trunk, self.plans, self.keep
        buf = self._buffer(m.stem_state, frames, self.new_frames, keep["stem"])
        rows = self._conv_rows(buf, keep["stem"], p["stem"], t.stem, False)
        n_final = p["stem"].new_out
        for i, b in enumerate(t.blocks):
            plan, k = p[f"b{i}"], keep[f"b{i}"]
            buf = self._buffer(getattr(m, f"b{i}_state"), rows, n_final, k)
            y = self._conv_rows(buf, k, plan, b["dw"], True)
            kernel, bias = b["pw"]
            y = tf.nn.relu(tf.nn.conv2d(y, kernel, [1, 1, 1, 1], "VALID") + bias)
            if b["dw"][2][0] == 1:   # residual: the input rows of the same times, from the buffer
                y = y + buf[:, -(plan.new_out + plan.prov_out):]
            rows, n_final = y, plan.new_out
        # The global average pool: each row's mean, the final ones kept in a ring; the window's
        # rows are exactly the ring, this call's final rows and the provisional ones.
        means = tf.reduce_mean(rows, axis=2, keepdims=True)
        buf = self._buffer(m.pool_state, means, n_final, self.pool_keep)
        pooled = tf.reduce_mean(buf, axis=[1, 2])
        return {name: tf.nn.softmax(tf.matmul(pooled, w) + bias)
                for name, (w, bias) in t.heads.items()}

    def reset(self) -> None:
        """Zero every state variable (float runs; the device warms up on log-floor frames)."""
        for v in self._vars.values():
            v.assign(np.zeros(v.shape, np.float32))

    @property
    def history_frames(self) -> int:
        """Frames after which no state depends on anything older (the warm-up length)."""
        p = self.plans
        rows = p["stem"].state_rows
        decim = p["stem"].stride
        total = rows                           # in frames
        for i, _ in enumerate(self.trunk.blocks):
            pl = p[f"b{i}"]
            total += self.keep[f"b{i}"] * decim
            decim *= pl.stride
        total += self.pool_keep * decim
        return int(total) + self.trunk.frames


def warmup_calls(history_frames: int, new_frames: int) -> int:
    """Calls of log-floor frames that leave the state exactly that of a long silence."""
    return int(math.ceil(history_frames / new_frames)) + 1


def stream_features(step, feats: np.ndarray, new_frames: int) -> list[dict]:
    """Feed ``(frames, mels)`` normalised features ``new_frames`` at a time; outputs per call."""
    out = []
    for start in range(0, len(feats) - new_frames + 1, new_frames):
        x = feats[start:start + new_frames][None, :, :, None].astype(np.float32)
        res = step(x)
        out.append({k: np.asarray(v)[0] for k, v in res.items()})
    return out


# --------------------------------------------------------------------------- conversion
def convert_streaming_int8(net: StreamingTrunk, calibration_streams: Sequence[np.ndarray],
                           silence: np.ndarray) -> bytes:
    """Full-integer int8 TFLite of ``net.step`` with its state as int8 resource variables.

    ``calibration_streams``: normalised feature streams ``(frames, mels)``, fed in order so the
    state (and so every concatenation's range) sees what it sees on the device; ``silence``:
    one normalised log-floor frame, fed first as the device's warm-up does.
    """
    import tensorflow as tf

    n = net.new_frames
    warm = np.repeat(silence[None, :], warmup_calls(net.history_frames, n) * n, axis=0)

    def representative():
        for feats in calibration_streams:
            net.reset()
            for chunk in _chunks(np.concatenate([warm, feats]), n):
                yield [chunk]
        net.reset()

    concrete = net.step.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], net.module)
    converter.experimental_enable_resource_variables = True
    converter._experimental_variable_quantization = True  # int8 state, as microWakeWord does
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _chunks(feats: np.ndarray, n: int):
    for start in range(0, len(feats) - n + 1, n):
        yield feats[start:start + n][None, :, :, None].astype(np.float32)


# --------------------------------------------------------------------------- checks and export
def compare(stream_model: TFLiteModel, reference: TFLiteModel, raw_feats: np.ndarray) -> dict:
    """Streaming vs non-streaming int8 on one raw log-mel stream ``(frames, mels)``, as the
    device runs both (`TFLiteModel.run`): after each streaming call whose window is full, the
    reference on the window ending at the same frame. Returns per head the largest and mean
    absolute probability difference and the argmax agreement, over ``calls`` windows."""
    n, frames = stream_model.frames, reference.frames
    stream_model.reset_state()
    got: dict[str, list] = {h: [] for h in stream_model.outputs}
    ref: dict[str, list] = {h: [] for h in stream_model.outputs}
    for end in range(n, len(raw_feats) + 1, n):
        out = stream_model.run(raw_feats[end - n:end])
        if end >= frames:
            r = reference.run(raw_feats[end - frames:end])
            for h in got:
                got[h].append(out[h])
                ref[h].append(r[h])
    result = {}
    for h in got:
        a, b = np.asarray(got[h]), np.asarray(ref[h])
        d = np.abs(a - b)
        result[h] = {"max_abs_prob_diff": float(d.max()), "mean_abs_prob_diff": float(d.mean()),
                     "argmax_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
                     "calls": int(len(a))}
    return result


def export_streaming(cfg: Config, variant_name: str, path: Path, reference_path: Path | None,
                     new_frames: int, calibration_streams: int = 20) -> dict:
    """Convert a trained variant to the streaming int8 model with its manifest; check it against
    the non-streaming model at ``reference_path`` (when given) on calibration streams."""
    from train import multitask as mt

    t0 = time.perf_counter()
    model, normalizer, info = mt.load_trained(cfg, variant_name)
    raw = np.load(mt.run_files(cfg, variant_name).calibration).astype(np.float32)
    net = StreamingTrunk(fold_trunk(model), new_frames)
    floor_raw = np.full((1, raw.shape[2]), silence_value(LogMelConfig.from_config(cfg, "keyword")),
                        np.float32)
    silence = normalizer(floor_raw)[0]
    # Streams of three calibration windows end to end: the state sees words come and go.
    per = 3
    streams_raw = [raw[i * per:(i + 1) * per].reshape(-1, raw.shape[2])
                   for i in range(min(calibration_streams, len(raw) // per))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_streaming_int8(net, [normalizer(s) for s in streams_raw], silence))
    heads = {h: cfg.head_labels[h] for h in fold_trunk(model).heads}
    input_spec, outputs, omap = int8_manifest_fields(
        path, heads, normalizer.to_dict(), layout="NHWC: (1, new frames, mels, 1)")
    frontend_spec = {**cfg.section("frontend.keyword"), "name": "keyword"}
    streaming = {"new_frames": int(new_frames), "state": "int8 resource variables",
                 "history_frames": int(net.history_frames),
                 "warmup_calls": warmup_calls(net.history_frames, new_frames),
                 "window_frames": int(net.trunk.frames),
                 "reference": reference_path.name if reference_path else None,
                 "differs_from_reference": "the window's first rows: real history where the "
                                           "reference pads with zeros"}
    extra = {"variant": variant_name, "profile": profile_tag(cfg), "params": info["params"],
             "size_bytes": path.stat().st_size, "streaming": streaming}

    def manifest(more=None):
        write_manifest(path, name=f"{mt.MODEL}_stream", kind=f"{mt.MODEL}_stream",
                       frontend=frontend_spec, input=input_spec, outputs=outputs,
                       stride_hops=int(new_frames), metrics=None, extra={**extra, **(more or {})})

    manifest()
    summary = {"tflite": str(path), "size_bytes": path.stat().st_size, "outputs": omap,
               "streaming": streaming}
    if reference_path is not None and Path(reference_path).exists():
        stream_model = TFLiteModel(path, expected_labels=heads, frontend=cfg.section("frontend.keyword"))
        ref_model = TFLiteModel(reference_path, expected_labels=heads,
                                frontend=cfg.section("frontend.keyword"))
        checks = [compare(stream_model, ref_model, s) for s in streams_raw]
        check = {h: {"max_abs_prob_diff": max(c[h]["max_abs_prob_diff"] for c in checks),
                     "mean_abs_prob_diff": float(np.mean([c[h]["mean_abs_prob_diff"] for c in checks])),
                     "argmax_agreement": float(np.mean([c[h]["argmax_agreement"] for c in checks]))}
                 for h in heads}
        manifest({"vs_reference_on_calibration_streams": check})
        summary["vs_reference"] = check
    log.info("exported streaming %s/%s -> %s (%d bytes, %d new frames per call) in %.0f s",
             profile_tag(cfg), variant_name, path, summary["size_bytes"], new_frames,
             time.perf_counter() - t0)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from train import multitask as mt
    from train.loop import configure_threads

    parser = argparse.ArgumentParser(
        prog="python -m export.streaming",
        description="Convert the trained keyword+scene network to a streaming int8 TFLite model: "
                    "it takes only the new frames of each stride and keeps its convolution "
                    "buffers as int8 resource variables. Writes the model and its manifest next "
                    "to the non-streaming one and checks the two against each other.",
        epilog="Default: the deployed variant -> build/export/multitask_stream_int8.tflite, "
               "model.multitask_stream.stride_hops new frames per call.")
    add_profile_arguments(parser)
    parser.add_argument("--variant", default=None, choices=mt.VARIANT_NAMES,
                        help="the variant (default: the deployed one)")
    parser.add_argument("--warn-on-failure", action="store_true",
                        help="a failed conversion or check is one warning line and exit 0 (what "
                             "`make export` runs: the reference model is already exported and "
                             "the main job must not stop); a stale streaming model is removed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    configure_threads()
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    name = args.variant or mt.deployed_variant(cfg)
    frames_per_hop = 1  # the keyword frontend's hop is the pipeline's (checked by the stage)
    new_frames = int(cfg["model.multitask_stream.stride_hops"]) * frames_per_hop
    path = paths.deployed_model(f"{mt.MODEL}_stream")
    try:
        summary = export_streaming(cfg, name, path, paths.deployed_model(mt.MODEL), new_frames)
        check_agreement(summary, float(cfg["model.multitask_stream.min_agreement"]))
    except Exception as exc:  # noqa: BLE001 - any failure: the reference stays, say it in one line
        if not args.warn_on_failure:
            raise
        # A streaming model left from an earlier training is another network: never keep it
        # beside a newly exported reference.
        for stale in (path, path.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        print(f"export.streaming: WARNING: no streaming model ({type(exc).__name__}: {reason}); "
              f"the profile's fallback, the reference {paths.deployed_model(mt.MODEL).name}, runs "
              f"instead; `python -m export.streaming --profile {profile_tag(cfg)}` shows the whole "
              f"error", file=sys.stderr)
        return 0
    print(json.dumps(summary, indent=1))
    return 0


def check_agreement(summary: dict, min_agreement: float) -> None:
    """Refuse a streaming model whose int8 keyword argmax agrees with the reference's on fewer
    than ``min_agreement`` of the calibration streams' calls (`export_streaming`'s check)."""
    check = summary.get("vs_reference")
    if check is None:
        return
    got = float(check["keyword"]["argmax_agreement"])
    if got < min_agreement:
        raise ValueError(f"the streaming model's keyword argmax agrees with the reference's on "
                         f"{100 * got:.1f} % of calls, below model.multitask_stream.min_agreement "
                         f"= {100 * min_agreement:.0f} %")


if __name__ == "__main__":
    raise SystemExit(main())
