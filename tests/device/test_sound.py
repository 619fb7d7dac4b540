"""Sound classifiers on the device: segmenting, silence removal, voting, the sound tracker, and
one sustained sound -> one ``sound`` event through the pipeline (a stand-in int8 model with
known answers, written by the real export path)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from device.audio_source import Tone, render_tones
from device.config import load_config
from device.decisions import SoundTracker
from device.sound import SegmentSpec, segment, segment_level_db, segment_starts, vote

FLOOR = np.float32(np.log(1e-6))   # the log floor: digital silence in every band


def _loud(n_frames, n_mels=4, value=0.0):
    return np.full((n_frames, n_mels), value, np.float32)


def test_segments_every_hop_while_a_whole_segment_fits():
    spec = SegmentSpec(41, 20, -30.0)
    assert segment_starts(100, spec).tolist() == [0, 20, 40]
    assert segment_starts(41, spec).tolist() == [0]
    assert segment_starts(40, spec).tolist() == []
    assert SegmentSpec.from_frontend({"segment_overlap": 0.5, "silence_db": -30.0}, 50) == \
        SegmentSpec(50, 25, -30.0)


def test_near_silent_segments_are_dropped_and_the_rest_keep_their_place():
    spec = SegmentSpec(10, 5, -30.0)
    frames = _loud(40)                       # 0 dB per band: loud
    frames[:20] = FLOOR                      # the first 20 frames digital silence
    segs, starts = segment(frames, spec)
    # starts 0, 5 (all or mostly silent: mean power 1e-6 .. ~0.5 of loud) and 10 (half loud)
    levels = segment_level_db(np.stack([frames[s:s + 10] for s in range(0, 31, 5)]))
    expected = [s for s, lv in zip(range(0, 31, 5), levels) if lv >= -30.0]
    assert starts.tolist() == expected and 0 not in expected and 20 in expected
    assert np.array_equal(segs[0], frames[starts[0]:starts[0] + 10])


def test_an_all_silent_clip_keeps_its_loudest_segment_unless_told_not_to():
    spec = SegmentSpec(10, 5, -30.0)
    frames = _loud(30, value=FLOOR)
    frames[22] = FLOOR + 3.0                 # still far below -30 dB, but the loudest
    segs, starts = segment(frames, spec)
    assert len(segs) == 1 and starts[0] in (15, 20)
    segs, starts = segment(frames, spec, keep_one=False)
    assert len(segs) == 0


def test_a_clip_shorter_than_a_segment_is_padded_with_its_quietest_frame():
    spec = SegmentSpec(10, 5, -100.0)
    frames = _loud(6)
    frames[3] = FLOOR
    segs, starts = segment(frames, spec)
    assert segs.shape == (1, 10, 4) and starts.tolist() == [0]
    assert np.all(segs[0, 6:] == FLOOR)


@pytest.mark.parametrize("n_frames", [62, 50, 130, 20])
def test_segments_and_levels_are_those_of_the_plain_formulas_bit_for_bit(n_frames):
    """segment_level_db (exp in place, np.mean's sum and division) and segment (one segment: a
    view, copied on return) give exactly the numbers of exp(x).sum(-1).mean(-1) and of stacking
    every segment, on real-looking log-mel and on windows just under and just over silence_db;
    the segments returned are copies."""
    rng = np.random.default_rng(n_frames)
    frames = rng.normal(-6.0, 3.0, (n_frames, 60)).astype(np.float32)
    frames[: n_frames // 3] = FLOOR + rng.normal(0, 0.1, (n_frames // 3, 60))   # some quiet
    spec = SegmentSpec(50, 25, -30.0)
    for db in (-30.4, -29.6):             # a window just under or just over silence_db
        near = np.full((n_frames, 60), np.log(10 ** (db / 10) / 60), np.float32)
        near += rng.normal(0, 0.01, near.shape).astype(np.float32)
        _check_segments(near, spec)
    _check_segments(frames, spec)


def _check_segments(frames, spec):
    n_frames = len(frames)
    for f in (frames, frames.astype(np.float64)):
        for stack in (f[None, :50], f.reshape(2, -1, 60) if len(f) % 2 == 0 else f[None]):
            plain = 10.0 * np.log10(np.exp(np.asarray(stack, np.float64)).sum(-1).mean(-1) + 1e-20)
            assert np.array_equal(segment_level_db(stack), plain)
    padded = frames if n_frames >= 50 else np.concatenate(
        [frames, np.repeat(frames[np.argmin(frames.sum(1))][None], 50 - n_frames, 0)])
    starts = segment_starts(len(padded), spec)
    stacked = np.stack([padded[s:s + 50] for s in starts])
    plain = 10.0 * np.log10(np.exp(stacked.astype(np.float64)).sum(-1).mean(-1) + 1e-20)
    for keep_one in (True, False):
        segs, kept = segment(frames, spec, keep_one=keep_one)
        want = plain >= spec.silence_db
        if not want.any() and keep_one:
            want[int(np.argmax(plain))] = True
        assert kept.tolist() == starts[want].tolist()
        assert segs.dtype == np.float32 and np.array_equal(segs, stacked[want])
        assert not np.shares_memory(segs, frames)


def test_probability_and_majority_votes_differ_on_a_confident_minority():
    # Two segments lean weakly to class 0, one is sure of class 1: majority says 0, the summed
    # probabilities say 1 (0.55 + 0.55 + 0.0 = 1.1 < 0.45 + 0.45 + 1.0 = 1.9).
    p = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    assert vote(p, "probability") == 1
    assert vote(p, "majority") == 0
    # A tie in counts goes to the larger probability sum.
    assert vote(np.array([[0.9, 0.1], [0.4, 0.6]]), "majority") == 0
    with pytest.raises(ValueError, match="unknown vote"):
        vote(p, "median")
    with pytest.raises(ValueError, match="n_segments >= 1"):
        vote(np.zeros((0, 2)), "probability")


def test_the_tracker_raises_one_event_per_sustained_sound_with_hysteresis():
    st = SoundTracker(["dog", "alarm"], smoothing_s=1.0, threshold_on=0.5, threshold_off=0.3)
    events = []
    t = 0.0
    # 5 s of barking (one run every 0.5 s) whose confidence wavers around the on-threshold.
    for p in [0.8, 0.45, 0.7, 0.35, 0.9, 0.5, 0.6, 0.4, 0.8, 0.7]:
        t += 0.5
        events += st.update(t, [p, 0.0])
    assert [e["label"] for e in events] == ["dog"] and events[0]["t_audio_s"] == 0.5
    for _ in range(3):                        # silence: the dog ends
        t += 0.5
        events += st.update(t, [0.0, 0.0])
    for _ in range(4):                        # a new sound
        t += 0.5
        events += st.update(t, [0.0, 0.9])
    for _ in range(3):
        t += 0.5
        events += st.update(t, [0.0, 0.0])
    for _ in range(2):                        # the dog again: a second dog event
        t += 0.5
        events += st.update(t, [0.9, 0.0])
    assert [e["label"] for e in events] == ["dog", "alarm", "dog"]
    with pytest.raises(ValueError, match="threshold_off <= threshold_on"):
        SoundTracker(["a"], smoothing_s=1.0, threshold_on=0.3, threshold_off=0.5)


def test_the_other_class_wins_like_any_class_but_raises_no_event():
    from device.sound import OTHER
    st = SoundTracker(["dog", OTHER, "alarm"], smoothing_s=1.0, threshold_on=0.5,
                      threshold_off=0.3)
    events, t = [], 0.0
    for p in [[0.1, 0.9, 0.0]] * 6 + [[0.9, 0.1, 0.0]] * 3 + [[0.2, 0.8, 0.0]] * 4:
        t += 0.5                              # speech/music, then a dog, then speech again
        events += st.update(t, p)
    assert [e["label"] for e in events] == ["dog"]
    assert 3.5 <= events[0]["t_audio_s"] <= 4.0          # its first or second run


# ----------------------------------------------------------------------------- the pipeline
@pytest.fixture(scope="module")
def sound_model(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from export.standin import build_tone_sound_model
    return build_tone_sound_model(tmp_path_factory.mktemp("sound"), load_config("default"))


def _pipe(*overrides):
    from device.pipeline import Pipeline
    cfg = load_config("default", ['pipeline.stages=["sound_frontend", "sounds"]', *overrides])
    return Pipeline.from_config(cfg, keep_events=True)


def test_a_run_votes_the_plain_mean_of_its_segments_posteriors(sound_model):
    """ClassifierStage.classify (one segment: the posterior as float64 in one call) gives
    exactly sum(zeros + run(segment)) / count of the non-silent segments, for the device's
    one-segment window and for longer ones; an all-quiet window runs no model."""
    from device.frontend import LogMelConfig, log_mel
    from export.standin import SOUND_TONES_HZ
    pipe = _pipe(f"stages.sounds.model={sound_model}", 'stages.sounds.if_missing="error"')
    stage = pipe.stages[1]
    fcfg = LogMelConfig.from_config(load_config("default"), "classifier")
    audio = render_tones([Tone(0.5, 3.0, SOUND_TONES_HZ["dog"], 0.3)], 5.0, 16000)
    frames = log_mel(audio, fcfg)
    for n in (stage.frames, 2 * stage.spec.segment_frames + 7, stage.spec.segment_frames):
        window = frames[:n]
        segs, _ = segment(window, stage.spec, keep_one=False)
        assert len(segs)
        total = np.zeros(len(stage.labels))
        for seg in segs:
            total += stage.model.run(seg)[stage.head]
        runs = stage.model_runs
        got = stage.classify(window)
        assert got.dtype == np.float64 and np.array_equal(got, total / len(segs))
        assert stage.model_runs == runs + len(segs)
    quiet = np.full((stage.frames, fcfg.n_mels), FLOOR, np.float32)
    runs = stage.model_runs
    assert stage.classify(quiet) is None and stage.model_runs == runs
    pipe.close()


def test_one_sustained_sound_is_one_sound_event_through_the_pipeline(sound_model):
    from export.standin import SOUND_TONES_HZ
    pipe = _pipe(f"stages.sounds.model={sound_model}", 'stages.sounds.if_missing="error"')
    # 2 s of the noise floor, a 5 s "dog", 3 s of floor, 3 s "clock_alarm", 2 s of floor.
    audio = render_tones([Tone(2.0, 7.0, SOUND_TONES_HZ["dog"], 0.3),
                          Tone(10.0, 13.0, SOUND_TONES_HZ["clock_alarm"], 0.3)], 15.0, 16000)
    events = []
    for start in range(0, len(audio), 1600):   # blocks of 100 ms, as capture delivers them
        events += pipe.push(audio[start:start + 1600])
    sounds = [e for e in events if e["type"] == "sound"]
    assert [e["label"] for e in sounds] == ["dog", "clock_alarm"], sounds
    assert 2.0 < sounds[0]["t_audio_s"] <= 4.0       # noticed within 2 s of its start
    assert 10.0 < sounds[1]["t_audio_s"] <= 12.0
    assert all(0.5 <= e["confidence"] <= 1.0 for e in sounds)
    stage = pipe.stages[-1]
    assert stage.runs == 30                          # every 50 hops over 15 s
    pipe.close()


def test_digital_silence_runs_no_model(sound_model):
    pipe = _pipe(f"stages.sounds.model={sound_model}")
    pipe.push(np.zeros(16000 * 3, np.float32))
    stage = pipe.stages[-1]
    assert stage.runs == 6 and stage.model_runs == 0
    pipe.close()


def test_a_missing_model_warns_once_and_the_pipeline_runs(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hopwise.stages.classifier"):
        pipe = _pipe(f"stages.sounds.model={tmp_path / 'none_int8.tflite'}")
    assert "no sound classifier" in caplog.text and "make train export" in caplog.text
    assert not [e for e in pipe.push(np.ones(16000, np.float32) * 0.1) if e["type"] == "sound"]
    pipe.close()
    from device.config import ConfigError
    from device.manifest import ManifestError
    with pytest.raises((ManifestError, ConfigError)):
        _pipe(f"stages.sounds.model={tmp_path / 'none_int8.tflite'}",
              'stages.sounds.if_missing="error"')


def _sound_runs(model, audio, block_hops):
    """The classifier path fed ``block_hops`` hops per call: its events and every run's voted
    posteriors (``posteriors.sound``) with their stream times."""
    pipe = _pipe(f"stages.sounds.model={model}",
                 f"pipeline.block_hops={max(block_hops) if isinstance(block_hops, list) else block_hops}",
                 "runtime.status_interval_s=0")
    stage = pipe.stages[-1]
    posts = []
    process = stage.process

    def tapped(ctx):
        process(ctx)
        if "posteriors.sound" in ctx.fresh:
            t, p = ctx.data["posteriors.sound"]
            posts.append((t, np.array(p, np.float32)))
    stage.process = tapped
    hop = pipe.hop
    events = []
    # a list: block sizes in turn (a live read takes what has arrived: 4 hops, sometimes 1)
    sizes = block_hops if isinstance(block_hops, list) else [block_hops]
    start, i, whole = 0, 0, len(audio) - len(audio) % hop
    while start < whole:
        end = min(start + hop * sizes[i % len(sizes)], whole)
        events += [(e["label"], e["t_audio_s"], e["confidence"])
                   for e in pipe.process_block(audio[start:end]) if e["type"] == "sound"]
        start, i = end, i + 1
    pipe.close()
    return events, posts, (stage.runs, stage.model_runs)


@pytest.mark.parametrize("block_hops", [4, 10, [4, 1, 7, 1, 10, 3]])
def test_block_processing_gives_the_sound_events_and_posteriors_of_hop_by_hop(
        sound_model, shared_data, block_hops):
    """In blocks the classifiers' log-mel waits for the block in which the classifier runs (the
    blocks before are pushed with it, one call) and puts the frames into its window on the
    classifier's hop; one-hop reads in between push what waited first. The classifier must
    still see the same windows: the same voted posteriors at the same times and the same
    events, on the tone sounds and on real ESC-50 recordings."""
    import soundfile as sf
    from device.resample import resample
    from export.standin import SOUND_TONES_HZ
    tones = render_tones([Tone(1.0, 5.0, SOUND_TONES_HZ["dog"], 0.3),
                          Tone(7.0, 9.0, SOUND_TONES_HZ["clock_alarm"], 0.3)], 10.0, 16000)
    files = sorted((shared_data / "esc50" / "audio").glob("*.flac"))[:2]
    real = [resample(sf.read(str(f), dtype="float32", always_2d=True)[0].mean(1),
                     sf.info(str(f)).samplerate, 16000) for f in files]
    for audio, min_events in ((tones, 2), (np.concatenate(real), 0)):
        hop_by_hop = _sound_runs(sound_model, audio, 1)
        blocks = _sound_runs(sound_model, audio, block_hops)
        assert len(hop_by_hop[0]) >= min_events and len(hop_by_hop[1]) >= 15
        assert blocks[0] == hop_by_hop[0] and blocks[2] == hop_by_hop[2]
        assert [t for t, _ in blocks[1]] == [t for t, _ in hop_by_hop[1]]
        assert np.array_equal(np.stack([p for _, p in blocks[1]]),
                              np.stack([p for _, p in hop_by_hop[1]]))
