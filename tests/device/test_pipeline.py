"""End to end: a recording with known "words" through the real pipeline and the int8 model.

The tone model (export/standin.py) is hand-weighted so that a tone that has just ended is a
word: tone at WAKE_HZ -> "computer", YES_HZ -> "yes", a long SIREN_HZ tone -> scene "siren".
So the detection logic, the frontend, quantisation and timing are tested with known answers.
"""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from device.audio_source import FileSource, SyntheticSource, Tone
from device.manifest import ManifestError
from device.pipeline import Pipeline
from device.config import ConfigError, load_config
from device.stages import STAGE_TYPES, Param, Stage, build_stage, register_stage
from helpers import PY, REPO, SCRIPT, SCRIPT_S, WORD_S, WAKE_HZ, device_env, make_cfg

STRIDE_S = 0.1
# With no smoothing, the model says "word" from its first stride whose last 6 frames (60 ms +
# a 25 ms window) are past the end of the tone: the event is due 0.1 s after the word's end.
FAST = ["decisions.smoothing_ms=100", "decisions.wake_min_count=1"]


def words(events):
    return [(e["type"], e["label"], e["t_audio_s"]) for e in events if e["type"] in ("wake", "command")]


def check_script_events(events, latency_s):
    got = words(events)
    assert [(k, l) for k, l, _ in got] == [("wake", "computer"), ("command", "yes"),
                                           ("wake", "computer")], got
    ends = [1.0 + WORD_S, 2.4 + WORD_S, 14.0 + WORD_S]
    for (_, _, t), end in zip(got, ends):
        assert abs(t - (end + latency_s)) <= STRIDE_S + 1e-6, (t, end + latency_s)
    scenes = [(e["label"], e["t_audio_s"]) for e in events if e["type"] == "scene"]
    assert [s for s, _ in scenes] == ["street_music", "siren", "street_music"], scenes
    assert 5.0 < scenes[1][1] < 6.5 and 8.0 < scenes[2][1] < 9.5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides,latency_s", [(FAST, 0.1), ([], 0.2)],
                         ids=["no-smoothing", "profile-decisions"])
def test_replay_yields_expected_events_at_the_right_times(tone_model, recording, overrides, latency_s):
    # profile decisions: 200 ms smoothing (2 outputs at the 100 ms stride) puts the event one
    # stride later than none: the first output after the word averages with the one before it.
    pipe = Pipeline.from_config(make_cfg(tone_model, *overrides), keep_events=True)
    status = pipe.run(FileSource(recording, rate=16000, realtime=False))
    assert status["audio_s"] == pytest.approx(SCRIPT_S, abs=0.02)
    check_script_events(pipe.events, latency_s)
    for e in pipe.events:   # the event format
        assert {"type", "label", "confidence", "t_audio_s", "t_wall", "seq"} <= set(e)
        assert 0.0 <= e["confidence"] <= 1.0


@pytest.mark.timeout(60)
def test_push_in_any_block_size_gives_the_events_of_hop_by_hop(tone_model):
    from device.audio_source import render_tones
    audio = render_tones(SCRIPT, SCRIPT_S, 16000)
    cfg = make_cfg(tone_model, "runtime.shedding=false")

    def decisions(events):
        return [(e["type"], e["label"], e["confidence"], e["t_audio_s"]) for e in events
                if e["type"] != "status"]

    by_hop = Pipeline.from_config(cfg)
    expected = []
    for start in range(0, len(audio) - by_hop.hop + 1, by_hop.hop):
        expected += by_hop.process_hop(audio[start:start + by_hop.hop])
    pushed = Pipeline.from_config(cfg)
    got, sizes, start = [], [1, 77, 0, 160, 1000, 3333, 159, 4801], 0
    for i in range(len(audio)):
        if start >= len(audio):
            break
        n = sizes[i % len(sizes)]
        got += pushed.push(audio[start:start + n])
        start += n
    assert len(decisions(expected)) >= 6                    # the script's words and scenes
    assert decisions(got) == decisions(expected)
    assert pushed.hops == by_hop.hops and pushed.t_audio_s == by_hop.t_audio_s
    # integer PCM is scaled like a capture device's
    pcm = Pipeline.from_config(cfg)
    got = pcm.push(np.round(audio * 32767).astype(np.int16))
    assert [(t, l) for t, l, _, _ in decisions(got)] == [(t, l) for t, l, _, _ in decisions(expected)]


