"""The wake-word benchmark end to end on crafted recordings with known answers.

The engine is hopwise's real pipeline (the ``device detect`` path) with the hand-weighted tone
model (`export.standin.build_tone_model`: its "wake word" is a tone), so where it must wake is
known: on every positive, and once in the negative stream, where a "continuous audio" file has
the wake tone planted in it.
"""
from __future__ import annotations

import json
import shutil

import pytest

from device.config import load_config
from evaluation import wakeword as ww


def _args(data, tmp_path, model, *extra):
    sets = [f"data.real.wake_words={data / 'wake_words'}", f"data.real.speech_commands={data / 'sc'}",
            f"data.real.esc50={data / 'esc50'}", f"bench.wakeword.long_audio={data / 'long'}",
            f"bench.wakeword.noise={data / 'noise'}", "bench.wakeword.snr_db=[20.0]",
            "bench.wakeword.speech_dbfs=-13.5",  # the tone model hears tones at the level it was built for
            f"project.build_dir={tmp_path / 'build'}"]
    out = ["--profile", "default", "--engine", f"hopwise={model}"]
    for s in sets:
        out += ["--set", s]
    return out + list(extra)


def _model_copy(tone_model, tmp_path):
    """The tone model and its manifest in a folder of the test's own (a run writes beside it)."""
    model = tmp_path / "m" / tone_model.name
    model.parent.mkdir()
    shutil.copy(tone_model, model)
    shutil.copy(tone_model.with_suffix(".json"), model.with_suffix(".json"))
    return model


def test_benchmark_counts_hits_and_false_alarms_through_the_device_pipeline(
        tone_model, data, tmp_path, capsys):
    model = _model_copy(tone_model, tmp_path)
    with pytest.warns(UserWarning, match="broken.flac"):
        assert ww.main(_args(data, tmp_path, model, "--write-operating-point",
                             "--out", str(tmp_path / "r" / "ww"))) == 0
    report = json.loads((tmp_path / "r" / "ww.json").read_text())
    (engine,) = report["engines"]
    scores = engine["scores"]
    at = scores["at_setting"]
    # The planted wake tone in the continuous audio is the one false alarm, attributed to it.
    assert at["negative_false_alarms"] == 1 and at["by_kind"] == {"long_audio": 1}
    assert at["top_files"][0][0].endswith("speech_x.wav")
    det = {p["setting"]: p for p in scores["per_snr"]["20"]["det"]}
    own = det[0.6]
    assert own["miss_rate"] == 0.0 and own["false_alarms"] == 1       # every tone heard
    assert det[0.999]["false_alarms"] <= own["false_alarms"]
    # Replaying the device's decision classes over the recorded posteriors is the pipeline.
    assert all("identical" in v for v in engine["replay_check"].values())
    info = report["streams"]["info"]
    assert info["positives"] == 6 and info["negative_files_skipped"] == 1   # broken.flac
    assert info["negative_files_by_kind"] == {"esc50": 1, "long_audio": 1, "speech_commands": 3,
                                              "wake_phrase:alexa": 3}
    assert engine["cpu_rtf"] > 0
    assert (tmp_path / "r" / "ww.md").read_text().startswith("# Wake-word benchmark: `computer`")
    assert (tmp_path / "r" / "ww_det.png").stat().st_size > 1000
    # The planted tone is heard at every setting that hears the positives: no setting has 0
    # false alarms and still wakes, so no operating point is written; the report says so.
    assert "operating_point" not in engine
    assert "no setting both wakes and raises no false alarm" in capsys.readouterr().out
    assert "operating_point" not in json.loads(model.with_suffix(".json").read_text())


def test_operating_point_goes_into_the_manifest(tone_model, data, tmp_path):
    (data / "long" / "speech_x.wav").unlink()    # no planted wake tone: 0 false alarms possible
    model = _model_copy(tone_model, tmp_path)
    with pytest.warns(UserWarning):
        assert ww.main(_args(data, tmp_path, model, "--write-operating-point",
                             "--out", str(tmp_path / "r" / "ww"))) == 0
    op = json.loads(model.with_suffix(".json").read_text())["operating_point"]
    report = json.loads((tmp_path / "r" / "ww.json").read_text())
    assert op["wake_threshold"] == report["engines"][0]["operating_point"]["wake_threshold"]
    assert op["false_alarms"] == 0 and op["miss_rate"] < 1.0 and op["report"].endswith("ww.json")
    assert 0.05 <= op["wake_threshold"] <= 0.999 and op["smoothing_ms"] in (200.0, 300.0, 500.0)
    # No smoothing's own operating point of the same standing misses less than the chosen one,
    # and one that meets the target is preferred to one that does not.
    for sweep in report["engines"][0]["smoothing_sweep"]:
        other = sweep["per_snr"]["20"]["operating_point"]
        assert other is None or other["meets_target"] <= op["meets_target"]
        if other is not None and other["meets_target"] == op["meets_target"]:
            assert other["miss_rate"] >= op["miss_rate"]
    from device.manifest import verify_model
    verify_model(model)  # still a valid manifest for the device


