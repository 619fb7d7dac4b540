"""The verifier's class readout: a second opinion on each command trigger (device/verifier.py,
stages/keyword_decisions.py), its fit (train/verifier.py) and its replay (evaluation/commands.py).

Real parts as in test_wake_verifier.py: openWakeWord's two TFLite models, the export, the
manifests and the stage. Where a test needs a known verdict the class readout is set by hand
(all weights 0, the intercepts deciding) instead of fit; those tests skip without the wheel.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from device.config import load_config
from device.decisions import CommandWindow
from device.manifest import ManifestError
from device.stages.keyword_decisions import KeywordDecisionStage
from device.verifier import EMBEDDING_DIM, RATE_HZ, WakeVerifier, combine
from tests.device.test_wake_verifier import _drive, _posteriors, _readout

N = 2 * EMBEDDING_DIM


def _classes(labels, favour: dict[str, float] | None = None, ends=(200.0,)) -> dict:
    intercept = [float((favour or {}).get(label, 0.0)) for label in labels]
    return {"labels": list(labels), "mean": [0.0] * N, "scale": [1.0] * N,
            "coef": [[0.0] * N for _ in labels], "intercept": intercept,
            "window_ends_ms": list(ends)}


class _ZeroEmbedding:
    """Every window embeds to zeros: the class readout's intercepts decide."""

    def __init__(self):
        self.calls = 0

    def embed(self, clips):
        self.calls += 1
        return np.zeros((len(clips), N), np.float32)


def test_combine_is_the_renormalised_product_with_a_floor():
    p = np.array([0.6, 0.3, 0.1])
    q = np.array([0.1, 0.8, 0.1])
    np.testing.assert_allclose(combine(p, q, 0.0), p)
    np.testing.assert_allclose(combine(p, q, 1.0), p * q / (p * q).sum())
    # One opinion's certainty that a class is absent cannot veto the other outright.
    both = combine(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 1.0)
    np.testing.assert_allclose(both, [0.5, 0.5])
    assert combine(np.tile(p, (4, 1)), np.tile(q, (4, 1))).shape == (4, 3)


def test_the_class_readout_is_checked_and_sets_the_delay():
    labels = ["a", "b", "c"]
    v = WakeVerifier(_ZeroEmbedding(), _readout(), window_ends_ms=[-200.0, 0.0],
                     classes=_classes(labels, {"b": 2.0}, ends=(300.0,)))
    # The wake windows end by the trigger; the class window 300 ms after it: the stage waits
    # for the later one.
    assert v.delay_s == pytest.approx(0.3) and v.history_s == pytest.approx(1.2)
    # A wake verdict needs no audio after its trigger; a command's needs its window's 300 ms.
    assert v.wake_delay_s == 0.0 and v.class_delay_s == pytest.approx(0.3)
    q = v.class_probabilities(np.zeros(3 * RATE_HZ, np.float32), RATE_HZ)
    e = np.exp([0.0, 2.0, 0.0])
    np.testing.assert_allclose(q, e / e.sum())
    for bad in ({"coef": [[0.0] * N] * 2}, {"intercept": [0.0]}, {"window_ends_ms": []},
                {"mean": [0.0] * 5}, {"labels": ["a"]}):
        with pytest.raises(ManifestError, match="class readout"):
            WakeVerifier(_ZeroEmbedding(), _readout(), classes={**_classes(labels), **bad})
    with pytest.raises(ManifestError, match="zero scale"):
        WakeVerifier(_ZeroEmbedding(), _readout(), classes={**_classes(labels), "scale": [0.0] * N})
    with pytest.raises(ValueError, match="no class readout"):
        WakeVerifier(_ZeroEmbedding(), _readout()).class_probabilities(np.zeros(RATE_HZ), 0)


