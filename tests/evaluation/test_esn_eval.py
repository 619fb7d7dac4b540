"""evaluation.esn on a folder in the vocal-percussion layout: the JSON figures and the plots."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from device import esn as desn
from device.config import load_config
from train import esn as tesn
from train.synth import clip_rng, percussion_clip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vp")
    cfg = load_config("default")
    (root / "raw_wav").mkdir()
    for label in cfg["labels.percussion"]:
        for i in range(3):
            audio, _ = percussion_clip(label, clip_rng(21, "eval", label, i), 0.8, 16000)
            sf.write(root / "raw_wav" / f"{'loft_' if i == 2 else ''}{label}_{i + 1:03d}.wav",
                     audio, 16000)
    est = tesn.EchoStateClassifier(grid_height=8, grid_width=8, leak=0.3, seed=3,
                                   labels=list(cfg["labels.percussion"]))
    recs = tesn.synthetic_recordings(cfg, 8, seed=2, tag="eval-train")
    est.fit([r.frames for r in recs], [r.labels for r in recs])
    model = root / "esn_int8.npz"
    desn.write_esn_model(est.model_, model, {**cfg.section("frontend.esn"), "name": "esn"})
    from evaluation.esn import evaluate_folder
    return cfg, root, model, evaluate_folder(cfg, root, model)


def test_evaluation_reports_frames_recordings_and_pipeline_beats(setup):
    cfg, root, model, report = setup
    d = report["deployed"]
    assert report["recordings"] == 15 and d["nonsilent_frames"] > 0
    assert set(d["recall"]) == set(cfg["labels.percussion"]) and 0 <= d["recording_accuracy"] <= 1
    assert np.sum(d["confusion"]) == report["frames"]
    beats = report["pipeline_beats"]
    assert beats["recordings"] == 15 and beats["right"] >= 8       # a trained model, not chance
    silent = [r for r in beats["per_recording"].values() if r["label"] == "silent"]
    assert all(r["beats"] == [] for r in silent)


def test_plots_are_written(setup, tmp_path):
    from evaluation.esn import plot_confusion, plot_recording
    cfg, root, model, report = setup
    png = plot_recording(cfg, model, root / "raw_wav" / "snare_001.wav", tmp_path / "s.png")
    assert png.stat().st_size > 5000
    d = report["deployed"]
    assert plot_confusion(d, tmp_path / "c.png", "test").stat().st_size > 5000


def test_enrolment_is_judged_on_recordings_it_never_heard(setup):
    from evaluation.esn import enrolment
    cfg, root, model_path, _ = setup
    recs = tesn.load_recordings(cfg, root)
    model, _ = desn.read_esn_model(model_path)
    e = enrolment(cfg, recs, model, takes=2, seed=5)
    assert len(e["enrolled"]) == 10 and e["held_out"] == 5          # 2 of each class's 3
    held = {r.group for r in recs} - set(e["enrolled"])
    assert len(held) == 5 and {g.split("/")[-1].rsplit("_", 1)[0].replace("loft_", "")
                               for g in held} <= set(cfg["labels.percussion"])
    assert e["refit"]["examples"] == {lab: 2 for lab in cfg["labels.percussion"]}
    assert e["refit"]["refit_s"] < 1.0
    for k in ("before", "after"):
        assert 0 <= e[k]["nonsilent_accuracy"] <= 1 and 0 <= e[k]["recording_accuracy"] <= 1
    assert enrolment(cfg, recs, model, takes=2, seed=5)["enrolled"] == e["enrolled"]   # seeded
    with pytest.raises(ValueError, match="none would be left"):
        enrolment(cfg, recs, model, takes=3, seed=5)
