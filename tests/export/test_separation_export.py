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
    stream = SeparatorStream(sep, keep="speech", background=background)
    out = np.concatenate([stream.push(x[i:i + block]) for i in range(0, len(x), block)])
    stream.close()
    assert len(out) == len(x)
    d = stream.delay_samples
    assert np.all(out[:d - stream.cfg.window_length] == 0)   # nothing before the first chunk
    # every sample of a complete chunk has come out: compare those
    n = stream.chunks_run * sep.chunk_frames * stream.cfg.hop_length - 192
    n = min(n, len(x) - d)
    assert n > 0.5 * len(x) - d
    np.testing.assert_allclose(out[d:d + n], offline[:n], atol=STREAM_ATOL)


def test_the_separator_stage_feeds_the_keyword_frontend_in_a_pipeline(exported):
    from device.config import load_config
    from device.pipeline import Pipeline
    from device.stages.base import HopContext
    cfg, _, _ = exported
    cfg = load_config("separated", [f"project.build_dir='{cfg.build_dir}'",
                                    *[f"{k}" for k in _tiny_overrides()],
                                    "stages.separator.background=true"])
    pipe = Pipeline.from_config(cfg, stage_names=["separator", "frontend"], keep_events=True)
    separator, frontend = pipe.stages
    assert frontend.describe()["consumes"] == ["audio.separated"]
    x16 = resample(np.concatenate([easy_sources(s).sum(0) for s in (3, 4, 5)]), 8000, 16000)
    pipe.push(x16)
    assert separator.stream.chunks_run >= 4 and frontend.frames_total > 100
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
