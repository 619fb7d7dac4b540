"""Random music, synthesised: negatives for a wake word that a home plays music all day beside.

Measured on real recordings, the wake verifier's strongest false alarms were music (orchestral
celesta, pop with singing), called "computer" with 0.8-0.98 although nothing in training sounded
like music: a readout only learns what its negatives show it. These pieces show it music, offline
and with no sound bank: each is a few seconds in a random key, tempo and scale, with one to four
parts (melody, chords, bass) played by instruments made from textbook recipes, and drums in some:

- plucked and struck strings (harmonic partials whose upper ones die first; a piano's slightly
  stretched partials), bells and celesta (two-operator FM), sustained organ, reed and bowed
  tones (slow attack, vibrato), and a sung vowel (a glottal pulse train through the formants of
  a, e, i, o, u, with vibrato) for the singing that pop music puts over speech's own band;
- a kick (a falling sine), a snare (tone and noise) and a hi-hat (high noise) on the beat grid;
- a room's reverberation (`train.synth.augment.room_impulse_response`) over the mix.

    >>> rng = np.random.default_rng(0)
    >>> windows = music_windows(8, rng)         # (8, 16000) float32, 1 s each
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ..waveforms import db_to_gain, rms
from .augment import apply_room, room_impulse_response
from .percussion import drum_hit

__all__ = ["INSTRUMENTS", "VOWEL_FORMANTS_HZ", "tone", "music_piece", "music_windows"]

# First three formants (Hz) of sung vowels, after Peterson & Barney's adult averages.
VOWEL_FORMANTS_HZ = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
                     "o": (570, 840, 2410), "u": (300, 870, 2240)}

MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)


def _partials(f0_hz: float, t: np.ndarray, sample_rate: int, count: int, rolloff: float,
              odd_only: bool = False, stretch: float = 0.0, decay_s: float | None = None,
              vibrato: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sum of harmonic partials ``n * f0`` (stretched by ``stretch`` as a stiff string's are),
    amplitude ``n ** -rolloff``, below Nyquist; with ``decay_s``, partial n dies ``n`` times
    faster, as a plucked string's upper partials do."""
    out = np.zeros_like(t)
    wobble = 1.0
    if vibrato > 0.0:
        rate_hz = rng.uniform(4.5, 6.5)
        wobble = 1.0 + vibrato * np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi))
    for n in range(1, count + 1):
        if odd_only and n % 2 == 0:
            continue
        f = n * f0_hz * np.sqrt(1.0 + stretch * n * n)
        if f >= 0.45 * sample_rate:
            break
        phase = 2 * np.pi * np.cumsum(f * wobble) / sample_rate if vibrato else 2 * np.pi * f * t
        partial = np.sin(phase) * n ** -rolloff
        if decay_s is not None:
            partial *= np.exp(-t * n / decay_s)
        out += partial
    return out


