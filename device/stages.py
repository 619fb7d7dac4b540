"""Pipeline stages: one class per processing step, all with the same interface.

Like TFLite Micro's micro_speech (audio provider -> feature provider -> model -> recognize
commands -> command responder), the device pipeline is an ordered list of stages. The audio
provider is `device.audio_source`, the command responder is `device.sinks`; in between, each
stage here reads named streams from a shared per-hop `HopContext` and writes others:

=====================  =======================  ===============================================
stage type             consumes                 emits
=====================  =======================  ===============================================
``logmel``             ``audio`` (or ``input``) ``features.<frontend>`` (rolling frame window)
``tflite_multitask``   ``features.keyword``     ``posteriors.keyword``, ``posteriors.scene``
``keyword_decisions``  ``posteriors.keyword``   ``wake`` / ``command`` events
``scene_decisions``    ``posteriors.scene``     ``scene`` events
=====================  =======================  ===============================================

Adding a stage (the ESN, a sound classifier, the separator in front of the keyword model) is one
class registered here with `register_stage` and one ``[stages.<name>]`` entry in the profile
plus its name in ``[pipeline] stages``. Every stage has:

* ``stride_hops`` — runs on hops where ``hop_index % stride_hops == phase`` (1 = every hop);
* ``priority`` — when the pipeline falls behind its hop budget it sheds the *lowest* priority
  non-essential stage first, and restores the highest first when it catches up;
* ``essential`` — never shed (the frontend, the keyword decisions);
* ``rate`` — the sample rate it works at (a logmel stage for the 8 kHz ESN resamples).

A stage's ``process(ctx)`` is called only when it is due and not shed; it reads
``ctx.data[...]`` and checks ``ctx.fresh`` (streams updated on this hop) so a consumer of a strided
or shed producer does nothing when there is nothing new.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .decisions import KeywordDecisions, SceneTracker, windows_from_config
from .frontend import LogMelConfig, LogMelStream

__all__ = ["HopContext", "Stage", "STAGE_TYPES", "register_stage", "build_stage",
           "LogMelStage", "MultitaskModelStage", "KeywordDecisionStage", "SceneDecisionStage"]


@dataclass
class HopContext:
    """What one hop carries between stages.

    ``audio``: the hop's samples (float32, pipeline rate); ``t_audio_s``: stream time at the end of
    the hop; ``data``: named streams (persist across hops); ``fresh``: names written on this hop;
    ``events``: events raised on this hop (the pipeline stamps and sends them).
    """

    hop_index: int
    t_audio_s: float
    audio: np.ndarray
    data: dict = field(default_factory=dict)
    fresh: set = field(default_factory=set)
    events: list = field(default_factory=list)

    def put(self, name: str, value: Any) -> None:
        self.data[name] = value
        self.fresh.add(name)


STAGE_TYPES: dict[str, type["Stage"]] = {}


def register_stage(type_name: str) -> Callable[[type], type]:
    """Class decorator: make a stage buildable from ``[stages.X] type = "<type_name>"``."""
    def deco(cls):
        cls.type_name = type_name
        STAGE_TYPES[type_name] = cls
        return cls
    return deco


class Stage:
    """Base class. Subclasses set ``consumes``/``emits`` and implement ``process``.

    Parameters (all from the stage's ``[stages.<name>]`` section)
    ----------
    name : str
        The section name; shown in status, timings and shed reports.
    stride_hops : int
        Run every n-th hop. Larger = cheaper, later decisions.
    phase : int
        Which hop of the stride it runs on: spread strided stages over different hops so their
        costs do not pile onto one hop.
    priority : int
        Shedding order: lowest first. Ties shed the later stage in the list first.
    essential : bool
        Never shed.
    """

    type_name = "base"
    consumes: tuple[str, ...] = ()
    emits: tuple[str, ...] = ()

    def __init__(self, name: str, params: Mapping, cfg, pipeline_rate: int, hop_s: float):
        self.name = name
        self.params = dict(params)
        self.cfg = cfg
        self.pipeline_rate = pipeline_rate
        self.rate = pipeline_rate
        self.hop_s = hop_s
        self.stride_hops = max(1, int(self.params.get("stride_hops", 1)))
        self.phase = int(self.params.get("phase", 0)) % self.stride_hops
        self.priority = int(self.params.get("priority", 0))
        self.essential = bool(self.params.get("essential", False))

    def due(self, hop_index: int) -> bool:
        return hop_index % self.stride_hops == self.phase

    def process(self, ctx: HopContext) -> None:
        raise NotImplementedError

    def on_gap(self) -> None:
        """Audio was lost (overrun): forget state that assumed continuous samples."""

    def close(self) -> None:
        """Release resources (interpreters, files)."""

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type_name, "rate": self.rate,
                "stride_hops": self.stride_hops, "priority": self.priority,
                "essential": self.essential, "consumes": list(self.consumes),
                "emits": list(self.emits)}


def build_stage(name: str, cfg, pipeline_rate: int, hop_s: float, **extra) -> Stage:
    """Build ``[stages.<name>]`` of ``cfg`` through the registry (extra keys override it)."""
    params = dict(cfg.get(f"stages.{name}", {}) or {})
    params.update({k: v for k, v in extra.items() if v is not None})
    type_name = params.get("type", name)
    if type_name not in STAGE_TYPES:
        raise ValueError(f"stage {name!r} has unknown type {type_name!r}; known types: "
                         f"{', '.join(sorted(STAGE_TYPES))} (set stages.{name}.type)")
    return STAGE_TYPES[type_name](name, params, cfg, pipeline_rate, hop_s)


# --------------------------------------------------------------------------- feature provider
@register_stage("logmel")
class LogMelStage(Stage):
    """Streaming log-mel features (micro_speech's "feature provider").

    Every hop: pushes the hop's audio (resampled when its frontend's rate differs from the
    pipeline's, e.g. 8 kHz for the ESN) into `LogMelStream` and keeps a rolling window of the
    last ``window_frames`` frames in ``features.<frontend>`` — a float32 array
    ``(window_frames, n_mels)``, oldest first, that model stages read without copying.
    ``features.<frontend>.new`` holds only the frames completed on this hop (for per-frame
    consumers such as the ESN).

    Parameters: ``frontend`` (profile ``[frontend.X]`` name, default "keyword");
    ``window_frames`` (frames kept, default 98 = 1 s at 10 ms: what the keyword model sees);
    ``input`` (audio stream read, default ``audio``, the source's hop; a separator stage in
    front of the keyword model writes e.g. ``audio.separated`` and this stage reads that instead)
    and ``input_rate`` (its rate, default the pipeline's);
    a rate change uses the profile's ``resample.stage_quality`` (`device.resample`), the one
    training uses for the same frontend.
    Before the window has filled, the missing frames are the log floor (digital silence).
    """

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.frontend = self.params.get("frontend", "keyword")
        self.fcfg = LogMelConfig.from_config(cfg, self.frontend)
        self.rate = self.fcfg.sample_rate
        self.window_frames = int(self.params.get("window_frames", 98))
        self.key = f"features.{self.frontend}"
        self.emits = (self.key, self.key + ".new")
        self.input_key = self.params.get("input", "audio")
        self.input_rate = int(self.params.get("input_rate", pipeline_rate))
        self.consumes = (self.input_key,)
        self._resampler = None
        if self.rate != self.input_rate:
            from .resample import Resampler
            self._resampler = Resampler(self.input_rate, self.rate, cfg["resample.stage_quality"])
        self.stream = LogMelStream(self.fcfg)
        self.window = np.full((self.window_frames, self.fcfg.n_mels),
                              np.log(self.fcfg.log_floor), dtype=np.float32)
        self.frames_total = 0

    def process(self, ctx: HopContext) -> None:
        if self.input_key == "audio":
            audio = ctx.audio
        elif self.input_key in ctx.fresh:
            audio = ctx.data[self.input_key]
        else:
            return  # the producer (e.g. a separator) did not run on this hop
        if self._resampler is not None:
            audio = self._resampler(audio)
        new = self.stream.push(audio)
        k = len(new)
        if k:
            if k >= self.window_frames:
                self.window[:] = new[-self.window_frames:]
            else:
                self.window[:-k] = self.window[k:]
                self.window[-k:] = new
            self.frames_total += k
            ctx.put(self.key, self.window)
        ctx.put(self.key + ".new", new)

    def on_gap(self) -> None:
        self.stream.reset()


# --------------------------------------------------------------------------- model
def resolve_model_path(cfg, path: str | Path) -> Path:
    """A model path from the profile: absolute, relative to the cwd if it exists there, else
    relative to ``project.build_dir``."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return cfg.build_dir / p


@register_stage("tflite_multitask")
class MultitaskModelStage(Stage):
    """The keyword + scene network (micro_speech's "model"): every ``stride_hops`` hops, runs the
    int8 TFLite model on the last ``frames`` feature frames and writes each head's posteriors to
    ``posteriors.<head>`` as ``(t_audio_s, probabilities)``.

    Parameters: ``model`` (path; relative paths are tried in the cwd then under
    ``project.build_dir``); ``input`` (feature stream, default ``features.keyword``);
    ``stride_hops`` (default ``model.multitask.stride_hops``: 10 hops = 100 ms; fewer = earlier
    and smoother decisions at proportionally more CPU); ``num_threads`` (default
    ``runtime.num_threads``). The model is verified against its manifest, the profile's labels
    and the frontend before the first hop: a mismatch stops start-up with `ManifestError`.
    """

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        params = dict(params)
        params.setdefault("stride_hops", cfg.get("model.multitask.stride_hops", 10))
        params.setdefault("phase", params["stride_hops"] - 1)  # run once a full stride is in
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        from .interpreter import TFLiteModel
        model = self.params.get("model")
        if not model:
            raise ValueError(f"stage {name!r} needs a model: pass --model PATH or set "
                             f"stages.{name}.model")
        self.input_key = self.params.get("input", "features.keyword")
        frontend_name = self.input_key.split(".", 1)[1]
        self.model = TFLiteModel(
            resolve_model_path(cfg, model),
            expected_labels={"keyword": cfg.keyword_labels, "scene": cfg["labels.scenes"]},
            frontend=cfg.section(f"frontend.{frontend_name}"),
            num_threads=int(self.params.get("num_threads", cfg.get("runtime.num_threads", 1))),
            allow_tensorflow=bool(self.params.get("allow_tensorflow", False)))
        self.consumes = (self.input_key,)
        self.emits = tuple(f"posteriors.{h}" for h in self.model.outputs)
        self.invocations = 0

    def process(self, ctx: HopContext) -> None:
        window = ctx.data.get(self.input_key)
        if window is None:
            return
        frames = self.model.frames
        out = self.model.run(window[-frames:])
        self.invocations += 1
        for head, probs in out.items():
            ctx.put(f"posteriors.{head}", (ctx.t_audio_s, probs))

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=str(self.model.path), backend=self.model.backend)
        return d


# --------------------------------------------------------------------------- recognize commands
@register_stage("keyword_decisions")
class KeywordDecisionStage(Stage):
    """Wake word and commands (micro_speech's "recognize commands") over
    ``posteriors.keyword``, with the profile's ``[decisions]`` (see `device.decisions`). Runs
    whenever new posteriors arrived; raises ``wake`` and ``command`` events.

    Parameters: ``input`` (default ``posteriors.keyword``); ``model_stride_hops`` (the producer's
    stride, to turn the ``_ms`` settings into counts; default ``model.multitask.stride_hops``).
    """

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        params = dict(params)
        params.setdefault("essential", True)
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params.get("input", "posteriors.keyword")
        stride = int(self.params.get("model_stride_hops", cfg.get("model.multitask.stride_hops", 10)))
        w = windows_from_config(cfg, stride * hop_s)["keyword"]
        self.decider = KeywordDecisions(cfg.keyword_labels, cfg["labels.wake_word"],
                                        cfg["labels.commands"], **w)
        self.consumes = (self.input_key,)
        self.emits = ("event.wake", "event.command")

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.decider.update(t, probs))


@register_stage("scene_decisions")
class SceneDecisionStage(Stage):
    """Acoustic scene with smoothing and hysteresis over ``posteriors.scene``; raises a ``scene``
    event when the scene changes (see `device.decisions.SceneTracker`)."""

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params.get("input", "posteriors.scene")
        stride = int(self.params.get("model_stride_hops", cfg.get("model.multitask.stride_hops", 10)))
        w = windows_from_config(cfg, stride * hop_s)["scene"]
        self.tracker = SceneTracker(cfg["labels.scenes"], **w)
        self.consumes = (self.input_key,)
        self.emits = ("event.scene",)

    def process(self, ctx: HopContext) -> None:
        if self.input_key not in ctx.fresh:
            return
        t, probs = ctx.data[self.input_key]
        ctx.events.extend(self.tracker.update(t, probs))
