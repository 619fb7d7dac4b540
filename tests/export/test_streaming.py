"""The streaming keyword model (export/streaming.py) and running it on the device.

A tiny multitask model is trained for a few steps (tests/export/tiny.py) and exported both ways:
the non-streaming int8 reference and the streaming int8 model (new frames in, state as int8
resource variables). Checked here:

* the float streaming network is *exactly* the trained trunk run over the whole stream (its
  right edge zero-padded as the reference pads it), on random and on real audio: the row
  bookkeeping is right;
* the int8 streaming model against the int8 reference on the same audio, within the stated
  tolerance (they differ on the window's first rows: real history where the reference pads
  with zeros, plus int8 rounding);
* in the pipeline: block processing gives the same events at the same times as hop by hop, and
  an overrun gap (``on_gap``) or skipped calls rebuild the state from the window.
"""
from __future__ import annotations

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig, log_mel
from device.interpreter import TFLiteModel
from device.paths import BuildPaths

pytest.importorskip("tensorflow")

from export.streaming import (StreamingTrunk, compare, export_streaming, fold_trunk,  # noqa: E402
                              plan_layer, stream_features)
from tests.export.tiny import train_and_export  # noqa: E402
from train import multitask as mt  # noqa: E402

# The tolerance the streaming model is held to against the non-streaming one (int8 both), over
# every 40 ms call of a stream: mean absolute probability difference and argmax agreement.
MEAN_ABS_TOLERANCE = 0.05
AGREEMENT_TOLERANCE = 0.8


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg, data, ref_path, _ = train_and_export(tmp_path_factory.mktemp("stream"),
                                              "model.multitask.epochs=2", onnx=False)
    path = BuildPaths(cfg).deployed_model("multitask_stream")
    summary = export_streaming(cfg, "mt60j", path, ref_path, 4, calibration_streams=6)
    return cfg, ref_path, path, summary


def _real_features(shared_data, cfg, seconds: float = 6.0) -> np.ndarray:
    """Raw log-mel of real recordings end to end (speech, a wake word, noise)."""
    import soundfile as sf
    from device.resample import resample
    files = (sorted((shared_data / "wake_words" / "computer").glob("*.flac"))[:2]
             + sorted((shared_data / "background_noise").glob("*.wav"))[:1])
    parts = []
    for f in files:
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        parts.append(resample(x.mean(1), rate, 16000)[:int(2 * 16000)])
    audio = np.concatenate(parts)[:int(seconds * 16000)]
    return log_mel(audio, LogMelConfig.from_config(cfg, "keyword"))


def test_plan_refuses_a_stride_that_is_not_whole_rows():
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_layer(98, 10, 2, 3, 0)


def _trunk_over_stream(model, feats_norm: np.ndarray, frames_fed: int, pool_rows: int):
    """The trained network run over the whole stream so far (zero-padded at both ends, as the
    reference pads its window) with the global pool over the last ``pool_rows`` rows: what the
    streaming model computes. Two leading zero frames put the stream on the window's grid."""
    import keras
    cfg_layers = {layer.name: layer for layer in model.layers}
    blocks = sum(1 for n in cfg_layers if n.endswith("_dw") and n.startswith("b"))
    long = mt.build_model(len(cfg_layers["keyword"].get_weights()[1]),
                          len(cfg_layers["scene"].get_weights()[1]),
                          width=cfg_layers["stem"].get_weights()[0].shape[-1], blocks=blocks,
                          input_frames=None, n_mels=feats_norm.shape[1], dropout=0.0)
    long.set_weights(model.get_weights())
    last = f"b{blocks - 1}_add" if blocks > 1 else "b0_pw_relu"
    trunk = keras.Model(long.input, long.get_layer(last).output)
    x = np.concatenate([np.zeros((2, feats_norm.shape[1]), np.float32), feats_norm[:frames_fed]])
    rows = trunk(x[None, ..., None]).numpy()[0]
    pooled = rows[-pool_rows:].mean(axis=(0, 1))
    out = {}
    for head in ("keyword", "scene"):
        w, b = cfg_layers[head].get_weights()
        z = pooled @ w + b
        p = np.exp(z - z.max())
        out[head] = p / p.sum()
    return out