def test_judge_command_names_the_word_both_hear_or_none():
    labels = ["computer", "on", "off", "_unknown_"]
    audio = np.zeros(3 * RATE_HZ, np.float32)
    # The readout's labels in another order than the keyword head's: matched by name.
    v = WakeVerifier(_ZeroEmbedding(), _readout(),
                     classes=_classes(labels[::-1], {"off": 3.0}))
    # The keyword model leans to "on", the embedding is sure of "off": "off" it is.
    label, p, q = v.judge_command(np.array([0.0, 0.55, 0.45, 0.0]), labels, {"on", "off"}, audio,
                                  RATE_HZ, 1.0)
    assert label == "off" and p > 0.5 and q > 0.8
    # Weight 0: the keyword model alone.
    assert v.judge_command(np.array([0.0, 0.55, 0.45, 0.0]), labels, {"on", "off"}, audio,
                           RATE_HZ, 0.0)[0] == "on"
    v = WakeVerifier(_ZeroEmbedding(), _readout(), classes=_classes(labels, {"_unknown_": 5.0}))
    assert v.judge_command(np.array([0.0, 0.7, 0.0, 0.3]), labels, {"on", "off"}, audio,
                           RATE_HZ, 1.0)[0] is None


def test_a_withdrawn_command_reopens_the_window_but_not_for_the_same_word():
    w = CommandWindow(["on", "off"], ["on", "off"], window_s=4.0, threshold=0.5, min_count=1,
                      max_commands=1)
    w.open(0.0)
    assert w.update(0.1, np.array([0.9, 0.0])) == ("on", 0.9)
    assert not w.is_open and w.update(0.2, np.array([0.9, 0.0])) is None
    w.withdraw()                      # the verifier refused it
    assert w.is_open
    assert w.update(0.3, np.array([0.9, 0.0])) is None      # still the same word
    assert w.update(0.4, np.array([0.0, 0.0])) is None
    assert w.update(0.5, np.array([0.0, 0.8])) == ("off", 0.8)
    w.withdraw()
    assert w.update(4.5, np.array([0.0, 0.0])) is None and not w.is_open   # its own end holds
    w.close()
    w.withdraw()                      # a closed window (wake word withdrawn) stays closed
    assert not w.is_open


# ------------------------------------------------------------------ the stage, real models
@pytest.fixture(scope="module")
def models():
    pytest.importorskip("openwakeword", reason="openWakeWord's wheel (make test installs it)")
    from train import verifier as tv
    return tv.source_models()


def _export_with_classes(cfg, favour: dict[str, float]):
    from device.manifest import sha256_file
    from train import verifier as tv
    path = tv.readout_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "readout": _readout(4.0), "validation": {}, "threshold": 0.5,
        "classes": _classes(cfg.keyword_labels, favour), "class_validation": {},
        "window_ends_ms": list(cfg["model.wake_verifier.window_ends_ms"]), "context_ms": 250.0,
        "source_models": {k: sha256_file(p) for k, p in tv.source_models().items()}}))
    return tv.export_verifier(cfg)


def _stage(tmp_path, favour):
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                  "stages.keywords.verifier='export/wake_verifier.tflite'",
                                  "model.wake_verifier.window_ends_ms=[0.0, 200.0]"])
    model = _export_with_classes(cfg, favour)
    assert WakeVerifier.load(model).classes == cfg.keyword_labels
    stage = KeywordDecisionStage("keywords", cfg.section("stages.keywords"), cfg, RATE_HZ, 0.01)
    assert stage.judge_commands
    assert stage.decider.commands.threshold == cfg["decisions.verified_command_threshold"]
    return cfg, stage


def _mix(cfg, weights: dict[str, float]) -> np.ndarray:
    p = np.zeros(len(cfg.keyword_labels), np.float32)
    for label, w in weights.items():
        p[cfg.keyword_labels.index(label)] = w
    return p


def test_the_stage_names_each_command_with_the_verifier(models, tmp_path):
    first, second = load_config("default")["labels.commands"][:2]
    cfg, stage = _stage(tmp_path, {second: 6.0})
    wake = _posteriors(cfg, cfg["labels.wake_word"])
    # The keyword model hears `first` (0.7) over `second` (0.3); the embedding hears `second`.
    cmd = _mix(cfg, {first: 0.7, second: 0.3})
    (_, e_wake), (i_cmd, e_cmd) = _drive(stage, {9: wake, 39: cmd}, 70)
    assert e_wake["type"] == "wake"
    assert e_cmd["type"] == "command" and e_cmd["label"] == second
    assert e_cmd["keyword_model"] == first and e_cmd["verifier"] > 0.9
    assert i_cmd == 39 + 20 and e_cmd["t_verdict_s"] > e_cmd["t_audio_s"]
    assert stage.describe()["verifier"]["commands"] is True


