"""Synthetic speech from espeak-ng, rendered to memory.

Two backends, tried in this order: the ``espeak-ng`` command (``--stdout`` WAV, the simplest,
Debian's ``espeak-ng`` package) and the shared library shipped by the ``espeakng-loader`` wheel
through ctypes (no system package needed). Both take the same voice names, e.g. ``en-us+f2``:
a language voice plus a variant (``m1``..``m7``, ``f1``..``f4``, ``croak``, ``whisper``,
``klatt``...). The variety of voices, rates and pitches stands in for the variety of speakers.
"""
from __future__ import annotations

import ctypes
import io
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import soundfile as sf

from device.resample import resample

__all__ = ["SpeechSynthError", "VOICES", "Take", "synthesize", "trim_silence", "backend_name"]

# Language voices x variants ("en" is British English: "en-gb" is no voice name to the library). Every name here is in Debian's espeak-ng data and in the
# espeakng-loader wheel; mbrola voices are left out because they need a separate binary.
_LANGUAGES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "croak",
             "klatt", "klatt2", "klatt3", "whisper")
VOICES: tuple[str, ...] = tuple(f"{lang}+{var}" for lang in _LANGUAGES for var in _VARIANTS)


class SpeechSynthError(RuntimeError):
    """espeak-ng is not available or failed; the message says how to get it."""


@dataclass(frozen=True)
class Take:
    """One rendition: what to say and how."""

    text: str
    voice: str = "en-us+m3"  # an espeak-ng voice, or "engine:voice" (train.synth.voices)
    rate_wpm: int = 160      # espeak-ng's -s: words per minute (other engines: a duration
                             # stretch of 160 / rate_wpm)
    pitch: int = 50          # espeak-ng's -p: 0..99 (other engines: unused; see warp)
    warp: float = 1.0        # vocal-tract warp after synthesis: pitch and formants x warp,
                             # duration / warp (a resampling; 1.0 leaves the take as rendered)


# --------------------------------------------------------------------------- backends
def _synth_binary(take: Take, binary: str) -> tuple[np.ndarray, int]:
    cmd = [binary, "-v", take.voice, "-s", str(take.rate_wpm), "-p", str(take.pitch),
           "--stdout", take.text]
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeechSynthError(f"running {' '.join(cmd)} failed: {exc}") from exc
    if result.returncode != 0 or len(result.stdout) <= 44:
        raise SpeechSynthError(f"{' '.join(cmd)} exited with {result.returncode} and "
                               f"{len(result.stdout)} bytes: {result.stderr.decode(errors='replace').strip()}")
    audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    return audio, rate


