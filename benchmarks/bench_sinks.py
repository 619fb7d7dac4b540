"""Cost of one event in each sink's ``send``, with nothing on the other end (pytest-benchmark).

Run: ``make bench`` (or ``pytest benchmarks/bench_sinks.py --benchmark-enable -o
python_files='bench_*.py'``). The sinks are `device.bench.offline_sinks` — the ones the
hop-budget report times: stdout into /dev/null, the rotating log file, the serial sink's bridge
link (framing and queueing) over a port that takes every byte, and the MQTT sink's on-disk queue
(payload JSON + one SQLite commit) with the broker refusing connections. ``send`` is what the
pipeline's thread pays per event; delivery over a real broker is in bench_pipeline.py (wake ->
MQTT latency) and the serial codec alone in bench_firmware_bridge.py. Fixed rounds: the serial
link keeps every unacknowledged event, and no microcontroller acknowledges them here.
"""
from __future__ import annotations

import pytest

from device.bench import offline_sinks, sample_event
from device.config import load_config

PROFILE = load_config("default")
ROUNDS, WARMUP = 2000, 20


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    with offline_sinks(PROFILE, tmp_path_factory.mktemp("sinks"), max_events=ROUNDS + WARMUP) as built:
        yield built


@pytest.mark.parametrize("kind", ["stdout", "logfile", "serial", "mqtt"])
def test_sink_send(benchmark, sinks, kind):
    sink = sinks[kind]
    if isinstance(sink, str):
        pytest.skip(sink)
    event = sample_event(PROFILE)
    benchmark.pedantic(sink.send, args=(event,), rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    assert sink.errors == 0
