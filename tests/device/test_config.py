"""Profiles load, inherit, take overrides, and refuse bad values with messages that help."""
from __future__ import annotations

import pytest

from device.config import ConfigError, available_profiles, dump_toml, load_config


def test_builtin_profiles_load_and_real_inherits_default():
    assert {"default", "real"} <= set(available_profiles())
    default, real = load_config("default"), load_config("real")
    assert default["labels.wake_word"] == "computer"
    assert real["data.source"] == "real" and default["data.source"] == "synthetic"
    assert real["frontend.keyword.hop_ms"] == default["frontend.keyword.hop_ms"]  # inherited
    assert real["labels.scenes"] != default["labels.scenes"]
    assert default.keyword_labels[:3] == ["_silence_", "_unknown_", "computer"]
    assert len(default.keyword_labels) == 13


def test_overrides_parse_toml_values_and_bare_words():
    cfg = load_config("default", ["model.multitask.epochs=3", "sinks.mqtt.host=broker.local",
                                  "labels.commands=['yes','no']", "sinks.mqtt.tls=true"])
    assert cfg["model.multitask.epochs"] == 3
    assert cfg["sinks.mqtt.host"] == "broker.local"
    assert cfg["labels.commands"] == ["yes", "no"]
    assert cfg["sinks.mqtt.tls"] is True


def test_hash_changes_only_with_the_named_sections():
    a = load_config("default")
    b = load_config("default", ["model.multitask.epochs=1"])
    c = load_config("default", ["frontend.keyword.n_mels=32"])
    assert a.hash("frontend") == b.hash("frontend") != c.hash("frontend")


def test_profile_file_with_extends(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "default"\n[labels]\nwake_word = "hopwise"\n')
    cfg = load_config(path)
    assert cfg["labels.wake_word"] == "hopwise" and cfg["frontend.keyword.n_mels"] == 40


@pytest.mark.parametrize("text, match", [
    ('extends = "default"\n[frontend.keyword]\nhop_ms = 50.0\n', "hop_ms <= window_ms"),
    ('extends = "default"\n[frontend.keyword]\nfmax_hz = 9000.0\n', "fmax_hz"),
    ('extends = "default"\n[labels]\nwake_word = "yes"\n', "wake word must not also be a command"),
    ('extends = "default"\n[model.multitask]\nkeyword_share = 1.5\n', r"keyword_share = 1.5 .* must be in \(0, 1\)"),
    ('extends = "nope"\n', "unknown profile 'nope'"),
    ('this is = = not toml', "not valid TOML"),
])
def test_bad_profiles_are_refused_with_the_fix(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_key_and_bad_override_name_the_fix():
    cfg = load_config("default")
    with pytest.raises(ConfigError, match="--set model.nope"):
        cfg["model.nope"]
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config("default", ["epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/profile.toml")


def test_dump_toml_round_trips_a_merged_profile_with_overrides(tmp_path):
    cfg = load_config("real", ["labels.wake_word=jarvis", "decisions.wake_threshold=0.75"])
    path = tmp_path / "deployed.toml"
    path.write_text(dump_toml(cfg.to_dict()))
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again["labels.wake_word"] == "jarvis" and again["data.source"] == "real"