@pytest.mark.parametrize("audio", ["random", "real"])
def test_float_streaming_is_the_trunk_over_the_whole_stream(exported, shared_data, audio):
    cfg, _, _, _ = exported
    model, normalizer, _ = mt.load_trained(cfg, "mt60j")
    net = StreamingTrunk(fold_trunk(model), 4)
    if audio == "random":
        raw = np.random.default_rng(0).normal(-8, 3, (400, 40)).astype(np.float32)
    else:
        raw = _real_features(shared_data, cfg)
    feats = normalizer(raw)
    net.reset()
    outs = stream_features(net.step, feats, 4)
    pool_rows = net.pool_rows
    checked = 0
    for call in range(40, len(outs), 9):
        ref = _trunk_over_stream(model, feats, 4 * (call + 1), pool_rows)
        for head in ("keyword", "scene"):
            np.testing.assert_allclose(outs[call][head], ref[head], atol=2e-5)
        checked += 1
    assert checked >= 3


def test_int8_streaming_matches_the_reference_within_tolerance(exported, shared_data):
    cfg, ref_path, path, summary = exported
    section = cfg.section("frontend.keyword")
    stream_model = TFLiteModel(path, frontend=section)
    reference = TFLiteModel(ref_path, frontend=section)
    assert stream_model.streaming and stream_model.frames == 4 and reference.frames == 98
    assert summary["vs_reference"]["keyword"]["argmax_agreement"] >= AGREEMENT_TOLERANCE
    for raw in (np.random.default_rng(1).normal(-8, 3, (300, 40)).astype(np.float32),
                _real_features(shared_data, cfg)):
        result = compare(stream_model, reference, raw)
        for head, r in result.items():
            assert r["calls"] >= 40
            assert r["mean_abs_prob_diff"] <= MEAN_ABS_TOLERANCE, (head, r)
            assert r["argmax_agreement"] >= AGREEMENT_TOLERANCE, (head, r)


def test_state_lives_in_the_model_and_resets_to_silence(exported):
    cfg, _, path, _ = exported
    model = TFLiteModel(path, frontend=cfg.section("frontend.keyword"))
    loud = np.random.default_rng(2).normal(-2, 3, (4, 40)).astype(np.float32)
    quiet = model._silence
    model.reset_state()
    after_silence = model.run(quiet)
    for _ in range(10):
        model.run(loud)
    remembers = model.run(quiet)
    assert any(not np.allclose(after_silence[h], remembers[h]) for h in after_silence), \
        "the model's output after loud frames equals its output after silence: no state"
    model.reset_state()
    again = model.run(quiet)
    for h in after_silence:
        np.testing.assert_array_equal(after_silence[h], again[h])


class _Tap:
    """Built lazily (device.stages imports the registry): records ``posteriors.keyword`` and,
    with it, the feature window the model stage read on that hop."""

    @staticmethod
    def make(cfg, pipe):
        from device.stages import Stage

        class Tap(Stage):
            type_name = "test_tap"

            def __init__(self):
                super().__init__("tap", {}, cfg, pipe.rate, pipe.hop_s)
                self.consumes = ("posteriors.keyword", "features.keyword")
                self.records = []
                self.windows = []

            def process(self, ctx):
                if "posteriors.keyword" in ctx.fresh:
                    t, p = ctx.data["posteriors.keyword"]
                    self.records.append((t, np.array(p, np.float32)))
                    self.windows.append(np.array(ctx.data["features.keyword"], np.float32))
        return Tap()


def _pipeline(cfg, model_path, *overrides):
    from device.pipeline import Pipeline
    c = load_config("default", [f"project.build_dir='{cfg['project.build_dir']}'",
                                f"stages.multitask.model={model_path}",
                                'pipeline.stages=["frontend", "multitask", "keywords", "scenes"]',
                                # no smoothing, a short refractory, low scene thresholds:
                                # more events to compare
                                "decisions.refractory_ms=300", "decisions.smoothing_ms=10", "decisions.scene_smoothing_ms=200",
                                "decisions.scene_threshold_on=0.12",
                                "decisions.scene_threshold_off=0.11", *overrides])
    built = Pipeline.from_config(c, shedding=False)
    tap = _Tap.make(c, built)
    return Pipeline(built.stages + [tap], built.settings, keep_events=True), tap


