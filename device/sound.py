"""Segments, silence removal and clip voting of the sound classifiers (after Piczak 2015).

One definition for training (`train.classifiers`), evaluation (`evaluation.classifiers`) and
the device stage (`device.stages.classifier`), so a clip is cut, cleaned and voted on the same
way everywhere::

    from device.sound import SegmentSpec, segment, vote

    spec = SegmentSpec.from_frontend(cfg.section("frontend.classifier"), segment_frames=41)
    segs, starts = segment(log_mel_frames, spec)            # (n, 41, 60), dropping near-silence
    label_index = vote(model_probabilities_of(segs), "probability")

* `segment` cuts ``(frames, mels)`` log-mel into windows of ``segment_frames`` every
  ``segment_hop_frames`` (41 frames at 50 % overlap in the paper) and drops those whose level
  (`segment_level_db`: dB of the mean summed mel power) is below ``silence_db``. When every
  window of a clip is that quiet, the loudest one is kept (``keep_one=True``), so every clip
  gets a prediction; the device passes ``keep_one=False``: silence runs no model.
* `vote` turns the segment posteriors of one clip into its class: ``"probability"`` sums the
  posteriors and takes the arg-max (the paper's better rule); ``"majority"`` counts each
  segment's arg-max (ties: the larger probability sum).

Pure numpy, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["SegmentSpec", "segment_level_db", "segment_starts", "segment", "vote", "VOTES", "OTHER"]

VOTES = ("probability", "majority")
# The class of everything that is none of the sounds (speech, music, street, noise): it competes
# with them in the softmax, so a closed set does not have to name one of its sounds for whatever
# it hears, and it raises no event (`device.decisions.SoundTracker`).
OTHER = "_other_"


@dataclass(frozen=True)
class SegmentSpec:
    """How a clip's log-mel is cut into model inputs (``[frontend.classifier]``).

    Parameters
    ----------
    segment_frames : int
        Frames per segment (the model's input length): 41 in the paper (~1.3 s at a 32 ms hop).
        Longer segments see more of an event, cost more per run and give fewer votes per clip.
    segment_hop_frames : int
        Frames between segment starts: half a segment is the paper's 50 % overlap. A smaller hop
        gives more (more correlated) votes for more model runs.
    silence_db : float
        Segments quieter than this (`segment_level_db`: 10 log10 of the mean summed mel power;
        digital silence is about -42 dB at the default frontend, -60 dBFS white noise about -28)
        are dropped. Higher drops quiet events too; lower lets background hiss vote.
    """

    segment_frames: int
    segment_hop_frames: int
    silence_db: float

    def __post_init__(self):
        if self.segment_frames < 1 or self.segment_hop_frames < 1:
            raise ValueError(f"segment_frames and segment_hop_frames must be >= 1, got "
                             f"{self.segment_frames} and {self.segment_hop_frames}")

    @classmethod
    def from_frontend(cls, section: Mapping, segment_frames: int) -> "SegmentSpec":
        """A model's segments (``segment_frames``: its input length) under a frontend section
        such as ``cfg.section("frontend.classifier")`` (``segment_overlap``, ``silence_db``)."""
        overlap = float(section["segment_overlap"])
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"segment_overlap must be in [0, 1), got {overlap}")
        hop = max(1, int(round(segment_frames * (1.0 - overlap))))
        return cls(int(segment_frames), hop, float(section["silence_db"]))


def segment_level_db(frames: np.ndarray) -> np.ndarray:
    """Level of log-mel ``(..., frames, mels)``: dB of the mean over frames of the summed mel
    power (the same scale as `device.esn.frame_energy_db`)."""
    # In fewer NumPy calls than exp(x).sum(-1).mean(-1), the same numbers (tested): exp in
    # place on the float64 copy, and np.mean's own sum and division by the count. The device
    # pays this on every classifier run.
    x = np.array(frames, np.float64)
    np.exp(x, out=x)
    per_frame = x.sum(-1)
    power = per_frame.sum(-1) / per_frame.shape[-1]
    return 10.0 * np.log10(power + 1e-20)


def segment_starts(n_frames: int, spec: SegmentSpec) -> np.ndarray:
    """Start frames of the segments of a clip of ``n_frames``: every ``segment_hop_frames``
    while a whole segment fits; a clip shorter than one segment has none."""
    if n_frames < spec.segment_frames:
        return np.zeros(0, np.int64)
    return np.arange(0, n_frames - spec.segment_frames + 1, spec.segment_hop_frames)


def segment(frames: np.ndarray, spec: SegmentSpec, keep_one: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(frames, mels)`` log-mel into segments and drop the near-silent ones.

    A clip shorter than one segment is padded at its end with its quietest frame (the log
    floor of a padded recording) to one segment.

    Parameters
    ----------
    frames : np.ndarray
        ``(n_frames, n_mels)`` log-mel of one clip.
    spec : SegmentSpec
    keep_one : bool
        When every segment is below ``silence_db``, keep the loudest one (training and clip
        evaluation); False returns none (the device: silence runs no model).

    Returns
    -------
    (segments, starts)
        float32 ``(n, segment_frames, n_mels)`` and their start frames.
    """
    frames = np.asarray(frames, np.float32)
    if frames.ndim != 2:
        raise ValueError(f"segment takes one clip's (frames, mels) log-mel, got {frames.shape}")
    if len(frames) < spec.segment_frames:
        fill = frames[np.argmin(frames.sum(1))] if len(frames) else None
        if fill is None:
            return np.zeros((0, spec.segment_frames, 0), np.float32), np.zeros(0, np.int64)
        frames = np.concatenate([frames, np.repeat(fill[None], spec.segment_frames - len(frames), 0)])
    starts = segment_starts(len(frames), spec)
    if len(starts) == 1:
        # The device's case on every run (2 s of features, one 1.6 s segment): the same
        # result in fewer NumPy calls (each costs microseconds on a cache the other stages
        # have emptied), a copy of the segment unless it is dropped.
        first = int(starts[0])
        one = frames[first:first + spec.segment_frames]
        # its level from the 2-D view: a float, not a one-element array, through the same sums
        if keep_one or segment_level_db(one) >= spec.silence_db:
            return one[None].copy(), starts
        return one[None][:0].copy(), starts[:0]
    segs = np.stack([frames[s:s + spec.segment_frames] for s in starts])
    level = segment_level_db(segs)
    keep = level >= spec.silence_db
    if not keep.any():
        if not keep_one:
            return segs[:0], starts[:0]
        keep[int(np.argmax(level))] = True
    return segs[keep], starts[keep]


def vote(probabilities: np.ndarray, how: str = "probability") -> int:
    """The class of one clip from its segments' posteriors ``(n_segments, classes)``.

    ``"probability"``: arg-max of the summed posteriors. ``"majority"``: the most frequent
    per-segment arg-max, ties broken by the summed posteriors.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"vote takes (n_segments >= 1, classes) posteriors, got {p.shape}")
    total = p.sum(0)
    if how == "probability":
        return int(np.argmax(total))
    if how == "majority":
        counts = np.bincount(p.argmax(1), minlength=p.shape[1]).astype(np.float64)
        # Ties between equal counts go to the larger probability sum (< 1 per segment).
        return int(np.argmax(counts + total / (len(p) + 1.0)))
    raise ValueError(f"unknown vote {how!r}; use one of {', '.join(VOTES)}")
