"""Decisions are pure: time-stamped posteriors in, events out, deterministic; windows are time."""
import numpy as np
import pytest

from device.config import ConfigError, load_config
from device.decisions import (CommandWindow, KeywordDecisions, PosteriorSmoother, SceneTracker,
                              WakeWordTrigger)

LABELS = ["_silence_", "_unknown_", "computer", "yes", "no"]
HOP_S = 160 / 16000


def onehot(i, p=0.9, n=len(LABELS)):
    v = np.full(n, (1 - p) / (n - 1))
    v[i] = p
    return v


def keyword_decisions(**overrides):
    settings = dict(smoothing_s=0.0, wake_threshold=0.6, wake_min_count=1, refractory_s=1.0,
                    command_window_s=2.0, command_threshold=0.6, command_min_count=1,
                    max_commands=1)
    settings.update(overrides)
    return KeywordDecisions(LABELS, "computer", ["yes", "no"], **settings)


def stride_times(stride_hops, seconds):
    """The times the pipeline stamps a model's outputs with: the end of every stride_hops-th
    hop, computed as it does (samples / rate), so floating point rounds as it does there."""
    hop = 160
    return [(k * stride_hops * hop) / 16000 for k in range(1, int(seconds / (stride_hops * HOP_S)) + 1)]


def test_smoother_is_a_moving_average_over_time():
    s = PosteriorSmoother(0.3)
    np.testing.assert_allclose(s.update(0.1, [3.0]), [3.0])
    np.testing.assert_allclose(s.update(0.2, [0.0]), [1.5])
    np.testing.assert_allclose(s.update(0.3, [0.0]), [1.0])
    np.testing.assert_allclose(s.update(0.4, [0.0]), [0.0])   # 0.1 is outside (0.1, 0.4]


@pytest.mark.parametrize("window_s, stride_hops, vectors", [
    (0.2, 10, 2), (1.0, 10, 10), (0.2, 5, 4), (1.0, 5, 20), (0.05, 10, 1), (0.0, 10, 1)])
def test_the_window_is_audio_time_whatever_the_stride(window_s, stride_hops, vectors):
    # (t - window, t]: at the default 100 ms stride, 200 ms averages exactly 2 outputs, 1000 ms
    # exactly 10, however the times round; a window shorter than a stride is no smoothing.
    s = PosteriorSmoother(window_s)
    counts = set()
    for t in stride_times(stride_hops, 30.0):
        s.update(t, [1.0])
        if t >= window_s:   # once a whole window of audio has passed
            counts.add(len(s))
    assert counts == {vectors}


def test_outputs_from_before_a_gap_are_not_averaged_in():
    # The scene model is shed from 2 s to 5 s (its outputs stop), then hears another scene: the
    # 1 s window holds only what came after the gap, so the change is reported at once.
    st = SceneTracker(["a", "b"], smoothing_s=1.0, threshold_on=0.55, threshold_off=0.4)
    events = []
    for t in stride_times(10, 2.0):
        events += st.update(t, [0.9, 0.1])
    assert [e["label"] for e in events] == ["a"]
    ev = st.update(5.1, [0.1, 0.9])
    assert [(e["label"], e["t_audio_s"]) for e in ev] == [("b", 5.1)]


def test_the_same_audio_gives_the_same_events_at_another_stride():
    # A wake-word score that is high for 100 ms (a fluke) and later for 400 ms (a word). With the
    # profile's 200 ms smoothing the fluke averages to 0.55, below the 0.6 threshold, at either
    # stride; a window that counted outputs of an assumed 100 ms stride (2 outputs) would see
    # only the fluke's two 50 ms outputs at a 50 ms stride, and fire.
    cfg = load_config("default", ["decisions.smoothing_ms=200", "decisions.wake_min_count=1"])

    def score(t):
        high = 1.0 - 1e-9 <= t < 1.1 - 1e-9 or 3.0 - 1e-9 <= t < 3.4 - 1e-9
        return onehot(2, 0.9, 13) if high else onehot(0, 0.8, 13)

    runs = {}
    for stride_hops in (10, 5):
        kd = KeywordDecisions.from_config(cfg)
        runs[stride_hops] = [e for t in stride_times(stride_hops, 6.0) for e in kd.update(t, score(t))]
    for stride_hops, events in runs.items():
        assert [(e["type"], e["label"]) for e in events] == [("wake", "computer")], (stride_hops, events)
    assert abs(runs[10][0]["t_audio_s"] - runs[5][0]["t_audio_s"]) <= 0.1


