"""`python -m evaluation.cpu`: hopwise's pipelines and Porcupine timed in one run, in turn.

Real parts throughout: the tone model through the device pipeline over an `ArraySource`, and
Porcupine 1.9.5 where `make peers` installed it (skipped, saying so, where not). Only what the
report says is checked, never how fast anything is."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.config import load_config


@pytest.fixture
def stream(tmp_path):
    import soundfile as sf
    from device.audio_source import Tone, render_tones
    from export.standin import WAKE_HZ, WORD_S
    x = render_tones([Tone(1.0, 1.0 + WORD_S, WAKE_HZ, 0.3)], 4.0, 16000, noise=0.01)
    path = tmp_path / "stream.flac"
    sf.write(path, np.round(x * 32767).astype(np.int16), 16000)
    return path


def test_every_engine_is_timed_each_round_and_compared_in_its_round(tone_model, stream, tmp_path):
    from evaluation.cpu import Engine, hopwise_engines, markdown, measure
    import soundfile as sf
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'"])
    samples = sf.read(str(stream), dtype="int16")[0]
    engines = hopwise_engines(cfg, [str(tone_model)], from_file=True, hop_by_hop=True,
                              capture_block=True)
    live = {e.name: e.sets for e in engines if "live capture blocks" in e.name}
    # capture.block_ms = 40 at hop_ms = 10: a live read is 4 hops
    assert len(live) == 2 and all("pipeline.block_hops=4" in sets for sets in live.values())
    try:
        import pvporcupine  # noqa: F401
        engines.insert(0, Engine("Porcupine 1.9.5", None, cfg))
    except ImportError:
        pass   # the hopwise rows are still checked; the ratios need Porcupine
    report = measure(engines, samples, stream, rounds=2)
    rows = {r["name"]: r for r in report["engines"]}
    name = tone_model.name
    assert {f"whole pipeline, {name}", f"keyword path, {name}",
            f"whole pipeline, {name}, from the file",
            f"keyword path, {name}, hop by hop",
            f"whole pipeline, {name}, live capture blocks (40 ms, 4 hops)"} <= set(rows)
    assert report["audio_s"] == pytest.approx(4.0)
    for r in rows.values():
        c = r["cpu_per_audio_s"]
        assert len(c["rounds"]) == 2 and all(v > 0 for v in c["rounds"])
        assert c["min"] == min(c["rounds"])
    if "Porcupine 1.9.5" in rows:
        peer = rows["Porcupine 1.9.5"]["cpu_per_audio_s"]["rounds"]
        for r in rows.values():
            want = [a / b for a, b in zip(r["cpu_per_audio_s"]["rounds"], peer)]
            np.testing.assert_allclose(r["ratio_to_porcupine"]["rounds"], want)
    report.update(profile="default", created_utc="now", stream=str(stream), offset_s=0.0)
    text = markdown(report)
    assert all(n in text for n in rows)
    json.dumps(report)   # the report is JSON as written


def test_the_pipeline_hears_the_same_from_memory_as_from_the_file(tone_model, stream):
    """An `ArraySource` of the decoded int16 raises the events `detect` raises from the file."""
    import soundfile as sf
    from device.audio_source import ArraySource, FileSource
    from device.pipeline import Pipeline
    cfg = load_config("default", [f"stages.multitask.model={tone_model}",
                                  'pipeline.stages=["frontend", "multitask", "keywords", "scenes"]',
                                  "decisions.smoothing_ms=100"])

    def events(source):
        pipe = Pipeline.from_config(cfg, keep_events=True, shedding=False)
        pipe.run(source)
        return [(e["type"], e["label"], e["t_audio_s"]) for e in pipe.events
                if e["type"] != "status"]

    from_file = events(FileSource(stream, rate=16000))
    assert ("wake", "computer") in [(t, l) for t, l, _ in from_file]
    assert events(ArraySource(sf.read(str(stream), dtype="int16")[0], 16000)) == from_file
    with pytest.raises(ValueError, match="mono"):
        ArraySource(np.zeros((10, 2), np.int16))
