"""``make bench``'s report: the hop-budget report of a profile, measured here or on a Pi.

    python -m benchmarks.hop_budget [--profile default] [--set KEY=VALUE ...] [--model M]
    python -m benchmarks.hop_budget --target pi@raspberrypi.local[:/opt/hopwise] [--no-deploy]

Here, it runs ``python -m device bench`` (`device.bench`) in a fresh process, exactly the command
the Pi runs, so the measured process holds the device runtime and nothing of the host's; the
report goes to ``build/reports/<profile>/`` (`device.paths.BuildPaths.bench_report_dir`).

With ``--target`` (``make bench TARGET=...``; ``user@host``, ``user@host:/path`` or
``ssh://user@host:port/path``, parsed as `export.deploy.SSHTarget` does, with
``bench.remote_path`` when no path is given) it

1. deploys the profile there as a new release, exactly as ``make deploy TARGET=...`` does
   (`export.deploy.deploy_release`: ``releases/<version>``, the shared environment, the
   self-check, ``current`` switched, the service restarted), so the figures are this build's as
   it runs there; ``--no-deploy`` measures the release that is current already,
2. runs ``python -m device bench --profile profile.toml`` in ``<path>/current`` with the
   release's environment (``current/.venv``), and
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

REMOTE_PYTHON = ".venv/bin/python"   # the release's environment (envs/<hash>), in current/


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


def run_remote(cfg, target, *, deploy: bool = True, ssh_options: list[str] | None = None,
               timeout_s: float = 1800.0) -> Path:
    """Measure the release that is current on ``target`` and fetch its report.

    With ``deploy`` (the default) the profile's bundle is first installed as a new release the
    way ``make deploy`` does it (`export.deploy.deploy_release`: ``releases/<version>``, the
    shared environment, the self-check, ``current`` switched, the service restarted), so what
    is measured is exactly what runs there. Without it, whatever ``current`` points at is
    measured. The report runs as ``current/.venv/bin/python -m device bench`` with the release's
    own profile and comes back into ``build/reports/<profile>/<host>/``.

    Returns that local folder; raises `export.deploy.DeployError` (with its step) when a step
    fails.
    """
    from export.deploy import DeployError, Host, build_bundle, deploy_release, ssh_run
    paths = BuildPaths(cfg)
    host = Host(target.path, target, ssh_options)
    if deploy:
        result = deploy_release(build_bundle(cfg, paths.deploy_dir), host, cfg)
        print(f"deployed release {result.release} to {host.where} ({result.service})", flush=True)
    current, py = host.path("current"), shlex.quote(REMOTE_PYTHON)
    # The release's own layout: its profile.toml names "build" as the build folder.
    out = shlex.quote(f"build/reports/{profile_tag(cfg)}")
    remote = (f"cd {current} 2>/dev/null && [ -x {py} ] || {{ echo 'no current release with "
              f"{REMOTE_PYTHON} in {target.path}' >&2; exit 3; }}; "
              f"exec {py} -m device bench --profile profile.toml --out {out}")
    print(f"running the hop-budget report on {host.where}/current ...", flush=True)
    proc = ssh_run(target, remote, ssh_options=ssh_options, timeout_s=timeout_s, check=False)
    err = proc.stderr.decode(errors="replace").strip()
    if proc.returncode == 3:
        raise DeployError(f"{err} on {target.user_host}: deploy a release first (`make deploy "
                          f"TARGET={target.user_host}:{target.path}`, or `make bench` without "
                          f"--no-deploy)", "remote")
    if proc.returncode != 0:
        raise DeployError(f"the report failed on {target.user_host} (exit {proc.returncode}):\n"
                          f"{err[-2000:]}", "remote")
    sys.stdout.write(proc.stdout.decode(errors="replace"))
    fetched = ssh_run(target, f"cd {current} && tar czf - -C {out} .", ssh_options=ssh_options,
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
                    "with --target on a Pi over SSH: the profile is deployed there as a new "
                    "release first (as make deploy does; --no-deploy measures the current one), "
                    "the report runs in <path>/current and comes back into "
                    "build/reports/<profile>/<host>/.",
        epilog="examples:\n  python -m benchmarks.hop_budget --set bench.audio_s=10\n"
               "  python -m benchmarks.hop_budget --target pi@raspberrypi.local:/opt/hopwise",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "bench.audio_s=10")
    parser.add_argument("--model", help="local run: the model of the pipeline's model stage")
    parser.add_argument("--target", help="user@host[:/path] or ssh://user@host:port/path: run on "
                                         "that Pi (default: here)")
    parser.add_argument("--no-deploy", action="store_true",
                        help="with --target: measure the release that is current there, do not "
                             "deploy a new one first")
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
        local = run_remote(cfg, target, deploy=not args.no_deploy, ssh_options=args.ssh_option)
        print(f"hop-budget report from {target.user_host}: {local / 'hop_budget.md'} "
              f"({', '.join(sorted(p.name for p in local.glob('hop_budget.*')))})")
    except (ConfigError, ManifestError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except DeployError as exc:
        print(f"bench: {exc.step} failed: {exc}", file=sys.stderr)
        return exc.exit_code   # export.deploy's codes: the same step, the same number
    return 0


if __name__ == "__main__":
    sys.exit(main())
