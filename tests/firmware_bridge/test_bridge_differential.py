"""Python and C decoders fed the same random streams must agree exactly.

The shared vectors pin down chosen cases; this checks arbitrary ones: noise,
valid frames, frames with corrupted bytes, cut frames, in any mix.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import codec
from firmware_bridge.codec import Decoder, Event, Ping, Config, encode

C_DIR = Path(codec.__file__).resolve().parent / "c"
MAX_MSGS = 256

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("make") is None, reason="gcc or make not installed"
)


@pytest.fixture(scope="module")
def clib():
    result = subprocess.run(["make", "-C", str(C_DIR), "shared"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lib = ctypes.CDLL(str(C_DIR / "build" / "libhb_diff.so"))
    lib.hb_diff_decode.restype = ctypes.c_size_t
    lib.hb_diff_decode.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32),
        ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint16), ctypes.c_size_t,
    ]
    lib.hb_diff_encode_event.restype = ctypes.c_size_t
    lib.hb_diff_encode_event.argtypes = [
        ctypes.c_uint16, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint16, ctypes.c_uint32,
        ctypes.c_char_p, ctypes.c_size_t,
    ]
    return lib


def c_decode(lib, data: bytes) -> tuple:
    counters = (ctypes.c_uint32 * 8)()
    types = (ctypes.c_uint8 * MAX_MSGS)()
    seqs = (ctypes.c_uint16 * MAX_MSGS)()
    n = lib.hb_diff_decode(data, len(data), counters, types, seqs, MAX_MSGS)
    return list(zip(types[: min(n, MAX_MSGS)], seqs[: min(n, MAX_MSGS)])), list(counters)


def py_decode(data: bytes) -> tuple:
    dec = Decoder()
    msgs = dec.feed(data)
    c = dec.counters()
    return [(m.TYPE, m.seq) for m in msgs], [c[k] for k in Decoder._COUNTERS] + [c["frames_ok"]]


frames = st.one_of(
    st.builds(lambda s, k, t: encode(Event(s, k, 1, 2, t)), st.integers(1, 0xFFFF), st.sampled_from(codec.EVENT_KINDS),
              st.integers(0, 2**32 - 1)),
    st.builds(lambda n: encode(Ping(n)), st.integers(0, 2**32 - 1)),
    st.builds(lambda s, v: encode(Config(s, 1, 0, 0, v)), st.integers(1, 0xFFFF), st.integers(-(2**31), 2**31 - 1)),
)


@st.composite
def noisy_streams(draw):
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.sampled_from(["frame", "noise", "cut", "flip", "long"]))
        if choice == "noise":
            parts.append(draw(st.binary(max_size=40)))
        elif choice == "long":
            parts.append(bytes([draw(st.integers(1, 255))]) * draw(st.integers(240, 600)))
        else:
            frame = bytearray(draw(frames))
            if choice == "cut":
                frame = frame[: draw(st.integers(1, len(frame) - 1))]
            elif choice == "flip":
                frame[draw(st.integers(0, len(frame) - 1))] ^= 1 << draw(st.integers(0, 7))
            parts.append(bytes(frame))
    return b"".join(parts)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_streams())
def test_c_and_python_decoders_agree_on_noisy_streams(clib, data):
    assert c_decode(clib, data) == py_decode(data)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=1500))
def test_c_and_python_decoders_agree_on_random_bytes(clib, data):
    assert c_decode(clib, data) == py_decode(data)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 3), st.booleans(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 2**32 - 1))
def test_c_and_python_encoders_agree(clib, seq, kind, critical, label_id, q16, timestamp_ms):
    out = ctypes.create_string_buffer(codec.MAX_FRAME)
    n = clib.hb_diff_encode_event(seq, kind, int(critical), label_id, q16, timestamp_ms, out, codec.MAX_FRAME)
    want = encode(Event(seq, codec.EVENT_KINDS[kind], label_id, q16, timestamp_ms, critical))
    assert out.raw[:n] == want
