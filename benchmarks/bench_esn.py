"""The vocal-percussion ESN: cost per step and per hop, and its peers side by side.

pytest-benchmark (``make bench``, or ``pytest benchmarks/bench_esn.py --benchmark-enable -o
python_files='bench_*.py'``): one reservoir step at 100, 400 and 1000 neurons — hopwise's
fixed-point numba kernel, the float NumPy step of the original design, reservoirpy's — and the
whole per-hop path at 400 neurons (one 16 ms frame: log-mel frame, step, int8 readout,
posteriors, beat decision) fused in one numba call (`device.esn.EsnStream`, what the esn stage
runs) and unfused (two numba calls, Python between), the esn stage itself per 10 ms hop
(resampling included), against the original design's path (the same frontend, a float NumPy
step, a scikit-learn ``predict`` per frame).

Like every suite here it imports only ``device``, numpy and pytest when imported, so it runs on
the Pi unchanged (reservoirpy's and the original design's cases skip where their packages are
missing). The hop-budget report (``python -m device bench``) times the ``esn`` stage with every
other stage of the profile's pipeline by itself.

``python -m benchmarks.bench_esn --profile real`` (host only) runs the three on the same split (5-fold
cross-validation by recording of the profile's percussion recordings) and prints accuracy, fit
time and cost per step; ``--json`` writes the table to ``build/reports/esn_peers_<profile>.json``.

The original design is rebuilt from its description (issue #14), its exact constants unknown:
``x <- tanh(a W x + (1 - a) W_in u)`` with ``a = 0.5`` the previous state's share, a dense
random ``W`` scaled to spectral radius 0.2 (a reservoir that remembers about one step: the
measured memory is in the table), a ``RidgeClassifier`` on the state alone, and its ``predict``
called once per frame. reservoirpy (dev-only) gets hopwise's own float ``W``, ``W_in`` and leak
and the same ridge readout (strength, class balance) over the same ``[state, input]`` features.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pytest

from device import esn
from device.config import load_config
from device.decisions import BeatTracker
from device.frontend import LogMelConfig, LogMelStream

PROFILE = load_config("default")
SIZES = (100, 400, 1000)


def _reservoir(n: int, seed: int = 0):
    side = int(round(np.sqrt(n)))
    h, w = (side, n // side) if side * (n // side) == n else (n, 1)
    return esn.build_reservoir(h, w, 32, 0.9, 0.5, 0.3, seed)


class OriginalDesign:
    """The original beatbox ESN's per-frame path, in float NumPy (see the module docstring)."""

    def __init__(self, n: int, n_inputs: int, seed: int = 0, share_previous: float = 0.5,
                 radius: float = 0.2, alpha: float = 1.0):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((n, n))
        self.w = w * radius / np.max(np.abs(np.linalg.eigvals(w)))
        self.w_in = rng.uniform(-1, 1, (n, n_inputs)) * (rng.random((n, n_inputs)) < 0.3)
        self.a = share_previous
        self.x = np.zeros(n)
        self.alpha = alpha

    def step(self, u: np.ndarray) -> np.ndarray:
        self.x = np.tanh(self.a * (self.w @ self.x) + (1 - self.a) * (self.w_in @ u))
        return self.x

    def states(self, u_frames: np.ndarray) -> np.ndarray:
        self.x = np.zeros(len(self.w))
        return np.array([self.step(u).copy() for u in u_frames])

    def fit(self, u_list, y_list):
        from sklearn.linear_model import RidgeClassifier
        self.clf = RidgeClassifier(alpha=self.alpha).fit(
            np.concatenate([self.states(u) for u in u_list]), np.concatenate(y_list))
        return self

    def predict_frame(self, u: np.ndarray):
        return self.clf.predict(self.step(u)[None, :])[0]   # the original: one predict per frame


# --------------------------------------------------------------------------- step benchmarks
@pytest.mark.parametrize("n", SIZES)
def test_fixed_point_step(benchmark, n):
    w, w_in = _reservoir(n)
    res = esn.quantize_reservoir(w, w_in, 0.2)
    u = esn.quantize_input(np.random.default_rng(1).normal(size=32))
    x, out = np.zeros(n, np.int16), np.zeros(n, np.int16)
    esn.step(res, x, u, out)
    benchmark(esn.step, res, x, u, out)
    assert np.array_equal(out, esn.step_reference(res, x, u))
    benchmark.extra_info["neurons"] = n