def test_a_command_neither_hears_is_withdrawn_and_the_window_listens_on(models, tmp_path):
    cfg, stage = _stage(tmp_path, {"_unknown_": 6.0})
    first = cfg["labels.commands"][0]
    wake = _posteriors(cfg, cfg["labels.wake_word"])
    cmd = _mix(cfg, {first: 0.7, "_unknown_": 0.3})
    quiet = _posteriors(cfg, "_silence_")
    # One word held over several strides gets one verdict; after a pause, another word another.
    ev = _drive(stage, {9: wake, 39: cmd, 49: cmd, 59: cmd, 69: quiet, 79: quiet, 99: cmd}, 140)
    assert [e["type"] for _, e in ev] == ["wake"]
    assert stage.rejected_commands == 2 and stage.verifier.embedding is not None


def test_a_failing_class_readout_lets_the_keyword_models_command_through(models, tmp_path):
    cfg, stage = _stage(tmp_path, {"_unknown_": 6.0})

    def broken(*_a, **_k):
        raise RuntimeError("interpreter gone")
    stage.verifier.class_probabilities = broken
    wake = _posteriors(cfg, cfg["labels.wake_word"])
    cmd = _posteriors(cfg, cfg["labels.commands"][0])
    (_, e_wake), (_, e_cmd) = _drive(stage, {9: wake, 39: cmd}, 70)
    assert e_cmd["label"] == cfg["labels.commands"][0] and "verifier" not in e_cmd
    assert stage.verifier_failures == 1


# ------------------------------------------------------------------ fit and replay
def test_the_class_readout_fit_is_scikit_learns():
    from sklearn.linear_model import LogisticRegression
    from train.verifier import fit_class_readout
    rng = np.random.default_rng(5)
    labels = ["a", "b", "c", "d"]       # "d" has no clip: it must never win
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 1, (300, N)) + y[:, None] * 0.3
    classes = fit_class_readout(x, y, labels, c=0.1, seed=0, window_ends_ms=[200.0])
    v = WakeVerifier(_ZeroEmbedding(), _readout(), classes=classes)
    q = v.class_readout(x)
    reg = LogisticRegression(C=0.1, max_iter=3000, random_state=0).fit(
        (x - x.mean(axis=0)) / x.std(axis=0), y)
    np.testing.assert_allclose(q[:, :3], reg.predict_proba((x - x.mean(axis=0)) / x.std(axis=0)),
                               rtol=1e-5, atol=1e-9)
    assert q[:, 3].max() < 1e-9 and (q.argmax(1) == y).mean() > 0.9
    # Two classes: scikit-learn keeps one row; the softmax readout gives its sigmoid.
    y2 = (y > 0).astype(int)
    two = WakeVerifier(_ZeroEmbedding(), _readout(), classes=fit_class_readout(
        x, y2, ["no", "yes"], c=0.1, seed=0, window_ends_ms=[0.0]))
    reg2 = LogisticRegression(C=0.1, max_iter=3000, random_state=0).fit(
        (x - x.mean(axis=0)) / x.std(axis=0), y2)
    np.testing.assert_allclose(two.class_readout(x)[:, 1],
                               reg2.predict_proba((x - x.mean(axis=0)) / x.std(axis=0))[:, 1],
                               rtol=1e-6)


class _ScriptedVerifier:
    """judge_command answers from a script keyed by the trigger's second; delay as a verifier."""
    class_delay_s = 0.2

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def judge_command(self, posteriors, labels, commands, audio, trigger_index, weight):
        t = trigger_index / RATE_HZ
        self.asked.append(round(t, 2))
        return self.answers.get(int(t)), 0.9, 0.9


