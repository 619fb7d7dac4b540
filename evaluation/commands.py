"""Commands as the device hears them, with and without the verifier's class readout.

Two figures on the test split's *recorded* clips (held-out speakers), int8 through the device's
runner:

* **Clips**: top-1 over the keyword head's labels of the keyword model alone, of the verifier's
  class readout alone, and of the two combined as the device combines them
  (`device.verifier.combine`, ``decisions.command_verifier_weight``): the 13-class figure.
* **A stream**: every recorded command clip and ``_unknown_`` word of the split, one after
  another with ``--gap-s`` of silence between, run through the profile's pipeline
  (`train.verifier.keyword_alone_run`: up to its keyword decisions, the verifier off, its
  posteriors recorded); around each clip the
  command window is held open (as if the wake word had just been said) and the device's
  decisions are replayed over the smoothed posteriors (`device.decisions.CommandWindow`) at each
  ``--thresholds``: per command clip, the first command raised is its own word (right), another
  (wrong) or none; per unknown word, whether any command was raised (a false command). With the
  verifier each trigger is judged as `stages/keyword_decisions.py` judges it
  (`WakeVerifier.judge_command`): a refused trigger is withdrawn and the window listens on.

::

    python -m evaluation.commands --profile real      # build/reports/commands_real.{json,md}

Needs the exported keyword model and a verifier exported with a class readout
(``model.wake_verifier.classes``; `make export` fits it for a profile that runs a verifier); a
profile without a verifier has nothing to compare and exits at once. `evaluation.wakeword_cv`
runs it on every fold and pools the folds (`pool`): every recorded clip judged once.
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

from device.config import Config, add_profile_arguments, config_from_args
from device.replay import first_command, smoothed_posteriors
from device.paths import BuildPaths, profile_tag, resolve_build_path
from device.verifier import RATE_HZ, WakeVerifier, combine

log = logging.getLogger("evaluation.commands")

__all__ = ["clip_accuracy", "replay_commands", "evaluate", "markdown", "pool"]


def clip_accuracy(posteriors: np.ndarray, class_probs: np.ndarray, labels: np.ndarray,
                  weight: float) -> dict:
    """Top-1 of the keyword model's ``posteriors``, the readout's ``class_probs`` (both
    ``(n, classes)`` in the keyword head's order) and their combination, against ``labels``."""
    preds = {"keyword_model": posteriors.argmax(1), "readout": class_probs.argmax(1),
             "combined": combine(posteriors, class_probs, weight).argmax(1)}
    return {k: round(float((v == labels).mean()), 4) for k, v in preds.items()}


def replay_commands(cfg: Config, times_s: np.ndarray, posteriors: np.ndarray, audio: np.ndarray,
                    spans: Sequence[tuple[float, float, str]], threshold: float,
                    verifier: WakeVerifier | None = None, before_s: float = 0.5,
                    after_s: float = 1.0) -> dict:
    """The device's command decisions over recorded posteriors, the window open around each span.

    ``audio`` is the float stream the posteriors came from (the verifier's windows are cut from
    it). Returns counts: ``commands`` (spans whose name is a command), ``right``, ``wrong``,
    ``others`` (the rest), ``false`` (commands raised in them), ``withdrawn`` (triggers the
    verifier refused) and ``verdicts``.
    """
    labels, commands = cfg.keyword_labels, set(cfg["labels.commands"])
    smoothed = smoothed_posteriors(times_s, posteriors, float(cfg["decisions.smoothing_ms"]) / 1e3)
    min_count = int(cfg["decisions.command_min_count"])
    weight = float(cfg["decisions.command_verifier_weight"])
    delay_s = verifier.class_delay_s if verifier is not None else 0.0
    out = {"commands": 0, "right": 0, "wrong": 0, "others": 0, "false": 0, "withdrawn": 0,
           "verdicts": 0}
    for start, end, name in spans:
        verdict, refused = None, []
        if verifier is not None:
            def verdict(i: int) -> str | None:
                out["verdicts"] += 1
                return verifier.judge_command(smoothed[i], labels, commands, audio,
                                              int(round(float(times_s[i]) * RATE_HZ)), weight)[0]
        hit = first_command(labels, sorted(commands), times_s, smoothed, start - before_s,
                            end + after_s, threshold=threshold, min_count=min_count,
                            verdict=verdict, delay_s=delay_s, refused=refused)
        out["withdrawn"] += len(refused)
        _count(out, name, commands, hit[1] if hit else None)
    return out


def _count(out: dict, name: str, commands, got: str | None) -> None:
    if name in commands:
        out["commands"] += 1
        out["right"] += got == name
        out["wrong"] += got is not None and got != name
    else:
        out["others"] += 1
        out["false"] += got is not None


def evaluate(cfg: Config, thresholds: Sequence[float], gap_s: float = 1.5,
             model: str | None = None, verifier_path: str | None = None,
             snr_db: float | None = None, seed: int = 1234) -> dict:
    """Both figures for the profile's exported models on its test split (see the module).

    ``snr_db``: the stream's clips at -24 dBFS active level over a continuous bed of the test
    split's scene crops this far below (`train.verifier.scene_clip_stream`, as the wake-word
    benchmark lays its words), instead of as recorded over silence."""
    from train.multitask import load_splits
    from train.verifier import (clip_stream, keyword_alone_run, keyword_posteriors,
                                scene_clip_stream)

    t0 = time.perf_counter()
    verifier = WakeVerifier.load(resolve_build_path(
        cfg, verifier_path or cfg.section("stages.keywords").get("verifier")
        or "export/wake_verifier.tflite"))
    if verifier.classes is None:
        raise ValueError(f"{verifier.path} has no class readout: fit it with "
                         f"model.wake_verifier.classes = true (python -m train.verifier --export)")
    labels = cfg.keyword_labels
    test = load_splits(cfg, progress=False)["test"]
    rec = (test.keyword_recorded if test.keyword_recorded is not None
           else np.ones(len(test.keyword_labels), bool))
    audio, y = test.keyword_audio[rec], test.keyword_labels[rec]
    if model:
        cfg = cfg.with_overrides([f"stages.multitask.model={model}"])
    post = keyword_posteriors(cfg, audio)
    if post is None:
        raise FileNotFoundError("no exported keyword model: run `make export` "
                                "(python -m export.multitask)")
    t_embed = time.perf_counter()
    order = [verifier.classes.index(label) for label in labels]
    q = verifier.class_readout(verifier.embedding.embed(audio))[:, order]
    embed_ms = 1000 * (time.perf_counter() - t_embed) / max(1, len(audio))
    weight = float(cfg["decisions.command_verifier_weight"])
    report = {"profile": profile_tag(cfg), "weight": weight, "recorded_clips": int(len(y)),
              "clips": clip_accuracy(post, q, y, weight),
              "embedding_ms_per_clip": round(embed_ms, 1)}
    names = np.array(labels)[y]
    keep = np.array([n in set(cfg["labels.commands"]) or n == "_unknown_" for n in names])
    if snr_db is None:
        stream, spans = clip_stream(audio[keep], names[keep], gap_s)
    else:
        rng = np.random.default_rng(seed)
        bed = test.scenes.random(max(8, int(keep.sum() * (1 + gap_s)) + 8), rng)[0]
        stream, spans = scene_clip_stream(audio[keep], names[keep], bed, snr_db, rng, gap_s)
    run = keyword_alone_run(cfg, stream)
    fstream = stream.astype(np.float32) / 32768.0
    report["stream"] = {"audio_s": round(run.audio_s, 1), "gap_s": gap_s, "snr_db": snr_db,
                        "smoothing_ms": float(cfg["decisions.smoothing_ms"]), "rows": {}}
    for thr in thresholds:
        for name, v in (("keyword_model", None), ("with_verifier", verifier)):
            report["stream"]["rows"][f"{name}@{thr:g}"] = dict(
                replay_commands(cfg, run.times_s, run.posteriors, fstream, spans, float(thr), v),
                threshold=float(thr), decider=name)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f} %" if b else "-"


