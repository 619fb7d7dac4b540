"""Loaders for the real datasets in their standard layouts, each returning a list of `Clip`.

Every loader decodes with `train.audio_io.load_audio`, so clips are float32 mono at the asked
rate whatever the files were. A file that cannot be decoded is named in a warning and skipped;
the rest of the dataset still loads (four files of ``wake_words/alexa`` are such files).
Each clip carries a ``group``: the unit that splits must keep in one part (a speaker, a source
recording), because clips of one speaker in both train and test make scores look better than
they are.
"""
from __future__ import annotations

import csv
import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .audio_io import AudioDecodeError, load_audio
from .waveforms import fit_length

__all__ = [
    "Clip", "AUDIO_EXTENSIONS", "decode_or_skip", "ESC50_MAJOR_GROUPS", "class_counts", "crop_to_loudest",
    "load_speech_commands", "load_background_noise", "background_noise_files", "load_wake_words",
    "load_urbansound8k",
    "load_esc50", "load_vocal_percussion", "PERCUSSION_CLASSES",
]

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aif", ".aiff")
# ESC-50's targets come in blocks of ten, one block per major category (Piczak 2015).
ESC50_MAJOR_GROUPS = ("animals", "natural", "human", "domestic", "urban")
PERCUSSION_CLASSES = ("bass", "snare", "k-snare", "hi-hat", "silent")


@dataclass
class Clip:
    """One labelled piece of audio.

    Attributes
    ----------
    audio : np.ndarray
        float32 mono at ``sample_rate``.
    sample_rate : int
        Hz.
    label : str
        The class.
    group : str
        What splits keep disjoint: speaker, source recording, synthetic voice.
    path : str or None
        The file it came from (None for synthetic clips).
    fold : int or None
        The dataset's own fold, when it has one (ESC-50, UrbanSound8K).
    meta : dict
        Anything else, e.g. ``{"word": "bird"}`` for a Speech Commands ``_unknown_`` clip.
    """

    audio: np.ndarray
    sample_rate: int
    label: str
    group: str
    path: str | None = None
    fold: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def class_counts(clips: Iterable[Clip]) -> dict[str, int]:
    """Clips per label, sorted by label."""
    return dict(sorted(Counter(c.label for c in clips).items()))


