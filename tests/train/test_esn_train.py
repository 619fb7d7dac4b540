"""train/esn.py: frame labels, the estimator (fit on the device's fixed-point states),
cross-validation by recording."""
from __future__ import annotations

import numpy as np
import pytest

from device import esn as desn
from device.config import load_config
from train import esn

CFG = load_config("default")
LABELS = list(CFG["labels.percussion"])
SMALL = dict(grid_height=6, grid_width=8, leak=0.3, spectral_radius=0.9, input_scaling=0.5,
             input_density=0.5, ridge_alpha=1.0, concat_input=True, seed=3, labels=LABELS)


def _recordings(per_class: int, seed: int = 0) -> list:
    return esn.synthetic_recordings(CFG, per_class, seed, tag="test-drum")


@pytest.fixture(scope="module")
def recs():
    return _recordings(4)


def test_frame_labels_mark_one_run_around_the_loudest_frame():
    quiet = np.full((40, 4), np.log(1e-6))
    frames = quiet.copy()
    frames[10:16] = np.log(1e-2)                 # the sound: 40 dB above the floor
    frames[30] = np.log(1e-2)                    # a second burst, not the loudest run's
    frames[12] = np.log(1e-1)
    lab = esn.frame_labels(frames, "snare", 6.0, 0.3)
    assert list(np.nonzero(lab == "snare")[0]) == [10, 11, 12, 13, 14, 15]
    assert (esn.frame_labels(frames, "silent", 6.0, 0.3) == "silent").all()


def test_estimator_has_the_scikit_learn_shape(recs):
    from sklearn.base import clone
    est = esn.EchoStateClassifier(**SMALL)
    assert clone(est).get_params() == est.get_params()
    est.set_params(ridge_alpha=2.0)
    assert est.get_params()["ridge_alpha"] == 2.0
    est.fit([r.frames for r in recs], [r.labels for r in recs])
    proba = est.predict_proba([recs[0].frames])[0]
    assert proba.shape == (len(recs[0].frames), len(LABELS)) and np.allclose(proba.sum(1), 1)
    assert list(est.classes_) == LABELS
    assert est.score([r.frames for r in recs], [r.labels for r in recs]) > 0.6   # training data


def test_the_readout_is_fit_on_the_device_states(recs):
    est = esn.EchoStateClassifier(**SMALL).fit([r.frames for r in recs], [r.labels for r in recs])
    model = est.model_
    states, u_q = model.states(recs[1].frames)              # what the device computes
    assert np.array_equal(states, est.states([recs[1].frames])[0])
    # the estimator's scores are the device readout's on those states
    assert np.allclose(est.decision_function([recs[1].frames])[0],
                       model.readout.scores(states, model.normalise(recs[1].frames)))
    floating = esn.EchoStateClassifier(**{**SMALL, "fixed_point": False}).fit(
        [r.frames for r in recs], [r.labels for r in recs])
    f_states = floating.states([recs[1].frames])[0]
    assert not np.array_equal(f_states, states) and np.abs(f_states - states).max() < 400


def test_cross_validation_keeps_recordings_apart_and_reports_both_reservoirs(recs):
    for train, test in esn._folds(recs, 3, 0):
        assert not {recs[i].group for i in train} & {recs[i].group for i in test}
    cv = esn.cross_validate(recs, SMALL, 3, 0, both=True)
    assert {"fixed", "fixed_int8", "float"} <= set(cv) and cv["folds"] == 3
    for name in ("fixed", "float"):
        m = cv[name]
        assert 0 <= m["nonsilent_accuracy"] <= 1 and len(m["recordings"]) == len(recs)
        assert np.sum(m["confusion"]) == sum(len(r.labels) for r in recs)
    assert cv["memory_frames"] >= 1


def test_an_untrained_readout_scores_worse_than_a_trained_one(recs):
    test = _recordings(2, seed=1)
    est = esn.EchoStateClassifier(**SMALL).fit([r.frames for r in recs], [r.labels for r in recs])
    trained = est.score([r.frames for r in test], [r.labels for r in test])
    ro = est.model_.readout
    est.model_ = est.model_.with_readout(desn.Readout(np.zeros_like(ro.coef), ro.intercept,
                                                      ro.labels, ro.concat_input))
    assert est.score([r.frames for r in test], [r.labels for r in test]) < trained


def test_a_click_louder_than_the_sound_is_not_the_sound():
    frames = np.full((50, 4), np.log(1e-6))
    frames[5] = np.log(1.0)                      # a one-frame pop, the loudest frame
    frames[30:38] = np.log(1e-2)                 # the sound: 8 frames
    lab = esn.frame_labels(frames, "hi-hat", 6.0, 0.3, min_frames=3)
    assert list(np.nonzero(lab == "hi-hat")[0]) == list(range(30, 38))
    only_click = np.full((50, 4), np.log(1e-6))
    only_click[5] = np.log(1.0)
    assert list(np.nonzero(esn.frame_labels(only_click, "bass", 6.0, 0.3, 3) == "bass")[0]) == [5]


def test_search_tries_the_profile_first_and_ranks_by_validation(recs):
    rows = esn.search(recs, SMALL, iterations=3, n_folds=2, seed=0, progress=False)
    assert len(rows) == 3
    assert any(r["params"] == {k: v for k, v in SMALL.items() if k != "labels"} for r in rows)
    assert [r["balanced"] for r in rows] == sorted((r["balanced"] for r in rows), reverse=True)
    table = esn._search_table(rows)
    assert table.count("\n") == 2 + len(rows) and "memory" in table
