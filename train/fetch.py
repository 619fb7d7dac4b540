"""Fetch the public datasets the profiles know into one cache folder: pinned, resumable, safe.

``make data`` fetches every dataset of ``fetch.datasets``; ``make train`` fetches only
``fetch.auto_datasets`` (small enough for the main job's budget) when the hosts answer
and the user has not opted out, and otherwise prints one line saying the job trains on the
built-in synthetic corpus, what that means on real voices, and the command that fixes it.

Each download is checked against a pinned size and sha256 before anything is extracted; files
whose publishers give no checksum (GitHub's commit archives) are fetched over HTTPS, flagged as
unverified, and their sha256 is recorded on first use so a later download must match it
(``fetch.allow_unverified = false`` refuses them instead). Downloads resume with HTTP
Range after an interruption; extraction goes to a staging folder that becomes the dataset
folder only when every member was written, and it refuses members that would land outside it
(absolute paths, ``..``, links pointing out). Each dataset's licence is printed and written
beside the data (``LICENCE-hopwise.txt``, plus the dataset's own licence file).

Layout of the cache (``fetch.cache_dir``, ``$HOPWISE_CACHE`` overrides it)::

    <cache>/downloads/<archive>                 (.part while downloading; removed once extracted)
    <cache>/speech_commands_v0.02/<label>/...   the layouts train/datasets.py reads
    <cache>/speech_commands_test_v0.02/...
    <cache>/wake_words/<phrase>/...
    <cache>/esc50/{audio,meta}/...
    <cache>/unverified-sha256.json              hashes recorded on first use

Profiles name these folders as ``cache:<folder>`` (see ``train.corpus.resolve_data_path``).

Command line::

    python -m train.fetch                    # everything in fetch.datasets (make data)
    python -m train.fetch wake_words esc50   # some of them
    python -m train.fetch --list             # the table: URL, size, sha256, where the pin is from
    python -m train.fetch --auto             # what make train does
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import stat
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping, Sequence

from device.config import Config, add_profile_arguments, config_from_args, load_config

__all__ = ["Archive", "Dataset", "DATASETS", "FetchError", "cache_dir", "dataset_dir",
           "is_fetched", "download", "safe_extract", "fetch_dataset", "fetch", "probe",
           "auto_fetch", "OFFLINE_ENV", "CACHE_ENV", "main"]

CACHE_ENV = "HOPWISE_CACHE"      # overrides fetch.cache_dir
OFFLINE_ENV = "HOPWISE_OFFLINE"  # "1": make train never touches the network
MARKER = ".hopwise-dataset.json"
LICENCE_FILE = "LICENCE-hopwise.txt"
UNVERIFIED_DB = "unverified-sha256.json"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download or extraction failed; the message names the file, the reason and the fix."""


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Archive:
    """One file to download.

    Parameters
    ----------
    filename : str
        Its name under ``<cache>/downloads/``.
    url : str
        The official location.
    size : int or None
        Bytes, when published; a download of another size is refused.
    sha256 : str or None
        When published; None makes the file *unverified* (see the module docstring).
    pin_source : str
        Where ``size``/``sha256`` come from (or why there are none), printed by ``--list``.
    members : tuple of (str, str)
        ``(archive prefix, folder prefix)`` pairs: a member whose name starts with an archive
        prefix is written at the folder prefix plus the rest of its name; members matching no
        pair are skipped (a repository archive holds more than the audio). ``("", "")`` keeps
        everything as it is.
    """

    filename: str
    url: str
    size: int | None
    sha256: str | None
    pin_source: str
    members: tuple[tuple[str, str], ...] = (("", ""),)

    @property
    def kind(self) -> str:
        if self.filename.endswith((".tar.gz", ".tgz")):
            return "tar.gz"
        if self.filename.endswith(".zip"):
            return "zip"
        raise FetchError(f"{self.filename}: unknown archive type (expected .tar.gz or .zip)")


@dataclass(frozen=True)
class Dataset:
    """A dataset: the archives that make it, the folder they fill and its licence.

    ``expect`` lists paths (relative to the folder) that must exist after extraction: a
    repository archive that changed its layout, or holds Git LFS pointers instead of audio,
    is caught here instead of at training time.
    """

    key: str
    title: str
    folder: str
    archives: tuple[Archive, ...]
    licence: str
    licence_url: str
    attribution: str
    profile_keys: tuple[str, ...]
    expect: tuple[str, ...] = ()
    note: str = ""

    @property
    def verified(self) -> bool:
        return all(a.sha256 for a in self.archives)


