"""Distillation from the frozen speech-embedding teacher (`train.teacher`, issue #13), and the
junction negatives of `train.multitask.junction_negatives` (the other keyword-target lever).

The targets' arithmetic and the cross-fitting run on made-up embeddings (no model needed);
the embedding itself and a tiny distilled training run use openWakeWord's real models and
skip where the wheel is not installed (`make peers`).
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig
from tests.train.fakes import fake_corpus
from train import multitask as mt
from train import teacher
from train.features import log_mel_batch


@pytest.fixture
def cfg(tmp_path):
    return load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                   "model.multitask.epochs=1", "model.multitask.batch_size=16",
                                   "model.multitask.min_steps_per_epoch=1",
                                   "model.multitask.width=16", "model.multitask.blocks=2",
                                   "model.multitask.init_from=''"])


def _quiet(cfg, clean=0.0):
    return replace(mt.Augment.from_config(cfg), noise_prob=0.0, gain_db=0.0, shift_ms=0.0,
                   time_masks=0, freq_masks=0, speed=0.0, clean_keywords=clean)


def test_weight_zero_trains_on_todays_labels(cfg, monkeypatch):
    """distill_weight = 0 (the default) never builds a teacher and draws today's hard labels."""
    assert cfg["model.multitask.distill_weight"] == 0
    data = mt.TaskData.from_corpus(fake_corpus(cfg), cfg)
    assert data.keyword_targets is None
    lm = LogMelConfig.from_config(cfg, "keyword")
    feats, labels, _ = mt.draw_examples(data, mt.variants(cfg)["mt60j"], 24,
                                        np.random.default_rng(5), lm, mt.Augment.from_config(cfg))
    assert labels["keyword"].ndim == 1 and labels["keyword"].dtype == np.int64

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was built with distill_weight = 0")

    monkeypatch.setattr(teacher, "distill_targets", no_teacher)
    result = mt.train_variant(cfg, data, data, mt.variants(cfg)["kw"], verbose=0)
    info = json.loads((result.model_path.parent / "train_info.json").read_text())
    assert "distill" not in info
    # and the weight-0 target of the mix formula is the one-hot label itself
    probs = np.random.default_rng(0).dirichlet(np.ones(13), size=len(data.keyword_labels))
    np.testing.assert_array_equal(teacher.distill_target(data.keyword_labels, probs, 0.0),
                                  np.eye(13, dtype=np.float32)[data.keyword_labels])


