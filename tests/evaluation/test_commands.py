"""Commands after a false wake: the command window held open over the wake-word benchmark's
negatives (`evaluation.commands.held_open`, ``--after-false-wakes``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.config import load_config
from device.verifier import RATE_HZ
from evaluation import commands as ec


def _posteriors(cfg, label: str) -> np.ndarray:
    p = np.full(len(cfg.keyword_labels), 0.01, np.float32)
    p[cfg.keyword_labels.index(label)] = 1.0
    return p / p.sum()


class _Refuses:
    """A verifier that refuses the triggers of the given seconds and names the rest ``label``."""
    class_delay_s = 0.2

    def __init__(self, seconds, label):
        self.seconds, self.label, self.asked = set(seconds), label, []

    def judge_command(self, posteriors, labels, commands, audio, trigger_index, weight):
        t = int(trigger_index / RATE_HZ)
        self.asked.append(t)
        return (None if t in self.seconds else self.label), 0.9, 0.9


def test_held_open_windows_count_the_first_command_of_each_and_put_it_down_to_its_file():
    cfg = load_config("default", ["decisions.smoothing_ms=100", "decisions.command_window_ms=4000"])
    first, second = cfg["labels.commands"][:2]
    segments = [[0.0, 3.5, "wake_phrase:alexa", "a.wav"], [3.5, 5.0, "speech_commands", "b.wav"],
                [5.0, 7.0, "esc50", "c.wav"], [8.0, 12.0, "long_audio", "d.wav"]]
    times = np.arange(0.02, 12.0, 0.02)
    post = np.tile(_posteriors(cfg, "_silence_"), (len(times), 1))
    # window 0: two triggers (the second not counted); window 1: one in the silence after the
    # ESC-50 file (its file's); window 2: two in long_audio.
    for t0, label in ((1.3, first), (2.5, second), (7.4, second), (9.3, first), (10.5, second)):
        post[(times > t0) & (times < t0 + 0.4)] = _posteriors(cfg, label)
    audio = np.zeros(12 * RATE_HZ, np.float32)
    row = ec.held_open(cfg, times, post, audio, segments, 12.0, 0.5)
    assert row["windows"] == 3 and row["window_s"] == 4.0
    kinds = row["kinds"]
    assert {k: v["commands"] for k, v in kinds.items()} == {
        "esc50": 1, "long_audio": 1, "speech_commands": 0, "wake_phrase:alexa": 1}
    assert kinds["wake_phrase:alexa"]["labels"] == {first: 1}
    assert kinds["esc50"]["labels"] == {second: 1} and kinds["long_audio"]["labels"] == {first: 1}
    assert kinds["wake_phrase:alexa"]["seconds"] == 3.5
    # Speech Commands are words, left out of the figure: 3 commands in 9.5 s of other audio.
    summary = ec.after_false_wake(row)
    assert summary["commands"] == 3
    assert summary["commands_per_hour"] == pytest.approx(3600 * 3 / 9.5, abs=0.05)
    assert summary["per_false_wake"] == pytest.approx(3 * 4.0 / 9.5, abs=1e-4)
    # The verifier refuses the first trigger of the phrase and of long_audio: the phrase's
    # window listens on and takes its second; long_audio's takes the one after, named as judged.
    v = _Refuses({1, 9}, second)
    judged = ec.held_open(cfg, times, post, audio, segments, 12.0, 0.5, verifier=v)
    assert {k: v["commands"] for k, v in judged["kinds"].items()} == {
        "esc50": 1, "long_audio": 1, "speech_commands": 0, "wake_phrase:alexa": 1}
    assert judged["kinds"]["long_audio"]["labels"] == {second: 1}
    assert v.asked == [1, 2, 7, 9, 10]
    everything = _Refuses(range(12), second)
    assert ec.after_false_wake(ec.held_open(cfg, times, post, audio, segments, 12.0, 0.5,
                                            verifier=everything))["commands"] == 0


def _args(data, tmp_path, model, *extra):
    sets = [f"data.real.wake_words={data / 'wake_words'}", f"data.real.speech_commands={data / 'sc'}",
            f"data.real.esc50={data / 'esc50'}", f"bench.wakeword.long_audio={data / 'long'}",
            f"bench.wakeword.noise={data / 'noise'}", "bench.wakeword.snr_db=[20.0]",
            f"project.build_dir={tmp_path / 'build'}", f"stages.multitask.model={model}",
            "decisions.smoothing_ms=100", *extra]
    return ["--profile", "default", "--after-false-wakes", "--thresholds", "0.5",
            "--out", "fw"] + [a for s in sets for a in ("--set", s)]


def test_after_false_wakes_over_the_benchmarks_negatives_end_to_end(tone_model, data, tmp_path,
                                                                      capsys):
    """The tone model through the device's pipeline: the channel's other phrases are "yes"
    tones, commands each; the ESC-50 siren, Speech Commands' noise and the continuous audio's
    wake tone are not."""
    from export.standin import WORD_S
    with pytest.warns(UserWarning, match="broken.flac"):
        assert ec.main(_args(data, tmp_path, tone_model, "stages.keywords.verifier=''")) == 0
    report = json.loads((tmp_path / "build" / "reports" / "fw.json").read_text())
    (row,) = report["rows"].values()
    assert row["decider"] == "keyword_model" and row["threshold"] == 0.5
    streams = next((tmp_path / "build" / "cache").glob("wakeword-*/streams.json"))
    segments = json.loads(streams.read_text())["negative"]["segments"]
    # Each phrase's tone lies whole inside one window here (the stream's order is seeded):
    # each window that holds one raises "yes" once.
    tones = [(s[0] + 0.3, s[0] + 0.3 + WORD_S) for s in segments if s[2].startswith("wake_phrase")]
    holding = {int(a // row["window_s"]) for a, b in tones}
    assert all(int(a // row["window_s"]) == int((b + 0.2) // row["window_s"]) for a, b in tones)
    kinds = row["kinds"]
    assert kinds["wake_phrase:alexa"]["commands"] == len(holding) >= 2
    assert kinds["wake_phrase:alexa"]["labels"] == {"yes": len(holding)}
    assert all(kinds[k]["commands"] == 0 for k in ("esc50", "long_audio", "speech_commands"))
    assert row["commands"] == len(holding) and row["per_false_wake"] > 0
    out = capsys.readouterr().out
    assert "Commands after a false wake" in out and "the channel's other phrases" in out
    assert (tmp_path / "build" / "reports" / "fw.md").is_file()


def test_after_false_wakes_needs_a_class_readout(tone_model, data, tmp_path, caplog):
    pytest.importorskip("openwakeword", reason="openWakeWord's wheel (make test installs it)")
    from tests.device.test_wake_verifier import _export
    sets = ["stages.keywords.verifier=export/wake_verifier.tflite"]
    _export(load_config("default", [f"project.build_dir={tmp_path / 'build'}", *sets]), 4.0)
    assert ec.main(_args(data, tmp_path, tone_model, *sets)) == 1
    assert "has no class readout" in caplog.text and "model.wake_verifier.classes" in caplog.text
