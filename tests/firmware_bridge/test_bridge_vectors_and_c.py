"""Shared vectors (Python side) and the C codec built with gcc and run here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_bridge import vectors
from firmware_bridge.codec import Decoder, encode

C_DIR = Path(vectors.__file__).resolve().parent / "c"
DOC = vectors.load()


def test_committed_vectors_are_current():
    # JSON and the generated C header must equal what the codec renders now;
    # regenerate with `python -m firmware_bridge.vectors` after a deliberate change
    doc = vectors.build()
    assert vectors.render_json(doc) == vectors.JSON_PATH.read_text(encoding="utf-8")
    assert vectors.render_header(doc) == vectors.HEADER_PATH.read_text(encoding="utf-8")
    assert vectors.main(["--check"]) == 0


@pytest.mark.parametrize("vector", DOC["messages"], ids=[v["name"] for v in DOC["messages"]])
def test_message_vector(vector):
    msg = vectors.message_from_vector(vector)
    assert encode(msg).hex() == vector["hex"]
    assert Decoder().feed(bytes.fromhex(vector["hex"])) == [msg]


@pytest.mark.parametrize("stream", DOC["streams"], ids=[s["name"] for s in DOC["streams"]])
def test_stream_vector(stream):
    dec = Decoder()
    got = dec.feed(bytes.fromhex(stream["hex"]))
    want = [vectors.message_from_vector(DOC["messages"][i]) for i in stream["expect"]]
    assert got == want
    assert {k: dec.counters()[k] for k in stream["errors"]} == stream["errors"]
    # the same stream fed one byte at a time (as an MCU does) gives the same result
    dec1 = Decoder()
    got1 = [m for b in bytes.fromhex(stream["hex"]) for m in dec1.feed(bytes([b]))]
    assert got1 == want and dec1.counters() == dec.counters()


def test_stream_vectors_cover_every_error_reason():
    reasons = {k for s in DOC["streams"] for k, v in s["errors"].items() if v}
    assert reasons == set(Decoder._COUNTERS)


def _make(target: str, timeout_s: float, **env_vars) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_vars)
    return subprocess.run(
        ["make", "-C", str(C_DIR), target, *[f"{k}={v}" for k, v in env_vars.items()]],
        capture_output=True, text=True, timeout=timeout_s, env=env,
    )


needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("make") is None, reason="gcc or make not installed"
)


@needs_gcc
@pytest.mark.timeout(120)
def test_c_codec_unit_tests_pass():
    result = _make("test", 110)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(r"hb tests: (\d+) checks, (\d+) failures \((\d+) vectors, (\d+) streams\)", output)
    assert match, output
    checks, failures, n_vectors, n_streams = map(int, match.groups())
    assert failures == 0
    assert n_vectors == len(DOC["messages"]) and n_streams == len(DOC["streams"])
    assert checks > 1000


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None, reason="g++ or make not installed")
@pytest.mark.timeout(120)
def test_arduino_example_sketch_on_host_stub():
    # the .ino compiled for the host against a stub Arduino core: LED on wake, acks, dedup, ping, config resend
    result = _make("sketch-test", 110)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(r"sketch tests: (\d+) checks, (\d+) failures", output)
    assert match and int(match.group(2)) == 0 and int(match.group(1)) >= 10, output


def _fuzz(seconds: int, timeout_s: float) -> str:
    result = _make("fuzz", timeout_s, FUZZ_SECONDS=str(seconds))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "ERROR: AddressSanitizer" not in output and "runtime error" not in output, output[-4000:]
    return output


def _fuzz_runs(output: str) -> int:
    match = re.search(r"stat::number_of_executed_units:\s*(\d+)", output) or re.search(
        r"standalone fuzz: (\d+) runs", output
    )
    assert match, output[-2000:]
    return int(match.group(1))


@needs_gcc
@pytest.mark.timeout(120)
def test_c_decoder_fuzz_smoke():
    # a few seconds of fuzzing in the default run; the long run is the slow test below
    assert _fuzz_runs(_fuzz(3, 110)) > 1000


@needs_gcc
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_c_decoder_fuzz_60s():
    output = _fuzz(60, 280)
    assert _fuzz_runs(output) > 100_000
