"""The audio of a wake-word benchmark: which recordings, mixed how, into which streams.

After Picovoice's open wake-word benchmark:

* **positive streams**, one per SNR: every wake-word recording scaled to the same active speech
  level (``speech_dbfs``), laid over a continuous bed of environmental noise whose level is
  ``snr_db`` below it, with ``gap_s`` of noise alone between recordings;
* one **negative stream**: every negative recording (other words, the recording channel's other
  phrases, environmental sound, continuous speech and music) end to end at its own level, with
  a short silence between files.

Every engine hears the same int16 samples (written once as FLAC and cached), the way a
microphone would deliver them. Recordings that a compared model trained on are left out
(`trained_paths`); which files went in is listed in the stream's JSON and in the report.
Everything is deterministic from the seed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

from train.waveforms import active_level_db

from .wakeword_scoring import Window

__all__ = ["Recording", "Stream", "audio_files", "active_level_db", "mix_at_snr",
           "select_recordings", "build_positive_stream", "build_negative_stream",
           "trained_paths", "StreamSet", "build_streams", "load_int16", "cached_streams"]

log = logging.getLogger("evaluation.wakeword")

RATE = 16000


@dataclass(frozen=True)
class Recording:
    """One file of the benchmark: ``kind`` is ``positive`` or the negative's source
    (``speech_commands``, ``wake_phrase:<phrase>``, ``esc50``, ``long_audio``, a folder name)."""
    path: str
    kind: str


@dataclass
class Stream:
    """A benchmark stream: its FLAC file, its length, its positives' windows and the segments
    (``[start_s, end_s, kind, path]``) it was built from."""
    name: str
    path: str
    duration_s: float
    windows: list[Window]
    segments: list[list]
    snr_db: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["windows"] = [[w.start_s, w.end_s, w.after_s] for w in self.windows]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Stream":
        d = dict(d)
        d["windows"] = [Window(*w) for w in d["windows"]]
        return cls(**d)


def load_int16(path) -> np.ndarray:
    """A stream's samples as int16 (what Porcupine and openWakeWord take)."""
    x, rate = sf.read(str(path), dtype="int16")
    if rate != RATE:
        raise ValueError(f"{path} is at {rate} Hz, streams are {RATE} Hz; delete the stream cache")
    return x


# ------------------------------------------------------------------ levels and mixing
def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float,
               speech_dbfs: float | None = None) -> tuple[np.ndarray, float]:
    """Speech over noise at ``snr_db``: the speech's active level (`active_level_db`) is
    ``snr_db`` above the noise's RMS. With ``speech_dbfs`` the speech is first scaled to that
    active level. Returns ``(mixture, noise_gain)``; ``noise`` must be at least as long."""
    speech = np.asarray(speech, np.float64)
    if speech_dbfs is not None:
        speech = speech * 10 ** ((speech_dbfs - active_level_db(speech)) / 20)
    noise = np.asarray(noise[: len(speech)], np.float64)
    if len(noise) < len(speech):
        raise ValueError(f"noise ({len(noise)} samples) is shorter than the speech ({len(speech)})")
    gain = 10 ** ((active_level_db(speech) - snr_db - rms_db(noise)) / 20)
    return speech + gain * noise, float(gain)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------ which recordings
def audio_files(folder: Path) -> list[Path]:
    """Every audio file below ``folder``, any depth (a user's folders have any layout)."""
    from train.datasets import AUDIO_EXTENSIONS
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def select_recordings(wake_word: str, *, positives: Path | None, wake_words: Path | None,
                      speech_commands: Path | None, esc50: Path | None,
                      long_audio: Path | None, extra_negatives: Sequence[Path] = (),
                      exclude: Iterable[str] = ()) -> tuple[list[Recording], list[Recording]]:
    """The positive and negative recordings, with the files in ``exclude`` (resolved paths of
    what a compared model trained on) left out.

    ``positives`` defaults to ``<wake_words>/<wake_word>``; the other phrase folders of
    ``wake_words`` are negatives (the same recording channel: a model that learned the channel
    instead of the word fires on them). A missing folder is skipped with a warning.
    """
    excluded = {str(Path(p).resolve()) for p in exclude}
    pos_dir = positives or (wake_words / wake_word if wake_words else None)

    def take(folder: Path | None, kind: str, what: str) -> list[Recording]:
        if folder is None or not Path(folder).is_dir():
            warnings.warn(f"no {what} folder {folder}: the benchmark goes on without it",
                          stacklevel=3)
            return []
        files = [p for p in audio_files(Path(folder)) if str(p.resolve()) not in excluded]
        return [Recording(str(p), kind) for p in files]

    pos = take(pos_dir, "positive", f"wake-word ({wake_word})")
    neg: list[Recording] = []
    neg += take(speech_commands, "speech_commands", "Speech Commands")
    if wake_words is not None and Path(wake_words).is_dir():
        for phrase in sorted(p for p in Path(wake_words).iterdir() if p.is_dir()):
            if phrase.name != wake_word and (pos_dir is None or phrase.resolve() != Path(pos_dir).resolve()):
                neg += take(phrase, f"wake_phrase:{phrase.name}", f"wake-phrase {phrase.name}")
    neg += take(esc50, "esc50", "ESC-50")
    neg += take(long_audio, "long_audio", "continuous audio")
    for folder in extra_negatives:
        neg += take(Path(folder), Path(folder).name, "negative")
    return pos, neg