def test_replay_counts_right_wrong_and_false_commands():
    from evaluation.commands import replay_commands
    from train.verifier import clip_stream
    cfg = load_config("default", ["decisions.smoothing_ms=100"])
    clips = np.zeros((3, RATE_HZ), np.float32)
    first, second = cfg["labels.commands"][:2]
    audio, spans = clip_stream(clips, [first, second, "_unknown_"], gap_s=1.0)
    assert audio.dtype == np.int16 and [s[:2] for s in spans] == [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)]
    times = np.arange(0.1, 7.0, 0.1)
    post = np.tile(_posteriors(cfg, "_silence_"), (len(times), 1))
    for t0, label in ((1.3, first), (3.3, first), (5.3, second)):   # 2nd wrong, 3rd false
        post[(times > t0) & (times < t0 + 0.4)] = _posteriors(cfg, label)
    alone = replay_commands(cfg, times, post, audio / 32768.0, spans, 0.5)
    assert {k: alone[k] for k in ("commands", "right", "wrong", "others", "false")} == \
        {"commands": 2, "right": 1, "wrong": 1, "others": 1, "false": 1}
    # The verifier names the second word right and refuses the false one.
    v = _ScriptedVerifier({1: first, 3: second, 5: None})
    judged = replay_commands(cfg, times, post, audio / 32768.0, spans, 0.5, verifier=v)
    assert {k: judged[k] for k in ("right", "wrong", "false", "withdrawn")} == \
        {"right": 2, "wrong": 0, "false": 0, "withdrawn": 1}
    assert len(v.asked) == 3        # the refused word, held high, is not asked about again


def _tone_split(labels, n_yes: int, n_unknown: int, **extra):
    """A stand-in split the tone model can hear: ``n_yes`` clips of its "yes" tone, then
    ``n_unknown`` silent clips labelled ``_unknown_``, and scenes of faint noise."""
    from types import SimpleNamespace

    from device.audio_source import Tone, render_tones
    from device.bench import WORD_S, YES_HZ
    yes = render_tones([Tone(0.2, 0.2 + WORD_S, YES_HZ, 0.3)], 1.0, RATE_HZ).astype(np.float32)
    scenes = SimpleNamespace(random=lambda n, r: (r.normal(0, 0.01, (n, RATE_HZ)).astype(np.float32),
                                                  np.zeros(n, int)))
    return SimpleNamespace(keyword_audio=np.stack([yes] * n_yes + [np.zeros_like(yes)] * n_unknown),
                           keyword_labels=np.array([labels.index("yes")] * n_yes
                                                   + [labels.index("_unknown_")] * n_unknown),
                           scenes=scenes, **extra)


def test_the_class_readout_is_shown_the_windows_at_the_keyword_models_command_triggers(
        models, tone_model, tmp_path):
    """`train.verifier.command_windows` end to end with a real int8 model (the tone model: "yes"
    is a 1.5 kHz tone): each spoken command gives one window per distinct trigger, labelled with
    its word; an unknown word the model does not trigger on gives none."""
    from helpers import TONE_STAGES
    from train import verifier as tv
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                  f"stages.multitask.model='{tone_model}'", TONE_STAGES])
    labels = cfg.keyword_labels
    data = _tone_split(labels, 3, 3)
    x, y = tv.command_windows(cfg, data, tv.embedder(cfg), [200.0], [0.5],
                              np.random.default_rng(0))
    assert x.shape == (3, N) and np.all(np.isfinite(x))
    assert list(y) == [labels.index("yes")] * 3
    # Two windows per trigger: one row each, the same label.
    x2, y2 = tv.command_windows(cfg, data, tv.embedder(cfg), [0.0, 200.0], [0.5],
                                np.random.default_rng(0))
    assert x2.shape == (6, N) and list(y2) == [labels.index("yes")] * 6
    # Once more over scenes at 20 dB: the same three words, three more windows.
    x3, y3 = tv.command_windows(cfg, data, tv.embedder(cfg), [200.0], [0.5],
                                np.random.default_rng(0), snr_db=[20.0])
    assert x3.shape == (6, N) and list(y3) == [labels.index("yes")] * 6
    np.testing.assert_allclose(x3[:3], x, rtol=1e-5)   # the clean pass is unchanged by it
    missing = load_config("default", [f"project.build_dir='{tmp_path / 'none'}'"])
    with pytest.raises(FileNotFoundError, match="export.multitask"):
        tv.command_windows(missing, data, tv.embedder(cfg), [200.0], [0.5],
                           np.random.default_rng(0))