@pytest.mark.timeout(60)
def test_run_in_blocks_gives_the_events_and_timings_of_hop_by_hop(tone_model, recording):
    # run() reads up to pipeline.block_hops hops at a time (FileSource.read_hops) and the
    # frontend computes each block's frames in one call: the same events at the same times,
    # the same hops, and per-hop timings for every stage on every hop it ran (in blocks, a
    # frontend runs only on the hops where a reader of its features runs: here the model's,
    # every 10th hop, each time putting the frames of the hops between into its window).
    def replay(block_hops):
        pipe = Pipeline.from_config(make_cfg(tone_model, f"pipeline.block_hops={block_hops}"),
                                    keep_events=True, shedding=False)
        status = pipe.run(FileSource(recording, rate=16000, realtime=False))
        return pipe, status, [(e["type"], e["label"], e["confidence"], e["t_audio_s"])
                              for e in pipe.events if e["type"] != "status"]

    hop_pipe, hop_status, by_hop = replay(1)
    block_pipe, block_status, by_block = replay(10)
    assert len(by_hop) >= 6 and by_block == by_hop
    assert block_pipe.hops == hop_pipe.hops and block_status["audio_s"] == hop_status["audio_s"]
    for name in ("multitask", "keywords"):
        assert block_status["stages"][name]["n"] == hop_status["stages"][name]["n"]
    assert hop_status["stages"]["frontend"]["n"] == hop_pipe.hops
    assert block_status["stages"]["frontend"]["n"] == block_status["stages"]["multitask"]["n"]
    # the hops with no stage to run (nine of every ten here) still count, and the heartbeats
    # leave at the same stream times
    assert block_status["hop"]["n"] == hop_status["hop"]["n"] == hop_pipe.hops
    beats = [[e["t_audio_s"] for e in p.events if e.get("label") == "heartbeat"]
             for p in (hop_pipe, block_pipe)]
    assert beats[0] and beats[0] == beats[1]
    check_script_events(block_pipe.events, 0.2)


def test_a_log_mel_model_is_refused_by_a_pcen_frontend(tone_model):
    """The tone model's manifest predates PCEN (no "compression" key): it ate log-mel, so a
    profile that computes PCEN must not feed it."""
    with pytest.raises(ManifestError, match="compression: model 'log' vs device 'pcen'"):
        Pipeline.from_config(make_cfg(tone_model, "frontend.keyword.compression=pcen",
                                      "frontend.keyword.kernel=numpy"))   # PCEN's kernel