def test_positive_weight_is_the_stated_mix():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 40)
    probs = rng.dirichlet(np.ones(5), size=40)
    for weight, temperature in ((0.5, 1.0), (0.3, 2.0), (1.0, 4.0)):
        target = teacher.distill_target(labels, probs, weight, temperature)
        np.testing.assert_allclose(target.sum(axis=1), 1.0, rtol=1e-6)
        soft = probs ** (1.0 / temperature)
        soft /= soft.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(target, (1 - weight) * np.eye(5)[labels] + weight * soft,
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(teacher.soften(probs, 1.0), probs, rtol=1e-9)
    # a higher temperature flattens: the top class loses weight
    assert (teacher.soften(probs, 3.0).max(axis=1) <= probs.max(axis=1) + 1e-12).all()
    with pytest.raises(ValueError, match="distill weight"):
        teacher.distill_target(labels, probs, 1.5)
    with pytest.raises(ValueError, match="temperature"):
        teacher.soften(probs, 0.0)


def test_soft_targets_stay_with_their_keyword_clip(cfg):
    """Each drawn example's target row is its own keyword clip's, and adding targets leaves the
    draws (clips, scenes, shares, augmentation) as they were."""
    data = mt.TaskData.from_corpus(fake_corpus(cfg), cfg)
    n_clips, n_classes = len(data.keyword_labels), len(cfg.keyword_labels)
    # A row per clip that names the clip: a distinct distribution for every clip.
    targets = np.random.default_rng(2).dirichlet(np.ones(n_classes), size=n_clips).astype(np.float32)
    soft = replace(data, keyword_targets=targets)
    lm = LogMelConfig.from_config(cfg, "keyword")
    variant = mt.variants(cfg)["mt60j"]
    aug = mt.Augment.from_config(cfg)
    hard_feats, hard_labels, hard_w = mt.draw_examples(data, variant, 40, np.random.default_rng(9),
                                                       lm, aug)
    feats, labels, weights = mt.draw_examples(soft, variant, 40, np.random.default_rng(9), lm, aug)
    np.testing.assert_array_equal(feats, hard_feats)
    np.testing.assert_array_equal(labels["scene"], hard_labels["scene"])
    np.testing.assert_array_equal(weights["keyword"], hard_w["keyword"])
    assert labels["keyword"].shape == (40, n_classes)
    # Clean (unmixed, unaugmented) draws: find each example's clip by its features.
    clean_feats = log_mel_batch(data.keyword_audio, lm)
    feats, labels, _ = mt.draw_examples(soft, variant, 30, np.random.default_rng(4), lm,
                                        _quiet(cfg, clean=1.0))
    for f, row in zip(feats, labels["keyword"]):
        candidates = np.flatnonzero(np.abs(clean_feats - f).max(axis=(1, 2)) < 1e-4)
        assert len(candidates) >= 1
        assert any(np.array_equal(row, targets[k]) for k in candidates)


def test_cross_fitting_never_fits_on_the_clip_or_speaker_it_predicts(monkeypatch):
    rng = np.random.default_rng(3)
    n, dim, n_classes = 240, 120, 4
    groups = [f"spk{i % 30}" for i in range(n)]
    labels = rng.integers(0, n_classes, n)
    x = rng.standard_normal((n, dim))  # pure noise: nothing to learn but the clips themselves
    seen = []
    real = teacher._regression

    def recording(c, seed):
        model = real(c, seed)
        fit = model.fit

        def fit_and_record(xf, yf):
            seen.append({tuple(np.round(row[:3], 9)) for row in xf})
            return fit(xf, yf)

        model.fit = fit_and_record
        return model

    monkeypatch.setattr(teacher, "_regression", recording)
    probs, fold = teacher.cross_fit_probabilities(x, labels, groups, n_classes, n_folds=5,
                                                  c=100.0, seed=0)
    assert len(seen) == 5 and set(fold) == {1, 2, 3, 4, 5}
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    for k, fitted_rows in enumerate(seen, start=1):
        held = np.flatnonzero(fold == k)
        assert not any(tuple(np.round(x[i, :3], 9)) in fitted_rows for i in held)
    for g in set(groups):  # a speaker is in one fold only
        assert len({fold[i] for i in range(n) if groups[i] == g}) == 1
    # On noise, a weakly regularised regression memorises what it is fit on; out of fold it
    # is at chance. An in-sample "teacher" would echo the labels instead.
    monkeypatch.setattr(teacher, "_regression", real)
    in_sample = real(100.0, 0).fit(x, labels).predict(x)
    assert (in_sample == labels).mean() > 0.9
    assert (probs.argmax(axis=1) == labels).mean() < 0.45


def test_cross_fitting_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="one of each per clip"):
        teacher.cross_fit_probabilities(np.zeros((4, 3)), np.zeros(4, int), ["a"] * 3, 2)


