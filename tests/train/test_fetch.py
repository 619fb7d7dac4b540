"""train.fetch against a real HTTP server on loopback serving small archives made here.

The server (http.server in a thread) honours Range requests and can cut a response short, so
downloads, resumes, hash refusals, path-traversal refusals and the offline line are exercised
over real sockets; nothing here reaches the internet (the autouse fixture of tests/conftest.py
sets $HOPWISE_OFFLINE and an empty $HOPWISE_CACHE; tests that go "online" go to 127.0.0.1).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.mosquitto import free_port
from device.config import load_config
from train import fetch as F
from train.corpus import build_corpus, fetched_folders, resolve_data_path


# --------------------------------------------------------------------------- loopback server
class Server:
    """Serves ``files`` (path -> bytes) on 127.0.0.1 with Range support.

    ``cut[path] = n`` makes the next response for ``path`` stop after ``n`` body bytes (the
    connection closes early, as a dropped download does). ``requests`` records
    ``(path, Range header or None)``.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match:
                    start = int(match[1])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                payload = body[start:]
                n = server.cut.pop(self.path, None)
                self.wfile.write(payload if n is None else payload[:n])
                self.wfile.flush()
                if n is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


# --------------------------------------------------------------------------- small archives
def wav_bytes(seed: int, seconds: float = 0.3, rate: int = 16000) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32), rate,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_tar(entries: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None,
             absolute: str | None = None) -> bytes:
    """A .tar.gz of ``entries`` (name -> bytes); ``links`` adds name -> (target, SYMTYPE|LNKTYPE)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def speech_commands_tar() -> bytes:
    """The test-set archive's layout: label folders at the root, a LICENSE file."""
    return make_tar({"yes/aaaa1111_nohash_0.wav": wav_bytes(1),
                     "yes/bbbb2222_nohash_0.wav": wav_bytes(2),
                     "_silence_/s0.wav": wav_bytes(3),
                     "_unknown_/bird_cccc3333_nohash_0.wav": wav_bytes(4),
                     "LICENSE": b"Creative Commons Attribution 4.0 International\n"})


def wake_words_tar(prefix: str = "wwb-abc") -> bytes:
    """A repository archive: the audio under <repo>-<commit>/audio/, other files beside it."""
    return make_tar({f"{prefix}/audio/computer/c1.wav": wav_bytes(5),
                     f"{prefix}/audio/computer/c2.wav": wav_bytes(6),
                     f"{prefix}/audio/alexa/a1.wav": wav_bytes(7),
                     f"{prefix}/LICENSE": b"Apache License 2.0\n",
                     f"{prefix}/benchmark.py": b"print('not data')\n"})


def pinned(name: str, url: str, data: bytes, **kw) -> F.Archive:
    return F.Archive(name, url, len(data), hashlib.sha256(data).hexdigest(), "made by the test", **kw)


def dataset(key: str, archive: F.Archive, expect=("yes",), licence="CC BY 4.0") -> F.Dataset:
    return F.Dataset(key=key, title=f"test {key}", folder=key, archives=(archive,),
                     licence=licence, licence_url="https://example.invalid/licence",
                     attribution="the test", profile_keys=("data.real.speech_commands",),
                     expect=expect)


# --------------------------------------------------------------------------- good download
def test_good_download_is_verified_extracted_and_licensed(server, tmp_path, capsys):
    data = speech_commands_tar()
    server.files["/sc.tar.gz"] = data
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), data))
    folder = F.fetch_dataset(ds, tmp_path, quiet=False)

    assert folder == tmp_path / "sc"
    assert sorted(p.name for p in (folder / "yes").iterdir()) == ["aaaa1111_nohash_0.wav",
                                                                  "bbbb2222_nohash_0.wav"]
    assert (folder / "yes" / "aaaa1111_nohash_0.wav").read_bytes() == wav_bytes(1)
    licence = (folder / F.LICENCE_FILE).read_text()
    assert "CC BY 4.0" in licence and hashlib.sha256(data).hexdigest() in licence
    assert (folder / "LICENSE").read_text().startswith("Creative Commons")  # the dataset's own
    assert "CC BY 4.0" in capsys.readouterr().err                          # printed too
    assert F.is_fetched(ds, tmp_path)
    assert not (tmp_path / "downloads" / "sc.tar.gz").exists()  # keep_archives=False
    assert json.loads((folder / F.MARKER).read_text())["verified"] is True

    n = len(server.requests)
    F.fetch_dataset(ds, tmp_path, quiet=True)  # present: no second download
    assert len(server.requests) == n


