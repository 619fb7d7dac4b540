"""Train/validation/test splits that never put one group (speaker, source recording, synthetic
voice) in two parts.

A speaker in both train and test lets a model score by recognising the voice rather than the
word, so every split here is by group. Assignment is deterministic: groups are ordered by a
stable hash of ``seed`` and the group name (sha1, as Speech Commands' ``which_set``), then
taken in that order until each part holds its fraction of the clips.
"""
from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

__all__ = ["group_order_key", "split_by_group", "group_folds", "fold_split",
           "speech_commands_split", "esc50_split", "check_fractions"]


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(train, validation, test)`` fractions: three non-negative numbers summing to 1."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers (train, validation, "
                         f"test) that sum to 1, got {tuple(fractions)}; fix [split] in the profile")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def group_order_key(group: str, seed: int = 0) -> str:
    """Stable (process- and platform-independent) sort key of a group: sha1 of seed and name.

    Python's ``hash`` is salted per process, so it cannot be used for a split that must be the
    same tomorrow.
    """
    return hashlib.sha1(f"{seed}:{group}".encode("utf-8")).hexdigest()


def split_by_group(clips: Sequence, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> tuple[list, list, list]:
    """Split clips into train, validation and test with no group in two parts.

    Parameters
    ----------
    clips : sequence of Clip
        Anything with a ``group`` attribute.
    fractions : (float, float, float)
        Target share of clips in train, validation and test.
    seed : int
        Changes which groups land where; the same seed gives the same split.

    Returns
    -------
    (list, list, list)
        The three parts, each in the input order.

    Notes
    -----
    Groups are visited in `group_order_key` order and each goes to the first part still below
    its share of clips, so the parts come close to ``fractions`` even with few groups (a pure
    per-group hash threshold can leave a small part empty with 20 voices). With fewer groups
    than non-empty parts some part stays empty; a warning says so.
    """
    fractions = check_fractions(fractions)
    sizes = Counter(c.group for c in clips)
    total = sum(sizes.values())
    targets = [f * total for f in fractions]
    filled = [0, 0, 0]
    part_of: dict[str, int] = {}
    for group in sorted(sizes, key=lambda g: group_order_key(g, seed)):
        # The part furthest below its target (relative) takes the next group.
        gaps = [(targets[i] - filled[i]) / targets[i] if targets[i] > 0 else -1.0
                for i in range(3)]
        part = max(range(3), key=lambda i: (gaps[i], -i))
        part_of[group] = part
        filled[part] += sizes[group]
    wanted = sum(1 for f in fractions if f > 0)
    got = sum(1 for n in filled if n > 0)
    if total and got < wanted:
        warnings.warn(f"only {len(sizes)} group(s) for {wanted} split parts: some part is empty; "
                      f"split by a finer group or use more data", stacklevel=2)
    parts: tuple[list, list, list] = ([], [], [])
    for clip in clips:
        parts[part_of[clip.group]].append(clip)
    return parts


def group_folds(clips: Sequence, n_folds: int = 5, seed: int = 0) -> dict[str, int]:
    """Assign every group to one of ``n_folds`` folds (1..n), spreading each class over them.

    For cross-validation where a dataset's own folds are missing or degenerate (the ESC-50 part
    on this machine has nearly all clips in fold 4): every clip is tested exactly once, and no
    group (source recording) is in two folds.

    Parameters
    ----------
    clips : sequence of Clip
        Anything with ``group`` and ``label`` attributes. A group is taken to hold one class
        (its first clip's); ESC-50's ``src_file`` does.
    n_folds : int
        Number of folds, at least 2.
    seed : int
        Changes which groups land together; the same seed gives the same folds.

    Returns
    -------
    dict
        ``group -> fold`` (1-based, as ESC-50 numbers its folds).

    Notes
    -----
    Classes are visited in name order, their groups in `group_order_key` order, and each group
    goes to the fold holding the fewest clips of its class so far (ties: fewest clips overall,
    then the lowest fold). A class with at least ``n_folds`` groups is then in every fold.
    """
    if int(n_folds) < 2:
        raise ValueError(f"n_folds = {n_folds}: cross-validation needs at least 2 folds")
    n_folds = int(n_folds)
    sizes = Counter(c.group for c in clips)
    label_of: dict[str, str] = {}
    for c in clips:
        label_of.setdefault(c.group, c.label)
    total = [0] * n_folds
    fold_of: dict[str, int] = {}
    for label in sorted(set(label_of.values())):
        per_class = [0] * n_folds
        groups = sorted((g for g, lab in label_of.items() if lab == label),
                        key=lambda g: group_order_key(g, seed))
        for group in groups:
            fold = min(range(n_folds), key=lambda k: (per_class[k], total[k], k))
            fold_of[group] = fold + 1
            per_class[fold] += sizes[group]
            total[fold] += sizes[group]
    return fold_of


def fold_split(clips: Sequence, n_folds: int, test_fold: int,
               fractions: Sequence[float] = (0.8, 0.1, 0.1),
               seed: int = 0) -> tuple[list, list, list]:
    """Split with fold ``test_fold`` of `group_folds` as test and the rest into train and
    validation: one part of a cross-validation over groups.

    Run once per fold (1..``n_folds``), every group is tested exactly once, by a model that
    never heard it: the way to judge a lever on all of a small set (the 247 "computer"
    recordings) instead of the tenth that one split holds out.

    Parameters
    ----------
    clips : sequence of Clip
        Anything with ``group`` and ``label`` attributes.
    n_folds : int
        Number of folds, at least 2.
    test_fold : int
        The fold held out as test, 1..``n_folds``.
    fractions : (float, float, float)
        Only the ratio of train to validation is used: the groups outside the test fold are
        split in it (`split_by_group`); the test fraction is ``1 / n_folds`` by construction.
    seed : int
        Changes which groups land together (and the train/validation split of the rest).

    Returns
    -------
    (list, list, list)
        Train, validation and test, each in the input order.
    """
    if not 1 <= int(test_fold) <= int(n_folds):
        raise ValueError(f"test fold {test_fold} is not one of the {n_folds} folds (1..{n_folds}); "
                         f"set split.test_fold between 1 and split.folds")
    train_f, val_f, _ = check_fractions(fractions)
    if train_f + val_f <= 0:
        raise ValueError("split.train and split.validation are both 0: nothing to train on "
                         "outside the test fold; fix [split] in the profile")
    fold_of = group_folds(clips, n_folds, seed)
    test = [c for c in clips if fold_of[c.group] == int(test_fold)]
    rest = [c for c in clips if fold_of[c.group] != int(test_fold)]
    total = train_f + val_f
    train, validation, _ = split_by_group(rest, (train_f / total, val_f / total, 0.0), seed)
    return train, validation, test


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def speech_commands_split(clips: Sequence, root=None,
                          fractions: Sequence[float] = (0.8, 0.1, 0.1),
                          seed: int = 0) -> tuple[list, list, list]:
    """Split Speech Commands clips by the dataset's own lists when it has them.

    With ``validation_list.txt`` and ``testing_list.txt`` under ``root`` (full v0.02), a clip
    whose ``<label>/<file>`` is in a list goes to that part and every other clip to train, so
    scores compare with published ones. Without them (the 12-class test set), the split is
    `split_by_group` on the speaker.
    """
    root = None if root is None else Path(root)
    val_file = None if root is None else root / "validation_list.txt"
    test_file = None if root is None else root / "testing_list.txt"
    if root is None or not (val_file.is_file() and test_file.is_file()):
        return split_by_group(clips, fractions, seed)
    validation, testing = _read_list(val_file), _read_list(test_file)
    parts: tuple[list, list, list] = ([], [], [])
    for clip in clips:
        rel = clip.meta.get("relpath")
        if rel is None and clip.path is not None:
            rel = Path(clip.path).resolve().relative_to(root.resolve()).as_posix()
        # The lists name .wav files; a FLAC copy of the dataset keeps the same stems.
        keys = {rel, str(Path(rel).with_suffix(".wav"))} if rel else set()
        if keys & testing:
            parts[2].append(clip)
        elif keys & validation:
            parts[1].append(clip)
        else:
            parts[0].append(clip)
    return parts


def esc50_split(clips: Sequence, test_folds: Sequence[int] = (5,),
                validation_folds: Sequence[int] = (4,)) -> tuple[list, list, list]:
    """Split ESC-50 (or UrbanSound8K) clips by the dataset's folds.

    The folds already keep a source recording in one fold, so this is group-disjoint too.
    """
    overlap = set(test_folds) & set(validation_folds)
    if overlap:
        raise ValueError(f"folds {sorted(overlap)} are both test and validation folds; "
                         f"give disjoint test_folds and validation_folds")
    parts: tuple[list, list, list] = ([], [], [])
    for clip in clips:
        if clip.fold is None:
            raise ValueError(f"clip {clip.path or clip.label} has no fold; use split_by_group")
        part = 2 if clip.fold in test_folds else 1 if clip.fold in validation_folds else 0
        parts[part].append(clip)
    return parts
