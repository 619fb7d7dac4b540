"""Pipeline stages: one module per stage type, all with the same interface.

Like TFLite Micro's micro_speech (audio provider -> feature provider -> model -> recognize
commands -> command responder), the device pipeline is an ordered list of stages. The audio
provider is `device.audio_source`, the command responder is `device.sinks`; in between, each
stage here reads named streams from a shared per-hop `HopContext` and writes others:

=====================  =======================  ===============================================
stage type (module)    consumes                 emits
=====================  =======================  ===============================================
``logmel``             ``audio`` (or ``input``) ``features.<frontend>`` (rolling frame window)
``tflite_multitask``   ``features.keyword``     ``posteriors.keyword``, ``posteriors.scene``
``keyword_decisions``  ``posteriors.keyword``   ``wake`` / ``command`` events
``scene_decisions``    ``posteriors.scene``     ``scene`` events
=====================  =======================  ===============================================

Adding a stage is one new module in this package and one profile entry: the module defines a
`Stage` subclass decorated with ``@register_stage("<type>")`` (this package imports every module
in it, so nothing else needs to know about it); the profile gets a ``[stages.<name>]`` section
with ``type = "<type>"`` and ``<name>`` in ``[pipeline] stages``. The parts still to come — the
echo state network, a sound classifier, the source separator in front of the keyword model —
will be new files here.

`base` holds `HopContext`, `Stage` (scheduling, priority, shedding flags) and `register_stage`;
`build_stage` builds a profile section through the registry.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..config import ConfigError
from .base import REQUIRED, STAGE_TYPES, HopContext, Param, Stage, register_stage

__all__ = ["HopContext", "Stage", "Param", "REQUIRED", "STAGE_TYPES", "register_stage", "build_stage"]


def _import_stage_modules() -> None:
    """Import every module of this package, so that each one's ``@register_stage`` runs."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_stage_modules()


def build_stage(name: str, cfg, pipeline_rate: int, hop_s: float, **extra) -> Stage:
    """Build ``[stages.<name>]`` of ``cfg`` through the registry (extra keys override it)."""
    params = dict(cfg.get(f"stages.{name}", {}) or {})
    params.update({k: v for k, v in extra.items() if v is not None})
    type_name = params.get("type", name)
    if type_name not in STAGE_TYPES:
        raise ConfigError(f"stage {name!r} has unknown type {type_name!r}; known types: "
                          f"{', '.join(sorted(STAGE_TYPES))} (set stages.{name}.type)")
    return STAGE_TYPES[type_name](name, params, cfg, pipeline_rate, hop_s)
