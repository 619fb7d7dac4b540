"""The audio frontend: the one feature definition shared by training and the device.

Training imports these functions; the device runs the streaming classes on live audio. Both go
through the same private kernel (``_power_frames_to_log_mel``), so a clip cut into any chunks
gives the same frames as the whole clip (tests/device/test_frontend.py proves it).

Two front ends:

* **log-mel** (`LogMelConfig`, `log_mel`, `LogMelStream`): keyword, scene, ESN and classifier
  inputs. Frames are not centred: frame ``t`` covers samples ``[t*hop, t*hop + window)``, so a
  stream can emit a frame as soon as its last sample arrives, with no look-ahead.
* **STFT** (`STFTConfig`, `stft`, `istft`, `log_magnitude`, `STFTStream`): the separation
  network's input and the inverse that turns masked spectra back into audio.

Input may be int16 (what ALSA captures), int32, uint8 or float in [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import numpy as np

__all__ = [
    "LogMelConfig", "STFTConfig", "as_float_audio", "hz_to_mel", "mel_to_hz", "mel_filterbank",
    "frame_signal", "log_mel", "LogMelStream", "stft", "istft", "log_magnitude", "STFTStream",
    "num_frames", "pcen", "silence_value",
]


# --------------------------------------------------------------------------- configuration
class _FramingMixin:
    """Window/hop in samples and construction from a profile section, for both front ends."""

    _DEFAULT_SECTION = "keyword"

    @property
    def window_length(self) -> int:
        """Window in samples."""
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Hop in samples."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @classmethod
    def from_mapping(cls, section: Mapping):
        """Build from a profile section such as ``cfg.section("frontend.keyword")``; keys the
        class does not know (e.g. a manifest's ``name``) are ignored."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: section[k] for k in names if k in section})

    @classmethod
    def from_config(cls, cfg, name: str | None = None):
        """Build from a loaded profile: ``LogMelConfig.from_config(cfg, "esn")``."""
        return cls.from_mapping(cfg.section(f"frontend.{name or cls._DEFAULT_SECTION}"))


@dataclass(frozen=True)
class LogMelConfig(_FramingMixin):
    """Log-mel parameters, each with its unit.

    Parameters
    ----------
    sample_rate : int
        Hz. Audio of another rate must be resampled before it reaches the frontend.
    window_ms, hop_ms : float
        Analysis window and hop. A longer window resolves pitch harmonics better but smears
        onsets; the hop sets the frame rate and so the cost per second.
    n_mels : int
        Mel bands. More bands cost a little more in the model's first layer.
    fmin_hz, fmax_hz : float
        Band edges. The keyword model stops at 4 kHz: speech intelligibility lives below it and
        cheap USB microphones roll off above it.
    log_floor : float
        Added before the log so digital silence stays finite.
    kernel : str
        ``"numpy"`` or ``"numba"`` (`device.logmel_numba`): the same log-mel to ~1e-6, the
        numba one without NumPy's per-call overhead, for a frontend that runs a short frame at a
        time (the ESN's). Training and the device use the frontend's kernel alike.
    compression : str
        How mel energies become features: ``"log"`` (``log(mel + log_floor)``) or ``"pcen"``
        (per-channel energy normalisation, `pcen`: each band divided by its own slow running
        mean, then root-compressed). PCEN removes a band's stationary gain, so a microphone's
        response and the room's steady noise move the features less than they move log-mel; it
        costs a running state per band and a few multiplies per frame (``numpy`` kernel only).
    pcen_time_constant_ms : float
        PCEN's smoother: the running mean forgets with this time constant. Shorter adapts to a
        new room faster but also flattens long vowels.
    pcen_alpha : float
        Gain-normalisation strength in [0, 1]: 1 divides fully by the running mean.
    pcen_delta, pcen_root : float
        The compression ``(x + delta) ** root - delta ** root`` after the division: delta sets
        where it turns from linear to root-like, root how strongly loud onsets are squashed.
    """

    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 40
    fmin_hz: float = 20.0
    fmax_hz: float = 4000.0
    log_floor: float = 1e-6
    kernel: str = "numpy"
    compression: str = "log"
    pcen_time_constant_ms: float = 400.0
    pcen_alpha: float = 0.98
    pcen_delta: float = 2.0
    pcen_root: float = 0.5

    def __post_init__(self):
        if self.kernel not in ("numpy", "numba"):
            raise ValueError(f"frontend kernel {self.kernel!r} is unknown; use \"numpy\" or "
                             f"\"numba\"")
        if self.compression not in ("log", "pcen"):
            raise ValueError(f"frontend compression {self.compression!r} is unknown; use "
                             f"\"log\" or \"pcen\"")
        if self.compression == "pcen" and self.kernel != "numpy":
            raise ValueError("frontend compression \"pcen\" runs on the \"numpy\" kernel only; "
                             f"set kernel = \"numpy\" (it is {self.kernel!r}) or compression = \"log\"")

    @property
    def n_fft(self) -> int:
        """FFT size: the next power of two at or above the window."""
        return 1 << (self.window_length - 1).bit_length()

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def pcen_smoothing(self) -> float:
        """PCEN's per-frame smoothing coefficient ``s`` (``M <- (1 - s) M + s E``)."""
        return float(1.0 - np.exp(-self.hop_ms / self.pcen_time_constant_ms))


@dataclass(frozen=True)
class STFTConfig(_FramingMixin):
    """STFT parameters for separation: 8 kHz, 32 ms square-root Hann window, 8 ms hop.

    The square-root Hann window is used for analysis and synthesis, so that at a hop of a
    quarter window the overlap-added product of the two windows is constant and `istft`
    reconstructs the input exactly.
    """

    sample_rate: int = 8000
    window_ms: float = 32.0
    hop_ms: float = 8.0
    window: str = "sqrt_hann"
    log_floor: float = 1e-6
    _DEFAULT_SECTION = "separation"

    @property
    def n_fft(self) -> int:
        return self.window_length

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1



# --------------------------------------------------------------------------- small pure functions
def as_float_audio(samples: np.ndarray) -> np.ndarray:
    """Integer PCM or float audio -> float32 in [-1, 1].

    int16 is scaled by 1/32768 (what ALSA delivers), int32 by 1/2**31, uint8 is offset-binary.
    Float input is passed through as float32 (no clipping: the caller owns gain).
    """
    if type(samples) is np.ndarray and samples.dtype == np.float32:
        return samples           # the common case (every block of a pipeline): no checks more
    x = np.asarray(samples)
    if x.dtype == np.int16:
        return x.astype(np.float32) * np.float32(1.0 / 32768.0)
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise TypeError(f"audio samples must be int16, int32, uint8 or float, got {x.dtype}")


def hz_to_mel(frequency_hz):
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    f = np.asarray(frequency_hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    mel = f / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def mel_to_hz(mel):
    """Inverse of `hz_to_mel`."""
    m = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin_hz: float,
                   fmax_hz: float) -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``, float32, Slaney area norm.

    Matches ``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=..., fmax=...)``.
    The result is cached and read-only: callers share one copy.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin_hz), hz_to_mel(fmax_hz), n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]  # equal area per band
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=16)
def _periodic_hann(length: int, n_fft: int, sqrt: bool = False) -> np.ndarray:
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    if sqrt:
        window = np.sqrt(window)
    padded = np.zeros(n_fft, dtype=np.float32)
    padded[:length] = window
    padded.setflags(write=False)
    return padded