@pytest.mark.timeout(60)
def test_the_hop_loop_leaves_out_what_has_nothing_to_do(tone_model, recording, tmp_path):
    """The default stages with no ESN and no sound classifier built: they and the classifiers'
    log-mel (read by nothing else) stay out of the hop loop; the decisions run on the model's
    hops only. The events are those of decisions run every hop with every stage in the loop."""
    default_stages = ('pipeline.stages=["frontend", "multitask", "keywords", "scenes", "esn", '
                      '"sound_frontend", "sounds"]')
    nothing = [f"stages.esn.model={tmp_path / 'no_esn.npz'}",
               f"stages.sounds.model={tmp_path / 'no_classifier.tflite'}"]

    def replay(*sets):
        pipe = Pipeline.from_config(make_cfg(tone_model, default_stages, *nothing, *sets),
                                    keep_events=True, shedding=False)
        status = pipe.run(FileSource(recording, rate=16000, realtime=False))
        return pipe, status, [(e["type"], e["label"], e["confidence"], e["t_audio_s"])
                              for e in pipe.events if e["type"] != "status"]

    lean, lean_status, lean_events = replay()
    every, every_status, every_events = replay("stages.keywords.stride_hops=1",
                                               "stages.scenes.stride_hops=1")
    assert len(lean_events) >= 6 and lean_events == every_events
    assert set(lean.left_out) == {"esn", "sound_frontend", "sounds"}
    assert lean_status["stages"]["sound_frontend"]["n"] == 0
    model_calls = lean_status["stages"]["multitask"]["n"]
    assert lean_status["stages"]["keywords"]["n"] == model_calls == lean.hops // 10
    assert every_status["stages"]["keywords"]["n"] == every.hops
    # A stage that reads the classifiers' features keeps their log-mel in the loop.
    from device.stages import Stage

    class Reader(Stage):
        consumes = ("features.classifier",)

        def process(self, ctx):
            pass
    reader = Reader("reader", {}, lean.stages[0].cfg, lean.rate, lean.hop_s)
    kept = Pipeline([*lean.stages, reader], lean.settings)
    assert set(kept.left_out) == {"esn", "sounds"}
    # A producer no stage reads at all stays: a program reads its stream from Pipeline.data.
    alone = Pipeline.from_config(make_cfg(tone_model, 'pipeline.stages=["frontend"]'))
    alone.push(np.zeros(1600, np.float32))
    assert alone.left_out == [] and alone.data["features.keyword"].shape == (98, 40)


@pytest.mark.timeout(60)
def test_detect_cli_prints_events_as_json_lines(tone_model, recording):
    out = subprocess.run([PY, "-m", "device", "detect", str(recording), "--model", str(tone_model),
                          *sum((["--set", o] for o in FAST), [])],
                         capture_output=True, text=True, env=device_env(), cwd=REPO, timeout=50)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    check_script_events(events, 0.1)
    summary = json.loads(out.stderr.strip().splitlines()[-1])
    assert summary["rtf"] < 0.5 and summary["events"]["wake"] == 2


@pytest.mark.timeout(60)
def test_running_the_pipeline_imports_no_tensorflow(tone_model, recording):
    code = (
        "import sys\n"
        "from device.config import load_config\n"
        "from device.pipeline import Pipeline\n"
        "from device.audio_source import FileSource\n"
        "from device.sinks import build_sinks\n"
        f"cfg = load_config('default', ['stages.multitask.model={tone_model}'])\n"
        "p = Pipeline.from_config(cfg, sinks=build_sinks(cfg, only=[]), keep_events=True)\n"
        f"p.run(FileSource(r'{recording}', realtime=False, rate=16000)); p.close()\n"
        "assert sum(e['type'] == 'wake' for e in p.events) == 2, p.events\n"
        "tf = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith(('tensorflow.', 'keras', 'tf_keras')))\n"
        "print('TF_MODULES', tf)\n"
        "print('BACKEND', p.stages[1].model.backend)\n")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=device_env(),
                         cwd=REPO, timeout=50)
    assert out.returncode == 0, out.stderr
    assert "TF_MODULES []" in out.stdout, out.stdout
    assert "BACKEND ai_edge_litert" in out.stdout


# --------------------------------------------------------------------------- model checks
@pytest.mark.timeout(60)
def test_model_with_wrong_hash_is_refused(tone_model, tmp_path):
    bad = tmp_path / tone_model.name
    bad.write_bytes(tone_model.read_bytes() + b"\0")
    (tmp_path / tone_model.with_suffix(".json").name).write_text(
        tone_model.with_suffix(".json").read_text())
    with pytest.raises(ManifestError, match="does not match its manifest .*sha256"):
        Pipeline.from_config(make_cfg(bad))
    out = subprocess.run([PY, "-m", "device", "detect", str(tone_model), "--model", str(bad)],
                         capture_output=True, text=True, env=device_env(), cwd=REPO, timeout=50)
    assert out.returncode == 2 and "does not match its manifest" in out.stderr


