"""evaluation.voice_realism: each engine's synthetic takes judged by an exported model.

The model is the hand-weighted tone model (`export.standin`), so what it hears in speech is not
the point here: the counts, the seeding, the report and the errors are. Real espeak-ng and flite
render the takes; an engine not on this machine is skipped with the reason.
"""
from __future__ import annotations

import json

import pytest

from evaluation import voice_realism
from train.synth.speech import VOICES
from train.synth.voices import find_engines

WORDS = ["computer", "yes", "stop"]


@pytest.fixture(scope="module")
def pools():
    found = find_engines(("espeak-ng", "flite"), tuple(VOICES))
    if not found.voices:
        pytest.skip(f"no synthesiser here: {found.missing}")
    return found.voices


def test_counts_add_up_and_a_rerun_draws_the_same_takes(tone_model, pools):
    a = voice_realism.judge_engines(tone_model, pools, takes=2, seed=3, words=WORDS)
    b = voice_realism.judge_engines(tone_model, pools, takes=2, seed=3, words=WORDS)
    assert set(a["engines"]) == set(pools)
    for engine, r in a["engines"].items():
        assert r["takes"] == 2 * len(WORDS)
        assert sum(round(v * 2) for v in r["per_word"].values()) == r["correct"]
        assert sum(r["heard_as"].values()) == r["takes"] - r["correct"]
        assert all(not k.startswith(f"{w} -> {w}") for w in WORDS for k in r["heard_as"])
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
        for key in ("correct", "per_word", "heard_as"):
            assert r[key] == b["engines"][engine][key], "same seed, same takes, same verdicts"


def test_the_table_ranks_engines_and_the_cli_writes_both_files(tone_model, pools, tmp_path,
                                                               capsys):
    engine = sorted(pools)[0]
    stem = tmp_path / "realism"
    rc = voice_realism.main(["--model", str(tone_model), "--engines", engine, "--takes", "1",
                             "--words", "yes", "no", "--quiet", "--out", str(stem)])
    assert rc == 0
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["words"] == ["yes", "no"] and report["engines"][engine]["takes"] == 2
    table = stem.with_suffix(".md").read_text()
    assert f"| {engine} |" in table and table in capsys.readouterr().out


def test_bad_words_and_a_missing_model_are_named(tone_model, pools, tmp_path, capsys):
    with pytest.raises(ValueError, match="not labels"):
        voice_realism.judge_engines(tone_model, pools, takes=1, words=["banana"])
    with pytest.raises(ValueError, match="takes must be"):
        voice_realism.judge_engines(tone_model, pools, takes=0)
    rc = voice_realism.main(["--model", str(tmp_path / "nope.tflite"), "--engines",
                             sorted(pools)[0], "--quiet"])
    assert rc == 2 and "manifest" in capsys.readouterr().err
