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

* **After a false wake** (``--after-false-wakes``, instead of the two above): a false wake
  opens the command window anywhere, so the window is held open back to back over the wake-word
  benchmark's negative stream (its recordings and cache, `evaluation.wakeword.streams_for`, the
  profile's training recordings left out) and the first command of each window is put down to
  the file it falls in (`held_open`). Speech Commands' clips are the words themselves and are
  left out of the figure (`after_false_wake`): the share of windows that raised a command is how
  often a false wake over other talk, phrases and sounds goes on to one; times the benchmark's
  false alarms an hour, commands after false wakes an hour.

::

    python -m evaluation.commands --profile real      # build/reports/commands_real.{json,md}
    python -m evaluation.commands --profile real --after-false-wakes   # false_wake_commands_real

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

__all__ = ["clip_accuracy", "replay_commands", "held_open", "after_false_wake", "evaluate",
           "evaluate_false_wakes", "markdown", "false_wake_markdown", "pool"]


def clip_accuracy(posteriors: np.ndarray, class_probs: np.ndarray, labels: np.ndarray,
                  weight: float) -> dict:
    """Top-1 of the keyword model's ``posteriors``, the readout's ``class_probs`` (both
    ``(n, classes)`` in the keyword head's order) and their combination, against ``labels``."""
    preds = {"keyword_model": posteriors.argmax(1), "readout": class_probs.argmax(1),
             "combined": combine(posteriors, class_probs, weight).argmax(1)}
    return {k: round(float((v == labels).mean()), 4) for k, v in preds.items()}


def _command_replay(cfg: Config, times_s: np.ndarray, posteriors: np.ndarray, audio: np.ndarray,
                    threshold: float, verifier: WakeVerifier | None = None,
                    counts: dict | None = None):
    """-> ``first(open_s, close_s, refused=None)``: `device.replay.first_command` with the
    profile's command decisions over the smoothed ``posteriors``, each trigger judged by
    ``verifier`` (when given) as `stages/keyword_decisions.py` judges it; ``counts["verdicts"]``,
    when given, counts the verdicts asked for."""
    labels, commands = cfg.keyword_labels, set(cfg["labels.commands"])
    smoothed = smoothed_posteriors(times_s, posteriors, float(cfg["decisions.smoothing_ms"]) / 1e3)
    min_count = int(cfg["decisions.command_min_count"])
    weight = float(cfg["decisions.command_verifier_weight"])
    delay_s = verifier.class_delay_s if verifier is not None else 0.0
    verdict = None
    if verifier is not None:
        def verdict(i: int) -> str | None:
            if counts is not None:
                counts["verdicts"] += 1
            return verifier.judge_command(smoothed[i], labels, commands, audio,
                                          int(round(float(times_s[i]) * RATE_HZ)), weight)[0]

    def first(open_s: float, close_s: float, refused: list | None = None):
        return first_command(labels, sorted(commands), times_s, smoothed, open_s, close_s,
                             threshold=threshold, min_count=min_count, verdict=verdict,
                             delay_s=delay_s, refused=refused)
    return first


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
    commands = set(cfg["labels.commands"])
    out = {"commands": 0, "right": 0, "wrong": 0, "others": 0, "false": 0, "withdrawn": 0,
           "verdicts": 0}
    first = _command_replay(cfg, times_s, posteriors, audio, threshold, verifier, counts=out)
    for start, end, name in spans:
        refused: list[int] = []
        hit = first(start - before_s, end + after_s, refused)
        out["withdrawn"] += len(refused)
        _count(out, name, commands, hit[1] if hit else None)
    return out


