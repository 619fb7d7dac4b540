"""The echo state network's reservoir in integer arithmetic: what the device runs every frame.

The reservoir is the leaky echo state network of the usual form (Jaeger; Lukoševičius 2012)::

    x[t] = (1 - a) * x[t-1] + a * tanh(W @ x[t-1] + W_in @ u[t])

``a`` is the leak rate (``model.esn.leak``: the share of the *new* activation; ``1 - a`` is the
share of the previous state that is kept). ``u[t]`` is one normalised log-mel frame of the
``esn`` frontend. Everything is integer:

=====================  =================================================================
quantity               representation
=====================  =================================================================
state ``x``            int16, Q15 (``x_int / 2**15``), saturated to ±32767
input ``u``            int16, Q12 (``u_int / 2**12``, so ±8 standard deviations), saturated
``W``                  int16, Q``w_frac`` (``W_int / 2**w_frac``)
``W_in``               int16, Q``w_in_frac``
products and sums      int32. The fraction bits are chosen at quantisation so that no row
                       sum can overflow (``max_i sum_j |W_int[i, j]| * 32767 < 2**31``,
                       checked, `quantize_reservoir`): the accumulation needs no per-add
                       saturation, which is what lets the compiler vectorise it
tanh argument          int32, Q12, the two sums rounded to Q12 and added, then saturated to
                       [-8, 8) (tanh(8) = 1 - 2e-7: nothing is lost beyond)
tanh                   a 4097-entry int16 table of tanh at Q8 steps over [-8, 8], linearly
                       interpolated with the argument's 4 lower bits (max error 1.2e-5 = 0.4 LSB)
leak                   ``a`` as Q15; ``x += (a_q * (tanh - x) + 2**14) >> 15``
=====================  =================================================================

Every right shift rounds half up (``(v + 2**(s-1)) >> s``, an arithmetic shift), the same in
both implementations. `step_reference` is the plain NumPy version (int64 matrix products, which
give the same integers because no int32 sum overflows); `step` is the numba kernel the device
runs, and the tests check that the two agree bit for bit on random reservoirs and inputs.

On the device a frame costs little arithmetic (a 400 x 400 int16 product, a 256-point FFT), so
call overhead matters: `EsnStream` takes a hop of audio and does the window, the log-mel (the
frontend's own per-frame numba function, `device.logmel_numba.frame_into`), the step, the int8
readout and the posteriors in one numba call with preallocated state. `EsnRunner` is the same
per log-mel frame, for a pipeline that computes the frames in a stage of their own.

The readout (`Readout`) is linear over ``[x, u]`` (the input frame optionally concatenated),
applied either in float or with int8 weights (one scale per class, int64 sums: only a few
classes x N products, so the width costs nothing). The model file (`EsnModel`, ``.npz`` with a
manifest) holds the quantised reservoir, the input normaliser and the readout; the device never
builds or changes the reservoir, it only refits the readout (`ridge_fit`, enrolment).
"""
from __future__ import annotations

import io
import json
import zipfile
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Q_STATE", "Q_INPUT", "Q_ARG", "TANH_LUT", "SILENT", "FixedReservoir",
           "build_reservoir", "quantize_reservoir", "normalise_frames", "quantize_input",
           "step_reference", "run_reference", "step", "run", "Readout", "class_weights",
           "ridge_fit", "frame_energy_db", "frame_labels", "EsnModel", "load_esn", "save_esn",
           "EsnError", "EsnRunner", "EsnStream", "write_esn_model", "read_esn_model"]

log = logging.getLogger("hopwise.esn")

Q_STATE = 15
Q_INPUT = 12
Q_ARG = 12
_LUT_STEP_BITS = 4                 # table step: Q_ARG - 4 = Q8 (1/256)
_ARG_LIMIT = 8 << Q_ARG            # |argument| < 8
_STATE_MAX = 32767
_INT32_MAX = 2**31 - 1
SILENT = "silent"


class EsnError(ValueError):
    """An ESN model file that cannot be used; the message names the problem and the fix."""


def _tanh_table() -> np.ndarray:
    grid = np.arange(-(8 << (Q_ARG - _LUT_STEP_BITS)), (8 << (Q_ARG - _LUT_STEP_BITS)) + 1)
    table = np.round(np.tanh(grid / 2.0 ** (Q_ARG - _LUT_STEP_BITS)) * _STATE_MAX)
    out = table.astype(np.int16)
    out.setflags(write=False)
    return out


TANH_LUT = _tanh_table()
"""int16 tanh at Q8 steps over [-8, 8] (4097 entries), Q15 values (±32767 at the ends)."""
_TANH_LUT32 = TANH_LUT.astype(np.int32)   # the same values, read by the kernel in int32 lanes
_TANH_LUT32.setflags(write=False)