class _Library:
    """espeak-ng's C API through ctypes (the espeakng-loader wheel's libespeak-ng)."""

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _POS_CHARACTER = 1
    _RATE, _PITCH = 1, 3

    def __init__(self):
        import espeakng_loader  # optional dependency: only this backend needs it

        self.lib = ctypes.CDLL(str(espeakng_loader.get_library_path()))
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        rate = self.lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                          str(espeakng_loader.get_data_path()).encode(), 0)
        if rate <= 0:
            raise SpeechSynthError(f"espeak_Initialize failed ({rate}) with data at "
                                   f"{espeakng_loader.get_data_path()}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                                         ctypes.c_int, ctypes.c_void_p)

        def on_audio(wav, n, _events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0  # 0 = go on synthesising

        self._callback = callback_type(on_audio)  # keep a reference or ctypes frees it
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lock = threading.Lock()  # the C library keeps global state

    def synth(self, take: Take) -> tuple[np.ndarray, int]:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(take.voice.encode()) != 0:
                raise SpeechSynthError(f"espeak-ng library has no voice {take.voice!r}")
            self.lib.espeak_SetParameter(self._RATE, int(take.rate_wpm), 0)
            self.lib.espeak_SetParameter(self._PITCH, int(take.pitch), 0)
            self._chunks = []
            text = take.text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(text, len(text), 0, self._POS_CHARACTER, 0, 0, None, None)
            self.lib.espeak_Synchronize()
            if err != 0 or not self._chunks:
                raise SpeechSynthError(f"espeak_Synth failed ({err}) for {take}")
            audio = np.concatenate(self._chunks).astype(np.float32) / 32768.0
            return audio, self.sample_rate


@lru_cache(maxsize=1)
def _library() -> _Library:
    return _Library()


def _synth_library_isolated(take: Take) -> tuple[np.ndarray, int]:
    """Synthesise in a forked child whose library state is fresh.

    The library keeps state between utterances (its pitch-flutter and noise generators run
    on), so the same take rendered twice in one process differs; a fresh process per take, as
    with the binary, makes the corpus reproducible. The parent never initialises the library.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: reproducible only per process
        return _library().synth(take)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: render, send, leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            lib = _Library()
            # Noise (breathy variants) draws from both of these generators.
            lib.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
            ctypes.CDLL(None).srand(0)
            audio, rate = lib.synth(take)
            payload = np.int64(rate).tobytes() + audio.astype(np.float32).tobytes()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            payload, code = f"{type(exc).__name__}: {exc}".encode(), 1
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as inp:
        payload = inp.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(payload) < 8:
        raise SpeechSynthError(f"espeak-ng library failed for {take}: "
                               f"{payload.decode(errors='replace') or 'the worker died'}")
    rate = int(np.frombuffer(payload[:8], dtype=np.int64)[0])
    return np.frombuffer(payload[8:], dtype=np.float32).copy(), rate


def backend_name(prefer: str = "auto") -> str:
    """The backend `synthesize` will use: ``"binary"`` or ``"library"``.

    Raises
    ------
    SpeechSynthError
        Neither is available; the message says what to install.
    """
    if prefer in ("auto", "binary") and shutil.which("espeak-ng"):
        return "binary"
    if prefer in ("auto", "library"):
        try:
            import espeakng_loader
            if not os.path.isfile(espeakng_loader.get_library_path()):
                raise OSError(f"{espeakng_loader.get_library_path()} is missing")
            return "library"
        except (ImportError, OSError) as exc:
            reason = str(exc)
        else:  # pragma: no cover
            reason = ""
    else:
        reason = f"unknown backend {prefer!r}"
    raise SpeechSynthError(
        "no espeak-ng to synthesise speech: install the binary (`apt-get install espeak-ng`) or "
        f"the Python wheel (`pip install espeakng-loader`), or use data.source = \"real\" "
        f"({reason})")


def synthesize(take: Take, sample_rate: int = 16000, backend: str = "auto") -> np.ndarray:
    """Render one take to float32 mono at ``sample_rate`` (the engine's leading and trailing
    silence kept; see `trim_silence`). ``backend`` picks espeak-ng's; a voice named
    ``"engine:voice"`` is rendered by `train.synth.voices.synthesize_engine`."""
    if ":" in take.voice:  # flite, festival, piper: train.synth.voices
        from .voices import synthesize_engine
        audio, rate = synthesize_engine(take.text, take.voice, stretch=160.0 / take.rate_wpm)
    else:
        name = backend_name(backend)
        if name == "binary":
            audio, rate = _synth_binary(take, shutil.which("espeak-ng"))
        else:
            audio, rate = _synth_library_isolated(take)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if take.warp != 1.0:
        # Played back faster, a take sounds like a smaller vocal tract: formants and pitch rise
        # together, as between speakers; the duration change is one more speaking rate.
        audio = resample(audio, rate, int(round(rate / take.warp)))
    return resample(audio, rate, sample_rate)


def trim_silence(audio: np.ndarray, threshold_db: float = -40.0, sample_rate: int = 16000,
                 margin_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``threshold_db`` below the peak.

    espeak-ng pads a word with up to 0.3 s of silence; trimming lets the whole word fit in a
    1 s window at any random offset.
    """
    x = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (threshold_db / 20))
    margin = int(margin_s * sample_rate)
    return x[max(0, loud[0] - margin): loud[-1] + 1 + margin].copy()