def held_open(cfg: Config, times_s: np.ndarray, posteriors: np.ndarray, audio: np.ndarray,
              segments: Sequence[Sequence], duration_s: float, threshold: float,
              verifier: WakeVerifier | None = None) -> dict:
    """The command window held open, back to back, over a stream of audio that holds no wake
    word: what follows a false wake.

    A false wake opens the window (``decisions.command_window_ms``) wherever it falls, so the
    stream is cut into windows of that length (the last cut short by the stream's end) and each
    is replayed as `replay_commands` replays one (the device's decisions over the smoothed
    posteriors, each trigger judged by ``verifier`` when given). A command raised is put down to
    the file its trigger falls in (``segments``: ``[start_s, end_s, kind, path]`` in stream
    order, as the wake-word benchmark's negative stream lists them; `evaluation.wakeword`'s
    attribution of false alarms: a trigger in the silence after a file is that file's). Returns
    ``window_s``, ``windows`` and, per kind, ``seconds`` of its files, ``commands`` raised and
    ``labels`` (command -> count).
    """
    from evaluation.wakeword import segments_at
    first = _command_replay(cfg, times_s, posteriors, audio, threshold, verifier)
    window_s = float(cfg["decisions.command_window_ms"]) / 1e3
    kinds: dict[str, dict] = {}

    def kind(name: str) -> dict:
        return kinds.setdefault(name, {"seconds": 0.0, "commands": 0, "labels": {}})
    for s in segments:
        kind(str(s[2]))["seconds"] += float(s[1]) - float(s[0])
    windows = int(np.ceil(duration_s / window_s - 1e-9))   # the last one cut short by the end
    hits = [hit for hit in (first(w * window_s, (w + 1) * window_s) for w in range(windows))
            if hit is not None]
    for (i, label), seg in zip(hits, segments_at([float(times_s[i]) for i, _ in hits], segments)):
        k = kind("gap" if seg is None else str(seg[2]))
        k["commands"] += 1
        k["labels"][label] = k["labels"].get(label, 0) + 1
    for k in kinds.values():
        k["seconds"] = round(k["seconds"], 2)
    return {"window_s": window_s, "windows": windows, "kinds": dict(sorted(kinds.items()))}


WORD_KINDS = ("speech_commands",)
"""Kinds of the negative stream left out of `after_false_wake`: Speech Commands' clips are the
keywords themselves (a command in the window after a false wake is then the right answer)."""


def after_false_wake(row: dict) -> dict:
    """`held_open`'s counts over every kind but `WORD_KINDS` -> ``commands_per_hour`` of open
    window, and ``per_false_wake``: the share of windows that raised one, i.e. how often a false
    wake over such audio goes on to a command (times the wake-word benchmark's false alarms an
    hour: commands after false wakes an hour)."""
    kept = {k: v for k, v in row["kinds"].items() if k not in WORD_KINDS}
    seconds = sum(v["seconds"] for v in kept.values())
    n = sum(v["commands"] for v in kept.values())
    return {"hours": round(seconds / 3600, 3), "commands": n,
            "commands_per_hour": round(3600 * n / seconds, 1) if seconds else None,
            "per_false_wake": round(n * row["window_s"] / seconds, 4) if seconds else None}


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


def evaluate_false_wakes(cfg: Config, thresholds: Sequence[float],
                         verifier_path: str | None = None) -> dict:
    """`held_open` over the wake-word benchmark's negative stream (the profile's
    ``bench.wakeword`` settings, without the recordings the profile trained on, from the same
    cache as `evaluation.wakeword`), with and without the verifier, at each of ``thresholds``."""
    from evaluation.wakeword import hopwise_engine, streams_for
    from evaluation.wakeword_streams import load_int16
    from train.verifier import keyword_alone_run

    t0 = time.perf_counter()
    spec = verifier_path or cfg.section("stages.keywords").get("verifier")
    verifier = WakeVerifier.load(resolve_build_path(cfg, spec)) if spec else None
    if verifier is not None and verifier.classes is None:
        raise ValueError(f"{verifier.path} has no class readout: fit it with "
                         f"model.wake_verifier.classes = true (python -m train.verifier --export)")
    streams, info = streams_for(cfg, cfg["labels.wake_word"], [hopwise_engine("hopwise", cfg, [])])
    negative = streams.negative
    audio = load_int16(negative.path)
    run = keyword_alone_run(cfg, audio)
    faudio = audio.astype(np.float32) / 32768.0
    report = {"profile": profile_tag(cfg), "stream": negative.path,
              "audio_s": round(negative.duration_s, 1), "left_out": info["left_out"],
              "smoothing_ms": float(cfg["decisions.smoothing_ms"]), "rows": {}}
    deciders = [("keyword_model", None)] + ([("with_verifier", verifier)] if verifier else [])
    for thr in thresholds:
        for name, v in deciders:
            row = held_open(cfg, run.times_s, run.posteriors, faudio, negative.segments,
                            negative.duration_s, float(thr), v)
            row.update(threshold=float(thr), decider=name, **after_false_wake(row))
            report["rows"][f"{name}@{float(thr):g}"] = row
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _group(kind: str) -> str:
    return {"wake_phrase": "the channel's other phrases"}.get(kind.split(":")[0], kind)