@pytest.mark.parametrize("n", SIZES)
def test_float_numpy_step(benchmark, n):
    w, w_in = _reservoir(n)
    u = np.random.default_rng(1).normal(size=32)
    x = np.zeros(n)

    def step():
        return 0.8 * x + 0.2 * np.tanh(w @ x + w_in @ u)
    out = benchmark(step)
    assert out.shape == (n,)
    benchmark.extra_info["neurons"] = n


@pytest.mark.parametrize("n", SIZES)
def test_reservoirpy_step(benchmark, n):
    nodes = pytest.importorskip("reservoirpy.nodes")
    w, w_in = _reservoir(n)
    r = nodes.Reservoir(units=n, lr=0.2, W=w, Win=w_in, input_dim=32, seed=0)
    u = np.random.default_rng(1).normal(size=32)
    r.run(u[None, :])
    out = benchmark(r.step, u)
    assert np.asarray(out).size == n
    benchmark.extra_info["neurons"] = n


# --------------------------------------------------------------------------- per-hop path
def _trained_runner(n: int = 400) -> esn.EsnRunner:
    w, w_in = _reservoir(n)
    rng = np.random.default_rng(2)
    ro = esn.Readout(rng.normal(0, 0.05, (5, n + 32)), rng.uniform(0, 0.2, 5),
                     list(PROFILE["labels.percussion"]), True)
    model = esn.EsnModel(esn.quantize_reservoir(w, w_in, 0.2), np.full(32, -8.0), np.full(32, 2.0), ro)
    return esn.EsnRunner(model)


def test_per_hop_path_400_neurons(benchmark):
    """One ESN frame (16 ms of 8 kHz audio) end to end, as the esn stage runs it with audio in
    (the default): `EsnStream.push` (log-mel frame, step, int8 readout, posteriors: one numba
    call) and the beat decision."""
    cfg = LogMelConfig.from_config(PROFILE, "esn")
    stream = esn.EsnStream(_trained_runner(400), cfg)
    assert stream.fused
    stream.push(np.zeros(cfg.window_length - cfg.hop_length, np.float32))
    tracker = BeatTracker.from_config(PROFILE, stream.runner.model.labels, cfg.hop_ms / 1000.0)
    hop = (np.random.default_rng(3).standard_normal(cfg.hop_length) * 0.05).astype(np.float32)

    def path():
        stream.push(hop)
        return tracker.update(0.0, stream.proba[0])
    benchmark(path)


def test_per_hop_path_400_neurons_unfused(benchmark):
    """The same in two numba calls with Python between them (`LogMelStream.push`, then
    `EsnRunner.push`): the esn_frontend -> esn form, and the whole path before the fusion."""
    cfg = LogMelConfig.from_config(PROFILE, "esn")
    stream = LogMelStream(cfg)
    stream.push(np.zeros(cfg.window_length - cfg.hop_length, np.float32))
    runner = _trained_runner(400)
    tracker = BeatTracker.from_config(PROFILE, runner.model.labels, cfg.hop_ms / 1000.0)
    hop = (np.random.default_rng(3).standard_normal(cfg.hop_length) * 0.05).astype(np.float32)
    runner.push(np.zeros(32, np.float32))

    def path():
        runner.push(stream.push(hop)[0])
        return tracker.update(0.0, runner.proba)
    benchmark(path)


def test_per_hop_path_400_neurons_without_the_frontend(benchmark):
    """The same minus the log-mel frame: step + readout + decision."""
    runner = _trained_runner(400)
    tracker = BeatTracker.from_config(PROFILE, runner.model.labels, 0.016)
    frame = np.random.default_rng(4).normal(-8, 2, 32).astype(np.float32)
    runner.push(frame)

    def path():
        runner.push(frame)
        return tracker.update(0.0, runner.proba)
    benchmark(path)


