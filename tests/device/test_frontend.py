"""The frontend is the one feature definition: streaming must equal batch, and both must be
the log-mel that librosa computes for the same parameters."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from device.config import load_config
from device.frontend import (LogMelConfig, LogMelStream, STFTConfig, STFTStream, as_float_audio,
                             istft, log_magnitude, log_mel, mel_filterbank, num_frames,
                             silence_value, stft)

librosa = pytest.importorskip("librosa", reason="librosa is a host dependency (make setup)")

KEYWORD = LogMelConfig()
PROFILE = load_config("default")
ALL_LOGMEL = [LogMelConfig.from_config(PROFILE, name) for name in ("keyword", "esn", "classifier")]


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def test_keyword_defaults_match_the_product_spec():
    cfg = LogMelConfig.from_config(PROFILE, "keyword")
    assert (cfg.sample_rate, cfg.window_length, cfg.hop_length, cfg.n_fft, cfg.n_mels) == \
        (16000, 400, 160, 512, 40)
    assert log_mel(_noise(16000), cfg).shape == (98, 40)
    esn = LogMelConfig.from_config(PROFILE, "esn")
    assert (esn.sample_rate, esn.hop_length) == (8000, 128)


def test_separation_stft_has_129_bins_and_inverts_exactly():
    cfg = STFTConfig.from_config(PROFILE, "separation")
    assert (cfg.window_length, cfg.hop_length, cfg.n_bins) == (256, 64, 129)
    x = _noise(8000 + 37, seed=3)
    spec = stft(x, cfg)
    assert spec.shape[1] == 129
    np.testing.assert_allclose(istft(spec, cfg, length=len(x)), x, atol=1e-5)
    assert log_magnitude(spec, cfg).dtype == np.float32


@pytest.mark.parametrize("cfg", ALL_LOGMEL, ids=["keyword", "esn", "classifier"])
def test_mel_filterbank_matches_librosa(cfg):
    ours = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                              fmin=cfg.fmin_hz, fmax=cfg.fmax_hz)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cfg", ALL_LOGMEL, ids=["keyword", "esn", "classifier"])
def test_log_mel_matches_librosa_within_1e_4(cfg):
    """Stated tolerance: 1e-4 absolute in log units (float32 FFT vs librosa's float64 path)."""
    x = _noise(cfg.sample_rate, seed=1)
    # librosa frames n_fft samples and centres the shorter window inside them; pad by half the
    # difference so frame t covers the same samples as ours.
    pad = (cfg.n_fft - cfg.window_length) // 2
    ref = librosa.feature.melspectrogram(
        y=np.pad(x, (pad, pad)), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.window_length, window="hann", center=False, power=2.0, n_mels=cfg.n_mels,
        fmin=cfg.fmin_hz, fmax=cfg.fmax_hz)
    ref = np.log(ref.T + cfg.log_floor)
    ours = log_mel(x, cfg)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(n_samples=st.integers(0, 6000), seed=st.integers(0, 2**16),
       cut_points=st.lists(st.integers(0, 6000), max_size=12))
def test_streaming_equals_batch_for_random_chunkings(n_samples, seed, cut_points):
    x = _noise(n_samples, seed)
    cuts = sorted({c for c in cut_points if c <= n_samples})
    stream = LogMelStream(KEYWORD)
    parts = [stream.push(chunk) for chunk in np.split(x, cuts)]
    streamed = np.concatenate(parts) if parts else np.zeros((0, KEYWORD.n_mels), np.float32)
    batch = log_mel(x, KEYWORD)
    assert streamed.shape == batch.shape == (num_frames(n_samples, 400, 160), 40)
    np.testing.assert_allclose(streamed, batch, atol=1e-5)
    assert stream.frames_emitted == len(batch)


def test_streaming_one_sample_at_a_time_and_int16():
    pcm = (_noise(2000, 7) * 32767).astype(np.int16)
    stream = LogMelStream(KEYWORD)
    streamed = np.concatenate([stream.push(pcm[i:i + 1]) for i in range(len(pcm))])
    np.testing.assert_allclose(streamed, log_mel(pcm, KEYWORD), atol=1e-5)
    np.testing.assert_allclose(log_mel(pcm, KEYWORD), log_mel(pcm / 32768.0, KEYWORD), atol=1e-4)


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_streaming_equals_batch_with_a_hop_longer_than_the_window(kernel):
    """Frames with gaps between them: the stream drops the samples between two frames (it
    once kept them and emitted frames at the wrong places)."""
    cfg = LogMelConfig(sample_rate=8000, window_ms=8.0, hop_ms=20.0, n_mels=16, kernel=kernel)
    x = _noise(5000, 3)
    stream = LogMelStream(cfg)
    streamed = np.concatenate([stream.push(x[i:i + 70]) for i in range(0, len(x), 70)])
    batch = log_mel(x, cfg)
    assert streamed.shape == batch.shape == (num_frames(5000, 64, 160), 16)
    # numba: frame by frame, so bit for bit; numpy batches its FFTs (1 ulp apart)
    np.testing.assert_allclose(streamed, batch, atol=1e-5 if kernel == "numpy" else 0.0, rtol=0)


def test_stft_stream_equals_batch_frames():
    cfg = STFTConfig()
    x = _noise(3000, 11)
    stream = STFTStream(cfg)
    streamed = np.concatenate([stream.push(c) for c in np.array_split(x, 17)])
    batch = stft(x, cfg)
    # The stream cannot emit the frames that need the end padding; the rest must match.
    np.testing.assert_allclose(streamed, batch[: len(streamed)], atol=1e-4)
    assert len(batch) - len(streamed) <= cfg.window_length // cfg.hop_length


def test_sine_lands_in_the_right_mel_band():
    cfg = KEYWORD
    t = np.arange(cfg.sample_rate) / cfg.sample_rate
    frames = log_mel(0.5 * np.sin(2 * np.pi * 1000.0 * t), cfg)
    band = int(np.argmax(frames.mean(axis=0)))
    centres = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin_hz, fmax=cfg.fmax_hz)[1:-1]
    assert abs(centres[band] - 1000.0) < 100.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000), np.float32))
    with pytest.raises(TypeError, match="int16"):
        as_float_audio(np.zeros(10, dtype=np.complex64))
    assert log_mel(np.zeros(100, np.float32)).shape == (0, 40)