def _sung_vowel(f0_hz: float, t: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A glottal pulse train (with vibrato) through a random vowel's three formant resonators."""
    rate_hz, depth = rng.uniform(4.5, 6.5), rng.uniform(0.01, 0.03)
    f = f0_hz * (1.0 + depth * np.sin(2 * np.pi * rate_hz * t))
    phase = np.cumsum(f) / sample_rate
    source = np.diff(np.floor(phase), prepend=0.0)          # one impulse per period
    # Glottal flow (two poles, -12 dB/octave) radiated from the lips (a zero at DC, +6):
    # -6 dB/octave and no DC, which a real voice does not have either.
    source = lfilter([1.0, -1.0], [1.0, -1.9, 0.9025], source)
    out = np.zeros_like(t)
    formants = VOWEL_FORMANTS_HZ[str(rng.choice(list(VOWEL_FORMANTS_HZ)))]
    for i, fc in enumerate(formants):
        bandwidth_hz = 60.0 + 40.0 * i
        r = np.exp(-np.pi * bandwidth_hz / sample_rate)
        a = [1.0, -2.0 * r * np.cos(2 * np.pi * fc * rng.uniform(0.9, 1.1) / sample_rate), r * r]
        out += lfilter([1.0 - r], a, source) * (0.5 ** i)
    return out


def _envelope(t: np.ndarray, attack_s: float, release_s: float, length_s: float) -> np.ndarray:
    rise = np.clip(t / max(attack_s, 1e-4), 0.0, 1.0)
    fall = np.clip((length_s + release_s - t) / max(release_s, 1e-4), 0.0, 1.0)
    return rise * fall


def _pluck(f0, t, sr, rng, length_s):
    return _partials(f0, t, sr, 12, rng.uniform(0.8, 1.5), decay_s=rng.uniform(0.6, 2.0)) \
        * _envelope(t, 0.003, 0.05, length_s + 0.5)


def _piano(f0, t, sr, rng, length_s):
    tone_ = _partials(f0, t, sr, 16, rng.uniform(0.9, 1.4), stretch=rng.uniform(1e-5, 4e-4),
                      decay_s=rng.uniform(1.0, 3.0))
    return tone_ * _envelope(t, 0.002, 0.2, length_s)


def _bell(f0, t, sr, rng, length_s):
    # Two-operator FM: a non-integer ratio gives a bell's or celesta's inharmonic partials, an
    # integer one an electric piano's harmonic ones.
    ratio, index = rng.choice([1.4, 2.0, 3.5, 3.0, 1.0]), rng.uniform(1.0, 4.0)
    decay = np.exp(-t / rng.uniform(0.3, 1.5))
    return np.sin(2 * np.pi * f0 * t + index * decay * np.sin(2 * np.pi * ratio * f0 * t)) * decay \
        * _envelope(t, 0.001, 0.1, length_s + 1.0)


def _organ(f0, t, sr, rng, length_s):
    return _partials(f0, t, sr, 8, rng.uniform(0.5, 1.2)) * _envelope(t, 0.01, 0.05, length_s)


def _reed(f0, t, sr, rng, length_s):
    return _partials(f0, t, sr, 15, rng.uniform(0.6, 1.0), odd_only=True, vibrato=0.004, rng=rng) \
        * _envelope(t, rng.uniform(0.02, 0.08), 0.08, length_s)


def _bowed(f0, t, sr, rng, length_s):
    return _partials(f0, t, sr, 20, rng.uniform(0.9, 1.3), vibrato=rng.uniform(0.003, 0.008), rng=rng) \
        * _envelope(t, rng.uniform(0.05, 0.25), 0.2, length_s)


def _voice(f0, t, sr, rng, length_s):
    return _sung_vowel(f0, t, sr, rng) * _envelope(t, rng.uniform(0.03, 0.1), 0.1, length_s)


# name -> (render(f0_hz, t, sample_rate, rng, length_s), lowest and highest f0 it plays in Hz,
# seconds it sounds after its note is released: struck and plucked ones ring on)
INSTRUMENTS = {"pluck": (_pluck, 80, 1000, 1.0), "piano": (_piano, 40, 2000, 1.0),
               "bell": (_bell, 250, 2500, 1.0), "organ": (_organ, 60, 1000, 0.25),
               "reed": (_reed, 120, 1000, 0.25), "bowed": (_bowed, 60, 1300, 0.25),
               "voice": (_voice, 100, 700, 0.25)}


def tone(instrument: str, f0_hz: float, length_s: float, rng: np.random.Generator,
         sample_rate: int = 16000) -> np.ndarray:
    """One note of ``instrument`` (see `INSTRUMENTS`) held ``length_s``, with its release after,
    peak-normalised, float64."""
    if instrument not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}; use one of {sorted(INSTRUMENTS)}")
    render, _, _, tail_s = INSTRUMENTS[instrument]
    t = np.arange(int((length_s + tail_s) * sample_rate)) / sample_rate
    note = render(float(f0_hz), t, sample_rate, rng, float(length_s))
    return note / max(float(np.max(np.abs(note))), 1e-12)


