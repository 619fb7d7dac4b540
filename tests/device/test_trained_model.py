"""The trained default build, through the device's own pipeline, on held-out synthetic speech.

Runs whenever ``make train export`` has left a trained multitask model in the build folder (its
manifest names the variant it was exported from; the stand-in test models name none) and skips,
saying so, otherwise: CI's clean clone has no trained model. The clips are the default profile's
*test* split (voices no training saw), each placed alone in a stream and run through
`Pipeline.push`, the code path of ``python -m device detect``.

The bounds are regression guards with a margin below what the default build measured, not
aims: an untrained or broken export fails them by far (a random stand-in wakes on none). On
2026-12-01, espeak-ng voices only: wake recall 7/8, a false wake on 9 of 103 other clips. On
2026-12-03 the corpus took every synthesiser found (flite, festival, Piper, warped, through random
microphone responses): its held-out speakers are harder, and fresh builds woke on 4, then 1 of
10 (while real "computer" recordings went from 0 to 22-27 % recognised, issue #13). Recall on
ten takes at one threshold swings that much from build to build, so the guard is how well the
wake word's posterior ranks its takes above the other clips (ROC AUC; 0.5 = no better than chance). Plain espeak-ng voices that training never used (``en``,
``en-us``, ``en-gb`` without a variant) are not woken by this build at all; that gap to real
voices is issue #13's, and the wake-word benchmark (#12) measures false alarms per hour.
"""
from __future__ import annotations

import numpy as np
import pytest

from device.config import load_config
from device.manifest import load_manifest
from device.paths import BuildPaths
from device.pipeline import Pipeline

MIN_WAKE_AUC = 0.75
MAX_FALSE_WAKE_RATE = 0.2


def trained_model():
    path = BuildPaths(load_config("default")).deployed_model("multitask")
    if not (path.exists() and path.with_suffix(".json").exists()):
        pytest.skip(f"no trained model at {path} (run `make train export`)")
    if not load_manifest(path).get("variant"):
        pytest.skip(f"{path} is not an export of a trained variant (no 'variant' in its manifest)")
    return path


@pytest.mark.timeout(300)
def test_the_trained_default_build_wakes_on_held_out_voices_and_rarely_otherwise():
    pytest.importorskip("tensorflow")  # the corpus module is host side
    from train.corpus import build_corpus, split_corpus

    model = trained_model()
    cfg = load_config("default", [f"stages.multitask.model={model}"])
    test = split_corpus(build_corpus(cfg, progress=False), cfg)["test"]
    rng = np.random.default_rng(0)
    woke = {True: [], False: []}
    peak = {True: [], False: []}            # each clip's highest wake-word posterior
    wake_index = None
    for clip in test.keywords:
        quiet = (rng.standard_normal(16000) * 0.002).astype(np.float32)
        pipe = Pipeline.from_config(cfg, keep_events=True)
        stage = next(s for s in pipe.stages if hasattr(s, "model") and "keyword" in
                     getattr(getattr(s, "model", None), "labels", {}))
        wake_index = stage.model.labels["keyword"].index(cfg["labels.wake_word"])
        seen = []
        run = stage.process

        def recording(ctx, run=run, seen=seen):
            run(ctx)
            if "posteriors.keyword" in ctx.data:
                seen.append(float(ctx.data["posteriors.keyword"][1][wake_index]))
        stage.process = recording
        pipe.push(np.concatenate([quiet, clip.audio, quiet, np.zeros(8000, np.float32)]))
        is_wake = clip.label == cfg["labels.wake_word"]
        woke[is_wake].append(any(e["type"] == "wake" for e in pipe.events))
        peak[is_wake].append(max(seen, default=0.0))
    assert len(woke[True]) >= 5 and len(woke[False]) >= 50, {k: len(v) for k, v in woke.items()}
    # How well the wake word's posterior ranks its clips above the others (ROC AUC): 0.5 is a
    # model that cannot tell them apart. Steadier than the recall at one threshold on ~10 takes.
    pos, neg = np.asarray(peak[True])[:, None], np.asarray(peak[False])[None, :]
    auc = float(np.mean(pos > neg) + 0.5 * np.mean(pos == neg))
    recall, false_rate = np.mean(woke[True]), np.mean(woke[False])
    assert auc >= MIN_WAKE_AUC, (f"wake-word posterior AUC {auc:.2f} (recall {recall:.2f} on "
                                 f"{len(woke[True])} takes)")
    assert false_rate <= MAX_FALSE_WAKE_RATE, \
        f"false wakes on {false_rate:.2f} of {len(woke[False])} other clips"