def test_wake_trigger_threshold_count_and_refractory():
    w = WakeWordTrigger(threshold=0.6, min_count=2, refractory_s=1.0)
    assert w.update(0.0, 0.9) is None               # one above: not yet
    assert w.update(0.1, 0.5) is None               # broken run
    assert w.update(0.2, 0.7) is None
    assert w.update(0.3, 0.8) == pytest.approx(0.8)  # two consecutive: fires with the run's peak
    assert w.update(0.4, 0.9) is None               # stays high: no second event
    assert w.update(0.5, 0.1) is None
    assert w.update(0.6, 0.9) is None
    assert w.update(0.7, 0.9) is None               # inside the refractory time: suppressed
    assert w.suppressed == 1
    assert w.update(0.8, 0.1) is None
    assert w.update(1.4, 0.9) is None
    assert w.update(1.5, 0.9) is not None           # after it: fires again


def test_command_only_inside_the_window_after_a_wake_word():
    kd = keyword_decisions()
    assert kd.update(0.0, onehot(3)) == []           # "yes" without a wake word: nothing
    ev = kd.update(1.0, onehot(2))
    assert [e["type"] for e in ev] == ["wake"] and ev[0]["label"] == "computer"
    assert ev[0]["t_audio_s"] == 1.0
    assert kd.update(1.1, onehot(0)) == []
    ev = kd.update(1.5, onehot(4))
    assert [(e["type"], e["label"]) for e in ev] == [("command", "no")]
    assert kd.update(1.6, onehot(3)) == []           # one command per wake word
    kd.update(5.0, onehot(2))                        # wake again...
    assert kd.update(7.5, onehot(3)) == []           # ...but the window (2 s) has closed


def test_command_window_min_count():
    cw = CommandWindow(LABELS, ["yes"], window_s=4, threshold=0.5, min_count=2, max_commands=1)
    cw.open(0.0)
    assert cw.update(0.1, onehot(3)) is None
    assert cw.update(0.2, onehot(3)) == ("yes", pytest.approx(0.9))


def test_scene_hysteresis():
    scenes = ["a", "b"]
    st = SceneTracker(scenes, smoothing_s=0.0, threshold_on=0.6, threshold_off=0.4)
    assert st.update(0, [0.5, 0.5]) == []            # nothing confident yet
    assert [e["label"] for e in st.update(1, [0.7, 0.3])] == ["a"]
    assert st.update(2, [0.45, 0.55]) == []          # a is still above off: no flicker to b
    assert [e["label"] for e in st.update(3, [0.3, 0.7])] == ["b"]
    assert [e["label"] for e in st.update(4, [0.5, 0.35])] == ["none"]  # b below off, a below on
    with pytest.raises(ValueError):
        SceneTracker(scenes, smoothing_s=0.0, threshold_on=0.3, threshold_off=0.5)


def test_settings_come_from_the_profile_and_a_missing_one_is_named():
    cfg = load_config("default", ["decisions.smoothing_ms=300", "decisions.refractory_ms=1500"])
    kd = KeywordDecisions.from_config(cfg)
    assert kd.smoother.window_s == pytest.approx(0.3) and kd.wake.refractory_s == pytest.approx(1.5)
    assert kd.wake.min_count == cfg["decisions.wake_min_count"]
    st = SceneTracker.from_config(cfg)
    assert st.smoother.window_s == pytest.approx(cfg["decisions.scene_smoothing_ms"] / 1000)
    data = cfg.to_dict()
    del data["decisions"]["wake_min_count"]
    from device.config import Config
    with pytest.raises(ConfigError, match="'decisions.wake_min_count'"):
        KeywordDecisions.from_config(Config(data, "trimmed"))


def test_the_running_mean_is_the_windows_mean_over_a_long_run():
    # The smoother keeps a running sum (re-summed every RESUM_EVERY updates): over thousands of
    # updates at the streaming model's 40 ms stride it stays the plain mean of the window.
    rng = np.random.default_rng(0)
    s = PosteriorSmoother(1.0)
    window = []
    for k in range(1, 3000):
        t = k * 0.04
        p = rng.dirichlet(np.ones(10))
        window = [(u, q) for u, q in window if u > t - 1.0 + 1e-6] + [(t, p)]
        np.testing.assert_allclose(s.update(t, p), np.mean([q for _, q in window], axis=0),
                                   rtol=0, atol=1e-12)
    assert len(s) == 25
