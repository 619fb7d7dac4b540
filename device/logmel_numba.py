"""The log-mel kernel compiled with numba: ``[frontend.X] kernel = "numba"``.

`device.frontend` computes log-mel frames with NumPy (``kernel = "numpy"``, the default). For a
frontend that runs one short frame at a time on the device — the ESN's 256-sample frame every
16 ms — NumPy's per-call overhead is most of the cost (about 14 us a frame here, against 1-2 us
of arithmetic), so that frontend can name this kernel instead. It is used for *every* frame of
that frontend, in training (`device.frontend.log_mel`) and on the device
(`device.frontend.LogMelStream`) alike, so streaming still equals batch exactly and a model
trains on the features it will see; the manifest carries ``kernel``, so a model trained on the
other kernel's features is refused.

The arithmetic: the frame times the periodic Hann window, zero-padded to ``n_fft`` (a power of
two), a real FFT as one complex FFT of half the size (radix 2, iterative, float64) and the usual
split into the real spectrum, power, the triangular mel filters (only each band's non-zero bins),
``log(mel + log_floor)`` in float32. It agrees with the NumPy kernel to about 1e-6 in log units
and with librosa to the frontend's stated 1e-4 (tests/device/test_frontend.py).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["log_mel_frames", "tables", "packed_tables", "frame_into", "packed_frame_into",
           "fill_window", "slide_window", "FrameStream"]

try:
    import numba as _numba
    _jit = _numba.njit(cache=True, nogil=True, boundscheck=False)
except ImportError:  # pragma: no cover - numba is a device dependency
    _numba = None


def _require_numba():
    if _numba is None:
        raise ImportError("frontend kernel \"numba\" needs numba (pip install numba), or set the "
                          "frontend's kernel = \"numpy\" and re-train")


if _numba is not None:
    @_jit
    def frame_into(frame, window, bitrev, tw_re, tw_im, sp_re, sp_im, band_start, band_len,
                   band_w, floor, zr, zi, power, out):
        """One frame ``(window_length,)`` float32 -> its log-mel in ``out (n_mels,)`` float32.

        ``zr``, ``zi`` (``n_fft / 2``) and ``power`` (``n_fft / 2 + 1``) are float64 scratch.
        The batch kernel below and the ESN's fused per-hop kernel (`device.esn`) both call
        this, so a frame's features are the same arithmetic, bit for bit, on either path.
        """
        win = frame.shape[0]
        half = bitrev.shape[0]                 # n_fft / 2 complex points
        # z[k] = x[2k] + i x[2k+1], windowed and zero-padded, in bit-reversed order
        for k in range(half):
            a, b = 2 * k, 2 * k + 1
            xr = frame[a] * window[a] if a < win else 0.0
            xi = frame[b] * window[b] if b < win else 0.0
            j = bitrev[k]
            zr[j] = xr
            zi[j] = xi
        size = 2
        while size <= half:
            step = half // size
            h = size // 2
            # Twiddle-major: each twiddle loaded once per stage. The butterflies of a stage
            # touch disjoint elements, so their order changes no result (bit for bit).
            for m in range(h):
                wr = tw_re[m * step]
                wi = tw_im[m * step]
                for start in range(0, half, size):
                    p = start + m
                    q = p + h
                    tr = wr * zr[q] - wi * zi[q]
                    ti = wr * zi[q] + wi * zr[q]
                    zr[q] = zr[p] - tr
                    zi[q] = zi[p] - ti
                    zr[p] += tr
                    zi[p] += ti
            size *= 2
        # the real spectrum X[k], k = 0..half, from Z (k % half and (half - k) % half
        # without the two integer divisions per bin)
        for k in range(half + 1):
            k1 = k if k < half else 0
            k2 = half - k if k > 0 else 0
            er = 0.5 * (zr[k1] + zr[k2])
            ei = 0.5 * (zi[k1] - zi[k2])
            orr = 0.5 * (zi[k1] + zi[k2])
            oi = -0.5 * (zr[k1] - zr[k2])
            xr = er + sp_re[k] * orr - sp_im[k] * oi
            xi = ei + sp_re[k] * oi + sp_im[k] * orr
            power[k] = xr * xr + xi * xi
        for m in range(band_start.shape[0]):
            acc = 0.0
            s = band_start[m]
            for j in range(band_len[m]):
                acc += band_w[m, j] * power[s + j]
            out[m] = np.float32(np.log(np.float32(acc) + floor))

    @_jit
    def _kernel(frames, window, bitrev, tw_re, tw_im, sp_re, sp_im, band_start, band_len,
                band_w, floor, out):
        half = bitrev.shape[0]
        zr = np.empty(half)
        zi = np.empty(half)
        power = np.empty(half + 1)
        for f in range(frames.shape[0]):
            frame_into(frames[f], window, bitrev, tw_re, tw_im, sp_re, sp_im, band_start,
                       band_len, band_w, floor, zr, zi, power, out[f])
        return 2 * half


    @_jit
    def packed_frame_into(frame, fe_f, fe_i, band_w, scratch, out):
        """`frame_into` on the tables `packed_tables` made, for the fused per-push kernels (this
        module's `_stream`, the ESN's `device.esn._hop`): fe_f rows = window, twiddle cos/sin,
        split cos/sin, [log_floor]; fe_i rows = bit reversal, band starts, band lengths,
        [n_fft / 2, n_bands]; scratch: ``3 * n_fft / 2 + 1`` float64."""
        win = frame.shape[0]
        half, n_bands = fe_i[3, 0], fe_i[3, 1]
        frame_into(frame, fe_f[0, :win], fe_i[0, :half], fe_f[1, :half], fe_f[2, :half],
                   fe_f[3, :half + 1], fe_f[4, :half + 1], fe_i[1, :n_bands],
                   fe_i[2, :n_bands], band_w, np.float32(fe_f[5, 0]), scratch[:half],
                   scratch[half:2 * half], scratch[2 * half:3 * half + 1], out)

    @_jit
    def fill_window(samples, s, buf, state):
        """Samples from index ``s`` on into the one-window buffer ``buf`` until it is full or
        they run out (first dropping the samples a hop longer than the window skips); returns
        the next index. ``state`` = [samples in buf, samples still to skip, hop, ...], updated.
        With `slide_window`, the buffering both fused kernels share (`_stream` here, the ESN's
        `device.esn._hop`): the frames of a stream are those of the batch however it is cut."""
        n = samples.shape[0]
        if state[1] > 0:
            take = min(state[1], n - s)
            state[1] -= take
            s += take
            if state[1] > 0:
                return s
        fill = state[0]
        take = min(buf.shape[0] - fill, n - s)
        for j in range(take):
            buf[fill + j] = samples[s + j]
        state[0] = fill + take
        return s + take

    @_jit
    def slide_window(buf, state):
        """After a full window's frame: keep its last ``window - hop`` samples, or, for a hop
        longer than the window, none and skip the ``hop - window`` after it."""
        win, hop = buf.shape[0], state[2]
        if hop < win:
            for j in range(win - hop):      # forward: no element is read after its write
                buf[j] = buf[j + hop]
            state[0] = win - hop
        else:
            state[0] = 0
            state[1] = hop - win

    @_jit
    def _stream(samples, buf, state, fe_f, fe_i, band_w, scratch, out):
        # A push of any length in one call (`FrameStream.push`): each time the buffer is full,
        # its frame goes through `frame_into` (the batch kernel's own per-frame function, so
        # a stream's frames are the batch's bit for bit) into the next row of ``out``. Returns
        # the frames made. state = [samples in buf, samples still to skip, hop]; the tables
        # packed (numba unboxes each argument on every call).
        win = buf.shape[0]
        k = 0
        s = 0
        while True:
            s = fill_window(samples, s, buf, state)
            if state[0] < win:
                return k
            packed_frame_into(buf, fe_f, fe_i, band_w, scratch, out[k])
            k += 1
            slide_window(buf, state)


@lru_cache(maxsize=16)
def tables(cfg):
    """Window, bit reversal, twiddles and the sparse filterbank of one frontend (cached)."""
    from .frontend import _periodic_hann, mel_filterbank
    n_fft, half = cfg.n_fft, cfg.n_fft // 2
    if n_fft & (n_fft - 1):
        raise ValueError(f"the numba log-mel kernel needs a power-of-two n_fft, got {n_fft}")
    window = np.asarray(_periodic_hann(cfg.window_length, n_fft)[: cfg.window_length], np.float64)
    bits = max(1, half.bit_length() - 1)
    bitrev = np.array([int(format(k, f"0{bits}b")[::-1], 2) for k in range(half)], np.int64) \
        if half > 1 else np.zeros(1, np.int64)
    ang = -2.0 * np.pi * np.arange(half) / half
    k = np.arange(half + 1)
    split = -2.0 * np.pi * k / n_fft
    fb = np.asarray(mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin_hz, cfg.fmax_hz),
                    np.float64)
    starts, lens = [], []
    for row in fb:
        nz = np.flatnonzero(row)
        starts.append(int(nz[0]) if len(nz) else 0)
        lens.append(int(nz[-1] - nz[0] + 1) if len(nz) else 0)
    width = max(lens + [1])
    band_w = np.zeros((len(fb), width))
    for m, (s, n) in enumerate(zip(starts, lens)):
        band_w[m, :n] = fb[m, s:s + n]
    return (window, bitrev, np.cos(ang), np.sin(ang), np.cos(split), np.sin(split),
            np.array(starts, np.int64), np.array(lens, np.int64), band_w,
            np.float32(cfg.log_floor))


def packed_tables(cfg):
    """`tables` packed for `packed_frame_into`: ``(fe_f, fe_i, band_w, scratch)``, new arrays
    (the scratch is the caller's own)."""
    (window, bitrev, tw_re, tw_im, sp_re, sp_im, band_start, band_len, band_w,
     floor) = tables(cfg)
    half, n_bands = len(bitrev), len(band_start)
    fe_f = np.zeros((6, max(len(window), half + 1)), np.float64)
    for row, v in enumerate((window, tw_re, tw_im, sp_re, sp_im, [floor])):
        fe_f[row, :len(v)] = v
    fe_i = np.zeros((4, max(half, n_bands, 2)), np.int64)
    for row, v in enumerate((bitrev, band_start, band_len, [half, n_bands])):
        fe_i[row, :len(v)] = v
    return fe_f, fe_i, np.ascontiguousarray(band_w, np.float64), np.zeros(3 * half + 1)


_BY_ID: dict = {}


def log_mel_frames(frames: np.ndarray, cfg) -> np.ndarray:
    """``(n, window_length)`` float32 frames -> ``(n, n_mels)`` float32 log-mel (this kernel)."""
    # Called every 16 ms: looking the tables up by the config object's identity costs a tenth
    # of hashing the frozen dataclass (the entry keeps cfg alive, so its id is not reused).
    entry = _BY_ID.get(id(cfg))
    if entry is None or entry[0] is not cfg:
        _require_numba()
        entry = _BY_ID[id(cfg)] = (cfg, tables(cfg))
    if frames.dtype != np.float32 or not frames.flags.c_contiguous:
        frames = np.ascontiguousarray(frames, np.float32)
    out = np.empty((frames.shape[0], cfg.n_mels), np.float32)
    if frames.shape[0]:
        _kernel(frames, *entry[1], out)
    return out


class FrameStream:
    """`device.frontend.LogMelStream`'s push with this kernel, buffering included, in one
    numba call: push any number of samples, get the log-mel frames they completed.

    The NumPy stream concatenates, gathers the frames and copies what is left on every push,
    a dozen array calls that cost more than the four frames of a 40 ms capture block (cProfile
    of a long ``detect``). Here the window buffer, the frame count and the skip live in
    preallocated arrays that one compiled call updates in place; each frame goes through
    `frame_into`, the batch kernel's own per-frame function, so what a stream returns equals
    `log_mel_frames` of the concatenated input bit for bit (tests/device/test_logmel_numba.py).

    Parameters
    ----------
    cfg : device.frontend.LogMelConfig
        The frontend (``kernel = "numba"``, ``compression = "log"``).
    """

    def __init__(self, cfg):
        _require_numba()
        self.window_length, self.hop_length, self.n_mels = (cfg.window_length, cfg.hop_length,
                                                            cfg.n_mels)
        self._tables = packed_tables(cfg)
        self._buf = np.zeros(cfg.window_length, np.float32)
        self._state = np.array([0, 0, cfg.hop_length], np.int64)   # [in buf, to skip, hop]
        # Compile (or load from numba's cache) now, with the types of every later call: not in
        # the first live hop, where the fraction of a second would look like overload.
        _stream(np.zeros(0, np.float32), self._buf, self._state, *self._tables,
                np.empty((1, self.n_mels), np.float32))

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next frame."""
        return int(self._state[0])

    def reset(self) -> None:
        """Forget buffered audio (a new stream, or audio lost to a gap)."""
        self._state[0] = self._state[1] = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 mono samples -> ``(k, n_mels)`` float32, the frames completed by them."""
        x = samples if samples.dtype == np.float32 and samples.flags.c_contiguous \
            else np.ascontiguousarray(samples, np.float32)
        out = np.empty((len(x) // self.hop_length + 1, self.n_mels), np.float32)
        k = _stream(x, self._buf, self._state, *self._tables, out)
        return out[:k]
