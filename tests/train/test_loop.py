"""The shared training loop: loss, fresh data per epoch, early stopping with the best checkpoint,
warm start, the run's files and the deployed choice."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.config import load_config
from train import loop
from train.features import Normalizer


def _tiny_model(head: str, n_classes: int, hidden_name: str = "hidden"):
    import keras

    inp = keras.Input((4, 3, 1), name="x")
    x = keras.layers.Flatten(name="flat")(inp)
    x = keras.layers.Dense(8, activation="relu", name=hidden_name)(x)
    return keras.Model(inp, {head: keras.layers.Dense(n_classes, activation="softmax",
                                                      name=head)(x)})


def _draw(n, rng):
    labels = rng.integers(0, 2, n)
    feats = rng.normal(0, 0.1, (n, 4, 3)).astype(np.float32) + labels[:, None, None]
    return feats, {"a": labels}, {"a": np.ones(n, np.float32)}


def test_label_smoothing_blends_in_a_uniform_target():
    import keras

    probs = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    labels = np.array([0, 2])
    assert loop.smoothed_sparse_crossentropy(0.0) == "sparse_categorical_crossentropy"
    loss = loop.smoothed_sparse_crossentropy(0.1)
    got = keras.ops.convert_to_numpy(loss(labels, probs))
    want = 0.9 * -np.log(probs[[0, 1], labels]) + 0.1 * -np.log(probs).mean(1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got[1], np.log(3), rtol=1e-5)  # uniform posteriors: log(n)


def test_epoch_sequence_draws_fresh_seeded_epochs():
    norm = Normalizer(np.zeros(3, np.float32), np.full(3, 2.0, np.float32))
    calls = []

    def draw(n, rng):
        calls.append(n)
        return _draw(n, rng)

    def flip(x, rng):
        return -x

    seq = loop.epoch_sequence(draw, 3, 4, norm, seed=5, batch_transform=flip)
    again = loop.epoch_sequence(_draw, 3, 4, norm, seed=5, batch_transform=flip)
    assert len(seq) == 3 and calls == [12]
    x, labels, weights = seq[1]
    assert x.shape == (4, 4, 3, 1) and labels["a"].shape == (4,) and weights["a"].shape == (4,)
    raw, _, _ = _draw(12, np.random.default_rng(5))
    np.testing.assert_allclose(x[..., 0], -raw[4:8] / 2.0, rtol=1e-6)  # normalised, transformed
    np.testing.assert_array_equal(x, again[1][0])
    seq.on_epoch_end()
    assert calls == [12, 12] and not np.array_equal(seq[1][0], x)
    flat = loop.epoch_sequence(_draw, 1, 2, norm, seed=0, channel_axis=False)
    assert flat[0][0].shape == (2, 4, 3)


def test_fit_keeps_the_best_checkpoint_and_records_the_run(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = _tiny_model("a", 2)
    model.compile(optimizer=loop.cosine_adam(0.01, 4 * 5),
                  loss={"a": "sparse_categorical_crossentropy"}, metrics={"a": ["accuracy"]})
    norm = Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32))
    vx, vy, vw = _draw(32, np.random.default_rng(1))
    files = loop.RunFiles(tmp_path / "run")
    files.folder.mkdir()
    seq = loop.epoch_sequence(_draw, 4, 16, norm, seed=2)
    fitted = loop.fit(model, seq, (vx[..., None], vy, vw), epochs=5, patience=2,
                      checkpoint=files.checkpoint, verbose=0)
    assert files.trained() and 1 <= fitted.best_epoch <= len(fitted.history["loss"]) <= 5
    assert fitted.best_epoch == int(np.argmin(fitted.history["val_loss"])) + 1
    assert fitted.seconds > 0
    norm.save(files.normalizer)
    loop.save_run(files, fitted.history, {"params": model.count_params()})
    again, norm_again, info = loop.load_run(files)
    assert info["params"] == model.count_params()
    assert json.loads(files.history.read_text()) == fitted.history
    np.testing.assert_allclose(again.predict(vx[..., None], verbose=0)["a"],
                               model.predict(vx[..., None], verbose=0)["a"], rtol=1e-5)
    np.testing.assert_array_equal(norm_again.std, norm.std)
    loop.plot_history(fitted.history, tmp_path / "curves.png", "tiny")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_load_run_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `python -m train.x` first"):
        loop.load_run(loop.RunFiles(tmp_path / "nothing"), "python -m train.x")


def test_warm_start_copies_matching_layers_only():
    source = _tiny_model("a", 2)
    target = _tiny_model("b", 3)
    copied = loop.copy_matching_weights(source, target)
    assert copied == 1  # "hidden"; the heads differ in name, Flatten has no weights
    np.testing.assert_array_equal(target.get_layer("hidden").get_weights()[0],
                                  source.get_layer("hidden").get_weights()[0])
    other = _tiny_model("a", 5)  # same head name, other shape: left alone
    before = other.get_layer("a").get_weights()[0].copy()
    loop.copy_matching_weights(source, other)
    np.testing.assert_array_equal(other.get_layer("a").get_weights()[0], before)


def test_deployed_choice_round_trip(tmp_path):
    cfg = load_config("default", [f"project.build_dir='{tmp_path}'"])
    assert loop.read_deployed(cfg, "multitask", "mt60j") == "mt60j"
    path = loop.write_deployed(cfg, "multitask", "mt50", "best on validation")
    assert path == tmp_path / "models" / "multitask" / "default" / "deployed.json"
    assert loop.read_deployed(cfg, "multitask", "mt60j") == "mt50"
    assert json.loads(path.read_text())["reason"] == "best on validation"