def markdown(report: dict) -> str:
    c = report["clips"]
    lines = [f"## Commands: profile `{report['profile']}`", "",
             f"Recorded test clips of held-out speakers ({report['recorded_clips']}), top-1 over "
             f"the keyword labels: keyword model {100 * c['keyword_model']:.1f} %, verifier's "
             f"class readout {100 * c['readout']:.1f} %, combined (weight {report['weight']:g}) "
             f"**{100 * c['combined']:.1f} %**. The readout's embedding: "
             f"{report['embedding_ms_per_clip']:.0f} ms a clip here.", "",
             f"In a stream ({report['stream']['audio_s']:.0f} s; each clip after "
             f"{report['stream']['gap_s']:g} s of "
             + (f"scenes, at -24 dBFS and {report['stream']['snr_db']:g} dB SNR"
                if report["stream"].get("snr_db") is not None else "silence")
             + f", the command window held open; smoothing "
             f"{report['stream']['smoothing_ms']:g} ms):", "",
             "| decider | command threshold | right | wrong | none | commands raised on unknown "
             "words | verdicts (withdrawn) |", "|---|---|---|---|---|---|---|"]
    for row in report["stream"]["rows"].values():
        n = row["commands"]
        lines.append(f"| {row['decider'].replace('_', ' ')} | {row['threshold']:g} | "
                     f"{_pct(row['right'], n)} | {_pct(row['wrong'], n)} | "
                     f"{_pct(n - row['right'] - row['wrong'], n)} | "
                     f"{_pct(row['false'], row['others'])} | "
                     + (f"{row['verdicts']} ({row['withdrawn']})" if row["decider"] != "keyword_model"
                        else "-") + " |")
    first = next(iter(report["stream"]["rows"].values()), None)
    if first is not None:
        lines.append(f"\n{first['commands']} command clips, {first['others']} unknown words.")
    return "\n".join(lines)