@pytest.mark.parametrize("section", ["keyword", "classifier"])
def test_the_streams_cached_numpy_kernel_is_the_batch_kernel_bit_for_bit(section):
    """LogMelStream looks its window and filterbank up once (`_numpy_kernel`): for the same
    frames it must give `_power_frames_to_log_mel`'s numbers exactly, one frame or many."""
    from device.config import load_config
    from device.frontend import _numpy_kernel, _power_frames_to_log_mel, frame_signal
    from dataclasses import replace
    # the profile's frontends run the numba kernel (FrameStream); "numpy" stays PCEN's
    cfg = replace(LogMelConfig.from_config(load_config("default"), section), kernel="numpy")
    x = _noise(cfg.window_length * 6, 11)
    kernel = _numpy_kernel(cfg)
    for frames in (x[None, :cfg.window_length], frame_signal(x, cfg.window_length, cfg.hop_length)):
        assert np.array_equal(kernel(frames), _power_frames_to_log_mel(frames, cfg))


@pytest.mark.parametrize("block", [160 * 4, 160 * 10, 160 * 7 + 33])
def test_block_pushes_give_the_strided_framing_bit_for_bit(block):
    """Pushes of a few frames gather them by a cached index instead of frame_signal's strided
    view: the same frames, so the same log-mel bit for bit (frame_signal + kernel per push)."""
    from device.frontend import _power_frames_to_log_mel, frame_signal
    x = _noise(16000, 5)
    stream = LogMelStream(KEYWORD)
    pending = np.zeros(0, np.float32)
    for i in range(0, len(x), block):
        got = stream.push(x[i:i + block])
        buf = np.concatenate([pending, x[i:i + block]])
        n = num_frames(len(buf), 400, 160)
        want = _power_frames_to_log_mel(frame_signal(buf, 400, 160), KEYWORD) if n else got
        assert len(got) == n and np.array_equal(got, want)
        pending = buf[n * 160:]


# --------------------------------------------------------------------------- PCEN
PCEN = LogMelConfig(compression="pcen")


