"""Evaluation of an exported model on a dataset folder, through the device's own int8 runner."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import evaluate as ev
from tests.export.tiny import train_and_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return train_and_export(tmp_path_factory.mktemp("evaluate"), "model.multitask.epochs=1",
                            onnx=False, n_per_keyword=3, n_per_scene=2)


@pytest.fixture
def speech_commands(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(3)
    for label in ("yes", "no", "_silence_"):
        (tmp_path / "sc" / label).mkdir(parents=True)
        for k in range(2):
            sf.write(tmp_path / "sc" / label / f"spk{k}_nohash_0.wav",
                     (0.05 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return tmp_path / "sc"


def test_evaluate_on_a_speech_commands_folder(exported, speech_commands):
    _, _, path, _ = exported
    report = ev.evaluate(path, speech_commands, layout="auto")
    assert report["layout"] == "speech_commands" and report["head"] == "keyword"
    assert report["clips"] == 6 and 0.0 <= report["accuracy"] <= 1.0
    assert set(report["per_class_recall"]) == {"yes", "no", "_silence_"}
    assert report["sha256"] == json.loads(path.with_suffix(".json").read_text())["sha256"]


def test_command_line_defaults_come_from_the_profile(exported, speech_commands, capsys):
    cfg, _, path, _ = exported
    # no --model: the profile's deployed model; no --out: the profile's reports folder
    assert ev.main(["--set", f"project.build_dir='{cfg.build_dir}'",
                    "--data", str(speech_commands)]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = cfg.build_dir / "reports" / f"evaluate_{path.stem}_sc.json"
    saved = json.loads(report.read_text())
    assert saved["model"] == str(path) and saved["accuracy"] == printed["accuracy"]


def test_windows_cover_a_long_clip_and_centre_a_short_one():
    wins = ev._windows(np.arange(25, dtype=np.float32), 10, 7)
    assert [w[0] for w in wins] == [0, 7, 14, 15]  # the last window is flush with the end
    short = ev._windows(np.ones(4, np.float32), 10, 7)
    assert short.shape == (1, 10) and short[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