def test_repository_zip_keeps_only_the_mapped_members(server, tmp_path):
    """ESC-50's shape: a zip whose top folder is <repo>-<commit>/, mapped to audio/ + meta/."""
    data = make_zip({"ESC-50-abc/audio/1-100-A-0.wav": wav_bytes(8),
                     "ESC-50-abc/meta/esc50.csv": b"filename,fold,target,category,esc10,"
                                                  b"src_file,take\n1-100-A-0.wav,1,0,dog,True,100,A\n",
                     "ESC-50-abc/LICENSE": b"CC BY-NC 3.0\n",
                     "ESC-50-abc/esc50.gif": b"GIF89a"})
    server.files["/esc.zip"] = data
    archive = pinned("esc.zip", server.url("/esc.zip"), data,
                     members=(("ESC-50-abc/audio/", "audio/"), ("ESC-50-abc/meta/", "meta/"),
                              ("ESC-50-abc/LICENSE", "LICENSE")))
    folder = F.fetch_dataset(dataset("esc", archive, expect=("audio", "meta/esc50.csv")),
                             tmp_path, quiet=True)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [F.MARKER, F.LICENCE_FILE, "LICENSE", "audio/1-100-A-0.wav", "meta/esc50.csv"]
    from train.datasets import load_esc50
    clips = load_esc50(folder, 16000, major_groups=True)
    assert [(c.label, c.fold) for c in clips] == [("animals", 1)]


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("kept", ["half", "all"])
def test_a_partial_file_is_completed_with_a_range_request(server, tmp_path, kept):
    """Half a .part: the rest comes as 206. All of it: the server answers 416 to a range past
    the end, and the file is verified without a second download."""
    data = speech_commands_tar()
    server.files["/sc.tar.gz"] = data
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), data))
    part = tmp_path / "downloads" / "sc.tar.gz.part"
    part.parent.mkdir(parents=True)
    have = len(data) // 2 if kept == "half" else len(data)
    part.write_bytes(data[:have])

    F.fetch_dataset(ds, tmp_path, quiet=True)
    assert server.requests == [("/sc.tar.gz", f"bytes={have}-")]
    assert F.is_fetched(ds, tmp_path) and not part.exists()


def test_an_interrupted_download_resumes_on_the_next_run(server, tmp_path):
    data = wake_words_tar()
    server.files["/ww.tar.gz"] = data
    server.cut["/ww.tar.gz"] = 1000  # the first response stops after 1000 bytes
    archive = pinned("ww.tar.gz", server.url("/ww.tar.gz"), data,
                     members=(("wwb-abc/audio/", ""), ("wwb-abc/LICENSE", "LICENSE")))
    ds = dataset("ww", archive, expect=("computer", "alexa"), licence="Apache 2.0")

    with pytest.raises(F.FetchError, match="resume") as err:
        F.fetch_dataset(ds, tmp_path, quiet=True)
    assert "ww.tar.gz" in str(err.value)
    part = tmp_path / "downloads" / "ww.tar.gz.part"
    assert part.stat().st_size == 1000 and not (tmp_path / "ww").exists()

    folder = F.fetch_dataset(ds, tmp_path, quiet=True)
    assert server.requests[-1] == ("/ww.tar.gz", "bytes=1000-")
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["alexa", "computer"]
    assert not (folder / "benchmark.py").exists()  # unmapped repository files are skipped


# --------------------------------------------------------------------------- corrupt
def test_a_corrupt_download_is_refused_by_hash_and_nothing_is_extracted(server, tmp_path):
    good = speech_commands_tar()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # same size, one byte flipped
    server.files["/sc.tar.gz"] = bytes(bad)
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), good))

    with pytest.raises(F.FetchError) as err:
        F.fetch_dataset(ds, tmp_path, quiet=True)
    msg = str(err.value)
    assert "sc.tar.gz" in msg and "sha256" in msg and "run the same command again" in msg
    assert not (tmp_path / "sc").exists()
    assert not list(tmp_path.glob(".sc*"))                      # no staging left behind
    assert not list((tmp_path / "downloads").iterdir())         # the bad bytes are gone
    assert not F.is_fetched(ds, tmp_path)

    server.files["/sc.tar.gz"] = good                           # the fix: run again
    F.fetch_dataset(ds, tmp_path, quiet=True)
    assert F.is_fetched(ds, tmp_path)


def test_a_wrong_size_is_refused(server, tmp_path):
    good = speech_commands_tar()
    server.files["/sc.tar.gz"] = good + b"trailing"
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), good))
    with pytest.raises(F.FetchError, match=r"sc.tar.gz: \d+ bytes, expected"):
        F.fetch_dataset(ds, tmp_path, quiet=True)
    assert not (tmp_path / "sc").exists()


