"""Decisions are pure: posteriors in, events out, deterministic."""
import numpy as np
import pytest

from device.config import load_config
from device.decisions import (CommandWindow, KeywordDecisions, PosteriorSmoother, SceneTracker,
                              WakeWordTrigger, windows_from_config)

LABELS = ["_silence_", "_unknown_", "computer", "yes", "no"]


def onehot(i, p=0.9, n=len(LABELS)):
    v = np.full(n, (1 - p) / (n - 1))
    v[i] = p
    return v


def test_smoother_is_a_moving_average():
    s = PosteriorSmoother(3)
    np.testing.assert_allclose(s.update([3.0]), [3.0])
    np.testing.assert_allclose(s.update([0.0]), [1.5])
    np.testing.assert_allclose(s.update([0.0]), [1.0])
    np.testing.assert_allclose(s.update([0.0]), [0.0])


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
    kd = KeywordDecisions(LABELS, "computer", ["yes", "no"], smoothing=1, wake_threshold=0.6,
                          wake_min_count=1, refractory_s=1.0, command_window_s=2.0,
                          command_threshold=0.6)
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
    cw = CommandWindow(LABELS, ["yes"], window_s=4, threshold=0.5, min_count=2)
    cw.open(0.0)
    assert cw.update(0.1, onehot(3)) is None
    assert cw.update(0.2, onehot(3)) == ("yes", pytest.approx(0.9))


def test_scene_hysteresis():
    scenes = ["a", "b"]
    st = SceneTracker(scenes, smoothing=1, threshold_on=0.6, threshold_off=0.4)
    assert st.update(0, [0.5, 0.5]) == []            # nothing confident yet
    assert [e["label"] for e in st.update(1, [0.7, 0.3])] == ["a"]
    assert st.update(2, [0.45, 0.55]) == []          # a is still above off: no flicker to b
    assert [e["label"] for e in st.update(3, [0.3, 0.7])] == ["b"]
    assert [e["label"] for e in st.update(4, [0.5, 0.35])] == ["none"]  # b below off, a below on
    with pytest.raises(ValueError):
        SceneTracker(scenes, threshold_on=0.3, threshold_off=0.5)


def test_windows_from_config_converts_ms_to_strides():
    cfg = load_config("default", ["decisions.smoothing_ms=300", "decisions.refractory_ms=1500"])
    w = windows_from_config(cfg, stride_s=0.1)
    assert w["keyword"]["smoothing"] == 3 and w["keyword"]["refractory_s"] == 1.5
    assert w["scene"]["threshold_on"] > w["scene"]["threshold_off"]
