"""Bundle the device runtime with the exported models, and put it where the Pi runs it.

``python -m export.deploy --profile default`` writes ``build/deploy/hopwise/`` (and a
``.tar.gz`` of it): the ``device/`` and ``firmware_bridge/`` packages, the models from
``build/export`` with their manifests (each checked against its sha256 first), the profile,
``requirements-device.txt``, ``install.sh`` and the systemd unit. ``bundle.json`` lists every file
with its sha256 so the Pi can tell a damaged copy.

With ``--target user@host:/opt/hopwise`` (or ``ssh://user@host:port/path``) the bundle is
streamed over SSH (``tar | ssh``; your SSH keys and ``~/.ssh/config`` are used as they are) and,
with ``--install``, ``install.sh`` is run there. With no target it stays local: the default is
the folder in ``[deploy] target``, which is what a build machine without a Pi gets.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from device.config import (REPO_ROOT, ConfigError, add_profile_arguments, config_from_args,
                           dump_toml)
from device.manifest import ManifestError, load_manifest, sha256_file
from device.paths import BuildPaths

log = logging.getLogger("hopwise.deploy")

PACKAGES = ("device", "firmware_bridge")
SKIP_PARTS = {"__pycache__", "build", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".o", ".so"}

INSTALL_SH = """#!/bin/sh
# Installs the hopwise device runtime on a Raspberry Pi (Raspberry Pi OS / Debian).
# Usage: sh install.sh [--system]   (--system also installs and enables the systemd unit)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get install -y python3-venv libportaudio2 >/dev/null
fi
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -r "$here/requirements-device.txt"
if [ "${1:-}" = "--system" ]; then
  # The unit names /opt/hopwise and the default profile; point it at this folder and the
  # profile the models were trained with.
  id hopwise >/dev/null 2>&1 || useradd --system --no-create-home --groups audio,dialout hopwise
  home=true; case "$here" in /home/*|/root/*) home=read-only;; esac  # the unit hides /home
  sed -e "s#/opt/hopwise#$here#g" -e "s#--profile default#--profile $here/profile.toml#" \
    -e "s#ProtectHome=true#ProtectHome=$home#" \
    "$here/device/systemd/hopwise.service" > /etc/systemd/system/hopwise.service
  systemctl daemon-reload && systemctl enable --now hopwise.service
fi
echo "hopwise installed in $here; run: $here/.venv/bin/python -m device run --profile $here/profile.toml"
"""


class DeployError(RuntimeError):
    """Deploying failed; the message says what and how to fix it."""


@dataclass
class SSHTarget:
    user_host: str
    path: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> "SSHTarget | None":
        """``user@host:/path`` or ``ssh://user@host:port/path``; None for a local folder."""
        m = re.fullmatch(r"ssh://([^/:]+)(?::(\d+))?(/.*)", text)
        if m:
            return cls(m.group(1), m.group(3), int(m.group(2)) if m.group(2) else None)
        m = re.fullmatch(r"([^/:\s]+@[^/:\s]+|[^/:\s]+):(.+)", text)
        if m and not Path(text).exists():
            return cls(m.group(1), m.group(2))
        return None

    def ssh_command(self, ssh_options: list[str]) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *port, *ssh_options, self.user_host]


def _requirements() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["device"])


def _copy_package(name: str, dest: Path) -> None:
    src = REPO_ROOT / name
    for path in src.rglob("*"):
        rel = path.relative_to(REPO_ROOT)
        if path.is_dir() or SKIP_PARTS & set(rel.parts) or path.suffix in SKIP_SUFFIXES:
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)


def collect_models(export_dir: Path) -> list[tuple[Path, Path]]:
    """Every ``.tflite`` (and ``.npz``: the ESN) in ``export_dir`` with its manifest, each
    checked against its sha256."""
    models = sorted(export_dir.glob("*.tflite")) + sorted(export_dir.glob("*.npz"))
    if not models:
        raise DeployError(f"no models in {export_dir}: run `make train export` first")
    pairs = []
    for model in models:
        manifest = load_manifest(model)
        actual = sha256_file(model)
        if actual != manifest["sha256"]:
            raise DeployError(f"{model} does not match its manifest's sha256; it changed after "
                              f"export: re-run `make export`")
        pairs.append((model, Path(manifest["_path"])))
    return pairs


def build_bundle(cfg, out_dir: Path, export_dir: Path | None = None) -> Path:
    """Assemble the bundle folder ``out_dir/hopwise`` and ``out_dir/hopwise-bundle.tar.gz``."""
    paths = BuildPaths(cfg)
    export_dir = export_dir or paths.export_dir
    bundle = out_dir / "hopwise"
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    for name in PACKAGES:
        if (REPO_ROOT / name).is_dir():
            _copy_package(name, bundle)
    # Models sit where the profile looks for them (the export folder under the build folder,
    # which the bundled profile names "build"), so it runs unchanged on the Pi with the bundle
    # folder as its root.
    models_dir = bundle / "build" / paths.export_dir.relative_to(paths.root)
    models_dir.mkdir(parents=True)
    for model, manifest in collect_models(export_dir):
        shutil.copy2(model, models_dir / model.name)
        shutil.copy2(manifest, models_dir / manifest.name)
    # The profile the models were trained with travels as one file, parents and --set overrides
    # merged in, so the Pi runs exactly what was trained and needs nothing from the host.
    deployed = cfg.to_dict()
    deployed["project"]["build_dir"] = "build"  # the bundle's own layout, wherever the host's was
    # Secrets never travel in the bundle (it is copied, tarred, left on disks): the Pi reads a
    # password from its own mode-600 file or the environment (device.sinks.mqtt.resolve_password).
    for name, section in (deployed.get("sinks") or {}).items():
        if isinstance(section, dict) and section.get("password"):
            section["password"] = ""
            log.warning("sinks.%s.password is not copied into the bundle: on the Pi, put it in a "
                        "mode-600 file named by sinks.%s.password_file (e.g. /etc/hopwise/"
                        "mqtt_password) or in HOPWISE_MQTT_PASSWORD", name, name)
    (bundle / "profile.toml").write_text(f"# hopwise profile {cfg.name!r} as deployed\n"
                                         + dump_toml(deployed))
    (bundle / "requirements-device.txt").write_text("\n".join(_requirements()) + "\n")
    (bundle / "install.sh").write_text(INSTALL_SH)
    (bundle / "install.sh").chmod(0o755)
    files = {str(p.relative_to(bundle)): sha256_file(p) for p in sorted(bundle.rglob("*")) if p.is_file()}
    (bundle / "bundle.json").write_text(json.dumps({"profile": cfg.name, "files": files}, indent=2) + "\n")
    tarball = out_dir / "hopwise-bundle.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(bundle, arcname="hopwise")
    log.info("bundle: %s (%d files, %.1f kB packed)", bundle, len(files) + 1, tarball.stat().st_size / 1e3)
    return bundle


def push_over_ssh(bundle: Path, target: SSHTarget, install: bool = False,
                  ssh_options: list[str] | None = None, timeout_s: float = 300.0) -> None:
    """Stream the bundle folder to ``target`` with ``tar | ssh`` and optionally run install.sh."""
    if shutil.which("ssh") is None:
        raise DeployError("ssh is not installed here: install openssh-client (apt-get install "
                          "openssh-client) or deploy to a local folder and copy it yourself")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(bundle)), recursive=False)
    dest = shlex.quote(target.path)
    remote = f"mkdir -p {dest} && tar xzf - -C {dest}"
    if install:
        remote += f" && sh {dest}/install.sh"
    cmd = target.ssh_command(["-o", "BatchMode=yes", *(ssh_options or [])]) + [remote]
    log.info("sending %s to %s:%s", bundle.name, target.user_host, target.path)
    try:
        proc = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"ssh to {target.user_host} timed out after {timeout_s:.0f} s; check the "
                          f"Pi is on and reachable (`ssh {target.user_host} true`)") from exc
    if proc.returncode != 0:
        raise DeployError(f"ssh to {target.user_host} failed (exit {proc.returncode}): "
                          f"{proc.stderr.decode(errors='replace').strip()}\nCheck that `ssh "
                          f"{target.user_host} true` works without a password (BatchMode).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.deploy",
        description="Bundle the device runtime with the exported models and deploy it: to a local "
                    "folder (default: the profile's [deploy] target) or to a Pi over SSH.")
    add_profile_arguments(parser, "sinks.mqtt.enabled=true")
    parser.add_argument("--target", help="local folder, user@host:/path or ssh://user@host:port/path")
    parser.add_argument("--export-dir", type=Path, help="where the models are (default: build/export)")
    parser.add_argument("--install", action="store_true", help="run install.sh on the Pi after copying")
    parser.add_argument("--ssh-option", action="append", default=[], help="extra ssh -o style options")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = config_from_args(args)
        target_text = args.target or cfg["deploy.target"]
        ssh = SSHTarget.parse(target_text)
        local = BuildPaths(cfg).deploy_dir if ssh else Path(target_text)
        if not local.is_absolute():
            local = REPO_ROOT / local
        bundle = build_bundle(cfg, local, args.export_dir)
        if ssh:
            push_over_ssh(bundle, ssh, install=args.install, ssh_options=args.ssh_option)
            print(f"deployed to {target_text}")
        else:
            print(f"deployed to {bundle} (no Pi named: pass TARGET=user@host:/path to send it to one)")
    except (ConfigError, ManifestError, DeployError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