@pytest.mark.parametrize("stages", ["esn", "esn_frontend+esn"])
def test_esn_stage_per_10ms_hop_400_neurons(benchmark, stages):
    """The device's ESN stages themselves per 10 ms hop of 16 kHz audio (resampling to 8 kHz
    included): ``esn`` on the audio (the default profile: frontend fused) or ``esn_frontend``
    then ``esn`` on ``features.esn.new``. The resampler hands out ~470 samples every fifth or
    sixth hop, so most hops carry no frame and a few carry three or four: compare the means."""
    import tempfile
    from pathlib import Path
    from device.pipeline import Pipeline
    from device.stages.base import HopContext
    runner = _trained_runner(400)
    folder = Path(tempfile.mkdtemp(prefix="bench_esn_"))
    esn.write_esn_model(runner.model, folder / "esn_int8.npz",
                        {**PROFILE.section("frontend.esn"), "name": "esn"})
    wiring = ['pipeline.stages=["esn"]'] if stages == "esn" else \
        ['pipeline.stages=["esn_frontend", "esn"]', "stages.esn.input=features.esn.new"]
    cfg = load_config("default", [*wiring, f"stages.esn.model={folder / 'esn_int8.npz'}",
                                  "stages.esn.readout=int8", "runtime.status_interval_s=0"])
    pipe = Pipeline.from_config(cfg)
    assert pipe.stages[-1].describe()["fused"] == (stages == "esn")
    audio = (np.random.default_rng(6).standard_normal(16000) * 0.05).astype(np.float32)
    hops = [audio[i:i + pipe.hop] for i in range(0, len(audio), pipe.hop)]
    state = {"i": 0}

    def hop():
        i = state["i"] = (state["i"] + 1) % len(hops)
        ctx = HopContext(i, (i + 1) * 0.01, hops[i], {})
        for stage in pipe.stages:
            stage.process(ctx)
    for _ in range(len(hops)):
        hop()
    benchmark(hop)
    pipe.close()


def test_original_design_path_400_neurons(benchmark):
    pytest.importorskip("sklearn")
    cfg = LogMelConfig.from_config(PROFILE, "esn")
    stream = LogMelStream(cfg)
    stream.push(np.zeros(cfg.window_length - cfg.hop_length, np.float32))
    rng = np.random.default_rng(5)
    orig = OriginalDesign(400, 32).fit([rng.normal(size=(50, 32))],
                                       [rng.choice(PROFILE["labels.percussion"], 50)])
    hop = (rng.standard_normal(cfg.hop_length) * 0.05).astype(np.float32)
    mean, std = -8.0, 2.0

    def path():
        frame = stream.push(hop)[0]
        return orig.predict_frame((frame - mean) / std)
    benchmark(path)


