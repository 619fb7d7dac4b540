"""The profile's schema: which keys exist, what type each holds and which values make sense.

The built-in default profile (``device/profiles/default.toml``) *is* the list of keys: every
setting is written there once, with its default and a comment, so the schema reads the keys and
their types from it rather than repeating them. What a TOML file cannot say — ranges — is the
`RANGES` table below. `check` runs on every load and after every ``--set``:

* a key the default profile does not have is an error that names the nearest known key
  (``decisions.wake_treshold`` -> ``decisions.wake_threshold``);
* a value of the wrong type is an error that names the key, the value, where it came from and
  an example of a good value (``decisions.wake_threshold = 'abc'`` -> "a number, e.g. 0.6");
* a value outside its range is an error that says the range;
* a string outside its `CHOICES` is an error that lists them.

Three tables are open, since a user adds entries to them by name:

* ``[frontend.<name>]`` — any frontend name; its keys are those of the built-in frontends;
* ``[sinks.<name>]`` — any sink name; its ``kind`` (default: the name) picks the built-in sink
  section whose keys it may use, plus ``kind`` and ``types``;
* ``[stages.<name>]`` — any stage name; each stage type checks its own parameters when the
  pipeline builds it (`device.stages`), so only the section's shape is checked here.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

__all__ = ["RANGES", "CHOICES", "check", "reference", "SchemaError"]

DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "default.toml"

# Keys (fnmatch patterns over dotted keys) and their closed [a, b] / open (a, b) ranges. Each
# row says why where the reason is not obvious.
RANGES: tuple[tuple[str, str], ...] = (
    ("frontend.*.sample_rate", "[1, inf)"),
    ("frontend.*.log_floor", "(0, 1)"),
    ("frontend.*.pcen_time_constant_ms", "(0, inf)"),
    ("frontend.*.pcen_alpha", "[0, 1]"),
    ("frontend.*.pcen_delta", "(0, inf)"),      # 0 with root < 1 has an infinite slope at 0
    ("frontend.*.pcen_root", "(0, 1]"),
    ("pipeline.rate", "[1, inf)"),
    ("pipeline.hop_ms", "(0, 1000]"),           # 0 divides by zero; < 0 never advances
    ("pipeline.block_hops", "[1, 1000]"),       # 1 = hop by hop; more only buffers more
    ("runtime.hop_budget_ms", "(0, inf)"),
    ("runtime.status_interval_s", "[0, inf)"),  # 0 = no heartbeat
    ("runtime.num_threads", "[1, 64]"),
    ("runtime.shed_above", "(0, inf)"),
    ("runtime.restore_below", "[0, inf)"),
    ("runtime.load_window_hops", "[1, inf)"),
    ("runtime.backlog_shed_hops", "[0, inf)"),
    ("runtime.probe_after_s", "(0, inf)"),
    ("runtime.flush_timeout_s", "[0, inf)"),
    ("runtime.capture_stall_s", "(0, inf)"),
    ("runtime.stage_failure_limit", "[1, inf)"),
    ("decisions.*threshold*", "[0, 1]"),        # posteriors are probabilities: 2.0 never fires
    ("decisions.*_ms", "[0, inf)"),
    ("decisions.smoothing_ms", "(0, inf)"),
    ("decisions.scene_smoothing_ms", "(0, inf)"),
    ("decisions.*_count", "[1, inf)"),
    ("decisions.commands_per_wake", "[1, inf)"),
    ("capture.capture_rate", "[0, inf)"),       # 0 = the device's native rate
    ("capture.channels", "[1, 64]"),
    ("capture.block_ms", "(0, 1000]"),
    ("capture.buffer_s", "(0, 600]"),
    ("split.train", "[0, 1]"),
    ("split.validation", "[0, 1]"),
    ("split.test", "[0, 1]"),
    ("split.folds", "[0, 100]"),                # 0 = no cross-validation; 1 is refused on use
    ("split.test_fold", "[0, 100]"),
    ("data.clip_s", "(0, inf)"),
    ("data.synthetic.*_s", "(0, inf)"),
    ("data.*running_speech_clips", "[0, 1000000]"),
    ("fetch.*timeout_s", "(0, 600]"),     # 0 never connects; more than 10 min is a hang
    ("model.*.epochs", "[1, inf)"),
    ("model.*.patience", "[1, inf)"),
    ("model.*.batch_size", "[1, inf)"),
    ("model.*.learning_rate", "(0, 10]"),
    ("model.*.dropout", "[0, 1)"),
    ("model.*.stride_hops", "[1, inf)"),
    ("model.multitask_stream.min_agreement", "[0, 1]"),   # a share of calls
    ("model.*.label_smoothing", "[0, 1)"),
    ("model.multitask.distill_weight", "[0, 1]"),       # share of the teacher in the target
    ("model.multitask.distill_temperature", "(0, 100]"),
    ("model.multitask.bc_scale", "(0, 16]"),            # channels x scale: 16 is ~2.5 M params
    ("model.multitask.bc_time_stride", "[1, 4]"),
    ("model.multitask.distill_folds", "[2, 50]"),       # cross-fitting needs at least 2 folds
    ("model.multitask.distill_teacher_c", "(0, inf)"),
    ("model.multitask.distill_context_ms", "[0, 5000]"),
    ("model.*.keyword_share", "(0, 1)"),        # a share of the mixture's energy
    ("eval.keyword_share", "(0, 1)"),
    ("model.*.augment.*_prob", "[0, 1]"),
    ("model.*.augment.clean_keywords", "[0, 1]"),
    ("model.*.augment.speed", "[0, 0.5]"),
    ("model.*.augment.junctions", "[0, 1]"),
    ("export.calibration_examples", "[1, inf)"),
    ("model.separation.chunk_frames", "[1, 10000]"),
    ("model.separation.silence_db", "(0, inf)"),
    ("model.separation.steps_per_epoch", "[1, inf)"),
    ("model.separation.source_gain_db", "[0, 60]"),
    ("model.separation.validation_chunks", "[1, inf)"),
    ("model.separation.variants.*.layers", "[1, 16]"),
    ("model.separation.variants.*.units", "[1, 4096]"),
    ("model.separation.variants.*.embedding_dim", "[1, 256]"),
    ("model.separation.variants.*.sparsity", "[0, 1)"),
    ("model.separation.prune_epochs", "[1, inf)"),
    ("model.separation.prune_learning_rate", "(0, inf)"),
    ("eval.separation.mixtures", "[1, inf)"),
    ("eval.separation.clip_s", "(0, inf)"),
    ("eval.separation.examples", "[0, inf)"),
    ("model.esn.grid_*", "[1, 100]"),
    ("model.esn.leak", "(0, 1]"),               # 0 never updates the state
    ("model.esn.spectral_radius", "(0, 2]"),
    ("model.esn.input_scaling", "(0, inf)"),
    ("model.esn.input_density", "(0, 1]"),
    ("model.esn.ridge_alpha", "(0, inf)"),      # 0: an unregularised, often singular solve
    ("model.esn.class_balance", "[0, 2]"),
    ("model.esn.label_min_rise_db", "[0, inf)"),
    ("model.esn.label_rise_fraction", "[0, 1]"),
    ("model.esn.label_min_sound_frames", "[1, inf)"),
    ("model.esn.cv_folds", "[2, inf)"),
    ("model.esn.enrol_folds", "[2, inf)"),
    ("model.esn.search_iterations", "[1, inf)"),
    ("frontend.*.segment_overlap", "[0, 1)"),   # 1 would never advance
    ("model.sound_*.segment_frames", "[3, inf)"),
    ("model.sound_*.patch_frames", "[8, inf)"),  # three stride-2 stages need a few frames
    ("model.sound_*.band_pool", "[1, inf)"),
    ("model.sound_*.width", "(0, 4]"),
    ("model.sound_*.blocks_per_stage", "[1, 8]"),
    ("model.sound_*.conv_filters", "[1, inf)"),
    ("model.sound_*.dense_units", "[1, inf)"),
    ("model.sound_*.l2", "[0, 1]"),
    ("model.sound_*.steps_per_epoch", "[1, inf)"),
    ("model.sound_*.clip_s", "(0, inf)"),
    ("model.sound_*.synthetic_clips_per_class", "[2, inf)"),
    ("model.sound_classifiers.*_split", "(0, 1)"),
    ("model.sound_classifiers.mix_prob", "[0, 1]"),
    ("model.sound_classifiers.other_clips", "[0, inf)"),
    ("model.sound_classifiers.*_masks", "[0, inf)"),
    ("model.sound_classifiers.time_mask_frames", "[0, inf)"),
    ("model.sound_classifiers.freq_mask_bands", "[0, inf)"),
    ("bench.audio_s", "(0, inf)"),
    ("bench.event_calls", "[1, 60000]"),        # the serial link numbers events mod 65535
    ("deploy.keep_releases", "[1, inf)"),
    ("deploy.trial_s", "(0, inf)"),
    ("deploy.heartbeat_timeout_s", "(0, inf)"),
    ("selfcheck.*_s", "(0, inf)"),
    ("sinks.*.port", "[1, 65535]"),              # MQTT's; a serial port is a path (a string)
    ("sinks.*.qos", "[0, 2]"),
    ("sinks.*.baudrate", "[1, inf)"),
    ("sinks.*.keepalive_s", "[1, inf)"),
    ("sinks.*.max_queue", "[1, inf)"),
    ("sinks.*.queue_size", "[1, inf)"),
)

# String settings that take one of a fixed set of values (the code that reads each says what
# each value means).
CHOICES: dict[str, tuple[str, ...]] = {
    "model.multitask.architecture": ("dscnn", "bcresnet"),   # train/multitask.py
}

# Keys whose value may be one of several types (the default shows only one of them).
ALTERNATIVE_TYPES = {
    "capture.device": (str, int),   # a name (or unique part of one) or a PortAudio index
}
OPEN_TABLES = ("frontend", "sinks", "stages")
# A whole-number default of a measured quantity (1500 ms) still takes 1500.5: only counts,
# indices and sizes must be whole.
MEASURE_SUFFIXES = ("_ms", "_s", "_hz", "_db")
SINK_COMMON_KEYS = ("enabled", "kind", "types")


class SchemaError(ValueError):
    """A profile value the schema refuses (device.config turns it into a ConfigError)."""


@lru_cache(maxsize=1)
def reference() -> dict:
    """The default profile as a dict: the schema's keys, types and examples."""
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(DEFAULT_PROFILE.read_text(encoding="utf-8"))