def test_model_with_other_labels_is_refused(tone_model):
    cfg = make_cfg(tone_model, 'labels.commands=["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "halt"]')
    with pytest.raises(ManifestError, match=r"'keyword' labels .* differ from the configuration"):
        Pipeline.from_config(cfg)
    cfg = make_cfg(tone_model, "frontend.keyword.n_mels=32")
    with pytest.raises(ManifestError, match="trained on other features"):
        Pipeline.from_config(cfg)


def test_missing_model_says_how_to_fix(tmp_path):
    with pytest.raises(ManifestError, match="manifest .* is missing"):
        Pipeline.from_config(make_cfg(tmp_path / "nope.tflite"))


# --------------------------------------------------------------------------- stages and budget
@register_stage("test_slow")
class SlowStage(Stage):
    """Test stage: sleeps ``delay_ms`` on each hop while ``slow`` is set (an artificially slow
    stage, as a model on a busy core would be)."""

    PARAMS = {**Stage.PARAMS, "delay_ms": Param("sleep per hop while slow", 15)}

    def __init__(self, name, params, cfg, rate, hop_s):
        super().__init__(name, params, cfg, rate, hop_s)
        self.delay_s = float(self.params["delay_ms"]) / 1000.0
        self.slow = True
        self.calls = 0

    def process(self, ctx):
        self.calls += 1
        if self.slow:
            time.sleep(self.delay_s)


def test_a_missing_model_runs_its_fallback_with_a_warning(tone_model, tmp_path, caplog):
    """The default profile runs the streaming model with the reference as its fallback: when
    `make export` could not build the streaming one, the reference runs, and the log says so."""
    build = tmp_path / "build"
    (build / "export").mkdir(parents=True)
    for suffix in (".tflite", ".json"):   # the reference, where the profile's fallback names it
        (build / "export" / tone_model.with_suffix(suffix).name).write_bytes(
            tone_model.with_suffix(suffix).read_bytes())
    profile = tmp_path / "streaming.toml"   # model and fallback side by side, as in default.toml
    profile.write_text(f"""extends = "default"
[project]
build_dir = "{build}"
[pipeline]
stages = ["frontend", "multitask", "keywords", "scenes"]
[stages.multitask]
model = "export/not_exported_stream_int8.tflite"
fallback = "export/{tone_model.name}"
""")
    cfg = load_config(profile)
    with caplog.at_level("WARNING", logger="hopwise.stages.model"):
        pipe = Pipeline.from_config(cfg)
    stage = next(s for s in pipe.stages if s.name == "multitask")
    assert stage.model.path == build / "export" / tone_model.name
    assert any("no model at" in r.message and "fallback" in r.message for r in caplog.records)
    # A model the user names is never swapped for the fallback: a typo is an error.
    with pytest.raises(ManifestError, match="is missing"):
        Pipeline.from_config(cfg.with_overrides([f"stages.multitask.model={tmp_path / 'typo.tflite'}"]))
    with pytest.raises(ManifestError, match="is missing"):
        Pipeline.from_config(cfg, model=tmp_path / "typo.tflite")


def test_unknown_stage_type_names_the_known_ones(tone_model):
    cfg = make_cfg(tone_model, "stages.weird.type=nope")
    with pytest.raises(ValueError, match="unknown type 'nope'.*logmel"):
        build_stage("weird", cfg, 16000, 0.01)


def test_a_stage_that_reads_a_later_stages_stream_says_to_reorder(tone_model):
    cfg = make_cfg(tone_model, 'pipeline.stages=["frontend", "keywords", "multitask", "scenes"]')
    with pytest.raises(ConfigError, match=r"stage 'keywords' consumes 'posteriors.keyword', which "
                                          r"no earlier stage emits; stage 'multitask' emits it — "
                                          r"put it before 'keywords' in pipeline.stages"):
        Pipeline.from_config(cfg)


