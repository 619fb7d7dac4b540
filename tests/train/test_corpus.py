"""build_corpus / split_corpus / the CLI on tiny profiles."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from train import corpus as corpus_mod
from train.corpus import build_corpus, corpus_cache_dir, speech_engines, split_corpus
from train.synth import SpeechSynthError, backend_name


@pytest.fixture(autouse=True)
def _need_espeak():
    try:
        backend_name()
    except SpeechSynthError as exc:
        pytest.skip(f"synthetic corpus needs espeak-ng: {exc}")


def _arrays(c):
    return ([x.audio for x in c.keywords] + [x.audio for x in c.scenes]
            + [x.audio for x in c.percussion] + [m["mixture"] for m in c.separation]
            + [m["sources"] for m in c.separation] + list(c.noise))


def _same(a, b) -> bool:
    xa, xb = _arrays(a), _arrays(b)
    return len(xa) == len(xb) and all(np.array_equal(x, y) for x, y in zip(xa, xb))


def test_counts_shapes_and_labels_follow_the_profile(tiny_cfg):
    cfg = tiny_cfg()
    c = build_corpus(cfg, progress=False)
    counts = c.counts()
    n_confusables = len(cfg["data.synthetic.wake_word_confusables"])
    expected_kw = {"_silence_": 3, "_unknown_": len(cfg["labels.unknown_words"]) + n_confusables}
    expected_kw.update({w: 2 for w in [cfg["labels.wake_word"], *cfg["labels.commands"]]})
    assert counts["keywords"] == dict(sorted(expected_kw.items()))
    assert counts["scenes"] == {s: 3 for s in sorted(cfg["labels.scenes"])}
    assert counts["percussion"] == {p: 3 for p in sorted(cfg["labels.percussion"])}
    assert len(c.separation) == 4 and len(c.noise) == 2 and c.source == "synthetic"
    assert all(x.audio.shape == (16000,) and x.audio.dtype == np.float32 for x in c.keywords)
    assert all(x.sample_rate == 16000 and len(x.audio) >= 16000 for x in c.scenes)
    assert {x.label for x in c.keywords} <= set(cfg.keyword_labels)
    speech = [x for x in c.keywords if x.label != "_silence_"]
    # The group is the speaker: the voice and its warp bucket (train.synth.speaker_of).
    assert all(x.group.startswith(x.meta["voice"] + "~w") for x in speech)
    engines = {x.meta["voice"].split(":")[0] if ":" in x.meta["voice"] else "espeak-ng"
               for x in speech}
    assert len(engines) >= 2 or len(speech_engines(cfg).voices) == 1, \
        "takes are drawn from every engine found"
    assert {x.meta["word"] for x in c.keywords if x.label == "_unknown_"} >= {"commuter", "bird"}
    n = int(cfg["data.synthetic.separation_clip_s"] * cfg["frontend.separation.sample_rate"])
    for m in c.separation:
        assert m["mixture"].shape == (n,) and m["sources"].shape == (2, n)
        np.testing.assert_allclose(m["sources"].sum(0), m["mixture"], atol=1e-6)
        assert rms_db(m["sources"][0]) > -60 and rms_db(m["sources"][1]) > -60
    onsets = [x.meta["onset_s"] for x in c.percussion]
    assert all((o is None) == (x.label == "silent") for o, x in zip(onsets, c.percussion))


def rms_db(x):
    return 20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12)


def test_same_seed_same_corpus_other_seed_other_corpus_and_cache_hit(tiny_cfg, tmp_path):
    a = build_corpus(tiny_cfg(build_dir=tmp_path / "a"), progress=False)
    b = build_corpus(tiny_cfg(build_dir=tmp_path / "b"), progress=False)
    assert _same(a, b)
    other = build_corpus(tiny_cfg("project.seed=99", build_dir=tmp_path / "c"), progress=False)
    assert not _same(a, other)
    assert all(not np.array_equal(x.audio, y.audio) for x, y in zip(a.scenes, other.scenes))

    cfg = tiny_cfg(build_dir=tmp_path / "a")
    assert (corpus_cache_dir(cfg) / "corpus.npz").is_file()
    t0 = time.perf_counter()
    cached = build_corpus(cfg, progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert _same(a, cached)
    assert [(x.label, x.group, x.meta) for x in cached.keywords] == \
        [(x.label, x.group, x.meta) for x in a.keywords]
    assert [m["labels"] for m in cached.separation] == [m["labels"] for m in a.separation]


def test_cache_key_follows_the_settings(tiny_cfg):
    assert corpus_cache_dir(tiny_cfg()) != corpus_cache_dir(
        tiny_cfg("data.synthetic.keyword_takes_per_word=3"))
    assert corpus_cache_dir(tiny_cfg()) != corpus_cache_dir(tiny_cfg("frontend.keyword.n_mels=32"))


def test_split_is_group_disjoint_and_complete(tiny_cfg):
    cfg = tiny_cfg("data.synthetic.keyword_takes_per_word=6", "data.synthetic.silence_clips=10")
    c = build_corpus(cfg, progress=False)
    parts = split_corpus(c, cfg)
    assert set(parts) == {"train", "validation", "test"}
    for task in ("keywords", "scenes", "percussion"):
        groups = [{x.group for x in getattr(parts[p], task)} for p in parts]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert sum(len(getattr(parts[p], task)) for p in parts) == len(getattr(c, task))
    assert sum(len(p.separation) for p in parts.values()) == len(c.separation)
    assert len(parts["train"].keywords) > len(parts["test"].keywords) > 0
    assert all(len(p.noise) == len(c.noise) for p in parts.values())


def test_folds_make_the_keyword_test_part_one_fold_and_leave_the_rest_alone(tiny_cfg):
    base = ("data.synthetic.keyword_takes_per_word=6", "data.synthetic.silence_clips=10")
    cfg = tiny_cfg(*base)
    c = build_corpus(cfg, progress=False)
    plain = split_corpus(c, cfg)
    tested = []
    for k in (1, 2):
        parts = split_corpus(c, tiny_cfg(*base, "split.folds=2", f"split.test_fold={k}"))
        assert sum(len(parts[p].keywords) for p in parts) == len(c.keywords)
        tested += [x.group for x in parts["test"].keywords]
        # Scenes, drums and mixtures keep the profile's split.
        assert [x.group for x in parts["test"].scenes] == [x.group for x in plain["test"].scenes]
    assert sorted(set(tested)) == sorted({x.group for x in c.keywords})
    with pytest.raises(ValueError, match="split.test_fold"):
        split_corpus(c, tiny_cfg(*base, "split.folds=2"))


def test_unknown_source_is_a_clear_error(tiny_cfg):
    with pytest.raises(ValueError, match="data.source"):
        build_corpus(tiny_cfg("data.source=kaggle"), progress=False)


def test_cli_prints_counts_and_saves_pngs(tiny_overrides, tmp_path, capsys):
    code = corpus_mod.main(["--set", f"project.build_dir={tmp_path}", "--quiet",
                            *[arg for o in tiny_overrides for arg in ("--set", o)]])
    out = capsys.readouterr().out
    assert code == 0 and "computer 2" in out and "siren 3" in out and "ready in" in out
    for task in ("keywords", "scenes", "percussion"):
        assert (tmp_path / "reports" / f"corpus-synthetic-{task}.png").stat().st_size > 5000


def test_cli_help_explains_itself(capsys):
    with pytest.raises(SystemExit):
        corpus_mod.main(["--help"])
    out = capsys.readouterr().out
    assert "--profile" in out and "--set" in out and "spectrogram" in out


def test_real_corpus_on_the_shared_recordings(dataset_dir, tiny_cfg):
    for name in ("speech_commands_v2_test", "wake_words", "esc50", "beatbox"):
        dataset_dir(name)
    cfg = tiny_cfg("data.source=real", "labels.scenes=['animals','natural','human','domestic','urban']",
                   "data.real.synthetic_wake_word_takes=2",
                   "data.real.synthetic_unknown_takes_per_phrase=1",
                   "data.real.synthetic_command_takes=1",
                   "data.real.synthetic_running_speech_clips=3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = build_corpus(cfg, progress=False)
    assert c.source == "real"
    counts = c.counts()["keywords"]
    assert counts["computer"] == 247 + 2
    # one synthetic take of each command beside the recordings, flagged as synthetic
    synthetic = [x for x in c.keywords if x.meta.get("synthetic")]
    assert sorted(x.label for x in synthetic if x.label in cfg["labels.commands"]) == \
        sorted(cfg["labels.commands"])
    assert counts["yes"] == 282 + 1
    # alexa (190 decodable) and snowboy (401) become same-channel _unknown_ negatives.
    n_synth_unknown = len(cfg["labels.unknown_words"]) + len(cfg["data.synthetic.wake_word_confusables"])
    # + 3 windows of synthetic running speech
    assert counts["_unknown_"] == 292 + 190 + 401 + n_synth_unknown + 3
    running = [x for x in c.keywords if x.meta.get("word") == "(running speech)"]
    assert len(running) == 3 and all(x.meta["synthetic"] and x.label == "_unknown_" for x in running)
    assert all(len(x.audio) == 16000 for x in c.keywords)
    assert sum("alexa/" in str(w.message) for w in caught) == 4
    assert set(c.counts()["scenes"]) == {"animals", "natural", "human", "domestic", "urban"}
    assert len(c.percussion) == 30
    assert all(n.ndim == 1 and n.dtype == np.float32 for n in c.noise)  # [] without noise folders
    assert len(c.separation) == 4
    parts = split_corpus(c, cfg)
    assert all(parts[p].percussion for p in parts)  # too few places: split by clip instead
    kw_groups = [{x.group for x in parts[p].keywords} for p in parts]
    assert not (kw_groups[0] & kw_groups[2])


def test_library_backend_builds_the_same_corpus_twice(tiny_cfg, tmp_path):
    from train.synth.speech import backend_name as which
    try:
        which("library")
    except SpeechSynthError:
        pytest.skip("espeakng-loader not installed")
    overrides = ["data.synthetic.speech_backend=library", "data.synthetic.scene_clips_per_class=1",
                 "data.synthetic.drum_hits_per_class=1"]
    a = build_corpus(tiny_cfg(*overrides, build_dir=tmp_path / "a"), progress=False)
    b = build_corpus(tiny_cfg(*overrides, build_dir=tmp_path / "b"), progress=False)
    assert _same(a, b)
    speech = [x for x in a.keywords if x.label != "_silence_"]
    assert all(rms_db(x.audio) > -45 for x in speech)


def test_cli_reports_a_bad_setting_without_a_traceback(capsys):
    assert corpus_mod.main(["--set", "data.source=kaggle", "--no-plots"]) == 2
    assert "data.source must be" in capsys.readouterr().err


def test_a_confusable_that_is_now_the_wake_word_is_dropped(tiny_cfg):
    cfg = tiny_cfg("labels.wake_word=compute", "data.synthetic.scene_clips_per_class=1",
                   "data.synthetic.drum_hits_per_class=1")
    with pytest.warns(UserWarning, match="'compute' is a keyword"):
        c = build_corpus(cfg, progress=False)
    assert {x.meta["word"] for x in c.keywords if x.label == "compute"} == {"compute"}
    assert "compute" not in {x.meta.get("word") for x in c.keywords if x.label == "_unknown_"}


def test_running_speech_windows_are_unknown_keyword_free_and_seeded(tiny_cfg, tmp_path):
    base = tiny_cfg(build_dir=tmp_path / "a")
    cfg = tiny_cfg("data.synthetic.running_speech_clips=4", build_dir=tmp_path / "b")
    assert corpus_cache_dir(cfg).name != corpus_cache_dir(base).name
    c = build_corpus(cfg, progress=False)
    running = [x for x in c.keywords if x.meta.get("word") == "(running speech)"]
    assert len(running) == 4
    assert c.counts()["keywords"]["_unknown_"] == build_corpus(base, progress=False) \
        .counts()["keywords"]["_unknown_"] + 4
    keywords = {w for w in cfg.keyword_labels if not w.startswith("_")}
    for x in running:
        assert x.label == "_unknown_" and x.audio.shape == (16000,)
        assert not set(x.meta["text"].split()) & keywords
        assert x.group.startswith(x.meta["voice"] + "~w")   # split by speaker like the words
        # A window of a sentence, not a word in silence: sound in both halves (a short take
        # placed at random is the exception, so look at the loudest tenth of each half).
        halves = np.abs(x.audio).reshape(2, -1)
        assert (np.sort(halves, axis=1)[:, -800:].mean(axis=1) > 1e-3).all()
    again = build_corpus(tiny_cfg("data.synthetic.running_speech_clips=4",
                                  build_dir=tmp_path / "c"), progress=False)
    assert [x.meta["text"] for x in again.keywords if x.meta.get("word") == "(running speech)"] \
        == [x.meta["text"] for x in running]
    with pytest.raises(Exception, match="running_speech_clips"):
        tiny_cfg("data.synthetic.running_speech_clips=-1")