def trained_paths(cfg) -> set[str]:
    """Resolved paths of the recordings a profile's models trained on (the train part of its
    split, `train.corpus.split_corpus`); empty for a synthetic profile. Builds (or reads the
    cached) corpus of the profile, exactly as training did.

    Under cross-validation (``split.folds`` > 0) the validation part counts as trained on too,
    so that a fold's benchmark holds its test fold alone and pooling the folds
    (`evaluation.wakeword_cv`) judges every recording once."""
    if cfg["data.source"] != "real":
        return set()
    from train.corpus import build_corpus, split_corpus
    corpus = build_corpus(cfg, progress=False)
    parts = split_corpus(corpus, cfg)
    seen = ["train", "validation"] if cfg["split.folds"] else ["train"]
    clips = [c for name in seen
             for c in (*parts[name].keywords, *parts[name].scenes, *parts[name].percussion)]
    return {str(Path(c.path).resolve()) for c in clips if getattr(c, "path", None)}


def _read(rec: Recording) -> np.ndarray | None:
    from train.datasets import decode_or_skip
    return decode_or_skip(Path(rec.path), RATE)


# ------------------------------------------------------------------ building streams
def _noise_bed(noise: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of noise: the noise recordings end to end from random offsets, each piece
    normalised to the same RMS (so the SNR holds whichever recording plays)."""
    if not noise:
        raise ValueError("no noise recordings: set bench.wakeword.noise to a folder of noise")
    shortest = RATE // 10  # a piece shorter than 0.1 s has no RMS worth normalising to
    if all(len(rec) < shortest for rec in noise):
        raise ValueError(f"every noise recording is shorter than {shortest / RATE:g} s: set "
                         f"bench.wakeword.noise to a folder of longer noise")
    out = np.empty(n, np.float64)
    pos = 0
    while pos < n:
        rec = noise[int(rng.integers(len(noise)))]
        start = int(rng.integers(max(1, len(rec) - RATE)))
        piece = np.asarray(rec[start:start + min(n - pos, 10 * RATE)], np.float64)
        # The bed's last piece may be as short as what is left to fill; only a piece cut short
        # by its recording is drawn again (it used to be whatever the remainder, which looped
        # for ever when less than 0.1 s was left).
        if len(piece) < min(shortest, n - pos):
            continue
        piece = piece / (np.sqrt(np.mean(piece ** 2)) + 1e-12)
        out[pos:pos + len(piece)] = piece
        pos += len(piece)
    return out


def build_positive_stream(speech: Sequence[tuple[Recording, np.ndarray]],
                          noise: Sequence[np.ndarray], snr_db: float, *, speech_dbfs: float,
                          gap_s: tuple[float, float], after_s: float,
                          rng: np.random.Generator) -> tuple[np.ndarray, list[Window], list[list]]:
    """Positives over a continuous noise bed ``snr_db`` below their active level.

    Each recording is scaled to ``speech_dbfs`` active level and preceded by a gap drawn
    uniformly from ``gap_s`` seconds (noise only); the stream ends with one more gap. The gap
    must exceed ``after_s`` so that windows do not overlap. Returns float samples, the windows
    and the segments.
    """
    lo, hi = gap_s
    if lo <= after_s:
        raise ValueError(f"gap_s {gap_s} must start above after_s {after_s}: windows would overlap")
    gaps = [int(rng.uniform(lo, hi) * RATE) for _ in range(len(speech) + 1)]
    n = sum(gaps) + sum(len(x) for _, x in speech)
    bed = _noise_bed(noise, n, rng)
    noise_rms_db = speech_dbfs - snr_db
    out = bed * 10 ** (noise_rms_db / 20)
    windows, segments = [], []
    pos = gaps[0]
    for (rec, x), gap in zip(speech, gaps[1:]):
        x = np.asarray(x, np.float64)
        scaled = x * 10 ** ((speech_dbfs - active_level_db(x)) / 20)
        out[pos:pos + len(x)] += scaled
        windows.append(Window(pos / RATE, (pos + len(x)) / RATE, after_s))
        segments.append([round(pos / RATE, 4), round((pos + len(x)) / RATE, 4), rec.kind, rec.path])
        pos += len(x) + gap
    return out, windows, segments


def build_negative_stream(audio: Sequence[tuple[Recording, np.ndarray]], *, gap_s: float
                          ) -> tuple[np.ndarray, list[list]]:
    """Negatives end to end at their own levels with ``gap_s`` of silence between files."""
    gap = np.zeros(int(gap_s * RATE))
    parts, segments, pos = [], [], 0
    for rec, x in audio:
        parts += [np.asarray(x, np.float64), gap]
        segments.append([round(pos / RATE, 4), round((pos + len(x)) / RATE, 4), rec.kind, rec.path])
        pos += len(x) + len(gap)
    return (np.concatenate(parts) if parts else np.zeros(0)), segments


@dataclass
class StreamSet:
    """The streams of one benchmark: a positive stream per SNR and the negative stream."""
    wake_word: str
    positives: dict[float, Stream]
    negative: Stream
    info: dict

    def all(self) -> list[Stream]:
        return [*self.positives.values(), self.negative]


def _key(parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


STREAMS_PREFIX = "wakeword-"   # build_streams' cache folders: wakeword-<wake word>-<key>/


def cached_streams(cache_dir: Path, name: str, wake_word: str = "*") -> list[Path]:
    """``name`` (``streams.json``, ``negatives.flac``, ...) in every stream set `build_streams`
    cached under ``cache_dir`` for ``wake_word`` (``*``: any), in sorted order."""
    return sorted(Path(cache_dir).glob(f"{STREAMS_PREFIX}{wake_word}-*/{name}"))


def build_streams(wake_word: str, positives: list[Recording], negatives: list[Recording],
                  noise_files: Sequence[str], *, snr_db: Sequence[float], speech_dbfs: float,
                  gap_s: tuple[float, float], negative_gap_s: float, after_s: float,
                  max_positives: int, seed: int, cache_dir: Path) -> StreamSet:
    """Build (or read from ``cache_dir``) the positive streams and the negative stream.

    The cache key covers the file lists (with sizes), every parameter and the seed; a changed
    folder or setting builds new streams. ``max_positives`` (0: all) takes a seeded sample.
    """
    rng = np.random.default_rng(seed)
    pos = list(positives)
    if max_positives and len(pos) > max_positives:
        idx = np.sort(rng.choice(len(pos), max_positives, replace=False))
        pos = [pos[i] for i in idx]
    order = rng.permutation(len(negatives))
    neg = [negatives[i] for i in order]
    sizes = lambda recs: [[r.path, r.kind, Path(r.path).stat().st_size] for r in recs]  # noqa: E731
    key = _key([wake_word, sizes(pos), sizes(neg), sorted(noise_files), list(snr_db), speech_dbfs,
                list(gap_s), negative_gap_s, after_s, seed, 2])
    folder = Path(cache_dir) / f"{STREAMS_PREFIX}{wake_word}-{key}"
    meta_path = folder / "streams.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(Path(s["path"]).is_file() for s in [*meta["positives"].values(), meta["negative"]]):
            log.info("streams from the cache %s", folder)
            return StreamSet(wake_word, {float(k): Stream.from_dict(v)
                                         for k, v in meta["positives"].items()},
                             Stream.from_dict(meta["negative"]), meta["info"])
    folder.mkdir(parents=True, exist_ok=True)
    log.info("building the benchmark streams (%d positives, %d negative files) in %s",
             len(pos), len(neg), folder)
    noise = [x for x in (_read(Recording(p, "noise")) for p in noise_files) if x is not None]
    speech = [(r, x) for r, x in ((r, _read(r)) for r in pos) if x is not None]
    streams: dict[float, Stream] = {}
    for snr in snr_db:
        audio, windows, segments = build_positive_stream(
            speech, noise, float(snr), speech_dbfs=speech_dbfs, gap_s=tuple(gap_s),
            after_s=after_s, rng=np.random.default_rng([seed, int(round(snr * 10)) + 1000]))
        path = folder / f"positives_{snr:g}dB.flac"
        sf.write(str(path), _to_int16(audio), RATE, subtype="PCM_16")
        streams[float(snr)] = Stream(f"positives {snr:g} dB", str(path), len(audio) / RATE,
                                     windows, segments, float(snr))
    neg_audio = [(r, x) for r, x in ((r, _read(r)) for r in neg) if x is not None]
    audio, segments = build_negative_stream(neg_audio, gap_s=negative_gap_s)
    path = folder / "negatives.flac"
    sf.write(str(path), _to_int16(audio), RATE, subtype="PCM_16")
    negative = Stream("negatives", str(path), len(audio) / RATE, [], segments)
    kinds: dict[str, list] = {}
    for s in segments:
        k = kinds.setdefault(s[2], [0, 0.0])
        k[0] += 1
        k[1] += s[1] - s[0]
    info = {"positives": len(speech), "positive_files_skipped": len(pos) - len(speech),
            "negative_files": len(neg_audio), "negative_files_skipped": len(neg) - len(neg_audio),
            "negative_s_by_kind": {k: round(v[1], 1) for k, v in sorted(kinds.items())},
            "negative_files_by_kind": {k: v[0] for k, v in sorted(kinds.items())},
            "noise_files": list(noise_files), "seed": seed, "speech_dbfs": speech_dbfs,
            "gap_s": list(gap_s), "negative_gap_s": negative_gap_s, "after_s": after_s,
            "file_list": str(meta_path)}
    meta = {"positives": {str(k): v.as_dict() for k, v in streams.items()},
            "negative": negative.as_dict(), "info": info}
    meta_path.write_text(json.dumps(meta))
    return StreamSet(wake_word, streams, negative, info)