def _words(events):
    return [(e["type"], e["label"], e["t_audio_s"]) for e in events if e["type"] != "status"]


@pytest.mark.parametrize("which", ["streaming", "reference"])
def test_block_processing_gives_the_same_events_at_the_same_times(exported, shared_data, which):
    import soundfile as sf
    from device.resample import resample
    cfg, ref_path, path, _ = exported
    model = path if which == "streaming" else ref_path
    files = sorted((shared_data / "wake_words" / "computer").glob("*.flac"))[:3]
    audio = np.concatenate([resample(sf.read(f, dtype="float32", always_2d=True)[0].mean(1),
                                     sf.info(f).samplerate, 16000) for f in files])
    # A tiny model is unsure of everything: a wake threshold at the median of its wake score
    # makes it cross often, so there are events to compare.
    probe, probe_tap = _pipeline(cfg, model)
    probe.push(audio)
    wake = probe.stages[0].cfg.keyword_labels.index(probe.stages[0].cfg["labels.wake_word"])
    median = float(np.median([p[wake] for _, p in probe_tap.records]))
    at = [f"decisions.wake_threshold={median}", f"decisions.command_threshold={median}"]
    hop_pipe, hop_tap = _pipeline(cfg, model, "pipeline.block_hops=1", *at)
    block_pipe, block_tap = _pipeline(cfg, model, "pipeline.block_hops=10", *at)
    rng = np.random.default_rng(3)
    for pipe in (hop_pipe, block_pipe):
        i = 0
        while i < len(audio):  # uneven pushes: blocks of 1-25 hops plus remainders
            n = int(rng.integers(100, 4000))
            pipe.push(audio[i:i + n])
            i += n
    # the tap reads the features on every hop: the frontend runs on every hop that completes
    # a frame, all but the first two (before its 25 ms window is full)
    assert block_pipe.budget.stage_stats["frontend"].count == hop_pipe.hops - 2
    assert _words(block_pipe.events) == _words(hop_pipe.events)
    assert len(_words(block_pipe.events)) >= 5, "too few events: the comparison says little"
    assert [t for t, _ in block_tap.records] == [t for t, _ in hop_tap.records]
    np.testing.assert_allclose(np.stack([p for _, p in block_tap.records]),
                               np.stack([p for _, p in hop_tap.records]), atol=1e-6)


@pytest.mark.parametrize("block_hops", [4, 10])
def test_in_blocks_the_frontend_runs_only_for_the_model_and_the_outputs_stay(exported, shared_data,
                                                                             block_hops):
    """With no other reader of its features, the frontend in blocks runs only on the model's
    hops (every 4th), putting the frames of the hops between then: the model must get the same
    frames, so the same posteriors at the same times as hop by hop, on real audio."""
    import soundfile as sf
    from device.pipeline import Pipeline
    from device.resample import resample
    cfg, _, path, _ = exported
    files = sorted((shared_data / "wake_words" / "computer").glob("*.flac"))[:2]
    audio = np.concatenate([resample(sf.read(f, dtype="float32", always_2d=True)[0].mean(1),
                                     sf.info(f).samplerate, 16000) for f in files])

    def run(block):
        c = load_config("default", [f"project.build_dir='{cfg['project.build_dir']}'",
                                    f"stages.multitask.model={path}", f"pipeline.block_hops={block}",
                                    'pipeline.stages=["frontend", "multitask", "keywords", "scenes"]'])
        pipe = Pipeline.from_config(c, shedding=False)
        model = next(s for s in pipe.stages if s.name == "multitask")
        records, process = [], model.process

        def tapped(ctx):
            process(ctx)
            t, p = ctx.data["posteriors.keyword"]
            records.append((t, np.array(p, np.float32)))
        model.process = tapped
        pipe.push(audio)
        return pipe, records

    hop_pipe, by_hop = run(1)
    block_pipe, by_block = run(block_hops)
    stats = block_pipe.budget.stage_stats
    # (+1: the stream's last, partial block has no model hop; a block's cost is timed on one hop)
    assert stats["multitask"].count == len(by_block) >= 40
    assert len(by_block) <= stats["frontend"].count <= len(by_block) + 1
    assert hop_pipe.budget.stage_stats["frontend"].count == hop_pipe.hops
    assert [t for t, _ in by_block] == [t for t, _ in by_hop]
    assert np.array_equal(np.stack([p for _, p in by_block]), np.stack([p for _, p in by_hop]))