# --------------------------------------------------------------------------- quantisation
@dataclass(frozen=True)
class FixedReservoir:
    """A reservoir in the integer format of the module docstring.

    Attributes
    ----------
    w : np.ndarray
        int16 ``(n, n)`` recurrent weights, Q``w_frac``.
    w_in : np.ndarray
        int16 ``(n, n_inputs)`` input weights, Q``w_in_frac``.
    w_frac, w_in_frac : int
        Fraction bits of the two matrices.
    leak_q15 : int
        The leak rate ``a`` in Q15 (1..32768).
    w_in_t : np.ndarray
        ``W_in`` transposed, contiguous (derived): the kernel's layout for the input drive.
    """

    w: np.ndarray
    w_in: np.ndarray
    w_frac: int
    w_in_frac: int
    leak_q15: int
    w_in_t: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "w_in_t", np.ascontiguousarray(np.asarray(self.w_in).T))

    @property
    def n_neurons(self) -> int:
        return int(self.w.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.w_in.shape[1])

    def check(self) -> None:
        """Raise `EsnError` unless the shapes, types and overflow bound hold."""
        n = self.w.shape[0]
        if self.w.dtype != np.int16 or self.w_in.dtype != np.int16:
            raise EsnError(f"reservoir weights must be int16, got {self.w.dtype}/{self.w_in.dtype}")
        if self.w.shape != (n, n) or self.w_in.ndim != 2 or self.w_in.shape[0] != n:
            raise EsnError(f"reservoir shapes do not fit: W {self.w.shape}, W_in {self.w_in.shape}")
        if not 1 <= self.leak_q15 <= 32768:
            raise EsnError(f"leak_q15 = {self.leak_q15} is outside 1..32768")
        for name, m, frac, shift_in in (("W", self.w, self.w_frac, Q_STATE),
                                        ("W_in", self.w_in, self.w_in_frac, Q_INPUT)):
            if frac + shift_in < Q_ARG:
                raise EsnError(f"{name} has {frac} fraction bits: fewer than {Q_ARG - shift_in} "
                               f"cannot be rounded to the Q{Q_ARG} argument")
            if int(np.abs(m.astype(np.int64)).sum(1).max(initial=0)) * _STATE_MAX > _INT32_MAX:
                raise EsnError(f"{name}'s row sums can overflow an int32 accumulator; "
                               f"re-quantise it with quantize_reservoir")


def _fraction_bits(m: np.ndarray) -> int:
    """Most fraction bits (<= 15) with every entry in int16 and every row sum times a full-scale
    input (32767) inside int32, so the accumulation cannot overflow."""
    row = float(np.abs(m).sum(1).max(initial=0.0))
    peak = float(np.abs(m).max(initial=0.0))
    for frac in range(15, -8, -1):
        q = np.round(m * 2.0 ** frac)
        if (np.abs(q).max(initial=0) <= _STATE_MAX
                and np.abs(q).sum(1).max(initial=0) * _STATE_MAX <= _INT32_MAX):
            return frac
    raise EsnError(f"weights too large to quantise (largest {peak:g}, largest row sum {row:g})")


