"""Pooling a cross-validation's wake-word benchmarks (`evaluation.wakeword_cv`).

The folds are real benchmark runs (hopwise's device pipeline with the hand-weighted tone model
on the crafted recordings of ``conftest.data``), each on half of the wake-word recordings, so
the pooled counts are known: every positive heard once, and the tone planted in the continuous
audio a false alarm in each fold's negative stream.
"""
from __future__ import annotations

import json

import pytest

from evaluation import wakeword as ww
from evaluation import wakeword_cv as cv
from tests.evaluation.test_wakeword_bench import _args


def _fold_reports(tone_model, data, tmp_path, halves):
    paths = []
    for k, files in enumerate(halves):
        folder = tmp_path / f"fold{k}" / "computer"
        folder.mkdir(parents=True)
        for name in files:
            # A link, as two folds of one corpus name the same file.
            (folder / name).symlink_to(data / "wake_words" / "computer" / name)
        out = tmp_path / "r" / f"fold{k}"
        with pytest.warns(UserWarning, match="broken.flac"):
            assert ww.main(_args(data, tmp_path, tone_model, "--positives", str(folder),
                                 "--out", str(out))) == 0
        paths.append(out.with_suffix(".json"))
    return paths


def test_folds_pool_into_one_curve_counting_every_recording_once(tone_model, data, tmp_path,
                                                                 capsys):
    paths = _fold_reports(tone_model, data, tmp_path,
                          [["0.wav", "1.wav", "2.wav"], ["3.wav", "4.wav", "5.wav"]])
    reports = [json.loads(p.read_text()) for p in paths]
    pooled = cv.pool(reports)
    assert pooled["overlap"] == 0 and len(pooled["folds"]) == 2
    one = cv.fold_counts(reports[0])
    both = pooled["counts"]
    assert set(both) == set(one)                           # the same smoothing windows
    for smoothing, by_t in both.items():
        for t, c in by_t.items():
            a, b = one[smoothing][t], cv.fold_counts(reports[1])[smoothing][t]
            assert c.positives == 6 == a.positives + b.positives
            assert c.misses == a.misses + b.misses and c.false_alarms == a.false_alarms + b.false_alarms
            assert c.negative_h == pytest.approx(a.negative_h + b.negative_h)
    at = both[300.0][0.6] if 300.0 in both else next(iter(both.values()))[0.6]
    assert at.misses == 0 and at.false_alarms == 2         # the planted tone, once per fold
    s = cv.summarise(pooled, limits=(1e6,))
    assert s["positives"] == 6 and s["within"]["1e+06"]["miss_rate"] == 0.0
    # The profile's point names where its false alarms came from, with each kind's hours.
    at_p = s["at_profile"]
    assert at_p is not None and at_p["false_alarms"] == 2
    assert sum(v["false_alarms"] for v in at_p["by_kind"].values()) == 2
    assert sum(v["hours"] for v in at_p["by_kind"].values()) <= s["negative_h"]
    # Every setting that wakes also hears the planted tone: none is free of false alarms.
    assert s["within"]["0"] is None or s["within"]["0"]["miss_rate"] == 1.0
    assert cv.main(["pool", "--variant", "tones", *map(str, paths), "--limits", "1e6",
                    "--out", str(tmp_path / "cv")]) == 0
    out = capsys.readouterr().out
    assert "| tones | 2 | 6 |" in out
    assert (tmp_path / "cv_det.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cv.json").read_text())["summaries"]["tones"]["positives"] == 6


