"""The training corpus of every model, built from the profile: synthetic (offline) or real data.

``build_corpus(cfg)`` returns a `Corpus` with keywords (1 s at 16 kHz), scenes, vocal
percussion, separation mixtures (8 kHz) and background noise; ``split_corpus`` splits it by
group (speaker/voice for keywords, source recording for scenes). A built corpus is cached
under ``build/cache/corpus-<hash>/`` keyed by the data, label, project and frontend settings, so
the second build of a profile loads in seconds.

Command line::

    python -m train.corpus --profile default
    python -m train.corpus --profile real --set data.real.esc50=/data/ESC-50
    python -m train.corpus --set data.synthetic.keyword_takes_per_word=2 --rebuild
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args
from device.paths import BuildPaths
from device.resample import resample

from .datasets import (ESC50_MAJOR_GROUPS, Clip, class_counts, load_background_noise,
                       load_esc50, load_speech_commands, load_urbansound8k,
                       load_vocal_percussion, load_wake_words)
from .splits import check_fractions, fold_split, speech_commands_split, split_by_group
from .synth import (SCENE_GENERATORS, SpeechSynthError, augment_keyword, clip_rng,
                    generate_scene, noise_recording, percussion_clip, plan_take, render_take,
                    silence_clip)
from .synth.keywords import running_window, speaker_of, take_meta
from .synth.sentences import sentence
from .synth.speech import VOICES
from .synth.voices import EngineReport, find_engines
from .synth.augment import random_segment
from .waveforms import db_to_gain, fit_length, rms

__all__ = ["Corpus", "build_corpus", "split_corpus", "corpus_cache_dir", "resolve_data_path",
           "speech_engines", "main"]

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when the generators change what a profile produces


@dataclass
class Corpus:
    """Everything the models train on.

    Attributes
    ----------
    keywords : list of Clip
        16 kHz, exactly ``data.clip_s`` (1 s) each; labels from ``cfg.keyword_labels``.
    scenes : list of Clip
        16 kHz, at least 1 s each; labels ``cfg["labels.scenes"]``.
    percussion : list of Clip
        16 kHz; labels ``cfg["labels.percussion"]``; synthetic ones carry ``meta["onset_s"]``.
    separation : list of dict
        ``{"mixture": (n,), "sources": (2, n), "group": str, "labels": [speech, scene]}`` at
        ``frontend.separation.sample_rate``; ``mixture == sources.sum(0)``.
    noise : list of np.ndarray
        Background recordings at 16 kHz for augmentation (may be empty).
    source : str
        ``"synthetic"`` or ``"real"``.
    """

    keywords: list[Clip]
    scenes: list[Clip]
    percussion: list[Clip]
    separation: list[dict]
    noise: list[np.ndarray]
    source: str
    info: dict = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-class clip counts of each task."""
        return {"keywords": class_counts(self.keywords), "scenes": class_counts(self.scenes),
                "percussion": class_counts(self.percussion),
                "separation": {"mixtures": len(self.separation)},
                "noise": {"recordings": len(self.noise)}}


# --------------------------------------------------------------------------- helpers
def _progress(iterable, progress: bool, desc: str, total: int | None = None):
    if not progress:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)


def resolve_data_path(path, cfg: Config | None = None) -> Path | None:
    """A data folder from the profile (``data.real.*``): absolute, relative to the repository
    root, or ``cache:<folder>``, a folder of the fetch cache (``train.fetch.cache_dir``:
    $HOPWISE_CACHE, else ``fetch.cache_dir`` of ``cfg``, else of the default profile); None
    for an empty setting."""
    if path in (None, ""):
        return None
    if str(path).startswith("cache:"):
        from .fetch import cache_dir
        return (cache_dir(cfg) / str(path)[len("cache:"):]).resolve()
    from device.config import REPO_ROOT
    p = Path(os.path.expanduser(str(path)))
    return (p if p.is_absolute() else REPO_ROOT / p).resolve()


def _fingerprint(paths) -> list:
    """Cheap identity of data folders (file count, bytes, newest mtime): a real-data cache
    must not outlive a change to the files it was built from."""
    out = []
    for path in paths:
        if path is None or not path.exists():
            out.append([str(path), None])
            continue
        count = size = newest = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                st = os.stat(os.path.join(root, name))
                count, size, newest = count + 1, size + st.st_size, max(newest, int(st.st_mtime))
        out.append([str(path), count, size, newest])
    return out


