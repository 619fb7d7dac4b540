"""``tflite_model``: any int8 TFLite model with a hopwise manifest (micro_speech's "model")."""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import ConfigError
from ..manifest import ManifestError, load_manifest
from ..paths import resolve_build_path
from .base import HopContext, Param, Stage, register_stage

__all__ = ["TFLiteModelStage", "model_path"]

log = logging.getLogger("hopwise.stages.model")


@register_stage("tflite_model")
class TFLiteModelStage(Stage):
    """Runs an int8 TFLite model every ``stride_hops`` hops on the last frames of a feature
    stream and writes each of its heads' posteriors to ``posteriors.<head>`` as
    ``(t_audio_s, probabilities)`` (micro_speech's "model").

    Everything about the model comes from its manifest (`device.manifest`), so a new model — a
    sound classifier, an ESN readout exported as TFLite — is configuration, not a new class:

    * heads: one ``posteriors.<head>`` stream per manifest output; a head the profile knows
      (`Config.head_labels`: ``keyword``, ``scene``, ``percussion``) must have the profile's
      labels, else start-up stops with `ManifestError`;
    * input: ``features.<frontend>``, the manifest's frontend name, whose settings must equal the
      profile's ``[frontend.<frontend>]`` (the device computes what the model was trained on);
    * window: the frames of the model's input tensor (the newest frames of the stream);
    * stride: the manifest's ``stride_hops`` — what the export was told the model runs at
      (``model.multitask.stride_hops`` for the keyword + scene network: 10 hops = 100 ms).

    A **streaming** model (``export.streaming``: the manifest has a ``streaming`` section) takes
    only the new frames of each stride and keeps the rest of the network's buffers inside the
    interpreter. The stage feeds it the frames that arrived since its last call; when those are
    not exactly one stride — the first call, a stage shed for a while, an overrun gap
    (`on_gap`) — it rebuilds the state from the feature window (a long silence, then the
    window's frames: what the non-streaming model would read). The profile picks the model:
    ``export/multitask_stream_int8.tflite`` (default) or the non-streaming reference
    ``export/multitask_int8.tflite`` (the fallback).

    The stride has that one source because training, export and decisions all assume it. A
    ``stride_hops`` in the stage's section is allowed only if it agrees; one that does not is a
    start-up error naming both values and how to re-export; a ``model.multitask.stride_hops``
    in the device's profile that differs is an export setting and only draws a warning. The
    decisions downstream work in milliseconds of audio, so the stride changes their latency,
    not their windows.

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    model : str
        The ``.tflite`` file, its ``.json`` manifest beside it. Relative paths are tried in the
        working directory, then under ``project.build_dir`` (`device.paths.resolve_build_path`).
    input : str
        The feature stream read (default ``features.<the manifest's frontend>``); set it only
        when the features come from a stage other than that frontend's ``logmel``.
    num_threads : int
        Interpreter threads (default ``runtime.num_threads``). 1 leaves the Pi's other cores to
        capture and sinks; more lowers one call's latency, not the total CPU.
    allow_tensorflow : bool
        Permit the ``tensorflow.lite`` interpreter fallback (host experiments only, never the Pi).
    fallback : str
        The model run instead, with a warning at start-up, when ``model`` does not exist (the
        default profile: the streaming model, falling back on the non-streaming reference when
        `make export` could not build the streaming one and said so). Only for the model the
        profile file names beside it: a model given by ``--model`` or ``--set`` is run or
        refused, never swapped. A fallback that is missing too is the usual missing-model
        error.
    """

    raises_events = False

    PARAMS = {**Stage.PARAMS,
              "stride_hops": Param("run every n-th hop; must equal the manifest's stride_hops "
                                   "(default: it)", None),
              "model": Param("the .tflite file, its .json manifest beside it"),
              "input": Param("the feature stream (default: features.<manifest frontend>)", None),
              "num_threads": Param("interpreter threads (default: runtime.num_threads)", None),
              "allow_tensorflow": Param("allow the tensorflow.lite fallback (host only)", False),
              "fallback": Param("the model run, with a warning, when `model` does not exist",
                                None)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        from ..interpreter import TFLiteModel  # the interpreter backends load only when needed
        fallback = self.params["fallback"]
        key = f"stages.{name}"
        if fallback and (self.params["model"] != cfg.get(f"{key}.model")
                         or cfg.origin(f"{key}.model") != cfg.origin(f"{key}.fallback")):
            fallback = None    # a model named by --model or --set is run or refused, never swapped
        path = model_path(cfg, self.params["model"], fallback, name)
        manifest = load_manifest(path)   # heads, frontend and stride, before the interpreter
        frontend = manifest["frontend"].get("name")
        if not frontend:
            raise ManifestError(f"model {path.name}: its manifest's frontend has no name, so the "
                                f"device cannot tell which [frontend.X] it was trained on; "
                                f"re-run `make export`")
        heads = [o["name"] for o in manifest["outputs"]]
        profile_labels = cfg.head_labels
        self.model = TFLiteModel(
            path, expected_labels={h: profile_labels[h] for h in heads if h in profile_labels},
            frontend=cfg.section(f"frontend.{frontend}"),
            num_threads=int(self.params["num_threads"] or cfg["runtime.num_threads"]),
            allow_tensorflow=bool(self.params["allow_tensorflow"]))
        self.set_schedule(self._stride(manifest, path), self.params["phase"])
        _note_operating_point(manifest, cfg, path)
        self.frames = self.model.frames
        self.input_key = self.params["input"] or f"features.{frontend}"
        self.consumes = (self.input_key,)
        self.emits = tuple(f"posteriors.{h}" for h in self.model.outputs)
        self.invocations = 0
        # A streaming model must see every frame once, in order: the frames counted by the
        # producer since the last call say whether it did (see `_run_streaming`).
        self.streaming = self.model.streaming is not None
        self._producer = None
        self._fed_frames = None      # the producer's frame count at the last call; None: resync

    def _stride(self, manifest: dict, path) -> int:
        """The manifest's stride_hops, checked against one the section sets."""
        exported = manifest.get("stride_hops")
        asked = self.params["stride_hops"]
        if exported is None:
            if asked is None:
                raise ManifestError(f"model {path.name}: its manifest has no stride_hops; re-run "
                                    f"`make export`, or set stages.{self.name}.stride_hops")
            return int(asked)
        key = f"model.{manifest.get('kind')}.stride_hops"
        if self.cfg.get(key) is not None and int(self.cfg[key]) != int(exported):
            # The export setting: on the device it changes nothing (the manifest's stride is
            # what the model was exported for), which deserves a word, not a refusal.
            log.warning("%s = %s in the profile, but model %s was exported with stride_hops %d; "
                        "running it at %d (re-export to change it)", key, self.cfg[key],
                        path.name, int(exported), int(exported))
        if asked is not None and int(asked) != int(exported):
            how = (f"`make export SET={key}={int(asked)}`" if self.cfg.get(key) is not None
                   else f"stride_hops = {int(asked)}")
            raise ConfigError(
                f"stages.{self.name}.stride_hops = {int(asked)} disagrees with model {path.name}, "
                f"exported to run every {int(exported)} hops (its manifest's stride_hops): remove "
                f"stages.{self.name}.stride_hops to run it at {int(exported)}, or re-export it "
                f"with {how}")
        return int(exported)

    def connect(self, producers) -> None:
        producer = producers.get(self.input_key)
        self._producer = producer
        kept = getattr(producer, "window_frames", None)
        if kept is not None and kept < self.frames:
            raise ConfigError(f"stage {self.name!r} reads {self.frames} frames of "
                              f"{self.input_key!r} but stage {producer.name!r} keeps only {kept}: "
                              f"set stages.{producer.name}.window_frames = {self.frames}")
        if self.streaming:
            frontend = getattr(producer, "fcfg", None)
            if frontend is not None and abs(frontend.hop_ms - self.hop_s * 1000.0) > 1e-6:
                raise ConfigError(f"stage {self.name!r} runs a streaming model, which takes one "
                                  f"frame per pipeline hop, but {producer.name!r} makes a frame "
                                  f"every {frontend.hop_ms} ms and a hop is {self.hop_s * 1000} "
                                  f"ms: use the non-streaming model (stages.{self.name}.model)")

    def process(self, ctx: HopContext) -> None:
        window = ctx.data.get(self.input_key)
        if window is None:
            return  # no frame yet (the first hops of the stream)
        if self.streaming:
            out = self._run_streaming(window)
        else:
            out = self.model.run(window[-self.frames:])
        self.invocations += 1
        t = ctx.t_audio_s
        for head, probs in out.items():
            ctx.put(f"posteriors.{head}", (t, probs))

    def _run_streaming(self, window):
        """The new frames since the last call; when they are not exactly one stride (the first
        call, a shed stage restored, an overrun gap), the state is rebuilt from the producer's
        window: silence, then the window's frames — what the non-streaming model would see."""
        total = getattr(self._producer, "frames_total", None)
        n = self.frames
        if total is not None and self._fed_frames is not None and total - self._fed_frames == n:
            out = self.model.run(window[-n:])
        elif total is None and self._fed_frames is not None:
            out = self.model.run(window[-n:])   # a producer that does not count: trust the stride
        else:
            self.model.reset_state()
            usable = (min(len(window), self.model.window_frames) // n) * n
            out = None
            for end in range(len(window) - usable + n, len(window) + 1, n):
                out = self.model.run(window[end - n:end])
        self._fed_frames = total if total is not None else 0
        return out

    def on_gap(self) -> None:
        """Audio was lost: the state no longer follows the stream; rebuild it on the next call."""
        if self.streaming:
            self._fed_frames = None

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=str(self.model.path), backend=self.model.backend, frames=self.frames,
                 heads=list(self.model.outputs), streaming=self.streaming)
        return d


def model_path(cfg, model: str, fallback: str | None, stage: str = "multitask") -> Path:
    """The model file a ``tflite_model`` stage runs: ``model``, or ``fallback`` (with a warning)
    when ``model`` is not there and the fallback is."""
    path = resolve_build_path(cfg, model)
    if fallback and not path.exists():
        other = resolve_build_path(cfg, fallback)
        if other.exists():
            log.warning("stage %s: no model at %s (`make export` says why when it cannot build "
                        "it); running its fallback %s", stage, path, other)
            return other
    return path


def _note_operating_point(manifest: dict, cfg, path) -> None:
    """Say when the profile's wake decisions differ from the operating point the wake-word
    benchmark chose for this model (``evaluation.wakeword --write-operating-point``): the
    profile still decides, but a user should know the figures belong to another setting."""
    op = manifest.get("operating_point")
    if not isinstance(op, dict) or "wake_threshold" not in op:
        return
    # With a wake verifier the benchmark swept the trigger before it (its "setting").
    setting = str(op.get("setting", "decisions.wake_threshold"))
    if setting not in ("decisions.wake_threshold", "decisions.verified_wake_threshold"):
        return
    used = (float(cfg[setting]), float(cfg["decisions.smoothing_ms"]))
    chosen = (float(op["wake_threshold"]), float(op.get("smoothing_ms", used[1])))
    figures = (f"miss rate {100 * float(op.get('miss_rate', float('nan'))):.1f} % at "
               f"{op.get('snr_db', '?')} dB SNR with no false alarm on the benchmark's streams")
    if used == chosen:
        log.info("model %s: wake decisions at the benchmarked operating point (threshold %g, "
                 "smoothing %g ms: %s)", Path(path).name, *chosen, figures)
    else:
        log.warning("model %s was benchmarked at wake_threshold %g, smoothing_ms %g (%s); the "
                    "profile runs %g / %g ms: false alarms and misses differ from those figures",
                    Path(path).name, *chosen, figures, *used)