def test_a_misspelt_stream_is_refused_naming_the_nearest_one(tone_model):
    cfg = make_cfg(tone_model, "stages.keywords.input=posteriors.keywrd")
    with pytest.raises(ConfigError, match=r"stage 'keywords' consumes 'posteriors.keywrd', which no "
                                          r"stage emits \(did you mean 'posteriors.keyword'\?\).*"
                                          r"fix stages.keywords.input"):
        Pipeline.from_config(cfg)
    cfg = make_cfg(tone_model, 'pipeline.stages=["multitask", "keywords"]')   # no frontend
    with pytest.raises(ConfigError, match="'features.keyword', which no stage emits"):
        Pipeline.from_config(cfg)


def test_a_feature_window_shorter_than_the_model_reads_is_refused(tone_model):
    with pytest.raises(ConfigError, match=r"reads 98 frames .* keeps only 50: set "
                                          r"stages.frontend.window_frames = 98"):
        Pipeline.from_config(make_cfg(tone_model, "stages.frontend.window_frames=50"))


def with_stride(model, stride_hops, folder):
    """A copy of ``model`` whose manifest says it was exported for another stride (the weights
    do not depend on the stride: it only says how often the device runs the model)."""
    import shutil
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / model.name
    shutil.copy(model, copy)
    manifest = json.loads(model.with_suffix(".json").read_text())
    manifest["stride_hops"] = stride_hops
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    return copy


def test_the_stride_is_the_manifests_and_a_disagreeing_section_is_refused(tone_model, tmp_path):
    pipe = Pipeline.from_config(make_cfg(tone_model))
    model = pipe.stages[1]
    assert (model.stride_hops, model.phase, model.frames) == (10, 9, 98)
    assert sorted(model.describe()["heads"]) == ["keyword", "scene"]
    with pytest.raises(ConfigError, match=r"stages.multitask.stride_hops = 5 disagrees with model "
                                          r".*every 10 hops .*make export "
                                          r"SET=model.multitask.stride_hops=5"):
        Pipeline.from_config(make_cfg(tone_model, "stages.multitask.stride_hops=5"))
    Pipeline.from_config(make_cfg(tone_model, "stages.multitask.stride_hops=10"))  # agrees: fine
    five = with_stride(tone_model, 5, tmp_path / "five")
    assert Pipeline.from_config(make_cfg(five)).stages[1].stride_hops == 5


def test_the_export_setting_does_not_change_a_deployed_models_stride(tone_model, caplog):
    pipe = Pipeline.from_config(make_cfg(tone_model, "model.multitask.stride_hops=5"))
    assert pipe.stages[1].stride_hops == 10                  # the manifest's, with a warning
    assert "model.multitask.stride_hops = 5 in the profile" in caplog.text


@pytest.mark.timeout(60)
def test_a_model_at_another_stride_gives_the_same_events(tone_model, recording, tmp_path):
    # The same model run every 5 hops instead of 10: the decisions' 200 ms smoothing now averages
    # 4 outputs instead of 2, over the same audio, so the same events come at about the same time.
    five = with_stride(tone_model, 5, tmp_path / "five")
    pipe = Pipeline.from_config(make_cfg(five), keep_events=True)
    pipe.run(FileSource(recording, rate=16000))
    assert pipe.stages[1].invocations == pipe.hops // 5
    check_script_events(pipe.events, 0.2)


def test_the_old_type_name_says_its_new_one(tone_model):
    cfg = make_cfg(tone_model, "stages.multitask.type=tflite_multitask")
    with pytest.raises(ConfigError, match="'tflite_multitask' is now 'tflite_model'"):
        Pipeline.from_config(cfg)


