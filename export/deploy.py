"""Bundle the device runtime with the exported models, and put it where the Pi runs it.

``python -m export.deploy --profile default`` writes ``build/deploy/hopwise/`` (and a
``.tar.gz`` of it): the ``device/``, ``firmware_bridge/`` and ``benchmarks/`` packages (the
benchmark suites, so that they run unchanged on the Pi), the models from
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
import hashlib
import io
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from device.config import (REPO_ROOT, ConfigError, add_profile_arguments, config_from_args,
                           dump_toml)
from device.manifest import ManifestError, load_manifest, sha256_file
from device.paths import BuildPaths

log = logging.getLogger("hopwise.deploy")

# benchmarks/ travels too (a few dozen kB): `make bench TARGET=...` runs the hop-budget report
# from the bundle (python -m device bench), and the pytest-benchmark suites run there unchanged
# once pytest-benchmark is installed; they import only what the Pi has (tests/test_architecture).
PACKAGES = ("device", "firmware_bridge", "benchmarks")
SKIP_PARTS = {"__pycache__", "build", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".o", ".so"}
SELFCHECK_TONES_S = 9.0   # the tone part of the self-check signal: two wake words, a siren

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
  sed -e "s#/opt/hopwise/current#$here#g" -e "s#/opt/hopwise#$here#g" \
    -e "s#ProtectHome=true#ProtectHome=$home#" \
    "$here/device/systemd/hopwise.service" > /etc/systemd/system/hopwise.service
  systemctl daemon-reload && systemctl enable --now hopwise.service
fi
echo "hopwise installed in $here; run: $here/.venv/bin/python -m device run --profile $here/profile.toml"
"""


# Exit codes of `python -m export.deploy` (and `make deploy` / `make rollback`): one per step, so
# a script (or CI) can tell "the Pi is off" from "the new model is bad". Every message also names
# the step, the place and the remote output.
EXIT_CODES = {
    "config": 2,        # the profile, the arguments, or the models on this machine (nothing sent)
    "ssh": 3,           # the target cannot be reached: ssh missing, refused, no key, timed out
    "remote": 4,        # a remote bookkeeping step failed (reading releases, marking, pruning)
    "upload": 5,        # the bundle could not be unpacked into releases/<version>
    "environment": 6,   # the device environment could not be created (pip, venv)
    "selfcheck": 7,     # the new release failed its self-check: current is unchanged
    "switch": 8,        # current could not be switched
    "heartbeat": 9,     # no first heartbeat: current is back at the previous release, running
    "rollback": 10,     # putting the previous release back (or `make rollback`) failed too
}
EXIT_HELP = "exit codes: 0 deployed; " + "; ".join(
    f"{code} {step}" for step, code in EXIT_CODES.items()) + \
    " (the message names the step, where, and the remote output)"


class DeployError(RuntimeError):
    """Deploying failed; the message says what and how to fix it, ``step`` which step failed
    (a key of `EXIT_CODES`, whose value `main` exits with)."""

    def __init__(self, message: str, step: str = "config"):
        super().__init__(message)
        self.step = step

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.step]


@dataclass
class SSHTarget:
    user_host: str
    path: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> "SSHTarget | None":
        """``user@host:/path``, ``user@host:port:/path`` or ``ssh://user@host:port/path``; None
        for a local folder."""
        m = re.fullmatch(r"ssh://([^/:]+)(?::(\d+))?(/.*)", text)
        if m:
            return cls(m.group(1), m.group(3), int(m.group(2)) if m.group(2) else None)
        m = re.fullmatch(r"([^/:\s]+@[^/:\s]+|[^/:\s]+):(\d+):(/.*)", text)
        if m and not Path(text).exists():
            return cls(m.group(1), m.group(3), int(m.group(2)))
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


def write_listing(bundle: Path, profile: str) -> dict:
    """Write ``bundle.json``: every file of the bundle with its sha256 (what
    ``python -m device selfcheck`` checks on the Pi); return the listing."""
    files = {str(p.relative_to(bundle)): sha256_file(p) for p in sorted(bundle.rglob("*"))
             if p.is_file() and p.name != "bundle.json"}
    (bundle / "bundle.json").write_text(json.dumps({"profile": profile, "files": files},
                                                   indent=2) + "\n")
    return files