def false_wake_markdown(report: dict) -> str:
    rows = list(report["rows"].values())
    groups = sorted({_group(k) for r in rows for k in r["kinds"] if k not in WORD_KINDS})
    first = rows[0] if rows else {"window_s": 0.0, "hours": 0.0}
    lines = [f"## Commands after a false wake: profile `{report['profile']}`", "",
             f"The command window ({first['window_s']:g} s) held open back to back over the "
             f"wake-word benchmark's negative stream ({report['audio_s'] / 3600:.2f} h; its "
             f"{first['hours']:.2f} h of other than Speech Commands' words are counted), as a "
             f"false wake would open it anywhere; smoothing {report['smoothing_ms']:g} ms. "
             "A false wake goes on to a command as often as a window raised one: times the "
             "benchmark's false alarms an hour, commands after false wakes an hour.", "",
             "| decider | command threshold | windows that raised a command | commands an hour "
             "of open window | " + " | ".join(f"{g} (an hour)" for g in groups) + " |",
             "|---|---|---|---|" + "---|" * len(groups)]
    for r in rows:
        per = []
        for g in groups:
            ks = [v for k, v in r["kinds"].items() if _group(k) == g]
            sec = sum(v["seconds"] for v in ks)
            per.append(f"{3600 * sum(v['commands'] for v in ks) / sec:.0f}" if sec else "-")
        share = "-" if r["per_false_wake"] is None else f"{100 * r['per_false_wake']:.1f} %"
        rate = "-" if r["commands_per_hour"] is None else f"{r['commands_per_hour']:.0f}"
        lines.append(f"| {r['decider'].replace('_', ' ')} | {r['threshold']:g} | {share} | "
                     f"{rate} | " + " | ".join(per) + " |")
    for line in report.get("left_out") or []:
        lines.append(f"\nLeft out of the stream: {line}.")
    return "\n".join(lines)


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
    parser.add_argument("--after-false-wakes", action="store_true",
                        help="instead: the command window held open over the wake-word "
                             "benchmark's negative stream (its bench.wakeword settings and cache): "
                             "how often a false wake goes on to a command, by source")
    parser.add_argument("--out", default=None, help="report name (default commands_<profile>, "
                                                    "or false_wake_commands_<profile>)")
    parser.add_argument("--pool", nargs="+", default=None, metavar="JSON",
                        help="pool these reports (of evaluation.commands) and write --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    verified = cfg.section("stages.keywords").get("verifier")
    if not (args.pool or args.after_false_wakes or verified):
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
            report = (evaluate_false_wakes(cfg, thresholds) if args.after_false_wakes
                      else evaluate(cfg, thresholds, args.gap_s, snr_db=args.snr_db))
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    kind = "false_wake_commands" if args.after_false_wakes else "commands"
    name = args.out or f"{kind}_{profile_tag(cfg)}"
    out = BuildPaths(cfg).report(f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    text = false_wake_markdown(report) if args.after_false_wakes else markdown(report)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