_TFDS = ("TensorFlow Datasets, tensorflow_datasets/url_checksums/speech_commands.txt "
         "(commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5)")
_SC_ATTRIBUTION = ("Speech Commands v0.02, Pete Warden, Google (2018), "
                   "https://arxiv.org/abs/1804.03209")
# Pinned commits: a commit archive's content is fixed by the commit, but GitHub generates the
# archive bytes on request and publishes no checksum, so these two are unverified downloads.
_WWB_COMMIT = "009a1b504c90bb2b21343cef0dbd4a4ee97914d4"
_ESC_COMMIT = "5983fb0c35e751b452e7c562d9207f27b76ddf0d"
_NO_PIN = ("no published checksum: GitHub generates commit archives on request and publishes "
           "no hash (sha256 recorded on first download)")

DATASETS: dict[str, Dataset] = {d.key: d for d in (
    Dataset(
        key="speech_commands_test", title="Speech Commands v0.02, test set (12 classes)",
        folder="speech_commands_test_v0.02",
        archives=(Archive("speech_commands_test_set_v0.02.tar.gz",
                          "https://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
                          112563277,
                          "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
                          _TFDS),),
        licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
        attribution=_SC_ATTRIBUTION, profile_keys=("data.real.speech_commands",),
        expect=("_silence_", "_unknown_", "yes"),
        note="the canonical 12-class test set (10 commands, _silence_, _unknown_)"),
    Dataset(
        key="speech_commands", title="Speech Commands v0.02 (full, 35 words + background noise)",
        folder="speech_commands_v0.02",
        archives=(Archive("speech_commands_v0.02.tar.gz",
                          "https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
                          2428923189,
                          "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
                          _TFDS),),
        licence="CC BY 4.0", licence_url="https://creativecommons.org/licenses/by/4.0/",
        attribution=_SC_ATTRIBUTION,
        profile_keys=("data.real.speech_commands", "data.real.background_noise"),
        expect=("yes", "_background_noise_", "validation_list.txt", "testing_list.txt"),
        note="2.3 GB; its _background_noise_/ folder is the noise set"),
    Dataset(
        key="wake_words", title="Picovoice wake-word benchmark recordings (crowd-sourced)",
        folder="wake_words",
        archives=(Archive(f"wake-word-benchmark-{_WWB_COMMIT}.tar.gz",
                          f"https://github.com/Picovoice/wake-word-benchmark/archive/"
                          f"{_WWB_COMMIT}.tar.gz", None, None, _NO_PIN,
                          members=((f"wake-word-benchmark-{_WWB_COMMIT}/audio/", ""),
                                   (f"wake-word-benchmark-{_WWB_COMMIT}/LICENSE", "LICENSE"))),),
        licence="Apache 2.0", licence_url="https://www.apache.org/licenses/LICENSE-2.0",
        attribution="Picovoice Inc., wake-word-benchmark, https://github.com/Picovoice/"
                    "wake-word-benchmark",
        profile_keys=("data.real.wake_words",), expect=("computer", "alexa"),
        note="audio/<phrase>/ of the repository at a pinned commit: computer, alexa and the "
             "other phrases (negatives of the same recording channel)"),
    Dataset(
        key="esc50", title="ESC-50 environmental sounds (2000 clips, 50 classes)",
        folder="esc50",
        archives=(Archive(f"ESC-50-{_ESC_COMMIT}.zip",
                          f"https://github.com/karolpiczak/ESC-50/archive/{_ESC_COMMIT}.zip",
                          None, None, _NO_PIN,
                          members=((f"ESC-50-{_ESC_COMMIT}/audio/", "audio/"),
                                   (f"ESC-50-{_ESC_COMMIT}/meta/", "meta/"),
                                   (f"ESC-50-{_ESC_COMMIT}/LICENSE", "LICENSE"))),),
        licence="CC BY-NC 3.0 (ESC-10 subset: CC BY)",
        licence_url="https://creativecommons.org/licenses/by-nc/3.0/",
        attribution="K. J. Piczak, ESC: Dataset for Environmental Sound Classification, ACM MM "
                    "2015; per-clip Freesound attributions in LICENSE",
        profile_keys=("data.real.esc50",), expect=("audio", "meta/esc50.csv"),
        note="about 600 MB; non-commercial licence"),
)}