def render_selfcheck_signal(cfg, path: Path) -> str:
    """Write the self-check's test signal to ``path`` (16-bit FLAC at the keyword frontend's rate)
    and return what it holds in words.

    The demo's script (`export.demo.make_recording`: "computer ... yes", "computer ... stop",
    "go" spoken with espeak-ng over a street scene), which a trained model answers, followed by
    ``SELFCHECK_TONES_S`` of `device.bench.scripted_tones`, which the tone stand-in model answers;
    without espeak-ng only the tones.
    """
    import numpy as np
    import soundfile as sf

    from device.audio_source import render_tones
    from device.bench import scripted_tones
    rate = int(cfg["frontend.keyword.sample_rate"])
    parts, what = [], []
    try:
        from export.demo import make_recording
        speech = path.with_name("speech.wav")
        make_recording(cfg, speech)
        audio, speech_rate = sf.read(speech, dtype="float32")
        speech.unlink()
        if speech_rate == rate:
            parts.append(audio)
            what.append(f"the demo script spoken over a street scene ({len(audio) / rate:.1f} s)")
    except Exception as exc:  # noqa: BLE001  - no speech synthesiser: the tones alone still check
        log.warning("self-check signal without speech (%s): tones only", exc)
    parts.append(render_tones(scripted_tones(SELFCHECK_TONES_S), SELFCHECK_TONES_S, rate))
    what.append(f"scripted tones ({SELFCHECK_TONES_S:g} s)")
    audio = np.concatenate(parts)
    hop = int(round(rate * float(cfg["pipeline.hop_ms"]) / 1000))
    audio = np.pad(audio, (0, -len(audio) % hop))   # whole hops: no remainder left unprocessed
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return ", then ".join(what)


def write_selfcheck_signal(bundle: Path) -> list[dict]:
    """Render the test signal into ``bundle/selfcheck/`` and record beside it the events the
    bundled profile and models raise on it here (`device.selfcheck.replay_events`, the same code
    the Pi's self-check runs), so the Pi checks it runs the exported model as this machine does."""
    import platform

    from device.config import load_config
    from device.selfcheck import EXPECTED, SIGNAL, replay_events
    bcfg = load_config(bundle / "profile.toml", [f"project.build_dir='{bundle / 'build'}'"])
    what = render_selfcheck_signal(bcfg, bundle / SIGNAL)
    try:
        events = replay_events(bcfg, bundle / SIGNAL)
    except (ManifestError, ValueError, RuntimeError) as exc:
        raise DeployError(f"the bundled models do not run here, so the self-check's expected "
                          f"events cannot be recorded: {exc}") from exc
    if not events:
        log.warning("the model raised no events on the self-check signal: the self-check on the "
                    "Pi can then only show that it runs")
    (bundle / EXPECTED).write_text(json.dumps({"what": what, "host": platform.node(),
                                               "events": events}, indent=1) + "\n")
    return events


def build_bundle(cfg, out_dir: Path, export_dir: Path | None = None, signal: bool = True) -> Path:
    """Assemble the bundle folder ``out_dir/hopwise`` and ``out_dir/hopwise-bundle.tar.gz``.

    With ``signal`` (the default) the self-check's test signal and the events the models raise on
    it go in too (`write_selfcheck_signal`), which needs models that run; tests of the bundle's
    layout with stand-in bytes pass False.
    """
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
    if signal:
        write_selfcheck_signal(bundle)
    files = write_listing(bundle, cfg.name)
    tarball = out_dir / "hopwise-bundle.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(bundle, arcname="hopwise")
    log.info("bundle: %s (%d files, %.1f kB packed)", bundle, len(files) + 1, tarball.stat().st_size / 1e3)
    return bundle