def speech_engines(cfg: Config) -> EngineReport:
    """The synthesisers this machine has among ``data.synthetic.speech_engines``, with their
    voices (`train.synth.voices.find_engines`); the missing ones are listed with the fix."""
    return _find_engines(tuple(cfg["data.synthetic.speech_engines"]))


@lru_cache(maxsize=8)
def _find_engines(names: tuple[str, ...]) -> EngineReport:
    return find_engines(names, VOICES)


def corpus_cache_dir(cfg: Config) -> Path:
    """Where the profile's corpus is cached: ``build/cache/corpus-<hash>``, keyed by the
    settings it is built from and the voices this machine can render (a machine that gains
    flite must not reuse a corpus built without it) (`BuildPaths.corpus_cache`)."""
    voices = hashlib.sha256(json.dumps(speech_engines(cfg).voices, sort_keys=True).encode())
    return BuildPaths(cfg).corpus_cache(cfg.hash("data", "labels", "project", "frontend")
                                        + "-" + voices.hexdigest()[:8])


# --------------------------------------------------------------------------- cache (no pickle)
def _pack_clips(prefix: str, clips: list[Clip], arrays: dict) -> dict:
    lengths = np.array([len(c.audio) for c in clips], dtype=np.int64)
    arrays[f"{prefix}_audio"] = (np.concatenate([c.audio for c in clips]).astype(np.float32)
                                 if clips else np.zeros(0, np.float32))
    arrays[f"{prefix}_lengths"] = lengths
    return {"rows": [[c.sample_rate, c.label, c.group, c.path, c.fold, c.meta] for c in clips]}


def _unpack_clips(prefix: str, arrays, rows) -> list[Clip]:
    audio, lengths = arrays[f"{prefix}_audio"], arrays[f"{prefix}_lengths"]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [Clip(audio[bounds[i]:bounds[i + 1]], int(r[0]), r[1], r[2], r[3], r[4], r[5])
            for i, r in enumerate(rows)]


