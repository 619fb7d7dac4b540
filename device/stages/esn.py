"""``esn``: the vocal-percussion echo state network, frame by frame, raising ``beat`` events."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..decisions import BeatTracker
from ..manifest import ManifestError
from ..paths import resolve_build_path
from .base import HopContext, Param, Stage, register_stage

__all__ = ["EsnStage"]

log = logging.getLogger("hopwise.stages.esn")

READOUTS = ("auto", "int8", "tflite")


@register_stage("esn")
class EsnStage(Stage):
    """Steps the fixed-point reservoir (`device.esn.EsnRunner`) on every new ESN frame,
    applies the readout and turns the posteriors into ``beat`` events
    (`device.decisions.BeatTracker`, ``[decisions] beat_*``): one per hit, with its label,
    confidence and the ``t_audio_s`` of its onset.

    Two ways in, the same numbers bit for bit (tests/device/test_esn.py):

    * ``input = "audio"`` (the default profile's), or any audio stream: the stage resamples
      the hop to ``[frontend.esn]``'s rate (``resample.stage_quality``, as the ``logmel`` stage
      and training) and runs `device.esn.EsnStream`: the log-mel frame, the reservoir step and
      the int8 readout in one numba call per hop, no ``esn_frontend`` stage needed. This is
      the fast path (``benchmarks/bench_esn.py``: 0.6-0.75 of the time of the other).
    * ``input = "features.esn.new"``: the frames of a ``logmel`` stage of ``[frontend.esn]``
      (``esn_frontend``), one `EsnRunner.push` per frame; for a pipeline that wants the ESN's
      features for something else too.

    The model is ``esn_int8.npz`` with its manifest (`device.esn.read_esn_model`: sha256,
    labels against ``labels.percussion``, frontend against ``[frontend.esn]``); a tampered or
    mismatched file stops start-up with the fix. The readout is the int8 weights of the
    ``.npz`` (no interpreter; the profile's default) or the int8 TFLite model the manifest names,
    or whichever a start-up measurement finds faster (``readout = "auto"``: the two can disagree
    at near-ties, since TFLite requantises the scores to int8, so "auto" can raise other events on
    another machine or under other load, and a deploy's self-check may then fail). The manifest is watched (checked every
    ``reload_check_s`` of audio): an enrolment (``python -m device enrol``) that writes a new
    readout is picked up without a restart; a reservoir that changed too resets the state.

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    model : str
        The ``.npz`` (its ``.json`` beside it), relative to ``project.build_dir`` or the cwd.
    input : str
        An audio stream (``audio``: fused frontend) or a new-frames stream
        (``features.esn.new``); see above.
    input_rate : int
        The audio stream's rate in Hz (default: the pipeline's); unused for frames.
    readout : str
        ``"auto"``, ``"int8"`` or ``"tflite"``.
    if_missing : str
        ``"error"``: a missing model file stops start-up; ``"warn"``: the stage says so once
        and raises no events (the default profile's choice, so a build without the ESN still
        runs the keyword model). A damaged file is refused either way.
    reload_check_s : float
        How often the manifest is checked for a new readout (audio seconds; 0: never).
    """

    PARAMS = {**Stage.PARAMS,
              "model": Param("the ESN .npz, its .json manifest beside it"),
              "input": Param('an audio stream ("audio": frontend fused) or "features.esn.new"',
                             "features.esn.new"),
              "input_rate": Param("the audio stream's rate in Hz (default: the pipeline's)", None),
              "readout": Param('"auto" (faster, measured), "int8" or "tflite"', "auto"),
              "if_missing": Param('"error" or "warn" when the model file is missing', "error"),
              "reload_check_s": Param("seconds of audio between checks for a new readout", 1.0)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        if self.params["readout"] not in READOUTS:
            raise ConfigError(f"stages.{name}.readout = {self.params['readout']!r}; use one of "
                              f"{', '.join(READOUTS)}")
        if self.params["if_missing"] not in ("error", "warn"):
            raise ConfigError(f"stages.{name}.if_missing = {self.params['if_missing']!r}; use "
                              f"\"error\" or \"warn\"")
        self.input_key = self.params["input"]
        self.consumes = (self.input_key,)
        # Audio in: this stage runs the frontend itself, fused with the reservoir.
        self.fused_input = not self.input_key.startswith("features.")
        self._resampler = None
        self.stream = None                  # device.esn.EsnStream (fused input) once loaded
        if self.fused_input:
            from ..frontend import LogMelConfig
            self.fcfg = LogMelConfig.from_mapping(cfg.section("frontend.esn"))
            input_rate = int(self.params["input_rate"] or pipeline_rate)
            if input_rate != self.fcfg.sample_rate:
                from ..resample import Resampler
                self._resampler = Resampler(input_rate, self.fcfg.sample_rate,
                                            cfg["resample.stage_quality"])
        self.emits = ("event.beat", "posteriors.percussion")
        self.labels = list(cfg["labels.percussion"])
        self.frontend = cfg.section("frontend.esn")
        fhop = int(round(self.frontend["sample_rate"] * self.frontend["hop_ms"] / 1000.0))
        self.frame_s = fhop / float(self.frontend["sample_rate"])
        self.path = resolve_build_path(cfg, self.params["model"])
        self.runner = None                  # device.esn.EsnRunner once a model is loaded
        self.readout_backend = None
        self.readout_us: dict = {}
        self.reloads = 0
        self.frames = 0
        self._t0 = 0.0              # stream time of frame 0 (moves on after a gap)
        self._gap = False
        self._mtime = None
        # Stream time of the next check for a new readout (never with reload_check_s <= 0).
        self._next_check = 0.0 if float(self.params["reload_check_s"]) > 0 else float("inf")
        self._hops_in = 0           # input hops pushed since the last reset (block frame timing)
        # prepare_block's block: [first hop, posteriors per frame, release hop per frame, last
        # frame per hop, events per hop] (None: no block, process pushes the hop itself)
        self._block = None
        # Output sample j of the rate change is input sample j * in/out (soxr's stream is
        # delay-compensated: `Resampler`), so a frame's last sample maps to an input hop.
        self._rates = ((int(self.params["input_rate"] or pipeline_rate), self.fcfg.sample_rate)
                       if self._resampler is not None else (1, 1))
        self.tracker = BeatTracker.from_config(cfg, self.labels, self.frame_s)
        if not self._manifest_path().exists() and self.params["if_missing"] == "warn":
            log.warning("stage %s: no ESN model at %s, so no beat events; build it with "
                        "`make train export` (python -m train.esn, python -m export.esn) or "
                        "remove %r from pipeline.stages", name, self.path, name)
            return
        self._load()

    def _manifest_path(self) -> Path:
        return self.path.with_suffix(".json")

    def _load(self) -> None:
        # Imported here, not at the top: device.esn loads numba (~50 MB resident), and every
        # stage module is imported for the registry, so a pipeline without an ESN would pay it.
        from ..esn import EsnRunner, read_esn_model
        model, manifest = read_esn_model(self.path, labels=self.labels, frontend=self.frontend)
        old = self.runner
        runner = EsnRunner(model)
        if old is not None and np.array_equal(old.model.reservoir.w, model.reservoir.w) \
                and np.array_equal(old.model.reservoir.w_in, model.reservoir.w_in):
            runner.x[:] = old.x        # same reservoir, new readout: keep the running state
            runner.frames = old.frames
        runner.push(np.zeros(runner.m, np.float32))   # compile now, not on the first live hop
        runner.reset()
        tflite = self._tflite(manifest)
        self.readout_backend, self.readout_us = self._choose(runner, tflite)
        if self.readout_backend == "tflite":
            runner.use_tflite(tflite)
        self.runner = runner
        if self.fused_input:
            from ..esn import EsnStream
            if self.stream is None:
                self.stream = EsnStream(runner, self.fcfg)
                # Compile (or load from numba's cache) the fused kernel now, not on the first
                # live hop, where it would look like overload and shed stages.
                self.stream.push(np.zeros(self.stream.win, np.float32))
                self.stream.reset()
            else:
                self.stream.rebind(runner)      # a new readout: the buffered samples stay
        self.manifest = manifest
        self._mtime = self._manifest_path().stat().st_mtime_ns
        log.info("stage %s: ESN %d neurons, readout %s (%s)", self.name,
                 model.reservoir.n_neurons, self.readout_backend,
                 ", ".join(f"{k} {v:.1f} us" for k, v in self.readout_us.items()) or "not timed")

    def _tflite(self, manifest):
        """The TFLite readout the manifest names, verified, or None when it names none (an
        enrolled readout) or ``readout = "int8"``."""
        spec = manifest.get("readout_tflite")
        if self.params["readout"] == "int8" or not spec:
            if self.params["readout"] == "tflite":
                raise ManifestError(f"stages.{self.name}.readout = \"tflite\" but "
                                    f"{manifest['_path']} names no TFLite readout (an enrolled "
                                    f"readout has none): set readout = \"auto\" or \"int8\"")
            return None
        path = Path(manifest["_path"]).with_name(spec["file"])
        from ..interpreter import TFLiteModel
        from ..manifest import sha256_file
        if not path.exists() or sha256_file(path) != spec["sha256"]:
            raise ManifestError(f"{path} is missing or is not the readout {manifest['file']} was "
                                f"exported with (sha256 differs): deploy the files of one "
                                f"`make export` together")
        return TFLiteModel(path, expected_labels={"percussion": self.labels})

    def _choose(self, runner, tflite) -> tuple[str, dict]:
        """The faster readout on this machine, measured on 200 frames (int8 if no TFLite)."""
        if tflite is None:
            return "int8", {}
        frame = np.zeros(runner.m, np.float32)
        timings = {}
        for backend, model in (("int8", None), ("tflite", tflite)):
            runner.use_tflite(model)
            runner.push(frame)      # warm-up (numba compiles, interpreter allocates)
            t0 = time.perf_counter()
            for _ in range(200):
                runner.push(frame)
            timings[backend] = (time.perf_counter() - t0) / 200 * 1e6
        runner.use_tflite(None)
        runner.reset()
        if self.params["readout"] != "auto":
            return self.params["readout"], timings
        return min(timings, key=timings.get), timings

    def _maybe_reload(self, t: float) -> None:
        if t < self._next_check:
            return
        self._next_check = t + float(self.params["reload_check_s"])
        try:
            mtime = self._manifest_path().stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._mtime:
            return
        try:
            self._load()
            self.reloads += 1
            log.info("stage %s: reloaded %s (a new readout)", self.name, self.path.name)
        except (ManifestError, OSError) as exc:
            self._mtime = mtime       # said once per change, the old model keeps running
            log.warning("stage %s: the changed %s is refused, keeping the loaded model: %s",
                        self.name, self.path.name, exc)

    def idle(self) -> bool:
        """No ESN built (``if_missing = "warn"``): nothing to do, nor for an ``esn_frontend``;
        a model that appears later needs a restart, as its reload checks run only once loaded."""
        return self.runner is None

    def process(self, ctx: HopContext) -> None:
        if self.runner is None:
            return
        if ctx.t_audio_s >= self._next_check:
            self._maybe_reload(ctx.t_audio_s)
        block = self._block
        if block is not None:
            # A hop of a prepared block (prepare_block): hand out its share, nothing else.
            if self._gap:
                self._stamp_after_gap(ctx, block)
            j = ctx.hop_index - block[0]
            last_frame = block[3]
            if last_frame is None or last_frame[j] is None:
                return
            events = block[4]
            if events is not None and j in events:
                ctx.events.extend(events[j])
            ctx.put("posteriors.percussion", (ctx.t_audio_s, block[1][last_frame[j]]))
            return
        if self.stream is not None:
            self._process_audio(ctx)
            return
        if self.input_key not in ctx.fresh:
            return
        new = ctx.data[self.input_key]
        if self._gap:
            # After lost audio, frame 0 of the restarted stream ends with this hop's audio.
            self._t0 = ctx.t_audio_s - len(new) * self.frame_s
            self._gap = False
        runner = self.runner
        for frame in new:
            t = self._t0 + self.frames * self.frame_s
            runner.push(frame)
            p = runner.proba
            self.frames += 1
            events = self.tracker.update(t, p)
            if events:
                ctx.events.extend(events)
        if len(new):
            ctx.put("posteriors.percussion", (ctx.t_audio_s, runner.proba.copy()))

    def block_capable(self) -> bool:
        """On the source's audio (``input = "audio"``) with the model loaded: a block's samples
        are resampled and pushed through `EsnStream` in one call each (`prepare_block`), instead
        of one soxr call and one numba call per hop."""
        return self.stream is not None and self.input_key == "audio"

    def prepare_block(self, samples: np.ndarray, n_hops: int, first_hop: int) -> list[bool]:
        """One rate change and one `EsnStream.push` for the whole block, and the beat decisions
        of its frames; `process` then hands each hop its share: the ``beat`` events of the frames
        whose last sample arrived on it (or on the block's first hop when the resampler had held
        the frame back past it) and the posteriors of its last such frame. The frames, the
        reservoir states, the ``beat`` events with their ``t_audio_s`` and the hops they are
        raised on are those of deciding each frame on its hop (tests/device/test_esn.py); only
        ``posteriors.percussion`` may be put on another hop of the block than hop by hop's,
        since soxr hands its output out in bursts either way. Returns the hops that release a
        frame (and the first after a gap, which stamps the frame clock): the pipeline calls
        `process` only on those.

        After a gap the frame clock starts from the first hop's ``t_audio_s``, which only
        `process` sees: the block's decisions then wait for that hop's call."""
        audio = self._resampler(samples) if self._resampler is not None else samples
        stream = self.stream
        k = stream.push(audio)
        before = self._hops_in
        self._hops_in = before + n_hops
        gap = self._gap
        if not k:
            # A block without frames (soxr holds its output back every third block or so):
            # nothing to hand out, except the frame clock after a gap. (Not None: a process()
            # call on one of its hops, should the pipeline make one, must not push the hop.)
            self._block = [first_hop, None, None, None, None]
            return [gap] + [False] * (n_hops - 1)
        # Frame g (since the last reset) ends with output sample g * hop + win - 1, which is
        # input sample ceil((g * hop + win) * in/out) - 1, on input hop (that) // hop_in: that
        # block hop, or the first when the resampler held the frame back past its own block.
        # Integers (a block brings one to four frames): exact, and cheaper than NumPy here.
        r_in, r_out = self._rates
        hop_in = len(samples) // n_hops
        fhop, win, last = stream.hop, stream.win, n_hops - 1
        busy = [False] * n_hops
        # last_frame[j]: the last frame released on block hop j (its posteriors go out there)
        last_frame: list = [None] * n_hops
        release = []
        for f, g in enumerate(range(stream.frames - k, stream.frames)):
            j = (-(-(g * fhop + win) * r_in // r_out) - 1) // hop_in - before
            j = 0 if j < 0 else (last if j > last else j)
            release.append(j)
            busy[j] = True
            last_frame[j] = f
        block = [first_hop, stream.proba[:k].copy(), release, last_frame, None]
        self._block = block
        if gap:
            busy[0] = True          # process() stamps the clock there, then decides
        else:
            block[4] = self._decide(block[1], len(block[2]), block[2])
        return busy

    def _decide(self, proba, k: int, release=None) -> dict | None:
        # The next k frames through the beat tracker, at their stream times (t0 + n * frame_s,
        # frame n since the last reset), both paths alike; their events by the block hop each
        # frame is released on (``release[f]``; all on 0 without one), None when there are none.
        t0, n0, fs, update = self._t0, self.frames, self.frame_s, self.tracker.update
        self.frames = n0 + k
        events = None
        for f in range(k):
            evs = update(t0 + (n0 + f) * fs, proba[f])
            if evs:
                if events is None:
                    events = {}
                events.setdefault(release[f] if release is not None else 0, []).extend(evs)
        return events

    def end_block(self) -> None:
        self._block = None
        self.block_cost_s = 0.0

    def _stamp_after_gap(self, ctx: HopContext, block: list) -> None:
        # The first hop after a gap (prepare_block made it busy): frame 0 of the restarted
        # stream ends with this hop's audio, as in _process_audio; then the block's decisions.
        release = block[2] or ()
        self._t0 = ctx.t_audio_s - sum(1 for r in release if r == 0) * self.frame_s
        self._gap = False
        if release:
            block[4] = self._decide(block[1], len(block[2]), block[2])

    def _process_audio(self, ctx: HopContext) -> None:
        # The fused path hop by hop: one EsnStream.push (one numba call) for the hop's frames,
        # then the decisions per frame, with the frames' times as in process().
        if self.input_key == "audio":
            audio = ctx.audio
        elif self.input_key in ctx.fresh:
            audio = ctx.data[self.input_key]
        else:
            return                          # its producer did not run on this hop
        if self._resampler is not None:
            audio = self._resampler(audio)
        stream = self.stream
        self._hops_in += 1
        k = stream.push(audio)
        if self._gap:                       # as process(), so both inputs stamp alike
            self._t0 = ctx.t_audio_s - k * self.frame_s
            self._gap = False
        if not k:
            return
        events = self._decide(stream.proba, k)
        if events is not None:
            ctx.events.extend(events[0])
        ctx.put("posteriors.percussion", (ctx.t_audio_s, stream.proba[k - 1].copy()))

    def on_gap(self) -> None:
        if self.stream is not None:
            self.stream.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._hops_in = 0
        self._block = None
        if self.runner is not None:
            self.runner.reset()
        self.tracker.reset()
        self.frames = 0
        self._gap = True

    def describe(self) -> dict:
        d = super().describe()
        d.update(model=str(self.path), loaded=self.runner is not None,
                 readout=self.readout_backend, readout_us=self.readout_us, reloads=self.reloads,
                 neurons=self.runner.n if self.runner else None,
                 fused=self.stream is not None and self.stream.fused)
        return d