def _add_at(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Mix ``sound`` into ``track`` from sample ``start`` on, cut at the track's end."""
    end = min(len(track), start + len(sound))
    track[start:end] += sound[:end - start]


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def music_piece(rng: np.random.Generator, duration_s: float = 8.0,
                sample_rate: int = 16000) -> np.ndarray:
    """``duration_s`` of random music: one to four parts and perhaps drums, in a room, float32
    at an RMS of 0.1."""
    n = int(duration_s * sample_rate)
    beat_s = 60.0 / rng.uniform(55, 170)
    root = int(rng.integers(45, 60))                           # MIDI note of the key
    scale = MAJOR if rng.random() < 0.6 else MINOR
    mix = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        role = str(rng.choice(["melody", "melody", "chords", "bass"]))
        instrument = str(rng.choice(list(INSTRUMENTS)))
        _, low_hz, high_hz, _ = INSTRUMENTS[instrument]
        octave = {"melody": 12, "chords": 0, "bass": -12}[role]
        part, pos, degree = np.zeros(n), 0.0, int(rng.integers(0, 7))
        lengths = [0.5, 1, 1, 2, 4] if role == "bass" else [0.25, 0.5, 0.5, 1, 1, 2, 3]
        while pos < duration_s:
            length_s = beat_s * float(rng.choice(lengths))
            if rng.random() < 0.12:                            # a rest
                pos += length_s
                continue
            degree = int(np.clip(degree + rng.integers(-2, 3), -7, 14))
            steps = (0, 2, 4) if role == "chords" else (0,)     # a triad on the scale
            chord = [root + octave + 12 * ((degree + s) // 7) + scale[(degree + s) % 7] for s in steps]
            start = int(pos * sample_rate)
            for note in chord:
                f0 = _midi_hz(note)
                while f0 < low_hz:
                    f0 *= 2.0
                while f0 > high_hz:
                    f0 /= 2.0
                _add_at(part, tone(instrument, f0, length_s, rng, sample_rate)
                        * rng.uniform(0.4, 1.0), start)
            pos += length_s
        mix += part / max(rms(part), 1e-9) * db_to_gain(rng.uniform(-8, 0))
    if rng.random() < 0.4:                                     # drums on an eighth-note grid
        drums = np.zeros(n)
        step = beat_s / 2
        for k in range(int(duration_s / step)):
            for label, chance in (("bass", 0.5 if k % 4 == 0 else 0.1),
                                  ("snare", 0.5 if k % 4 == 2 else 0.05), ("hi-hat", 0.6)):
                if rng.random() < chance:
                    _add_at(drums, drum_hit(label, rng, sample_rate) * rng.uniform(0.4, 1.0),
                            int(k * step * sample_rate))
        mix += drums / max(rms(drums), 1e-9) * db_to_gain(rng.uniform(-10, -2))
    mix = apply_room(mix.astype(np.float32), room_impulse_response(
        rng, sample_rate, rt60_s=rng.uniform(0.2, 1.2), direct_to_reverb_db=rng.uniform(-3, 10)))
    return (mix * (0.1 / max(rms(mix), 1e-9))).astype(np.float32)


def music_windows(count: int, rng: np.random.Generator, clip_s: float = 1.0,
                  sample_rate: int = 16000, per_piece: int = 8,
                  level_db: tuple[float, float] = (-40.0, -18.0)) -> np.ndarray:
    """``count`` windows ``(count, clip_s * sample_rate)`` float32 cut at random from
    ``count / per_piece`` random pieces (`music_piece`), each at an RMS level uniform in
    ``level_db`` dBFS, peak-limited to 1. More windows per piece cost less synthesis; fewer
    give more pieces (keys, instruments, rooms) for the same count."""
    n = int(round(clip_s * sample_rate))
    out = np.zeros((count, n), np.float32)
    made = 0
    while made < count:
        piece = music_piece(rng, duration_s=max(2.0 * clip_s, 8.0), sample_rate=sample_rate)
        for _ in range(min(per_piece, count - made)):
            start = int(rng.integers(0, len(piece) - n + 1))
            window = piece[start:start + n].astype(np.float64)
            window *= db_to_gain(rng.uniform(*level_db)) / max(rms(window), 1e-9)
            out[made] = window / max(1.0, float(np.max(np.abs(window))))
            made += 1
    return out