def test_distilled_training_records_the_teacher(cfg):
    """End to end on the fake corpus with openWakeWord's real embedding models."""
    pytest.importorskip("openwakeword")
    pytest.importorskip("sklearn")
    cfg = cfg.with_overrides(["model.multitask.distill_weight=0.5",
                              "model.multitask.distill_folds=3"])
    data = mt.TaskData.from_corpus(fake_corpus(cfg, n_per_keyword=6), cfg)
    result = mt.train_variant(cfg, data, data, mt.variants(cfg)["mt60j"], verbose=0)
    info = json.loads((result.model_path.parent / "train_info.json").read_text())
    d = info["distill"]
    assert d["weight"] == 0.5 and d["folds"] == 3 and d["train_clips"] == len(data.keyword_labels)
    assert 0.0 <= d["validation_accuracy"] <= 1.0 and d["embedding_seconds"] >= 0
    history = json.loads((result.model_path.parent / "history.json").read_text())
    # the same metric names as a run on hard labels (the seed table and curves read them)
    assert {"keyword_accuracy", "val_keyword_accuracy", "val_scene_accuracy"} <= set(history)
    # the embeddings are cached, keyed by the corpus: a second fit reads them back
    cached = list((cfg.build_dir / "cache").glob("teacher-*/train.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as z:
        assert z["x"].shape == (len(data.keyword_labels), 192)


# --------------------------------------------------------------------------- junction negatives
def _coded(cfg):
    """The fake corpus with each `_unknown_` clip's samples replaced by ``clip * 100000 + sample``
    (exact in float32), so any stretch of a window names the clip and the position it came from."""
    data = mt.TaskData.from_corpus(fake_corpus(cfg), cfg)
    audio = data.keyword_audio.copy()
    pool = np.flatnonzero(data.keyword_labels == data.unknown_index)
    n = audio.shape[1]
    for k in pool:
        audio[k] = k * 100000 + np.arange(n)
    return replace(data, keyword_audio=audio), pool


def test_junctions_are_the_end_of_one_unknown_clip_then_the_start_of_another(cfg):
    data, pool = _coded(cfg)
    n = data.keyword_audio.shape[1]
    idx = np.random.default_rng(3).integers(0, len(data.keyword_labels), 60)
    kw, labels = data.keyword_audio[idx].copy(), data.keyword_labels[idx].copy()
    silent = labels == data.silence_index
    out = mt.junction_negatives(data, kw, labels, silent, 1.0, np.random.default_rng(8))
    assert (labels == data.unknown_index).all() and not out.any()
    cuts = []
    for row in kw:
        first, start = divmod(int(row[0]), 100000)
        second, end = divmod(int(row[-1]), 100000)
        assert first in pool and second in pool
        c = n - start                               # samples taken from the first clip's end
        np.testing.assert_array_equal(row[:c], first * 100000 + np.arange(start, n))
        np.testing.assert_array_equal(row[c:], second * 100000 + np.arange(0, end + 1))
        assert end + 1 == n - c
        cuts.append(c)
    assert 0.2 * n <= min(cuts) and max(cuts) <= 0.8 * n and len(set(cuts)) > 50


def test_junction_fraction_labels_and_soft_targets(cfg):
    """About ``fraction`` of a draw becomes junctions; the rest is left exactly as drawn; under
    distillation a junction's target is the one-hot `_unknown_` row; no unknown clips is an error
    that names the setting."""
    data, _ = _coded(cfg)
    n_classes = len(cfg.keyword_labels)
    idx = np.random.default_rng(4).integers(0, len(data.keyword_labels), 2000)
    kw = data.keyword_audio[idx].copy()
    targets = np.random.default_rng(5).dirichlet(np.ones(n_classes), size=len(idx))
    soft = targets.copy()
    mt.junction_negatives(data, kw, soft, idx == -1, 0.3, np.random.default_rng(6))
    changed = (kw != data.keyword_audio[idx]).any(axis=1)
    assert 0.26 < changed.mean() < 0.34
    np.testing.assert_array_equal(soft[~changed], targets[~changed])
    np.testing.assert_array_equal(soft[changed], np.eye(n_classes)[[data.unknown_index] * changed.sum()])
    # through draw_examples: half the draw becomes junctions, on top of the unknowns drawn as such
    lm = LogMelConfig.from_config(cfg, "keyword")
    variant = mt.variants(cfg)["kw"]
    _, labels, _ = mt.draw_examples(data, variant, 400, np.random.default_rng(7), lm,
                                    replace(_quiet(cfg), junctions=0.5))
    share = (labels["keyword"] == data.unknown_index).mean()
    base = (data.keyword_labels == data.unknown_index).mean()
    assert abs(share - (0.5 + 0.5 * base)) < 0.08
    no_unknown = replace(data, unknown_index=None)
    with pytest.raises(ValueError, match="augment.junctions"):
        mt.junction_negatives(no_unknown, kw, soft, idx == -1, 0.3, np.random.default_rng(6))


def test_make_train_asks_for_the_teacher_only_where_a_profile_distils(monkeypatch, capsys):
    """`python -m train.teacher --missing` is what `make train` installs the teacher on: 0 for a
    profile that neither distils nor runs a wake verifier, or when openWakeWord is there; 1,
    saying why, when it is not."""
    import importlib.util
    real_find_spec = importlib.util.find_spec

    def without_openwakeword(name, *args):
        return None if name == "openwakeword" else real_find_spec(name, *args)

    none = ["--set", "stages.keywords.verifier=''"]
    assert teacher.main(["--missing", "--profile", "default"]) == 0
    monkeypatch.setattr(importlib.util, "find_spec", without_openwakeword)
    assert teacher.main(["--missing", "--profile", "default", *none]) == 0
    assert teacher.main(["--missing", "--profile", "default", *none,
                         "--set", "model.multitask.distill_weight=0.5"]) == 1
    assert "distill_weight = 0.5" in capsys.readouterr().out
    # The default profile runs a wake verifier: the same embedding models.
    assert teacher.main(["--missing", "--profile", "default"]) == 1
    assert "stages.keywords.verifier = 'export/wake_verifier.tflite'" in capsys.readouterr().out
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    installed = real_find_spec("openwakeword") is not None
    assert teacher.main(["--missing", "--profile", "default",
                         "--set", "model.multitask.distill_weight=0.5"]) == (0 if installed else 1)