def ssh_run(target: SSHTarget, remote: str, *, input: bytes | None = None,
            ssh_options: list[str] | None = None, timeout_s: float = 300.0,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run the shell command line ``remote`` on ``target`` over ssh (``BatchMode``: your keys and
    ``~/.ssh/config``, never a password prompt) and return the finished process (bytes).

    A missing ssh client, a timeout and ssh's own failure (exit 255: unreachable, refused, no
    key) are `DeployError`s that say what to check; so is any other non-zero exit when
    ``check``, else the caller reads ``returncode``.
    """
    if shutil.which("ssh") is None:
        raise DeployError("ssh is not installed here: install openssh-client (apt-get install "
                          "openssh-client) or deploy to a local folder and copy it yourself", "ssh")
    cmd = target.ssh_command(["-o", "BatchMode=yes", *(ssh_options or [])]) + [remote]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise DeployError(f"ssh to {target.user_host} timed out after {timeout_s:.0f} s; check the "
                          f"Pi is on and reachable (`ssh {target.user_host} true`)", "ssh") from exc
    if proc.returncode == 255 or (check and proc.returncode != 0):
        hint = (f"\nCheck that `ssh {target.user_host} true` works without a password "
                f"(BatchMode)." if proc.returncode == 255 else "")
        raise DeployError(f"ssh to {target.user_host} failed (exit {proc.returncode}): "
                          f"{proc.stderr.decode(errors='replace').strip()}{hint}",
                          "ssh" if proc.returncode == 255 else "remote")
    return proc


def push_over_ssh(bundle: Path, target: SSHTarget, install: bool = False,
                  ssh_options: list[str] | None = None, timeout_s: float = 300.0) -> None:
    """Stream the bundle folder to ``target`` with ``tar | ssh`` and optionally run install.sh."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(bundle)), recursive=False)
    dest = shlex.quote(target.path)
    remote = f"mkdir -p {dest} && tar xzf - -C {dest}"
    if install:
        remote += f" && sh {dest}/install.sh"
    log.info("sending %s to %s:%s", bundle.name, target.user_host, target.path)
    ssh_run(target, remote, input=buf.getvalue(), ssh_options=ssh_options, timeout_s=timeout_s)


# --------------------------------------------------------------------------- releases
# <root>/releases/<version>/   one bundle each (version: UTC time + the bundle's short hash)
# <root>/releases/<v>/.venv -> ../../envs/<env>    the device environment it runs with
# <root>/envs/<env>/           one venv per requirements hash (and kind), shared by releases
# <root>/current -> releases/<version>             switched (ln -s + mv -T) after a self-check
ENV_KINDS = ("auto", "pip", "host")
HEARTBEAT_VIA = ("log", "mqtt")
SELFCHECK_CMD = ".venv/bin/python -m device selfcheck --profile profile.toml --json selfcheck.json"


def _tail(proc: subprocess.CompletedProcess, lines: int = 30) -> str:
    text = (proc.stdout or b"").decode(errors="replace") + (proc.stderr or b"").decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