def test_an_archive_that_is_not_the_expected_layout_is_not_used(server, tmp_path):
    data = make_tar({"something_else/x.wav": wav_bytes(1)})
    server.files["/sc.tar.gz"] = data
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), data))
    with pytest.raises(F.FetchError, match=r"\['yes'\] missing"):
        F.fetch_dataset(ds, tmp_path, quiet=True)
    assert not (tmp_path / "sc").exists() and not F.is_fetched(ds, tmp_path)


# --------------------------------------------------------------------------- unverified files
def test_unverified_files_are_flagged_recorded_and_held_to_the_first_hash(server, tmp_path, capsys):
    first = wake_words_tar()
    server.files["/ww.tar.gz"] = first
    archive = F.Archive("ww.tar.gz", server.url("/ww.tar.gz"), None, None, "no checksum",
                        members=(("wwb-abc/audio/", ""),))
    ds = dataset("ww", archive, expect=("computer",))

    with pytest.raises(F.FetchError, match="allow_unverified"):
        F.fetch_dataset(ds, tmp_path, allow_unverified=False, quiet=True)
    assert server.requests == []  # refused before any byte is fetched

    F.fetch_dataset(ds, tmp_path, quiet=False)
    assert "UNVERIFIED" in capsys.readouterr().err
    recorded = json.loads((tmp_path / F.UNVERIFIED_DB).read_text())
    assert recorded == {archive.url: hashlib.sha256(first).hexdigest()}
    assert json.loads((tmp_path / "ww" / F.MARKER).read_text())["verified"] is False

    server.files["/ww.tar.gz"] = wake_words_tar(prefix="wwb-abc") + b"changed"
    with pytest.raises(F.FetchError, match="recorded on first download"):
        F.fetch_dataset(ds, tmp_path, force=True, quiet=True)
    assert F.is_fetched(ds, tmp_path)  # the earlier, matching extraction is still there


def test_a_broken_first_unverified_download_does_not_become_the_reference(server, tmp_path):
    """No hash is recorded for a file that does not extract; a .part of one is not resumed
    (GitHub makes the archive anew per request, its bytes need not repeat)."""
    server.files["/ww.tar.gz"] = b"not a tar.gz at all"
    archive = F.Archive("ww.tar.gz", server.url("/ww.tar.gz"), None, None, "no checksum",
                        members=(("wwb-abc/audio/", ""),))
    ds = dataset("ww", archive, expect=("computer",))
    with pytest.raises(F.FetchError, match="not a readable tar.gz"):
        F.fetch_dataset(ds, tmp_path, quiet=True)
    assert not (tmp_path / F.UNVERIFIED_DB).exists() and not (tmp_path / "ww").exists()

    assert not (tmp_path / "downloads" / "ww.tar.gz").exists()
    (tmp_path / "downloads" / "ww.tar.gz.part").write_bytes(b"stale prefix")
    server.files["/ww.tar.gz"] = wake_words_tar()
    F.fetch_dataset(ds, tmp_path, quiet=True)
    assert server.requests[-1] == ("/ww.tar.gz", None)  # started over, no Range
    assert F.is_fetched(ds, tmp_path) and (tmp_path / F.UNVERIFIED_DB).is_file()


# --------------------------------------------------------------------------- path traversal
@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink_out", "hardlink_out",
                                  "zip_dotdot", "nested_dotdot"])
def test_members_leaving_the_target_are_refused(tmp_path, case):
    target = tmp_path / "out" / "target"
    ok = {"yes/a.wav": wav_bytes(1)}
    if case == "dotdot":
        data, kind = make_tar({**ok, "../evil.txt": b"x"}), "tar.gz"
    elif case == "nested_dotdot":
        data, kind = make_tar({**ok, "yes/../../evil.txt": b"x"}), "tar.gz"
    elif case == "absolute":
        data, kind = make_tar({**ok, str(tmp_path / "evil.txt"): b"x"}), "tar.gz"
    elif case == "symlink_out":
        data, kind = make_tar(ok, links={"yes/link": ("../../../evil.txt", tarfile.SYMTYPE)}), "tar.gz"
    elif case == "hardlink_out":
        data, kind = make_tar(ok, links={"yes/hard": ("../evil.txt", tarfile.LNKTYPE)}), "tar.gz"
    else:
        data, kind = make_zip({**ok, "../evil.txt": b"x"}), "zip"
    path = tmp_path / f"archive.{kind}"
    path.write_bytes(data)
    with pytest.raises(F.FetchError, match="refusing the archive"):
        F.safe_extract(path, kind, target)
    assert not list(tmp_path.rglob("evil.txt"))


