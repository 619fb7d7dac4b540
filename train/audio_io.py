"""Reading audio files into the one format training uses: float32 mono in [-1, 1] at a given rate.

Every dataset arrives in its own format (UrbanSound8K alone mixes 44.1/48 kHz, stereo and
16/24-bit WAV); `load_audio` hides that so loaders and models see a single format. A file that
cannot be decoded raises `AudioDecodeError`, whose message names the file, the reason and what to
do, so a loader can warn and skip it instead of dying halfway through a dataset. Fitting a clip
to a length is `train.waveforms.fit_length`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from device.resample import resample

__all__ = ["AudioDecodeError", "load_audio", "to_mono"]


class AudioDecodeError(Exception):
    """A file could not be read as audio; the message names the file, the reason and the fix."""

    def __init__(self, path, reason: str, fix: str = "re-encode or re-download it, or delete it "
                 "so the loader stops warning"):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode audio file {self.path}: {reason}; {fix}")


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Downmix ``(n,)`` or ``(n, channels)`` audio to ``(n,)`` by the mean of the channels.

    The mean (not a single channel) keeps a source that is panned to one side.
    """
    x = np.asarray(audio)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {x.shape}")
    return x.mean(axis=1)


def load_audio(path, sample_rate: int) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at ``sample_rate``.

    Parameters
    ----------
    path : str or Path
        Any file libsndfile reads (WAV, FLAC, OGG...), 8/16/24/32-bit integer or float samples,
        any number of channels, any sample rate.
    sample_rate : int
        Target rate in Hz; other rates are resampled with `device.resample.resample` at
        ``INPUT_QUALITY``, as the device resamples its capture.

    Returns
    -------
    np.ndarray
        Shape ``(n,)``, float32, in [-1, 1] (float files are clipped to that range).

    Raises
    ------
    AudioDecodeError
        The file is missing, not audio, truncated beyond repair, or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "no such file", "check the path and the dataset layout")
    if path.stat().st_size == 0:
        raise AudioDecodeError(path, "the file is empty (0 bytes)",
                               "re-download or re-export it, or delete it")
    try:
        # always_2d + float32: soundfile scales every integer width (8-bit unsigned included)
        # to [-1, 1), so no per-format scaling lives here.
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(path, f"libsndfile says {str(exc).strip()!r}") from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "the file decodes to zero samples",
                               "re-export it with audio in it, or delete it")
    mono = to_mono(data)
    if not np.all(np.isfinite(mono)):
        raise AudioDecodeError(path, "the file holds NaN or infinite samples",
                               "re-export it as integer PCM")
    mono = np.clip(mono, -1.0, 1.0)
    return resample(mono, file_rate, sample_rate)
