"""``classifier``: an int8 sound classifier over the recent audio, voted, raising ``sound`` events."""
from __future__ import annotations

import logging

import numpy as np

from ..config import ConfigError
from ..decisions import SoundTracker
from ..manifest import ManifestError, load_manifest, manifest_path_for
from ..paths import resolve_build_path
from ..sound import SegmentSpec, segment
from .base import HopContext, Param, Stage, register_stage

__all__ = ["ClassifierStage"]

log = logging.getLogger("hopwise.stages.classifier")


@register_stage("classifier")
class ClassifierStage(Stage):
    """Runs an environmental sound classifier (`train.classifiers`: the log-mel CNN or the
    bottleneck ResNet, int8) every ``stride_hops`` hops on the last ``recent_s`` of features,
    votes over its segments and over time, and raises one ``sound`` event per sustained sound.

    Each run cuts the newest ``recent_s`` of ``features.<frontend>`` into the model's segments
    (`device.sound.segment`: the model's input length, ``segment_overlap`` and ``silence_db`` of
    the frontend section; the quiet ones dropped, none kept when all are quiet), runs the
    model on each (`device.interpreter.TFLiteModel`, the same int8 arithmetic as evaluation),
    and averages their posteriors (probability voting, as for a clip). Silence runs no model
    and counts as a run of zeros. `device.decisions.SoundTracker` (``[decisions] sound_*``)
    smooths the runs over time with hysteresis and raises the events; the voted posteriors go
    to ``posteriors.sound`` as ``(t_audio_s, probabilities)``.

    The model's manifest names its frontend (its features, segment length and silence level
    must equal the profile's ``[frontend.<name>]``) and its labels (the events use them, so a
    49-class ESC-50 model and the 8-class household one run alike).

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    model : str
        The ``.tflite`` file, its ``.json`` manifest beside it (relative to
        ``project.build_dir`` or the cwd).
    recent_s : float
        Audio each run classifies (seconds): at least one segment (1.3 s at the default
        frontend); 2 s gives two overlapping segments, so two votes per run. Longer: steadier,
        later to notice a sound's end, one more model run per extra segment hop.
    input : str
        The feature stream (default ``features.<the manifest's frontend>``).
    if_missing : str
        ``"warn"``: no model file, the stage says so once and raises nothing (the default
        profile's choice, so a build without classifiers still runs); ``"error"``: start-up
        stops. A damaged file is refused either way.
    num_threads : int
        Interpreter threads (default ``runtime.num_threads``).
    """

    PARAMS = {**Stage.PARAMS,
              "model": Param("the classifier .tflite, its .json manifest beside it"),
              "recent_s": Param("seconds of the newest features classified per run", 2.0),
              "input": Param("the feature stream (default: features.<manifest frontend>)", None),
              "if_missing": Param('"error" or "warn" when the model file is missing', "error"),
              "num_threads": Param("interpreter threads (default: runtime.num_threads)", None)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        if self.params["if_missing"] not in ("error", "warn"):
            raise ConfigError(f"stages.{name}.if_missing = {self.params['if_missing']!r}; use "
                              f"\"error\" or \"warn\"")
        self.path = resolve_build_path(cfg, self.params["model"])
        self.model = None
        self.runs = self.model_runs = 0
        self.input_key = self.params["input"] or "features.classifier"
        self.consumes = (self.input_key,)
        self.emits = ("event.sound", "posteriors.sound")
        self.frames = 0
        self._producer = None
        if not manifest_path_for(self.path).exists() and self.params["if_missing"] == "warn":
            log.warning("stage %s: no sound classifier at %s, so no sound events; build one with "
                        "`make train export` (it trains the one this stage runs) or remove %r "
                        "from pipeline.stages", name, self.path, name)
            self.consumes = ()        # nothing to read: the stage needs no feature stream
            self.reads_when_loaded = (self.input_key,)
            return
        from ..interpreter import TFLiteModel  # the interpreter backends load only when needed
        manifest = load_manifest(self.path)
        frontend = manifest["frontend"].get("name")
        if not frontend:
            raise ManifestError(f"model {self.path.name}: its manifest's frontend has no name; "
                                f"re-run its export")
        section = cfg.section(f"frontend.{frontend}")
        self.model = TFLiteModel(self.path, frontend=section,
                                 num_threads=int(self.params["num_threads"]
                                                 or cfg["runtime.num_threads"]))
        (head, self.labels), = self.model.labels.items()
        self.head = head
        self.spec = SegmentSpec.from_frontend(section, self.model.frames)
        hop_s_frontend = float(section["hop_ms"]) / 1000.0
        self.frames = max(self.spec.segment_frames,
                          int(round(float(self.params["recent_s"]) / hop_s_frontend)))
        self.input_key = self.params["input"] or f"features.{frontend}"
        self.consumes = (self.input_key,)
        self.tracker = SoundTracker.from_config(cfg, self.labels)
        self._silence = np.zeros(len(self.labels))
        log.info("stage %s: %s, %d classes, %d frames every %d hops", name, self.path.name,
                 len(self.labels), self.frames, self.stride_hops)

    def connect(self, producers) -> None:
        producer = producers.get(self.input_key)
        kept = getattr(producer, "window_frames", None)
        if self.model is not None and kept is not None and kept < self.frames:
            raise ConfigError(f"stage {self.name!r} classifies {self.frames} frames of "
                              f"{self.input_key!r} (recent_s) but stage {producer.name!r} keeps "
                              f"only {kept}: set stages.{producer.name}.window_frames = "
                              f"{self.frames}")
        self._producer = producer

    def classify(self, frames: np.ndarray) -> np.ndarray | None:
        """Mean posterior of the non-silent segments of ``frames`` (None: all near-silent)."""
        segs, _ = segment(frames, self.spec, keep_one=False)
        n = len(segs)
        if not n:
            return None
        self.model_runs += n
        if n == 1:
            # float64 of the one posterior, as zeros + p and / 1 give it, in one call
            return np.add(self.model.run(segs[0])[self.head], 0.0, dtype=np.float64)
        total = np.zeros(len(self.labels))
        for s in segs:
            total += self.model.run(s)[self.head]
        return total / n

    def idle(self) -> bool:
        """No model (``if_missing = "warn"``): nothing to do, nor for its frontend."""
        return self.model is None

    def process(self, ctx: HopContext) -> None:
        if self.model is None:
            return
        window = ctx.data.get(self.input_key)
        if window is None:
            return
        produced = getattr(self._producer, "frames_total", None)
        frames = window[-self.frames:]
        if produced is not None and produced < len(frames):
            frames = frames[len(frames) - produced:]   # before the window fills: real frames only
        self.runs += 1
        p = self.classify(frames) if len(frames) >= self.spec.segment_frames else None
        voted = self._silence if p is None else p
        ctx.put("posteriors.sound", (ctx.t_audio_s, voted))
        ctx.events.extend(self.tracker.update(ctx.t_audio_s, voted))

    def on_gap(self) -> None:
        if self.model is not None:
            self.tracker.reset()

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=str(self.path), loaded=self.model is not None, frames=self.frames,
                 labels=len(self.labels) if self.model is not None else None)
        return d