def test_bad_setup_is_a_clear_error(tmp_path, capsys, data):
    assert ww.main(["--profile", "default", "--set", f"project.build_dir={tmp_path}",
                    "--engine", "hopwise"]) == 2
    assert "make train export" in capsys.readouterr().err
    assert ww.main(["--engine", "siri"]) == 2
    assert "unknown engine" in capsys.readouterr().err


def test_the_device_says_when_the_profile_leaves_the_benchmarked_operating_point(
        tone_model, tmp_path, caplog):
    import logging
    from device.pipeline import Pipeline
    model = tmp_path / tone_model.name
    shutil.copy(tone_model, model)
    manifest = json.loads(tone_model.with_suffix(".json").read_text())
    manifest["operating_point"] = {"wake_threshold": 0.8, "smoothing_ms": 300.0, "miss_rate": 0.04,
                                   "snr_db": 10.0}
    model.with_suffix(".json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="hopwise.stages.model"):
        Pipeline.from_config(load_config("default"), model=str(model)).close()
    assert "benchmarked at wake_threshold 0.8, smoothing_ms 300" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hopwise.stages.model"):
        Pipeline.from_config(load_config("default", ["decisions.wake_threshold=0.8",
                                                     "decisions.smoothing_ms=300"]),
                             model=str(model)).close()
    model_records = [r for r in caplog.records if r.name == "hopwise.stages.model"]
    assert any("at the benchmarked operating point" in r.getMessage() for r in model_records)
    assert not [r for r in model_records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("intercept, hears", [(4.0, True), (-4.0, False)])
def test_a_wake_verifier_filters_the_triggers_and_the_replay_is_the_pipeline(
        tone_model, data, tmp_path, intercept, hears):
    """With a verifier (real embedding models, a hand-set readout that accepts or refuses every
    trigger) the benchmark sweeps the trigger before it, and its replay of the verdicts is what
    the device's keyword stage raised on every stream."""
    pytest.importorskip("openwakeword", reason="openWakeWord's wheel (make test installs it)")
    from tests.device.test_wake_verifier import _export
    model = _model_copy(tone_model, tmp_path)
    sets = ["stages.keywords.verifier=export/wake_verifier.tflite",
            "model.wake_verifier.window_ends_ms=[0.0, 200.0]",
            "decisions.verified_wake_threshold=0.6"]   # the tone model's own operating point
    _export(load_config("default", [f"project.build_dir={tmp_path / 'build'}", *sets]), intercept)
    extra = [a for s in sets for a in ("--set", s)]
    with pytest.warns(UserWarning):
        assert ww.main(_args(data, tmp_path, model, *extra, "--out", str(tmp_path / "ww"))) == 0
    (engine,) = json.loads((tmp_path / "ww.json").read_text())["engines"]
    assert engine["describe"]["verifier"] == {
        "threshold": load_config("default")["decisions.wake_verifier_threshold"], "delay_ms": 200}
    assert engine["describe"]["setting"] == "decisions.verified_wake_threshold"
    assert all("identical" in v for v in engine["replay_check"].values())
    at = engine["scores"]["at_setting"]
    own = {p["setting"]: p for p in engine["scores"]["per_snr"]["20"]["det"]}[0.6]
    if hears:   # the same as the keyword model alone: every tone, and the planted one
        assert own["miss_rate"] == 0.0 and at["negative_false_alarms"] == 1
    else:
        assert own["miss_rate"] == 1.0 and at["negative_false_alarms"] == 0


def test_other_verifiers_and_thresholds_are_scored_on_the_same_runs(tone_model, data, tmp_path,
                                                                   capsys, monkeypatch):
    """``--verifier-threshold`` and ``--verifier`` add entries judged on the first engine's runs:
    the same triggers (one pass of the pipeline), each verifier's own verdicts at each threshold,
    the embeddings of a trigger's windows computed once for verifiers that embed alike."""
    pytest.importorskip("openwakeword", reason="openWakeWord's wheel (make test installs it)")
    from device.verifier import SpeechEmbedding
    from tests.device.test_wake_verifier import _export
    embedded = []
    embed = SpeechEmbedding.embed
    monkeypatch.setattr(SpeechEmbedding, "embed",
                        lambda self, clips: embedded.append(len(clips)) or embed(self, clips))
    model = _model_copy(tone_model, tmp_path)
    sets = ["stages.keywords.verifier=export/wake_verifier.tflite",
            "model.wake_verifier.window_ends_ms=[0.0, 200.0]",
            "decisions.verified_wake_threshold=0.6", "decisions.wake_verifier_threshold=0.9"]
    # The profile's verifier accepts every trigger at 0.98; the other one refuses all at 0.02.
    _export(load_config("default", [f"project.build_dir={tmp_path / 'build'}", *sets]), 4.0)
    other = _export(load_config("default", [f"project.build_dir={tmp_path / 'other'}", *sets]),
                    -4.0)
    extra = [a for s in sets for a in ("--set", s)]
    with pytest.warns(UserWarning):
        assert ww.main(_args(data, tmp_path, model, *extra, "--verifier-threshold", "0.99",
                             "--verifier", str(other), "--out", str(tmp_path / "ww"))) == 0
    engines = json.loads((tmp_path / "ww.json").read_text())["engines"]
    first = engines[0]["name"]
    names = [e["name"] for e in engines]
    assert names == [first, f"{first} verifier at 0.99", f"{first} verifier {other} at 0.9",
                     f"{first} verifier {other} at 0.99"]
    heard = {}
    for e in engines:
        own = {p["setting"]: p for p in e["scores"]["per_snr"]["20"]["det"]}[0.6]
        heard[e["name"]] = (own["miss_rate"], e["scores"]["at_setting"]["negative_false_alarms"])
        assert e["cpu_s"] == engines[0]["cpu_s"]      # one pass of the pipeline, shared
    assert heard[first] == (0.0, 1)                   # every tone, and the planted one
    assert set(list(heard.values())[1:]) == {(1.0, 0)}   # 0.98 < 0.99; the other refuses all
    assert [e["describe"].get("variant_of") for e in engines] == [None, first, first, first]
    assert engines[2]["describe"]["verifier"]["path"] == str(other)
    assert engines[1]["describe"]["verifier"]["threshold"] == 0.99
    assert capsys.readouterr().out.count("decisions replay = pipeline") == 1
    # The other verifier embeds as the profile's does: no embedding more than the profile's alone.
    with_variants = sum(embedded)
    embedded.clear()
    assert ww.main(_args(data, tmp_path, model, *extra, "--out", str(tmp_path / "alone"))) == 0
    assert with_variants == sum(embedded) > 0
    # Without a verifier to vary, and with a verifier that is not there: clear errors, no run.
    assert ww.main(_args(data, tmp_path, model, "--set", "stages.keywords.verifier=''",
                         "--verifier-threshold", "0.5")) == 2
    assert "need a hopwise engine with a wake verifier" in capsys.readouterr().err
    assert ww.main(_args(data, tmp_path, model, *extra, "--verifier",
                         str(tmp_path / "nope.tflite"))) == 2
    assert "nope" in capsys.readouterr().err


def test_the_report_says_when_the_model_trained_over_the_benchmarks_noise(data, tmp_path):
    noise = [str(p) for p in sorted((data / "noise").iterdir())]
    other = tmp_path / "other_noise"
    other.mkdir()
    shutil.copy(data / "noise" / "hum.wav", other / "hum.wav")   # the same sound, another file
    sets = [f"data.real.speech_commands={data / 'sc'}", f"project.build_dir={tmp_path / 'b'}"]
    real = load_config("real", [*sets, f"data.real.background_noise={data / 'noise'}"])
    (line,) = ww.noise_heard_in_training(real, noise, "hopwise real")
    assert line.startswith("hopwise real: trained over 1 of the 1 noise recordings (hum.wav)")
    assert "bench.wakeword.noise" in line
    # Noise it never trained on, no noise augmentation, or a synthetic profile: nothing to say.
    assert ww.noise_heard_in_training(real, [str(other / "hum.wav")]) == []
    quiet = real.with_overrides(["model.multitask.augment.noise_prob=0.0"])
    assert ww.noise_heard_in_training(quiet, noise) == []
    assert ww.noise_heard_in_training(load_config("default", sets), noise) == []
    # A Speech Commands root's _background_noise_ counts as training noise too.
    sc_noise = data / "sc" / "_background_noise_"
    sc_noise.mkdir()
    shutil.copy(data / "noise" / "hum.wav", sc_noise / "hum.wav")
    root = load_config("real", [*sets, "data.real.background_noise=''"])
    assert len(ww.noise_heard_in_training(root, [str(sc_noise / "hum.wav")])) == 1
