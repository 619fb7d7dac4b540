"""The multitask network's data pipeline and training, on tiny synthetic data (no corpus needed).

The corpus is `tests.train.fakes.fake_corpus`: tone bursts whose pitch encodes the keyword and
noise whose band encodes the scene, so a few training steps are enough to see learning happen.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig
from tests.train.fakes import fake_corpus
from train import loop
from train import multitask as mt
from train.features import log_mel_batch


@pytest.fixture
def cfg(tmp_path):
    return load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                   "model.multitask.epochs=2", "model.multitask.batch_size=16",
                                   "model.multitask.min_steps_per_epoch=1",
                                   "model.multitask.width=16", "model.multitask.blocks=2"])


def test_draw_examples_keeps_both_labels_and_share_weights(cfg):
    corpus = fake_corpus(cfg)
    data = mt.TaskData.from_corpus(corpus, cfg)
    variant = mt.variants(cfg)["mt60j"]
    lm = LogMelConfig.from_config(cfg, "keyword")
    feats, labels, weights = mt.draw_examples(data, variant, 32, np.random.default_rng(0), lm,
                                              mt.Augment.from_config(cfg))
    assert feats.shape == (32, 98, 40)
    assert set(labels) == {"keyword", "scene"} == set(weights)
    assert labels["keyword"].max() < len(cfg.keyword_labels)
    assert labels["scene"].max() < len(cfg["labels.scenes"])
    share = weights["keyword"] / 2.0
    # jitter +-0.2 around 0.6, and the two heads' weights are share and 1 - share
    assert np.all((share >= 0.4 - 1e-6) & (share <= 0.8 + 1e-6)) and share.std() > 0.02
    np.testing.assert_allclose(weights["keyword"] + weights["scene"], 2.0, rtol=1e-6)
    fixed = mt.variants(cfg)["mt50"]
    _, _, w50 = mt.draw_examples(data, fixed, 8, np.random.default_rng(0), lm, None)
    np.testing.assert_allclose(w50["keyword"], 1.0)
    _, only_kw, _ = mt.draw_examples(data, mt.variants(cfg)["kw"], 8, np.random.default_rng(0), lm, None)
    assert set(only_kw) == {"keyword"}


def test_clean_keyword_examples_carry_no_scene_loss(cfg):
    data = mt.TaskData.from_corpus(fake_corpus(cfg), cfg)
    lm = LogMelConfig.from_config(cfg, "keyword")
    variant = mt.variants(cfg)["mt60j"]
    quiet = replace(mt.Augment.from_config(cfg), noise_prob=0.0, gain_db=0.0, shift_ms=0.0,
                    time_masks=0, freq_masks=0, speed=0.0, clean_keywords=0.0)
    all_clean = replace(quiet, clean_keywords=1.0)
    feats, labels, weights = mt.draw_examples(data, variant, 12, np.random.default_rng(3), lm,
                                              all_clean)
    np.testing.assert_array_equal(weights["scene"], 0.0)
    np.testing.assert_array_equal(weights["keyword"], 1.0)
    # the features are those of the clean keyword clips themselves
    clean = log_mel_batch(data.keyword_audio, lm)
    for f in feats:
        assert np.min(np.abs(clean - f).max(axis=(1, 2))) < 1e-4
    _, _, mixed = mt.draw_examples(data, variant, 12, np.random.default_rng(3), lm, quiet)
    assert (mixed["scene"] > 0).all()


def test_eval_sets_are_deterministic(cfg):
    data = mt.TaskData.from_corpus(fake_corpus(cfg), cfg)
    lm = LogMelConfig.from_config(cfg, "keyword")
    a = mt.eval_sets(data, lm, 0.6, seed=7, scene_crops_per_clip=3)
    b = mt.eval_sets(data, lm, 0.6, seed=7, scene_crops_per_clip=3)
    assert set(a) == {"keyword_only", "scene_only", "mixed_keyword", "mixed_scene"}
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
    assert a["mixed_keyword"][2] == "keyword" and a["mixed_scene"][2] == "scene"


def test_eval_sets_report_recorded_speakers_apart(cfg):
    corpus = fake_corpus(cfg)
    for clip in corpus.keywords[::3]:  # a third of the clips "synthetic"
        clip.meta["synthetic"] = True
    data = mt.TaskData.from_corpus(corpus, cfg)
    sets = mt.eval_sets(data, LogMelConfig.from_config(cfg, "keyword"), 0.6, seed=7,
                        scene_crops_per_clip=1)
    recorded = [not c.meta.get("synthetic") for c in corpus.keywords]
    feats, labels, head = sets["keyword_recorded"]
    assert head == "keyword" and len(labels) == sum(recorded)
    np.testing.assert_array_equal(feats, sets["keyword_only"][0][np.array(recorded)])


def test_model_is_small_and_has_named_heads(cfg):
    model = mt.build_for_variant(load_config("default"), mt.variants(cfg)["mt60j"])
    assert set(model.output_names) == {"keyword", "scene"}
    assert 5_000 < model.count_params() < 100_000
    out = model(np.zeros((2, 98, 40, 1), np.float32))
    assert out["keyword"].shape == (2, 13) and out["scene"].shape == (2, 10)


def test_tiny_training_runs_end_to_end(cfg):
    corpus = fake_corpus(cfg)
    data = mt.TaskData.from_corpus(corpus, cfg)
    result = mt.train_variant(cfg, data, data, mt.variants(cfg)["mt60j"], verbose=0)
    assert result.model_path.exists()
    model, normalizer, info = mt.load_trained(cfg, "mt60j")
    assert info["tasks"] == ["keyword", "scene"] and info["params"] == result.params
    history = json.loads((result.model_path.parent / "history.json").read_text())
    assert len(history["loss"]) >= 1 and "val_keyword_accuracy" in history
    assert (cfg.build_dir / "reports" / "multitask_default_mt60j_curves.png").exists()
    probs = mt.predict(model, np.random.default_rng(0).normal(-8, 2, (3, 98, 40)).astype(np.float32),
                       normalizer)
    np.testing.assert_allclose(probs["keyword"].sum(1), 1.0, rtol=1e-4)


def test_bc_resnet_broadcasts_one_row_per_block_and_trains_warm_started(cfg):
    """The broadcasted-residual trunk: each block's pointwise work runs on a frequency-averaged
    row (time x 1), which is what makes its channels cheap; it trains, loads back, and a
    multitask variant warm-starts from it like the DS-CNN's."""
    full = load_config("default", ["model.multitask.architecture=bcresnet",
                                   "model.multitask.bc_scale=1"])
    model = mt.build_for_variant(full, mt.variants(full)["mt60j"])
    dscnn = mt.build_for_variant(load_config("default"), mt.variants(full)["mt60j"])
    assert model.count_params() < dscnn.count_params()
    rows = [layer for layer in model.layers if layer.name.endswith("_pw") and layer.name[0] == "s"]
    assert len(rows) == 12 and all(layer.output.shape[2] == 1 for layer in rows)
    assert [model.get_layer(f"s{s}b0_freq").output.shape[2] for s in range(4)] == [20, 10, 5, 5]
    out = model(np.zeros((2, 98, 40, 1), np.float32))
    assert out["keyword"].shape == (2, 13) and out["scene"].shape == (2, 10)
    assert model.get_layer("stem").output.shape[1] == 49  # 20 ms rows by default
    fine = mt.build_for_variant(load_config("default", ["model.multitask.architecture=bcresnet",
                                                        "model.multitask.bc_time_stride=1"]),
                                mt.variants(full)["kw"])
    assert fine.get_layer("stem").output.shape[1:3] == (98, 20)
    assert fine.count_params() == mt.build_for_variant(
        load_config("default", ["model.multitask.architecture=bcresnet"]),
        mt.variants(full)["kw"]).count_params()  # the stride costs MACs, not parameters

    tiny = load_config("default", [f"project.build_dir='{cfg.build_dir}'",
                                   "model.multitask.epochs=1", "model.multitask.batch_size=16",
                                   "model.multitask.min_steps_per_epoch=1",
                                   "model.multitask.architecture=bcresnet",
                                   "model.multitask.bc_scale=0.5"])
    data = mt.TaskData.from_corpus(fake_corpus(tiny, 4, 3), tiny)
    variants = mt.variants(tiny)
    mt.train_variant(tiny, data, data, variants["kw"], verbose=0)
    kw, normalizer, info = mt.load_trained(tiny, "kw")
    assert info["params"] == kw.count_params() < 5_000
    probs = mt.predict(kw, np.full((2, 98, 40), -8, np.float32), normalizer)
    np.testing.assert_allclose(probs["keyword"].sum(1), 1.0, rtol=1e-4)
    # a multitask variant warm-starts from it: every trunk layer and the keyword head carry
    # over, only the scene head is new
    multi = mt.build_for_variant(tiny, variants["mt60j"])
    with_weights = [layer for layer in multi.layers if layer.weights]
    assert loop.copy_matching_weights(kw, multi) == len(with_weights) - 1
    np.testing.assert_array_equal(multi.get_layer("s3b3_pw").get_weights()[0],
                                  kw.get_layer("s3b3_pw").get_weights()[0])


