"""Throughput and latency of the Python bridge codec (pytest-benchmark).

Run: ``python -m pytest benchmarks/bench_firmware_bridge.py -p no:cacheprovider --benchmark-enable``
(or ``make bench``; the project's pytest settings disable benchmarks by default,
and then each case runs once as a plain correctness test).
Per-frame figures are the benchmark's mean; ``frames/s`` is in ``extra_info``
(1 / mean for single frames, frames / mean for the batch cases).  For scale:
115200 baud carries at most ~600 event frames per second, so the codec needs
well under 1.6 ms per frame to keep up with the line.
"""

from __future__ import annotations

import pytest

from firmware_bridge.codec import (
    Ack,
    Decoder,
    Event,
    LabelTable,
    cobs_decode,
    cobs_encode,
    confidence_to_q16,
    crc16_ccitt_false,
    encode,
)

EVENT = Event(1234, "wake", 3, confidence_to_q16(0.93), 123_456_789, True)
EVENT_FRAME = encode(EVENT)
ACK_FRAME = encode(Ack(1234))
TABLE = LabelTable(7, "command", 7, 0, tuple(f"command_label_{i:02d}" for i in range(7)))
TABLE_FRAME = encode(TABLE)
BATCH = 1000
STREAM = b"".join(encode(Event(i + 1, "scene", i % 50, i * 37 % 65536, i * 10)) for i in range(BATCH))


def _rate(benchmark, frames: int) -> None:
    if benchmark.stats is None:  # --benchmark-disable: ran once as a test, nothing to report
        return
    mean_s = benchmark.stats.stats.mean
    benchmark.extra_info["frames_per_s"] = round(frames / mean_s)
    benchmark.extra_info["us_per_frame"] = round(mean_s / frames * 1e6, 3)


def test_encode_event(benchmark):
    assert benchmark(encode, EVENT) == EVENT_FRAME
    _rate(benchmark, 1)


def test_decode_event(benchmark):
    def decode_one():
        return Decoder().feed(EVENT_FRAME)

    assert benchmark(decode_one) == [EVENT]
    _rate(benchmark, 1)


def test_decode_event_reused_decoder(benchmark):
    # the link keeps one decoder; this is the per-frame cost it actually pays
    dec = Decoder()
    assert benchmark(dec.feed, EVENT_FRAME) == [EVENT]
    _rate(benchmark, 1)


def test_decode_ack_reused_decoder(benchmark):
    dec = Decoder()
    assert benchmark(dec.feed, ACK_FRAME) == [Ack(1234)]
    _rate(benchmark, 1)


def test_encode_label_table_max(benchmark):
    assert benchmark(encode, TABLE) == TABLE_FRAME
    _rate(benchmark, 1)


def test_decode_stream_1000_frames(benchmark):
    def decode_stream():
        return Decoder().feed(STREAM)

    assert len(benchmark(decode_stream)) == BATCH
    _rate(benchmark, BATCH)


def test_decode_stream_byte_by_byte(benchmark):
    # worst case for the streaming API: a UART handing over one byte per read
    data = [bytes([b]) for b in EVENT_FRAME * 10]

    def feed_bytes():
        dec = Decoder()
        n = 0
        for chunk in data:
            n += len(dec.feed(chunk))
        return n

    assert benchmark(feed_bytes) == 10
    _rate(benchmark, 10)


def test_encode_stream_1000_frames(benchmark):
    events = [Event(i + 1, "scene", i % 50, i * 37 % 65536, i * 10) for i in range(BATCH)]
    assert benchmark(lambda: b"".join(encode(e) for e in events)) == STREAM
    _rate(benchmark, BATCH)


@pytest.mark.parametrize("size", [16, 246])
def test_cobs_round_trip(benchmark, size):
    data = bytes((i * 7) % 256 for i in range(size))
    assert benchmark(lambda: cobs_decode(cobs_encode(data))) == data


def test_crc16_246_bytes(benchmark):
    data = bytes(range(246))
    benchmark(crc16_ccitt_false, data)