def pool(reports: Sequence[dict]) -> dict:
    """Several folds' reports -> one, counts added, clip accuracies weighted by clips."""
    out = {"profile": reports[0]["profile"], "weight": reports[0]["weight"],
           "recorded_clips": sum(r["recorded_clips"] for r in reports),
           "embedding_ms_per_clip": round(float(np.mean([r["embedding_ms_per_clip"]
                                                         for r in reports])), 1),
           "folds": len(reports)}
    out["clips"] = {k: round(sum(r["clips"][k] * r["recorded_clips"] for r in reports)
                             / out["recorded_clips"], 4) for k in reports[0]["clips"]}
    rows: dict[str, dict] = {}
    for r in reports:
        for key, row in r["stream"]["rows"].items():
            if key not in rows:
                rows[key] = dict(row)
                continue
            for k, v in row.items():
                if isinstance(v, int) and not isinstance(v, bool):
                    rows[key][k] += v
    out["stream"] = {"audio_s": sum(r["stream"]["audio_s"] for r in reports),
                     "gap_s": reports[0]["stream"]["gap_s"],
                     "snr_db": reports[0]["stream"].get("snr_db"),
                     "smoothing_ms": reports[0]["stream"]["smoothing_ms"], "rows": rows}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.commands",
        description="Commands on the test split's recorded clips, with and without the "
                    "verifier's class readout: top-1 on clips, and right / wrong / false "
                    "commands in a stream through the device's pipeline. --pool adds up the "
                    "JSON reports of several folds instead.")
    add_profile_arguments(parser)
    parser.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="command thresholds replayed (default: the profile's "
                             "decisions.command_threshold and verified_command_threshold, and "
                             "0.1 either side of each)")
    parser.add_argument("--gap-s", type=float, default=1.5, help="silence before each clip")
    parser.add_argument("--snr-db", type=float, default=None,
                        help="lay the clips at -24 dBFS over the test split's scenes this far "
                             "below, as the wake-word benchmark does (default: as recorded, "
                             "silence between)")
    parser.add_argument("--out", default=None, help="report name (default commands_<profile>)")
    parser.add_argument("--pool", nargs="+", default=None, metavar="JSON",
                        help="pool these reports (of evaluation.commands) and write --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    if not args.pool and not cfg.section("stages.keywords").get("verifier"):
        log.info("profile %s runs no verifier (stages.keywords.verifier is empty): commands are "
                 "the keyword model's alone, nothing to compare", profile_tag(cfg))
        return 0
    try:
        if args.pool:
            report = pool([json.loads(Path(p).read_text()) for p in args.pool])
        else:
            base = [float(cfg["decisions.verified_command_threshold"]),
                    float(cfg["decisions.command_threshold"])]
            thresholds = args.thresholds or sorted({round(b + d, 3) for b in base
                                                    for d in (-0.1, 0.0, 0.1)})
            report = evaluate(cfg, thresholds, args.gap_s, snr_db=args.snr_db)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    name = args.out or f"commands_{profile_tag(cfg)}"
    out = BuildPaths(cfg).report(f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
