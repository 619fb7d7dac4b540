"""The self-check: comparing events, the bundle's hashes, sinks, and the hop-budget check."""
from __future__ import annotations

import json
import socket

from device.config import load_config
from device.selfcheck import check_bundle, check_sinks, compare_events, table, Check


def _ev(kind, label, t):
    return {"type": kind, "label": label, "t_audio_s": t}


def test_compare_events_names_the_first_difference():
    want = [_ev("wake", "computer", 1.7), _ev("command", "yes", 2.5)]
    assert compare_events(want, [_ev("wake", "computer", 1.8), _ev("command", "yes", 2.4)], 0.25) is None
    assert "expected command 'yes' at 2.50 s, got command 'no'" in compare_events(
        want, [_ev("wake", "computer", 1.7), _ev("command", "no", 2.5)], 0.25)
    assert "event 1" in compare_events(want, [_ev("wake", "computer", 2.2), want[1]], 0.25)
    assert "1 events instead of 2: no command 'yes'" in compare_events(want, want[:1], 0.25)
    assert "an extra scene" in compare_events(want, want + [_ev("scene", "siren", 5.0)], 0.25)


def test_bundle_hashes(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    assert check_bundle(tmp_path).status == "skip"
    import hashlib
    (tmp_path / "bundle.json").write_text(json.dumps(
        {"files": {"a.txt": hashlib.sha256(b"a").hexdigest()}}))
    assert check_bundle(tmp_path).status == "ok"
    (tmp_path / "a.txt").write_text("b")
    row = check_bundle(tmp_path)
    assert row.status == "FAIL" and "a.txt" in row.detail


def test_sinks_reachable_or_warned_with_the_reason(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    cfg = load_config("default", [
        f"project.build_dir='{tmp_path}'", "sinks.mqtt.enabled=true", "sinks.mqtt.host='127.0.0.1'",
        f"sinks.mqtt.port={port}", "sinks.serial.enabled=true",
        f"sinks.serial.port='{tmp_path / 'ttyNONE'}'", "sinks.logfile.enabled=true"])
    rows = {r.name: r for r in check_sinks(cfg)}
    server.close()
    assert rows["sink mqtt"].status == "ok" and rows["sink stdout"].status == "ok"
    assert rows["sink serial"].status == "warn" and "does not exist" in rows["sink serial"].detail
    assert rows["sink logfile"].status == "ok"
    cfg = cfg.with_overrides([f"sinks.mqtt.port={dead_port}"])
    mqtt = {r.name: r for r in check_sinks(cfg)}["sink mqtt"]
    assert mqtt.status == "warn" and "not reachable" in mqtt.detail


def test_table_verdict():
    assert table([Check("a", "ok", "x"), Check("b", "warn", "y")]).endswith("selfcheck: passed\n")
    assert "FAILED (b)" in table([Check("a", "ok", "x"), Check("b", "FAIL", "y")])


def test_budget_check_passes_here_and_fails_only_when_over_twice(tmp_path):
    import pytest
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_model
    from device.selfcheck import check_budget
    model = build_tone_model(tmp_path, load_config("default"))
    cfg = load_config("default", ["selfcheck.budget_audio_s=1.0"])
    ok = check_budget(cfg, str(model))
    assert ok.status == "ok" and "whole hop p99" in ok.detail
    # A budget no machine meets: over on both attempts, and the message says what to change.
    cfg = load_config("default", ["selfcheck.budget_audio_s=1.0", "runtime.hop_budget_ms=0.000001"])
    bad = check_budget(cfg, str(model))
    assert bad.status == "FAIL" and "over on 2 attempts in a row" in bad.detail
    assert "smaller model" in bad.detail


def test_no_budget_skips_only_the_budget_row(tmp_path):
    import pytest
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_model
    from device.selfcheck import run_selfcheck
    model = build_tone_model(tmp_path, load_config("default"))
    # a budget nothing meets: without the budget row the verdict does not depend on it
    cfg = load_config("default", ["selfcheck.budget_audio_s=1.0", "runtime.hop_budget_ms=0.000001",
                                  "stages.keywords.verifier=''"])   # the tone model has none
    rows = {r.name: r for r in run_selfcheck(cfg, tmp_path, str(model), budget=False)}
    assert rows["budget"].status == "skip" and "--no-budget" in rows["budget"].detail
    assert rows["models"].status == "ok"