def _interval(text: str) -> tuple[float, float, bool, bool]:
    lo, hi = (float(v) for v in text[1:-1].split(","))
    return lo, hi, text[0] == "[", text[-1] == "]"


def _in_range(value: float, text: str) -> bool:
    lo, hi, lo_closed, hi_closed = _interval(text)
    return (value >= lo if lo_closed else value > lo) and (value <= hi if hi_closed else value < hi)


def _type_name(example: Any, key: str) -> str:
    if isinstance(example, bool):
        return "true or false"
    if isinstance(example, int) and not key.endswith(MEASURE_SUFFIXES):
        return "a whole number"
    if isinstance(example, (int, float)):
        return "a number"
    if isinstance(example, str):
        return "a string"
    if isinstance(example, list):
        return "a list"
    return "a section"


def _fits(value: Any, example: Any, key: str) -> bool:
    allowed = ALTERNATIVE_TYPES.get(key)
    if allowed is not None:
        return isinstance(value, allowed) and not isinstance(value, bool)
    if isinstance(example, bool):
        return isinstance(value, bool)
    if isinstance(example, int) and not key.endswith(MEASURE_SUFFIXES):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(example, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    if isinstance(example, str):
        return isinstance(value, str)
    if isinstance(example, list):
        if not isinstance(value, list):
            return False
        if example:  # elements like the default's first element
            return all(_fits(v, example[0], key + "[]") for v in value)
        return True
    if isinstance(example, dict):
        return isinstance(value, dict)
    return True


def _example(example: Any) -> str:
    if isinstance(example, bool):
        return "true" if example else "false"
    if isinstance(example, str):
        return f'"{example}"'
    return repr(example)


def _nearest(name: str, known, prefix: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {prefix}{close[0]}?"
    return f"known keys here: {', '.join(sorted(known)) or '(none)'}"


def _reference_for(path: tuple[str, ...], data_section: Mapping, ref: Mapping) -> Mapping | None:
    """The reference section that describes ``data_section`` at ``path`` (None: unchecked)."""
    if len(path) == 2 and path[0] == "frontend":
        merged: dict = {}
        for section in ref.get("frontend", {}).values():
            merged.update(section)
        return merged
    if len(path) == 2 and path[0] == "sinks":
        kind = data_section.get("kind", path[1])
        kinds = ref.get("sinks", {})
        if kind not in kinds:
            raise SchemaError(f"sinks.{path[1]}: unknown sink kind {kind!r}; use one of "
                              f"{', '.join(sorted(kinds))} (set sinks.{path[1]}.kind)")
        return {**{"kind": "", "types": [""]}, **kinds[kind]}
    if len(path) == 2 and path[0] == "stages":
        return None  # each stage type checks its own parameters when it is built
    node: Any = ref
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def check(data: Mapping, origin=lambda key: "the profile") -> None:
    """Raise `SchemaError` for the first unknown key, wrong type or out-of-range value.

    Parameters
    ----------
    data : mapping
        The merged profile (``extends`` resolved, overrides applied).
    origin : callable
        ``origin(dotted_key) -> str``: where a value came from (a file, ``--set``), for messages.
    """
    ref = reference()

    def walk(section: Mapping, ref_section: Mapping | None, path: tuple[str, ...]):
        for name, value in section.items():
            key = ".".join(path + (name,))
            if path and path[0] == "stages" and len(path) == 1:
                if not isinstance(value, Mapping):
                    raise SchemaError(f"{key} must be a section ([{key}] with a type = ...), "
                                      f"got {value!r} from {origin(key)}")
                continue
            if ref_section is None:
                continue
            if name not in ref_section:
                if len(path) == 1 and path[0] in OPEN_TABLES and isinstance(value, Mapping):
                    walk(value, _reference_for(path + (name,), value, ref), path + (name,))
                    continue
                where = ".".join(path) + "." if path else ""
                raise SchemaError(f"unknown setting {key!r} (from {origin(key)}); "
                                  f"{_nearest(name, ref_section, where)}")
            example = ref_section[name]
            if isinstance(example, Mapping):
                if not isinstance(value, Mapping):
                    raise SchemaError(f"{key} is a section, but {origin(key)} sets it to "
                                      f"{value!r}; set its keys instead, e.g. {key}.<key>=...")
                sub = (_reference_for(path + (name,), value, ref)
                       if path and path[0] in OPEN_TABLES else example)
                walk(value, sub, path + (name,))
                continue
            if not _fits(value, example, key):
                raise SchemaError(f"{key} must be {_type_name(example, key)}, got {value!r} from "
                                  f"{origin(key)}; e.g. {key} = {_example(example)}")
            if key in CHOICES and value not in CHOICES[key]:
                raise SchemaError(f"{key} = {value!r} (from {origin(key)}) is unknown: use one of "
                                  f"{', '.join(CHOICES[key])}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                for pattern, interval in RANGES:
                    if fnmatch.fnmatchcase(key, pattern) and not _in_range(value, interval):
                        raise SchemaError(f"{key} = {value!r} (from {origin(key)}) is out of "
                                          f"range: it must be in {interval}")

    walk(data, ref, ())
