"""Smaller parts of the runtime: the interpreter wrapper, audio sources, status heartbeat, log file."""
import json

import numpy as np
import pytest

from device.audio_source import FileSource, SyntheticSource, Tone
from device.interpreter import TFLiteModel, interpreter_backend
from device.pipeline import Pipeline
from device.sinks import LogFileSink, SinkSet, build_sinks
from helpers import make_cfg


def test_interpreter_prefers_litert_and_never_tensorflow_by_default():
    assert interpreter_backend() in ("ai_edge_litert", "tflite_runtime")


def test_model_quantises_with_the_manifest_normalisation(tone_model):
    model = TFLiteModel(tone_model)
    man = model.manifest
    norm = man["input"]["normalization"]
    x = np.full((98, 40), norm["mean"] + norm["std"] * 0.5, np.float32)   # normalised: 0.5
    q = model.quantize(x)
    assert q.dtype == np.int8 and q.shape == (1, 98, 40, 1)
    expect = np.round(0.5 / man["input"]["scale"]) + man["input"]["zero_point"]
    assert np.all(q == np.clip(expect, -128, 127))
    out = model.run(np.full((98, 40), norm["mean"] - norm["std"], np.float32))  # "silence"
    assert set(out) == {"keyword", "scene"}
    assert out["keyword"].shape == (13,) and out["keyword"].sum() == pytest.approx(1.0, abs=0.05)
    assert int(np.argmax(out["keyword"])) == 0                             # _silence_
    assert model.labels["scene"][int(np.argmax(out["scene"]))] == "street_music"


def test_run_equals_the_quantize_invoke_dequantize_definition(tone_model):
    """`run`'s compiled quantiser and its output tables give exactly the integers and floats of
    `quantize`, the interpreter and ``(q - zero) * scale``, including values on a rounding
    boundary and beyond the int8 range."""
    model = TFLiteModel(tone_model)
    assert model._fast is not None                     # numba installed: the path under test
    interp, rng = model.interpreter, np.random.default_rng(0)
    norm = model.manifest["input"]["normalization"]
    mean, std = np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32)
    ties = (mean + std * np.float32(model.in_scale) * np.float32(0.5)).astype(np.float32)
    for x in [(rng.standard_normal((98, 40)) * 4 - 6).astype(np.float32),
              (rng.standard_normal((98, 40)) * 60).astype(np.float32),       # clipped both ways
              np.broadcast_to(ties, (98, 40)).astype(np.float32)]:
        interp.set_tensor(model._in_index, model.quantize(x))
        interp.invoke()
        want = {}
        for name, o in model.outputs.items():
            raw = interp.get_tensor(o["tensor"]).reshape(o["shape"])
            want[name] = (raw.astype(np.float32) - o["zero_point"]) * o["scale"]
        got = model.run(x)
        assert np.array_equal(model._fast[1], model.quantize(x))
        for name in want:
            assert got[name].dtype == np.float32 and np.array_equal(got[name], want[name])


def test_file_source_downmixes_and_resamples(recording):
    src = FileSource(recording, rate=16000)
    assert src.file_rate == 48000
    chunks = []
    with src:
        while (h := src.read(160)) is not None:
            chunks.append(h)
    x = np.concatenate(chunks)
    assert abs(len(x) - src.duration_s * 16000) <= 160 and x.dtype == np.float32
    # the wake tone (0.3 amplitude) survives the 48k stereo -> 16k mono path
    seg = x[int(1.1 * 16000): int(1.4 * 16000)]
    assert 0.18 < np.sqrt(np.mean(seg ** 2)) < 0.24


@pytest.mark.timeout(20)
def test_heartbeat_reports_budget_stages_overruns_and_sinks(tone_model, tmp_path):
    cfg = make_cfg(tone_model, "runtime.status_interval_s=1.0", "sinks.stdout.enabled=false",
                   "sinks.logfile.enabled=true", f"runtime.state_dir={tmp_path}")
    sinks = build_sinks(cfg)
    pipe = Pipeline.from_config(cfg, sinks=sinks, keep_events=True)
    pipe.run(SyntheticSource([Tone(0.5, 1.0, 500, 0.3)], duration_s=3.05))
    pipe.close()
    beats = [e for e in pipe.events if e["label"] == "heartbeat"]
    # the first after the first hop (a deploy confirms at once), then every 1.0 s of audio
    assert [round(b["t_audio_s"], 2) for b in beats] == [0.01, 1.0, 2.0, 3.0]
    assert beats[0]["first"] is True and "first" not in beats[1]
    assert beats[0]["status"]["hops"] == 1
    st = beats[-1]["status"]
    for key in ("uptime_s", "budget_use", "deadline_misses", "shed", "overruns", "sinks", "stages"):
        assert key in st
    assert set(st["stages"]) == {"frontend", "multitask", "keywords", "scenes"}
    assert st["stages"]["multitask"]["n"] == 30 and st["stages"]["multitask"]["p99_ms"] > 0
    assert 0 < st["budget_use"] < 1 and st["sinks"]["logfile"]["ok"]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["label"] == "online" and json.loads(lines[-1])["label"] == "final"


def test_log_file_rotates(tmp_path):
    sink = LogFileSink(tmp_path / "ev.jsonl", max_bytes=400, backup_count=2)
    for i in range(40):
        SinkSet([sink]).send({"type": "wake", "label": "computer", "confidence": 0.9,
                              "t_audio_s": float(i), "seq": i})
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ev.jsonl", "ev.jsonl.1", "ev.jsonl.2"]
    last = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert last[-1]["seq"] == 39 and all((tmp_path / f).stat().st_size <= 400 for f in files)