def test_a_misspelt_stage_key_is_refused_naming_the_nearest_one(tone_model):
    cfg = make_cfg(tone_model, "stages.frontend.window_frame=98")
    with pytest.raises(ConfigError, match=r"stages.frontend: a 'logmel' stage has no key "
                                          r"'window_frame'; did you mean 'window_frames'\?"):
        Pipeline.from_config(cfg)
    with pytest.raises(ConfigError, match=r"'tflite_model' stage has no key 'strides_hops'; did "
                                          r"you mean 'stride_hops'\?"):
        Pipeline.from_config(make_cfg(tone_model, "stages.multitask.strides_hops=5"))
    cfg = make_cfg(tone_model, "stages.slow.type=test_slow", "stages.slow.dealy_ms=3")
    with pytest.raises(ConfigError, match="did you mean 'delay_ms'"):
        build_stage("slow", cfg, 16000, 0.01)


def test_a_missing_required_stage_key_names_itself_and_the_fix(tone_model):
    cfg = make_cfg(tone_model, "stages.counter.type=test_frame_counter")
    with pytest.raises(ConfigError, match=r"stages.counter.input is missing .*--set stages.counter.input="):
        build_stage("counter", cfg, 16000, 0.01)


@pytest.mark.timeout(30)
def test_slow_stage_is_shed_reported_and_restored(tone_model):
    cfg = make_cfg(tone_model, 'pipeline.stages=["frontend", "multitask", "keywords", "scenes", "slow"]',
                   "stages.slow.type=test_slow", "stages.slow.priority=10",
                   "stages.slow.delay_ms=12", "runtime.load_window_hops=20",
                   "runtime.probe_after_s=0.5")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    slow = pipe.stages[-1]
    assert isinstance(slow, SlowStage)
    hop = np.zeros(pipe.hop, np.float32)
    for _ in range(25):
        pipe.process_hop(hop)
    shed = [e for e in pipe.events if e["label"] == "shed"]
    assert [e["stage"] for e in shed] == ["slow"], pipe.events    # lowest priority first, only it
    assert shed[0]["load"] > 0.9 and "slow" in pipe.status()["shed"]
    calls = slow.calls
    for _ in range(20):
        pipe.process_hop(hop)
    assert slow.calls == calls                                     # shed: not called
    slow.slow = False                                              # the core is free again
    for _ in range(100):                                           # 1 s > probe_after_s
        pipe.process_hop(hop)
    restored = [e for e in pipe.events if e["label"] == "restored"]
    assert [e["stage"] for e in restored] == ["slow"]
    assert slow.calls > calls and pipe.status()["shed"] == []
    st = pipe.status()
    assert st["deadline_misses"] >= 20 and st["stages"]["slow"]["p99_ms"] >= 12


@pytest.mark.timeout(30)
def test_stages_are_shed_in_priority_order(tone_model):
    cfg = make_cfg(tone_model, 'pipeline.stages=["frontend", "multitask", "keywords", "scenes", "slow"]',
                   "stages.slow.type=test_slow", "stages.slow.priority=30",
                   "stages.slow.delay_ms=12", "runtime.load_window_hops=10",
                   "runtime.probe_after_s=100")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    hop = np.zeros(pipe.hop, np.float32)
    for _ in range(60):
        pipe.process_hop(hop)
    shed = [e["stage"] for e in pipe.events if e["label"] == "shed"]
    # scenes (20) goes first, then the slow stage (30); essential stages never.
    assert shed[:2] == ["scenes", "slow"], shed
    assert "frontend" not in shed and "keywords" not in shed


@pytest.mark.timeout(30)
def test_overrun_is_counted_and_reported(tone_model):
    cfg = make_cfg(tone_model, 'pipeline.stages=["frontend", "slow"]', "stages.slow.type=test_slow",
                   "stages.slow.delay_ms=30", "stages.slow.essential=true")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    src = SyntheticSource([Tone(0.2, 0.6, WAKE_HZ, 0.3)], duration_s=1.5, realtime=True,
                          buffer_s=0.1)
    status = pipe.run(src)
    assert status["overruns"] > 0 and status["audio"]["dropped_samples"] > 0
    # stream time counts the lost audio: it still ends at the source's end, not earlier
    assert pipe.t_audio_s == pytest.approx(1.5, abs=0.02)
    assert pipe.hops * pipe.hop < 1.5 * 16000


