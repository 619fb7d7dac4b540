"""load_audio: every width, rate and channel count in, float32 mono at the asked rate out."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from device.resample import resample
from train.audio_io import AudioDecodeError, load_audio, to_mono


def _tone(sample_rate: int, seconds: float, hz: float = 440.0, amplitude: float = 0.5):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float64)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_wav_width_loads_scaled_to_unit_range(tmp_path, subtype):
    path = tmp_path / f"tone_{subtype}.wav"
    sf.write(path, _tone(16000, 0.5), 16000, subtype=subtype)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == 8000
    # 8-bit keeps ~48 dB of dynamic range, so it gets the loosest tolerance.
    tol = 1e-2 if subtype == "PCM_U8" else 1e-4
    np.testing.assert_allclose(audio, _tone(16000, 0.5), atol=tol)


def test_flac_stereo_48k_is_downmixed_by_mean_and_resampled(tmp_path):
    left, right = _tone(48000, 1.0, 300.0, 0.6), np.zeros(48000)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="PCM_24")
    audio = load_audio(path, 16000)
    assert audio.shape == (16000,) and audio.dtype == np.float32
    # The mean of a 0.6 tone and silence is a 0.3 tone (not 0.6: no channel picking).
    assert abs(np.max(np.abs(audio[1000:-1000])) - 0.3) < 0.01
    np.testing.assert_allclose(audio[1000:-1000], _tone(16000, 1.0, 300.0, 0.3)[1000:-1000],
                               atol=5e-3)


def test_float_wav_out_of_range_is_clipped(tmp_path):
    path = tmp_path / "hot.wav"
    sf.write(path, np.full(1600, 1.5), 16000, subtype="FLOAT")
    audio = load_audio(path, 16000)
    assert audio.max() == pytest.approx(1.0)


def test_garbage_file_raises_decode_error_naming_file_and_fix(tmp_path):
    path = tmp_path / "not_audio.wav"
    path.write_bytes(b"this is a text file, not RIFF" * 10)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, 16000)
    message = str(info.value)
    assert str(path) in message and "libsndfile" in message and "re-encode" in message


def test_empty_file_raises_decode_error(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(path, 16000)


def test_header_only_wav_raises_zero_samples(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0), 16000, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match="zero samples"):
        load_audio(path, 16000)


def test_truncated_wav_loads_the_samples_that_are_there(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, _tone(16000, 1.0), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 4000])  # header + 4000 samples; the header claims 16000
    audio = load_audio(path, 16000)
    assert len(audio) == 4000
    np.testing.assert_allclose(audio, _tone(16000, 0.25), atol=1e-4)


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "nope.wav", 16000)


def test_urbansound8k_sample_formats_all_load_as_16k_mono(dataset_dir):
    root = dataset_dir("urbansound8k_sample") / "audio"
    files = sorted(root.glob("*.wav"))
    assert len(files) == 10
    seen = set()
    for path in files:
        info = sf.info(str(path))
        seen.add((info.samplerate, info.channels, info.subtype))
        audio = load_audio(path, 16000)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) - info.frames * 16000 / info.samplerate) <= 1
        assert np.max(np.abs(audio)) <= 1.0 and np.max(np.abs(audio)) > 0
    # The sample is there to cover these formats; make sure it still does.
    assert (48000, 2, "PCM_24") in seen and (44100, 2, "PCM_16") in seen


def test_helpers():
    assert to_mono(np.array([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0.5, 0.5]
    assert len(resample(np.zeros(44100, np.float32), 44100, 16000)) == 16000