def _replay(model, windows, rebuild_at=(0,)):
    """A fresh streaming model's keyword outputs over the windows the stage read: the state
    rebuilt from the window (`run_window`: silence, then its frames) at the calls in
    ``rebuild_at``, else carried on with the newest stride of frames."""
    out = []
    for i, window in enumerate(windows):
        if i in rebuild_at:
            out.append(model.run_window(window[-96:])["keyword"])
        else:
            out.append(model.run(window[-model.frames:])["keyword"])
    return out


def test_a_gap_or_skipped_calls_rebuild_the_state_from_the_window(exported):
    cfg, _, path, _ = exported
    pipe, tap = _pipeline(cfg, path)
    stage = next(s for s in pipe.stages if s.name == "multitask")
    fresh = TFLiteModel(path, frontend=cfg.section("frontend.keyword"))
    rng = np.random.default_rng(4)

    def noise(scale, n):
        return (scale * rng.standard_normal(n)).astype(np.float32)

    def outputs(start):
        return [p for _, p in tap.records[start:]]

    # Loud, then an overrun gap, then quiet: the state carried from the loud audio differs from
    # one rebuilt from the window, so a stage that ignored the gap would answer otherwise.
    pipe.push(noise(0.5, 16000 * 2))
    before = len(tap.records)
    np.testing.assert_array_equal(outputs(0), _replay(fresh, tap.windows))   # the replay is exact
    stage.on_gap()
    pipe.push(noise(0.003, 16000))
    rebuilt = _replay(fresh, tap.windows, rebuild_at=(0, before))
    carried = _replay(fresh, tap.windows)
    np.testing.assert_array_equal(outputs(before), rebuilt[before:])
    assert any(not np.array_equal(a, b) for a, b in zip(rebuilt[before:], carried[before:])), \
        "a carried state answers as a rebuilt one here: the check above could not fail"
    # A stage shed for a while (calls skipped) resyncs the same way on its next call.
    pipe.budget.shed.add("multitask")
    pipe.push(noise(0.5, 1600))
    pipe.budget.shed.discard("multitask")
    resumed = len(tap.records)
    pipe.push(noise(0.003, 3200))
    replay = _replay(fresh, tap.windows, rebuild_at=(0, before, resumed))
    np.testing.assert_array_equal(outputs(resumed), replay[resumed:])


