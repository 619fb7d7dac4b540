"""Releases over a real SSH server (the ``sshd`` fixture, a free loopback port, a throwaway key):
the installed layout, the self-check, ``current``; a tampered model and a runtime that dies
before its first heartbeat both leave the previous release current; old releases are pruned.

The target is this machine, so the device environment is ``deploy.env = "host"`` (this
machine's Python and packages, no network); ``pip`` is what a Pi gets and is not run here.
systemd is not used (deploy uses it only over SSH where it runs and deploy may manage the unit):
the service command runs in the foreground on the bundled signal.
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from device.config import load_config
from export.deploy import (DeployError, Host, SSHTarget, build_bundle, deploy_release,
                           read_releases, write_listing)

# The tone stand-in under the name of the model the default profile runs (the streaming one).
PROFILE_MODEL = Path(load_config("default")["stages.multitask.model"]).stem

pytestmark = pytest.mark.timeout(240)
# The hop-budget row is tested on its own (tests/device/test_selfcheck.py); here, on a shared
# machine whose load makes a 10 ms p99 a coin toss, it would decide tests of deploy's steps.
NO_BUDGET = ["selfcheck.budget=false"]
# The stand-in export (a tone model) has no wake verifier, which the default profile runs: these
# tests deploy it without one, as a profile with verifier = "" would.
NO_VERIFIER = ["stages.keywords.verifier=''"]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    """The tone stand-in as the exported model (built with TensorFlow, ~8 s): it answers the
    scripted tones of the self-check signal, so the expected events are not empty."""
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_model
    folder = tmp_path_factory.mktemp("export")
    build_tone_model(folder, load_config("default"), name=PROFILE_MODEL)
    return folder


def _cfg(tmp_path: Path, *extra: str):
    return load_config("default", [f"project.build_dir='{tmp_path / 'build'}'", "deploy.env=host",
                                   "deploy.trial_s=1.5", "selfcheck.budget_audio_s=2",
                                   "deploy.keep_releases=3", *NO_BUDGET, *NO_VERIFIER, *extra])


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest, symlinks=True)
    return dest


def test_releases_selfcheck_and_rollback_over_ssh(tmp_path, export_dir, sshd):
    port, options = sshd
    root = tmp_path / "pi" / "opt" / "hopwise"
    host = Host(str(root), SSHTarget(f"{getpass.getuser()}@127.0.0.1", str(root), port), options)
    cfg = _cfg(tmp_path)

    # First deploy: layout, environment created, self-check passed, current switched.
    bundle = build_bundle(cfg, tmp_path / "out", export_dir)
    expected = json.loads((bundle / "selfcheck" / "expected.json").read_text())["events"]
    assert {e["type"] for e in expected} >= {"wake", "command"}
    t0 = time.perf_counter()
    first = deploy_release(bundle, host, cfg)
    first_s = time.perf_counter() - t0
    rel = root / "releases" / first.release
    assert os.readlink(root / "current") == f"releases/{first.release}"
    assert os.readlink(rel / ".venv") == f"../../envs/{first.env}" and first.env_created
    assert (rel / "build" / "export" / f"{PROFILE_MODEL}.tflite").is_file()
    assert json.loads((rel / "selfcheck.json").read_text())["passed"] is True
    assert "selfcheck: passed" in first.selfcheck and "first heartbeat" in first.service
    assert (rel / "service.log").read_text().count('"heartbeat"') >= 1

    # Second deploy, same requirements (another decision threshold): nothing installed.
    cfg2 = _cfg(tmp_path, "decisions.wake_threshold=0.55")
    bundle2 = build_bundle(cfg2, tmp_path / "out2", export_dir)
    t0 = time.perf_counter()
    second = deploy_release(bundle2, host, cfg2)
    second_s = time.perf_counter() - t0
    assert second.env == first.env and not second.env_created
    assert second.previous == first.release
    assert os.readlink(root / "current") == f"releases/{second.release}"

    # A tampered model: the self-check fails, current stays at the second release.
    bad = _copy(bundle2, tmp_path / "tampered")
    model = bad / "build" / "export" / f"{PROFILE_MODEL}.tflite"
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    with pytest.raises(DeployError, match="self-check of release .* failed") as err:
        deploy_release(bad, host, cfg2)
    assert "bundle       FAIL" in str(err.value) and "current is unchanged" in str(err.value)
    assert os.readlink(root / "current") == f"releases/{second.release}"

    # A runtime that passes the self-check but dies before its first heartbeat: rolled back.
    dead = _copy(bundle2, tmp_path / "dead")
    main_py = dead / "device" / "__main__.py"
    main_py.write_text(main_py.read_text().replace(
        "def cmd_run(args) -> int:\n",
        "def cmd_run(args) -> int:\n    raise SystemExit(1)  # test: no first heartbeat\n", 1))
    write_listing(dead, cfg2.name)
    with pytest.raises(DeployError, match="passed its self-check but the service command exited 1"
                       ) as err:
        deploy_release(dead, host, cfg2)
    assert f"current is back at {second.release}, which runs again" in str(err.value)
    assert os.readlink(root / "current") == f"releases/{second.release}"

    state = read_releases(host)
    failed = [n for n, bad_ in state.releases.items() if bad_]
    assert len(failed) == 2 and state.current == second.release
    # keep_releases=3: the next good deploy drops the oldest, never current, and keeps one env.
    third = deploy_release(bundle, host, cfg)
    state = read_releases(host)
    assert len(state.releases) == 3 and first.release not in state.releases
    assert third.removed and state.envs == [first.env]
    print(f"\nloopback deploy: first {first_s:.1f} s (steps {first.steps_s}), second with the "
          f"same requirements {second_s:.1f} s (steps {second.steps_s})")



def _broker(tmp_path: Path):
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    from benchmarks.mosquitto import Broker
    return Broker(tmp_path / "broker").start()


def _main_args(tmp_path: Path, target: str, options: list[str], export_dir: Path, *extra: str):
    sets = [f"project.build_dir='{tmp_path / 'build'}'", "deploy.env=host", "deploy.trial_s=1.5",
            *NO_BUDGET, *NO_VERIFIER, *extra]
    return ([a for s in sets for a in ("--set", s)] + ["--target", target, "--export-dir",
            str(export_dir)] + [f"--ssh-option={o}" for o in options])


def _dead_runtime(bundle: Path, dest: Path, name: str) -> Path:
    """A copy of ``bundle`` whose service command exits 1 before its first hop."""
    dead = _copy(bundle, dest)
    main_py = dead / "device" / "__main__.py"
    main_py.write_text(main_py.read_text().replace(
        "def cmd_run(args) -> int:\n",
        "def cmd_run(args) -> int:\n    raise SystemExit(1)  # test: no first heartbeat\n", 1))
    write_listing(dead, name)
    return dead


def test_heartbeat_over_mqtt_and_an_exit_code_per_step(tmp_path, export_dir, sshd, capsys):
    """deploy.heartbeat_via = "mqtt": the first heartbeat is read from a real mosquitto by
    ``python -m device heartbeat`` on the target, at the first hop (not after
    runtime.status_interval_s); every failing step exits with its own code and names itself."""
    from benchmarks.mosquitto import free_port
    from export.deploy import EXIT_CODES, main
    port, options = sshd
    user = getpass.getuser()
    broker = _broker(tmp_path)
    root = tmp_path / "pi" / "opt" / "hopwise"
    target = f"ssh://{user}@127.0.0.1:{port}{root}"
    mqtt = ["deploy.heartbeat_via=mqtt", "sinks.mqtt.enabled=true", "sinks.mqtt.host=127.0.0.1",
            f"sinks.mqtt.port={broker.port}"]
    try:
        t0 = time.perf_counter()
        assert main(_main_args(tmp_path, target, options, export_dir, *mqtt)) == 0, \
            capsys.readouterr().err
        first_s = time.perf_counter() - t0
        out = capsys.readouterr().out
        assert "first heartbeat on MQTT at 0.01 s of audio" in out, out
        current = os.readlink(root / "current")
        assert '"first": true' in (root / current / "heartbeat.log").read_text()

        # A runtime that dies before its first heartbeat: nothing on MQTT, rolled back, step 9.
        host = Host(str(root), SSHTarget(f"{user}@127.0.0.1", str(root), port), options)
        cfg = _cfg(tmp_path, *mqtt)
        dead = _dead_runtime(build_bundle(cfg, tmp_path / "out", export_dir), tmp_path / "dead",
                             cfg.name)
        with pytest.raises(DeployError, match="with no heartbeat on MQTT") as err:
            deploy_release(dead, host, cfg)
        assert err.value.step == "heartbeat" and err.value.exit_code == EXIT_CODES["heartbeat"] == 9
        assert f"current is back at {Path(current).name}, which runs again" in str(err.value)
        assert os.readlink(root / "current") == current

        # The broker gone: the waiter says so; a fresh folder has nothing to go back to.
        broker.stop()
        fresh = tmp_path / "pi" / "fresh"
        code = main(_main_args(tmp_path, f"ssh://{user}@127.0.0.1:{port}{fresh}", options,
                               export_dir, *mqtt, "deploy.heartbeat_timeout_s=3"))
        err_text = capsys.readouterr().err
        assert code == 9 and err_text.startswith("deploy: heartbeat failed:"), err_text
        assert "could not be reached" in err_text and "nothing is current" in err_text
    finally:
        broker.stop()

    # A tampered model in a release: the self-check step, 7, current unchanged.
    bad = _copy(build_bundle(cfg, tmp_path / "out3", export_dir), tmp_path / "tampered")
    model = bad / "build" / "export" / f"{PROFILE_MODEL}.tflite"
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    with pytest.raises(DeployError) as err:
        deploy_release(bad, host, _cfg(tmp_path))
    assert err.value.step == "selfcheck" and err.value.exit_code == 7
    assert os.readlink(root / "current") == current

    # A model that does not match its manifest on this machine: nothing sent, 2.
    bad_export = tmp_path / "bad-export"
    shutil.copytree(export_dir, bad_export)
    (bad_export / f"{PROFILE_MODEL}.tflite").write_bytes(b"TFL3 not the exported model")
    assert main(_main_args(tmp_path, target, options, bad_export)) == EXIT_CODES["config"] == 2
    assert "re-run `make export`" in capsys.readouterr().err

    # Nobody listening on the port: the ssh step, 3, naming the check to make.
    nowhere = f"ssh://{user}@127.0.0.1:{free_port()}{root}"
    assert main(_main_args(tmp_path, nowhere, options, export_dir)) == EXIT_CODES["ssh"] == 3
    err_text = capsys.readouterr().err
    assert err_text.startswith("deploy: ssh failed:") and "without a password" in err_text
    assert os.readlink(root / "current") == current
    print(f"\nloopback deploy with the heartbeat on MQTT: {first_s:.1f} s")


def test_every_exit_code_is_in_the_help(capsys):
    from export.deploy import EXIT_CODES, main
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for step, code in EXIT_CODES.items():
        assert f"{code} {step}" in text
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)   # one code per step