# --------------------------------------------------------------------------- peers on real data
def _time_per_step(step, u_frames, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for u in u_frames:
            step(u)
        best = min(best, (time.perf_counter() - t0) / len(u_frames))
    return best * 1e6


def compare(cfg, n_folds: int = 5) -> dict:
    """Accuracy (out-of-fold, by recording), fit time and cost per step of the three."""
    from sklearn.linear_model import Ridge
    from train import esn as tesn
    recs = tesn.load_recordings(cfg)
    params = tesn.params_from_config(cfg)
    labels = list(cfg["labels.percussion"])
    folds = tesn._folds(recs, n_folds, int(cfg["project.seed"]))
    truth = np.concatenate([r.labels for r in recs])
    preds = {"hopwise": [None] * len(recs), "original": [None] * len(recs),
             "reservoirpy": [None] * len(recs)}
    fit_s = {k: [] for k in preds}
    steps = {}
    try:
        from reservoirpy.nodes import Reservoir
    except ImportError:
        Reservoir = None
        preds.pop("reservoirpy")
    lab = np.asarray(labels, object)
    for train, test in folds:
        tr = [recs[i] for i in train]
        t0 = time.perf_counter()
        est = tesn.EchoStateClassifier(**params).fit([r.frames for r in tr], [r.labels for r in tr])
        fit_s["hopwise"].append(time.perf_counter() - t0)
        for i in test:
            preds["hopwise"][i] = est.predict([recs[i].frames])[0]
        mean, std = est.mean_, est.std_
        norm = [((r.frames - mean) / std) for r in tr]
        t0 = time.perf_counter()
        orig = OriginalDesign(len(est.float_w_), norm[0].shape[1], int(cfg["project.seed"])).fit(
            norm, [r.labels for r in tr])
        fit_s["original"].append(time.perf_counter() - t0)
        for i in test:
            u = (recs[i].frames - mean) / std
            orig.x = np.zeros(len(orig.w))
            preds["original"][i] = np.array([orig.predict_frame(f) for f in u], object)
        if Reservoir is not None:
            t0 = time.perf_counter()
            rp = Reservoir(units=len(est.float_w_), lr=params["leak"], W=est.float_w_,
                           Win=est.float_w_in_, input_dim=len(mean), seed=0)
            rp.run(norm[0][:1])            # initialises the node (reset needs a state)

            def states(u):
                rp.reset()                 # each recording from the zero state, as hopwise's
                return np.concatenate([rp.run(u), u], axis=1)
            feats = [states(u) for u in norm]
            y = np.concatenate([[labels.index(v) for v in r.labels] for r in tr])
            ridge = Ridge(alpha=params["ridge_alpha"]).fit(
                np.concatenate(feats), np.eye(len(labels))[y],
                sample_weight=esn.class_weights(y, len(labels), params["class_balance"]))
            fit_s["reservoirpy"].append(time.perf_counter() - t0)
            for i in test:
                s = ridge.predict(states((recs[i].frames - mean) / std))
                preds["reservoirpy"][i] = lab[np.argmax(s, 1)]
    # cost per step on one recording's frames, 400 neurons (the profile's grid)
    u_f = np.concatenate([r.frames for r in recs[:5]])
    u_norm = (u_f - est.mean_) / est.std_
    u_q = esn.normalise_frames(u_f, est.mean_, 1.0 / est.std_)[1]
    x, out = np.zeros(est.reservoir_.n_neurons, np.int16), np.zeros(est.reservoir_.n_neurons, np.int16)
    steps["hopwise"] = _time_per_step(lambda u: esn.step(est.reservoir_, x, u, out), u_q)
    steps["original"] = _time_per_step(orig.step, u_norm)
    if "reservoirpy" in preds:
        steps["reservoirpy"] = _time_per_step(rp.step, u_norm)
    table = {}
    for name, p in preds.items():
        m = tesn.frame_metrics(truth, np.concatenate(p), labels)
        votes = [tesn.recording_vote(pi, r.labels) for pi, r in zip(p, recs)]
        table[name] = {"nonsilent_accuracy": round(m["nonsilent_accuracy"], 4),
                       "silent_accuracy": round(m["silent_accuracy"], 4),
                       "recording_accuracy": round(float(np.mean(
                           [v == r.label for v, r in zip(votes, recs)])), 4),
                       "fit_s": round(float(np.mean(fit_s[name])), 3),
                       "step_us": round(steps[name], 2)}
    table["original"]["memory_frames"] = tesn.memory_frames([orig.states((r.frames - mean) / std)
                                                             for r in recs])
    table["hopwise"]["memory_frames"] = tesn.memory_frames(est.states([r.frames for r in recs]))
    return {"recordings": len(recs), "folds": len(folds), "neurons": int(est.reservoir_.n_neurons),
            "peers": table}


def main(argv=None) -> int:
    from device.config import add_profile_arguments, config_from_args
    from device.paths import BuildPaths
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_esn",
                                     description="hopwise's ESN, the original design and "
                                                 "reservoirpy on the same split")
    add_profile_arguments(parser, "model.esn.grid_width=20")
    parser.add_argument("--json", action="store_true", help="write build/reports/esn_peers_<profile>.json")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    result = compare(cfg, int(cfg["model.esn.cv_folds"]))
    print(f"{result['recordings']} recordings, {result['folds']}-fold CV by recording, "
          f"{result['neurons']} neurons")
    print(f"{'':12s} {'non-silent':>10s} {'silent':>7s} {'recordings':>10s} {'fit s':>6s} "
          f"{'step us':>8s} {'memory':>6s}")
    for name, r in result["peers"].items():
        print(f"{name:12s} {r['nonsilent_accuracy']:10.3f} {r['silent_accuracy']:7.3f} "
              f"{r['recording_accuracy']:10.3f} {r['fit_s']:6.2f} {r['step_us']:8.1f} "
              f"{r.get('memory_frames', float('nan')):6.1f}")
    if args.json:
        out = BuildPaths(cfg).report(f"esn_peers_{BuildPaths(cfg).profile}.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
