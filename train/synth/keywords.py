"""Synthetic keyword clips: espeak-ng takes in many voices, fitted into 1 s and augmented.

A take is drawn from its own seeded generator (seed, word, take index), so a smaller corpus is
a prefix of a bigger one and any clip can be rebuilt alone.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, replace

import numpy as np

from ..waveforms import db_to_gain, mix_at_snr, rms
from .augment import (NOISE_COLOURS, apply_channel, apply_room, coloured_noise, place_in_window, random_segment,
                      room_impulse_response)
from .speech import VOICES, Take, synthesize, trim_silence
from device.resample import resample

__all__ = ["clip_rng", "plan_take", "speaker_of", "fit_into", "augment_keyword", "silence_clip",
           "noise_recording", "render_take", "take_meta", "running_window", "hear_window"]


def clip_rng(seed: int, kind: str, name: str, index: int) -> np.random.Generator:
    """The generator of one clip: independent of every other clip and of build order.

    ``zlib.crc32`` (not ``hash``) makes the stream the same in every process.
    """
    return np.random.default_rng([int(seed), zlib.crc32(kind.encode()),
                                  zlib.crc32(name.encode()), int(index)])


def plan_take(text: str, rng: np.random.Generator, voices=VOICES,
              rate_wpm: tuple[int, int] = (120, 230), pitch: tuple[int, int] = (15, 85),
              warp: tuple[float, float] = (1.0, 1.0), engine_weights=None) -> Take:
    """Draw a voice, a speaking rate, a pitch and a vocal-tract warp for ``text``.

    Parameters
    ----------
    voices : sequence of str, or mapping of engine -> sequence of str
        A flat list draws a voice uniformly. A mapping (`train.synth.voices.find_engines`)
        draws the engine first, by ``engine_weights``, then one of its voices: five flite
        voices are not drowned by espeak-ng's 96.
    rate_wpm, pitch : (int, int)
        Inclusive ranges of espeak-ng's words per minute and pitch (other engines read them
        as a duration stretch, see `Take`).
    warp : (float, float)
        Range of the vocal-tract warp, drawn log-uniformly; (1, 1) draws nothing, so the takes
        of a flat voice list are those of earlier corpora.
    engine_weights : mapping of engine -> float, optional
        Relative weights of the engines present (missing ones drop out); equal if None.
    """
    if isinstance(voices, dict):
        engines = sorted(voices)
        weights = np.array([float((engine_weights or {}).get(e, 1.0)) for e in engines])
        if weights.sum() <= 0:
            raise ValueError(f"engine weights {engine_weights} give the engines {engines} no "
                             f"weight; set data.synthetic.speech_engine_weights")
        pool = voices[engines[int(rng.choice(len(engines), p=weights / weights.sum()))]]
    else:
        pool = voices
    take = Take(text=text, voice=str(pool[int(rng.integers(len(pool)))]),
                rate_wpm=int(rng.integers(rate_wpm[0], rate_wpm[1] + 1)),
                pitch=int(rng.integers(pitch[0], pitch[1] + 1)))
    if warp[0] != warp[1]:
        take = replace(take, warp=round(float(np.exp(rng.uniform(np.log(warp[0]),
                                                                  np.log(warp[1])))), 4))
    return take


def speaker_of(take: Take, warp: tuple[float, float] = (1.0, 1.0), buckets: int = 4) -> str:
    """The "speaker" of a take, for group splits: its voice and its warp bucket.

    A warp moves formants and pitch as far apart as two people are, so one flite or Piper
    voice at four warps is four speakers: the split then holds out speakers of every engine,
    where splitting by voice alone sends the one Piper voice wholly to train or to test.
    """
    if warp[0] == warp[1]:
        return take.voice
    pos = (np.log(take.warp) - np.log(warp[0])) / (np.log(warp[1]) - np.log(warp[0]))
    return f"{take.voice}~w{int(np.clip(pos * buckets, 0, buckets - 1))}"


def fit_into(audio: np.ndarray, max_samples: int) -> np.ndarray:
    """Time-compress (by resampling) a take longer than ``max_samples``; shorter ones pass.

    A slow voice saying "computation" runs past 1 s; squeezing it a little (which also raises
    its pitch a little) keeps the whole word, where cropping would cut its end.
    """
    if len(audio) <= max_samples:
        return audio
    return resample(audio, len(audio), max_samples)[:max_samples]


def augment_keyword(speech: np.ndarray, rng: np.random.Generator, n_samples: int,
                    sample_rate: int = 16000, noise_pool=(), room_probability: float = 0.5,
                    noise_probability: float = 0.85, snr_db: tuple[float, float] = (5.0, 30.0),
                    level_db: tuple[float, float] = (-32.0, -14.0),
                    channel_probability: float = 0.0) -> np.ndarray:
    """Shift, room, channel, gain and noise: one training clip of ``n_samples`` from a clean take.

    Parameters
    ----------
    speech : np.ndarray
        The trimmed take, at most ``n_samples`` long.
    rng : numpy.random.Generator
        All randomness.
    n_samples : int
        The window (1 s of samples for keywords).
    sample_rate : int
        Hz.
    noise_pool : sequence of np.ndarray
        Long noise recordings to cut segments from; coloured noise is used otherwise (and for
        half of the clips even when there is a pool).
    room_probability, noise_probability : float
        Share of clips that get a room, and additive noise.
    channel_probability : float
        Share of clips heard through a random microphone response (`apply_channel`); 0 draws
        nothing, so the clips are those of a corpus built before channels existed.
    snr_db : (float, float)
        Range of the speech-to-noise ratio.
    level_db : (float, float)
        Range of the final speech RMS level in dB full scale.
    """
    x = fit_into(np.asarray(speech, dtype=np.float32), n_samples)
    x = place_in_window(x, n_samples, int(rng.integers(0, n_samples - len(x) + 1)))
    return hear_window(x, rng, sample_rate, noise_pool, room_probability, noise_probability,
                       snr_db, level_db, channel_probability)


def running_window(speech: np.ndarray, rng: np.random.Generator, n_samples: int,
                   sample_rate: int = 16000, noise_pool=(), channel_probability: float = 0.0,
                   **hearing) -> np.ndarray:
    """One ``n_samples`` window cut at a random offset from a take longer than the window.

    What a streaming device hears in the middle of someone's sentence: parts of words, not
    a centred one. A take shorter than the window is placed at random, as `augment_keyword`
    does. Then the same room, microphone, level and noise (``hearing``: the keyword arguments
    of `augment_keyword`).
    """
    x = np.asarray(speech, dtype=np.float32)
    if len(x) > n_samples:
        start = int(rng.integers(0, len(x) - n_samples + 1))
        x = x[start:start + n_samples]
    else:
        x = place_in_window(x, n_samples, int(rng.integers(0, n_samples - len(x) + 1)))
    return hear_window(x, rng, sample_rate, noise_pool, channel_probability=channel_probability,
                       **hearing)


def hear_window(x: np.ndarray, rng: np.random.Generator, sample_rate: int = 16000,
                noise_pool=(), room_probability: float = 0.5, noise_probability: float = 0.85,
                snr_db: tuple[float, float] = (5.0, 30.0),
                level_db: tuple[float, float] = (-32.0, -14.0),
                channel_probability: float = 0.0) -> np.ndarray:
    """Room, microphone, level and noise on one window of clean speech (`augment_keyword`'s
    parameters); the draws are those `augment_keyword` always made, in the same order."""
    n_samples = len(x)
    if rng.random() < room_probability:
        x = apply_room(x, room_impulse_response(rng, sample_rate, rt60_s=rng.uniform(0.1, 0.6),
                                                direct_to_reverb_db=rng.uniform(0.0, 10.0)))
    if channel_probability > 0 and rng.random() < channel_probability:
        x = apply_channel(x, rng, sample_rate)
    x = x * (db_to_gain(rng.uniform(*level_db)) / max(rms(x), 1e-12))
    if rng.random() < noise_probability:
        if len(noise_pool) and rng.random() < 0.5:
            noise = random_segment(noise_pool[int(rng.integers(len(noise_pool)))], n_samples, rng)
        else:
            noise = coloured_noise(n_samples, str(rng.choice(list(NOISE_COLOURS))), rng)
        x = mix_at_snr(x, noise, rng.uniform(*snr_db))
    peak = float(np.max(np.abs(x)))
    return (x * (0.99 / peak) if peak > 0.99 else x).astype(np.float32)


def silence_clip(rng: np.random.Generator, n_samples: int, sample_rate: int = 16000,
                 noise_pool=(), level_db: tuple[float, float] = (-75.0, -35.0)) -> np.ndarray:
    """A ``_silence_`` clip: quiet noise of a random colour, sometimes a real noise segment, and
    sometimes mains hum, because a quiet room is never digital zero."""
    level = db_to_gain(rng.uniform(*level_db))
    if len(noise_pool) and rng.random() < 0.3:
        x = random_segment(noise_pool[int(rng.integers(len(noise_pool)))], n_samples, rng)
        x = x * (level / max(rms(x), 1e-12))
    else:
        x = coloured_noise(n_samples, str(rng.choice(list(NOISE_COLOURS))), rng, level_rms=level)
    if rng.random() < 0.25:
        t = np.arange(n_samples) / sample_rate
        mains = rng.choice([50.0, 60.0])
        x = x + level * rng.uniform(0.3, 1.0) * (np.sin(2 * np.pi * mains * t)
                                                  + 0.5 * np.sin(2 * np.pi * 3 * mains * t))
    return np.asarray(x, dtype=np.float32)


def noise_recording(rng: np.random.Generator, duration_s: float, sample_rate: int = 16000,
                    colour: str = "pink") -> np.ndarray:
    """A long synthetic background recording: coloured noise with a slow level drift."""
    n = int(round(duration_s * sample_rate))
    x = coloured_noise(n, colour, rng, level_rms=0.05)
    drift = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * np.arange(n) / sample_rate
                               + rng.uniform(0, 2 * np.pi))
    return (x * drift).astype(np.float32)


def render_take(take: Take, sample_rate: int = 16000, backend: str = "auto") -> np.ndarray:
    """Synthesise and trim one take (the clean speech other functions augment)."""
    return trim_silence(synthesize(take, sample_rate, backend), sample_rate=sample_rate)


def take_meta(take: Take) -> dict:
    """A take's parameters as clip metadata."""
    return {k: v for k, v in asdict(take).items()}
