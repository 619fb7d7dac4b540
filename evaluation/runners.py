"""LiteRT (int8 TFLite) against onnxruntime (the ONNX exported beside it): same events, cost per hop.

    python -m evaluation.runners --profile default [--qdq]

The question it answers is #15's "how does the Pi run the models": the device runs the int8
TFLite file through `device.interpreter` (ai-edge-litert); onnxruntime runs the float ONNX that
export writes beside it (and, with ``--qdq``, an int8 QDQ ONNX made here from it by
``onnxruntime.quantization.quantize_static``, calibrated on the signal's own windows: a
measurement, not a deployable export). For each runner it replays the self-check signal
(`export.deploy.render_selfcheck_signal`: the demo script spoken over a street scene, then
scripted tones) through the profile's whole pipeline with the model stage's runner swapped, and
reports

- the events raised, against LiteRT's (`device.selfcheck.compare_events`, the self-check's own
  rule and tolerance), and the heads' argmax agreement window by window;
- the cost of one model invocation (p50/p99 over every window of the signal, one thread, one
  process, runners interleaved so that the machine's load hits both alike) and that cost spread
  over the hops it serves (``stride_hops``).

Only this machine's figures: ratios between the runners in one run are what to trust on a
loaded host. A host tool (it imports export.deploy); the device never imports it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.paths import BuildPaths
from device.manifest import load_manifest


class OnnxRunner:
    """``run(features)`` like `device.interpreter.TFLiteModel.run`, on onnxruntime.

    Parameters
    ----------
    path : Path
        The ONNX file; its input takes the normalised float log-mel ``(1, frames, mels, 1)``.
    like : TFLiteModel
        The device's runner of the same model: its normalisation and head names are used, so
        both runners see the same numbers.
    threads : int
        onnxruntime intra-op threads (1: what the device gives LiteRT, ``runtime.num_threads``).
    """

    def __init__(self, path: Path, like, threads: int = 1):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.mean, self.std = like.norm_mean, like.norm_std
        self.shape = tuple(like.input_shape)
        self.names = list(like.outputs)   # head order = the ONNX outputs' order (export's)

    def features_to_input(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, np.float32) - self.mean) / self.std
        return x.astype(np.float32).reshape(self.shape)

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input: self.features_to_input(features)})
        return {n: np.asarray(o, np.float32).reshape(-1) for n, o in zip(self.names, outs)}


def quantize_qdq(float_onnx: Path, runner: OnnxRunner, windows: list[np.ndarray], out: Path) -> Path:
    """An int8 QDQ ONNX of ``float_onnx``, calibrated on ``windows`` (per-tensor, MinMax)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{runner.input: runner.features_to_input(w)} for w in windows])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


class _Recording:
    """Wraps a runner's ``run``: keeps every window it was given and every output."""

    def __init__(self, run):
        self._run, self.windows, self.outputs = run, [], []

    def __call__(self, features):
        self.windows.append(np.array(features, np.float32))
        out = self._run(features)
        self.outputs.append(out)
        return out


def replay_with(cfg, signal: Path, run=None):
    """The pipeline's events on ``signal`` with the model stage's ``run`` replaced by ``run``
    (None: LiteRT, as deployed); returns (events, the recording of the model's calls)."""
    from device.audio_source import FileSource
    from device.pipeline import Pipeline
    from device.selfcheck import EVENT_TYPES
    pipe = Pipeline.from_config(cfg, keep_events=True, shedding=False)
    stage = next(s for s in pipe.stages if hasattr(s, "model"))
    rec = _Recording(run or stage.model.run)
    stage.model.run = rec
    try:
        pipe.run(FileSource(signal, rate=pipe.rate))
    finally:
        pipe.close()
    events = [{"type": e["type"], "label": e["label"], "t_audio_s": round(e["t_audio_s"], 3)}
              for e in pipe.events if e["type"] in EVENT_TYPES]
    return events, rec, stage


def _cost_us(runs: dict, windows: list[np.ndarray], repeats: int) -> dict:
    """p50/p99 µs per invocation of each runner, interleaved window by window."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for w in windows:
            for name, run in runs.items():
                t0 = time.perf_counter()
                run(w)
                times[name].append(time.perf_counter() - t0)
    return {name: {"p50_us": round(float(np.percentile(t, 50)) * 1e6, 1),
                   "p99_us": round(float(np.percentile(t, 99)) * 1e6, 1), "n": len(t)}
            for name, t in times.items()}


def compare(cfg, qdq: bool = False, repeats: int = 3) -> dict:
    """The measurement described in the module docstring, as a dict."""
    from device.selfcheck import compare_events
    from export.deploy import render_selfcheck_signal
    # The non-streaming model: its float twin is the ONNX export beside it (the streaming
    # model has none), and the pipeline runs it for this comparison whatever the profile runs.
    tflite = BuildPaths(cfg).deployed_model("multitask")
    cfg = cfg.with_overrides([f"stages.multitask.model={tflite}"])
    float_onnx = tflite.with_name(load_manifest(tflite)["name"] + ".onnx")   # export's name
    if not float_onnx.exists():
        raise SystemExit(f"no ONNX beside {tflite}: run `make export`")
    tmp = Path(tempfile.mkdtemp(prefix="hopwise-runners-"))
    signal = tmp / "signal.flac"
    what = render_selfcheck_signal(cfg, signal)
    ref_events, ref, stage = replay_with(cfg, signal)
    runners = {"litert_int8": stage.model.run._run}
    onnx = OnnxRunner(float_onnx, stage.model)
    runners["onnxruntime_float"] = onnx.run
    if qdq:
        q = quantize_qdq(float_onnx, onnx, ref.windows, tmp / "multitask_qdq.onnx")
        runners["onnxruntime_qdq_int8"] = OnnxRunner(q, stage.model).run
    tol = float(cfg["selfcheck.time_tolerance_s"])
    stride = int(load_manifest(tflite)["stride_hops"])
    result = {"signal": what, "windows": len(ref.windows), "stride_hops": stride,
              "litert_backend": stage.model.backend, "runners": {}}
    for name, run in runners.items():
        events, rec, _ = replay_with(cfg, signal, run) if name != "litert_int8" else (ref_events, ref, None)
        agree = {h: float(np.mean([np.argmax(a[h]) == np.argmax(b[h])
                                   for a, b in zip(rec.outputs, ref.outputs)]))
                 for h in ref.outputs[0]}
        diff = max(float(np.max(np.abs(a[h] - b[h]))) for a, b in zip(rec.outputs, ref.outputs)
                   for h in a)
        result["runners"][name] = {
            "events": len(events), "events_vs_litert": compare_events(ref_events, events, tol) or "same",
            "argmax_agreement": agree, "max_abs_prob_diff": round(diff, 4)}
    cost = _cost_us(runners, ref.windows, repeats)
    for name, c in cost.items():
        c["per_hop_us"] = round(c["p50_us"] / stride, 1)
        result["runners"][name]["cost"] = c
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.runners", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "selfcheck.time_tolerance_s=0.25")
    parser.add_argument("--qdq", action="store_true",
                        help="also an int8 QDQ ONNX quantised here (onnxruntime.quantization)")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes over the windows")
    args = parser.parse_args(argv)
    print(json.dumps(compare(config_from_args(args), args.qdq, args.repeats), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