def crop_to_loudest(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """The ``n_samples`` window with the most energy (zero-padded when the clip is shorter).

    Wake-word recordings are 1.4-4 s with the word somewhere inside; the keyword model sees
    1 s, so keep the second that holds the word rather than the first second of room noise.
    """
    x = np.asarray(audio, dtype=np.float32)
    if len(x) <= n_samples:
        return fit_length(x, n_samples, align="centre")
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    window = energy[n_samples:] - energy[:-n_samples]
    start = int(np.argmax(window))
    return x[start:start + n_samples].copy()


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _require_dir(root, what: str, hint: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {root} does not exist; {hint}")
    return root


def decode_or_skip(path: Path, sample_rate: int) -> np.ndarray | None:
    """Decode or warn-and-skip: one bad file must not cost the whole dataset (the warning
    names the file, the reason and the fix; None is returned)."""
    try:
        return load_audio(path, sample_rate)
    except AudioDecodeError as exc:
        warnings.warn(f"{exc} (skipped; the rest of the dataset still loads)", stacklevel=3)
        return None


def _log_counts(name: str, clips: list[Clip]) -> None:
    counts = class_counts(clips)
    log.info("%s: %d clips, per class %s", name, len(clips), counts)


# --------------------------------------------------------------------------- Speech Commands
def _speaker_of(stem: str) -> str:
    """Speech Commands names files ``<speaker>_nohash_<n>``; the hash part is the speaker."""
    return stem.split("_nohash_")[0] if "_nohash_" in stem else stem


def load_speech_commands(root, sample_rate: int = 16000, commands: Sequence[str] | None = None,
                         unknown_label: str = "_unknown_",
                         clip_s: float | None = 1.0) -> list[Clip]:
    """Load a Speech Commands tree: ``<label>/<speaker>_nohash_<n>.wav|flac``.

    Parameters
    ----------
    root : str or Path
        The dataset folder (v0.02 full, or the 12-class test set with ``_unknown_`` and
        ``_silence_`` folders).
    sample_rate : int
        Hz.
    commands : sequence of str, optional
        Labels to keep as themselves; every other word folder becomes ``unknown_label`` with the
        word in ``meta["word"]``. None keeps every folder as its own label.
    unknown_label : str
        Label for words that are not commands.
    clip_s : float or None
        Pad or trim every clip to this length (None keeps the file's length).

    Returns
    -------
    list of Clip
        ``group`` is the speaker id; ``_silence_`` clips have no speaker and each is its own
        group. ``meta["relpath"]`` is ``<folder>/<file>`` as in ``validation_list.txt``.
    """
    root = _require_dir(root, "Speech Commands", "set data.real.speech_commands to the folder "
                        "that holds the label folders (yes/, no/, ...)")
    keep = None if commands is None else set(commands)
    n_samples = None if clip_s is None else int(round(clip_s * sample_rate))
    clips: list[Clip] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if name == "_background_noise_":
            continue  # long noise recordings, not 1 s clips: see load_background_noise
        for path in _audio_files(folder):
            audio = decode_or_skip(path, sample_rate)
            if audio is None:
                continue
            if n_samples is not None:
                audio = fit_length(audio, n_samples, align="start")
            stem, meta = path.stem, {"relpath": f"{name}/{path.name}"}
            if name == "_silence_":
                label, group = "_silence_", f"_silence_/{stem}"
            elif name == unknown_label or name == "_unknown_":
                # The 12-class test set stores unknown words as <word>_<speaker>_nohash_<n>.
                word, _, speaker = _speaker_of(stem).rpartition("_")
                label, group = unknown_label, speaker
                meta["word"] = word
            elif keep is None or name in keep:
                label, group = name, _speaker_of(stem)
            else:
                label, group = unknown_label, _speaker_of(stem)
                meta["word"] = name
            clips.append(Clip(audio, sample_rate, label, group, str(path), meta=meta))
    if not clips:
        raise FileNotFoundError(f"no audio files under {root}; expected <label>/<file>.wav|flac "
                                f"as in Speech Commands")
    _log_counts(f"speech commands {root}", clips)
    return clips


# --------------------------------------------------------------------------- background noise
def background_noise_files(paths: Sequence) -> list[Path]:
    """The audio files `load_background_noise` reads from ``paths``: each a folder of audio
    files or a Speech Commands root (its ``_background_noise_`` folder); None and missing
    folders give none (logged)."""
    files: list[Path] = []
    for path in paths:
        if path is None:
            continue
        folder = Path(path)
        if (folder / "_background_noise_").is_dir():
            folder = folder / "_background_noise_"
        if not folder.is_dir():
            log.info("no background-noise folder at %s; skipping it", folder)
            continue
        files += _audio_files(folder)
    return files


def load_background_noise(paths: Sequence, sample_rate: int = 16000) -> list[np.ndarray]:
    """Long noise recordings for augmentation.

    Each path is either a folder of audio files (``../shared/data/background_noise``) or a
    Speech Commands root whose ``_background_noise_`` folder is used. Missing folders give
    nothing (logged), because noise is optional: augmentation then uses synthetic noise.
    """
    out: list[np.ndarray] = []
    for file in background_noise_files(paths):
        audio = decode_or_skip(file, sample_rate)
        if audio is not None and len(audio):
            out.append(audio)
    log.info("background noise: %d recordings, %.1f s", len(out),
             sum(len(a) for a in out) / sample_rate)
    return out


# --------------------------------------------------------------------------- wake words
def load_wake_words(root, sample_rate: int = 16000, phrases: Sequence[str] | None = None,
                    clip_s: float | None = None) -> list[Clip]:
    """Load crowd-sourced wake-word recordings: ``<phrase>/<id>.wav|flac``.

    Parameters
    ----------
    root : str or Path
        Folder with one sub-folder per phrase.
    sample_rate : int
        Hz.
    phrases : sequence of str, optional
        Phrase folders to load (None: all).
    clip_s : float or None
        When given, keep the loudest ``clip_s`` window of each recording (`crop_to_loudest`).

    Returns
    -------
    list of Clip
        ``label`` is the phrase; ``group`` is ``<phrase>/<id>``: each id is one speaker's one
        recording, and nothing links ids across phrases.
    """
    root = _require_dir(root, "wake-word", "set data.real.wake_words to the folder that holds "
                        "one folder per phrase (computer/, alexa/, ...)")
    wanted = None if phrases is None else set(phrases)
    n_samples = None if clip_s is None else int(round(clip_s * sample_rate))
    clips: list[Clip] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if wanted is not None and folder.name not in wanted:
            continue
        for path in _audio_files(folder):
            audio = decode_or_skip(path, sample_rate)
            if audio is None:
                continue
            if n_samples is not None:
                audio = crop_to_loudest(audio, n_samples)
            clips.append(Clip(audio, sample_rate, folder.name, f"{folder.name}/{path.stem}",
                              str(path), meta={"phrase": folder.name}))
    if wanted:
        missing = wanted - {c.label for c in clips}
        if missing:
            warnings.warn(f"no recordings for phrase(s) {sorted(missing)} under {root}",
                          stacklevel=2)
    _log_counts(f"wake words {root}", clips)
    return clips


# --------------------------------------------------------------------------- UrbanSound8K
def load_urbansound8k(root, sample_rate: int = 16000) -> list[Clip]:
    """Load UrbanSound8K: ``audio/fold<k>/*.wav`` (full) or ``audio/*.wav`` (a sample).

    ``metadata/UrbanSound8K.csv`` gives each slice's class and fold; ``group`` is the freesound
    id (``fsID``): slices of one recording are near-duplicates and must not straddle splits.
    """
    root = _require_dir(root, "UrbanSound8K", "set data.real.urbansound8k to the folder with "
                        "audio/ and metadata/")
    meta_path = root / "metadata" / "UrbanSound8K.csv"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing; UrbanSound8K needs its metadata csv "
                                f"for classes and folds")
    with open(meta_path, newline="") as fh:
        rows = {r["slice_file_name"]: r for r in csv.DictReader(fh)}
    audio_dir = root / "audio"
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    clips: list[Clip] = []
    for path in files:
        row = rows.get(path.name) or rows.get(path.stem + ".wav")
        if row is None:
            warnings.warn(f"skipping {path}: not in {meta_path}, so its class is unknown",
                          stacklevel=2)
            continue
        audio = decode_or_skip(path, sample_rate)
        if audio is None:
            continue
        clips.append(Clip(audio, sample_rate, row["class_name"] if "class_name" in row
                          else row["class"], row["fsID"], str(path), fold=int(row["fold"]),
                          meta={"salience": int(row["salience"]), "class_id": int(row["classID"])}))
    _log_counts(f"UrbanSound8K {root}", clips)
    return clips


# --------------------------------------------------------------------------- ESC-50
def load_esc50(root, sample_rate: int = 16000, major_groups: bool = False) -> list[Clip]:
    """Load ESC-50: ``audio/<fold>-<src>-<take>-<target>.wav|flac`` and ``meta/esc50.csv``.

    Parameters
    ----------
    root : str or Path
        The dataset folder.
    sample_rate : int
        Hz.
    major_groups : bool
        Label with ESC-50's five major categories (targets 0-9 animals, 10-19 natural
        soundscapes and water, 20-29 human non-speech, 30-39 interior/domestic,
        40-49 exterior/urban) instead of the 50 categories.

    Returns
    -------
    list of Clip
        ``group`` is ``src_file`` (takes of one source recording stay together), ``fold`` the
        dataset's fold, ``meta["category"]`` the fine category.
    """
    root = _require_dir(root, "ESC-50", "set data.real.esc50 to the folder with audio/ and meta/")
    meta_path = root / "meta" / "esc50.csv"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing; ESC-50 needs meta/esc50.csv")
    # Match on the stem: the csv names .wav files, a re-encoded copy may hold .flac.
    on_disk = {p.stem: p for p in (root / "audio").iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
    clips: list[Clip] = []
    absent = 0
    with open(meta_path, newline="") as fh:
        for row in csv.DictReader(fh):
            path = on_disk.get(Path(row["filename"]).stem)
            if path is None:
                absent += 1
                continue
            audio = decode_or_skip(path, sample_rate)
            if audio is None:
                continue
            target = int(row["target"])
            label = ESC50_MAJOR_GROUPS[target // 10] if major_groups else row["category"]
            clips.append(Clip(audio, sample_rate, label, str(row["src_file"]), str(path),
                              fold=int(row["fold"]),
                              meta={"category": row["category"], "target": target}))
    if absent:
        log.info("ESC-50: %d csv rows have no audio file under %s (a partial copy)", absent, root)
    _log_counts(f"ESC-50 {root}", clips)
    return clips


# --------------------------------------------------------------------------- vocal percussion
_PERCUSSION_NAME = re.compile(
    r"^(?:(?P<place>.+)_)?(?P<cls>" + "|".join(map(re.escape, PERCUSSION_CLASSES)) + r")_(?P<n>\d+)$")


def load_vocal_percussion(root, sample_rate: int = 16000, trimmed: bool = False) -> list[Clip]:
    """Load vocal-percussion recordings: ``raw_wav/[<place>_]<class>_<nnn>.*``.

    Parameters
    ----------
    root : str or Path
        Folder with ``raw_wav/`` (with lead-in and tail) and/or ``cripped_wav/`` (trimmed).
    sample_rate : int
        Hz.
    trimmed : bool
        Read ``cripped_wav/`` (the sound only) instead of ``raw_wav/``.

    Returns
    -------
    list of Clip
        ``label`` one of bass, snare, k-snare, hi-hat, silent; ``group`` the recording place
        (``"default"`` when the name has none).
    """
    root = _require_dir(root, "vocal-percussion", "set data.real.vocal_percussion to the folder "
                        "with raw_wav/")
    folder = root / ("cripped_wav" if trimmed else "raw_wav")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; expected raw_wav/ and cripped_wav/ "
                                f"under {root}")
    clips: list[Clip] = []
    for path in _audio_files(folder):
        match = _PERCUSSION_NAME.match(path.stem)
        if match is None:
            warnings.warn(f"skipping {path}: name is not [<place>_]<class>_<nnn> with class in "
                          f"{PERCUSSION_CLASSES}", stacklevel=2)
            continue
        audio = decode_or_skip(path, sample_rate)
        if audio is None:
            continue
        place = match["place"] or "default"
        clips.append(Clip(audio, sample_rate, match["cls"], place, str(path),
                          meta={"place": place, "take": int(match["n"])}))
    _log_counts(f"vocal percussion {folder}", clips)
    return clips