@pytest.mark.timeout(30)
def test_realtime_replay_keeps_up_without_overruns(tone_model, recording):
    # (no shedding here: on this shared test machine a descheduled hop could look like overload)
    pipe = Pipeline.from_config(make_cfg(tone_model, *FAST, "runtime.shedding=false"), keep_events=True)
    t0 = time.monotonic()
    status = pipe.run(SyntheticSource(SCRIPT[:2], duration_s=3.2, realtime=True))
    assert time.monotonic() - t0 >= 3.0                           # paced like a microphone
    assert status["overruns"] == 0 and status["audio"]["dropped_samples"] == 0
    assert [(k, l) for k, l, _ in words(pipe.events)] == [("wake", "computer"), ("command", "yes")]


@register_stage("test_frame_counter")
class FrameCounter(Stage):
    """Test stage: counts the frames another stage emits (stands in for the ESN reading the
    8 kHz frontend every hop)."""

    PARAMS = {**Stage.PARAMS, "input": Param("the frame stream counted")}

    def __init__(self, name, params, cfg, rate, hop_s):
        super().__init__(name, params, cfg, rate, hop_s)
        self.input_key = self.params["input"]
        self.consumes = (self.input_key,)
        self.frames = 0

    def process(self, ctx):
        if self.input_key in ctx.fresh:
            self.frames += len(ctx.data[self.input_key])


@pytest.mark.timeout(30)
def test_adding_a_stage_is_one_config_entry_and_one_class(tone_model):
    # An 8 kHz ESN frontend (16 ms hop) beside the 16 kHz keyword frontend, and a consumer.
    cfg = make_cfg(tone_model, *FAST,
                   'pipeline.stages=["frontend", "esn_features", "multitask", "keywords", "scenes", "counter"]',
                   "stages.esn_features.type=logmel", "stages.esn_features.frontend=esn",
                   "stages.esn_features.window_frames=1", "stages.counter.type=test_frame_counter",
                   "stages.counter.input=features.esn.new")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    esn_front = pipe.stages[1]
    assert esn_front.rate == 8000 and esn_front.describe()["emits"] == ["features.esn", "features.esn.new"]
    pipe.run(SyntheticSource(SCRIPT[:2], duration_s=4.0))
    expected = 1 + (4 * 8000 - 256) // 128                     # frames of 4 s at 8 kHz / 16 ms
    # the streaming 16 -> 8 kHz resampler (soxr "LQ") holds back ~40 samples: at most two frames
    assert expected - 2 <= pipe.stages[-1].frames <= expected
    assert [(k, l) for k, l, _ in words(pipe.events)] == [("wake", "computer"), ("command", "yes")]
    assert set(pipe.status()["stages"]) == {"frontend", "esn_features", "multitask", "keywords",
                                            "scenes", "counter"}