def num_frames(n_samples: int, window_length: int, hop_length: int) -> int:
    """Frames a clip of ``n_samples`` yields with no padding (0 when shorter than a window)."""
    return 0 if n_samples < window_length else 1 + (n_samples - window_length) // hop_length


def frame_signal(x: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Read-only view of shape ``(n_frames, window_length)``; frame t starts at ``t * hop``."""
    n = num_frames(len(x), window_length, hop_length)
    if n == 0:
        return np.zeros((0, window_length), dtype=x.dtype)
    return np.lib.stride_tricks.as_strided(
        x, shape=(n, window_length), strides=(x.strides[0] * hop_length, x.strides[0]),
        writeable=False)


def _mel_energies(frames: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Frames -> mel energies (power through the filterbank), float32, no compression."""
    window = _periodic_hann(cfg.window_length, cfg.n_fft)[: cfg.window_length]
    spectrum = np.fft.rfft(frames * window, n=cfg.n_fft, axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz)
    return power @ fb.T


def pcen(energies: np.ndarray, cfg: LogMelConfig, state: np.ndarray | None = None):
    """Per-channel energy normalisation of mel energies (Wang et al., 2017).

    ``M[t] = (1 - s) M[t-1] + s E[t]`` per band (``s`` = `LogMelConfig.pcen_smoothing`), then
    ``(E / (log_floor + M) ** alpha + delta) ** root - delta ** root``. Causal, so a stream and
    the batch over the same audio give the same frames.

    Parameters
    ----------
    energies : np.ndarray
        ``(frames, n_mels)`` mel energies (`_mel_energies`).
    cfg : LogMelConfig
        The frontend, with ``compression = "pcen"``'s parameters.
    state : np.ndarray, optional
        ``M`` of the frame before the first one (float64, ``(n_mels,)``), as returned by the
        previous call. None starts the smoother at the first frame's energy, as if the audio
        before it had been like it (what a clip cut from silence or steady noise wants).

    Returns
    -------
    (np.ndarray, np.ndarray)
        float32 ``(frames, n_mels)`` features and the state after the last frame.
    """
    e = np.asarray(energies, np.float64)
    if len(e) == 0:
        return np.zeros((0, cfg.n_mels), np.float32), state
    s = cfg.pcen_smoothing
    m = e[0] if state is None else state
    # A plain recursion: one or a few frames per call on the device, where scipy's lfilter
    # costs ~30x more per call; the same arithmetic in batch and stream.
    if len(e) == 1:
        smooth = s * e + (1.0 - s) * m
    else:
        smooth = np.empty_like(e)
        for t in range(len(e)):
            m = smooth[t] = s * e[t] + (1.0 - s) * m
    x = e * np.exp(-cfg.pcen_alpha * np.log(cfg.log_floor + smooth)) + cfg.pcen_delta
    x = np.sqrt(x) if cfg.pcen_root == 0.5 else x ** cfg.pcen_root
    x -= cfg.pcen_delta ** cfg.pcen_root
    return x.astype(np.float32), smooth[-1].copy()


def silence_value(cfg: LogMelConfig) -> float:
    """The feature value of digital silence: what a window is filled with before audio comes
    (``log(log_floor)``, or 0 for PCEN, whose silence after silence is exactly 0)."""
    if isinstance(cfg, Mapping):
        cfg = LogMelConfig.from_mapping(cfg)
    return 0.0 if cfg.compression == "pcen" else float(np.log(cfg.log_floor))


def _power_frames_to_log_mel(frames: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """The kernel both APIs share: windowed frames -> log mel energies, float32.

    With ``compression = "pcen"`` it returns the mel energies themselves; the caller owns
    PCEN's running state (`pcen`)."""
    if cfg.compression == "pcen":
        return _mel_energies(frames, cfg)
    if cfg.kernel == "numba":              # LogMelConfig allows "numpy" and "numba" only
        from .logmel_numba import log_mel_frames
        return log_mel_frames(frames, cfg)
    return np.log(_mel_energies(frames, cfg) + np.float32(cfg.log_floor)).astype(np.float32)


def _numpy_kernel(cfg: LogMelConfig):
    """`_power_frames_to_log_mel`'s NumPy branch with its window, filterbank and sizes looked
    up once: the same operations on the same arrays, so the same numbers bit for bit, without
    the per-call property, cache and dispatch look-ups that cost as much as the FFT of a 10 ms
    frame (cProfile of a long ``detect`` run)."""
    window = _periodic_hann(cfg.window_length, cfg.n_fft)[: cfg.window_length]
    fb_t = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz).T
    n_fft, floor, rfft = cfg.n_fft, np.float32(cfg.log_floor), np.fft.rfft

    def kernel(frames: np.ndarray) -> np.ndarray:
        # The same operations in place (x ** 2 is np.square; the sum and the log are float32
        # already, so the batch kernel's last astype only copied): fewer temporaries per call
        spectrum = rfft(frames * window, n=n_fft, axis=-1)
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        mel = power.astype(np.float32) @ fb_t
        mel += floor
        return np.log(mel, out=mel)
    return kernel


# --------------------------------------------------------------------------- log-mel
def log_mel(samples: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Batch API: a whole clip -> log-mel frames of shape ``(n_frames, n_mels)``, float32.

    ``n_frames = 1 + (len - window) // hop``; a clip shorter than one window gives zero frames.
    With ``cfg.compression = "pcen"`` the frames are PCEN's (`pcen`), its state starting at the
    clip's first frame.
    """
    x = as_float_audio(samples)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects mono audio of shape (n,), got {x.shape}; downmix first")
    out = _power_frames_to_log_mel(frame_signal(np.ascontiguousarray(x), cfg.window_length,
                                                cfg.hop_length), cfg)
    return pcen(out, cfg)[0] if cfg.compression == "pcen" else out


class LogMelStream:
    """Streaming API: push any number of samples, get the log-mel frames that completed.

    Call ``push(chunk)`` with each buffer the audio source delivers (any length, int16 or
    float); it returns an array ``(k, n_mels)`` with the ``k >= 0`` frames whose last sample is
    now in. The concatenation of everything returned equals ``log_mel`` of the concatenated
    input. Memory is one window of samples; no look-ahead, so latency is one window.

    Parameters
    ----------
    cfg : LogMelConfig
        The same configuration training used (the model manifest carries it).
    """

    def __init__(self, cfg: LogMelConfig = LogMelConfig()):
        self.cfg = cfg
        self._pending = np.zeros(0, dtype=np.float32)
        self._skip = 0           # samples still to drop before the next frame (hop > window)
        self.frames_emitted = 0
        # Computed once: the properties round and multiply on every access, and a push runs
        # every hop (the ESN's whole frame costs a few microseconds).
        self._win, self._hop = cfg.window_length, cfg.hop_length
        self._index: dict[int, np.ndarray] = {}   # frames per push -> gather index (push)
        self._kernel = None      # frames -> features on the NumPy paths (set below)
        self._pcen_state = None
        self._fused = None       # the numba kernel's whole push (logmel_numba.FrameStream)
        if cfg.compression == "pcen":      # LogMelConfig allows it on the numpy kernel only
            def kernel(frames):
                out, self._pcen_state = pcen(_mel_energies(frames, cfg), cfg, self._pcen_state)
                return out
            self._kernel = kernel
        elif cfg.kernel == "numpy":
            self._kernel = _numpy_kernel(cfg)
        else:
            # Buffering and frames in one compiled call (`FrameStream`, compiled or loaded from
            # numba's cache as it is built, not inside the first live hop): the same frames,
            # bit for bit, for a third of the NumPy stream's cost on a 40 ms block.
            from .logmel_numba import FrameStream
            self._fused = FrameStream(cfg)

    def reset(self) -> None:
        """Forget buffered audio and PCEN's running mean (e.g. after a capture gap)."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._skip = 0
        self.frames_emitted = 0
        self._pcen_state = None
        if self._fused is not None:
            self._fused.reset()

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next frame (counted from its first sample)."""
        return self._fused.pending_samples if self._fused is not None else len(self._pending)

    def push(self, samples: np.ndarray) -> np.ndarray:
        # float32 (what the resampler and the pipeline hand over) needs no conversion
        x = samples if type(samples) is np.ndarray and samples.dtype == np.float32 \
            else as_float_audio(samples)
        if x.ndim != 1:
            raise ValueError(f"push expects mono audio of shape (n,), got {x.shape}")
        if self._fused is not None:
            out = self._fused.push(x)
            self.frames_emitted += len(out)
            return out
        if self._skip:
            # A hop longer than the window: the samples between two frames belong to none.
            drop = min(self._skip, len(x))
            x, self._skip = x[drop:], self._skip - drop
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        win, hop = self._win, self._hop
        n = num_frames(len(buf), win, hop)
        if n == 0:
            self._pending = buf.copy()
            return np.zeros((0, self.cfg.n_mels), dtype=np.float32)
        # One frame per push is the common case on the device (a hop per capture block); a
        # plain slice skips the strided view's set-up cost, which is most of a hop's time there.
        if n == 1:
            frames = buf[None, :win]
        elif n <= 16:
            # A block's few frames gathered by a cached index (the same values as
            # frame_signal's strided view, whose set-up costs more than the gather here)
            index = self._index.get(n)
            if index is None:
                index = self._index[n] = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
            frames = buf[index]
        else:
            frames = frame_signal(np.ascontiguousarray(buf), win, hop)
        out = self._kernel(frames)
        self._pending = buf[n * hop:].copy()
        self._skip = max(0, n * hop - len(buf))
        self.frames_emitted += n
        return out


# --------------------------------------------------------------------------- STFT for separation
def _stft_window(cfg: STFTConfig) -> np.ndarray:
    if cfg.window not in ("sqrt_hann", "hann"):
        raise ValueError(f"STFT window must be 'sqrt_hann' or 'hann', got {cfg.window!r}")
    return _periodic_hann(cfg.window_length, cfg.n_fft, sqrt=cfg.window == "sqrt_hann")


def _edge_pad(cfg: STFTConfig) -> int:
    # Pad so the first and last samples are covered by as many windows as the middle ones:
    # then the inverse is exact everywhere, not only away from the edges.
    return cfg.window_length - cfg.hop_length


def stft(samples: np.ndarray, cfg: STFTConfig = STFTConfig()) -> np.ndarray:
    """Complex STFT, shape ``(n_frames, n_bins)``, complex64; the clip is zero-padded at both
    ends by ``window - hop`` samples so that `istft` inverts it exactly."""
    x = as_float_audio(samples)
    pad = _edge_pad(cfg)
    x = np.pad(x, (pad, pad + (-(len(x) + 2 * pad - cfg.window_length)) % cfg.hop_length))
    frames = frame_signal(x, cfg.window_length, cfg.hop_length)
    return np.fft.rfft(frames * _stft_window(cfg), n=cfg.n_fft, axis=-1).astype(np.complex64)


def log_magnitude(spectrum: np.ndarray, cfg: STFTConfig = STFTConfig()) -> np.ndarray:
    """``log(|S| + floor)``, float32: the separation network's input."""
    return np.log(np.abs(spectrum) + np.float32(cfg.log_floor)).astype(np.float32)


def istft(spectrum: np.ndarray, cfg: STFTConfig = STFTConfig(), length: int | None = None) -> np.ndarray:
    """Inverse of `stft` by weighted overlap-add; ``length`` trims to the original clip."""
    window = _stft_window(cfg)
    frames = np.fft.irfft(spectrum, n=cfg.n_fft, axis=-1).astype(np.float32) * window
    hop, win = cfg.hop_length, cfg.window_length
    total = hop * (len(frames) - 1) + win
    out = np.zeros(total, dtype=np.float32)
    norm = np.zeros(total, dtype=np.float32)
    w2 = window[:win] ** 2
    for t, frame in enumerate(frames):
        out[t * hop: t * hop + win] += frame[:win]
        norm[t * hop: t * hop + win] += w2
    out /= np.maximum(norm, 1e-8)
    pad = _edge_pad(cfg)
    out = out[pad:]
    return out[:length] if length is not None else out[: max(0, len(out) - pad)]


class STFTStream:
    """Streaming STFT: push samples, get the complete frames (same as `stft` without its edge
    padding at the end). Used by the separator stage on the device."""

    def __init__(self, cfg: STFTConfig = STFTConfig()):
        self.cfg = cfg
        # Start with the same leading zeros `stft` adds, so frame t means the same in both.
        self._pending = np.zeros(_edge_pad(cfg), dtype=np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = as_float_audio(samples)
        buf = np.concatenate([self._pending, x])
        win, hop = self.cfg.window_length, self.cfg.hop_length
        n = num_frames(len(buf), win, hop)
        if n == 0:
            self._pending = buf
            return np.zeros((0, self.cfg.n_bins), dtype=np.complex64)
        frames = frame_signal(buf, win, hop)
        out = np.fft.rfft(frames * _stft_window(self.cfg), n=self.cfg.n_fft, axis=-1)
        self._pending = buf[n * hop:].copy()
        return out.astype(np.complex64)