def test_pcen_matches_librosa():
    """The same formula as ``librosa.pcen`` fed the same mel energies, its smoother started at
    the first frame (librosa's default start is an energy of 1)."""
    x = _noise(16000, 5)
    x[4000:9000] += 0.5 * np.sin(2 * np.pi * 700.0 * np.arange(5000) / 16000)
    energies = np.exp(log_mel(x, KEYWORD).astype(np.float64)) - KEYWORD.log_floor
    ref = librosa.pcen(energies.T, sr=16000, hop_length=160, gain=PCEN.pcen_alpha,
                       bias=PCEN.pcen_delta, power=PCEN.pcen_root, b=PCEN.pcen_smoothing,
                       eps=PCEN.log_floor,
                       zi=(1 - PCEN.pcen_smoothing) * energies[:1].T).T
    np.testing.assert_allclose(log_mel(x, PCEN), ref, atol=2e-4)


@settings(max_examples=15, deadline=None)
@given(n_samples=st.integers(0, 8000), seed=st.integers(0, 2**16),
       cut_points=st.lists(st.integers(0, 8000), max_size=12))
def test_pcen_streaming_equals_batch_for_random_chunkings(n_samples, seed, cut_points):
    """PCEN's running mean is state: a stream cut anywhere carries it across pushes."""
    x = _noise(n_samples, seed) * np.linspace(0.1, 3.0, n_samples, dtype=np.float32)
    cuts = sorted({c for c in cut_points if c <= n_samples})
    stream = LogMelStream(PCEN)
    parts = [stream.push(chunk) for chunk in np.split(x, cuts)]
    streamed = np.concatenate(parts) if parts else np.zeros((0, 40), np.float32)
    np.testing.assert_allclose(streamed, log_mel(x, PCEN), atol=1e-5)


def test_pcen_reset_starts_the_running_mean_again():
    x, y = _noise(4000, 1), _noise(4000, 2) * 5
    stream = LogMelStream(PCEN)
    stream.push(x)
    stream.reset()
    np.testing.assert_allclose(stream.push(y), log_mel(y, PCEN), atol=1e-6)


def test_pcen_removes_a_steady_gain_that_moves_log_mel():
    """What PCEN is for: a louder microphone (x10, +20 dB) shifts every log-mel value by
    log(100) = 4.6 but barely moves PCEN's."""
    x = _noise(16000, 9)
    x[6000:10000] += 0.4 * np.sin(2 * np.pi * 300.0 * np.arange(4000) / 16000)
    assert np.abs(log_mel(10 * x, KEYWORD) - log_mel(x, KEYWORD)).mean() > 4.0
    assert np.abs(log_mel(10 * x, PCEN) - log_mel(x, PCEN)).mean() < 0.1


def test_silence_value_is_what_digital_silence_gives():
    for cfg in (KEYWORD, PCEN):
        frames = log_mel(np.zeros(4000, np.float32), cfg)
        np.testing.assert_allclose(frames, silence_value(cfg), atol=1e-6)
    assert silence_value({"compression": "pcen"}) == 0.0


def test_bad_compression_is_named_with_the_fix():
    with pytest.raises(ValueError, match="use \"log\" or \"pcen\""):
        LogMelConfig(compression="mfcc")
    with pytest.raises(ValueError, match="numpy"):
        LogMelConfig(compression="pcen", kernel="numba")


def test_a_resampling_logmel_stage_starts_afresh_after_a_gap():
    """After an overrun gap a logmel stage behind a resampler (16 -> 8 kHz: the profile's
    esn_frontend) gives the frames of a fresh stage: no filter history from before the gap."""
    from device.stages import build_stage
    from device.stages.base import HopContext
    cfg = PROFILE

    def frames(stage, audio):
        out = []
        for i in range(0, len(audio), 160):
            ctx = HopContext(i // 160, (i + 160) / 16000.0, audio[i:i + 160])
            stage.process(ctx)
            out.append(ctx.data["features.esn.new"])
        return np.concatenate(out)

    x, y = _noise(8000, 21), _noise(8000, 22)
    used = build_stage("esn_frontend", cfg, 16000, 0.01)
    assert used._resampler is not None
    frames(used, x)
    used.on_gap()
    fresh = build_stage("esn_frontend", cfg, 16000, 0.01)
    np.testing.assert_array_equal(frames(used, y), frames(fresh, y))