def test_the_registry_finds_every_stage_module_and_a_new_one(tmp_path, monkeypatch):
    # Importing the package alone registers every stage type of its modules ...
    code = ("import sys, device.stages as s\n"
            "print(sorted(t for t, c in s.STAGE_TYPES.items() if c.__module__.startswith('device.')))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=device_env(),
                         cwd=REPO, timeout=60)
    assert out.stdout.strip() == str(["classifier", "esn", "keyword_decisions", "logmel",
                                      "scene_decisions", "separator", "tflite_model"])
    # ... and a new module in the package is found with no other change.
    import device.stages as stages
    (tmp_path / "counter_for_test.py").write_text(
        "from device.stages.base import Stage, register_stage\n"
        "@register_stage('test_discovered')\n"
        "class Discovered(Stage):\n"
        "    def process(self, ctx):\n"
        "        pass\n")
    monkeypatch.setattr(stages, "__path__", [*stages.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "device.stages.counter_for_test", raising=False)
    try:
        stages._import_stage_modules()
        assert STAGE_TYPES["test_discovered"].__name__ == "Discovered"
    finally:
        STAGE_TYPES.pop("test_discovered", None)
        sys.modules.pop("device.stages.counter_for_test", None)


class StallingSource(SyntheticSource):
    """A real-time source that goes silent (no samples at all) for a while, as a USB microphone
    that is unplugged does; ``restart()`` is what the pipeline calls to reopen it."""

    def __init__(self, stall_from_s, stall_for_s, **kw):
        super().__init__(**kw)
        self.stall = (stall_from_s, stall_from_s + stall_for_s)
        self.restarts = 0
        self._t0 = None

    def read(self, n, timeout=1.0):
        if self._t0 is None:
            self._t0 = time.monotonic()
        if self.stall[0] <= time.monotonic() - self._t0 < self.stall[1]:
            time.sleep(min(timeout, 0.05))
            return np.zeros(0, np.float32)
        return super().read(n, timeout)

    def restart(self):
        self.restarts += 1


@pytest.mark.timeout(30)
def test_a_stalled_capture_is_reported_and_reopened(tone_model):
    cfg = make_cfg(tone_model, "runtime.capture_stall_s=0.4")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    src = StallingSource(0.5, 1.2, duration_s=2.5, realtime=True, buffer_s=0.5)
    status = pipe.run(src)
    labels = [e["label"] for e in pipe.events if e["type"] == "status"]
    assert labels.count("capture_stalled") == 1 and labels.count("capture_resumed") == 1, labels
    assert labels.index("capture_stalled") < labels.index("capture_resumed")
    assert src.restarts >= 2                                  # retried every 0.4 s while silent
    # the audio produced meanwhile overflowed the 0.5 s buffer: counted and reported too
    assert status["overruns"] >= 1 and "overrun" in labels


@register_stage("test_passthrough_separator")
class PassthroughSeparator(Stage):
    """Test stage in the separator's place: 8 kHz audio out (a real separator would mask it),
    so the keyword frontend behind it reads ``audio.separated`` and resamples 8 -> 16 kHz.
    It takes the real separator's keys (the profile's ``[stages.separator]`` sets them) and
    uses none of them."""

    from device.stages.separator import SeparatorStage as _Real
    PARAMS = {**Stage.PARAMS, **{k: Param("unused here", None) for k in _Real.PARAMS
                                 if k not in Stage.PARAMS}}
    del _Real

    def __init__(self, name, params, cfg, rate, hop_s):
        super().__init__(name, params, cfg, rate, hop_s)
        from device.resample import Resampler
        self.rate = 8000
        self.consumes, self.emits = ("audio",), ("audio.separated",)
        self.down = Resampler(16000, 8000, "LQ")

    def process(self, ctx):
        ctx.put("audio.separated", self.down(ctx.audio))


@pytest.mark.timeout(30)
def test_a_separator_stage_can_sit_in_front_of_the_keyword_frontend(tone_model):
    cfg = make_cfg(tone_model, *FAST,
                   'pipeline.stages=["separator", "frontend", "multitask", "keywords", "scenes"]',
                   "stages.separator.type=test_passthrough_separator",
                   "stages.frontend.input=audio.separated", "stages.frontend.input_rate=8000")
    pipe = Pipeline.from_config(cfg, keep_events=True)
    assert pipe.stages[1].describe()["consumes"] == ["audio.separated"]
    pipe.run(SyntheticSource(SCRIPT[:2], duration_s=4.0))
    got = words(pipe.events)
    assert [(k, l) for k, l, _ in got] == [("wake", "computer"), ("command", "yes")]
    assert abs(got[0][2] - (1.0 + WORD_S + 0.1)) <= STRIDE_S + 1e-6