def build_reservoir(grid_height: int, grid_width: int, n_inputs: int, spectral_radius: float,
                    input_scaling: float, input_density: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float ``W (n, n)`` and ``W_in (n, n_inputs)`` of the grid reservoir: neurons on a
    ``grid_height x grid_width`` grid, recurrent weights normal, each divided by the grid
    distance between its two neurons (no self-loops), the matrix then scaled to
    ``spectral_radius``; input weights uniform in ``±input_scaling`` with a random
    ``input_density`` of them kept. Seeded by ``seed``.

    Dividing by the grid distance makes neighbours talk more than far neurons: local structure
    that a dense random matrix lacks, at the same cost. Training builds it (`train.esn`) and
    quantises it here; the device only loads the quantised matrices (NumPy only, so the
    benchmarks build one on the Pi too).
    """
    rng = np.random.default_rng(seed)
    n = grid_height * grid_width
    rows, cols = np.divmod(np.arange(n), grid_width)
    dist = np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])
    w = rng.standard_normal((n, n))
    np.divide(w, dist, out=w, where=dist > 0)
    w[dist == 0] = 0.0
    radius = float(np.max(np.abs(np.linalg.eigvals(w))))
    w *= spectral_radius / radius
    w_in = rng.uniform(-input_scaling, input_scaling, (n, n_inputs))
    w_in *= rng.random((n, n_inputs)) < input_density
    return w, w_in


def quantize_reservoir(w: np.ndarray, w_in: np.ndarray, leak: float) -> FixedReservoir:
    """Float reservoir -> `FixedReservoir` (round to nearest, fraction bits per matrix).

    Parameters
    ----------
    w : np.ndarray
        ``(n, n)`` float recurrent weights (already scaled for the echo-state property).
    w_in : np.ndarray
        ``(n, n_inputs)`` float input weights (input scaling included).
    leak : float
        The leak rate ``a`` in (0, 1].
    """
    if not 0.0 < leak <= 1.0:
        raise EsnError(f"leak must be in (0, 1], got {leak}")
    w, w_in = np.asarray(w, np.float64), np.asarray(w_in, np.float64)
    fw, fi = _fraction_bits(w), _fraction_bits(w_in)
    fixed = FixedReservoir(np.round(w * 2.0 ** fw).astype(np.int16),
                           np.round(w_in * 2.0 ** fi).astype(np.int16), fw, fi,
                           int(round(leak * 32768)))
    fixed.check()
    return fixed


def normalise_frames(log_mel: np.ndarray, mean: np.ndarray, inv_std: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel frames -> (normalised float32, int16 Q12) inputs, in float32 arithmetic.

    The one definition of the reservoir's input, for training and the device alike: the
    device's fused kernel does the same float32 operations in the same order, so its states
    are the ones the readout was fit on, bit for bit.
    """
    u = (np.asarray(log_mel, np.float32) - np.asarray(mean, np.float32)) \
        * np.asarray(inv_std, np.float32)
    q = np.clip(np.round(u * np.float32(1 << Q_INPUT)), -_STATE_MAX, _STATE_MAX)
    return u.astype(np.float32), q.astype(np.int16)


def quantize_input(u: np.ndarray) -> np.ndarray:
    """Normalised float frames -> int16 Q12, saturated to ±32767 (±8 standard deviations)."""
    return np.clip(np.round(np.asarray(u, np.float64) * (1 << Q_INPUT)), -_STATE_MAX,
                   _STATE_MAX).astype(np.int16)


# --------------------------------------------------------------------------- NumPy reference
def _round_shift(v: np.ndarray, s: int) -> np.ndarray:
    return (v + (1 << (s - 1))) >> s if s > 0 else v


def step_reference(res: FixedReservoir, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One step in plain NumPy integers: the definition the numba kernel is checked against.

    Parameters
    ----------
    x : np.ndarray
        int16 ``(n,)`` state (Q15).
    u : np.ndarray
        int16 ``(n_inputs,)`` input (Q12, `quantize_input`).

    Returns
    -------
    np.ndarray
        The new int16 state.
    """
    acc = res.w.astype(np.int64) @ x.astype(np.int64)             # exact: fits int32 (checked)
    acc_in = res.w_in.astype(np.int64) @ u.astype(np.int64)
    arg = (_round_shift(acc, res.w_frac + Q_STATE - Q_ARG)
           + _round_shift(acc_in, res.w_in_frac + Q_INPUT - Q_ARG))
    arg = np.clip(arg, -_ARG_LIMIT, _ARG_LIMIT - 1) + _ARG_LIMIT
    idx, frac = arg >> _LUT_STEP_BITS, arg & ((1 << _LUT_STEP_BITS) - 1)
    lo = TANH_LUT[idx].astype(np.int64)
    hi = TANH_LUT[idx + 1].astype(np.int64)
    t = lo + _round_shift((hi - lo) * frac, _LUT_STEP_BITS)
    xs = x.astype(np.int64)
    new = xs + _round_shift(res.leak_q15 * (t - xs), 15)
    return np.clip(new, -_STATE_MAX, _STATE_MAX).astype(np.int16)


def run_reference(res: FixedReservoir, u_frames: np.ndarray,
                  x0: np.ndarray | None = None) -> np.ndarray:
    """States after each of ``u_frames`` (int16 ``(T, n_inputs)``): int16 ``(T, n)``."""
    x = np.zeros(res.n_neurons, np.int16) if x0 is None else np.asarray(x0, np.int16).copy()
    out = np.empty((len(u_frames), res.n_neurons), np.int16)
    for t, u in enumerate(u_frames):
        x = step_reference(res, x, u)
        out[t] = x
    return out


# --------------------------------------------------------------------------- numba kernel
try:
    import numba as _numba
    _jit = _numba.njit(cache=True, nogil=True, boundscheck=False)
except ImportError:  # pragma: no cover - numba is a device dependency
    _numba = None

    def _jit(f):
        return f


@_jit
def _step_into(w, w_in_t, w_shift, in_shift, leak_q15, lut, x, u, out):
    # lut: TANH_LUT as int32 (_TANH_LUT32); w_in_t: W_in transposed (FixedReservoir.w_in_t).
    n, m = w.shape[0], w_in_t.shape[0]
    acc = np.empty(n, np.int32)
    drive = np.zeros(n, np.int32)
    for i in range(n):
        # Written as an int32 wrap-around sum (no sum can overflow: FixedReservoir.check),
        # which LLVM vectorises as int32 lanes (pmaddwd on x86); numba would otherwise widen to
        # int64 and run at half the lanes (400 neurons: 3.9 instead of 8.5 us per product).
        a = np.int32(0)
        for j in range(n):
            a = np.int32(a + np.int32(w[i, j]) * np.int32(x[j]))
        acc[i] = a
    # The input drive column by column (32 inputs): vectorised over the neurons, where a
    # 32-long dot product per neuron spent most of its time in the final horizontal sum.
    # Any order gives the same integers: a partial sum is bounded like the whole row's.
    for k in range(m):
        uk = np.int32(u[k])
        for i in range(n):
            drive[i] = np.int32(drive[i] + np.int32(w_in_t[k, i]) * uk)
    w_half = np.int64(1) << (w_shift - 1) if w_shift > 0 else np.int64(0)
    in_half = np.int64(1) << (in_shift - 1) if in_shift > 0 else np.int64(0)
    leak = np.int32(leak_q15)
    for i in range(n):
        arg = ((np.int64(acc[i]) + w_half) >> w_shift) + ((np.int64(drive[i]) + in_half) >> in_shift)
        # int32 from here: |lut step| * 15 < 2**20 and leak_q15 * |t - x| + 2**14 < 2**31
        a32 = np.int32(min(max(arg, np.int64(-32768)), np.int64(32767))) + np.int32(32768)
        idx = a32 >> 4
        frac = a32 & 15
        lo = lut[idx]
        t = lo + (((lut[idx + 1] - lo) * frac + 8) >> 4)
        xi = np.int32(x[i])
        v = xi + ((leak * (t - xi) + 16384) >> 15)
        out[i] = np.int16(min(max(v, np.int32(-32767)), np.int32(32767)))


@_jit
def _run_frames(w, w_in_t, w_shift, in_shift, leak_q15, lut, x0, u_frames, states):
    x = x0.copy()
    for t in range(u_frames.shape[0]):
        _step_into(w, w_in_t, w_shift, in_shift, leak_q15, lut, x, u_frames[t], states[t])
        x[:] = states[t]
    return x


@_jit
def _readout_int8(q, feat, scale, bias, out):
    for c in range(q.shape[0]):
        acc = np.int64(0)
        for j in range(q.shape[1]):
            acc += np.int64(q[c, j]) * np.int64(feat[j])
        out[c] = scale[c] * acc + bias[c]


@_jit
def _frame(w, w_in_t, w_shift, in_shift, leak_q15, lut, x, x_new, log_mel, mean, inv_std,
          feat, q, scale, bias, scores, proba):
    # One device frame in one call (each NumPy call on a 5-vector costs about a microsecond,
    # so fusing normalise + quantise + step + readout + posteriors saves several): the new
    # state lands in x (x_new is scratch), feat holds [x, u_q], scores the readout's, proba
    # Readout.proba of them.
    n, m = w.shape[0], w_in_t.shape[0]
    u = feat[n:n + m] if feat.shape[0] >= n + m else np.empty(m, np.int16)
    for k in range(m):
        # float32 throughout, as normalise_frames: the training states, bit for bit
        v = np.round((log_mel[k] - mean[k]) * inv_std[k] * np.float32(4096.0))
        if v > 32767.0:
            v = 32767.0
        elif v < -32767.0:
            v = -32767.0
        u[k] = np.int16(v)
    _step_into(w, w_in_t, w_shift, in_shift, leak_q15, lut, x, u, x_new)
    x[:] = x_new               # in place: callers hold x (EsnStream binds it once)
    feat[:n] = x_new
    _readout_int8(q, feat[:q.shape[1]], scale, bias, scores)
    total = 0.0
    for c in range(scores.shape[0]):
        v = min(max(scores[c], 0.0), 1.0) + 1e-6
        proba[c] = v
        total += v
    for c in range(scores.shape[0]):
        proba[c] /= total


if _numba is not None:
    from .logmel_numba import fill_window as _fill_window
    from .logmel_numba import packed_frame_into as _log_mel_frame_into
    from .logmel_numba import slide_window as _slide_window

    @_jit
    def _hop(samples, buf, pos, fe_f, fe_i, fe_band_w, fe_scratch, w, w_in_t, lut, xs, norm, q,
             sb, mel_out, feat_out, sp_out):
        # A hop of audio in one call (`EsnStream.push`): the samples go into the window buffer
        # (`device.logmel_numba.fill_window`); each time it is full, the frame's log-mel (the
        # frontend's own per-frame function, so the features are training's bit for bit), the
        # reservoir step, the int8 readout and the posteriors go into row k of the outputs;
        # then the buffer moves on by a hop (`slide_window`).
        # Packed (EsnStream._bind): pos = [samples in buf, samples still to skip (hop >
        # window), hop, w_shift, in_shift, leak_q15]; fe_* the frontend's tables
        # (`device.logmel_numba.packed_tables`); xs = [state, scratch state]; norm = [mean,
        # 1/std]; sb = [scale, bias]; sp_out[k] = [scores, posteriors].
        win = buf.shape[0]
        w_shift, in_shift, leak_q15 = pos[3], pos[4], pos[5]
        x, x_new = xs[0], xs[1]
        mean, inv_std = norm[0], norm[1]
        scale, bias = sb[0], sb[1]
        k = 0
        s = 0
        while True:
            s = _fill_window(samples, s, buf, pos)
            if pos[0] < win:
                return k
            _log_mel_frame_into(buf, fe_f, fe_i, fe_band_w, fe_scratch, mel_out[k])
            _frame(w, w_in_t, w_shift, in_shift, leak_q15, lut, x, x_new, mel_out[k], mean,
                   inv_std, feat_out[k], q, scale, bias, sp_out[k, 0], sp_out[k, 1])
            k += 1
            _slide_window(buf, pos)


def kernels():
    """``(step_into, run_frames, readout_int8, frame)`` numba functions (compiled on first use,
    then cached on disk beside this module), or None without numba: the callers then run the
    NumPy reference, about 10x slower, and say so once."""
    global _WARNED
    if _numba is None:
        if not _WARNED:
            log.warning("numba is not installed: the ESN runs on the NumPy reference (about 10x "
                        "slower); pip install numba")
            _WARNED = True
        return None
    return _step_into, _run_frames, _readout_int8, _frame


_WARNED = False


def _shifts(res: FixedReservoir) -> tuple[int, int]:
    return res.w_frac + Q_STATE - Q_ARG, res.w_in_frac + Q_INPUT - Q_ARG


def step(res: FixedReservoir, x: np.ndarray, u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """One step with the numba kernel (the same integers as `step_reference`).

    ``out`` receives the new state and must not be ``x``: the kernel reads all of ``x`` while it
    writes ``out`` (the stage swaps two buffers)."""
    k = kernels()
    if k is None:
        new = step_reference(res, x, u)
        if out is not None:
            out[:] = new
            return out
        return new
    out = np.empty(res.n_neurons, np.int16) if out is None else out
    ws, ins = _shifts(res)
    k[0](res.w, res.w_in_t, ws, ins, res.leak_q15, _TANH_LUT32, x, u, out)
    return out


def run(res: FixedReservoir, u_frames: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    """States after each frame, int16 ``(T, n)``, with the numba kernel (one call per clip)."""
    u_frames = np.ascontiguousarray(u_frames, np.int16)
    x0 = np.zeros(res.n_neurons, np.int16) if x0 is None else np.asarray(x0, np.int16)
    k = kernels()
    if k is None:
        return run_reference(res, u_frames, x0)
    states = np.empty((len(u_frames), res.n_neurons), np.int16)
    ws, ins = _shifts(res)
    k[1](res.w, res.w_in_t, ws, ins, res.leak_q15, _TANH_LUT32, x0, u_frames, states)
    return states


# --------------------------------------------------------------------------- readout
@dataclass
class Readout:
    """A linear readout ``scores = coef @ features + intercept`` over the features
    ``[x / 2**15, u_norm]`` (``u_norm`` only when ``concat_input``).

    Probabilities are the scores clipped to [0, 1] and normalised to sum to 1 (the ridge is fit
    to one-hot targets, so its scores already estimate them; the clip keeps them a
    distribution).

    Attributes
    ----------
    coef : np.ndarray
        float ``(n_classes, n_features)``.
    intercept : np.ndarray
        float ``(n_classes,)``.
    labels : list of str
    concat_input : bool
    """

    coef: np.ndarray
    intercept: np.ndarray
    labels: list
    concat_input: bool
    _q: np.ndarray | None = field(default=None, repr=False)
    _qscale: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self.coef = np.asarray(self.coef, np.float64)
        self.intercept = np.asarray(self.intercept, np.float64)
        if self.coef.ndim != 2 or self.coef.shape[0] != len(self.labels) \
                or self.intercept.shape != (len(self.labels),):
            raise EsnError(f"readout shapes do not fit {len(self.labels)} labels: coef "
                           f"{self.coef.shape}, intercept {self.intercept.shape}")

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    # the int8 form --------------------------------------------------------------
    def feature_scales(self, n_neurons: int) -> np.ndarray:
        """What one integer unit of each feature is worth: 2**-15 (state), 2**-12 (input)."""
        s = np.full(self.n_features, 2.0 ** -Q_STATE)
        if self.concat_input:
            s[n_neurons:] = 2.0 ** -Q_INPUT
        return s

    def int8(self, n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
        """int8 weights over the integer features and one float scale per class."""
        if self._q is None:
            eff = self.coef * self.feature_scales(n_neurons)[None, :]
            scale = np.maximum(np.abs(eff).max(1), 1e-30) / 127.0
            self._q = np.clip(np.round(eff / scale[:, None]), -127, 127).astype(np.int8)
            self._qscale = scale
        return self._q, self._qscale

    def scores(self, states: np.ndarray, u_norm: np.ndarray | None = None) -> np.ndarray:
        """Float scores of int16 states ``(T, n)`` (and float inputs ``(T, m)``)."""
        feats = states.astype(np.float64) / 2.0 ** Q_STATE
        if self.concat_input:
            feats = np.concatenate([feats, np.asarray(u_norm, np.float64)], axis=1)
        return feats @ self.coef.T + self.intercept

    def scores_int8(self, states: np.ndarray, u_q: np.ndarray | None = None) -> np.ndarray:
        """Scores with the int8 weights over the integer features (what the device applies)."""
        q, scale = self.int8(states.shape[1])
        feats = states.astype(np.int64)
        if self.concat_input:
            feats = np.concatenate([feats, np.asarray(u_q, np.int64)], axis=1)
        return (feats @ q.T.astype(np.int64)) * scale + self.intercept

    @staticmethod
    def proba(scores: np.ndarray) -> np.ndarray:
        p = np.clip(scores, 0.0, 1.0) + 1e-6
        return p / p.sum(-1, keepdims=True)


def class_weights(labels: Sequence[int], n_classes: int, power: float) -> np.ndarray:
    """Per-frame weights ``(share of the frame's class) ** -power``, normalised to mean 1.

    Silence is most of every recording (88 % of the beatbox frames): unweighted, the ridge
    readout buys silent-frame accuracy with the sounds' onsets and tails. ``power = 0.5``
    (``model.esn.class_balance``) meets them halfway; 1 would weigh every class alike.
    """
    y = np.asarray(labels, int)
    share = np.bincount(y, minlength=n_classes) / max(len(y), 1)
    w = np.maximum(share, 1e-12)[y] ** -float(power)
    return w / w.mean()


def ridge_fit(features: np.ndarray, labels: Sequence[int], n_classes: int, alpha: float,
              class_balance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression onto one-hot targets in closed form, with an unpenalised intercept:
    ``coef = (Xc' D Xc + alpha I)^-1 Xc' D Yc`` on ``X``, ``Y`` centred by their weighted
    means, ``D`` the `class_weights` (what scikit-learn's ``Ridge(alpha).fit(X, Y,
    sample_weight)`` computes; NumPy only, for enrolment on the device).

    Returns
    -------
    coef : (n_classes, n_features), intercept : (n_classes,)
    """
    x = np.asarray(features, np.float64)
    y = np.zeros((len(x), n_classes))
    y[np.arange(len(x)), np.asarray(labels, int)] = 1.0
    w = class_weights(labels, n_classes, class_balance)[:, None]
    xm, ym = (w * x).sum(0) / w.sum(), (w * y).sum(0) / w.sum()
    xc, yc = x - xm, y - ym
    gram = xc.T @ (w * xc)
    gram[np.diag_indices_from(gram)] += alpha
    coef = np.linalg.solve(gram, xc.T @ (w * yc)).T
    return coef, ym - coef @ xm


# --------------------------------------------------------------------------- frame labels
def frame_energy_db(frames: np.ndarray) -> np.ndarray:
    """dB of each log-mel frame's summed mel power."""
    return 10.0 * np.log10(np.exp(np.asarray(frames, np.float64)).sum(-1) + 1e-20)


def frame_labels(frames: np.ndarray, label: str, min_rise_db: float, rise_fraction: float,
                 min_frames: int = 3) -> np.ndarray:
    """Per-frame labels of a one-sound recording (training and enrolment alike).

    The frames' energy ``E`` (`frame_energy_db`) against the recording's own noise floor ``F``
    (10th percentile of ``E``) and peak ``P``: the runs of consecutive frames with
    ``E > F + max(min_rise_db, rise_fraction * (P - F))`` are candidates; runs shorter than
    ``min_frames`` (clicks, pops) are set aside unless there is no other; the sound is the
    candidate with the loudest frame. Every other frame, and every frame of a ``silent``
    recording, is ``silent``.
    """
    out = np.full(len(frames), SILENT, dtype=object)
    if label == SILENT or len(frames) == 0:
        return out
    e = frame_energy_db(frames)
    floor, peak = np.percentile(e, 10), e.max()
    above = np.concatenate([[False], e > floor + max(min_rise_db, rise_fraction * (peak - floor)),
                            [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    runs = list(zip(edges[0::2], edges[1::2]))             # [start, stop) of each run
    long = [r for r in runs if r[1] - r[0] >= min_frames] or runs
    if long:
        a, b = max(long, key=lambda r: e[r[0]:r[1]].max())
        out[a:b] = label
    return out


# --------------------------------------------------------------------------- the model file
@dataclass
class EsnModel:
    """Everything the device needs: reservoir, input normaliser, readout, and where it came from.

    Attributes
    ----------
    reservoir : FixedReservoir
    mean, std : np.ndarray
        Per-mel input normaliser ``u = (log_mel - mean) / std``.
    readout : Readout
    params : dict
        The hyper-parameters and seed that built the reservoir (saved, never used to rebuild it
        on the device).
    """

    reservoir: FixedReservoir
    mean: np.ndarray
    std: np.ndarray
    readout: Readout
    params: dict = field(default_factory=dict)

    @property
    def labels(self) -> list:
        return list(self.readout.labels)

    @property
    def inv_std(self) -> np.ndarray:
        return (1.0 / np.asarray(self.std, np.float64)).astype(np.float32)

    def normalise(self, log_mel: np.ndarray) -> np.ndarray:
        """Normalised float32 input frames (`normalise_frames`)."""
        return normalise_frames(log_mel, self.mean, self.inv_std)[0]

    def states(self, log_mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int16 states and int16 inputs of a clip's log-mel frames ``(T, n_mels)``."""
        u_q = normalise_frames(log_mel, self.mean, self.inv_std)[1]
        return run(self.reservoir, u_q), u_q

    def with_readout(self, readout: Readout) -> "EsnModel":
        return replace(self, readout=readout)


def save_esn(model: EsnModel, path: str | Path) -> bytes:
    """Write the ``.npz`` (the bytes are returned too, for the manifest's sha256)."""
    r, ro = model.reservoir, model.readout
    meta = {"labels": list(ro.labels), "concat_input": bool(ro.concat_input),
            "w_frac": r.w_frac, "w_in_frac": r.w_in_frac, "leak_q15": r.leak_q15,
            "q_state": Q_STATE, "q_input": Q_INPUT, "q_arg": Q_ARG, "params": model.params}
    buf = io.BytesIO()
    np.savez(buf, w=r.w, w_in=r.w_in, mean=model.mean.astype(np.float32),
             std=model.std.astype(np.float32), coef=ro.coef, intercept=ro.intercept,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return data


def load_esn(content: bytes, name: str = "ESN model") -> EsnModel:
    """An `EsnModel` from the bytes of its ``.npz`` (already checked against its manifest:
    `device.manifest.read_verified`). A file of another layout is an `EsnError`."""
    try:
        z = np.load(io.BytesIO(content), allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
        if (meta.get("q_state"), meta.get("q_input"), meta.get("q_arg")) != (Q_STATE, Q_INPUT, Q_ARG):
            raise EsnError(f"{name} uses Q formats {meta.get('q_state')}/{meta.get('q_input')}/"
                           f"{meta.get('q_arg')}, this runtime {Q_STATE}/{Q_INPUT}/{Q_ARG}: "
                           f"re-export it with this version (`make export`)")
        res = FixedReservoir(z["w"], z["w_in"], int(meta["w_frac"]), int(meta["w_in_frac"]),
                             int(meta["leak_q15"]))
        readout = Readout(z["coef"], z["intercept"], list(meta["labels"]),
                          bool(meta["concat_input"]))
        model = EsnModel(res, z["mean"].astype(np.float64), z["std"].astype(np.float64), readout,
                         dict(meta.get("params") or {}))
    except EsnError:
        raise
    except (KeyError, ValueError, OSError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise EsnError(f"{name} is not a hopwise ESN model file ({type(exc).__name__}: {exc}); "
                       f"re-run `make export`") from None
    res.check()
    n, m = res.n_neurons, res.n_inputs
    want = n + (m if readout.concat_input else 0)
    if readout.n_features != want or model.mean.shape != (m,) or model.std.shape != (m,):
        raise EsnError(f"{name}: readout has {readout.n_features} features and the normaliser "
                       f"{model.mean.shape[0]} bands, but the reservoir has {n} neurons and {m} "
                       f"inputs; re-run `make export`")
    if np.any(model.std <= 0):
        raise EsnError(f"{name}: a normaliser deviation is <= 0; re-run `make export`")
    return model


def manifest_fields(model: EsnModel, frontend: Mapping) -> dict:
    """The manifest fields of an ESN model file (besides those `write_manifest` adds)."""
    r = model.reservoir
    return dict(
        frontend=dict(frontend),
        input={"shape": [1, r.n_inputs], "dtype": "int16", "q": Q_INPUT,
               "normalization": {"kind": "per_mel_affine", "mean": [float(v) for v in model.mean],
                                 "std": [float(v) for v in model.std]}},
        outputs=[{"name": "percussion", "index": 0, "labels": list(model.labels)}],
        stride_hops=None,
        extra={"reservoir": {"neurons": r.n_neurons, "inputs": r.n_inputs, "w_frac": r.w_frac,
                             "w_in_frac": r.w_in_frac, "leak_q15": r.leak_q15,
                             "q_state": Q_STATE, "q_input": Q_INPUT, "q_arg": Q_ARG},
               "params": model.params})


# --------------------------------------------------------------------------- the device's runner
class EsnRunner:
    """Frame by frame on the device: ``scores = runner.push(log_mel_frame)``; the posteriors
    (`Readout.proba` of the scores) are in ``runner.proba`` after each push.

    Keeps the state and preallocated buffers; `push` is one fused numba call (normalise,
    quantise, step, int8 readout). `push_reference` does the same in plain NumPy (the tests
    check the two agree). ``readout = "tflite"`` applies the TFLite readout instead of the int8
    weights (`use_tflite`).
    """

    def __init__(self, model: EsnModel):
        self.model = model
        r, ro = model.reservoir, model.readout
        self.n, self.m = r.n_neurons, r.n_inputs
        # Rows of one array each (state and scratch, normaliser, scale and bias), so the fused
        # kernel (EsnStream) takes one argument for each pair: every argument of a numba call
        # costs ~50 ns of dispatch, a few percent of a frame.
        self._xs = np.zeros((2, self.n), np.int16)
        self.x, self._x_new = self._xs[0], self._xs[1]
        # feat is [state, u_q]: the readout reads the first n (+ m when concat_input) of it.
        self.feat = np.zeros(self.n + self.m, np.int16)
        q, qscale = ro.int8(self.n)
        self.q = np.ascontiguousarray(q)
        self._sb = np.stack([qscale, ro.intercept]).astype(np.float64)
        self.qscale, self.bias = self._sb[0], self._sb[1]
        self._norm = np.stack([model.mean, model.inv_std]).astype(np.float32)
        self.mean, self.inv_std = self._norm[0], self._norm[1]
        self.scores = np.zeros(len(ro.labels), np.float64)
        self.proba = np.zeros(len(ro.labels), np.float64)
        self.shifts = _shifts(r)
        self.tflite = None
        self.frames = 0

    def reset(self) -> None:
        """Back to the zero state (a gap in the audio, or a new reservoir)."""
        self.x[:] = 0
        self.frames = 0

    def use_tflite(self, model) -> None:
        """Apply ``model`` (a `device.interpreter.TFLiteModel` of the readout) instead of the
        int8 weights; None goes back to them."""
        self.tflite = model

    def push(self, log_mel: np.ndarray) -> np.ndarray:
        """One frame ``(n_mels,)`` float32 -> the readout's scores (a buffer reused each call)."""
        k = kernels()
        if k is None:
            return self.push_reference(log_mel)
        r = self.model.reservoir
        k[3](r.w, r.w_in_t, self.shifts[0], self.shifts[1], r.leak_q15, _TANH_LUT32, self.x,
             self._x_new, np.asarray(log_mel, np.float32), self.mean, self.inv_std, self.feat,
             self.q, self.qscale, self.bias, self.scores, self.proba)
        self.frames += 1
        if self.tflite is not None:
            self._tflite_scores()
            self.proba[:] = Readout.proba(self.scores)
        return self.scores

    def push_reference(self, log_mel: np.ndarray) -> np.ndarray:
        """`push` in plain NumPy (same integers; the scores to float rounding)."""
        u = normalise_frames(log_mel[None, :], self.mean, self.inv_std)[1][0]
        self.x[:] = step_reference(self.model.reservoir, self.x, u)
        self.feat[:self.n], self.feat[self.n:] = self.x, u
        self.frames += 1
        if self.tflite is not None:
            self._tflite_scores()
            self.proba[:] = Readout.proba(self.scores)
            return self.scores
        f = self.feat[:self.q.shape[1]].astype(np.int64)
        self.scores[:] = (self.q.astype(np.int64) @ f) * self.qscale + self.bias
        self.proba[:] = Readout.proba(self.scores)
        return self.scores

    def _tflite_scores(self) -> np.ndarray:
        self.scores[:] = self.tflite_scores(self.feat)
        return self.scores

    def tflite_scores(self, feat: np.ndarray) -> np.ndarray:
        """The TFLite readout's scores of one integer feature row ``[x, u_q]``."""
        feats = feat[:self.q.shape[1]].astype(np.float32)
        feats[:self.n] *= np.float32(2.0 ** -Q_STATE)
        feats[self.n:] *= np.float32(2.0 ** -Q_INPUT)
        return np.asarray(self.tflite.run(feats[None, :])["percussion"], np.float64).reshape(-1)


class EsnStream:
    """Audio in, ESN frames out: the frontend fused with the reservoir, one numba call per push.

    ``k = stream.push(samples)`` takes any number of samples at the frontend's rate (float32,
    or int16 as captured) and returns how many frames they completed; frame ``f < k``'s
    log-mel is ``stream.log_mel[f]``, its readout scores ``stream.scores[f]`` and posteriors
    ``stream.proba[f]`` (buffers reused by the next push). Frames are the frontend's
    (`device.frontend.LogMelStream`: frame ``t`` covers samples ``[t*hop, t*hop + window)``).

    With numba and a ``kernel = "numba"`` frontend, a push is one call of a kernel that keeps
    the window of samples, computes each frame's log-mel with the frontend's own per-frame
    function, steps the reservoir and applies the int8 readout, all in preallocated arrays:
    about a third of the cost of `LogMelStream` + `EsnRunner.push` per frame, which spend
    most of their time in Python between two numba calls (``benchmarks/bench_esn.py``). The
    numbers are the same either way, bit for bit (tests/device/test_esn.py); without numba, or
    with a ``"numpy"`` frontend, `push` takes that unfused path (`push_unfused`).

    Parameters
    ----------
    runner : EsnRunner
        The reservoir, readout and state (`rebind` swaps in another one, e.g. a new readout,
        keeping the buffered samples).
    cfg : device.frontend.LogMelConfig
        The frontend the model was trained on (its manifest's).
    """

    def __init__(self, runner: "EsnRunner", cfg):
        from .frontend import LogMelStream
        self.cfg = cfg
        self.win, self.hop = cfg.window_length, cfg.hop_length
        self._buf = np.zeros(self.win, np.float32)
        self._pos = np.zeros(6, np.int64)       # see _hop: fill, to skip, hop, shifts, leak
        self._unfused = LogMelStream(cfg)
        self._tables = None
        if kernels() is not None and cfg.kernel == "numba":
            from .logmel_numba import packed_tables
            self._tables = packed_tables(cfg)
        self.frames = 0
        self._cap = 0
        self.rebind(runner)

    @property
    def fused(self) -> bool:
        """True when `push` runs the one-call kernel (numba and a ``"numba"`` frontend)."""
        return self._tables is not None

    def rebind(self, runner: "EsnRunner") -> None:
        """Run ``runner`` from now on (its own state; the buffered samples stay)."""
        self.runner = runner
        self._grow(max(self._cap, 4))

    def _grow(self, cap: int) -> None:
        r = self.runner
        self._cap = cap
        self._max_samples = (cap - 1) * self.hop
        self.log_mel = np.zeros((cap, self.cfg.n_mels), np.float32)
        self.feat = np.zeros((cap, r.n + r.m), np.int16)
        self._sp = np.zeros((cap, 2, len(r.scores)), np.float64)
        self.scores, self.proba = self._sp[:, 0], self._sp[:, 1]
        if self._tables is None:
            return
        res = r.model.reservoir
        self._pos[2:6] = (self.hop, r.shifts[0], r.shifts[1], res.leak_q15)
        # Bound once: the call then costs one tuple unpacking, not ~20 attribute look-ups.
        self._args = (self._buf, self._pos, *self._tables, res.w, res.w_in_t, _TANH_LUT32, r._xs,
                      r._norm, r.q, r._sb, self.log_mel, self.feat, self._sp)

    def reset(self) -> None:
        """Forget the buffered samples and the reservoir's state (a gap in the audio)."""
        self._pos[0] = self._pos[1] = 0
        self._unfused.reset()
        self.runner.reset()
        self.frames = 0

    def push(self, samples: np.ndarray) -> int:
        """Samples at the frontend's rate -> the number of frames completed (see the class)."""
        if type(samples) is not np.ndarray or samples.dtype != np.float32:
            from .frontend import as_float_audio
            samples = as_float_audio(samples)
        if not len(samples):
            # The stream resampler hands out its output in blocks (soxr: ~470 samples every
            # fifth or sixth 10 ms hop), so most hops bring nothing: skip the call.
            return 0
        if self._tables is None:
            return self.push_unfused(samples)
        if len(samples) > self._max_samples:
            self._grow(len(samples) // self.hop + 2)
        k = _hop(samples, *self._args)
        self.frames += k
        runner = self.runner
        runner.frames += k
        if runner.tflite is not None:
            for f in range(k):
                self.scores[f] = runner.tflite_scores(self.feat[f])
                self.proba[f] = Readout.proba(self.scores[f])
        return k

    def push_unfused(self, samples: np.ndarray) -> int:
        """`push` as `LogMelStream.push` + `EsnRunner.push` per frame (what the fused kernel
        is checked against, and the path without numba)."""
        frames = self._unfused.push(samples)
        k = len(frames)
        if k > self._cap:
            self._grow(k + 1)
        runner = self.runner
        for f, frame in enumerate(frames):
            runner.push(frame)
            self.log_mel[f] = frame
            self.feat[f] = runner.feat
            self.scores[f] = runner.scores
            self.proba[f] = runner.proba
        self.frames += k
        return k


# --------------------------------------------------------------------------- files the device trusts
def write_esn_model(model: EsnModel, path: str | Path, frontend: Mapping, *,
                    metrics: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Write ``<path>.npz`` and its manifest (sha256 of the bytes written); return the manifest."""
    from .manifest import write_manifest
    path = Path(path)
    save_esn(model, path)
    fields = manifest_fields(model, frontend)
    fields["extra"].update(extra or {})
    return write_manifest(path, name="esn", kind="esn", metrics=metrics, **fields)


def read_esn_model(path: str | Path, *, labels: Sequence[str] | None = None,
                   frontend: Mapping | None = None) -> tuple[EsnModel, dict]:
    """The model at ``path`` (the ``.npz`` or its ``.json``) and its manifest, checked like the
    TFLite models (`device.manifest.read_verified`: the sha256 of the bytes loaded) and against
    the profile's labels and ``[frontend.esn]``. Every failure names the file and the fix."""
    from .manifest import ManifestError, check_against_config, read_verified
    path = Path(path)
    manifest, content = read_verified(path)
    if manifest.get("kind") != "esn":
        raise ManifestError(f"{manifest['_path']} describes a {manifest.get('kind')!r} model, not "
                            f"an ESN: point stages.esn.model at esn_int8.npz (`make export`)")
    check_against_config(manifest, expected_labels={"percussion": list(labels)} if labels else None,
                         frontend=frontend)
    try:
        model = load_esn(content, str(Path(manifest["_path"]).with_name(manifest["file"])))
    except EsnError as exc:
        raise ManifestError(str(exc)) from None
    if model.labels != [o["labels"] for o in manifest["outputs"]][0]:
        raise ManifestError(f"{manifest['file']}: its labels {model.labels} differ from its "
                            f"manifest's; re-run `make export`")
    return model, manifest