def test_warm_start_copies_trunk_and_keyword_head(cfg):
    full = load_config("default")
    kw = mt.build_for_variant(full, mt.variants(full)["kw"])
    multi = mt.build_for_variant(full, mt.variants(full)["mt60j"])
    copied = loop.copy_matching_weights(kw, multi)
    assert copied >= 10
    np.testing.assert_array_equal(multi.get_layer("stem").get_weights()[0],
                                  kw.get_layer("stem").get_weights()[0])
    np.testing.assert_array_equal(multi.get_layer("keyword").get_weights()[0],
                                  kw.get_layer("keyword").get_weights()[0])


def test_variant_names_come_from_the_one_definition(cfg, capsys):
    assert tuple(mt.variants(cfg)) == mt.VARIANT_NAMES == ("kw", "scene", "mt50", "mt60", "mt60j")
    other = load_config("default", ["model.multitask.keyword_share=0.7",
                                    "model.multitask.share_jitter=0.1"])
    profile_variant = mt.variants(other)["mt60j"]
    assert (profile_variant.keyword_share, profile_variant.share_jitter) == (0.7, 0.1)
    assert "70:30" in profile_variant.description
    with pytest.raises(SystemExit):
        mt.main(["--variant", "mt99"])
    assert "invalid choice: 'mt99'" in capsys.readouterr().err


def test_profile_values_have_no_fallbacks_in_code(cfg):
    from device.config import Config, ConfigError

    data = cfg.to_dict()
    del data["model"]["multitask"]["augment"]["speed"]
    with pytest.raises(ConfigError, match="model.multitask.augment.speed"):
        mt.Augment.from_config(Config(data, "trimmed"))
    assert mt.Augment.from_config(cfg).noise_snr_db == cfg["model.multitask.augment.noise_snr_db"]
