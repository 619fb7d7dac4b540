"""Export of the multitask network: a tiny model trained for a few steps converts to a valid
full-integer int8 TFLite whose outputs track the float model, with a manifest that round-trips
and a hash that refuses a tampered file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.frontend import LogMelConfig
from device.interpreter import TFLiteModel, load_interpreter
from device.manifest import ManifestError, load_manifest, verify_model
from export.convert import output_heads
from tests.export.tiny import TINY_MODEL, train_and_export
from train import multitask as mt
from train.features import Normalizer


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return train_and_export(tmp_path_factory.mktemp("export"), "model.multitask.epochs=8",
                            "model.multitask.examples_per_clip=3",
                            "model.multitask.learning_rate=0.01",
                            "model.multitask.augment.noise_prob=0.0")


def test_int8_model_is_full_integer_with_named_outputs(exported):
    cfg, _, path, summary = exported
    it = load_interpreter(path)
    inp = it.get_input_details()[0]
    assert list(inp["shape"]) == [1, 98, 40, 1] and inp["dtype"] == np.int8
    assert all(d["dtype"] == np.int8 for d in it.get_output_details())
    omap = output_heads(it)
    assert omap["keyword"]["shape"] == [1, 13] and omap["scene"]["shape"] == [1, 10]
    assert sorted(o["index"] for o in omap.values()) == [0, 1]
    assert summary["size_bytes"] < 100_000


def test_int8_tracks_float(exported):
    cfg, data, path, _ = exported
    model, normalizer, _ = mt.load_trained(cfg, "mt60j")
    lm = LogMelConfig.from_config(cfg, "keyword")
    # realistic inputs: held-back mixtures drawn the way training draws them
    feats, _, _ = mt.draw_examples(data, mt.variants(cfg)["mt60j"], 96,
                                   np.random.default_rng(99), lm, None)
    f = mt.predict(model, feats, normalizer)
    q = TFLiteModel(path).predict(feats)
    for head in ("keyword", "scene"):
        # Probabilities sit on an int8 grid of 1/256: where the float model's top two classes
        # are closer than a few steps, either answer is within quantisation noise.
        top2 = np.sort(f[head], axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > 0.03
        agree = np.mean(f[head].argmax(1)[decided] == q[head].argmax(1)[decided])
        mean_err = float(np.abs(f[head] - q[head]).mean())
        print(head, "decided", decided.sum(), "agreement", agree, "mean |p_float - p_int8|", mean_err)
        assert decided.sum() >= 10, "the tiny model did not learn enough to compare decisions"
        assert agree >= 0.9, (head, agree)
        assert mean_err <= 0.02, (head, mean_err)


def test_manifest_round_trip(exported):
    cfg, _, path, _ = exported
    manifest = verify_model(path, expected_labels={"keyword": cfg.keyword_labels,
                                                   "scene": cfg["labels.scenes"]},
                            frontend=cfg.section("frontend.keyword"))
    assert manifest["frontend"]["name"] == "keyword"
    assert manifest["input"]["dtype"] == "int8" and manifest["input"]["shape"] == [1, 98, 40, 1]
    norm = Normalizer.from_dict(manifest["input"]["normalization"])
    assert norm.mean.shape == (40,)
    agreement = manifest["int8_vs_float_on_calibration"]["argmax_agreement"]
    assert set(agreement) == {"keyword", "scene"} and min(agreement.values()) > 0.5
    it = load_interpreter(path)
    for out in manifest["outputs"]:
        detail = it.get_output_details()[out["index"]]
        assert detail["shape"][-1] == len(out["labels"])
        assert detail["quantization"] == pytest.approx((out["scale"], out["zero_point"]))
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == manifest["sha256"]
    onnx_manifest = load_manifest(path.with_name("multitask.json"))
    assert onnx_manifest["max_abs_prob_diff_vs_keras"] < 1e-3


def test_tampered_model_is_refused(exported, tmp_path):
    _, _, path, _ = exported
    copy = tmp_path / path.name
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ManifestError, match="does not match its manifest"):
        verify_model(copy)
    with pytest.raises(ManifestError):
        TFLiteModel(copy)


def test_wrong_labels_are_refused(exported):
    _, _, path, _ = exported
    with pytest.raises(ManifestError, match="labels"):
        verify_model(path, expected_labels={"scene": ["a", "b"]})


def test_export_command_line_offers_the_variants_and_exports_the_deployed_one(exported, capsys):
    from export import multitask as ex

    cfg, _, path, _ = exported
    with pytest.raises(SystemExit):
        ex.main(["--variant", "mt99"])
    assert "invalid choice: 'mt99'" in capsys.readouterr().err
    before = path.with_suffix(".json").read_text()
    sets = [arg for item in [f"project.build_dir='{cfg.build_dir}'", *TINY_MODEL]
            for arg in ("--set", item)]
    assert ex.main([*sets, "--no-onnx"]) == 0
    out = capsys.readouterr().out  # the converter prints its own lines before the summary
    summary = json.loads(out[out.index('{\n "tflite"'):])
    assert summary["tflite"] == str(path)
    # same model, same bytes: only the manifest's time stamp may differ
    after = json.loads(path.with_suffix(".json").read_text())
    assert after["sha256"] == json.loads(before)["sha256"]


def test_the_bc_resnet_trunk_exports_int8_and_onnx_but_does_not_stream(tmp_path):
    """``model.multitask.architecture = "bcresnet"``: the same export (full int8 with a manifest,
    ONNX beside it) runs through the device's runner and tracks the float model; the streaming
    export, which folds the DS-CNN's layers, refuses it by name (`make export` then deploys the
    non-streaming model, the profile's fallback)."""
    from export.streaming import fold_trunk

    cfg, data, path, summary = train_and_export(
        tmp_path, "model.multitask.architecture=bcresnet", "model.multitask.bc_scale=0.5",
        "model.multitask.epochs=2", "model.multitask.learning_rate=0.01")
    assert summary["size_bytes"] < 100_000 and summary["onnx_max_abs_diff"] < 1e-4
    model, normalizer, _ = mt.load_trained(cfg, "mt60j")
    feats, _, _ = mt.draw_examples(data, mt.variants(cfg)["mt60j"], 64, np.random.default_rng(5),
                                   LogMelConfig.from_config(cfg, "keyword"), None)
    f = mt.predict(model, feats, normalizer)
    q = TFLiteModel(path, expected_labels={"keyword": cfg.keyword_labels,
                                           "scene": cfg["labels.scenes"]}).predict(feats)
    for head in ("keyword", "scene"):
        assert float(np.abs(f[head] - q[head]).mean()) <= 0.03, head
    with pytest.raises(ValueError, match=r"DS-CNN trunk only .*architecture = \"dscnn\""):
        fold_trunk(model)
