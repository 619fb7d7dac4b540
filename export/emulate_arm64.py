"""The bundle's self-check on an arm64 Debian root under qemu-user emulation (no Pi needed).

    sudo python -m export.emulate_arm64 [--root /var/tmp/hopwise-arm64] [--suite bookworm]

Proves, short of a Pi, that the deploy bundle installs and runs on aarch64 with the Pi's own
Python: it

1. makes an arm64 Debian root with ``debootstrap --arch=arm64 --foreign`` (Bookworm's Python
   3.11, what Raspberry Pi OS Bookworm ships; run here, nothing emulated) and finishes it:
   ``--finish extract`` (the default) unpacks every downloaded arm64 package with
   ``dpkg-deb -x`` here, without their maintainer scripts, which is all a venv and the
   self-check need; ``--finish second-stage`` runs ``debootstrap --second-stage`` inside the
   root, emulated, as a real installation would (measured here: 2 packages per 10 minutes on a
   loaded 2-core host, so about 6 hours; not waited for). Either way arm64 binaries run through
   qemu-user-static: the kernel's binfmt_misc must hand them to qemu (``update-binfmts
   --enable qemu-aarch64``, after mounting ``/proc/sys/fs/binfmt_misc`` where a container has
   not);
2. downloads the device requirements as aarch64 wheels here (``pip download --platform
   manylinux_2_N_aarch64 --only-binary=:all:``: the same resolution as
   ``tests/export/test_aarch64_wheels.py``) and installs them with the root's own pip into a
   venv, offline (``--no-index``);
3. copies the bundle (``build_bundle``, the one ``make deploy`` sends) to ``/opt/hopwise`` in
   the root and runs ``python -m device selfcheck --no-budget`` there, under emulation.

The hop-budget row is skipped: emulated timings say nothing about a Pi. Needs root (chroot,
mounts), the Debian packages ``debootstrap qemu-user-static binfmt-support`` and a Debian
mirror; the root is kept and reused (``--fresh`` makes a new one). Exit 0 when the self-check
passed, 1 when it failed, 2 when a step could not run (the message names it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from device.config import add_profile_arguments, config_from_args

QEMU = "/usr/bin/qemu-aarch64-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Bookworm: Python 3.11 and glibc 2.36 (wheels tagged up to manylinux_2_36 install)
SUITES = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41)}
# This machine's pip settings (a local wheel folder) mean nothing inside the root.
CLEAN_ENV = ["env", "-u", "PIP_FIND_LINKS", "-u", "PIP_INDEX_URL", "-u", "PIP_EXTRA_INDEX_URL"]


class EmulationError(RuntimeError):
    """A step could not run; the message names it and the fix."""


def _run(step: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    print(f"[{step}] {' '.join(cmd)[:160]}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise EmulationError(f"{step} failed (exit {proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
    print(f"[{step}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    return proc


def ensure_binfmt() -> str:
    """qemu-aarch64 registered with binfmt_misc (mounting it if needed); its interpreter path."""
    for tool in ("debootstrap", "update-binfmts"):
        if shutil.which(tool) is None:
            raise EmulationError(f"{tool} is missing: apt-get install debootstrap "
                                 f"qemu-user-static binfmt-support")
    if not Path(QEMU).exists():
        raise EmulationError(f"{QEMU} is missing: apt-get install qemu-user-static")
    if not (BINFMT / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulationError(f"binfmt_misc cannot be mounted here ({proc.stderr.strip()}): "
                                 f"this container cannot hand arm64 binaries to qemu")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        _run("binfmt", ["update-binfmts", "--enable", "qemu-aarch64"])
    text = entry.read_text()
    if "enabled" not in text:
        raise EmulationError(f"qemu-aarch64 is registered but not enabled:\n{text}")
    return next(line.split()[1] for line in text.splitlines() if line.startswith("interpreter"))


def make_root(root: Path, suite: str, mirror: str, interpreter: str,
              finish: str = "extract") -> None:
    """debootstrap the arm64 root (stage 1, then ``finish``) unless it is already complete."""
    if (root / "usr/bin/python3").exists() and (root / ".hopwise-complete").exists():
        print(f"[root] reusing {root}")
        return
    root.mkdir(parents=True, exist_ok=True)
    _run("debootstrap stage 1", ["debootstrap", "--arch=arm64", "--foreign",
                                 "--include=python3,python3-venv,ca-certificates", suite,
                                 str(root), mirror], timeout=3600)
    # Without binfmt's F flag the kernel opens the interpreter inside the chroot: put it there.
    inside = root / interpreter.lstrip("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(QEMU, inside)
    if finish == "second-stage":
        _run("debootstrap stage 2 (emulated)", ["chroot", str(root), "/debootstrap/debootstrap",
                                                "--second-stage"], timeout=6 * 3600)
    else:
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        t0 = time.perf_counter()
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for name in ("passwd", "group"):   # what base-passwd's maintainer script would write
            target = root / "etc" / name
            if not target.exists() or target.stat().st_size == 0:
                shutil.copy2(root / f"usr/share/base-passwd/{name}.master", target)
        print(f"[root] {len(debs)} arm64 packages unpacked in {time.perf_counter() - t0:.0f} s")
    (root / ".hopwise-complete").touch()


def download_wheels(requirements: Path, dest: Path, python: str, glibc_minor: int) -> None:
    platforms = [f"--platform=manylinux_2_{m}_aarch64" for m in range(17, glibc_minor + 1)]
    _run("aarch64 wheels", [sys.executable, "-m", "pip", "download", "--quiet",
                            "--only-binary=:all:", f"--python-version={python}",
                            "--implementation=cp", "--platform=manylinux2014_aarch64", *platforms,
                            "--platform=linux_aarch64", "-d", str(dest), "-r", str(requirements)],
         timeout=1800)


def selfcheck_emulated(cfg, root: Path, suite: str, mirror: str, fresh: bool = False,
                       finish: str = "extract") -> int:
    """Steps 1-3 of the module docstring; the self-check's exit code (its table is printed)."""
    from export.deploy import build_bundle
    if os.geteuid() != 0:
        raise EmulationError("run as root: debootstrap, chroot and the binfmt_misc mount need it")
    python, glibc = SUITES[suite]
    interpreter = ensure_binfmt()
    if fresh and root.exists():
        shutil.rmtree(root)
    make_root(root, suite, mirror, interpreter, finish)
    arch = _run("arch", ["chroot", str(root), "uname", "-m"]).stdout.strip()
    py = _run("python", ["chroot", str(root), "python3", "--version"]).stdout.strip()
    print(f"[root] {root}: {arch}, {py} (emulated by qemu-user)")
    opt = root / "opt" / "hopwise"
    if opt.exists():
        shutil.rmtree(opt)
    bundle = build_bundle(cfg, root / "opt" / "build-out")
    shutil.copytree(bundle, opt, symlinks=True)
    shutil.rmtree(root / "opt" / "build-out")
    wheels = root / "wheels"
    wheels.mkdir(exist_ok=True)
    download_wheels(opt / "requirements-device.txt", wheels, python, glibc)
    _run("venv (emulated)", ["chroot", str(root), "python3", "-m", "venv", "/opt/hopwise/.venv"])
    _run("pip install (emulated, offline)", ["chroot", str(root), *CLEAN_ENV, "/opt/hopwise/.venv/bin/pip",
                                             "install", "--quiet", "--no-index", "--find-links",
                                             "/wheels", "-r", "/opt/hopwise/requirements-device.txt"],
         timeout=3600)
    # /proc for Python. Not /sys: with this x86 host's /sys bound in, LiteRT's cpuinfo under
    # qemu crashed the self-check (SIGSEGV, exit 139); without it, cpuinfo prints "Error in
    # cpuinfo: failed to parse the list of possible processors" and XNNPACK runs anyway.
    mounts = [root / "proc"] if subprocess.run(
        ["mount", "-t", "proc", "proc", str(root / "proc")]).returncode == 0 else []
    try:
        t0 = time.perf_counter()
        check = subprocess.run(["chroot", str(root), *CLEAN_ENV, "sh", "-c", "cd /opt/hopwise && "
                                ".venv/bin/python -m device selfcheck --profile profile.toml "
                                "--no-budget --json selfcheck.json"],
                               capture_output=True, text=True, timeout=3600)
    finally:
        for m in mounts:
            subprocess.run(["umount", str(m)])
    print(check.stdout, end="")
    if check.returncode != 0:
        print(check.stderr[-3000:], file=sys.stderr)
    print(f"[selfcheck] exit {check.returncode} after {time.perf_counter() - t0:.0f} s under "
          f"emulation ({arch}, {py})")
    return check.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.emulate_arm64", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "selfcheck.time_tolerance_s=0.25")
    parser.add_argument("--root", type=Path, default=Path("/var/tmp/hopwise-arm64"),
                        help="the arm64 root (made once, reused; default: %(default)s)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="bookworm",
                        help="Debian suite: its Python is the Pi OS one (default: %(default)s)")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--fresh", action="store_true", help="make a new root even if one exists")
    parser.add_argument("--finish", choices=("extract", "second-stage"), default="extract",
                        help="how the root is completed after debootstrap's first stage "
                             "(default: %(default)s; see above)")
    args = parser.parse_args(argv)
    try:
        return 0 if selfcheck_emulated(config_from_args(args), args.root, args.suite,
                                       args.mirror, args.fresh, args.finish) == 0 else 1
    except EmulationError as exc:
        print(f"emulate_arm64: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