def save_corpus(corpus: Corpus, folder: Path) -> None:
    """Write the corpus as one uncompressed npz (fast to load) plus a JSON index."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    index = {"version": CACHE_VERSION, "source": corpus.source, "info": corpus.info}
    for name in ("keywords", "scenes", "percussion"):
        index[name] = _pack_clips(name, getattr(corpus, name), arrays)
    if corpus.separation:
        arrays["separation_mixture"] = np.stack([m["mixture"] for m in corpus.separation])
        arrays["separation_sources"] = np.stack([m["sources"] for m in corpus.separation])
    index["separation"] = [{k: v for k, v in m.items() if k not in ("mixture", "sources")}
                           for m in corpus.separation]
    index["noise"] = len(corpus.noise)
    for i, noise in enumerate(corpus.noise):
        arrays[f"noise_{i}"] = noise
    # Private temporary names (two builds may race), renamed last so that a build killed
    # halfway never leaves a cache that looks complete; the index goes last of all.
    tmp_data, tmp_index = folder / f"corpus.{os.getpid()}.tmp.npz", folder / f"index.{os.getpid()}.tmp"
    np.savez(tmp_data, **arrays)
    tmp_index.write_text(json.dumps(index, default=str))
    os.replace(tmp_data, folder / "corpus.npz")
    os.replace(tmp_index, folder / "index.json")


def load_cached_corpus(folder: Path) -> Corpus | None:
    """The cached corpus, or None when there is none (or it is from another cache version)."""
    index_path, data_path = folder / "index.json", folder / "corpus.npz"
    if not (index_path.is_file() and data_path.is_file()):
        return None
    index = json.loads(index_path.read_text())
    if index.get("version") != CACHE_VERSION:
        return None
    with np.load(data_path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    parts = {name: _unpack_clips(name, arrays, index[name]["rows"])
             for name in ("keywords", "scenes", "percussion")}
    separation = [dict(meta, mixture=arrays["separation_mixture"][i],
                       sources=arrays["separation_sources"][i])
                  for i, meta in enumerate(index["separation"])]
    noise = [arrays[f"noise_{i}"] for i in range(index["noise"])]
    return Corpus(parts["keywords"], parts["scenes"], parts["percussion"], separation, noise,
                  index["source"], index.get("info", {}))


# --------------------------------------------------------------------------- synthetic parts
def _voice_draw(cfg: Config) -> tuple[EngineReport, dict, tuple]:
    """What `plan_take` draws voices from: the engines found, their weights and the warp range;
    a SpeechSynthError naming the fixes when no synthesiser is found."""
    engines = speech_engines(cfg)
    if not engines.voices:
        raise SpeechSynthError("no speech synthesiser found: " + "; ".join(engines.lines()))
    weights = dict(zip(cfg["data.synthetic.speech_engines"],
                       cfg["data.synthetic.speech_engine_weights"]))
    return engines, weights, tuple(cfg["data.synthetic.voice_warp"])


def _speech_takes(cfg: Config, phrases: dict[str, tuple[str, int]], progress: bool,
                  noise_pool, kind: str = "kw", voices: dict[str, tuple[str, ...]] | None = None
                  ) -> tuple[list[Clip], list[tuple]]:
    """Synthesise and augment takes; ``phrases`` maps text -> (label, takes); ``voices`` (engine
    -> voice names) replaces the voices found for those engines.

    Returns the 1 s clips and the clean takes (audio, voice, text) for separation mixtures.
    """
    seed = cfg["project.seed"]
    rate = cfg["frontend.keyword.sample_rate"]
    n_samples = int(round(cfg["data.clip_s"] * rate))
    backend = cfg["data.synthetic.speech_backend"]
    jobs = [(text, label, i) for text, (label, takes) in phrases.items() for i in range(takes)]
    engines, weights, warp = _voice_draw(cfg)
    if voices:
        engines = replace(engines, voices={k: tuple(voices.get(k, v))
                                           for k, v in engines.voices.items()})
    for line in engines.lines():
        log.info("speech synthesis: %s", line)
    clips, clean = [], []
    for text, label, i in _progress(jobs, progress, "synthetic speech"):
        rng = clip_rng(seed, kind, text, i)
        take = plan_take(text, rng, engines.voices, warp=warp, engine_weights=weights)
        speech = render_take(take, rate, backend)
        audio = augment_keyword(speech, rng, n_samples, rate, noise_pool,
                                channel_probability=cfg["data.synthetic.channel_probability"])
        meta = dict(take_meta(take), word=text, synthetic=True)
        speaker = speaker_of(take, warp)
        clips.append(Clip(audio, rate, label, speaker, None, meta=meta))
        clean.append((speech, speaker, text))
    return clips, clean


def _running_speech(cfg: Config, count: int, noise_pool, progress: bool) -> list[Clip]:
    """``count`` 1 s windows of synthetic running speech, labelled ``_unknown_``.

    Each is a random sentence (`train.synth.sentences`, none of the profile's keywords in it)
    read by a drawn voice, then cut at a random offset (`running_window`): what the device
    hears in the middle of somebody talking, where its false wake-ups come from. A clip's
    group is its speaker (voice x warp bucket), so splits keep voices apart as for the words.
    """
    if count <= 0:
        return []
    seed, rate = cfg["project.seed"], cfg["frontend.keyword.sample_rate"]
    n_samples = int(round(cfg["data.clip_s"] * rate))
    engines, weights, warp = _voice_draw(cfg)
    exclude = [w for w in cfg.keyword_labels if not w.startswith("_")]
    clips = []
    for i in _progress(range(count), progress, "running speech"):
        rng = clip_rng(seed, "running", "sentence", i)
        take = plan_take(sentence(rng, exclude), rng, engines.voices, warp=warp,
                         engine_weights=weights)
        speech = render_take(take, rate, cfg["data.synthetic.speech_backend"])
        audio = running_window(speech, rng, n_samples, rate, noise_pool,
                               channel_probability=cfg["data.synthetic.channel_probability"])
        meta = dict(take_meta(take), word="(running speech)", synthetic=True)
        clips.append(Clip(audio, rate, "_unknown_", speaker_of(take, warp), None, meta=meta))
    return clips


def _silence(cfg: Config, count: int, noise_pool, progress: bool) -> list[Clip]:
    seed, rate = cfg["project.seed"], cfg["frontend.keyword.sample_rate"]
    n_samples = int(round(cfg["data.clip_s"] * rate))
    buckets = cfg["data.synthetic.group_buckets"]
    return [Clip(silence_clip(clip_rng(seed, "silence", "_silence_", i), n_samples, rate,
                              noise_pool), rate, "_silence_", f"silence-{i % buckets}",
                 meta={"synthetic": True})
            for i in _progress(range(count), progress, "silence")]


def _synthetic_scenes(cfg: Config, progress: bool) -> list[Clip]:
    seed, rate = cfg["project.seed"], cfg["frontend.keyword.sample_rate"]
    per_class = cfg["data.synthetic.scene_clips_per_class"]
    clip_s = cfg["data.synthetic.scene_clip_s"]
    buckets = cfg["data.synthetic.group_buckets"]
    jobs = [(label, i) for label in cfg["labels.scenes"] for i in range(per_class)]
    return [Clip(generate_scene(label, clip_rng(seed, "scene", label, i), clip_s, rate), rate,
                 label, f"scene-seed{i % buckets}", meta={"synthetic": True, "index": i})
            for label, i in _progress(jobs, progress, "scenes")]


def _synthetic_percussion(cfg: Config, progress: bool) -> list[Clip]:
    seed, rate = cfg["project.seed"], cfg["frontend.keyword.sample_rate"]
    per_class = cfg["data.synthetic.drum_hits_per_class"]
    clip_s = cfg["data.synthetic.drum_clip_s"]
    buckets = cfg["data.synthetic.group_buckets"]
    clips = []
    for label, i in _progress([(lab, i) for lab in cfg["labels.percussion"]
                               for i in range(per_class)], progress, "drum hits"):
        audio, onset_s = percussion_clip(label, clip_rng(seed, "drum", label, i), clip_s, rate)
        clips.append(Clip(audio, rate, label, f"drum-seed{i % buckets}",
                          meta={"onset_s": onset_s, "synthetic": True}))
    return clips


def _noise_pool(cfg: Config) -> list[np.ndarray]:
    seed, rate = cfg["project.seed"], cfg["frontend.keyword.sample_rate"]
    colours = ["pink", "brown", "white", "blue"]
    return [noise_recording(clip_rng(seed, "noise", "pool", i),
                            cfg["data.synthetic.noise_recording_s"], rate,
                            colours[i % len(colours)])
            for i in range(cfg["data.synthetic.noise_recordings"])]


def _mixtures(cfg: Config, speech: list[tuple], scenes: list[Clip], progress: bool) -> list[dict]:
    """Two-source mixtures at the separation rate: a keyword over a scene.

    ``speech`` holds (audio at 16 kHz, group, word); a random stretch of the scene (tiled
    when short) fills the length.
    The sources are stored as they sit in the mixture, so their sum is the mixture exactly.
    """
    count = cfg["data.synthetic.separation_mixtures"]
    if not count or not speech or not scenes:
        return []
    seed = cfg["project.seed"]
    in_rate = cfg["frontend.keyword.sample_rate"]
    rate = cfg["frontend.separation.sample_rate"]
    n = int(round(cfg["data.synthetic.separation_clip_s"] * rate))
    out = []
    for i in _progress(range(count), progress, "separation mixtures"):
        rng = clip_rng(seed, "mixture", "pair", i)
        voice_audio, group, word = speech[int(rng.integers(len(speech)))]
        scene = scenes[int(rng.integers(len(scenes)))]
        s0 = resample(voice_audio, in_rate, rate)[:n]
        s0 = np.roll(fit_length(s0, n, align="start"),
                     int(rng.integers(0, max(1, n - len(s0) + 1))))
        s1 = random_segment(resample(scene.audio, scene.sample_rate, rate), n, rng)
        s0 = s0 / max(rms(s0), 1e-12)
        s1 = s1 / max(rms(s1), 1e-12) * db_to_gain(-rng.uniform(-5.0, 5.0))
        sources = np.stack([s0, s1]).astype(np.float32)
        sources *= db_to_gain(rng.uniform(-30.0, -18.0))
        peak = float(np.max(np.abs(sources.sum(axis=0))))
        if peak > 0.99:
            sources *= 0.99 / peak
        out.append({"mixture": sources.sum(axis=0).astype(np.float32), "sources": sources,
                    "group": group, "labels": [word, scene.label]})
    return out


def _negative_phrases(cfg: Config, unknown_takes: int, confusable_takes: int
                      ) -> dict[str, tuple[str, int]]:
    """Unknown words and wake-word confusables, all labelled ``_unknown_``.

    A phrase that is also a keyword (say the wake word was changed to "compute" but the
    confusables were not) is dropped with a warning: one text under two labels teaches noise.
    """
    keywords = {w.lower() for w in cfg.keyword_labels}
    phrases: dict[str, tuple[str, int]] = {}
    for texts, takes in ((cfg["labels.unknown_words"], unknown_takes),
                         (cfg["data.synthetic.wake_word_confusables"], confusable_takes)):
        for text in texts:
            if text.lower() in keywords:
                warnings.warn(f"{text!r} is a keyword and also listed as an unknown word or "
                              f"confusable; dropping it from _unknown_ (fix labels.unknown_words "
                              f"or data.synthetic.wake_word_confusables)", stacklevel=3)
                continue
            phrases[text] = ("_unknown_", takes)
    return phrases


def build_synthetic(cfg: Config, progress: bool = True) -> Corpus:
    """The built-in corpus: espeak-ng keywords, procedural scenes and drums, mixtures."""
    unknown = sorted(set(cfg["labels.scenes"]) - set(SCENE_GENERATORS))
    if unknown:
        raise ValueError(f"labels.scenes {unknown} have no synthetic generator; the synthetic "
                         f"corpus knows {sorted(SCENE_GENERATORS)}; use the real profile for "
                         f"other scene labels")
    noise = _noise_pool(cfg)
    takes = cfg["data.synthetic.keyword_takes_per_word"]
    phrases = {w: (w, takes) for w in [cfg["labels.wake_word"], *cfg["labels.commands"]]}
    unknown_takes = cfg["data.synthetic.unknown_takes_per_word"]
    phrases.update(_negative_phrases(cfg, unknown_takes,
                                     cfg["data.synthetic.confusable_takes_per_phrase"]))
    keywords, clean = _speech_takes(cfg, phrases, progress, noise)
    keywords += _silence(cfg, cfg["data.synthetic.silence_clips"], noise, progress)
    keywords += _running_speech(cfg, cfg["data.synthetic.running_speech_clips"], noise, progress)
    fetched = fetched_folders(cfg)
    info = {}
    if fetched:
        keywords += _fetched_keywords(cfg, fetched)
        info["fingerprint"] = _fingerprint(list(fetched.values()))
        info["fetched"] = {k: str(v) for k, v in fetched.items()}
    scenes = _synthetic_scenes(cfg, progress)
    percussion = _synthetic_percussion(cfg, progress)
    separation = _mixtures(cfg, clean, scenes, progress)
    return Corpus(keywords, scenes, percussion, separation, noise, "synthetic", info)


# --------------------------------------------------------------------------- fetched recordings
def fetched_folders(cfg: Config) -> dict[str, Path]:
    """Folders of ``fetch.auto_datasets`` that `train.fetch` completed in the cache, when the
    profile is synthetic and ``fetch.add_to_synthetic`` is true (else empty)."""
    if cfg["data.source"] != "synthetic" or not cfg["fetch.add_to_synthetic"]:
        return {}
    from .fetch import DATASETS, cache_dir, is_fetched
    cache = cache_dir(cfg)
    return {k: cache / DATASETS[k].folder for k in cfg["fetch.auto_datasets"]
            if k in DATASETS and is_fetched(DATASETS[k], cache)}


def _wake_word_clips(folder: Path, cfg: Config) -> list[Clip]:
    """Wake-word recordings, 1 s around the loudest part; other phrases become ``_unknown_``:
    negatives from the same recording channel stop the model from learning "this microphone"
    instead of the word."""
    wake = cfg["labels.wake_word"]
    own = cfg["data.real.wake_word_recordings"]  # false: synthesis only, recordings left for tests
    rate, clip_s = cfg["frontend.keyword.sample_rate"], cfg["data.clip_s"]
    return [clip if clip.label == wake else
            replace(clip, label="_unknown_", meta=dict(clip.meta, word=clip.label))
            for clip in load_wake_words(folder, rate, clip_s=clip_s)
            if own or clip.label != wake]


def _fetched_keywords(cfg: Config, folders: dict[str, Path]) -> list[Clip]:
    """Keyword clips from fetched Speech Commands folders and wake-word recordings."""
    rate, clip_s = cfg["frontend.keyword.sample_rate"], cfg["data.clip_s"]
    clips: list[Clip] = []
    from .fetch import DATASETS
    for key, folder in folders.items():
        # The loader is the one of the profile key the dataset fills.
        if "data.real.wake_words" in DATASETS[key].profile_keys:
            clips += _wake_word_clips(folder, cfg)
        elif "data.real.speech_commands" in DATASETS[key].profile_keys:
            clips += load_speech_commands(folder, rate, cfg["labels.commands"], clip_s=clip_s)
    log.info("fetched recordings added to the synthetic corpus: %d clips from %s", len(clips),
             ", ".join(folders))
    return clips


# --------------------------------------------------------------------------- real parts
def _warn_missing(what: str, path, key: str) -> None:
    warnings.warn(f"{what} folder {path} does not exist: skipping it; set {key} to the dataset "
                  f"folder (or --set {key}=PATH)", stacklevel=3)


def background_noise_folders(cfg: Config) -> list:
    """Where a real corpus' augmentation noise comes from (`load_background_noise`):
    ``data.real.background_noise`` and the Speech Commands root's ``_background_noise_``."""
    return [resolve_data_path(cfg[f"data.real.{k}"], cfg)
            for k in ("background_noise", "speech_commands")]


def build_real(cfg: Config, progress: bool = True) -> Corpus:
    """Real recordings in their standard layouts, plus synthetic speech of the wake word and
    of confusable phrases (see ``[data.real]`` in the profile)."""
    rate = cfg["frontend.keyword.sample_rate"]
    clip_s = cfg["data.clip_s"]
    wake = cfg["labels.wake_word"]
    paths = {k: resolve_data_path(cfg[f"data.real.{k}"], cfg) for k in (
        "speech_commands", "wake_words", "esc50", "urbansound8k", "vocal_percussion",
        "background_noise")}
    noise = load_background_noise(background_noise_folders(cfg), rate)

    keywords: list[Clip] = []
    if paths["speech_commands"] and paths["speech_commands"].is_dir():
        keywords += load_speech_commands(paths["speech_commands"], rate, cfg["labels.commands"],
                                         clip_s=clip_s)
    else:
        _warn_missing("Speech Commands", paths["speech_commands"], "data.real.speech_commands")
    if paths["wake_words"] and paths["wake_words"].is_dir():
        own = cfg["data.real.wake_word_recordings"]
        keywords += _wake_word_clips(paths["wake_words"], cfg)
        if own and not any(c.label == wake for c in keywords):
            warnings.warn(f"no folder {wake!r} under {paths['wake_words']}: the wake word has "
                          f"synthetic examples only", stacklevel=2)
    else:
        _warn_missing("wake-word", paths["wake_words"], "data.real.wake_words")
    phrases = {wake: (wake, cfg["data.real.synthetic_wake_word_takes"])}
    # Synthetic commands add voices the recordings lack (more speakers per word); their
    # clips are voice-disjoint across splits like the rest, and tables report real ones apart.
    command_takes = cfg["data.real.synthetic_command_takes"]
    if command_takes:
        phrases.update({w: (w, command_takes) for w in cfg["labels.commands"]})
    extra = cfg["data.real.synthetic_unknown_takes_per_phrase"]
    phrases.update(_negative_phrases(cfg, extra, extra))
    synthetic, clean = _speech_takes(cfg, phrases, progress, noise, kind="kw-real")
    keywords += synthetic
    keywords += _running_speech(cfg, cfg["data.real.synthetic_running_speech_clips"], noise,
                                progress)

    scene_labels = list(cfg["labels.scenes"])
    scenes: list[Clip] = []
    if set(scene_labels) <= set(ESC50_MAJOR_GROUPS):
        if paths["esc50"] and paths["esc50"].is_dir():
            scenes = load_esc50(paths["esc50"], rate, major_groups=True)
        else:
            _warn_missing("ESC-50", paths["esc50"], "data.real.esc50")
    else:
        if paths["urbansound8k"] and paths["urbansound8k"].is_dir():
            scenes += load_urbansound8k(paths["urbansound8k"], rate)
        if paths["esc50"] and paths["esc50"].is_dir():
            scenes += load_esc50(paths["esc50"], rate)
    scenes = [c for c in scenes if c.label in scene_labels]
    # Scene windows are 1 s; a shorter clip (UrbanSound8K has 0.3 s dog barks) is padded.
    min_n = int(round(clip_s * rate))
    scenes = [replace(c, audio=fit_length(c.audio, min_n, align="start"))
              if len(c.audio) < min_n else c for c in scenes]

    percussion: list[Clip] = []
    if paths["vocal_percussion"] and paths["vocal_percussion"].is_dir():
        percussion = [c for c in load_vocal_percussion(paths["vocal_percussion"], rate)
                      if c.label in cfg["labels.percussion"]]
    else:
        _warn_missing("vocal-percussion", paths["vocal_percussion"], "data.real.vocal_percussion")

    speech = [(c.audio, c.group, c.label) for c in keywords
              if c.label not in ("_silence_", "_unknown_") and not c.meta.get("synthetic")] or \
        [(a, g, w) for a, g, w in clean]
    separation = _mixtures(cfg, speech, scenes, progress)
    info = {"fingerprint": _fingerprint([p for p in paths.values()])}
    return Corpus(keywords, scenes, percussion, separation, noise, "real", info)


# --------------------------------------------------------------------------- public API
def _check(corpus: Corpus, cfg: Config) -> None:
    labels = set(cfg.keyword_labels)
    stray = {c.label for c in corpus.keywords} - labels
    if stray:
        raise ValueError(f"keyword clips with labels {sorted(stray)} outside cfg.keyword_labels "
                         f"{cfg.keyword_labels}; this is a bug in the corpus builder")
    n = int(round(cfg["data.clip_s"] * cfg["frontend.keyword.sample_rate"]))
    bad = [c for c in corpus.keywords if len(c.audio) != n]
    if bad:
        raise ValueError(f"{len(bad)} keyword clips are not {n} samples long (first: {bad[0].path})")


def build_corpus(cfg: Config, progress: bool = True, rebuild: bool = False) -> Corpus:
    """Build (or load from the cache) the profile's corpus.

    Parameters
    ----------
    cfg : Config
        The profile. ``data.source`` picks ``"synthetic"`` or ``"real"``; sizes come from
        ``[data.synthetic]``, paths from ``[data.real]``.
    progress : bool
        Show tqdm progress bars on stderr.
    rebuild : bool
        Ignore and overwrite the cache.

    Returns
    -------
    Corpus
    """
    source = cfg["data.source"]
    if source not in ("synthetic", "real"):
        raise ValueError(f"data.source must be \"synthetic\" or \"real\", got {source!r}; fix the "
                         f"profile or pass --set data.source=synthetic")
    folder = corpus_cache_dir(cfg)
    fingerprint = None
    if source == "real":
        fingerprint = _fingerprint([resolve_data_path(cfg[f"data.real.{k}"], cfg) for k in (
            "speech_commands", "wake_words", "esc50", "urbansound8k", "vocal_percussion",
            "background_noise")])
    elif fetched_folders(cfg):
        fingerprint = _fingerprint(list(fetched_folders(cfg).values()))
    if not rebuild:
        cached = load_cached_corpus(folder)
        # A synthetic corpus without fetched recordings has no fingerprint; one built with them
        # must not be reused once they change or go (nor one without them once they come).
        if cached is not None and (None if fingerprint is None else
                                   json.loads(json.dumps(fingerprint))) == \
                cached.info.get("fingerprint"):
            log.info("corpus loaded from cache %s", folder)
            return cached
    t0 = time.perf_counter()
    corpus = build_synthetic(cfg, progress) if source == "synthetic" else build_real(cfg, progress)
    _check(corpus, cfg)
    corpus.info["build_s"] = round(time.perf_counter() - t0, 2)
    save_corpus(corpus, folder)
    log.info("corpus built in %.1f s, cached in %s", corpus.info["build_s"], folder)
    return corpus


def _split_clips(clips: list[Clip], fractions, seed: int) -> tuple[list, list, list]:
    """split_by_group, but by clip when there are too few groups to fill three parts (the
    beatbox set is one person in two places)."""
    if len({c.group for c in clips}) >= 3 or not clips:
        return split_by_group(clips, fractions, seed)
    log.info("only %d group(s): splitting %d clips by clip instead of by group",
             len({c.group for c in clips}), len(clips))
    regrouped = [replace(c, group=f"{c.group}/{c.path or i}") for i, c in enumerate(clips)]
    parts = split_by_group(regrouped, fractions, seed)
    back = {id(r): c for r, c in zip(regrouped, clips)}
    return tuple([back[id(r)] for r in part] for part in parts)  # type: ignore[return-value]


class _Grouped:
    def __init__(self, item: dict):
        self.item, self.group = item, item.get("group", "")


def split_corpus(corpus: Corpus, cfg: Config) -> dict[str, Corpus]:
    """Split into ``{"train", "validation", "test"}`` with ``[split]`` fractions, by group.

    Keywords are speaker/voice-disjoint (Speech Commands' own lists when its folder has
    them; with ``split.folds`` set, fold ``split.test_fold`` of a cross-validation over all
    keyword speakers is the test part, `train.splits.fold_split`), scenes source-disjoint,
    mixtures disjoint by the speech source's voice. The noise recordings are augmentation
    material and go to every part.
    """
    fractions = check_fractions((cfg["split.train"], cfg["split.validation"], cfg["split.test"]))
    seed = cfg["project.seed"]
    sc_root = (resolve_data_path(cfg["data.real.speech_commands"], cfg)
               if corpus.source == "real" else None)
    if cfg["split.folds"]:
        kw = fold_split(corpus.keywords, cfg["split.folds"], cfg["split.test_fold"], fractions,
                        seed)
    elif sc_root is not None and (sc_root / "validation_list.txt").is_file():
        from_sc = [c for c in corpus.keywords if c.path and str(c.path).startswith(str(sc_root))]
        others = [c for c in corpus.keywords if not (c.path and str(c.path).startswith(str(sc_root)))]
        kw = [a + b for a, b in zip(speech_commands_split(from_sc, sc_root, fractions, seed),
                                    split_by_group(others, fractions, seed))]
    else:
        kw = split_by_group(corpus.keywords, fractions, seed)
    scenes = _split_clips(corpus.scenes, fractions, seed)
    drums = _split_clips(corpus.percussion, fractions, seed)
    mixes = split_by_group([_Grouped(m) for m in corpus.separation], fractions, seed) \
        if corpus.separation else ([], [], [])
    names = ("train", "validation", "test")
    return {name: Corpus(kw[i], scenes[i], drums[i], [g.item for g in mixes[i]],
                         list(corpus.noise), corpus.source, dict(corpus.info))
            for i, name in enumerate(names)}


# --------------------------------------------------------------------------- command line
def _by_class(clips: list[Clip], per_class: int) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for clip in clips:
        if len(out[clip.label]) < per_class:
            out[clip.label].append(clip.audio)
    return dict(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.corpus",
        description="Build (or load from cache) the training corpus of a profile, print the\n"
                    "clips per class and the build time, and save spectrogram grids of\n"
                    "keywords, scenes and percussion under <build_dir>/reports/.",
        epilog="examples:\n  python -m train.corpus --profile default\n"
               "  python -m train.corpus --set data.synthetic.keyword_takes_per_word=2 --rebuild\n"
               "  python -m train.corpus --profile real --set data.real.esc50=/data/ESC-50",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "data.synthetic.keyword_takes_per_word=2")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache and rebuild")
    parser.add_argument("--no-plots", action="store_true", help="skip the spectrogram PNGs")
    parser.add_argument("--examples", type=int, default=4, metavar="N",
                        help="examples per class in the spectrogram grids (default 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Skipped files: one readable line each, not a source excerpt.
    warnings.formatwarning = lambda message, category, *_a, **_k: f"{category.__name__}: {message}\n"

    t0 = time.perf_counter()
    try:
        cfg = config_from_args(args)
        corpus = build_corpus(cfg, progress=not args.quiet, rebuild=args.rebuild)
    except (ValueError, FileNotFoundError, SpeechSynthError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    print(f"corpus ({corpus.source}) for profile {cfg.name}: {corpus_cache_dir(cfg)}")
    for task, counts in corpus.counts().items():
        total = sum(counts.values())
        print(f"  {task} ({total}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    splits = split_corpus(corpus, cfg)
    print("  split clips (keywords/scenes/percussion/mixtures): " + "; ".join(
        f"{name} {len(p.keywords)}/{len(p.scenes)}/{len(p.percussion)}/{len(p.separation)}"
        for name, p in splits.items()))
    built = corpus.info.get("build_s")
    print(f"ready in {elapsed:.1f} s" + (f" (built in {built:.1f} s)" if built is not None and
                                         elapsed > 0.5 * built else " (from cache)"))
    if not args.no_plots:
        from device.frontend import LogMelConfig
        from .plots import save_spectrogram_grid
        paths = BuildPaths(cfg)
        # Each task through the frontend of the model that learns it: percussion feeds the
        # echo state network at 8 kHz, so what vanishes there should vanish in the picture.
        for task, frontend_name in (("keywords", "keyword"), ("scenes", "keyword"),
                                    ("percussion", "esn")):
            clips = getattr(corpus, task)
            if not clips:
                continue
            frontend = LogMelConfig.from_config(cfg, frontend_name)
            # Resampled as the device's logmel stage does it (resample.stage_quality).
            examples = {label: [resample(a, c_rate, frontend.sample_rate,
                                         cfg["resample.stage_quality"]) for a in audios]
                        for label, audios in _by_class(clips, args.examples).items()
                        for c_rate in [clips[0].sample_rate]}
            path = save_spectrogram_grid(examples, frontend,
                                         paths.report(f"corpus-{corpus.source}-{task}.png"),
                                         title=f"{task} ({corpus.source}, frontend.{frontend_name})")
            print(f"  spectrograms: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