def test_folds_pool_into_one_report():
    from evaluation.commands import markdown, pool

    def report(n, acc, right):
        row = {"commands": 10, "right": right, "wrong": 1, "others": 4, "false": 1, "withdrawn": 2,
               "verdicts": 12, "threshold": 0.5, "decider": "with_verifier"}
        return {"profile": "real", "weight": 1.0, "recorded_clips": n, "embedding_ms_per_clip": 6.0,
                "clips": {"keyword_model": acc, "readout": acc, "combined": acc},
                "stream": {"audio_s": 100.0, "gap_s": 1.5, "smoothing_ms": 300.0,
                           "rows": {"with_verifier@0.5": row}}}
    pooled = pool([report(100, 0.9, 8), report(300, 0.8, 9)])
    assert pooled["recorded_clips"] == 400 and pooled["clips"]["combined"] == pytest.approx(0.825)
    row = pooled["stream"]["rows"]["with_verifier@0.5"]
    assert (row["commands"], row["right"], row["verdicts"], row["threshold"]) == (20, 17, 24, 0.5)
    text = markdown(pooled)
    assert "82.5 %" in text and "| with verifier | 0.5 | 85.0 % | 10.0 % | 5.0 % | 25.0 % | 24 (4) |" in text


def test_evaluate_runs_both_figures_through_the_pipeline(models, tone_model, tmp_path, monkeypatch):
    """`evaluation.commands.evaluate` end to end on a stand-in test split (the tone model's
    "yes" tone and silent unknown words), the real pipeline and a verifier exported with a
    class readout that hears "yes" in everything: clips and streams, in silence and over scenes."""
    from evaluation import commands as ce
    from helpers import TONE_STAGES
    import train.multitask as mt
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                  f"stages.multitask.model='{tone_model}'", TONE_STAGES,
                                  "stages.keywords.verifier='export/wake_verifier.tflite'",
                                  "model.wake_verifier.window_ends_ms=[0.0, 200.0]"])
    labels = cfg.keyword_labels
    _export_with_classes(cfg, {"yes": 6.0})
    test = _tone_split(labels, 4, 2, keyword_recorded=np.array([True] * 6))
    monkeypatch.setattr(mt, "load_splits", lambda cfg, progress=False: {"test": test})
    report = ce.evaluate(cfg, [0.5])
    assert report["recorded_clips"] == 6
    # The keyword model hears the tones as "yes" (and the silent "unknown words" as silence);
    # the readout says "yes" to everything.
    assert report["clips"]["keyword_model"] == pytest.approx(4 / 6, abs=1e-4)
    assert report["clips"]["readout"] == pytest.approx(4 / 6, abs=1e-4)
    alone, judged = (report["stream"]["rows"][f"{k}@0.5"] for k in ("keyword_model", "with_verifier"))
    assert (alone["commands"], alone["right"], alone["others"], alone["false"]) == (4, 4, 2, 0)
    assert (judged["right"], judged["wrong"], judged["false"], judged["verdicts"]) == (4, 0, 0, 4)
    noisy = ce.evaluate(cfg, [0.5], snr_db=20.0)
    assert noisy["stream"]["snr_db"] == 20.0
    assert noisy["stream"]["rows"]["with_verifier@0.5"]["right"] == 4
    assert "20 dB SNR" in ce.markdown(noisy)


def test_the_hidden_readouts_are_scikit_learns_networks_averaged():
    """hidden_units > 0: each readout is the mean of a few one-hidden-layer networks; the device
    arithmetic must give what scikit-learn's networks give, for the wake word and the classes."""
    from sklearn.neural_network import MLPClassifier
    from train.verifier import fit_class_readout, fit_readout
    rng = np.random.default_rng(7)
    labels = ["a", "b", "c", "d"]       # "d" has no clip: it must never win
    y = rng.integers(0, 3, 240)
    x = rng.normal(0, 1, (240, N)) + y[:, None] * 0.3
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    hidden = {"units": 8, "alpha": 0.3, "members": 2, "epochs": 50}   # hidden_settings' keys
    nets = [MLPClassifier(hidden_layer_sizes=(8,), alpha=0.3, max_iter=50, random_state=s)
            .fit(z, y) for s in (0, 1)]
    v = WakeVerifier(_ZeroEmbedding(), _readout(), classes=fit_class_readout(
        x, y, labels, c=0.1, seed=0, window_ends_ms=[200.0], hidden=hidden))
    q = v.class_readout(x)
    np.testing.assert_allclose(q[:, :3], np.mean([n.predict_proba(z) for n in nets], axis=0),
                               rtol=1e-5, atol=1e-9)
    assert q[:, 3].max() < 1e-9
    np.testing.assert_allclose(q.sum(axis=1), 1.0)
    # The wake readout: one sigmoid output per network.
    wake = (y == 1).astype(int)
    w = WakeVerifier(_ZeroEmbedding(), fit_readout(x, wake, c=0.1, seed=0, hidden=hidden))
    nets = [MLPClassifier(hidden_layer_sizes=(8,), alpha=0.3, max_iter=50, random_state=s)
            .fit(z, wake) for s in (0, 1)]
    np.testing.assert_allclose(w.probabilities(x),
                               np.mean([n.predict_proba(z)[:, 1] for n in nets], axis=0), rtol=1e-5)


