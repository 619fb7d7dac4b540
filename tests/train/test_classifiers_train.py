"""A tiny end-to-end run of both sound classifiers: train on an ESC-50-layout folder of synthetic
household clips -> int8 export with manifest -> evaluation over the folder (JSON + PNG)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from device.config import load_config

pytest.importorskip("tensorflow")

CLASSES = ["dog", "clock_alarm", "vacuum_cleaner"]
TARGETS = {"dog": 0, "clock_alarm": 38, "vacuum_cleaner": 36}


@pytest.fixture(scope="module")
def esc50_folder(tmp_path_factory):
    """ESC-50's layout (audio/<fold>-<src>-<take>-<target>.wav, meta/esc50.csv) with 6 synthetic
    2 s clips per class, each from its own source recording, plus one clip of a class the
    models do not know."""
    import soundfile as sf
    from train.synth import clip_rng, generate_household
    root = tmp_path_factory.mktemp("esc50")
    (root / "audio").mkdir()
    (root / "meta").mkdir()
    rows = []
    for label in CLASSES + ["footsteps"]:
        for i in range(6 if label in CLASSES else 1):
            src = f"{TARGETS.get(label, 25)}{i:03d}"
            name = f"{i % 5 + 1}-{src}-A-{TARGETS.get(label, 25)}.wav"
            audio = generate_household(label, clip_rng(7, "test", label, i), 2.0, 16000)
            sf.write(root / "audio" / name, audio, 16000, subtype="PCM_16")
            rows.append({"filename": name, "fold": i % 5 + 1, "target": TARGETS.get(label, 25),
                         "category": label, "esc10": False, "src_file": src, "take": "A"})
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _cfg(tmp_path):
    return load_config("default", _overrides(tmp_path))


def _overrides(tmp_path):
    return [
        f"project.build_dir={tmp_path / 'build'}", f"labels.sounds={json.dumps(CLASSES)}",
        "model.sound_cnn.conv_filters=4", "model.sound_cnn.dense_units=16",
        "model.sound_cnn.epochs=2", "model.sound_cnn.steps_per_epoch=3",
        "model.sound_cnn.batch_size=8", "model.sound_resnet.width=0.1",
        "model.sound_resnet.blocks_per_stage=1", "model.sound_resnet.patch_frames=24",
        "model.sound_resnet.epochs=2", "model.sound_resnet.steps_per_epoch=3",
        "model.sound_resnet.batch_size=8", "export.calibration_examples=40",
        "model.sound_classifiers.validation_split=0.2", "model.sound_classifiers.test_split=0.3",
            "model.sound_classifiers.other_clips=0"]


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_train_export_evaluate(tmp_path, esc50_folder, model):
    from evaluation.classifiers import evaluate_classifier, plot_confusion
    from export.classifiers import export_classifier
    from train.classifiers import train_model
    cfg = _cfg(tmp_path)
    report = train_model(cfg, model, data=str(esc50_folder), verbose=0)
    assert report["labels"] == CLASSES                      # the unknown class is not trained
    test = report["test_files"]
    assert len(test) >= 3 and report["float"]["probability_vote"]["clips"] == len(test)
    summary = export_classifier(cfg, model)
    tflite = summary["tflite"]
    manifest = json.loads(open(tflite.replace(".tflite", ".json")).read())
    assert manifest["kind"] == f"sound_{model}" and manifest["frontend"]["name"] == "classifier"
    assert manifest["outputs"][0]["labels"] == CLASSES
    for key in ("float_clip_accuracy", "int8_clip_accuracy"):
        assert 0.0 <= manifest["metrics"][key] <= 1.0
    # The evaluation of the same test clips through the device's runner agrees with export.
    result = evaluate_classifier(cfg, tflite, esc50_folder, set(test))
    assert result["clips"] == len(test)
    assert result["probability_vote"]["accuracy"] == pytest.approx(
        manifest["metrics"]["int8_clip_accuracy"])
    everything = evaluate_classifier(cfg, tflite, esc50_folder)
    assert everything["clips"] == 18 and everything["skipped_classes"] == {"footsteps": 1}
    assert set(everything["probability_vote"]["per_class_recall"]) == set(CLASSES)
    assert np.asarray(everything["probability_vote"]["confusion"]).sum() == 18
    png = plot_confusion(everything, tmp_path / "cm.png")
    assert png.stat().st_size > 1000
    if model == "resnet":
        _sound_events_replay_is_what_the_stage_raises(cfg, tflite, esc50_folder)


def _sound_events_replay_is_what_the_stage_raises(cfg, tflite, esc50_folder):
    """evaluation.sound_events records the stage's runs once and replays the tracker by
    threshold: at the profile's threshold that must be the pipeline's own sound events."""
    from device.audio_source import FileSource
    from device.pipeline import Pipeline
    from evaluation.sound_events import STAGES, esc50_files, evaluate, record_runs, replay
    # A tiny model is not confident: a low threshold, so that some events are raised at all.
    cfg = cfg.with_overrides(["decisions.sound_threshold_on=0.4", "decisions.sound_threshold_off=0.2"])
    threshold = float(cfg["decisions.sound_threshold_on"])
    raised_somewhere = False
    for path, _ in esc50_files(esc50_folder)[::3]:
        pipe = Pipeline.from_config(cfg, stage_names=STAGES, keep_events=True)
        pipe.run(FileSource(str(path), rate=pipe.rate))
        pipe.close()
        direct = [(e["label"], e["t_audio_s"]) for e in pipe.events if e["type"] == "sound"]
        runs, audio_s, labels = record_runs(cfg, None, path)
        assert audio_s == pytest.approx(2.0, abs=0.02) and labels == CLASSES
        assert [(e["label"], e["t_audio_s"]) for e in replay(runs, labels, cfg, threshold)] == direct
        raised_somewhere |= bool(direct)
    assert raised_somewhere
    result = evaluate(cfg, tflite, esc50_folder, (), thresholds=(threshold, 0.99))
    low, high = result["rows"]
    assert low["positives"] == 18 and result["negative_files"]["esc50_other_classes"] == 1
    assert high["caught"] <= low["caught"] and high["confused"] + high["caught"] <= 18


def test_the_cnn_computes_its_delta_channel_inside_the_model():
    from train.classifiers import build_cnn
    net = build_cnn(41, 60, 3, conv_filters=4, dense_units=8, batchnorm=True, dropout=0.5,
                    l2=0.0)
    delta = net.get_layer("delta")
    ramp = np.tile(np.arange(41, dtype=np.float32)[:, None], (1, 60))[None, :, :, None]
    d = np.asarray(delta(ramp))[0, :, :, 0]
    assert np.allclose(d[2:-2], 1.0)            # the slope of a ramp, away from the padded ends
    assert not delta.trainable


def test_cv_folds_use_the_dataset_folds_or_source_recordings_when_degenerate():
    from dataclasses import replace
    from train.classifiers import SoundClip, cv_folds
    clips = [SoundClip(np.zeros((3, 60), np.float32), lab, f"{lab}{g}", fold=g % 5 + 1)
             for lab in ("dog", "rain") for g in range(10)]
    same, line = cv_folds(clips, seed=3)
    assert [c.fold for c in same] == [c.fold for c in clips] and "dataset's 5 folds" in line
    # As the ESC-50 part here: nearly every clip in one fold -> folds by source recording.
    lopsided = [replace(c, fold=4 if i else 2) for i, c in enumerate(clips)]
    regrouped, line = cv_folds(lopsided, seed=3)
    assert "by source recording" in line and "degenerate" in line
    assert sorted({c.fold for c in regrouped}) == [1, 2, 3, 4, 5]
    assert all(sum(1 for c in regrouped if c.fold == k) == 4 for k in range(1, 6))


def test_cross_validation_tests_every_clip_once_float_and_int8(tmp_path, esc50_folder, capsys):
    from export.classifiers import main as export_main
    from train.classifiers import cv_summary_path, main as train_main
    # The same clips with a degenerate fold column (all in fold 1), as the ESC-50 part here.
    folder = tmp_path / "esc50_one_fold"
    (folder / "meta").mkdir(parents=True)
    (folder / "audio").symlink_to(esc50_folder / "audio")
    with open(esc50_folder / "meta" / "esc50.csv") as fh:
        rows = list(csv.DictReader(fh))
    with open(folder / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{**r, "fold": 1} for r in rows])
    cfg = _cfg(tmp_path)
    sets = [a for kv in _overrides(tmp_path) for a in ("--set", kv)]
    assert train_main(["cnn", "--cv", "--folds", "3", "--quiet", "--data", str(folder), *sets]) == 0
    assert export_main(["cnn", "--cv", *sets]) == 0
    out = capsys.readouterr().out
    assert "3 folds by source recording" in out and "18 clips over 3 folds" in out
    pooled = json.loads(cv_summary_path(cfg, "cnn").read_text())
    assert pooled["runs"] == [f"cnn_fold{k}" for k in range(1, 4)]
    for how in ("float", "int8"):
        pv = pooled[how]["probability_vote"]
        assert pv["clips"] == 18 and np.asarray(pv["confusion"]).sum() == 18
        # Every fold tests 2 of each class's 6 recordings: the pooled accuracy is their mean.
        assert pv["accuracy"] == pytest.approx(np.mean(pv["fold_accuracy"]))
        assert cv_summary_path(cfg, "cnn").with_name(f"cnn_cv_{how}.png").stat().st_size > 1000
    # Sound events by fold: each fold's int8 model on its own test clips, pooled: every clip is a
    # positive exactly once.
    from evaluation.sound_events import evaluate_cv
    events = evaluate_cv(cfg, cv_summary_path(cfg, "cnn"), (), thresholds=(0.4, 0.99))
    low, high = events["rows"]
    assert low["positives"] == high["positives"] == 18 and len(events["folds"]) == 3
    assert high["caught"] <= low["caught"]


def test_the_other_class_comes_from_the_other_esc50_classes_and_the_corpus(tmp_path, esc50_folder):
    from train.classifiers import load_clips
    from tests.train.conftest import TINY
    from device.sound import OTHER
    cfg = load_config("default", [*TINY, *_overrides(tmp_path), "model.sound_classifiers.other_clips=4"])
    clips, labels = load_clips(cfg, "cnn", esc50_folder)
    assert labels == CLASSES + [OTHER]
    other = [c for c in clips if c.label == OTHER]
    # At most half from ESC-50's other classes (here its one footsteps clip), the rest collages
    # of the corpus' speech, scenes and noise, each clip_s long.
    assert len(other) == 4 and sum(c.path is not None for c in other) == 1
    assert {c.group for c in other if c.path is None} == {f"{OTHER}/{i}" for i in range(3)}
    collage_frames = {len(c.frames) for c in other if c.path is None}
    assert len(collage_frames) == 1 and collage_frames.pop() > 2 * len(clips[0].frames)  # 5 s vs 2 s
    again, _ = load_clips(cfg, "cnn", esc50_folder)                # seeded
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(other,
                                                                    [c for c in again if c.label == OTHER]))


def test_make_train_goes_on_without_the_sound_data(tmp_path, capsys):
    """`make train` trains the deployed classifier; a real profile whose ESC-50 is not here must
    not stop the main job (the stage then runs without sound events), while asking for one model
    by name still fails."""
    from train.classifiers import main
    sets = ["--profile", "real", "--set", f"project.build_dir={tmp_path}",
            "--set", f"data.real.esc50={tmp_path / 'no_esc50'}"]
    assert main(["deployed", "--quiet", *sets]) == 0
    assert "no sound classifier trained" in capsys.readouterr().err
    assert main(["resnet", "--quiet", *sets]) == 2
