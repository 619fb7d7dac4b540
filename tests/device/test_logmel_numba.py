"""device/logmel_numba.py: the numba log-mel kernel is the NumPy one to float rounding, and with
it streaming still equals batch exactly."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from device.config import load_config
from device.frontend import LogMelConfig, LogMelStream, log_mel

ESN = LogMelConfig.from_config(load_config("default"), "esn")


@pytest.mark.parametrize("cfg", [ESN, replace(ESN, kernel="numba", sample_rate=16000, n_mels=40,
                                               window_ms=25.0, hop_ms=10.0, fmax_hz=8000.0)],
                         ids=["esn", "keyword-like (400-sample window in a 512 FFT)"])
def test_numba_kernel_equals_the_numpy_kernel(cfg):
    assert cfg.kernel == "numba"
    x = (np.random.default_rng(0).standard_normal(cfg.sample_rate) * 0.1).astype(np.float32)
    x[1000:1400] = 0.0                                        # digital silence: the log floor
    fast, ref = log_mel(x, cfg), log_mel(x, replace(cfg, kernel="numpy"))
    assert fast.shape == ref.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=2e-5)


KEYWORD = replace(LogMelConfig.from_config(load_config("default"), "keyword"), kernel="numba")
# A hop longer than the window: the samples between two frames belong to none (skipped).
SPARSE = replace(ESN, window_ms=8.0, hop_ms=20.0)


CLASSIFIER = replace(LogMelConfig.from_config(load_config("default"), "classifier"), kernel="numba")


@pytest.mark.parametrize("cfg", [ESN, KEYWORD, CLASSIFIER, SPARSE],
                         ids=["esn", "keyword", "classifier", "hop>window"])
def test_streaming_equals_batch_exactly_with_the_numba_kernel(cfg):
    """The fused push (`logmel_numba.FrameStream`: buffering and frames in one call) returns the
    batch kernel's frames bit for bit, whatever the chunking; its buffer count is the NumPy
    stream's after every push."""
    x = (np.random.default_rng(1).standard_normal(2 * cfg.sample_rate) * 0.2).astype(np.float32)
    cuts = [1, 127, 128, 500, 4001, 4002, 4002, 4642, 5282, 9000]
    stream, ref = LogMelStream(cfg), LogMelStream(replace(cfg, kernel="numpy"))
    assert stream._fused is not None
    parts = []
    for chunk in np.split(x, cuts):
        parts.append(stream.push(chunk))
        assert len(ref.push(chunk)) == len(parts[-1])
        assert stream.pending_samples == ref.pending_samples
    assert np.array_equal(np.concatenate(parts), log_mel(x, cfg))
    assert stream.frames_emitted == len(log_mel(x, cfg))


def test_a_reset_fused_stream_starts_as_a_new_one():
    x = (np.random.default_rng(2).standard_normal(3000) * 0.2).astype(np.float32)
    used = LogMelStream(KEYWORD)
    used.push(x[:1234])                     # a partial frame buffered, then a gap
    used.reset()
    assert used.pending_samples == 0
    assert np.array_equal(used.push(x), LogMelStream(KEYWORD).push(x))


def test_an_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="frontend kernel 'fftw' is unknown"):
        log_mel(np.zeros(800, np.float32), replace(ESN, kernel="fftw"))
