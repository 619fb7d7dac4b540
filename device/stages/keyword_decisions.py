"""``keyword_decisions``: wake word, then a command (micro_speech's "recognize commands")."""
from __future__ import annotations

import logging

import numpy as np

from ..decisions import KeywordDecisions
from ..paths import resolve_build_path
from ..verifier import RATE_HZ, AudioHistory, WakeVerdict, WakeVerifier
from .base import HopContext, Param, Stage, register_stage

log = logging.getLogger("device.stages")

__all__ = ["KeywordDecisionStage"]


@register_stage("keyword_decisions")
class KeywordDecisionStage(Stage):
    """Wake word, then a command, over ``posteriors.keyword`` (micro_speech's "recognize
    commands"): `device.decisions.KeywordDecisions` with the profile's ``[decisions]``.

    Runs on every hop but acts only when new posteriors arrived (``ctx.fresh``), so it follows
    its producer's stride, whatever it is; the smoothing and windows are in milliseconds of audio
    (the posteriors carry their time), so a model at another stride, or one shed for a while,
    gets the same decisions over the same stretch of audio. Raises ``wake`` and ``command``
    events. Mark it ``essential`` in the profile: a device that drops wake words when busy is
    broken, one that reports scenes late is not.

    With a ``verifier`` (`device.verifier.WakeVerifier`), a trigger of the keyword model (at
    ``decisions.verified_wake_threshold``) becomes a wake event only when the verifier gives at
    least ``decisions.wake_verifier_threshold`` on one of its windows around it; each window is
    scored on the hop its audio is complete (`device.verifier.WakeVerdict`), and the first to
    pass sends the event, so a clear wake word waits for no window it does not need. The event
    keeps the trigger's time and carries the verifier's score. A withdrawn trigger closes the
    command window it opened, and commands raised before the verdict wait for it. The stage then
    reads ``audio`` on every hop (it keeps the last second or two). A verifier that cannot be
    loaded is reported once and the stage decides alone at ``decisions.wake_threshold``: the
    device stays awake, with the keyword model's own false-alarm rate. One that fails at run time
    is reported once, and each of its triggers is then a wake event when it clears
    ``decisions.wake_threshold``.

    When the verifier has a class readout (`device.verifier.WakeVerifier.classes`), each
    command trigger waits for it too: the keyword model's smoothed posteriors at the trigger
    and the embedding's class probabilities (`device.verifier.combine`, the embedding weighted
    ``decisions.command_verifier_weight``) name the word; the keyword model then triggers at
    ``decisions.verified_command_threshold``. A command goes out as the word they
    name (``keyword_model`` says what the small model alone had heard, when it differs); when
    they name no command the trigger is withdrawn and the window listens on.

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    input : str
        The posteriors stream read: ``(t_audio_s, probabilities)`` over the profile's keyword
        labels (default ``posteriors.keyword``).
    verifier : str
        The exported wake verifier (``export/wake_verifier.tflite``), or "" for none: fewer
        false wake-ups for a few embeddings per trigger and up to its ``wake_delay_s`` more wake
        latency.
    """

    follows_input = True

    PARAMS = {**Stage.PARAMS, "input": Param("the posteriors stream", "posteriors.keyword"),
              "verifier": Param("the exported wake verifier model (\"\": none)", "")}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.input_key = self.params["input"]
        self.decider = KeywordDecisions.from_config(cfg)
        self.consumes = (self.input_key,)
        self.emits = ("event.wake", "event.command")
        self.verifier = None
        self.verifier_problem = None   # why a configured verifier is not running (the self-check says it)
        self.verifier_threshold = float(cfg["decisions.wake_verifier_threshold"])
        self.rejected = 0
        self.verifier_failures = 0
        self.alone_threshold = float(cfg["decisions.wake_threshold"])
        # Triggers awaiting the verifier, in order: (kind, event, trigger sample, state): a
        # wake trigger's `WakeVerdict`, a command's smoothed posteriors; "held" commands wait
        # only for the wake verdict before them.
        self._queue: list[tuple] = []
        self.judge_commands = False
        self.rejected_commands = 0
        self.command_weight = float(cfg["decisions.command_verifier_weight"])
        self.command_labels = set(cfg["labels.commands"])
        if self.params["verifier"]:
            self._load_verifier(resolve_build_path(cfg, self.params["verifier"]))

    def _load_verifier(self, path) -> None:
        if self.pipeline_rate != RATE_HZ:
            self.verifier_problem = (f"it reads {RATE_HZ} Hz audio and the pipeline runs at "
                                     f"{self.pipeline_rate} Hz")
            log.warning("stage %s: the wake verifier reads %d Hz audio and the pipeline runs at "
                        "%d Hz; deciding without it (wake threshold %g). Set pipeline.rate = %d "
                        "or stages.%s.verifier = \"\"", self.name, RATE_HZ, self.pipeline_rate,
                        self.decider.wake.threshold, RATE_HZ, self.name)
            return
        try:
            self.verifier = WakeVerifier.load(path)
        except (OSError, ValueError) as exc:  # ManifestError is a ValueError
            self.verifier_problem = str(exc)
            log.warning("stage %s: no wake verifier (%s); deciding without it at wake threshold "
                        "%g. `make train export` builds it", self.name, exc,
                        self.decider.wake.threshold)
            return
        # One verdict now: the interpreters' first calls (resizing, allocating) cost several
        # times a verdict, and a first wake word should not wait for them.
        self.verifier.score(np.zeros(2 * RATE_HZ, np.float32), RATE_HZ)
        self.decider.wake.threshold = float(self.cfg["decisions.verified_wake_threshold"])
        self.history = AudioHistory(self.verifier.history_s + self.verifier.delay_s + 0.25)
        self.command_delay_samples = int(round(self.verifier.class_delay_s * RATE_HZ))
        self.consumes = (self.input_key, "audio")
        self.follows_input = False   # it keeps the audio of every hop
        if self.verifier.classes is not None:
            missing = sorted(set(self.decider.labels) - set(self.verifier.classes))
            if missing:
                log.warning("stage %s: the verifier's class readout lacks %s; commands are "
                            "decided by the keyword model alone. Re-run `make train export`",
                            self.name, missing)
            else:
                self.judge_commands = True
                self.decider.commands.threshold = float(
                    self.cfg["decisions.verified_command_threshold"])
        log.info("stage %s: wake verifier %s (trigger at %g, verifier at %g, up to %.0f ms "
                 "delay%s)", self.name, path.name, self.decider.wake.threshold,
                 self.verifier_threshold, 1000 * self.verifier.wake_delay_s,
                 f"; it judges commands, triggered at {self.decider.commands.threshold:g}"
                 if self.judge_commands else "")

    def process(self, ctx: HopContext) -> None:
        if self.verifier is None:
            if self.input_key in ctx.fresh:
                t, probs = ctx.data[self.input_key]
                ctx.events.extend(self.decider.update(t, probs))
            return
        self.history.write(ctx.audio)
        if self.input_key in ctx.fresh:
            t, probs = ctx.data[self.input_key]
            for event in self.decider.update(t, probs):
                # The posteriors are this hop's (the model stage runs before): the trigger is
                # the last sample written.
                if event["type"] == "wake":
                    self._queue.append(("wake", event, self.history.end, WakeVerdict(
                        self.verifier, self.history.end, self.verifier_threshold)))
                elif self.judge_commands:
                    self._queue.append(("command", event, self.history.end,
                                        self.decider.smoothed.copy()))
                elif self._queue:
                    self._queue.append(("held", event, self.history.end, None))
                else:
                    ctx.events.append(event)
        while self._queue:
            kind, event, trigger, state = self._queue[0]
            if kind == "wake":
                accepted = self._wake_verdict(ctx, event, state)
                if accepted is None:
                    break           # its next window's audio has not arrived
            elif kind == "command" and self.history.end < trigger + self.command_delay_samples:
                break
            self._queue.pop(0)
            if kind == "held":
                ctx.events.append(event)
            elif kind == "wake":
                if accepted:
                    ctx.events.append(event)
                else:
                    # Commands heard after a withdrawn wake word were never commands.
                    self.decider.commands.close()
                    while self._queue and self._queue[0][0] != "wake":
                        self._queue.pop(0)
            elif self._command_verdict(ctx, event, trigger, state):
                ctx.events.append(event)
            else:
                self.decider.commands.withdraw()

    def _trigger_index(self, trigger: int) -> tuple[np.ndarray, int]:
        view = self.history.view()
        return view, trigger - (self.history.end - len(view))

    def _failed(self, exc: Exception, what: str) -> None:
        self.verifier_failures += 1
        if self.verifier_failures == 1:
            log.error("stage %s: the wake verifier failed (%s: %s); %s are decided by the keyword "
                      "model alone until it recovers", self.name, type(exc).__name__, exc, what)

    def _wake_verdict(self, ctx: HopContext, event: dict, verdict) -> bool | None:
        """True: a wake event; False: withdrawn; None: waiting for more audio."""
        try:
            # One window a hop: an embedding is several ms, more than a hop's share of the
            # budget, and the windows complete at a trigger would otherwise share one hop.
            accepted = verdict.update(self.history.view(), self.history.end, max_windows=1)
        except Exception as exc:  # noqa: BLE001 - a failing verifier must not leave the device deaf
            # Decide as the keyword model alone would, and say so (once).
            self._failed(exc, f"wake triggers (at wake threshold {self.alone_threshold:g})")
            return event["confidence"] >= self.alone_threshold
        if accepted is None:
            return None
        score = verdict.best
        if not accepted:
            self.rejected += 1
            log.debug("stage %s: wake trigger at %.2f s withdrawn (verifier %.3f < %g)",
                      self.name, event["t_audio_s"], score, self.verifier_threshold)
            return False
        # t_audio_s stays the trigger's (what the event is about); the verdict's audio time is
        # when it can go out (evaluation.wake_latency reads it).
        event["verifier"] = round(score, 4)
        event["t_verdict_s"] = round(float(ctx.t_audio_s), 4)
        return True

    def _command_verdict(self, ctx: HopContext, event: dict, trigger: int,
                         probs: np.ndarray) -> bool:
        """The keyword model's smoothed posteriors at the trigger and the embedding's class
        probabilities together name the word; a command goes out only if they name a command
        (perhaps another one than the keyword model alone: the event says which)."""
        try:
            label, p, q = self.verifier.judge_command(
                probs, self.decider.labels, self.command_labels, *self._trigger_index(trigger),
                self.command_weight)
        except Exception as exc:  # noqa: BLE001 - as for wake triggers
            self._failed(exc, "commands")
            return True
        if label is None:
            self.rejected_commands += 1
            log.debug("stage %s: command %r at %.2f s withdrawn (the verifier heard no command)",
                      self.name, event["label"], event["t_audio_s"])
            return False
        if label != event["label"]:
            event["keyword_model"] = event["label"]
        event["label"], event["confidence"] = label, round(p, 4)
        event["verifier"] = round(q, 4)
        event["t_verdict_s"] = round(float(ctx.t_audio_s), 4)
        return True

    def on_gap(self) -> None:
        # Audio was lost: the history no longer holds what the trigger heard.
        if self.verifier is not None:
            self._queue = []

    def describe(self) -> dict:
        d = super().describe()
        if self.verifier is not None:
            d["verifier"] = {"threshold": self.verifier_threshold,
                             "trigger_threshold": self.decider.wake.threshold,
                             "delay_ms": round(1000 * self.verifier.wake_delay_s),
                             "rejected": self.rejected,
                             "failures": self.verifier_failures,
                             "commands": self.judge_commands,
                             "rejected_commands": self.rejected_commands}
        return d
