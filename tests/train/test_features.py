"""Shared model inputs: batch log-mel equal to the device frontend, the normaliser, SpecAugment."""
from __future__ import annotations

import numpy as np

from device.config import load_config
from device.frontend import LogMelConfig, log_mel
from train.features import Normalizer, log_mel_batch, spec_augment

SR = 16000
MASKS = dict(time_masks=2, time_mask_frames=20, freq_masks=2, freq_mask_bands=10)


def test_batched_features_equal_the_frontend():
    lm = LogMelConfig.from_config(load_config("default"), "keyword")
    audio = np.random.default_rng(5).normal(0, 0.1, (5, SR)).astype(np.float32)
    batched = log_mel_batch(audio, lm)
    assert batched.shape == (5, 98, 40) and batched.dtype == np.float32
    for row, feats in zip(audio, batched):
        np.testing.assert_array_equal(feats, log_mel(row, lm))


def test_normalizer_round_trip(tmp_path):
    feats = np.random.default_rng(0).normal(-5, 3, (10, 98, 40)).astype(np.float32)
    norm = Normalizer.fit(feats)
    norm.save(tmp_path / "n.json")
    again = Normalizer.load(tmp_path / "n.json")
    np.testing.assert_allclose(again(feats), norm(feats), atol=1e-6)
    assert abs(float(norm(feats).mean())) < 1e-3
    np.testing.assert_allclose(norm(feats).std(axis=(0, 1)), 1.0, rtol=1e-3)
    assert norm.to_dict()["kind"] == "per_mel_affine"


def test_normalizer_keeps_a_constant_band_finite():
    feats = np.zeros((4, 10, 3), np.float32)
    assert np.all(np.isfinite(Normalizer.fit(feats)(feats)))


def test_spec_augment_masks_stripes_and_is_seeded():
    feats = np.ones((4, 98, 40), np.float32)
    out = spec_augment(feats, np.random.default_rng(0), **MASKS)
    assert out.shape == feats.shape and (out == 0).any() and feats.min() == 1.0
    np.testing.assert_array_equal(out, spec_augment(feats, np.random.default_rng(0), **MASKS))
    # every masked cell lies on a fully masked frame or a fully masked band
    masked = out == 0
    full_frames = masked.all(axis=2, keepdims=True)
    full_bands = masked.all(axis=1, keepdims=True)
    assert np.array_equal(masked, full_frames | full_bands)
    none = dict(time_masks=0, time_mask_frames=20, freq_masks=0, freq_mask_bands=10)
    np.testing.assert_array_equal(spec_augment(feats, np.random.default_rng(0), **none), feats)
