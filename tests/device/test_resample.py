"""One resampler for both sides: the device's stream and training's batch call give the same
samples, and the same log-mel through the 16 -> 8 kHz path of the ESN's frontend."""
from __future__ import annotations

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig, LogMelStream, log_mel
from device.resample import INPUT_QUALITY, Resampler, check_quality, resample, to_frontend_rate

PROFILE = load_config("default")


def _audio(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    # Energy right under 4 kHz, where LQ and HQ differ most: the ESN frontend's fmax_hz.
    return (0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 3900 * t)).astype(np.float32)


@pytest.mark.parametrize("quality", ["LQ", "HQ"])
@pytest.mark.parametrize("chunk", [160, 37, 1000])
def test_streaming_equals_batch_bit_for_bit(quality, chunk):
    x = _audio(16000 * 2 + 11)
    r = Resampler(16000, 8000, quality)
    parts = [r(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(r(np.zeros(0, np.float32), last=True))
    stream = np.concatenate(parts)
    batch = resample(x, 16000, 8000, quality)
    assert len(stream) == len(batch)
    assert np.array_equal(stream, batch)


def test_esn_frontend_streaming_equals_training_features():
    """The device's logmel stage (resample each hop, push frames) against training's
    `to_frontend_rate` + `log_mel` on the whole clip, with the profile's stage quality."""
    esn = LogMelConfig.from_config(PROFILE, "esn")
    x = _audio(16000 * 3, seed=1)
    batch = log_mel(to_frontend_rate(x, PROFILE, "esn"), esn)
    r = Resampler(16000, esn.sample_rate, PROFILE["resample.stage_quality"])
    stream = LogMelStream(esn)
    frames = [stream.push(r(x[i:i + 160])) for i in range(0, len(x), 160)]
    frames = np.concatenate([f for f in frames if len(f)])
    # The stream's resampler still holds its last ~40 samples: it has fewer frames, the same ones.
    assert len(batch) - 2 <= len(frames) <= len(batch)
    np.testing.assert_allclose(frames, batch[:len(frames)], atol=1e-4)


def test_rates_match_is_identity_and_bad_settings_are_named():
    x = _audio(500)
    assert Resampler(16000, 16000)(x) is not None
    assert np.array_equal(Resampler(16000, 16000)(x), x)
    assert np.array_equal(resample(x, 16000, 16000), x)
    assert check_quality(INPUT_QUALITY) == "HQ"
    with pytest.raises(ValueError, match="not a soxr quality"):
        Resampler(16000, 8000, "best")
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 8000)
