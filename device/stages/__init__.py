"""Pipeline stages: one module per stage type, all with the same interface.

Like TFLite Micro's micro_speech (audio provider -> feature provider -> model -> recognize
commands -> command responder), the device pipeline is an ordered list of stages. The audio
provider is `device.audio_source`, the command responder is `device.sinks`; in between, each
stage here reads named streams from a shared per-hop `HopContext` and writes others:

=====================  ============================  ========================================
stage type             consumes                      emits
=====================  ============================  ========================================
``logmel``             ``audio`` (or its ``input``)  ``features.<frontend>`` (frame window),
                                                     ``features.<frontend>.new``
``tflite_model``       ``features.<frontend>`` of    ``posteriors.<head>`` per manifest head
                       the model's manifest
``keyword_decisions``  ``posteriors.keyword``        ``wake`` / ``command`` events
``scene_decisions``    ``posteriors.scene``          ``scene`` events
``esn``                ``audio`` (frontend fused),   ``beat`` events, ``posteriors.percussion``
                       or ``features.esn.new``
``classifier``         ``features.classifier``       ``sound`` events, ``posteriors.sound``
=====================  ============================  ========================================

Each type lives in the module of its name (``tflite_model`` in `model`). The default profile runs ``frontend`` (logmel) -> ``multitask`` (tflite_model: the keyword +
scene network) -> ``keywords`` -> ``scenes``, then ``esn`` (vocal percussion: the 8 kHz log-mel
frame, reservoir and readout in one numba call per hop; ``esn_frontend`` (logmel) -> ``esn`` on
``features.esn.new`` is the same, in two stages), then ``sound_frontend`` (logmel, 32 ms frames)
-> ``sounds`` (classifier: the environmental sound classifier every 0.5 s). `check_wiring` checks at start-up that every
consumed stream is emitted by an earlier stage and says how to fix it when not.

Adding a stage is one new module in this package and one profile entry. The module defines a
`Stage` subclass decorated with ``@register_stage("<type>")``, declaring its keys in ``PARAMS``
and its streams in ``consumes``/``emits``; this package imports every module in it, so nothing
else needs to know about it. The profile gets a ``[stages.<name>]`` section with
``type = "<type>"`` and ``<name>`` in ``[pipeline] stages``, where it belongs in the order. A
model exported as int8 TFLite with a manifest needs no module at all: it is a ``tflite_model``
section. The echo state network (`esn`) and the sound classifier (`classifier`: segments, silence and
votes over recent audio, which a ``tflite_model`` section cannot do) are such modules; the
source separator in front of the keyword model, still to come, will be another.

`base` holds `HopContext`, `Stage` (scheduling, priority, shedding flags, key checking), `Param`
and `register_stage`; `build_stage` builds a profile section through the registry.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Sequence

from ..config import ConfigError
from .base import REQUIRED, STAGE_TYPES, HopContext, Param, Stage, register_stage

__all__ = ["HopContext", "Stage", "Param", "REQUIRED", "STAGE_TYPES", "register_stage",
           "stage_class", "build_stage", "check_wiring"]


def _import_stage_modules() -> None:
    """Import every module of this package, so that each one's ``@register_stage`` runs."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_stage_modules()


# Types that were renamed: a profile that still names one gets told the new name.
_RENAMED = {"tflite_multitask": "tflite_model"}


def stage_class(cfg, name: str) -> type[Stage]:
    """The class ``[stages.<name>]`` builds (its ``type``, default the name itself)."""
    type_name = (cfg.get(f"stages.{name}", {}) or {}).get("type", name)
    if type_name not in STAGE_TYPES:
        renamed = (f"; {type_name!r} is now {_RENAMED[type_name]!r}, set stages.{name}.type = "
                   f"\"{_RENAMED[type_name]}\"" if type_name in _RENAMED else "")
        raise ConfigError(f"stage {name!r} has unknown type {type_name!r}; known types: "
                          f"{', '.join(sorted(STAGE_TYPES))} (set stages.{name}.type){renamed}")
    return STAGE_TYPES[type_name]


def build_stage(name: str, cfg, pipeline_rate: int, hop_s: float, **extra) -> Stage:
    """Build ``[stages.<name>]`` of ``cfg`` through the registry (extra keys override it)."""
    params = dict(cfg.get(f"stages.{name}", {}) or {})
    params.update({k: v for k, v in extra.items() if v is not None})
    return stage_class(cfg, name)(name, params, cfg, pipeline_rate, hop_s)


def check_wiring(stages: Sequence[Stage], source: str = "audio") -> None:
    """Check that every stream a stage consumes is emitted by an earlier stage (``source``, the
    audio source's hop, is there from the start), then give each stage its producers
    (`Stage.connect`). A misordered or misspelt stream is a `ConfigError` that says the fix."""
    producers: dict[str, Stage] = {}
    for i, stage in enumerate(stages):
        for stream in stage.consumes:
            if stream == source or stream in producers:
                continue
            later = [s for s in stages[i + 1:] if stream in s.emits]
            if later:
                raise ConfigError(
                    f"stage {stage.name!r} consumes {stream!r}, which no earlier stage emits; "
                    f"stage {later[0].name!r} emits it — put it before {stage.name!r} in "
                    f"pipeline.stages")
            everywhere = [source, *producers, *(e for s in stages[i:] for e in s.emits)]
            near = difflib.get_close_matches(stream, everywhere, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            fix = (f"fix stages.{stage.name}.input" if "input" in stage.PARAMS else
                   f"add the stage that emits it to pipeline.stages, before {stage.name!r}")
            raise ConfigError(
                f"stage {stage.name!r} consumes {stream!r}, which no stage emits{hint}; streams "
                f"emitted before it: {', '.join([source, *producers])}; {fix}")
        stage.connect({stream: producers.get(stream) for stream in stage.consumes})
        for stream in stage.emits:
            producers[stream] = stage