# --------------------------------------------------------------------------- where things go
def cache_dir(cfg: Config | None = None) -> Path:
    """The cache folder: ``$HOPWISE_CACHE``, else ``fetch.cache_dir`` of ``cfg`` (of the
    default profile when no profile is given), with ``~`` expanded."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    if cfg is None:
        cfg = load_config("default")
    return Path(str(cfg["fetch.cache_dir"])).expanduser().resolve()


def dataset_dir(key: str, cache: Path, datasets: Mapping[str, Dataset] | None = None) -> Path:
    """The folder a dataset is extracted to."""
    return Path(cache) / (DATASETS if datasets is None else datasets)[key].folder


def is_fetched(dataset: Dataset, cache: Path) -> bool:
    """True when the dataset's folder holds a completed extraction of the same archives."""
    marker = Path(cache) / dataset.folder / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("archives") == [a.url for a in dataset.archives]


def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- download
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress_bar(total: int | None, initial: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, disable=quiet, leave=False)


def _unverified_db(cache: Path) -> dict:
    path = Path(cache) / UNVERIFIED_DB
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def download(archive: Archive, cache: Path, *, timeout_s: float = 60.0,
             allow_unverified: bool = True, quiet: bool = False) -> Path:
    """Download ``archive`` into ``<cache>/downloads/`` and verify it; return its path.

    A ``.part`` file left by an interrupted download is continued with an HTTP Range request
    (started over when the server ignores the range). The finished file must have the pinned
    size and sha256; an unpinned file must match the sha256 recorded at its first download.

    Raises
    ------
    FetchError
        On a network error (the ``.part`` stays: run again to resume), a size or hash mismatch
        (the file is deleted), or an unverified file when ``allow_unverified`` is False.
    """
    if not archive.sha256:
        if not allow_unverified:
            raise FetchError(
                f"{archive.filename}: no published sha256 to check it against "
                f"({archive.pin_source}); "
                f"refusing it because fetch.allow_unverified is false. Set it to true "
                f"(--set fetch.allow_unverified=true) to fetch it over HTTPS and record its hash")
        if not archive.url.startswith("https://") and not _is_loopback(archive.url):
            raise FetchError(f"{archive.filename}: an unverified file is fetched over HTTPS only, "
                             f"got {archive.url}")
    folder = Path(cache) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / archive.filename
    part = folder / (archive.filename + ".part")
    if dest.is_file():
        _verify(archive, dest, cache, quiet)
        return dest
    start = part.stat().st_size if part.is_file() else 0
    # Longer than the published file: not a prefix of it. Unpinned: a GitHub archive is made
    # anew for each request and its bytes need not repeat, so a prefix of one is not resumed.
    if start and (archive.sha256 is None or (archive.size is not None and start > archive.size)):
        part.unlink()
        start = 0
    headers = {"User-Agent": "hopwise-fetch/1"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(archive.url, headers=headers)
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start and archive.size in (None, start):
                response = None  # the .part is already whole
            else:
                raise
        if response is not None:
            with response:
                if start and response.status != 206:
                    start = 0  # the server ignored the range: start over
                elif start:
                    got = response.headers.get("Content-Range", "")
                    if not got.startswith(f"bytes {start}-"):
                        raise FetchError(f"{archive.filename}: asked {archive.url} for bytes "
                                         f"{start}- and got {got!r}; delete {part} and run again")
                length = response.headers.get("Content-Length")
                total = archive.size or (start + int(length) if length else None)
                _say(f"{'resuming' if start else 'downloading'} {archive.url}"
                     + (f" at {start} of {total} bytes" if start else ""), quiet)
                with open(part, "ab" if start else "wb") as fh, \
                        _progress_bar(total, start, archive.filename, quiet) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        fh.write(block)
                        bar.update(len(block))
                # http.client ends a read at a closed connection without an error: compare.
                if length is not None and part.stat().st_size < start + int(length):
                    raise ConnectionError(f"connection closed after {part.stat().st_size} of "
                                          f"{start + int(length)} bytes")
    except FetchError:
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        have = part.stat().st_size if part.is_file() else 0
        if have == 0:
            part.unlink(missing_ok=True)
            raise FetchError(f"{archive.filename}: download from {archive.url} failed ({exc}); "
                             f"nothing received: check the network (or https_proxy) and run the "
                             f"same command again") from None
        raise FetchError(f"{archive.filename}: download from {archive.url} failed ({exc}); "
                         f"{have} bytes kept in {part}: run the same command again to resume"
                         ) from None
    _verify(archive, part, cache, quiet)
    os.replace(part, dest)
    return dest


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


def _verify(archive: Archive, path: Path, cache: Path, quiet: bool) -> None:
    """Size and sha256 against the pin (or the hash recorded on first use); a file that fails
    is deleted so that nothing downstream can use it."""
    size = path.stat().st_size
    fix = "run the same command again to download it afresh; if it fails again, the file at " \
          "the official location changed: report it"
    if archive.size is not None and size != archive.size:
        path.unlink()
        raise FetchError(f"{archive.filename}: {size} bytes, expected {archive.size} "
                         f"({archive.pin_source}); deleted it. {fix}")
    digest = _sha256(path)
    expected = archive.sha256
    source = archive.pin_source
    if expected is None:
        expected = _unverified_db(cache).get(archive.url)
        source = f"recorded on first download in {Path(cache) / UNVERIFIED_DB}"
        if expected is None:
            # Recorded by fetch_dataset once the archive extracted into the expected layout:
            # a broken first download must not become the reference.
            _say(f"UNVERIFIED {archive.filename}: no published checksum exists; sha256 "
                 f"{digest} (recorded once it extracts; later downloads must match it)", quiet)
            return
    if digest != expected:
        path.unlink()
        raise FetchError(f"{archive.filename}: sha256 {digest} does not match {expected} "
                         f"({source}); deleted it, nothing was extracted. {fix}")
    _say(f"verified {archive.filename}: {size} bytes, sha256 {digest}"
         + ("" if archive.sha256 else " (matches the hash recorded on first download; "
            "no published checksum)"), quiet)


# --------------------------------------------------------------------------- extraction
def _safe_relpath(name: str, archive_name: str) -> PurePosixPath:
    """A member name as a relative path that stays inside the target, or FetchError."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise FetchError(f"{archive_name}: member {name!r} has an absolute path; refusing the "
                         f"archive (nothing extracted). Delete it and fetch again from the "
                         f"official location")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise FetchError(f"{archive_name}: member {name!r} leaves the target folder ('..'); "
                         f"refusing the archive (nothing extracted). Delete it and fetch again "
                         f"from the official location")
    return PurePosixPath(*[p for p in parts if p not in ("", ".")]) if parts else PurePosixPath()


def _map(name: str, members: Sequence[tuple[str, str]]) -> str | None:
    for prefix, to in members:
        if name == prefix or name.startswith(prefix):
            return to + name[len(prefix):]
    return None


def _check_link(name: str, target: str, archive_name: str, kind: str) -> None:
    """A link is never created; one whose target leaves the folder condemns the archive."""
    # A symbolic link is relative to its own folder, a tar hard link to the archive's root.
    resolved = PurePosixPath(name).parent / target if kind == "symlink" else PurePosixPath(target)
    if target.startswith("/") or ".." in PurePosixPath(os.path.normpath(str(resolved))).parts:
        raise FetchError(f"{archive_name}: {kind} {name!r} points outside the target folder "
                         f"({target!r}); refusing the archive (nothing extracted). Delete it and "
                         f"fetch again from the official location")


def _members(path: Path, kind: str):
    """Yield ``(name, type, link target or None, opener)`` for each member, where type is
    "file", "dir", "symlink", "hardlink" or "other"."""
    if kind == "tar.gz":
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isreg():
                    yield m.name, "file", None, (lambda m=m: tar.extractfile(m))
                elif m.isdir():
                    yield m.name, "dir", None, None
                elif m.issym():
                    yield m.name, "symlink", m.linkname, None
                elif m.islnk():
                    yield m.name, "hardlink", m.linkname, None
                else:
                    yield m.name, "other", None, None
    else:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    yield info.filename, "symlink", zf.read(info).decode("utf-8", "replace"), None
                elif info.is_dir():
                    yield info.filename, "dir", None, None
                else:
                    yield info.filename, "file", None, (lambda info=info: zf.open(info))


def safe_extract(path: Path, kind: str, target: Path,
                 members: Sequence[tuple[str, str]] = (("", ""),)) -> int:
    """Extract the archive at ``path`` into ``target`` (created), refusing escaping members.

    Every member name is checked before it is written: absolute paths, ``..`` components and
    symbolic or hard links pointing outside ``target`` make the whole archive fail. Links
    inside are not created (no dataset needs one); devices and FIFOs are refused. Members are
    renamed by ``members`` (see `Archive`).

    Returns
    -------
    int
        Files written.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    written = 0
    for name, mtype, link, opener in _members(path, kind):
        rel_name = str(_safe_relpath(name, path.name))
        if mtype in ("symlink", "hardlink"):
            _check_link(rel_name, link or "", path.name, mtype)
            continue
        if mtype == "other":
            raise FetchError(f"{path.name}: member {name!r} is a device or FIFO; refusing the "
                             f"archive (nothing extracted)")
        mapped = _map(rel_name + ("/" if mtype == "dir" else ""), members)
        if mapped is None:
            continue
        rel = _safe_relpath(mapped, path.name)
        if not rel.parts:
            continue
        dest = (root / Path(*rel.parts))
        if root not in dest.resolve().parents and dest.resolve() != root:
            raise FetchError(f"{path.name}: member {name!r} resolves outside {target}; refusing "
                             f"the archive (nothing extracted)")
        if mtype == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        written += 1
    return written


def _licence_text(dataset: Dataset, archives: Iterable[tuple[Archive, Path | None]]) -> str:
    lines = [f"{dataset.title}", "",
             f"Licence: {dataset.licence} ({dataset.licence_url})",
             f"Attribution: {dataset.attribution}", ""]
    for archive, _ in archives:
        lines += [f"Source: {archive.url}",
                  f"  size: {archive.size if archive.size is not None else 'not published'}",
                  f"  sha256: {archive.sha256 or 'not published (UNVERIFIED download)'}",
                  f"  pin: {archive.pin_source}"]
    lines += ["", "Fetched by hopwise (python -m train.fetch). The dataset's own licence file, "
              "when it ships one, is beside this one (LICENSE)."]
    return "\n".join(lines) + "\n"


def fetch_dataset(dataset: Dataset, cache: Path, *, timeout_s: float = 60.0,
                  allow_unverified: bool = True, keep_archives: bool = False,
                  quiet: bool = False, force: bool = False) -> Path:
    """Download, verify and extract one dataset into ``<cache>/<folder>``; return the folder.

    Extraction goes to a hidden staging folder, which replaces ``<cache>/<folder>`` only after
    every member is written and the expected layout is found, so a failure never leaves a
    half-extracted folder where a profile looks.
    """
    cache = Path(cache)
    target = cache / dataset.folder
    if not force and is_fetched(dataset, cache):
        _say(f"{dataset.key}: already in {target}", quiet)
        return target
    _say(f"{dataset.key}: {dataset.title}\n  licence: {dataset.licence} ({dataset.licence_url})"
         f"\n  attribution: {dataset.attribution}", quiet)
    paths = [download(a, cache, timeout_s=timeout_s, allow_unverified=allow_unverified,
                      quiet=quiet) for a in dataset.archives]
    first_use = {a.url: _sha256(p) for a, p in zip(dataset.archives, paths)
                 if a.sha256 is None and a.url not in _unverified_db(cache)}
    staging = cache / f".{dataset.folder}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files = 0
        for archive, path in zip(dataset.archives, paths):
            _say(f"extracting {archive.filename} into {target}", quiet)
            try:
                files += safe_extract(path, archive.kind, staging, archive.members)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
                path.unlink(missing_ok=True)
                raise FetchError(f"{archive.filename}: not a readable {archive.kind} archive "
                                 f"({exc}); deleted it, nothing was extracted: run the same "
                                 f"command again") from None
        missing = [e for e in dataset.expect if not (staging / e).exists()]
        if missing or files == 0:
            raise FetchError(f"{dataset.key}: after extraction {missing or 'every file'} "
                             f"missing from {target}; the archive's layout is not the one this "
                             f"fetcher knows (train/fetch.py DATASETS)")
        (staging / LICENCE_FILE).write_text(_licence_text(dataset, zip(dataset.archives, paths)))
        if first_use:
            db = {**_unverified_db(cache), **first_use}
            (cache / UNVERIFIED_DB).write_text(json.dumps(db, indent=2, sort_keys=True))
        (staging / MARKER).write_text(json.dumps({
            "dataset": dataset.key, "archives": [a.url for a in dataset.archives],
            "sha256": {a.filename: a.sha256 or _unverified_db(cache).get(a.url)
                       for a in dataset.archives},
            "verified": dataset.verified, "files": files,
            "fetched_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
        if target.exists():
            old = cache / f".{dataset.folder}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not keep_archives:
        for path in paths:
            path.unlink(missing_ok=True)
    _say(f"{dataset.key}: {files} files in {target} ({dataset.licence}; see "
         f"{target / LICENCE_FILE})", quiet)
    return target


# --------------------------------------------------------------------------- network probe
def probe(urls: Iterable[str], timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether every host of ``urls`` accepts a TCP connection (through the proxy when one is
    set), within ``timeout_s`` in all (name lookup included: it runs in a thread that is
    abandoned at the deadline, so an unanswered DNS query cannot hang the build).

    Returns ``(reachable, reason)``; the reason names the first host that did not answer.
    """
    hosts = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            parts = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (parts.hostname, port) not in hosts:
            hosts.append((parts.hostname, port))
    result: dict = {}

    def attempt():
        for host, port in hosts:
            try:
                socket.create_connection((host, port), timeout=timeout_s).close()
            except OSError as exc:
                result["reason"] = f"{host}:{port} unreachable ({exc.__class__.__name__})"
                return
        result["ok"] = True

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False, f"no answer from {', '.join(h for h, _ in hosts)} within {timeout_s:g} s"
    return bool(result.get("ok")), result.get("reason", "")


# --------------------------------------------------------------------------- profile-level API
def _select(cfg: Config, keys: Sequence[str] | None,
            datasets: Mapping[str, Dataset] | None) -> list[Dataset]:
    datasets = DATASETS if datasets is None else datasets  # looked up now: tests swap the table
    keys = list(keys) if keys else list(cfg["fetch.datasets"])
    unknown = [k for k in keys if k not in datasets]
    if unknown:
        raise FetchError(f"unknown dataset(s) {unknown}; known: {', '.join(datasets)} "
                         f"(fetch.datasets or the command line)")
    return [datasets[k] for k in keys]


def fetch(cfg: Config, keys: Sequence[str] | None = None, *,
          datasets: Mapping[str, Dataset] | None = None, quiet: bool = False,
          force: bool = False) -> dict[str, Path]:
    """Fetch ``keys`` (default ``fetch.datasets``) with the profile's fetch settings."""
    cache = cache_dir(cfg)
    out = {}
    for dataset in _select(cfg, keys, datasets):
        out[dataset.key] = fetch_dataset(
            dataset, cache, timeout_s=cfg["fetch.timeout_s"],
            allow_unverified=cfg["fetch.allow_unverified"],
            keep_archives=cfg["fetch.keep_archives"], quiet=quiet, force=force)
    return out


def offline_line(cfg: Config, reason: str) -> str:
    """The one line the main job prints when it trains without real recordings."""
    return (f"hopwise: no real recordings ({reason}): training on the built-in synthetic corpus "
            f"only; on real voices expect about 2 in 3 spoken commands right in a quiet room "
            f"(up to 1 in 10 wrong) and over half of the real "
            f"\"{cfg['labels.wake_word']}\"s heard at 1-2 false wake-ups an hour (default build "
            f"with its wake verifier, 2026-12-05, two or three training seeds: 65-74 % of "
            f"commands, 51-58 % of real \"computer\"s). "
            f"Fix: `make data` on a machine with network (then `make train PROFILE=full`), or point "
            f"data.real.* at recordings you have")


def _used_by(cfg: Config, dataset: Dataset) -> bool:
    """Whether the profile's corpus reads ``dataset`` from the cache: a synthetic profile with
    ``fetch.add_to_synthetic``, or a ``data.real.*`` key naming ``cache:<its folder>``."""
    if cfg["data.source"] == "synthetic":
        return bool(cfg["fetch.add_to_synthetic"])
    return any(str(cfg.get(k, "")) == f"cache:{dataset.folder}" for k in dataset.profile_keys)


def auto_fetch(cfg: Config, *, datasets: Mapping[str, Dataset] | None = None,
               quiet: bool = False, out=None) -> dict[str, Path]:
    """What ``make train`` does before building the corpus.

    Fetches ``fetch.auto_datasets`` when ``fetch.auto`` is true, ``$HOPWISE_OFFLINE``
    is not set and their hosts answer within ``fetch.probe_timeout_s``; never raises for
    a network problem. When the profile ends up training without any real recording it prints
    `offline_line` (one line, on ``out``, default stdout).

    Returns
    -------
    dict
        Dataset key -> folder of each auto dataset present in the cache afterwards.
    """
    out = out or sys.stdout
    cache = cache_dir(cfg)
    wanted = [d for d in _select(cfg, cfg["fetch.auto_datasets"], datasets) if _used_by(cfg, d)]
    missing = [d for d in wanted if not is_fetched(d, cache)]
    reason = ""
    if missing:
        if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
            reason = f"${OFFLINE_ENV} is set"
        elif not cfg["fetch.auto"]:
            reason = "fetch.auto is false"
        else:
            ok, why = probe([a.url for d in missing for a in d.archives],
                            cfg["fetch.probe_timeout_s"])
            if not ok:
                reason = f"offline: {why}"
            else:
                for d in missing:
                    try:
                        fetch_dataset(d, cache, timeout_s=cfg["fetch.timeout_s"],
                                      allow_unverified=cfg["fetch.allow_unverified"],
                                      keep_archives=cfg["fetch.keep_archives"], quiet=quiet)
                    except FetchError as exc:
                        reason = f"fetch failed: {exc}"
                        print(f"hopwise: {exc}", file=sys.stderr)
    present = {d.key: cache / d.folder for d in wanted if is_fetched(d, cache)}
    uses_real = cfg["data.source"] == "real" or (present and cfg["fetch.add_to_synthetic"])
    if not uses_real:
        reason = reason or ("fetch.add_to_synthetic is false" if present else
                            "none fetched")
        print(offline_line(cfg, reason), file=out, flush=True)
    elif present and cfg["data.source"] == "synthetic":
        print(f"hopwise: training on the synthetic corpus plus the fetched recordings in "
              f"{cache} ({', '.join(present)}); `make data` fetches the rest", file=out, flush=True)
    return present


# --------------------------------------------------------------------------- command line
def table(datasets: Mapping[str, Dataset] | None = None, cache: Path | None = None) -> str:
    """The URL / size / sha256 table with where each pin is from (and what is fetched)."""
    datasets = DATASETS if datasets is None else datasets
    rows = []
    for d in datasets.values():
        state = "" if cache is None else \
            (" [fetched]" if is_fetched(d, cache) else " [not fetched]")
        rows.append(f"{d.key}{state}: {d.title}; {d.licence}; -> <cache>/{d.folder}"
                    + (f"; {d.note}" if d.note else ""))
        for a in d.archives:
            rows.append(f"  {a.url}\n    size {a.size if a.size is not None else '(not published)'}"
                        f"  sha256 {a.sha256 or '(not published: UNVERIFIED)'}"
                        f"\n    pin: {a.pin_source}")
    rows.append("background noise: Speech Commands' _background_noise_/ inside "
                "speech_commands_v0.02.tar.gz (no separate download)")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.fetch",
        description="Fetch the public datasets the profiles know (Speech Commands v0.02 and its\n"
                    "test set, the Picovoice wake-word recordings, ESC-50) into one cache folder\n"
                    "(fetch.cache_dir, $HOPWISE_CACHE overrides): pinned sizes and sha256,\n"
                    "resumable downloads, safe extraction, licences written beside the data.",
        epilog="examples:\n  python -m train.fetch                  # fetch.datasets (make data)\n"
               "  python -m train.fetch speech_commands_test wake_words\n"
               "  python -m train.fetch --list\n"
               "  python -m train.fetch --auto           # what make train runs first\n"
               "  HOPWISE_CACHE=/data/hopwise python -m train.fetch esc50\n"
               "then: make train PROFILE=full",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "fetch.cache_dir=/data/hopwise")
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"datasets to fetch ({', '.join(DATASETS)}; default: "
                             f"fetch.datasets)")
    parser.add_argument("--list", action="store_true", help="print the table and what is fetched")
    parser.add_argument("--auto", action="store_true",
                        help="make train's step: fetch fetch.auto_datasets when online and "
                             "allowed, else print one line about training on synthetic data")
    parser.add_argument("--force", action="store_true", help="fetch again even when present")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.list:
            print(f"cache: {cache_dir(cfg)}")
            print(table(None, cache_dir(cfg)))
            return 0
        if args.auto:
            auto_fetch(cfg, quiet=args.quiet)
            return 0
        got = fetch(cfg, args.datasets or None, quiet=args.quiet, force=args.force)
    except (FetchError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, path in got.items():
        print(f"{key}: {path}")
    print("train on them: make train PROFILE=full")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
