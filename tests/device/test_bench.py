"""The hop-budget report (device/bench.py, benchmarks/hop_budget.py): its structure and the
consistency of its figures on a few seconds of audio, the float/int8 source it picks, the
report without matplotlib, and ``make bench TARGET=...`` against a real sshd on loopback: the
bundle deployed there, the report run from it and fetched back. Behaviour, not timings."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from device import bench
from device.__main__ import main as device_main
from device.config import load_config
from device.manifest import sha256_file
from device.paths import BuildPaths

SHORT = ["bench.audio_s=3", "bench.event_calls=30"]


def _install_model(tone_model: Path, build_dir: Path) -> str:
    """The tone model in the build folder's export/ with its manifest (where deploy collects
    models); returns the profile setting that names it."""
    export_dir = build_dir / "export"
    export_dir.mkdir(parents=True, exist_ok=True)
    for src in (tone_model, tone_model.with_suffix(".json")):
        shutil.copy(src, export_dir / src.name)
    return f"stages.multitask.model=export/{tone_model.name}"


@pytest.fixture(scope="module")
def run(tone_model, tmp_path_factory):
    """``python -m device bench`` on 3 s of audio, in this process: (cfg, report, folder)."""
    root = tmp_path_factory.mktemp("bench")
    sets = [f"project.build_dir='{root / 'build'}'", *SHORT,
            _install_model(tone_model, root / "build")]
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert device_main(["bench", *(a for s in sets for a in ("--set", s))]) == 0
    if affinity is not None:
        assert os.sched_getaffinity(0) == affinity   # the pinning is undone
    cfg = load_config("default", sets)
    folder = BuildPaths(cfg).bench_report_dir()
    return cfg, json.loads((folder / "hop_budget.json").read_text()), folder


def test_report_figures_are_consistent(run):
    cfg, report, folder = run
    assert (report["format"], report["profile"]) == ("hopwise-hop-budget", "default")
    hop_ms = cfg["pipeline.hop_ms"]
    rows = {r["name"]: r for r in report["stages"]}
    assert list(rows) == [*cfg["pipeline.stages"], "whole hop"]
    audio_s = report["audio"]["seconds"]
    assert audio_s == pytest.approx(3.0)
    # No ESN and no sound classifier here: they, and the classifiers' log-mel that only they
    # read, are left out of the hop loop, and say so.
    assert {n for n, r in rows.items() if r.get("left_out")} == {"esn", "sound_frontend", "sounds"}
    for r in rows.values():
        if r.get("left_out"):
            assert r["runs"] == 0
            continue
        # whole hops: in blocks most hops run no stage (the frontend and the model work on
        # the model's hops), so their median may be 0; every stage's is not
        assert 0 < r["p50_ms"] or (r["name"] == "whole hop" and r["p99_ms"] > 0)
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["share_p50"] == pytest.approx(r["p50_ms"] / hop_ms, abs=1e-6)
        assert r["share_p99"] == pytest.approx(r["p99_ms"] / hop_ms, abs=1e-6)
        assert r["invocations_per_s"] == pytest.approx(r["runs"] / audio_s, rel=1e-3)
    model = rows["multitask"]
    assert model["kind"] == "model"
    # The model runs once per stride: 1 / (stride_hops * hop) per second; in blocks the frontend
    # runs on the hops where its reader (the model) runs, putting the frames of the hops between.
    assert model["invocations_per_s"] == pytest.approx(1000 / (model["stride_hops"] * hop_ms))
    assert rows["frontend"]["runs"] == model["runs"]
    # The stages' loads add up to the time spent in stages, which is part of the whole run.
    p = report["pipeline"]
    loads = sum(r["load"] for name, r in rows.items() if name != "whole hop")
    assert loads == pytest.approx(p["budget_use"], rel=1e-3, abs=1e-6)
    assert rows["whole hop"]["load"] == pytest.approx(p["budget_use"], rel=1e-3, abs=1e-6)
    assert 0 < p["budget_use"] <= p["rtf_wall"]
    assert p["rtf_cpu"] > 0 and p["hops"] == rows["whole hop"]["runs"]
    assert report["memory"]["peak_rss_mb"] > 0
    # Per event: every sink kind and the codec, each timed or saying why not.
    per_event = {r["name"]: r for r in report["per_event"]}
    assert set(per_event) == {"sink stdout", "sink logfile", "sink serial", "sink mqtt",
                              "codec encode", "codec decode"}
    for r in per_event.values():
        assert "skipped" in r or (r["runs"] == 30 and 0 < r["p50_ms"] <= r["p99_ms"])
    (mod,) = report["models"]
    assert mod["bytes"] == Path(mod["path"]).stat().st_size
    assert mod["accuracy"]["status"] == "no evaluation yet"   # a tone model: never evaluated


def test_markdown_and_png_are_written(run):
    _, report, folder = run
    assert report["files"] == {"json": "hop_budget.json", "markdown": "hop_budget.md",
                               "png": "hop_budget.png"}
    text = (folder / "hop_budget.md").read_text()
    assert text.startswith("# Hop-budget report: profile `default`")
    for stage in ("frontend", "multitask", "keywords", "scenes", "whole hop", "sink mqtt"):
        assert f"| {stage} |" in text
    assert "no evaluation yet" in text and "real-time factor" in text
    assert (folder / "hop_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_json_and_markdown_only(run, tmp_path, monkeypatch, caplog):
    _, report, _ = run
    real = bench.importlib.import_module

    def no_matplotlib(name, *args):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args)

    monkeypatch.setattr(bench.importlib, "import_module", no_matplotlib)
    (tmp_path / "hop_budget.png").write_bytes(b"old picture")
    with caplog.at_level("INFO", logger="hopwise.bench"):
        files = bench.write_report(dict(report), tmp_path)
    assert files["png"] is None and not (tmp_path / "hop_budget.png").exists()
    assert json.loads(files["json"].read_text())["files"]["png"] is None
    assert files["markdown"].is_file()
    assert "matplotlib is not installed" in caplog.text


def test_bench_realtime_paces_the_audio(tone_model, tmp_path):
    """bench.realtime: the pipeline waits for its audio as from a microphone (what a stage's
    worker thread needs to be measured fairly), so the wall clock runs with the audio."""
    sets = [f"project.build_dir='{tmp_path / 'build'}'", "bench.realtime=true",
            _install_model(tone_model, tmp_path / "build")]
    cfg = load_config("default", sets)
    fast = bench.measure_pipeline(load_config("default", sets[:1] + sets[2:]), 1.0)
    paced = bench.measure_pipeline(cfg, 1.0)
    assert paced["audio_s"] == pytest.approx(1.0)
    assert paced["wall_s"] >= 0.9 > fast["wall_s"]
    assert paced["stages"].keys() == fast["stages"].keys()


def test_accuracy_comes_from_the_newest_evaluation(tmp_path):
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'"])
    manifest = {"_path": "m.json", "variant": "mt60j", "created_utc": "2026-01-01T00:00:00+00:00",
                "metrics": {"test_float": {"mixed_keyword": 0.80}, "test_int8": {"mixed_keyword": 0.79}},
                "int8_vs_float_on_calibration": {"argmax_agreement": {"keyword": 0.97}}}
    assert bench.accuracy(cfg, {"variant": "mt60j"})["status"] == "no evaluation yet"
    got = bench.accuracy(cfg, manifest)
    assert (got["status"], got["float"], got["int8"]) == ("measured", {"mixed_keyword": 0.80},
                                                          {"mixed_keyword": 0.79})
    assert got["calibration_agreement"] == {"keyword": 0.97}
    table = BuildPaths(cfg).seed_table_report()
    evaluated = tmp_path / "mt60j_int8.tflite"
    evaluated.write_bytes(b"the model the seed table ran")
    table.write_text(json.dumps({"variants": {"mt60j": {
        "int8_file": str(evaluated), "float": {"mixed_keyword": {"accuracy": 0.85}},
        "int8": {"mixed_keyword": {"accuracy": 0.84}}}}}))
    got = bench.accuracy(cfg, manifest)          # the table is newer than the manifest
    assert (got["source"], got["int8"]) == (str(table), {"mixed_keyword": 0.84})
    assert got["same_model"] is False            # ... but of other bytes than this model's
    assert bench.accuracy(cfg, {**manifest, "sha256": sha256_file(evaluated)})["same_model"]
    old = time.time() - 10 * 365 * 86400
    os.utime(table, (old, old))                  # now the manifest is the newer one
    assert bench.accuracy(cfg, manifest)["int8"] == {"mixed_keyword": 0.79}
    assert bench.accuracy(cfg, {**manifest, "variant": "kw", "metrics": {}})["status"] == \
        "no evaluation yet"                      # the table has no row of this variant


def test_no_model_says_to_build_one(tmp_path, capsys):
    assert device_main(["bench", "--set", f"project.build_dir='{tmp_path}'"]) == 2
    assert "make train export" in capsys.readouterr().err


def test_targets():
    from benchmarks.hop_budget import host_folder, parse_target
    from export.deploy import DeployError
    t = parse_target("pi@raspberrypi.local", "/opt/hopwise")
    assert (t.user_host, t.path, t.port, host_folder(t)) == ("pi@raspberrypi.local",
                                                             "/opt/hopwise", None,
                                                             "raspberrypi.local")
    assert parse_target("pi@10.0.0.2:/srv/hw", "/opt/hopwise").path == "/srv/hw"
    assert parse_target("ssh://pi@h:2222/p", "/opt/hopwise").port == 2222
    with pytest.raises(DeployError, match="names no Pi"):
        parse_target("raspberrypi", "/opt/hopwise")


@pytest.mark.timeout(240)
def test_bench_on_a_target_over_a_real_ssh_server(tmp_path, sshd, tone_model):
    """``make bench TARGET=...``: the profile is deployed over SSH as a release (the layout,
    self-check and ``current`` of ``make deploy``), the report runs in ``current`` with the
    release's environment, its own device/ package and profile, and comes back under
    reports/<profile>/<host>/. The "Pi" is this machine, so the environment is
    ``deploy.env = "host"`` (this machine's Python and packages; a Pi gets pip)."""
    from benchmarks.hop_budget import run_remote
    from export.deploy import DeployError, SSHTarget
    port, options = sshd
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'", *SHORT,
                                  _install_model(tone_model, tmp_path / "build"),
                                  "deploy.env=host", "deploy.trial_s=1", "selfcheck.budget=false"])
    remote = tmp_path / "pi" / "opt" / "hopwise"
    target = SSHTarget(f"{getpass.getuser()}@127.0.0.1", str(remote), port)
    with pytest.raises(DeployError, match="deploy a release first") as err:   # nothing there yet
        run_remote(cfg, target, deploy=False, ssh_options=options)
    assert err.value.exit_code == 4
    local = run_remote(cfg, target, ssh_options=options)
    assert local == tmp_path / "build" / "reports" / "default" / "127.0.0.1"
    current = remote / os.readlink(remote / "current")
    assert current.parent.name == "releases" and (current / "selfcheck.json").is_file()
    report = json.loads((local / "hop_budget.json").read_text())
    assert Path(report["runtime_root"]).resolve() == current.resolve()  # the release's code ...
    assert report["bundle_profile"] == "default"        # ... with the release's profile
    assert report["pipeline"]["tensorflow_loaded"] is False
    assert [r["name"] for r in report["stages"]][-1] == "whole hop"
    assert (local / "hop_budget.md").read_text().startswith("# Hop-budget report: profile `default`")
    assert (current / "build" / "reports" / "default" / "hop_budget.json").is_file()
    assert {p.name for p in local.iterdir()} == {"hop_budget.json", "hop_budget.md", "hop_budget.png"}
    # --no-deploy measures the same current release again: no new release appears.
    assert run_remote(cfg, target, deploy=False, ssh_options=options) == local
    assert len(list((remote / "releases").iterdir())) == 1
