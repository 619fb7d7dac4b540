"""Synthetic music (train/synth/music.py), the wake readout's music negatives: repeatable by seed,
at the levels asked, pitched where an instrument is pitched, and tonal where noise is not."""
from __future__ import annotations

import numpy as np
import pytest

from train.synth.augment import coloured_noise
from train.synth.music import INSTRUMENTS, music_piece, music_windows, tone
from train.waveforms import rms

RATE = 16000


def _flatness(x: np.ndarray) -> float:
    """Spectral flatness (geometric / arithmetic mean of the power spectrum, 100 Hz-6 kHz):
    near 1 for white noise, near 0 for a few sharp partials."""
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2 + 1e-20
    band = power[int(100 * len(x) / RATE):int(6000 * len(x) / RATE)]
    return float(np.exp(np.mean(np.log(band))) / np.mean(band))


def test_windows_repeat_by_seed_and_differ_between_seeds():
    a = music_windows(10, np.random.default_rng(3))
    b = music_windows(10, np.random.default_rng(3))
    c = music_windows(10, np.random.default_rng(4))
    assert a.shape == (10, RATE) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # windows of one piece are other parts of it, not copies
    assert not np.allclose(a[0], a[1])


def test_windows_sit_at_the_levels_asked_and_never_clip():
    w = music_windows(24, np.random.default_rng(0), level_db=(-30.0, -20.0))
    assert np.isfinite(w).all() and np.abs(w).max() <= 1.0
    level_db = 20 * np.log10(rms(w.astype(np.float64), axis=1))
    # the peak limit only lowers a window's level
    assert (level_db <= -20.0 + 1e-3).all() and (level_db >= -31.0).all(), level_db
    assert level_db.max() - level_db.min() > 3.0            # a spread, not one level


@pytest.mark.parametrize("instrument", sorted(INSTRUMENTS))
def test_each_instrument_plays_its_note(instrument):
    f0 = 262.0                                             # middle C: every instrument's range
    note = tone(instrument, f0, 0.5, np.random.default_rng(1), RATE)
    assert np.isfinite(note).all() and np.max(np.abs(note)) == pytest.approx(1.0)
    held = note[int(0.1 * RATE):int(0.4 * RATE)]
    spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held))))
    freqs = np.fft.rfftfreq(len(held), 1 / RATE)
    peak_hz = freqs[np.argmax(spectrum)]
    if instrument == "bell":
        # FM: the carrier and sidebands at f0 +- n * ratio * f0, so energy sits at the carrier
        assert spectrum[np.abs(freqs - f0) < 8].max() > 0.05 * spectrum.max()
    else:
        harmonic = peak_hz / f0
        assert abs(harmonic - round(harmonic)) < 0.06 and round(harmonic) >= 1, (peak_hz, harmonic)
    # and it ends: the release leaves the tail quiet
    assert rms(note[-int(0.05 * RATE):]) < 0.1 * rms(held)


def test_unknown_instrument_names_the_choices():
    with pytest.raises(ValueError, match="piano"):
        tone("theremin", 440.0, 0.5, np.random.default_rng(0))


def test_music_is_tonal_where_noise_is_not():
    rng = np.random.default_rng(5)
    music = [_flatness(w) for w in music_windows(16, rng)]
    noise = [_flatness(coloured_noise(RATE, "pink", rng)) for _ in range(4)]
    assert np.median(music) < 0.1 < min(noise), (np.median(music), min(noise))


def test_a_piece_is_its_length_at_its_level():
    piece = music_piece(np.random.default_rng(2), duration_s=3.0)
    assert piece.shape == (3 * RATE,) and piece.dtype == np.float32
    assert rms(piece.astype(np.float64)) == pytest.approx(0.1, rel=1e-3)