def test_folds_that_judge_a_recording_twice_or_differ_are_named(tone_model, data, tmp_path,
                                                                capsys):
    paths = _fold_reports(tone_model, data, tmp_path, [["0.wav", "1.wav"], ["1.wav", "2.wav"]])
    reports = [json.loads(p.read_text()) for p in paths]
    assert cv.pool(reports)["overlap"] == 1
    assert cv.main(["pool", "--variant", "v", *map(str, paths)]) == 0
    assert "1 positive recordings were judged by more than one fold" in capsys.readouterr().out
    other = json.loads(json.dumps(reports[1]))
    other["wake_word"] = "alexa"
    with pytest.raises(ValueError, match="not one benchmark"):
        cv.pool([reports[0], other])
    fewer = json.loads(json.dumps(reports[1]))
    fewer["engines"][0]["smoothing_sweep"] = fewer["engines"][0]["smoothing_sweep"][:1]
    with pytest.raises(ValueError, match="different thresholds or smoothing"):
        cv.pool([reports[0], fewer])
    with pytest.raises(ValueError, match="no hopwise engine named 'x'"):
        cv.pool(reports, engine="x")


def test_cli_needs_reports_after_a_variant_name(capsys):
    assert cv.main(["pool", "--variant", "lonely"]) == 2
    assert "give its folds' report files" in capsys.readouterr().err


def test_each_fold_trains_exports_and_benchmarks_in_its_own_folder(tmp_path):
    folder, cmds = cv.fold_commands("bc", 3, 2, "real", ["split.folds=9", "a.b=1"], tmp_path,
                                    python="py")
    assert folder == tmp_path / "bc-fold2"
    assert [c[2] for c in cmds] == ["train.multitask", "export.multitask", "train.verifier",
                                    "evaluation.seed_table", "evaluation.commands",
                                    "evaluation.wakeword"]
    for c in cmds:
        sets = [c[i + 1] for i, a in enumerate(c) if a == "--set"]
        # The fold's own settings come last, so a stray --set cannot change the fold.
        assert sets[-3:] == [f"project.build_dir={folder}", "split.folds=3", "split.test_fold=2"]
        assert "a.b=1" in sets and c[c.index("--profile") + 1] == "real"
    assert cmds[5][-2:] == ["--out", str(folder / "wakeword")]
    assert cmds[3][-4:] == ["--variants", "mt60j", "--reuse", "--quiet"]
    assert cmds[2][-2:] == ["--export", "--quiet"]


def _row(correct_of_n: dict) -> dict:
    """A seed-table result in `evaluation.seed_table.evaluate_sets`'s shape (2 classes)."""
    return {k: {"accuracy": c / n, "n": n, "confusion": [[c, n - c], [0, 0]]}
            for k, (c, n) in correct_of_n.items()}


def test_accuracies_pool_correct_answers_over_the_folds():
    tables = [{"deployed": "mt60j", "variants": {"mt60j": {
        "int8": _row({"keyword": (90, 100), "scene": (4, 10)}),
        "float": _row({"keyword": (91, 100)}), "validation_float": _row({"keyword": (9, 10)})}}},
        {"variants": {"mt60j": {"int8": _row({"keyword": (40, 50), "scene": (6, 10)}),
                                "float": _row({"keyword": (45, 50)})}}}]
    got = cv.pool_accuracies(tables)
    assert got["int8"]["keyword"] == {"accuracy": round(130 / 150, 4), "n": 150}
    assert got["int8"]["scene"] == {"accuracy": 0.5, "n": 20}
    assert got["float"]["keyword"]["accuracy"] == round(136 / 150, 4)
    assert got["validation_float"]["keyword"] == {"accuracy": 0.9, "n": 10}
    text = cv.markdown({"v": {"folds": 2, "positives": 6, "negative_h": 1.0, "overlap": 0,
                              "within": {"0": None, "1": None}, "at_profile": None,
                              "accuracy": got}}, limits=(1.0,))
    assert "| v | 86.7 % (90.7), 150 | 50.0 %, 20 | keyword 90.0 % |" in text


