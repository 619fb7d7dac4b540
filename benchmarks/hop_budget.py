"""``make bench``'s report: the hop-budget report of a profile, measured here or on a Pi.

    python -m benchmarks.hop_budget [--profile default] [--set KEY=VALUE ...] [--model M]
    python -m benchmarks.hop_budget --target pi@raspberrypi.local[:/opt/hopwise] [--no-deploy]

Here, it runs ``python -m device bench`` (`device.bench`) in a fresh process, exactly the command
the Pi runs, so the measured process holds the device runtime and nothing of the host's; the
report goes to ``build/reports/<profile>/`` (`device.paths.BuildPaths.bench_report_dir`).

With ``--target`` (``make bench TARGET=...``; ``user@host``, ``user@host:/path`` or
``ssh://user@host:port/path``, parsed as `export.deploy.SSHTarget` does, with
``bench.remote_path`` when no path is given) it

1. builds the deploy bundle of the profile and sends it over SSH (`export.deploy`: the same
   bundle as ``make deploy``, so the figures are this build's; ``--no-deploy`` measures what is
   there already),
2. runs ``python -m device bench --profile profile.toml`` in the bundle with the bundle's venv
   (``.venv``, made by its install.sh; ``--install`` runs install.sh after sending), and
3. fetches the report back into ``build/reports/<profile>/<host>/``.

The Pi runs the report only, which needs nothing beyond requirements-device.txt. The
pytest-benchmark suites travel in the bundle too (``benchmarks/``) and run there unchanged
after ``.venv/bin/pip install pytest pytest-benchmark``; this command does not install them.
A host command (it imports export.deploy); nothing here needs TensorFlow.
"""
from __future__ import annotations

import argparse
import io
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

from device.config import REPO_ROOT, ConfigError, add_profile_arguments, config_from_args
from device.manifest import ManifestError
from device.paths import BuildPaths, profile_tag

REMOTE_PYTHON = ".venv/bin/python"   # install.sh's venv, relative to the bundle


def parse_target(text: str, remote_path: str):
    """An `export.deploy.SSHTarget` from ``user@host[:/path]`` or ``ssh://user@host[:port]/path``
    (``remote_path`` when ``user@host`` names no path); `DeployError` for anything else."""
    from export.deploy import DeployError, SSHTarget
    target = SSHTarget.parse(text)
    if target is None and re.fullmatch(r"[^/:@\s]+@[^/:@\s]+", text):
        target = SSHTarget(text, remote_path)
    if target is None:
        raise DeployError(f"TARGET={text!r} names no Pi: give user@host, user@host:/path or "
                          f"ssh://user@host:port/path")
    return target


