"""One resampler for training and the device: soxr, streaming and batch, same settings.

Two rate changes happen on the way to a model, and each has one quality setting in the
profile's ``[resample]`` section, read by both sides:

* **input** (`INPUT_QUALITY`, HQ): a file's or a microphone's native rate -> the pipeline rate.
  The device's capture and replay (`device.audio_source`) and training's file decoding and
  synthesis (`train.audio_io`, `train.synth`) both use it. It is a constant, not a profile key,
  because dataset loaders run without a profile, and nothing downstream is tuned to it.
* **stage** (``resample.stage_quality``): the pipeline rate -> a frontend's own rate, e.g.
  16 -> 8 kHz for the ESN's frontend. The device's ``logmel`` stage does it on the stream;
  training calls `to_frontend_rate`, which does the same on a whole clip.

Streaming (`Resampler`, any chunk sizes) and batch (`resample`) give the same samples: soxr's
stream and one-shot paths are the same filter (tests/device/test_resample.py checks it bit
for bit, and the log-mel that follows, through the 16 -> 8 kHz path).

Quality names are soxr's: ``"HQ"`` (steep, ~450 samples of delay at 16 -> 8 kHz), ``"MQ"``,
``"LQ"`` (~40 samples: 5 ms instead of 57 ms of latency on a stream, at the cost of a wider
transition band just under the new Nyquist frequency), ``"QQ"``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["QUALITIES", "INPUT_QUALITY", "Resampler", "resample", "to_frontend_rate",
           "check_quality"]

QUALITIES = ("HQ", "VHQ", "MQ", "LQ", "QQ")
INPUT_QUALITY = "HQ"  # files and capture -> pipeline rate (see the module docstring)


def check_quality(quality: str, key: str = "resample quality") -> str:
    """``quality`` if soxr knows it, else a ValueError naming ``key`` and the choices."""
    q = str(quality).upper()
    if q not in QUALITIES:
        raise ValueError(f"{key} = {quality!r} is not a soxr quality; use one of "
                         f"{', '.join(QUALITIES)}")
    return q


class Resampler:
    """Streaming mono resampler: ``out = r(chunk)`` for each chunk, ``r(tail, last=True)`` at
    the end. Identity (no soxr import) when the rates match.

    Parameters
    ----------
    in_rate, out_rate : int
        Sample rates in Hz.
    quality : str
        soxr quality (see the module docstring): delay against transition-band width.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = INPUT_QUALITY):
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        if self.in_rate <= 0 or self.out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.quality = check_quality(quality)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr
            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32",
                                               quality=self.quality)

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x, last=last)

    def reset(self) -> None:
        """Forget the filter's history (after a gap in the stream)."""
        if self._stream is not None:
            self._stream.clear()


def resample(audio: np.ndarray, orig_sample_rate: int, sample_rate: int,
             quality: str = INPUT_QUALITY) -> np.ndarray:
    """Resample a whole mono clip; the same samples `Resampler` gives for it chunk by chunk.

    A no-op (float32 copy-free view) when the rates agree.
    """
    if int(orig_sample_rate) == int(sample_rate):
        return np.asarray(audio, dtype=np.float32)
    if orig_sample_rate <= 0 or sample_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sample_rate} -> {sample_rate}")
    import soxr

    out = soxr.resample(np.asarray(audio, dtype=np.float32), int(orig_sample_rate),
                        int(sample_rate), quality=check_quality(quality))
    return np.asarray(out, dtype=np.float32)


def to_frontend_rate(audio: np.ndarray, cfg, frontend: str) -> np.ndarray:
    """Pipeline-rate audio -> the rate of ``[frontend.<frontend>]``, as the device's ``logmel``
    stage does it (``resample.stage_quality``). Training calls this for a frontend whose rate
    differs from the pipeline's, so its features are the device's."""
    return resample(audio, int(cfg["pipeline.rate"]), int(cfg[f"frontend.{frontend}.sample_rate"]),
                    cfg["resample.stage_quality"])
