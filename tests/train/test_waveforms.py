"""The shared waveform helpers: length fitting, level, mixing at an SNR or a share, augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from train import waveforms as wf

SR = 16000


def test_fit_length_start_pads_and_trims_at_the_end():
    assert wf.fit_length(np.ones(5), 8, align="start").tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert wf.fit_length(np.arange(10), 3, align="start").tolist() == [0, 1, 2]
    assert wf.fit_length(np.arange(10), 3, align="start", offset=2).tolist() == [2, 3, 4]


def test_fit_length_centre_pads_and_trims_both_ends():
    # the odd sample of padding or trimming goes to the end
    assert wf.fit_length(np.ones(5), 8, align="centre").tolist() == [0, 1, 1, 1, 1, 1, 0, 0]
    assert wf.fit_length(np.arange(10), 3, align="centre").tolist() == [3, 4, 5]
    assert wf.fit_length(np.arange(10), 4, align="centre", offset=2).tolist() == [4, 5, 6, 7]


def test_fit_length_returns_a_new_float32_array_and_checks_the_alignment():
    x = np.arange(10, dtype=np.float32)
    for align in wf.ALIGNMENTS:
        out = wf.fit_length(x, 10, align=align)
        assert out.dtype == np.float32 and out.shape == (10,)
        out[0] = -1.0
        assert x[0] == 0.0
    with pytest.raises(ValueError, match="align"):
        wf.fit_length(x, 4, align="end")


def test_rms_of_clips_and_rows():
    x = np.full(100, 0.5, np.float32)
    assert wf.rms(x) == pytest.approx(0.5) and isinstance(wf.rms(x), float)
    assert wf.mean_square(x) == pytest.approx(0.25)
    assert wf.rms(np.zeros(0)) == 0.0
    rows = np.stack([x, 2 * x, 0 * x])
    np.testing.assert_allclose(wf.rms(rows), [0.5, 1.0, 0.0])
    # a float level keeps a float32 clip float32 when it scales it
    assert (x * (0.1 / wf.rms(x))).dtype == np.float32


def test_db_to_gain():
    assert wf.db_to_gain(-20.0) == pytest.approx(0.1) and isinstance(wf.db_to_gain(6.0), float)
    np.testing.assert_allclose(wf.db_to_gain(np.array([0.0, 20.0])), [1.0, 10.0])


def test_mix_at_snr_hits_the_ratio_per_row():
    rng = np.random.default_rng(1)
    signal, noise = rng.standard_normal(8000), rng.standard_normal(8000) * 3
    mixed = wf.mix_at_snr(signal, noise, 10.0)
    assert mixed.dtype == np.float32
    assert 20 * np.log10(wf.rms(signal) / wf.rms(mixed - signal)) == pytest.approx(10.0, abs=1e-3)
    signals = rng.standard_normal((3, 8000)).astype(np.float32)
    snr = np.array([0.0, 10.0, 30.0])
    rows = wf.mix_at_snr(signals, rng.standard_normal((3, 8000)), snr)
    got = 20 * np.log10(wf.rms(signals) / wf.rms(rows - signals))
    np.testing.assert_allclose(got, snr, atol=1e-3)


def test_mix_at_snr_leaves_the_signal_where_either_part_is_silent():
    signal = np.ones(100, np.float32)
    np.testing.assert_array_equal(wf.mix_at_snr(signal, np.zeros(100), 10.0), signal)
    np.testing.assert_array_equal(wf.mix_at_snr(np.zeros(100), np.ones(100), 10.0), 0.0)


def test_mix_at_share_keeps_energy_ratio_and_level():
    rng = np.random.default_rng(1)
    kw = rng.standard_normal((4, SR)).astype(np.float32) * 0.1
    scene = rng.standard_normal((4, SR)).astype(np.float32) * 0.5
    share = np.array([0.5, 0.6, 0.4, 0.8])
    mixed = wf.mix_at_share(kw, scene, share)
    k_part = kw * np.sqrt(share)[:, None]
    s_part = mixed - k_part
    ratio = np.mean(k_part ** 2, 1) / np.mean(s_part ** 2, 1)
    np.testing.assert_allclose(ratio, share / (1 - share), rtol=1e-3)
    # the mixture keeps (about) the foreground clip's level
    np.testing.assert_allclose(np.mean(mixed ** 2, 1), np.mean(kw ** 2, 1), rtol=0.05)
    one = wf.mix_at_share(kw[0], scene[0], 0.5)
    assert one.shape == (SR,)
    np.testing.assert_allclose(one, wf.mix_at_share(kw[:1], scene[:1], 0.5)[0])


def test_empty_foreground_keeps_its_level_and_background_is_not_boosted():
    rng = np.random.default_rng(2)
    kw = rng.standard_normal((3, SR)).astype(np.float32) * np.array([[1e-4], [0.1], [0.1]], np.float32)
    scene = rng.standard_normal((3, SR)).astype(np.float32)
    mixed = wf.mix_at_share(kw, scene, 0.6, foreground_is_empty=np.array([True, False, False]))
    scene_part = mixed[0] - kw[0]
    # scaled against the full clips' energy (0.01), not against the empty clip's 1e-8
    assert np.mean(scene_part ** 2) == pytest.approx(0.4 * 0.01, rel=0.05)


def test_time_shift_moves_and_zero_fills():
    x = np.tile(np.arange(1, 11, dtype=np.float32), (50, 1))
    out = wf.time_shift(x, 3, np.random.default_rng(0))
    for row in out:
        nz = row[row != 0]
        assert len(nz) >= 7 and np.all(np.diff(nz) == 1)  # a contiguous, shifted run
    assert wf.time_shift(x, 0, np.random.default_rng(0)) is x


def test_speed_perturbation_changes_duration_about_the_centre():
    rng = np.random.default_rng(0)
    burst = np.zeros((1, SR), np.float32)
    burst[0, 6000:10000] = 1.0  # 4000 samples centred on the clip
    assert wf.speed_perturb(burst, 0.0, rng, sample_rate_hz=SR) is burst
    out = wf.speed_perturb(np.repeat(burst, 200, 0), 0.2, rng, sample_rate_hz=SR)
    widths = (out > 0.5).sum(1)
    assert out.shape == (200, SR) and out.dtype == np.float32
    assert widths.min() < 3700 and widths.max() > 4300  # faster and slower takes both drawn
    assert 4000 / 1.2 - 2 <= widths.min() and widths.max() <= 4000 / 0.8 + 2
    centres = np.array([np.flatnonzero(row > 0.5).mean() for row in out])
    np.testing.assert_allclose(centres, 7999.5, atol=2)


def test_speed_perturbation_zero_fills_a_faster_clip_and_is_seeded():
    tone = np.tile(np.sin(2 * np.pi * 440 * np.arange(SR) / SR).astype(np.float32), (8, 1))
    a = wf.speed_perturb(tone, 0.15, np.random.default_rng(3), sample_rate_hz=SR)
    b = wf.speed_perturb(tone, 0.15, np.random.default_rng(3), sample_rate_hz=SR)
    np.testing.assert_array_equal(a, b)
    factors = np.random.default_rng(3).uniform(0.85, 1.15, 8)
    for row, factor in zip(a, factors):
        lit = np.flatnonzero(np.abs(row) > 1e-3)
        # a faster clip is shorter: zeros at both ends, about equally many
        expected = SR / factor
        if factor > 1.02:
            assert abs(len(lit) - expected) < 40
            assert abs(lit[0] - (SR - 1 - lit[-1])) <= 40
        else:
            assert len(lit) > SR - 40


def test_background_noise_at_the_drawn_snr_only_on_chosen_rows():
    rng = np.random.default_rng(4)
    audio = (0.1 * rng.standard_normal((40, 1000))).astype(np.float32)
    pool = [rng.standard_normal(5000).astype(np.float32), np.ones(10, np.float32)]
    assert wf.add_background_noise(audio, pool, 0.0, (10.0, 20.0), rng) is audio
    out = wf.add_background_noise(audio, pool, 0.5, (10.0, 20.0), np.random.default_rng(5))
    changed = np.any(out != audio, axis=1)
    assert 5 < changed.sum() < 35
    snr = 20 * np.log10(wf.rms(audio[changed]) / wf.rms(out[changed] - audio[changed]))
    assert snr.min() >= 10.0 - 1e-3 and snr.max() <= 20.0 + 1e-3
    # with no pool recording long enough, white noise stands in
    white = wf.noise_segments(3, 1000, np.array([1]), [np.ones(10)], np.random.default_rng(0))
    assert np.all(white[[0, 2]] == 0) and 0.8 < wf.rms(white[1]) < 1.2


def test_random_gain_stays_within_its_range():
    audio = np.ones((200, 10), np.float32)
    out = wf.random_gain(audio, 6.0, np.random.default_rng(0))
    level_db = 20 * np.log10(out[:, 0])
    assert out.dtype == np.float32
    assert level_db.min() >= -6.0 - 1e-4 and level_db.max() <= 6.0 + 1e-4
    assert level_db.std() > 2.0
