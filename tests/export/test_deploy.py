"""Deploy: the bundle holds what the Pi needs, refuses tampered models, and travels over a real
SSH server (the ``sshd`` fixture of tests/conftest.py, on a loopback port)."""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from device.config import load_config
from device.manifest import write_manifest
from export.deploy import DeployError, SSHTarget, build_bundle, main, push_over_ssh


def _fake_export(folder: Path) -> Path:
    """The non-streaming model (returned: the default profile's fallback) and the streaming one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in (("multitask_stream", 4), ("multitask", 98)):  # returns the last
        model = folder / f"{name}_int8.tflite"
        model.write_bytes(b"TFL3" + os.urandom(256))  # the bundle checks hashes, not contents
        write_manifest(model, name=name, kind=name, frontend={"name": "keyword"},
                       input={"shape": [1, frames, 40, 1], "dtype": "int8"},
                       outputs=[{"name": "keyword", "index": 0, "labels": ["a", "b"]}])
    return model


@pytest.fixture
def cfg(tmp_path):
    return load_config("default", [f"project.build_dir='{tmp_path / 'build'}'"])


def test_local_bundle_has_runtime_models_and_checksums(tmp_path, cfg):
    _fake_export(tmp_path / "build" / "export")
    bundle = build_bundle(cfg, tmp_path / "out", signal=False)
    for rel in ("device/frontend.py", "device/profiles/default.toml", "build/export/multitask_int8.tflite",
                "build/export/multitask_int8.json", "requirements-device.txt", "install.sh", "bundle.json"):
        assert (bundle / rel).is_file(), rel
    listing = json.loads((bundle / "bundle.json").read_text())["files"]
    assert "build/export/multitask_int8.tflite" in listing
    reqs = (bundle / "requirements-device.txt").read_text()
    assert "tensorflow" not in reqs and "paho-mqtt" in reqs
    with tarfile.open(tmp_path / "out" / "hopwise-bundle.tar.gz") as tar:
        assert "hopwise/build/export/multitask_int8.json" in tar.getnames()
    # The bundled profile, run from the bundle as the Pi runs it, finds the bundled model.
    code = ("from device.config import load_config; c = load_config('profile.toml'); "
            "print((c.build_dir / c['stages.multitask.model']).resolve())")
    out = subprocess.run([sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    # (the default profile runs the streaming model; its fallback, the reference, travels with it)
    assert Path(out.stdout.strip()) == (bundle / "build/export/multitask_stream_int8.tflite").resolve()
    assert "build/export/multitask_int8.tflite" in listing


def test_a_password_in_the_profile_never_enters_the_bundle(tmp_path, caplog):
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                  "sinks.mqtt.password=hunter2"])
    _fake_export(tmp_path / "build" / "export")
    bundle = build_bundle(cfg, tmp_path / "out", signal=False)
    with tarfile.open(tmp_path / "out" / "hopwise-bundle.tar.gz") as tar:
        blobs = [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()]
    assert not any(b"hunter2" in blob for blob in blobs)
    assert b"hunter2" not in (bundle / "profile.toml").read_bytes()
    assert any("not copied into the bundle" in r.getMessage() for r in caplog.records)
    assert "hunter2" not in caplog.text


def test_tampered_or_missing_models_are_refused(tmp_path, cfg, capsys):
    with pytest.raises(DeployError, match="make train export"):
        build_bundle(cfg, tmp_path / "out")
    model = _fake_export(tmp_path / "build" / "export")
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(DeployError, match="sha256"):
        build_bundle(cfg, tmp_path / "out")
    assert main(["--set", f"project.build_dir='{tmp_path / 'build'}'", "--target",
                 str(tmp_path / "o")]) == 2
    assert "re-run `make export`" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("pi@raspberrypi.local:/opt/hopwise", ("pi@raspberrypi.local", "/opt/hopwise", None)),
    ("ssh://pi@10.0.0.2:2222/srv/hw", ("pi@10.0.0.2", "/srv/hw", 2222)),
    ("pi@10.0.0.2:2222:/srv/hw", ("pi@10.0.0.2", "/srv/hw", 2222)),
    ("pi@host:relative/dir", ("pi@host", "relative/dir", None)),
    ("build/deploy", None),
])
def test_target_parsing(text, expected):
    target = SSHTarget.parse(text)
    assert (None if target is None else (target.user_host, target.path, target.port)) == expected


@pytest.mark.timeout(60)
def test_deploy_over_a_real_ssh_server(tmp_path, cfg, sshd):
    port, options = sshd
    _fake_export(tmp_path / "build" / "export")
    bundle = build_bundle(cfg, tmp_path / "out", signal=False)
    remote = tmp_path / "pi" / "opt" / "hopwise"
    push_over_ssh(bundle, SSHTarget(f"{getpass.getuser()}@127.0.0.1", str(remote), port),
                  ssh_options=options)
    sent = json.loads((bundle / "bundle.json").read_text())["files"]
    for rel in sent:
        assert (remote / rel).read_bytes() == (bundle / rel).read_bytes(), rel
    with pytest.raises(DeployError, match="failed"):
        push_over_ssh(bundle, SSHTarget(f"nobody-here@127.0.0.1", str(remote), port),
                      ssh_options=options)
