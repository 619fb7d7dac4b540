"""``logmel``: streaming log-mel features (micro_speech's "feature provider")."""
from __future__ import annotations

import numpy as np

from ..frontend import LogMelConfig, LogMelStream, silence_value
from .base import HopContext, Param, Stage, register_stage

__all__ = ["LogMelStage"]


@register_stage("logmel")
class LogMelStage(Stage):
    """Streaming log-mel features (micro_speech's "feature provider").

    Every hop: pushes the hop's audio (resampled when its frontend's rate differs from the
    input's, e.g. 16 -> 8 kHz for the ESN) into `LogMelStream` and keeps a rolling window of the
    last ``window_frames`` frames in ``features.<frontend>`` — a float32 array
    ``(window_frames, n_mels)``, oldest first, that model stages read without copying.
    ``features.<frontend>.new`` holds only the frames completed on this hop (for per-frame
    consumers such as the ESN). Before the window has filled, the missing frames are the log
    floor (digital silence).

    Parameters (``[stages.<name>]``, besides those of `Stage`)
    ----------
    frontend : str
        The profile's ``[frontend.<frontend>]`` that defines the features; it must be the one
        the consuming model was trained on (its manifest is checked against it).
    window_frames : int
        Frames kept: at least what the consuming model reads (98 = 1 s at a 10 ms hop for the
        keyword model; 1 for a per-frame consumer). More costs only memory.
    input : str
        The audio stream read (default ``audio``, the source's hop). A separator in front of the
        keyword model writes e.g. ``audio.separated`` and this stage reads that instead.
    input_rate : int
        That stream's rate in Hz (default: the pipeline's). A rate change uses the profile's
        ``resample.stage_quality`` (`device.resample`), the one training uses for the same
        frontend.
    """

    raises_events = False

    PARAMS = {**Stage.PARAMS,
              "frontend": Param("the [frontend.X] section that defines the features"),
              "window_frames": Param("feature frames kept for the consumers"),
              "input": Param("the audio stream read", "audio"),
              "input_rate": Param("that stream's rate in Hz (default: the pipeline's)", None)}

    def __init__(self, name, params, cfg, pipeline_rate, hop_s):
        super().__init__(name, params, cfg, pipeline_rate, hop_s)
        self.frontend = self.params["frontend"]
        self.fcfg = LogMelConfig.from_config(cfg, self.frontend)
        self.rate = self.fcfg.sample_rate
        self.window_frames = int(self.params["window_frames"])
        self.key = f"features.{self.frontend}"
        self.emits = (self.key, self.key + ".new")
        self.input_key = self.params["input"]
        self.input_rate = int(self.params["input_rate"] or pipeline_rate)
        self.consumes = (self.input_key,)
        self._resampler = None
        if self.rate != self.input_rate:
            from ..resample import Resampler
            self._resampler = Resampler(self.input_rate, self.rate, cfg["resample.stage_quality"])
        self.stream = LogMelStream(self.fcfg)
        self.window = np.full((self.window_frames, self.fcfg.n_mels), silence_value(self.fcfg),
                              dtype=np.float32)
        self.frames_total = 0
        self._block = None        # [frames, frames done after each hop, first hop, frames put]
        self._deferred: list[np.ndarray] = []   # blocks no reader needed yet, not pushed
        self._read_in_block: dict[tuple[int, int], bool] = {}   # (first hop % period, hops)
        self._read_for = None                   # the readers_due it was worked out for

    def block_capable(self) -> bool:
        """On the source's audio at its own rate: a block's frames are the frames of its hops
        (`LogMelStream` equals batch framing), so they are computed in one call. Behind a
        resampler or a producer stage it runs hop by hop."""
        return self.input_key == "audio" and self._resampler is None

    def prepare_block(self, samples: np.ndarray, n_hops: int, first_hop: int) -> list[bool]:
        """Every frame the block completes, in one `LogMelStream.push`; `process` then puts the
        frames into the window on the hops where a reader of its streams runs (every hop that
        completes a frame when it does not know: ``readers_due``), so each reader sees exactly
        the window and frames it would see hop by hop. Returns those hops: on the others (a
        32 ms frontend's two of every three; the keyword frontend's three of every four behind
        a model called every 4th hop) the pipeline does not call `process`; `end_block` puts
        what is left into the window.

        A block in which none of its readers runs is not even pushed: its samples wait and go
        through `LogMelStream` with the block where one runs, so the sound classifiers' frontend
        (read every 50 hops) computes its frames twice a second in one call each instead of
        once per 4-hop block, the same frames."""
        hop = len(samples) // n_hops
        due = self.readers_due
        period = len(due) if due else 0
        if period:
            if self._read_for is not due:         # a new schedule: what was known is not
                self._read_in_block, self._read_for = {}, due
            key = (first_hop % period, n_hops)
            read = self._read_in_block.get(key)
            if read is None:     # whether a reader runs in a block starting there, once each
                read = self._read_in_block[key] = any(due[(first_hop + j) % period]
                                                      for j in range(n_hops))
        if period and not read:
            self._deferred.append(np.array(samples, np.float32))   # the caller may reuse it
            self._block = [samples[:0], [0] * (n_hops + 1), first_hop, 0]   # nothing to hand out
            return [False] * n_hops
        before = self.stream.pending_samples
        waited = 0
        if self._deferred:
            waited = sum(len(a) for a in self._deferred)
            samples = np.concatenate([*self._deferred, samples])
            self._deferred = []
        frames = self.stream.push(samples)
        win, step = self.stream._win, self.stream._hop
        # done[j + 1]: frames complete after hop j of the block, done[0] those of the waiting
        # blocks, which the block's first busy hop puts (one loop: this runs per block)
        have = before + waited - win
        done, busy, last = [0 if have < 0 else 1 + have // step], [], 0
        for j in range(n_hops):
            have += hop
            d = 0 if have < 0 else 1 + have // step
            b = d > last and (not period or due[(first_hop + j) % period])
            busy.append(b)
            if b:
                last = d
            done.append(d)
        self._block = [frames, done, first_hop, 0]     # the last item: frames put so far
        return busy

    def end_block(self) -> None:
        block = self._block
        if block is not None and block[3] < len(block[0]):
            self._insert(block[0][block[3]:])   # no reader ran since: into the window only
        self._block = None
        self.block_cost_s = 0.0

    def _insert(self, new: np.ndarray) -> None:
        k = len(new)
        if k >= self.window_frames:
            self.window[:] = new[-self.window_frames:]
        else:
            self.window[:-k] = self.window[k:]
            self.window[-k:] = new
        self.frames_total += k

    def process(self, ctx: HopContext) -> None:
        block = self._block
        if block is not None:
            # every frame complete by this hop that no earlier hop of the block put
            end = block[1][ctx.hop_index - block[2] + 1]
            new = block[0][block[3]:end]
            block[3] = max(block[3], end)
            k = len(new)
        else:
            if self.input_key == "audio":
                audio = ctx.audio
            elif self.input_key in ctx.fresh:
                audio = ctx.data[self.input_key]
            else:
                return  # the producer (e.g. a separator) did not run on this hop
            if self._resampler is not None:
                audio = self._resampler(audio)
            if self._deferred:      # a one-hop read after deferred blocks: theirs first
                audio = np.concatenate([*self._deferred, audio])
                self._deferred = []
            new = self.stream.push(audio)
            k = len(new)
        if k:
            self._insert(new)
            ctx.put(self.key, self.window)
        ctx.put(self.key + ".new", new)

    def on_gap(self) -> None:
        # The resampler's filter history belongs to the audio before the gap, as the stream's
        # samples and PCEN's running mean do: after a gap the features start as from a new file.
        self.stream.reset()
        if self._resampler is not None:
            self._resampler.reset()
        self._deferred = []