class Host:
    """Where the releases live: a folder on this machine (``ssh`` None) or on a Pi over SSH.

    Parameters
    ----------
    root : str
        The deploy folder there (``/opt/hopwise``); quoted in every command line.
    ssh : SSHTarget, optional
        None for a local folder.
    ssh_options : list of str
        Extra ssh arguments (``-i key``, ``-o ...``).
    """

    def __init__(self, root: str, ssh: SSHTarget | None = None, ssh_options: list[str] | None = None):
        self.root, self.ssh, self.ssh_options = root, ssh, list(ssh_options or [])
        self.q = shlex.quote(root)

    @property
    def where(self) -> str:
        return f"{self.ssh.user_host}:{self.root}" if self.ssh else self.root

    def path(self, *parts: str) -> str:
        """A quoted path under the root."""
        return shlex.quote("/".join([self.root.rstrip("/"), *parts]))

    def sh(self, step: str, script: str, *, input: bytes | None = None, timeout_s: float = 900.0,
           check: bool = True, code: str = "remote") -> subprocess.CompletedProcess:
        """Run the shell command line ``script`` there; a failure is a `DeployError` naming
        ``step``, the place and the output, with ``code`` (a key of `EXIT_CODES`) as its step;
        ssh's own failure (unreachable, refused) is ``ssh`` whatever the step."""
        if self.ssh:
            try:
                proc = ssh_run(self.ssh, script, input=input, ssh_options=self.ssh_options,
                               timeout_s=timeout_s, check=False)
            except DeployError as exc:
                raise DeployError(f"{step}: {exc}", exc.step) from exc
        else:
            try:
                proc = subprocess.run(["sh", "-c", script], input=input, capture_output=True,
                                      timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise DeployError(f"{step}: timed out after {timeout_s:.0f} s in {self.root}",
                                  code) from exc
        if check and proc.returncode != 0:
            raise DeployError(f"{step} failed on {self.where} (exit {proc.returncode}):\n{_tail(proc)}",
                              code)
        return proc


@dataclass
class Releases:
    """What is on the target: ``current`` (a release name or None), ``releases`` (name ->
    ``failed`` flag) oldest first, ``env_of`` (release -> env name), ``envs``."""
    current: str | None
    releases: dict
    env_of: dict
    envs: list

    def previous(self, before: str | None = None) -> str | None:
        """The newest release older than ``before`` (default: current) that has not failed."""
        before = before or self.current
        older = [n for n, bad in self.releases.items() if not bad and (before is None or n < before)]
        return older[-1] if older else None


def read_releases(host: Host) -> Releases:
    """List the target's releases, envs and ``current``."""
    script = (f"cd {host.q} 2>/dev/null || exit 0; echo \"current $(readlink current)\"; "
              "for d in releases/*/; do [ -d \"$d\" ] || continue; n=$(basename \"$d\"); "
              "f=ok; [ -e \"$d/FAILED\" ] && f=failed; echo \"release $n $f $(readlink \"$d/.venv\")\"; "
              "done; for e in envs/*/; do [ -d \"$e\" ] && echo \"env $(basename \"$e\")\"; done; true")
    out = host.sh("reading the releases", script).stdout.decode()
    current, releases, env_of, envs = None, {}, {}, []
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["current"] and len(parts) > 1:
            current = Path(parts[1]).name
        elif parts[:1] == ["release"]:
            releases[parts[1]] = parts[2] == "failed"
            if len(parts) > 3:
                env_of[parts[1]] = Path(parts[3]).name
        elif parts[:1] == ["env"]:
            envs.append(parts[1])
    return Releases(current, dict(sorted(releases.items())), env_of, envs)


def release_name(bundle: Path, taken=()) -> str:
    """``<UTC time>-<8 hex of bundle.json's sha256>``: sorts by time, names the content (with
    ``-2``, ``-3`` ... when that name is ``taken``: the same bundle twice in one second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = f"{stamp}-{sha256_file(bundle / 'bundle.json')[:8]}"
    n = 1
    while (candidate := name if n == 1 else f"{name}-{n}") in taken:
        n += 1
    return candidate


def env_kind(cfg, host: Host) -> str:
    kind = cfg["deploy.env"]
    if kind not in ENV_KINDS:
        raise DeployError(f"deploy.env = {kind!r}: use one of {', '.join(ENV_KINDS)}")
    via = cfg["deploy.heartbeat_via"]
    if via not in HEARTBEAT_VIA:
        raise DeployError(f"deploy.heartbeat_via = {via!r}: use one of {', '.join(HEARTBEAT_VIA)}")
    return ("pip" if host.ssh else "host") if kind == "auto" else kind


def env_name(bundle: Path, kind: str) -> str:
    """``<kind>-<12 hex>``: the hash of the device requirements (and, for ``host``, of this
    machine's interpreter), so releases with the same requirements share one environment."""
    h = hashlib.sha256((bundle / "requirements-device.txt").read_bytes())
    if kind == "host":
        h.update(sys.executable.encode())
    return f"{kind}-{h.hexdigest()[:12]}"


def _env_script(host: Host, rel: str, env: str, kind: str) -> str:
    """Create ``envs/<env>`` unless it is complete, link it as the release's ``.venv``; prints
    ``reused`` or ``created``."""
    e = host.path("envs", env)
    if kind == "pip":
        make = (f"python3 -m venv {e} && {e}/bin/pip install --quiet --upgrade pip && "
                f"{e}/bin/pip install --quiet -r {host.path('releases', rel, 'requirements-device.txt')}")
    else:
        # This machine's interpreter, seeing this machine's packages through a .pth file:
        # nothing to download, so it works offline (the build machine without a Pi).
        sites = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        code = ("import sys, sysconfig; open(sysconfig.get_paths()['purelib'] + "
                "'/hopwise-host.pth', 'w').write('\\n'.join(sys.argv[1:]) + '\\n')")
        make = (f"{shlex.quote(sys.executable)} -m venv --without-pip {e} && "
                f"{e}/bin/python -c {shlex.quote(code)} {' '.join(map(shlex.quote, sites))}")
    return (f"mkdir -p {host.path('envs')} && if [ -f {e}/.complete ]; then echo reused; else "
            f"rm -rf {e} && {make} && touch {e}/.complete && echo created; fi && "
            f"ln -sfn ../../envs/{shlex.quote(env)} {host.path('releases', rel, '.venv')}")


def switch_current(host: Host, rel: str | None) -> None:
    """Point ``current`` at ``releases/<rel>`` atomically (``ln -s`` + ``mv -T``); None removes it."""
    if rel is None:
        host.sh("switching current", f"rm -f {host.path('current')}", code="switch")
        return
    host.sh("switching current", f"cd {host.q} && ln -sfn {shlex.quote('releases/' + rel)} "
                                 f"current.new && mv -T current.new current", code="switch")


def _mark_failed(host: Host, rel: str, why: str) -> None:
    host.sh("marking the release failed", f"printf '%s\\n' {shlex.quote(why)} > "
                                          f"{host.path('releases', rel, 'FAILED')}", check=False)


def _heartbeat(lines: str) -> dict | None:
    """The first ``status`` ``heartbeat`` event among JSON lines, else None."""
    for line in lines.splitlines():
        line = line.strip()
        if line.startswith("{") and '"heartbeat"' in line:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("type") == "status" and ev.get("label") == "heartbeat":
                return ev
    return None


def _systemd(host: Host) -> str | None:
    """``sudo -n `` / ``""`` when the target runs systemd and deploy may manage the unit (root or
    passwordless sudo); None otherwise (the service command then runs in the foreground)."""
    if not host.ssh:
        return None   # a local folder: never touch this machine's services
    out = host.sh("looking for systemd", "[ -d /run/systemd/system ] || { echo none; exit 0; }; "
                  "if [ \"$(id -u)\" = 0 ]; then echo root; elif sudo -n true 2>/dev/null; "
                  "then echo sudo; else echo none; fi").stdout.decode().strip()
    return {"root": "", "sudo": "sudo -n "}.get(out)


def start_service(host: Host, cfg, rel: str) -> tuple[bool, str, str]:
    """Start what ``current`` points at and wait for its first heartbeat.

    With systemd (and root or passwordless sudo there): install the unit pointing at
    ``<root>/current``, restart it, and wait for a heartbeat (at most
    ``deploy.heartbeat_timeout_s``). Otherwise: run the service command in the foreground for
    ``deploy.trial_s`` with the bundled test signal as its microphone, its output in
    ``releases/<rel>/service.log``. The runtime sends its first heartbeat after its first hop, so
    either way a working release confirms within seconds.

    Where the heartbeat is looked for is ``deploy.heartbeat_via``: ``log`` reads the journal
    (systemd) or the command's output; ``mqtt`` runs ``python -m device heartbeat`` on the target
    with the release's profile, which subscribes to the service's status topic on the profile's
    broker as the Pi sees it (password and TLS files from the Pi's own ``/etc/hopwise``).

    Returns ``(ok, what happened, how to read the log)``.
    """
    via = cfg["deploy.heartbeat_via"]
    sudo = _systemd(host)
    if sudo is not None:
        unit = host.path("current", "device", "systemd", "hopwise.service")
        root = host.root.rstrip("/")
        home = "read-only" if root.startswith(("/home/", "/root/")) else "true"  # the unit hides /home
        edits = f"s#/opt/hopwise#{root}#g; s#ProtectHome=true#ProtectHome={home}#"
        host.sh("installing the systemd unit",
                f"id hopwise >/dev/null 2>&1 || {sudo}useradd --system --no-create-home "
                f"--groups audio,dialout hopwise; sed -e {shlex.quote(edits)} "
                f"{unit} | {sudo}tee /etc/systemd/system/hopwise.service >/dev/null && "
                f"{sudo}systemctl daemon-reload && {sudo}systemctl enable hopwise.service")
        since = int(host.sh("restarting the service", f"date +%s; {sudo}systemctl restart "
                            "hopwise.service").stdout.split()[0])
        timeout_s = float(cfg["deploy.heartbeat_timeout_s"])
        deadline = time.monotonic() + timeout_s
        journal = f"journalctl -u hopwise.service --since @{since} -o cat --no-pager"
        if via == "mqtt":
            out = host.sh("waiting for the heartbeat on MQTT",
                          f"cd {host.path('current')} && {_mqtt_wait(since, timeout_s)}",
                          check=False, timeout_s=timeout_s + 60)
            beat = _heartbeat(out.stdout.decode(errors="replace"))
            if beat:
                return True, (f"systemd: first heartbeat on MQTT at "
                              f"{beat['t_wall'] - since:.1f} s after the restart"), "journalctl -u hopwise -f"
            return False, (f"systemd: {_tail(out, 3)}"), journal
        while time.monotonic() < deadline:
            time.sleep(2.0)
            out = host.sh("reading the journal", f"{sudo}{journal}; {sudo}systemctl is-failed "
                          "hopwise.service >/dev/null && echo UNIT-FAILED", check=False)
            text = out.stdout.decode(errors="replace")
            beat = _heartbeat(text)
            if beat:
                return True, f"systemd: first heartbeat at {beat['t_audio_s']:.0f} s", "journalctl -u hopwise -f"
            if "UNIT-FAILED" in text:
                return False, "systemd: the unit failed before its first heartbeat", f"{journal}"
        return False, "systemd: no heartbeat within deploy.heartbeat_timeout_s", journal
    trial_s = float(cfg["deploy.trial_s"])
    log_file = host.path("releases", rel, "service.log")
    run = (f"timeout -s TERM {trial_s + 60:.0f} .venv/bin/python -m "
           f"device run --profile profile.toml --replay selfcheck/signal.flac --realtime "
           f"--duration-s {trial_s:g} --set runtime.status_interval_s=1 "
           f"--set runtime.state_dir={host.path('state')} > {log_file} 2>&1; rc=$?; ")
    if via == "mqtt":
        # The waiter subscribes before the service starts; once the service has ended it has a
        # few seconds more for a heartbeat still on its way, then it is stopped.
        wait_log = host.path("releases", rel, "heartbeat.log")
        cmd = (f"cd {host.path('current')} && since=$(date +%s) && "
               f"{{ {_mqtt_wait('$since', float(cfg['deploy.heartbeat_timeout_s']))} "
               f"> {wait_log} 2>&1 & }} && w=$! && {run}"
               f"( sleep 5; kill $w ) >/dev/null 2>&1 & wait $w; cat {log_file} >&2; "
               f"cat {wait_log}; exit $rc")
    else:
        cmd = f"cd {host.path('current')} && {run}cat {log_file}; exit $rc"
    proc = host.sh("running the service command", cmd, check=False, timeout_s=trial_s + 90)
    beat = _heartbeat(proc.stdout.decode(errors="replace"))
    where = f"{host.where}/releases/{rel}/service.log"
    seen = "on MQTT" if via == "mqtt" else "on its output"
    if proc.returncode == 0 and beat:
        return True, (f"service command in the foreground for {trial_s:g} s (no systemd): first "
                      f"heartbeat {seen} at {beat['t_audio_s']:.2f} s of audio"), where
    return False, (f"the service command exited {proc.returncode} "
                   f"{'after' if beat else 'with no'} heartbeat {seen}:\n{_tail(proc, 12)}"), where


def _mqtt_wait(since: str | int, timeout_s: float) -> str:
    """The command line (run in a release folder) that waits for a heartbeat on MQTT
    (`device.heartbeat`) published at or after the Unix time ``since``."""
    return (f".venv/bin/python -m device heartbeat --profile profile.toml --since {since} "
            f"--timeout-s {timeout_s:g}")


@dataclass
class DeployResult:
    """What `deploy_release` did: the release, its environment, the self-check table, the
    service's first heartbeat, timings per step in seconds, releases removed."""
    target: str
    release: str
    previous: str | None
    env: str
    env_created: bool
    selfcheck: str
    service: str
    log: str
    steps_s: dict
    removed: list


def deploy_release(bundle: Path, host: Host, cfg) -> DeployResult:
    """Install ``bundle`` as a new release on ``host`` and make it current if it works.

    Steps (each named in a failure): upload into ``releases/<version>``, the environment
    (``envs/<hash>``, reused when the requirements match: a model-only deploy installs
    nothing), the self-check there (``python -m device selfcheck``), switch ``current``, start
    the service and wait for its first heartbeat, drop old releases (``deploy.keep_releases``)
    and unused environments. When the self-check fails, ``current`` is not touched; when the
    first heartbeat fails, ``current`` goes back to the previous release, which is started again.
    The failed release stays, marked ``FAILED``, with its logs. Raises `DeployError` saying what
    failed and where its log is.
    """
    steps: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            steps[name] = round(time.perf_counter() - t0, 2)

    kind = env_kind(cfg, host)
    state = read_releases(host)
    rel = release_name(bundle, state.releases)
    previous = state.current
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(bundle)), recursive=False)
    reldir = host.path("releases", rel)
    log.info("release %s -> %s", rel, host.where)
    timed("upload", host.sh, "uploading the bundle",
          f"mkdir -p {host.path('releases')} && mkdir {reldir} && tar xzf - -C {reldir}",
          input=buf.getvalue(), code="upload")
    env = env_name(bundle, kind)
    out = timed("environment", host.sh, f"the device environment ({kind})",
                _env_script(host, rel, env, kind), code="environment")
    created = out.stdout.decode().strip().splitlines()[-1:] == ["created"]
    check = timed("selfcheck", host.sh, "the self-check",
                  f"cd {reldir} && {SELFCHECK_CMD} > selfcheck.txt 2> selfcheck.log; rc=$?; "
                  f"cat selfcheck.txt; exit $rc", check=False)
    table = check.stdout.decode(errors="replace")
    if check.returncode != 0:
        _mark_failed(host, rel, "selfcheck failed")
        log_tail = host.sh("reading the self-check log", f"tail -n 15 {reldir}/selfcheck.log",
                           check=False).stdout.decode(errors="replace").strip()
        raise DeployError(f"the self-check of release {rel} failed (exit {check.returncode}) on "
                          f"{host.where}; current is unchanged ({previous or 'none'}).\n{table}"
                          f"{log_tail}\nlog: {host.where}/releases/{rel}/selfcheck.log", "selfcheck")
    timed("switch", switch_current, host, rel)
    ok, what, where = timed("service", start_service, host, cfg, rel)
    if not ok:
        _mark_failed(host, rel, "no first heartbeat")
        switch_current(host, previous)
        step = "heartbeat"
        if previous:
            ok_prev, what_prev, _ = start_service(host, cfg, previous)
            back = (f"current is back at {previous}, " +
                    ("which runs again (" + what_prev.split(':')[0] + ")" if ok_prev
                     else f"which did not start either: {what_prev}"))
            step = "heartbeat" if ok_prev else "rollback"
        else:
            back = "there was no previous release, so nothing is current"
        raise DeployError(f"release {rel} passed its self-check but {what}\n{back}.\nlog: {where}",
                          step)
    removed = timed("prune", prune, host, int(cfg["deploy.keep_releases"]))
    return DeployResult(host.where, rel, previous, env, created, table, what, where, steps, removed)


