"""The profile schema: unknown keys, wrong types and out-of-range values are refused on load and
on every --set, with the key, the value, where it came from and the fix in the message."""
from __future__ import annotations

import pytest

from device.config import ConfigError, load_config


@pytest.mark.parametrize("override, match", [
    ("decisions.wake_treshold=0.5", r"unknown setting 'decisions.wake_treshold'.*did you mean "
                                    r"decisions.wake_threshold\?"),
    ("nosuch.thing=1", r"unknown setting 'nosuch' \(from --set nosuch.thing=1\)"),
    ("decisions.wake_threshold=abc", r"wake_threshold must be a number, got 'abc' from --set.*"
                                     r"e.g. decisions.wake_threshold = 0.6"),
    ("decisions.wake_threshold=2.0", r"out of range: it must be in \[0, 1\]"),
    ("decisions.wake_threshold=-1", r"out of range"),
    ("pipeline.hop_ms=-10", r"pipeline.hop_ms = -10 .* must be in \(0, 1000\]"),
    ("pipeline.hop_ms=0", r"pipeline.hop_ms = 0 "),
    ("runtime.shed_above=abc", r"runtime.shed_above must be a number"),
    ("decisions.refractory_ms=abc", r"refractory_ms must be a number"),
    ("runtime.num_threads=1.5", r"num_threads must be a whole number"),
    ("runtime.shedding=1", r"shedding must be true or false"),
    ("labels.commands=[1, 2]", r"labels.commands must be a list"),
    ("sinks.x.kind=nope", r"unknown sink kind 'nope'; use one of logfile, mqtt, serial, stdout"),
    ("sinks.mqtt.prot=1884", r"did you mean sinks.mqtt.port\?"),
    ("runtime.restore_below=0.95", r"restore_below .* must be below runtime.shed_above"),
    ("decisions=1", r"decisions is a section"),
    ("stages.frontend=3", r"stages.frontend must be a section"),
    ("model.multitask.architecture=resnet", r"architecture = 'resnet' .* unknown: use one of "
                                            r"dscnn, bcresnet"),
    ("model.multitask.bc_scale=0", r"bc_scale = 0 .* out of range"),
])
def test_bad_overrides_are_refused_with_the_fix(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("default", [override])


@pytest.mark.parametrize("override", [
    "decisions.refractory_ms=1500.5",        # a measure in ms may have a fraction
    "capture.device=3",                      # a PortAudio index as well as a name
    "capture.device=USB",
    "sinks.backup.kind=mqtt",                # a second broker is a new sink section of a kind
    "sinks.backup.port=1884",                # (with its kind, below)
    "frontend.custom.sample_rate=8000",      # a new frontend takes the built-in frontends' keys
    "stages.extra.type=logmel",              # stage parameters are the stage type's business
    "model.multitask.augment.noise_snr_db=[10, 30]",
    "model.multitask.architecture=bcresnet",
])
def test_good_overrides_pass(override):
    extra = {"frontend.custom": ["frontend.custom.hop_ms=10.0", "frontend.custom.window_ms=25.0"],
             "sinks.backup": ["sinks.backup.kind=mqtt"]}.get(override.rsplit(".", 1)[0], [])
    load_config("default", [override, *extra])


def test_unknown_key_in_a_profile_file_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "default"\n[decisions]\nwake_treshold = 0.7\n')
    with pytest.raises(ConfigError, match=r"from .*mine.toml.*did you mean decisions.wake_threshold"):
        load_config(path)


def test_relative_extends_resolves_beside_the_profile(tmp_path, monkeypatch):
    (tmp_path / "base.toml").write_text('extends = "default"\n[labels]\nwake_word = "hopwise"\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "child.toml").write_text('extends = "../base.toml"\n[decisions]\nwake_threshold = 0.7\n')
    monkeypatch.chdir(sub.parent.parent)  # not the profile's folder
    cfg = load_config(sub / "child.toml")
    assert cfg["labels.wake_word"] == "hopwise" and cfg["decisions.wake_threshold"] == 0.7
    assert cfg.origin("decisions.wake_threshold").endswith("child.toml")
    assert cfg.origin("labels.wake_word").endswith("base.toml")
    assert cfg.origin("pipeline.hop_ms").endswith("default.toml")


@pytest.mark.parametrize("text, match", [
    ("extends = 5\n", "must be named by a string"),
    ('extends = ""\n', "must be named by a string"),
])
def test_bad_extends_is_a_config_error(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_a_folder_as_profile_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_origin_of_an_override():
    cfg = load_config("real", ["decisions.wake_threshold=0.7"])
    assert cfg.origin("decisions.wake_threshold") == "--set decisions.wake_threshold=0.7"
    assert cfg.origin("data.source").endswith("real.toml")


def test_config_show_prints_origins_and_hides_secrets():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "device", "config", "--show", "--profile", "real",
                          "--set", "decisions.wake_threshold=0.7",
                          "--set", "sinks.mqtt.password=hunter2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(l.startswith("wake_threshold") and "0.7" in l and "# --set decisions.wake_threshold=0.7"
               in l for l in lines)
    assert any(l.startswith("source") and '"real"' in l and l.endswith("real.toml") for l in lines)
    assert any(l.startswith("password") and '"<set>"' in l for l in lines)
    bad = subprocess.run([sys.executable, "-m", "device", "config", "--set", "decisions.wake_treshold=1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "did you mean decisions.wake_threshold" in bad.stderr
    assert "Traceback" not in bad.stderr
