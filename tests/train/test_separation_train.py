"""train.separation: the DANet's data, a tiny training run, and k-means vs fixed attractors."""
from __future__ import annotations

import numpy as np
import pytest

from device.frontend import STFTConfig, stft
from device.separation import chunk_log_magnitude, softmax_masks
from tests.export.tiny_separation import easy_mixtures, easy_sources, train_tiny

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("tensorflow")
    return train_tiny(tmp_path_factory.mktemp("build"))


def test_ideal_masks_pick_the_loudest_source_and_drop_silent_bins():
    from train.separation import ideal_masks
    mags = np.array([[[1.0, 0.0001]], [[0.5, 0.00001]]])        # (sources, frames, bins)
    y, w = ideal_masks(mags, mags.sum(0), silence_db=40.0)
    assert y[0, 0].tolist() == [1.0, 0.0] and y[0, 1].tolist() == [1.0, 0.0]
    assert w.tolist() == [[1.0, 0.0]]                            # 0.00011 is 79 dB down


def test_draw_chunks_packs_input_weights_and_masks_consistently():
    from train.separation import draw_chunks, source_spectra
    cfg = STFTConfig()
    data = source_spectra(easy_mixtures(2, 5), cfg)
    packed, target = draw_chunks(data, 3, np.random.default_rng(0), 20, 0.0, 40.0)
    assert packed.shape == (3, 20, 129, 4) and target.shape == (3, 20, 129, 3)
    # channel 0 is log(|mixture| + floor): the target's mixture magnitude, logged
    np.testing.assert_allclose(packed[..., 0], np.log(target[..., 0] + cfg.log_floor), atol=1e-4)
    np.testing.assert_array_equal(packed[..., 2:].sum(-1), 1.0)   # one source per bin


def test_a_tiny_training_run_reduces_the_loss(trained):
    cfg, result = trained
    val = result.history["val_loss"]
    assert min(val) < 0.6 * val[0], val
    assert result.history["loss"][-1] < result.history["loss"][0]
    files = result.model_path.parent
    assert (files / "attractors.npy").exists() and (files / "normalizer.json").exists()


def test_kmeans_and_fixed_attractors_agree_on_an_easy_mixture(trained):
    from train import separation as tsep
    cfg, _ = trained
    embedding, normalizer, attractors, _ = tsep.load_trained(cfg, "lstm32")
    sources = easy_sources(4242)
    scfg = STFTConfig()
    chunk = chunk_log_magnitude(stft(sources.sum(0), scfg), 20, scfg)[1]
    v = tsep.embed(embedding, chunk[None], normalizer)[0]
    fixed = tsep.fixed_masks(v, attractors).argmax(-1)
    km = tsep.kmeans_masks(v, chunk, 2, 40.0, seed=0).argmax(-1)
    loud = chunk > chunk.max() - 40 * np.log(10) / 20
    agree = max(np.mean(fixed[loud] == km[loud]), np.mean(fixed[loud] != km[loud]))  # either order
    assert agree >= 0.9, agree
    # and the fixed attractors put each source's bins on its own side
    ibm = np.abs(np.stack([stft(s, scfg) for s in sources]))[:, 20:40].argmax(0)
    assert np.mean(fixed[loud] == ibm[loud]) >= 0.9


def test_softmax_masks_sum_to_one_over_sources():
    rng = np.random.default_rng(0)
    m = softmax_masks(rng.standard_normal((5, 7, 3)), rng.standard_normal((2, 3)))
    assert m.shape == (5, 7, 2)
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)


def test_magnitude_pruning_keeps_the_zeros_through_fine_tuning(trained):
    """A pruned variant (prune_from + sparsity) starts from its trained parent's weights with
    the smallest zeroed, and the fine-tune keeps them at zero."""
    from device.config import load_config
    from train import separation as tsep
    from tests.export.tiny_separation import OVERRIDES
    cfg, parent = trained
    pruned = "blstm128_p50"   # the profile's entry, resized to the tiny parent's shape
    cfg = load_config("default", [f"project.build_dir='{cfg.build_dir}'", *OVERRIDES,
                                  f"model.separation.variants.{pruned}.prune_from=lstm32",
                                  f"model.separation.variants.{pruned}.units=8",
                                  f"model.separation.variants.{pruned}.bidirectional=false",
                                  f"model.separation.variants.{pruned}.embedding_dim=4",
                                  "model.separation.prune_epochs=2"])
    variant = tsep.variants(cfg)[pruned]
    scfg = STFTConfig.from_config(cfg, "separation")
    result = tsep.train_variant(cfg, tsep.source_spectra(easy_mixtures(12, 100), scfg),
                                tsep.source_spectra(easy_mixtures(4, 900), scfg), variant,
                                verbose=0)
    embedding, _, _, info = tsep.load_trained(cfg, pruned)
    assert info["pruned_from"] == "lstm32" and len(result.history["loss"]) == 2
    # the saved (best) weights: half of every weight matrix exactly zero
    for w in embedding.get_weights():
        if w.ndim == 2:
            assert abs(np.mean(w == 0) - 0.5) < 0.01, w.shape
    assert abs(tsep.sparsity_of(embedding) - 0.5) < 0.01
    # the fine-tune recovers from the cut (or the cut cost nothing): no worse than just pruned
    assert min(result.history["val_loss"]) <= info["val_loss_pruned_before_fine_tune"] + 1e-6


def test_a_pruned_variant_must_name_an_unpruned_parent_of_its_size():
    from device.config import load_config
    from train import separation as tsep
    cfg = load_config("default", ["model.separation.variants.blstm128_p50.units=64"])
    with pytest.raises(ValueError, match="prune_from"):
        tsep.variants(cfg)