def prune(host: Host, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` releases (never ``current``) and the environments no
    remaining release uses; return the releases removed."""
    state = read_releases(host)
    names = list(state.releases)
    drop = [n for n in names[:-keep] if n != state.current] if len(names) > keep else []
    used = {state.env_of.get(n) for n in names if n not in drop}
    unused = [e for e in state.envs if e not in used]
    targets = [host.path("releases", n) for n in drop] + [host.path("envs", e) for e in unused]
    if targets:
        host.sh("removing old releases", "rm -rf " + " ".join(targets))
    return drop


def rollback(host: Host, cfg) -> tuple[str, str, str]:
    """Point ``current`` back at the newest working release before it, start it and wait for
    its heartbeat (`start_service`); the release left is marked ``FAILED`` (rolled back), so a
    second rollback goes one further. Returns ``(from, to, what the service did)``."""
    state = read_releases(host)
    if state.current is None:
        raise DeployError(f"nothing is deployed at {host.where} (no current release)", "rollback")
    target = state.previous()
    if target is None:
        raise DeployError(f"no earlier working release than {state.current} in "
                          f"{host.where}/releases to go back to", "rollback")
    switch_current(host, target)
    _mark_failed(host, state.current, "rolled back")
    ok, what, where = start_service(host, cfg, target)
    if not ok:
        raise DeployError(f"current is back at {target}, but {what}\nlog: {where}", "rollback")
    return state.current, target, what


def _command_target(target_text: str) -> str:
    return shlex.quote(target_text)


def report(result: DeployResult, host: Host, target_text: str) -> str:
    """What `make deploy` prints at the end: what it did and where, the self-check table, how
    to follow the log and how to go back."""
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in result.steps_s.items())
    env = (f"created ({'pip install on the target' if result.env.startswith('pip') else 'linked to this machine' + chr(39) + 's Python and packages, offline'})"
           if result.env_created else "reused (same requirements: nothing installed)")
    lines = [f"deployed release {result.release} to {result.target}",
             f"  current -> releases/{result.release} (before: {result.previous or 'none'})",
             f"  environment envs/{result.env}: {env}",
             f"  service: {result.service}",
             f"  steps: {steps}" + (f"; removed {len(result.removed)} old release(s)" if result.removed else ""),
             "", result.selfcheck.rstrip(), ""]
    if host.ssh:
        lines.append(f"follow the log: ssh {host.ssh.user_host} journalctl -u hopwise -f"
                     f"   (no systemd there: {result.log})")
    else:
        lines.append(f"run it by hand: cd {host.root}/current && .venv/bin/python -m device run "
                     f"--profile profile.toml   (the trial's log: {result.log})")
    lines.append(f"go back: make rollback TARGET={_command_target(target_text)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.deploy",
        description="Bundle the device runtime with the exported models and deploy it as a new "
                    "release: to a local folder (default: the profile's [deploy] target) or to a "
                    "Pi over SSH. The release becomes current only after its self-check passes, "
                    "and is rolled back when the service's first heartbeat does not come.",
        epilog=EXIT_HELP)
    add_profile_arguments(parser, "deploy.keep_releases=5")
    parser.add_argument("--target", help="local folder, user@host:/path or ssh://user@host:port/path")
    parser.add_argument("--export-dir", type=Path, help="where the models are (default: build/export)")
    parser.add_argument("--rollback", action="store_true",
                        help="point current back at the previous working release and start it")
    parser.add_argument("--install", action="store_true",
                        help="no releases: copy the bundle flat into the target folder and run its "
                             "install.sh there (by hand; deploy and `make bench TARGET=...` use "
                             "releases)")
    parser.add_argument("--ssh-key", type=Path, help="the private key for the Pi (ssh -i)")
    parser.add_argument("--ssh-option", action="append", default=[],
                        help="an extra ssh argument, e.g. --ssh-option=-oPort=2222 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = config_from_args(args)
        target_text = args.target or cfg["deploy.target"]
        ssh = SSHTarget.parse(target_text)
        options = (["-i", str(args.ssh_key)] if args.ssh_key else []) + args.ssh_option
        local = BuildPaths(cfg).deploy_dir if ssh else Path(target_text)
        if not local.is_absolute():
            local = REPO_ROOT / local
        host = Host(ssh.path if ssh else str(local), ssh, options)
        if args.rollback:
            left, now, what = rollback(host, cfg)
            print(f"rolled back on {host.where}: current -> releases/{now} (was {left}, now marked "
                  f"FAILED)\n  service: {what}")
            return 0
        bundle = build_bundle(cfg, local, args.export_dir)
        if args.install and ssh:
            push_over_ssh(bundle, ssh, install=True, ssh_options=options)
            print(f"copied flat to {target_text} and ran install.sh there")
            return 0
        print(report(deploy_release(bundle, host, cfg), host, target_text), end="")
    except (ConfigError, ManifestError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return EXIT_CODES["config"]
    except DeployError as exc:
        print(f"deploy: {exc.step} failed: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