# --------------------------------------------------------------------------- conversion is robust
def _int8_vs_float(tflite: bytes, net, feats: np.ndarray) -> tuple[float, float]:
    """(mean abs. keyword probability difference, argmax agreement) of the converted model
    against the float network it came from, call by call on the same normalised stream."""
    from device.interpreter import load_interpreter
    interp = load_interpreter("converted", content=tflite)
    inp = interp.get_input_details()[0]
    scale, zero = inp["quantization"]
    outs = {d["shape"][-1]: d for d in interp.get_output_details()}
    kw = outs[len(net.trunk.heads["keyword"][1])]
    k_scale, k_zero = kw["quantization"]
    net.reset()
    n = net.new_frames
    got, want = [], []
    for start in range(0, len(feats) - n + 1, n):
        x = feats[start:start + n][None, :, :, None]
        q = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        got.append((interp.get_tensor(kw["index"])[0].astype(np.float32) - k_zero) * k_scale)
        want.append(np.asarray(net.step(x.astype(np.float32))["keyword"])[0])
    got, want = np.asarray(got), np.asarray(want)
    return float(np.abs(got - want).mean()), float(np.mean(got.argmax(1) == want.argmax(1)))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_architecture_converts_whatever_its_weights(seed):
    """The default trunk (width 48, 4 blocks) with random weights and batch-norm statistics away
    from the identity: before the one-concatenation-per-stream construction, 4 of 4 such trunks
    (and the 2026-12-03 default build) failed to convert ("tfl.concatenation ... same scale
    constraint"), because a tensor entering two concatenations tied their calibrated scales."""
    import keras
    from export.streaming import convert_streaming_int8
    keras.utils.set_random_seed(seed)
    model = mt.build_model(13, 10, width=48, blocks=4, input_frames=98, n_mels=40, dropout=0.0)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    net = StreamingTrunk(fold_trunk(model), 4)
    streams = [rng.normal(0, 1, (294, 40)).astype(np.float32) for _ in range(4)]
    tflite = convert_streaming_int8(net, streams, np.full(40, -2.0, np.float32))
    mean_diff, agreement = _int8_vs_float(tflite, net, rng.normal(0, 1, (400, 40)).astype(np.float32))
    assert mean_diff <= MEAN_ABS_TOLERANCE and agreement >= AGREEMENT_TOLERANCE, (mean_diff, agreement)


def test_a_model_trained_with_another_seed_exports_and_matches(tmp_path, shared_data):
    cfg, _, ref_path, _ = train_and_export(tmp_path, "model.multitask.epochs=2", "project.seed=99",
                                           onnx=False)
    path = BuildPaths(cfg).deployed_model("multitask_stream")
    summary = export_streaming(cfg, "mt60j", path, ref_path, 4, calibration_streams=6)
    assert summary["vs_reference"]["keyword"]["argmax_agreement"] >= AGREEMENT_TOLERANCE
    section = cfg.section("frontend.keyword")
    result = compare(TFLiteModel(path, frontend=section), TFLiteModel(ref_path, frontend=section),
                     _real_features(shared_data, cfg))
    for head, r in result.items():
        assert r["mean_abs_prob_diff"] <= MEAN_ABS_TOLERANCE, (head, r)
        assert r["argmax_agreement"] >= AGREEMENT_TOLERANCE, (head, r)


def test_make_export_survives_a_failed_conversion_in_one_line(exported, monkeypatch, capsys):
    """`make export` runs ``export.streaming --warn-on-failure``: a failure is one warning line,
    exit 0, and no stale streaming model is left beside the new reference. No real model fails
    to convert any more, so the converter's failure is simulated (the one mock here)."""
    import export.streaming as streaming
    cfg, ref_path, path, _ = exported
    args = ["--profile", "default", "--set", f"project.build_dir='{cfg['project.build_dir']}'"]
    stale = {p: p.read_bytes() for p in (path, path.with_suffix(".json"))}

    def fails(*_a, **_k):
        raise RuntimeError("loc(\"concat_12\"): error: 'tfl.concatenation' op quantization "
                           "parameters violate the same scale constraint\nmore lines")
    monkeypatch.setattr(streaming, "convert_streaming_int8", fails)
    with pytest.raises(RuntimeError, match="same scale"):
        streaming.main(args)                      # alone (make export-streaming): it fails loudly
    assert streaming.main([*args, "--warn-on-failure"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "export.streaming" in line]
    assert len(err) == 1 and "WARNING: no streaming model" in err[0] and "same scale" in err[0]
    assert ref_path.name in err[0] and "more lines" not in err[0]
    assert not path.exists() and not path.with_suffix(".json").exists()
    for p, content in stale.items():   # the module's other tests use the exported model
        p.write_bytes(content)


def test_the_export_refuses_a_streaming_model_that_disagrees_with_the_reference():
    from export.streaming import check_agreement
    check_agreement({"vs_reference": {"keyword": {"argmax_agreement": 0.93}}}, 0.8)
    with pytest.raises(ValueError, match="min_agreement"):
        check_agreement({"vs_reference": {"keyword": {"argmax_agreement": 0.6}}}, 0.8)