def test_a_traversal_member_fails_the_whole_fetch(server, tmp_path):
    data = make_tar({"yes/a.wav": wav_bytes(1), "../../escaped.txt": b"x"})
    server.files["/sc.tar.gz"] = data
    ds = dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), data))
    with pytest.raises(F.FetchError, match="leaves the target folder"):
        F.fetch_dataset(ds, tmp_path / "cache", quiet=True)
    assert not (tmp_path / "cache" / "sc").exists()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not list((tmp_path / "cache").glob(".sc*"))


def test_a_link_inside_the_folder_is_skipped_not_created(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tar({"yes/a.wav": b"x"}, links={"yes/b.wav": ("a.wav", tarfile.SYMTYPE)}))
    assert F.safe_extract(path, "tar.gz", tmp_path / "t") == 1
    assert not (tmp_path / "t" / "yes" / "b.wav").exists()


# --------------------------------------------------------------------------- make train's step
@pytest.fixture
def _cfg(tiny_overrides):
    """The tiny default profile with its fetch cache at ``cache`` and a two-dataset auto list."""
    def make(cache: Path, *extra: str):
        return load_config("default", [*tiny_overrides, f"fetch.cache_dir={cache}",
                                       'fetch.auto_datasets=["sc", "ww"]', *extra])
    return make



def _table(server: Server) -> dict[str, F.Dataset]:
    sc, ww = speech_commands_tar(), wake_words_tar()
    server.files["/sc.tar.gz"], server.files["/ww.tar.gz"] = sc, ww
    return {"sc": dataset("sc", pinned("sc.tar.gz", server.url("/sc.tar.gz"), sc)),
            "ww": F.Dataset(key="ww", title="test wake words", folder="ww",
                            archives=(pinned("ww.tar.gz", server.url("/ww.tar.gz"), ww,
                                             members=(("wwb-abc/audio/", ""),)),),
                            licence="Apache 2.0", licence_url="https://example.invalid",
                            attribution="the test", profile_keys=("data.real.wake_words",),
                            expect=("computer",))}


