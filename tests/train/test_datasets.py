"""Dataset loaders and splits: the real recordings when present, generated trees always."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from train.datasets import (ESC50_MAJOR_GROUPS, Clip, class_counts, crop_to_loudest,
                            load_background_noise, load_esc50, load_speech_commands,
                            load_urbansound8k, load_vocal_percussion, load_wake_words)
from train.splits import (esc50_split, fold_split, group_folds, speech_commands_split,
                          split_by_group)

CORRUPT_ALEXA = ("126", "229", "272", "273")


# --------------------------------------------------------------------------- real recordings
def test_speech_commands_test_set_counts(dataset_dir):
    root = dataset_dir("speech_commands_v2_test")
    commands = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    clips = load_speech_commands(root, 16000, commands)
    counts = class_counts(clips)
    assert len(counts) == 12 and sum(counts.values()) == 3325
    assert counts["_silence_"] == 289 and counts["_unknown_"] == 292 and counts["yes"] == 282
    assert all(len(c.audio) == 16000 and c.audio.dtype == np.float32 for c in clips)
    unknown = [c for c in clips if c.label == "_unknown_"]
    assert {c.meta["word"] for c in unknown} >= {"backward", "bird"}
    # The speaker is the hash, without the word prefix of _unknown_ files.
    assert all("_" not in c.group for c in unknown)
    speakers = {c.group for c in clips if c.label not in ("_silence_",)}
    assert 150 <= len(speakers) <= 170  # README: 166 speakers


def test_wake_words_skip_the_four_corrupt_alexa_files_by_name(dataset_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = load_wake_words(dataset_dir("wake_words"), 16000)
    assert class_counts(clips) == {"alexa": 190, "computer": 247, "snowboy": 401}
    messages = [str(w.message) for w in caught]
    for stem in CORRUPT_ALEXA:
        assert sum(f"alexa/{stem}.flac" in m for m in messages) == 1, messages
    assert all("skipped" in m for m in messages if "alexa/" in m)
    assert len({c.group for c in clips}) == len(clips)


def test_wake_words_cropped_to_one_second_keep_the_loud_part(dataset_dir):
    clips = load_wake_words(dataset_dir("wake_words"), 16000, phrases=["computer"], clip_s=1.0)
    assert len(clips) == 247 and all(len(c.audio) == 16000 for c in clips)
    full = load_wake_words(dataset_dir("wake_words"), 16000, phrases=["computer"])
    kept = np.mean([np.sum(c.audio ** 2) / max(np.sum(f.audio ** 2), 1e-12)
                    for c, f in zip(clips, full)])
    assert kept > 0.7  # the word, not the room noise, is in the kept second


def test_esc50_fine_and_major_groups(dataset_dir):
    root = dataset_dir("esc50")
    fine = load_esc50(root, 16000)
    assert len(fine) == 285 and len(class_counts(fine)) == 49
    major = load_esc50(root, 16000, major_groups=True)
    assert set(class_counts(major)) == set(ESC50_MAJOR_GROUPS)
    by_target = {c.meta["target"]: c.label for c in major}
    assert by_target.get(0, "animals") == "animals" and by_target.get(49, "urban") == "urban"
    assert all(c.label == ESC50_MAJOR_GROUPS[c.meta["target"] // 10] for c in major)
    assert all(len(c.audio) == 80000 for c in major)
    # This part of ESC-50 holds folds 2-4 only (fold 5 is kept back for evaluation).
    train, val, test = esc50_split(major, test_folds=(4,), validation_folds=(3,))
    assert {c.fold for c in test} == {4} and {c.fold for c in val} == {3}
    assert {c.fold for c in train} == {2} and len(train) + len(val) + len(test) == 285
    assert not ({c.group for c in train} & {c.group for c in test})


def test_urbansound8k_sample(dataset_dir):
    clips = load_urbansound8k(dataset_dir("urbansound8k_sample"), 16000)
    assert len(class_counts(clips)) == 10 and len(clips) == 10
    assert all(c.fold is not None and c.group.isdigit() for c in clips)


def test_vocal_percussion_raw_and_trimmed(dataset_dir):
    root = dataset_dir("beatbox")
    raw = load_vocal_percussion(root, 16000)
    trimmed = load_vocal_percussion(root, 16000, trimmed=True)
    assert len(raw) == 30 and len(trimmed) == 30
    assert set(class_counts(raw)) == {"bass", "snare", "k-snare", "hi-hat", "silent"}
    assert {c.group for c in raw} == {"loft", "default"}
    assert np.mean([c.duration_s for c in trimmed]) < np.mean([c.duration_s for c in raw])


# --------------------------------------------------------------------------- generated trees
def _write(path, seconds=1.0, rate=16000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, 0.1 * rng.standard_normal(int(seconds * rate)), rate, subtype="PCM_16")


@pytest.fixture
def speech_commands_tree(tmp_path):
    """A full-layout Speech Commands (v0.02) tree: 12 speakers, lists, background noise."""
    root = tmp_path / "sc"
    words = ["yes", "no", "bird"]
    speakers = [f"{i:08x}" for i in range(12)]
    for w, word in enumerate(words):
        for s, speaker in enumerate(speakers):
            for n in range(2):
                # Odd lengths on purpose: loaders must pad/trim to 1 s.
                _write(root / word / f"{speaker}_nohash_{n}.wav", 0.9 + 0.05 * n, seed=w * 100 + s)
    _write(root / "_background_noise_" / "white.wav", 3.0)
    sf.write(root / "_background_noise_" / "pink.wav", np.zeros((16000, 2)), 16000)
    (root / "_background_noise_" / "README.md").write_text("not audio")
    (root / "validation_list.txt").write_text(
        "\n".join(f"{w}/{speakers[0]}_nohash_{n}.wav" for w in words for n in range(2)))
    (root / "testing_list.txt").write_text(
        "\n".join(f"{w}/{speakers[1]}_nohash_{n}.wav" for w in words for n in range(2)))
    return root


def test_generated_speech_commands_labels_and_noise(speech_commands_tree):
    clips = load_speech_commands(speech_commands_tree, 16000, commands=["yes", "no"])
    assert class_counts(clips) == {"_unknown_": 24, "no": 24, "yes": 24}
    assert all(c.meta["word"] == "bird" for c in clips if c.label == "_unknown_")
    assert all(len(c.audio) == 16000 for c in clips)
    noise = load_background_noise([speech_commands_tree, speech_commands_tree / "missing"])
    assert sorted(len(n) for n in noise) == [16000, 48000]
    assert load_background_noise([speech_commands_tree / "nowhere"]) == []
    # commands=None: every folder keeps its own label
    assert set(class_counts(load_speech_commands(speech_commands_tree))) == {"yes", "no", "bird"}


def test_speech_commands_split_honours_the_lists(speech_commands_tree):
    clips = load_speech_commands(speech_commands_tree, 16000, commands=["yes", "no"])
    train, val, test = speech_commands_split(clips, speech_commands_tree)
    assert {c.group for c in val} == {"00000000"} and len(val) == 6
    assert {c.group for c in test} == {"00000001"} and len(test) == 6
    assert len(train) == len(clips) - 12
    assert not ({c.group for c in train} & {"00000000", "00000001"})


def test_speech_commands_split_without_lists_is_speaker_disjoint(speech_commands_tree):
    (speech_commands_tree / "validation_list.txt").unlink()
    clips = load_speech_commands(speech_commands_tree, 16000, commands=["yes", "no"])
    parts = speech_commands_split(clips, speech_commands_tree, (0.5, 0.25, 0.25), seed=3)
    groups = [{c.group for c in p} for p in parts]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(p) for p in parts) == len(clips)
    assert [len(g) for g in groups] == [6, 3, 3]


def _fake_clips(n_groups, per_group=3):
    return [Clip(np.zeros(4, np.float32), 16000, "x", f"g{g}") for g in range(n_groups)
            for _ in range(per_group)]


def test_split_by_group_is_deterministic_disjoint_and_close_to_fractions():
    clips = _fake_clips(50)
    a = split_by_group(clips, (0.8, 0.1, 0.1), seed=1)
    b = split_by_group(list(clips), (0.8, 0.1, 0.1), seed=1)
    c = split_by_group(clips, (0.8, 0.1, 0.1), seed=2)
    assert [[x.group for x in p] for p in a] == [[x.group for x in p] for p in b]
    assert [[x.group for x in p] for p in a] != [[x.group for x in p] for p in c]
    assert [len(p) for p in a] == [120, 15, 15]
    groups = [{x.group for x in p} for p in a]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(clips, (0.8, 0.3, 0.1))
    with pytest.warns(UserWarning, match="some part is empty"):
        split_by_group(_fake_clips(2), (0.8, 0.1, 0.1))


def test_group_folds_test_every_group_once_and_spread_each_class():
    # 3 classes: 7, 5 and 2 source recordings of 1-3 clips each (an ESC-50 part in miniature).
    clips = [Clip(np.zeros(4, np.float32), 16000, label, f"{label}{g}")
             for label, n in (("dog", 7), ("rain", 5), ("cow", 2)) for g in range(n)
             for _ in range(1 + g % 3)]
    a = group_folds(clips, 5, seed=1)
    assert a == group_folds(list(reversed(clips)), 5, seed=1)      # order-free, seeded
    assert a != group_folds(clips, 5, seed=2)
    assert set(a) == {c.group for c in clips} and set(a.values()) <= {1, 2, 3, 4, 5}
    for label, n in (("dog", 7), ("rain", 5)):                      # >= 5 groups: every fold
        assert {a[f"{label}{g}"] for g in range(n)} == {1, 2, 3, 4, 5}
    assert len({a["cow0"], a["cow1"]}) == 2                          # 2 groups: two folds
    sizes = [sum(1 for c in clips if a[c.group] == k) for k in range(1, 6)]
    assert max(sizes) - min(sizes) <= 3 and sum(sizes) == len(clips)
    with pytest.raises(ValueError, match="at least 2 folds"):
        group_folds(clips, 1)


def test_fold_split_tests_every_group_once_over_the_folds():
    clips = [Clip(np.zeros(4, np.float32), 16000, label, f"{label}{g}")
             for label, n in (("computer", 12), ("yes", 9), ("_unknown_", 30)) for g in range(n)
             for _ in range(1 + g % 2)]
    tested: list[str] = []
    for k in (1, 2, 3):
        train, val, test = fold_split(clips, 3, k, (0.8, 0.1, 0.1), seed=4)
        groups = [{c.group for c in part} for part in (train, val, test)]
        assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
        assert len(train) + len(val) + len(test) == len(clips)
        assert len(train) > 4 * len(val) > 0                       # 0.8 : 0.1 of the rest
        assert {c.label for c in test} == {"computer", "yes", "_unknown_"}
        tested += sorted(groups[2])
    assert sorted(tested) == sorted({c.group for c in clips})      # each group tested once
    names = lambda parts: [[c.group for c in part] for part in parts]  # noqa: E731
    assert names(fold_split(clips, 3, 2, seed=4)) == names(fold_split(list(clips), 3, 2, seed=4))
    assert names(fold_split(clips, 3, 2, seed=4)) != names(fold_split(clips, 3, 2, seed=5))
    with pytest.raises(ValueError, match="split.test_fold between 1 and split.folds"):
        fold_split(clips, 3, 0)
    with pytest.raises(ValueError, match="split.test_fold"):
        fold_split(clips, 3, 4)
    with pytest.raises(ValueError, match="at least 2 folds"):
        fold_split(clips, 1, 1)


def test_corrupt_file_in_a_generated_tree_is_named_and_skipped(tmp_path):
    root = tmp_path / "ww"
    _write(root / "hey" / "1.wav", 1.5)
    (root / "hey" / "2.wav").write_bytes(b"RIFF garbage")
    (root / "hey" / "3.flac").write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        clips = load_wake_words(root)
    assert [c.group for c in clips] == ["hey/1"]
    text = " ".join(str(w.message) for w in caught)
    assert "2.wav" in text and "3.flac" in text


def test_vocal_percussion_names_in_a_generated_tree(tmp_path):
    for name in ["bass_001", "k-snare_002", "loft_k-snare_003", "my_room_hi-hat_004",
                 "snare_9", "loft_silent_001"]:
        _write(tmp_path / "raw_wav" / f"{name}.wav", 0.2)
    _write(tmp_path / "raw_wav" / "cowbell_001.wav", 0.2)
    with pytest.warns(UserWarning, match="cowbell_001"):
        clips = load_vocal_percussion(tmp_path)
    got = {(c.label, c.group) for c in clips}
    assert got == {("bass", "default"), ("k-snare", "default"), ("k-snare", "loft"),
                   ("hi-hat", "my_room"), ("snare", "default"), ("silent", "loft")}


def test_crop_to_loudest_finds_the_burst():
    x = np.zeros(48000, np.float32)
    x[30000:34000] = 1.0
    window = crop_to_loudest(x, 16000)
    assert len(window) == 16000 and window.sum() == 4000
    assert len(crop_to_loudest(np.ones(100, np.float32), 160)) == 160