def test_run_resumes_past_finished_folds_and_names_a_failing_step(tmp_path, capsys):
    done = tmp_path / "v-fold1" / "wakeword.json"
    done.parent.mkdir()
    done.write_text("{}")
    assert cv.run_folds("v", 2, "default", [], tmp_path, only=[1]) == [done]
    # A bad --set is refused before any training starts...
    assert cv.main(["run", "v", "--folds", "2", "--root", str(tmp_path),
                    "--set", "model.multitask.architecture=resnet"]) == 2
    assert "use one of dscnn, bcresnet" in capsys.readouterr().err
    assert not (tmp_path / "v-fold2").exists()
    # ...and a step that fails is named with its log (a real run of fold 2's first step).
    with pytest.raises(RuntimeError, match=r"fold 2: `.*train.multitask` exited with"):
        cv.run_folds("v", 2, "default", ["model.multitask.architecture=resnet"], tmp_path)
    assert "use one of dscnn, bcresnet" in (tmp_path / "v-fold2" / "cv.log").read_text()
    assert cv.main(["run", "v", "--folds", "1"]) == 2
    assert "at least 2 folds" in capsys.readouterr().err


def test_wilson_interval_brackets_the_rate_and_narrows_with_more_recordings():
    lo, hi = cv.wilson_interval(62, 247)
    assert lo < 62 / 247 < hi and 0.05 < hi - lo < 0.13
    lo74, hi74 = cv.wilson_interval(19, 74)
    assert hi74 - lo74 > hi - lo
    assert cv.wilson_interval(0, 10)[0] == 0.0 and cv.wilson_interval(10, 10)[1] == 1.0
    assert cv.wilson_interval(0, 0) == (0.0, 1.0)


def _fold(rows: dict) -> dict:
    """``{threshold: (misses, false_alarms)}`` at one smoothing, 10 positives, 1 h."""
    return {300.0: {t: cv.FoldCounts(m, 10, fa, 1.0) for t, (m, fa) in rows.items()}}


def test_out_of_fold_choice_is_made_on_the_other_folds_and_judged_on_its_own():
    # Fold 1 alone would pick 0.5 for "no false alarm" (0 misses, 0 FA); the other two folds
    # raise false alarms at 0.5, so fold 1 gets 0.9 chosen for it, and pays its 6 misses.
    folds = [_fold({0.5: (0, 0), 0.9: (6, 0)}),
             _fold({0.5: (1, 2), 0.9: (4, 0)}),
             _fold({0.5: (2, 1), 0.9: (5, 0)})]
    got = cv.out_of_fold(folds, None)
    # Fold 1: chosen on folds 2+3 -> 0.9 (6 misses). Fold 2: folds 1+3 -> 0.9 (fold 3's
    # false alarm rules 0.5 out; 4 misses). Fold 3: folds 1+2 -> 0.9 (5 misses).
    assert got["choices"] == [[0.9, 300.0]] * 3
    assert got["miss_rate"] == pytest.approx(15 / 30) and got["false_alarms"] == 0
    lo, hi = got["miss_ci95"]
    assert lo < 0.5 < hi
    # Within 2 FA/h the other folds allow 0.5 everywhere: its out-of-fold false alarms count.
    loose = cv.out_of_fold(folds, 2.0)
    assert loose["choices"] == [[0.5, 300.0]] * 3
    assert loose["false_alarms"] == 3 and loose["per_hour"] == pytest.approx(1.0)
    assert loose["miss_rate"] == pytest.approx(3 / 30)
    # In sample, the pooled best within no false alarm is 0.9 too, but a limit no other fold
    # reaches gives no choice at all, and one fold is not a cross-validation.
    strict = [_fold({0.9: (1, 1)}), _fold({0.9: (1, 0)})]
    assert cv.out_of_fold(strict, None) is None
    with pytest.raises(ValueError, match="at least 2 folds"):
        cv.out_of_fold(folds[:1], None)
    s = cv.summarise({"counts": folds[0], "per_fold": folds, "folds": [{}] * 3, "overlap": 0,
                      "profile_threshold": 0.9, "profile_smoothing_ms": 300.0}, limits=(2.0,))
    assert s["out_of_fold"]["2"]["choices"] == [[0.5, 300.0]] * 3
    assert "chosen for <= 2 FA/h" in cv.markdown({"v": s}, limits=(2.0,))
