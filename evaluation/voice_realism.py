"""How real does each synthesiser sound? Its takes, judged by a model trained on real speech.

    python -m evaluation.voice_realism --model build/real/export/multitask_int8.tflite \\
        [--profile default] [--engines espeak-ng piper kokoro] [--takes 8] [--out STEM]

A model that heard only real recordings (the real profile's, or one fold of its cross-
validation) listens to ``--takes`` synthetic takes of each word it knows, per engine, drawn as
the corpus draws them (`train.synth.keywords.plan_take`: a voice of that engine, a speaking
rate, a pitch, the profile's vocal-tract warp) but clean: no room, microphone response or noise,
so only the voice is judged. Out come top-1 accuracy per engine with its 95 % Wilson interval,
recall per word, and what each engine's takes were taken for.

An engine whose takes that model hears as the words they say sits nearer to real speech as the
model learnt it. This is a check of intelligibility and realism, not a promise that the engine
helps a synthetic-only build: Kokoro scored about as well as espeak-ng here and still made the
default build worse (README "Kokoro voices"); training with it is the measure.

Takes are seeded by (``--seed``, engine, word, index), so a rerun gives the same table; the
model runs as on the device (`device.interpreter.TFLiteModel`, its manifest's frontend).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.frontend import LogMelConfig, log_mel
from device.interpreter import TFLiteModel
from evaluation.wakeword_cv import wilson_interval
from train.synth.keywords import clip_rng, plan_take, render_take
from train.synth.speech import VOICES, SpeechSynthError
from train.synth.voices import ENGINES, find_engines
from train.waveforms import fit_length

log = logging.getLogger("evaluation.voice_realism")


def judge_engines(model_path: str | Path, pools: dict[str, Sequence[str]], takes: int = 8,
                  seed: int = 0, warp: tuple[float, float] = (1.0, 1.0),
                  words: Sequence[str] | None = None, progress: bool = False) -> dict:
    """Score ``takes`` clean takes of each word per engine with the model's keyword head.

    Parameters
    ----------
    model_path : path
        An exported keyword model (.tflite with its manifest), best one trained on real speech.
    pools : mapping of engine -> voices
        `train.synth.voices.find_engines(...).voices`, or any subset of it.
    takes : int
        Takes per word and engine: 8 x 11 words gives an interval about +-10 points wide; more
        takes narrow it at ~0.1-1.2 s of synthesis each (espeak-ng fastest, Kokoro slowest).
    seed : int
        Seeds every draw with the engine, the word and the take's index.
    warp : (float, float)
        Vocal-tract warp range, as ``data.synthetic.voice_warp``.
    words : sequence of str, optional
        Words to say (default: the keyword head's labels that are words, not ``_silence_`` or
        ``_unknown_``).

    Returns
    -------
    dict
        ``{"model", "words", "takes", "engines": {engine: {"accuracy", "ci95", "correct",
        "takes", "per_word", "heard_as", "seconds"}}}``.
    """
    if takes < 1:
        raise ValueError(f"takes must be >= 1, got {takes}")
    model = TFLiteModel(model_path)
    outputs = {o["name"]: list(o["labels"]) for o in model.manifest["outputs"]}
    if "keyword" not in outputs:
        raise ValueError(f"{model_path} has no keyword head (it has {sorted(outputs)})")
    labels = outputs["keyword"]
    words = list(words) if words else [w for w in labels if not w.startswith("_")]
    unknown = [w for w in words if w not in labels]
    if unknown:
        raise ValueError(f"{unknown} are not labels of {model_path} ({labels})")
    lm_cfg = LogMelConfig.from_mapping(model.manifest["frontend"])
    rate = lm_cfg.sample_rate
    engines = {}
    for engine, voices in pools.items():
        t0 = time.perf_counter()
        per_word, heard = {}, {}
        jobs = [(w, i) for w in words for i in range(takes)]
        if progress:
            from tqdm import tqdm
            jobs = tqdm(jobs, desc=engine, leave=False)
        for word, i in jobs:
            rng = clip_rng(seed, f"realism/{engine}", word, i)
            take = plan_take(word, rng, {engine: tuple(voices)}, warp=warp)
            audio = fit_length(render_take(take, rate), rate, align="centre")
            probs = model.predict(log_mel(audio, lm_cfg)[None])["keyword"][0]
            said = labels[int(np.argmax(probs))]
            per_word[word] = per_word.get(word, 0) + (said == word)
            if said != word:
                heard[f"{word} -> {said}"] = heard.get(f"{word} -> {said}", 0) + 1
        correct = sum(per_word.values())
        total = takes * len(words)
        lo, hi = wilson_interval(total - correct, total)
        engines[engine] = {
            "accuracy": round(correct / total, 4), "ci95": [round(1 - hi, 4), round(1 - lo, 4)],
            "correct": correct, "takes": total,
            "per_word": {w: round(c / takes, 4) for w, c in per_word.items()},
            "heard_as": dict(sorted(heard.items(), key=lambda kv: -kv[1])),
            "seconds": round(time.perf_counter() - t0, 1)}
        log.info("%s: %d of %d takes heard as their word (%.1f %%)", engine, correct, total,
                 100 * correct / total)
    return {"model": str(model_path), "sha256": model.manifest.get("sha256"), "words": words,
            "takes": takes, "seed": seed, "warp": list(warp), "engines": engines}


def markdown(report: dict) -> str:
    """The report as a table, best engine first."""
    rows = sorted(report["engines"].items(), key=lambda kv: -kv[1]["accuracy"])
    lines = [f"# Synthetic voices judged by `{Path(report['model']).name}`", "",
             f"{report['takes']} clean takes of each of {len(report['words'])} words per engine "
             f"(seed {report['seed']}, warp {report['warp']}); top-1 of the keyword head.", "",
             "| engine | heard as its word | 95 % interval | worst words | most common confusion "
             "| synthesis + model, s |", "|---|---|---|---|---|---|"]
    for engine, r in rows:
        worst = sorted(r["per_word"].items(), key=lambda kv: kv[1])[:3]
        confusion = next(iter(r["heard_as"].items()), ("-", 0))
        lines.append(f"| {engine} | {100 * r['accuracy']:.1f} % ({r['correct']}/{r['takes']}) | "
                     f"{100 * r['ci95'][0]:.0f}-{100 * r['ci95'][1]:.0f} % | "
                     + ", ".join(f"{w} {100 * a:.0f} %" for w, a in worst)
                     + f" | {confusion[0]} ({confusion[1]}) | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.voice_realism",
        description="Judge each speech synthesiser's takes with a model trained on real speech: "
                    "the share heard as the word they say, per engine and per word.",
        epilog="Example: python -m evaluation.voice_realism --model "
               "build/real/export/multitask_int8.tflite --engines espeak-ng flite piper --takes 8")
    add_profile_arguments(parser)
    parser.add_argument("--model", required=True,
                        help="exported keyword model (.tflite, manifest beside it), trained on "
                             "real recordings (e.g. the real profile's)")
    parser.add_argument("--engines", nargs="+", default=None, choices=ENGINES,
                        help="engines to judge (default: the profile's data.synthetic."
                             "speech_engines)")
    parser.add_argument("--takes", type=int, default=8, help="takes per word and engine")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument("--words", nargs="+", default=None,
                        help="words to say (default: the model's keyword labels)")
    parser.add_argument("--out", default=None,
                        help="write STEM.json and STEM.md (default: print the table only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    names = tuple(args.engines or cfg["data.synthetic.speech_engines"])
    found = find_engines(names, tuple(VOICES))
    for line in found.lines():
        log.info("speech synthesis: %s", line)
    if not found.voices:
        print(f"error: none of the engines {list(names)} is on this machine: "
              + "; ".join(found.lines()), file=sys.stderr)
        return 2
    try:
        report = judge_engines(args.model, found.voices, args.takes, args.seed,
                               tuple(cfg["data.synthetic.voice_warp"]), args.words,
                               progress=not args.quiet)
    except (ValueError, OSError, SpeechSynthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["missing"] = found.missing
    table = markdown(report)
    if args.out:
        stem = Path(args.out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        stem.with_suffix(".md").write_text(table)
        log.info("written: %s.json, %s.md", stem, stem)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