def test_the_readouts_are_fit_on_one_blas_thread(monkeypatch):
    """A seed must give one readout on every host: the fits run on one BLAS thread, whatever
    numpy was set to outside (two threads sum in another order, and 300 epochs of Adam grow the
    last bit into different weights; shown on this host's real corpus, which random data this
    small does not reproduce, so the test checks the thread count each fit sees)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_info, threadpool_limits
    from train.verifier import fit_class_readout, fit_readout
    seen = []

    def recording(fit):
        def wrapped(self, *args, **kwargs):
            seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
            return fit(self, *args, **kwargs)
        return wrapped
    for cls in (MLPClassifier, LogisticRegression):
        monkeypatch.setattr(cls, "fit", recording(cls.fit))
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    x = rng.normal(0, 1, (90, N)) + y[:, None] * 0.3
    hidden = {"units": 4, "alpha": 0.3, "members": 2, "epochs": 5}
    with threadpool_limits(limits=2, user_api="blas"):
        before = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
        fit_readout(x, (y == 1).astype(int), c=0.1, seed=0, hidden=hidden)
        fit_readout(x, (y == 1).astype(int), c=0.1, seed=0)
        fit_class_readout(x, y, ["a", "b", "c"], c=0.1, seed=0, window_ends_ms=[200.0],
                          hidden=hidden)
        fit_class_readout(x, y, ["a", "b", "c"], c=0.1, seed=0, window_ends_ms=[200.0])
        after = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
    assert before == after == {2}        # the caller's setting, back after the fits
    assert len(seen) == 6 and all(s == {1} for s in seen), seen


def test_a_hidden_readout_of_the_wrong_shape_is_refused():
    member = {"weights": [[0.0] * 4] * N, "bias": [0.0] * 4, "coef": [0.0] * 4, "intercept": 0.0}
    ok = {"mean": [0.0] * N, "scale": [1.0] * N, "hidden": [member]}
    assert WakeVerifier(_ZeroEmbedding(), ok).probabilities(np.zeros((2, N))) == pytest.approx(0.5)
    for bad in ({**member, "bias": [0.0] * 3}, {**member, "coef": [0.0] * 5},
                {**member, "weights": [[0.0] * 4] * 5}, {**member, "intercept": [0.0, 0.0]}):
        with pytest.raises(ManifestError, match="wake readout"):
            WakeVerifier(_ZeroEmbedding(), {**ok, "hidden": [bad]})
    with pytest.raises(ManifestError, match="no hidden members"):
        WakeVerifier(_ZeroEmbedding(), {**ok, "hidden": []})
    labels = ["a", "b", "c"]
    cls = {**_classes(labels), "hidden": [{**member, "coef": [[0.0] * 4] * 2,
                                            "intercept": [0.0] * 3}]}
    with pytest.raises(ManifestError, match="class readout"):
        WakeVerifier(_ZeroEmbedding(), _readout(), classes=cls)


def test_the_profile_says_which_readout_to_fit():
    from train.verifier import hidden_settings
    cfg = load_config("real")
    h = hidden_settings(cfg)
    assert h == {"units": int(cfg["model.wake_verifier.hidden_units"]),
                 "alpha": float(cfg["model.wake_verifier.hidden_alpha"]),
                 "members": int(cfg["model.wake_verifier.hidden_members"]),
                 "epochs": int(cfg["model.wake_verifier.hidden_epochs"])} and h["units"] > 0
    assert hidden_settings(load_config("real", ["model.wake_verifier.hidden_units=0"])) is None
