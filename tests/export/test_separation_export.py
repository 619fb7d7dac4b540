"""export.separation and the device side: the exported separator, offline and streaming.

One tiny DANet (tests/export/tiny_separation.py) is trained and exported once per module;
the streaming tests then run it through the device's runner with no TensorFlow in the path.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.frontend import STFTConfig
from device.resample import resample
from device.separation import Separator, SeparatorStream, StreamingISTFT
from tests.export.tiny_separation import easy_sources, train_tiny

pytestmark = pytest.mark.needs_tf

# Streaming must give offline separation's samples: the same frames, chunks and masks, only
# the overlap-add order differs. Stated tolerance: 1e-5 absolute on audio of RMS ~0.07.
STREAM_ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from export.separation import export_variant
    from device.paths import BuildPaths
    root = tmp_path_factory.mktemp("build")
    cfg, _ = train_tiny(root)
    paths = BuildPaths(cfg)
    f16 = export_variant(cfg, "lstm32", paths.resolve(cfg["model.separation.model"]), "float16")
    i8 = export_variant(cfg, "lstm32", paths.variant_export("separation_lstm32_int8", ".tflite"),
                        "int8")
    return cfg, f16, i8


def test_export_writes_a_manifest_the_device_runner_accepts(exported):
    cfg, f16, i8 = exported
    sep = Separator.from_config(cfg)
    assert sep.labels == ["speech", "sound"] and sep.chunk_frames == 20
    man = json.loads(sep.model.path.with_suffix(".json").read_text())
    assert man["quantization"] == "float16" and man["outputs"][0]["shape"] == [1, 20, 129, 2]
    assert len(man["attractors"]) == 2 and len(man["attractors"][0]) == 4
    # float16 weights, float32 arithmetic: masks as Keras' to ~1e-3; int8 within a few steps
    assert f16["max_abs_mask_diff"] < 5e-3
    assert i8["mean_abs_mask_diff"] < 0.05
    assert Separator(i8["tflite"]).model.input_dtype == np.int8


def test_offline_separation_sums_back_to_the_mixture(exported):
    cfg, _, _ = exported
    sep = Separator.from_config(cfg)
    mix = easy_sources(7).sum(0)
    est = sep.separate(mix)
    assert est.shape == (2, len(mix))
    # the masks sum to 1 over the sources, and the STFT inverts exactly: so do the estimates
    np.testing.assert_allclose(est.sum(0), mix, atol=1e-4)


def test_streaming_istft_matches_the_offline_inverse():
    from device.frontend import istft, stft
    cfg = STFTConfig()
    x = np.random.default_rng(1).standard_normal(3000).astype(np.float32) * 0.1
    spec = stft(x, cfg)
    inv = StreamingISTFT(cfg)
    out = np.concatenate([inv.push(spec[i:i + 7]) for i in range(0, len(spec), 7)])
    ref = istft(spec, cfg)
    n = min(len(out), len(ref))
    assert n >= len(x) - cfg.window_length
    np.testing.assert_allclose(out[:n], ref[:n], atol=1e-6)


@pytest.mark.parametrize("block,background", [(80, False), (64, False), (333, False),
                                              (80, True), (2000, True)])
def test_streaming_separation_matches_offline_within_tolerance(exported, block, background):
    cfg, _, _ = exported
    sep = Separator.from_config(cfg)
    x = np.concatenate([easy_sources(s).sum(0) for s in (11, 12)])   # 1.2 s
    offline = sep.separate(x)[0]
    # "wait": pushed faster than real time, the worker must not be skipped here
    stream = SeparatorStream(sep, keep="speech", background=background, worker_ms=40.0,
                             when_behind="wait")
    out = np.concatenate([stream.push(x[i:i + block]) for i in range(0, len(x), block)])
    stream.close()
    assert len(out) == len(x)
    d = stream.delay_samples
    assert d == 20 * 64 + 256 + (320 if background else 0)
    assert np.all(out[:d - stream.cfg.window_length] == 0)   # nothing before the first chunk
    # every sample of a complete chunk has come out: compare those
    n = stream.chunks_run * sep.chunk_frames * stream.cfg.hop_length - 192
    n = min(n, len(x) - d)
    assert n > 0.5 * len(x) - d
    np.testing.assert_allclose(out[d:d + n], offline[:n], atol=STREAM_ATOL)
    assert stream.chunks_passed == 0


def test_the_worker_gives_the_foreground_samples_delayed_by_worker_ms(exported):
    cfg, _, _ = exported
    x = np.concatenate([easy_sources(s).sum(0) for s in (13, 14)])
    outs = {}
    for background in (False, True):
        stream = SeparatorStream(Separator.from_config(cfg), keep="speech",
                                 background=background, worker_ms=40.0, when_behind="wait")
        outs[background] = np.concatenate([stream.push(x[i:i + 80])
                                           for i in range(0, len(x), 80)])
        stream.close()
    shift = 320   # 40 ms at 8 kHz
    assert np.abs(outs[False]).max() > 0.01
    # the same arithmetic on another thread: the same samples, bit for bit, 40 ms later
    np.testing.assert_array_equal(outs[True][shift:], outs[False][:-shift])


def test_a_late_worker_passes_its_chunk_through_unseparated_counted_and_logged(exported,
                                                                               caplog):
    import threading
    cfg, _, _ = exported
    sep = Separator.from_config(cfg)
    x = np.concatenate([easy_sources(s).sum(0) for s in (15, 16)])   # 1.2 s, 7 chunks of 1280
    offline = sep.separate(x)[0]
    # A test double for a busy core: the real model, but its second chunk's call blocks until
    # the test lets it go (nothing else here can make LiteRT slow on demand).
    gate, entered, calls, real = threading.Event(), threading.Event(), [], sep.chunk_masks

    def gated(chunk):
        calls.append(1)
        if len(calls) == 2:
            entered.set()
            gate.wait(10)
        return real(chunk)

    sep.chunk_masks = gated
    # Pushed faster than real time, so "wait" for every chunk but the gated one: only that
    # chunk is late, whatever the load on this machine.
    stream = SeparatorStream(sep, keep="speech", background=True, worker_ms=40.0,
                             when_behind="wait")
    out = []
    with caplog.at_level("WARNING", logger="hopwise.separator"):
        for i in range(0, len(x), 80):
            out.append(stream.push(x[i:i + 80]))
            if stream.chunks_run == 2 and not gate.is_set() and stream.when_behind == "wait":
                # chunk 1 was just handed over, its deadline 4 pushes away
                assert entered.wait(10)        # the worker is stuck in it
                stream.when_behind = "pass"
            if stream.chunks_passed and not gate.is_set():
                gate.set()
                stream.when_behind = "wait"
    stream.close()
    out = np.concatenate(out)
    assert stream.chunks_passed == 1
    assert any("chunk 1 passed through unseparated" in r.getMessage() for r in caplog.records)
    d, chunk, win = stream.delay_samples, 1280, 256
    est = out[d:]
    # chunk 0 separated; chunk 1 (its interior: no frame of another chunk overlaps) is the
    # mixture itself; chunks 2.. separated again
    sl0, sl1, sl2 = slice(0, chunk - win), slice(chunk + win, 2 * chunk - win), \
        slice(2 * chunk + win, 4 * chunk)
    np.testing.assert_allclose(est[sl0], offline[sl0], atol=STREAM_ATOL)
    np.testing.assert_allclose(est[sl1], x[sl1], atol=1e-5)
    assert np.abs(offline[sl1] - x[sl1]).max() > 0.01   # (separation would have changed it)
    np.testing.assert_allclose(est[sl2], offline[sl2], atol=STREAM_ATOL)


def test_worker_settings_are_checked(exported):
    cfg, _, _ = exported
    sep = Separator.from_config(cfg)
    with pytest.raises(ValueError, match="worker_ms"):
        SeparatorStream(sep, background=True, worker_ms=500.0)   # more than the 160 ms chunk
    with pytest.raises(ValueError, match="when_behind"):
        SeparatorStream(sep, when_behind="skip")


def test_the_separator_stage_feeds_the_keyword_frontend_in_a_pipeline(exported):
    from device.config import load_config
    from device.pipeline import Pipeline
    from device.stages.base import HopContext
    cfg, _, _ = exported
    cfg = load_config("separated", [f"project.build_dir='{cfg.build_dir}'",
                                    *[f"{k}" for k in _tiny_overrides()],
                                    "stages.separator.background=true",
                                    "stages.separator.worker_ms=40",
                                    # pushed faster than real time: wait for the worker
                                    "stages.separator.when_behind=wait"])
    pipe = Pipeline.from_config(cfg, stage_names=["separator", "frontend"], keep_events=True)
    separator, frontend = pipe.stages
    assert frontend.describe()["consumes"] == ["audio.separated"]
    x16 = resample(np.concatenate([easy_sources(s).sum(0) for s in (3, 4, 5)]), 8000, 16000)
    pipe.push(x16)
    assert separator.stream.chunks_run >= 4 and frontend.frames_total > 100
    # its status: the delay (a 20-frame chunk + the window + worker_ms) and nothing passed
    info = separator.describe()
    assert info["delay_ms"] == pytest.approx((20 * 64 + 256) / 8 + 40)
    assert info["chunks_passed"] == 0 and info["chunks_run"] == separator.stream.chunks_run
    pipe.close()
    # the stage's output is the offline separation of the same (resampled) audio, delayed
    stage = type(separator)("sep2", dict(cfg.section("stages.separator")), cfg, 16000, 0.01)
    out = []
    for i in range(0, len(x16), 160):
        ctx = HopContext(i // 160, 0.0, x16[i:i + 160])
        stage.process(ctx)
        out.append(ctx.data["audio.separated"])
    out = np.concatenate(out)
    from device.resample import Resampler
    x8 = Resampler(16000, 8000, cfg["resample.stage_quality"])(x16)
    offline = stage.separator.separate(x8)[0]
    d = stage.stream.delay_samples
    stage.close()
    n = min(len(out), len(offline) + d) - d - 2000
    np.testing.assert_allclose(out[d:d + n], offline[:n], atol=STREAM_ATOL)


def test_device_separate_writes_one_file_per_source(exported, tmp_path, capsys):
    import soundfile as sf
    from device.__main__ import main
    cfg, _, _ = exported
    wav = tmp_path / "mix.wav"
    sf.write(str(wav), resample(easy_sources(9).sum(0), 8000, 16000), 16000)
    args = ["separate", str(wav), "--out", str(tmp_path / "out"),
            "--set", f"project.build_dir={cfg.build_dir}"]
    for o in _tiny_overrides():
        args += ["--set", o]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [p.rsplit(".", 2)[-2] for p in report["sources"]] == ["speech", "sound"]
    for p in report["sources"]:
        audio, rate = sf.read(p)
        assert rate == 8000 and abs(len(audio) - 4800) <= 1
    assert main(["separate", str(tmp_path / "missing.wav")]) == 2


def _tiny_overrides():
    from tests.export.tiny_separation import OVERRIDES
    return OVERRIDES


def test_the_evaluation_table_has_oracle_mixture_and_model_rows(exported):
    pytest.importorskip("mir_eval")
    from device.paths import BuildPaths
    from evaluation.separation import evaluate, markdown
    cfg, _, _ = exported
    sources = easy_sources(31, seconds=0.5)
    mixtures = [{"sources": sources, "mixture": sources.sum(0), "files": ["tone", "noise"]}]
    model = BuildPaths(cfg).resolve(cfg["model.separation.model"])
    result = evaluate(cfg, mixtures, [model], progress=False)
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows)[:3] == ["mixture", "oracle IBM", "oracle IRM"]
    assert rows["mixture"]["gnsdr"] == 0.0
    ours = rows["lstm32 (float16)"]
    assert ours["params"] > 0 and ours["size_bytes"] > 0 and 0 < ours["rtf_one_core"] < 1
    # the tiny model separates the easy pair, and no mask beats the oracle by much
    assert 0 < ours["gnsdr"] < rows["oracle IBM"]["gnsdr"] + 1.0
    assert "| oracle IBM |" in markdown(result, "t")