def host_folder(target) -> str:
    """The folder name of a target's reports: its host, without the user."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", target.user_host.rsplit("@", 1)[-1])


def run_local(profile: str, overrides: list[str], model: str | None, out_dir: Path) -> int:
    """``python -m device bench`` here, in a fresh process; its exit code."""
    cmd = [sys.executable, "-m", "device", "bench", "--profile", profile,
           *(f"--set={s}" for s in overrides), *(["--model", model] if model else []),
           "--out", str(out_dir)]
    return subprocess.run(cmd, cwd=REPO_ROOT).returncode


def run_remote(cfg, target, *, deploy: bool = True, install: bool = False,
               remote_python: str = REMOTE_PYTHON, ssh_options: list[str] | None = None,
               timeout_s: float = 1800.0) -> Path:
    """Deploy (unless not ``deploy``), run the report in the bundle on ``target``, fetch it.

    Returns the local folder the report was fetched into; raises `export.deploy.DeployError`
    with what to do when a step fails.
    """
    from export.deploy import DeployError, build_bundle, push_over_ssh, ssh_run
    paths = BuildPaths(cfg)
    if deploy:
        bundle = build_bundle(cfg, paths.deploy_dir)
        push_over_ssh(bundle, target, install=install, ssh_options=ssh_options)
    dest, py = shlex.quote(target.path), shlex.quote(remote_python)
    # The bundle's own layout: its profile.toml names "build" as the build folder.
    out = shlex.quote(f"build/reports/{profile_tag(cfg)}")
    remote = (f"cd {dest} || exit 3; if [ ! -x {py} ] && ! command -v {py} >/dev/null 2>&1; "
              f"then echo 'no {remote_python} in {target.path}' >&2; exit 3; fi; "
              f"exec {py} -m device bench --profile profile.toml --out {out}")
    print(f"running the hop-budget report on {target.user_host}:{target.path} ...", flush=True)
    proc = ssh_run(target, remote, ssh_options=ssh_options, timeout_s=timeout_s, check=False)
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode == 3:
        raise DeployError(f"{err or 'no bundle'} on {target.user_host}: deploy and install it "
                          f"first (`python -m export.deploy --target {target.user_host}:"
                          f"{target.path} --install`, which runs install.sh there), or pass "
                          f"--remote-python")
    if proc.returncode != 0:
        raise DeployError(f"the report failed on {target.user_host} (exit {proc.returncode}):\n"
                          f"{err[-2000:]}")
    sys.stdout.write(proc.stdout.decode(errors="replace"))
    fetched = ssh_run(target, f"cd {dest} && tar czf - -C {out} .", ssh_options=ssh_options,
                      timeout_s=120.0).stdout
    local = paths.bench_report_dir(host_folder(target))
    local.mkdir(parents=True, exist_ok=True)
    for old in local.glob("hop_budget.*"):
        old.unlink()   # a picture the Pi could not draw this time must not stay from before
    with tarfile.open(fileobj=io.BytesIO(fetched), mode="r:gz") as tar:
        tar.extractall(local, filter="data")
    return local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hop_budget",
        description="Write the hop-budget report of a profile (python -m device bench): here, or "
                    "with --target on a Pi over SSH from the deployed bundle, fetched back into "
                    "build/reports/<profile>/<host>/.",
        epilog="examples:\n  python -m benchmarks.hop_budget --set bench.audio_s=10\n"
               "  python -m benchmarks.hop_budget --target pi@raspberrypi.local:/opt/hopwise",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "bench.audio_s=10")
    parser.add_argument("--model", help="local run: the model of the pipeline's model stage")
    parser.add_argument("--target", help="user@host[:/path] or ssh://user@host:port/path: run on "
                                         "that Pi (default: here)")
    parser.add_argument("--no-deploy", action="store_true",
                        help="with --target: measure the bundle already there, do not send one")
    parser.add_argument("--install", action="store_true",
                        help="with --target: run the bundle's install.sh after sending it")
    parser.add_argument("--remote-python", default=REMOTE_PYTHON,
                        help="with --target: the Python that runs the report there (default: "
                             "%(default)s, in the bundle)")
    parser.add_argument("--ssh-option", action="append", default=[],
                        help="extra ssh arguments, e.g. --ssh-option=-i --ssh-option=KEY")
    args = parser.parse_args(argv)
    from export.deploy import DeployError
    try:
        cfg = config_from_args(args)
        if not args.target:
            out = BuildPaths(cfg).bench_report_dir()
            return run_local(args.profile, args.overrides, args.model, out)  # it says where
        if args.model:
            raise DeployError("--model is for a local run: on a Pi the bundle's profile names its "
                              "model (deploy the model you want measured)")
        target = parse_target(args.target, cfg["bench.remote_path"])
        local = run_remote(cfg, target, deploy=not args.no_deploy, install=args.install,
                           remote_python=args.remote_python, ssh_options=args.ssh_option)
        print(f"hop-budget report from {target.user_host}: {local / 'hop_budget.md'} "
              f"({', '.join(sorted(p.name for p in local.glob('hop_budget.*')))})")
    except (ConfigError, ManifestError, DeployError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
