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


def test_streaming_equals_batch_exactly_with_the_numba_kernel():
    x = (np.random.default_rng(1).standard_normal(9000) * 0.2).astype(np.float32)
    stream = LogMelStream(ESN)
    parts = [stream.push(c) for c in np.split(x, [1, 127, 128, 500, 4001, 4002])]
    assert np.array_equal(np.concatenate(parts), log_mel(x, ESN))


def test_an_unknown_kernel_is_named():
    with pytest.raises(ValueError, match="frontend kernel 'fftw' is unknown"):
        log_mel(np.zeros(800, np.float32), replace(ESN, kernel="fftw"))