def test_offline_the_main_job_says_so_in_one_line(_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("HOPWISE_OFFLINE")
    monkeypatch.delenv("HOPWISE_CACHE")
    closed = free_port()  # nothing listens here: connection refused, as an unreachable host
    table = {"sc": dataset("sc", F.Archive("sc.tar.gz", f"http://127.0.0.1:{closed}/sc.tar.gz",
                                           10, "0" * 64, "test")),
             "ww": dataset("ww", F.Archive("ww.tar.gz", f"http://127.0.0.1:{closed}/ww.tar.gz",
                                           10, "0" * 64, "test"))}
    out = io.StringIO()
    present = F.auto_fetch(_cfg(tmp_path), datasets=table, quiet=True, out=out)
    lines = out.getvalue().splitlines()
    assert present == {} and len(lines) == 1
    assert "synthetic corpus only" in lines[0] and "make data" in lines[0]
    assert "offline" in lines[0] and "computer" in lines[0]
    assert not (tmp_path / "downloads").exists()


def test_opted_out_never_touches_the_network(_cfg, server, tmp_path, monkeypatch):
    table = _table(server)                      # HOPWISE_OFFLINE=1 from the autouse fixture
    out = io.StringIO()
    assert F.auto_fetch(_cfg(tmp_path), datasets=table, quiet=True, out=out) == {}
    assert "HOPWISE_OFFLINE" in out.getvalue() and server.requests == []
    monkeypatch.delenv("HOPWISE_OFFLINE")
    out = io.StringIO()
    F.auto_fetch(_cfg(tmp_path, "fetch.auto=false"), datasets=table, quiet=True, out=out)
    assert "fetch.auto is false" in out.getvalue() and server.requests == []


def test_online_make_train_fetches_the_small_sets_and_the_corpus_uses_them(_cfg, server, tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("HOPWISE_OFFLINE")
    monkeypatch.delenv("HOPWISE_CACHE")
    table = _table(server)
    monkeypatch.setattr(F, "DATASETS", table)  # the corpus looks datasets up in the table
    cfg = _cfg(tmp_path / "cache", f"project.build_dir={tmp_path / 'build'}")
    out = io.StringIO()
    present = F.auto_fetch(cfg, datasets=table, quiet=True, out=out)
    assert set(present) == {"sc", "ww"}
    assert "plus the fetched recordings" in out.getvalue()
    assert set(fetched_folders(cfg)) == {"sc", "ww"}

    corpus = build_corpus(cfg, progress=False)
    real = [c for c in corpus.keywords if c.path]
    assert sorted((c.label, Path(c.path).name) for c in real) == [
        ("_silence_", "s0.wav"), ("_unknown_", "a1.wav"), ("_unknown_", "bird_cccc3333_nohash_0.wav"),
        ("computer", "c1.wav"), ("computer", "c2.wav"),
        ("yes", "aaaa1111_nohash_0.wav"), ("yes", "bbbb2222_nohash_0.wav")]
    # Switched off, the same cache gives the synthetic-only corpus (not the cached one above).
    off = build_corpus(_cfg(tmp_path / "cache", f"project.build_dir={tmp_path / 'build'}",
                            "fetch.add_to_synthetic=false"), progress=False)
    assert not [c for c in off.keywords if c.path]


def test_cli_auto_offline_exits_zero_with_the_line(capsys):
    assert F.main(["--auto", "--quiet"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


# --------------------------------------------------------------------------- the real table
def test_the_real_table_pins_what_is_published_and_says_where_it_is_not():
    folders = [d.folder for d in F.DATASETS.values()]
    assert len(set(folders)) == len(folders)
    for d in F.DATASETS.values():
        assert d.licence and d.licence_url.startswith("https://")
        for a in d.archives:
            assert a.url.startswith("https://") and a.kind in ("tar.gz", "zip")
            if a.sha256 is None:
                assert a.size is None and "no published checksum" in a.pin_source
            else:
                assert re.fullmatch(r"[0-9a-f]{64}", a.sha256) and a.size > 0
                assert "url_checksums" in a.pin_source
    assert {k for k, d in F.DATASETS.items() if d.verified} == {"speech_commands",
                                                                "speech_commands_test"}


def test_the_full_profile_reads_the_cache_folders_the_fetcher_fills(tmp_path, monkeypatch):
    monkeypatch.setenv("HOPWISE_CACHE", str(tmp_path))
    cfg = load_config("full")
    by_folder = {d.folder: d for d in F.DATASETS.values()}
    for key in ("speech_commands", "wake_words", "esc50"):
        value = cfg[f"data.real.{key}"]
        assert value.startswith("cache:") and value[len("cache:"):] in by_folder
        assert resolve_data_path(value, cfg) == tmp_path / value[len("cache:"):]
    for key in cfg["fetch.datasets"] + cfg["fetch.auto_datasets"]:
        assert key in F.DATASETS


def test_cli_list_prints_the_pins_and_what_is_fetched(capsys):
    assert F.main(["--list"]) == 0
    out = capsys.readouterr().out
    for d in F.DATASETS.values():
        assert f"{d.key} [not fetched]" in out
        for a in d.archives:
            assert a.url in out and (a.sha256 or "UNVERIFIED") in out


def test_cli_names_an_unreachable_host_and_the_fix(tmp_path, monkeypatch, capsys):
    """A fetch that gets nothing says so (no crash, exit status 2, nothing left behind)."""
    closed = free_port()
    table = {"sc": dataset("sc", F.Archive("sc.tar.gz", f"http://127.0.0.1:{closed}/sc.tar.gz",
                                           10, "0" * 64, "test"))}
    monkeypatch.setattr(F, "DATASETS", table)
    monkeypatch.delenv("HOPWISE_CACHE")
    assert F.main(["sc", "--quiet", "--set", f"fetch.cache_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "sc.tar.gz" in err and "check the network" in err
    assert not list((tmp_path).rglob("*.part"))


def test_dot_slash_member_names_land_where_they_belong(tmp_path):
    """tar archives made with `tar -C dir .` (as Speech Commands' are) name members ./yes/..."""
    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tar({"./yes/a.wav": b"x", "./LICENSE": b"l"}))
    assert F.safe_extract(path, "tar.gz", tmp_path / "t") == 2
    assert (tmp_path / "t" / "yes" / "a.wav").read_bytes() == b"x"


def test_cache_paths_follow_the_profiles_cache_dir_in_the_wake_word_benchmark(tmp_path, monkeypatch):
    """`cache:` data paths resolve into the profile's fetch.cache_dir in the evaluations as in
    training (the wake-word benchmark once resolved them without the profile, so a
    --set fetch.cache_dir was ignored there)."""
    from evaluation.wakeword import streams_for
    monkeypatch.delenv("HOPWISE_CACHE")
    cfg = load_config("full", [f"fetch.cache_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError) as err:
        streams_for(cfg, "computer", [])       # an empty cache: no recordings of the word
    assert str(tmp_path.resolve() / "wake_words") in str(err.value)
