"""Pool the wake-word benchmarks of a cross-validation into one DET curve per variant.

One real-profile split holds out a tenth of the speakers: 35-74 of the 247 "computer"
recordings and about half an hour of negatives, where one recording is 1.4-2.9 points of miss
rate and one false alarm decides the strict end of the curve. Trained once per fold of a
cross-validation over speakers (``split.folds = K``, ``split.test_fold = 1..K``), each model is
benchmarked on its own test fold (`evaluation.wakeword`; under ``split.folds`` the validation
part counts as seen, so each recording is judged once). This module adds the folds' counts up:
at each threshold and smoothing, misses over all positives and false alarms over all the
folds' negative audio. A negative recording that no fold trained on (``long_audio``) is heard by
every fold's model, so it counts once per fold: the pooled hours are model-hours.

Usage::

    # K trainings (train.multitask, export.multitask, evaluation.wakeword per fold), resumable
    python -m evaluation.wakeword_cv run dscnn --profile real --folds 3
    python -m evaluation.wakeword_cv run bcresnet --profile real --folds 3 \
        --set model.multitask.architecture=bcresnet
    # the table, the pooled points and a DET plot of the variants side by side
    python -m evaluation.wakeword_cv pool --variant dscnn build/cv/dscnn-fold*/wakeword.json \
        --variant bcresnet build/cv/bcresnet-fold*/wakeword.json --out build/cv/wakeword_cv

``pool`` prints a Markdown table (one row per variant: the folds, the pooled positives and
hours, the miss rate with no false alarm and at each ``--limits`` false alarms per hour, best
over the swept smoothing windows, and at the profile's own threshold and smoothing, with the
false alarms there by kind of negative audio), then the same limits with each fold's setting
chosen on the other folds (`out_of_fold`: what a threshold fixed in advance delivers), and writes
it with the pooled figures (``.json``) and a DET plot (``_det.png``). A fold costs one training
of the profile (about 30-40 min for the real one on one core here).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["FoldCounts", "fold_counts", "pool", "pool_accuracies", "seed_table_of", "summarise",
           "out_of_fold",
           "wilson_interval", "markdown", "fold_commands", "run_folds", "commands_of", "main"]

log = logging.getLogger("evaluation.wakeword_cv")

DEFAULT_LIMITS = (1.0, 2.0, 5.0, 10.0)


@dataclass
class FoldCounts:
    """One setting's counts at one smoothing, over one or more folds."""
    misses: int
    positives: int
    false_alarms: int
    negative_h: float

    def __add__(self, other: "FoldCounts") -> "FoldCounts":
        return FoldCounts(self.misses + other.misses, self.positives + other.positives,
                          self.false_alarms + other.false_alarms,
                          self.negative_h + other.negative_h)

    @property
    def miss_rate(self) -> float:
        return self.misses / self.positives if self.positives else 1.0

    @property
    def per_hour(self) -> float:
        return self.false_alarms / self.negative_h if self.negative_h else float("inf")


def _first(counts: dict[float, dict[float, FoldCounts]]) -> FoldCounts:
    """Any one setting's counts: positives and hours are the same at every setting."""
    return next(iter(next(iter(counts.values())).values()))


def _engine(report: dict, name: str | None) -> dict:
    hopwise = [e for e in report["engines"] if e["describe"].get("kind") == "hopwise"]
    chosen = [e for e in hopwise if name is None or e["name"] == name]
    if not chosen:
        raise ValueError(f"no hopwise engine{'' if name is None else f' named {name!r}'} in the "
                         f"report (it has {[e['name'] for e in report['engines']]}); pass "
                         f"--engine NAME")
    return chosen[0]


def fold_counts(report: dict, engine: str | None = None) -> dict[float, dict[float, FoldCounts]]:
    """``{smoothing_ms: {threshold: FoldCounts}}`` of one fold's report at its headline SNR.

    The report keeps miss *rates* (4 decimals); with the stream's positive count they give the
    whole number of misses back exactly for any stream under 5,000 recordings.
    """
    snr = f"{report['headline_snr_db']:g}"
    positives = int(report["streams"]["positives"][snr]["positives"])
    entry = _engine(report, engine)
    sweep = entry.get("smoothing_sweep") or [entry["scores"]]
    out: dict[float, dict[float, FoldCounts]] = {}
    for scores in sweep:
        out[float(scores["smoothing_ms"] or 0.0)] = {
            float(p["setting"]): FoldCounts(int(round(p["miss_rate"] * positives)), positives,
                                            int(p["false_alarms"]), float(p["negative_h"]))
            for p in scores["per_snr"][snr]["det"]}
    return out


def _add_up(folds: Sequence[dict[float, dict[float, FoldCounts]]]
            ) -> dict[float, dict[float, FoldCounts]]:
    """The folds' counts added setting by setting (the folds share their settings)."""
    return {s: {t: sum((f[s][t] for f in folds[1:]), folds[0][s][t]) for t in by_t}
            for s, by_t in folds[0].items()}


def _positive_files(report: dict) -> list[str] | None:
    """The positive recordings of a fold, from the stream's file list when it still exists."""
    path = report["streams"]["info"].get("file_list")
    if not path or not Path(path).is_file():
        return None
    meta = json.loads(Path(path).read_text())
    first = next(iter(meta["positives"].values()))
    return [str(Path(seg[3]).resolve()) for seg in first["segments"] if seg[2] == "positive"]


def pool(reports: Sequence[dict], engine: str | None = None) -> dict:
    """Add the folds' counts up, setting by setting; refuse folds that cannot be pooled.

    Returns ``{"counts": {smoothing: {threshold: FoldCounts}}, "folds": [...],
    "overlap": n}``; ``overlap`` counts positive recordings judged by more than one fold
    (0 for a proper cross-validation; None when the streams' file lists are gone).
    """
    if not reports:
        raise ValueError("no reports to pool")
    words = {r["wake_word"] for r in reports}
    snrs = {r["headline_snr_db"] for r in reports}
    if len(words) > 1 or len(snrs) > 1:
        raise ValueError(f"folds disagree on the wake word {sorted(words)} or the headline SNR "
                         f"{sorted(snrs)}: they are not one benchmark")
    per_fold = [fold_counts(r, engine) for r in reports]
    shape = lambda f: {s: sorted(t) for s, t in f.items()}  # noqa: E731
    if any(shape(f) != shape(per_fold[0]) for f in per_fold[1:]):
        raise ValueError("folds were swept over different thresholds or smoothing windows "
                         "(bench.wakeword.sweep_smoothing_ms): run them with one profile")
    counts = _add_up(per_fold)
    files = [_positive_files(r) for r in reports]
    overlap = None
    if all(f is not None for f in files):
        flat = [p for f in files for p in f]
        overlap = len(flat) - len(set(flat))
    entry = [_engine(r, engine) for r in reports]
    folds = [{"engine": e["name"], "model": e["describe"].get("model"),
              "positives": _first(c).positives, "negative_h": round(_first(c).negative_h, 4)}
             for e, c in zip(entry, per_fold)]
    by_kind: dict[str, list[float]] = {}      # kind -> [false alarms, seconds] at the profile's point
    for r, e in zip(reports, entry):
        at = (e.get("scores") or {}).get("at_setting") or {}
        seconds = r["streams"].get("info", {}).get("negative_s_by_kind") or {}
        for kind, sec in seconds.items():
            k = by_kind.setdefault(kind, [0, 0.0])
            k[0] += int((at.get("by_kind") or {}).get(kind, 0))
            k[1] += float(sec)
    return {"counts": counts, "per_fold": per_fold, "folds": folds, "overlap": overlap,
            "false_alarms_by_kind": by_kind,
            "wake_word": reports[0]["wake_word"], "snr_db": reports[0]["headline_snr_db"],
            "profile_threshold": entry[0]["describe"].get("profile_threshold"),
            "profile_smoothing_ms": (entry[0]["describe"].get("smoothing_ms") or [None])[0]}


def seed_table_of(report_path: Path) -> dict | None:
    """The seed table written beside a fold's wake-word report (``run`` writes both into the
    fold's folder), or None."""
    found = sorted((Path(report_path).parent / "reports").glob("seed_table_*.json"))
    return json.loads(found[0].read_text()) if found else None


def commands_of(report_path: Path) -> dict | None:
    """The commands report (`evaluation.commands`) beside a fold's wake-word report, or None."""
    found = sorted((Path(report_path).parent / "reports").glob("commands_*.json"))
    return json.loads(found[0].read_text()) if found else None


def pool_accuracies(tables: Sequence[dict]) -> dict:
    """``{kind: {set: {"accuracy", "n"}}}`` over the folds' seed tables (their deployed
    variant), ``kind`` being ``int8``, ``float`` and ``validation_float``: correct answers
    (the confusion matrices' diagonals) over all the folds' examples. Keyword sets hold each
    fold's own held-out speakers, so their pool is every keyword speaker once; the scene sets
    keep the profile's split, so theirs is the same clips judged by each fold's model."""
    sums: dict[str, dict[str, list[int]]] = {}
    for table in tables:
        row = table["variants"][table.get("deployed") or next(iter(table["variants"]))]
        for kind in ("int8", "float", "validation_float"):
            for name, res in row.get(kind, {}).items():
                conf = res["confusion"]
                c = sums.setdefault(kind, {}).setdefault(name, [0, 0])
                c[0] += sum(conf[i][i] for i in range(len(conf)))
                c[1] += int(res["n"])
    return {kind: {name: {"accuracy": round(c[0] / c[1], 4) if c[1] else None, "n": c[1]}
                   for name, c in by.items()} for kind, by in sums.items()}


def wilson_interval(misses: int, positives: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (``z`` = 1.96) Wilson score interval of a miss rate: what the pooled positives can
    tell apart (about +-6 points at 25 % misses of 247 recordings, +-10 of 74)."""
    if positives <= 0:
        return 0.0, 1.0
    p = misses / positives
    centre = (p + z * z / (2 * positives)) / (1 + z * z / positives)
    half = z * (p * (1 - p) / positives + z * z / (4 * positives ** 2)) ** 0.5 \
        / (1 + z * z / positives)
    return max(0.0, centre - half), min(1.0, centre + half)


def _best_within(counts: dict[float, dict[float, FoldCounts]], limit_per_hour: float | None):
    """The (smoothing, threshold, counts) with the fewest misses among settings whose pooled
    false alarms stay within the limit (None: no false alarm at all)."""
    best = None
    for smoothing, by_t in counts.items():
        for t, c in by_t.items():
            ok = c.false_alarms == 0 if limit_per_hour is None else c.per_hour <= limit_per_hour
            if ok and (best is None or (c.misses, c.per_hour) < (best[2].misses, best[2].per_hour)):
                best = (smoothing, t, c)
    return best


def out_of_fold(per_fold: Sequence[dict[float, dict[float, FoldCounts]]],
                limit_per_hour: float | None) -> dict | None:
    """The operating point chosen without the fold it is judged on, fold by fold.

    For each fold, the setting (smoothing, threshold) with the fewest misses within the limit
    is chosen on the *other* folds' pooled counts and applied to this fold; the folds' counts
    at their own choices are added up. That is what a profile's threshold, chosen on recordings
    it will not meet, delivers on new ones: the pooled table's "best within the limit" picks
    the setting on the very streams it then scores, which flatters every variant (most at the
    strict end, where a setting is chosen by one or two false alarms).

    Returns ``{"miss_rate", "miss_ci95", "false_alarms", "per_hour", "choices"}`` (``choices``:
    ``[threshold, smoothing_ms]`` per fold), or None when some fold's other folds reach the
    limit with no setting.
    """
    if len(per_fold) < 2:
        raise ValueError("an out-of-fold choice needs at least 2 folds")
    total, choices = None, []
    for k, fold in enumerate(per_fold):
        best = _best_within(_add_up([f for j, f in enumerate(per_fold) if j != k]),
                            limit_per_hour)
        if best is None:
            return None
        smoothing, threshold, _ = best
        counts = fold[smoothing][threshold]
        total = counts if total is None else total + counts
        choices.append([threshold, smoothing])
    return {"miss_rate": round(total.miss_rate, 4),
            "miss_ci95": [round(x, 4) for x in wilson_interval(total.misses, total.positives)],
            "false_alarms": total.false_alarms, "per_hour": round(total.per_hour, 3),
            "choices": choices}


def summarise(pooled: dict, limits: Sequence[float] = DEFAULT_LIMITS) -> dict:
    """The figures of one variant: miss with no false alarm, within each limit, and at the
    profile's own threshold and smoothing."""
    counts = pooled["counts"]
    any_c = _first(counts)
    out = {"folds": len(pooled["folds"]), "positives": any_c.positives,
           "negative_h": round(any_c.negative_h, 3), "overlap": pooled["overlap"], "within": {}}
    for limit in (None, *limits):
        b = _best_within(counts, limit)
        out["within"]["0" if limit is None else f"{limit:g}"] = None if b is None else {
            "smoothing_ms": b[0], "threshold": b[1], "miss_rate": round(b[2].miss_rate, 4),
            "miss_ci95": [round(x, 4) for x in wilson_interval(b[2].misses, b[2].positives)],
            "false_alarms": b[2].false_alarms, "per_hour": round(b[2].per_hour, 3)}
    if len(pooled.get("per_fold") or ()) >= 2:
        out["out_of_fold"] = {"0" if limit is None else f"{limit:g}":
                              out_of_fold(pooled["per_fold"], limit) for limit in (None, *limits)}
    t, s = pooled["profile_threshold"], pooled["profile_smoothing_ms"]
    at = counts.get(s, {}).get(t) if t is not None and s is not None else None
    out["at_profile"] = None if at is None else {
        "threshold": t, "smoothing_ms": s, "miss_rate": round(at.miss_rate, 4),
        "false_alarms": at.false_alarms, "per_hour": round(at.per_hour, 3),
        # Where they came from: continuous speech is where a device spends its day.
        "by_kind": {kind: {"false_alarms": fa, "hours": round(sec / 3600, 3),
                           "per_hour": round(fa / (sec / 3600), 2) if sec else None}
                    for kind, (fa, sec) in sorted(pooled.get("false_alarms_by_kind", {}).items())}}
    return out


def _cell(d: dict | None) -> str:
    if d is None:
        return "not reached"
    lo, hi = d.get("miss_ci95", (None, None))
    ci = "" if lo is None else f" [{100 * lo:.0f}-{100 * hi:.0f}]"
    return (f"{100 * d['miss_rate']:.1f} %{ci} ({d['threshold']:g}, {d['smoothing_ms']:g} ms, "
            f"{d['false_alarms']} FA)")


def markdown(summaries: dict[str, dict], limits: Sequence[float] = DEFAULT_LIMITS,
             wake_word: str = "", snr_db: float | None = None) -> str:
    head = ["variant", "folds", "positives", "negative model-hours",
            "miss with no false alarm", *[f"miss at <= {x:g} FA/h" for x in limits],
            "at the profile's threshold / smoothing"]
    lines = [f"# Wake-word cross-validation: `{wake_word}`"
             + ("" if snr_db is None else f" at {snr_db:g} dB SNR"), "",
             "Each fold's model judged on its own held-out speakers; counts pooled over the "
             "folds. Cells: miss rate [its 95 % Wilson interval] (threshold, smoothing, false "
             "alarms), the best of the swept settings (chosen on these streams, as for every "
             "variant alike).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summaries.items():
        at = s["at_profile"]
        at_text = "-" if at is None else (f"{100 * at['miss_rate']:.1f} %, "
                                          f"{at['per_hour']:.2f}/h ({at['threshold']:g}, "
                                          f"{at['smoothing_ms']:g} ms)")
        lines.append(f"| {name} | {s['folds']} | {s['positives']} | {s['negative_h']:.2f} | "
                     f"{_cell(s['within']['0'])} | "
                     + " | ".join(_cell(s["within"][f"{x:g}"]) for x in limits)
                     + f" | {at_text} |")
    kinds = {n: s["at_profile"]["by_kind"] for n, s in summaries.items()
             if s.get("at_profile") and s["at_profile"].get("by_kind")}
    if kinds:
        lines += ["", "False alarms at the profile's threshold / smoothing by kind of negative "
                  "audio (count, per hour of that kind):", ""]
        for n, by in kinds.items():
            lines.append(f"- {n}: " + "; ".join(
                f"{k} {v['false_alarms']} in {v['hours']:.2f} h"
                + ("" if v["per_hour"] is None else f" ({v['per_hour']:g}/h)")
                for k, v in by.items()))
    oof = {n: s["out_of_fold"] for n, s in summaries.items() if s.get("out_of_fold")}
    if oof:
        keys = ["0", *[f"{x:g}" for x in limits]]
        lines += ["", "The same with each fold's operating point chosen on the *other* folds "
                  "(the fewest misses within the limit there), then judged on its own: what a "
                  "threshold set in advance delivers. Cells: miss rate [95 % interval] at the "
                  "false alarms per hour it then raised.", "",
                  "| variant | chosen for no false alarm | "
                  + " | ".join(f"chosen for <= {x:g} FA/h" for x in limits) + " |",
                  "|---|" + "---|" * len(keys)]
        for n, by in oof.items():
            lines.append(f"| {n} | " + " | ".join(
                "not reached" if by[k] is None else
                f"{100 * by[k]['miss_rate']:.1f} % [{100 * by[k]['miss_ci95'][0]:.0f}-"
                f"{100 * by[k]['miss_ci95'][1]:.0f}] at {by[k]['per_hour']:.2f}/h"
                for k in keys) + " |")
    acc = {n: s["accuracy"] for n, s in summaries.items() if s.get("accuracy")}
    if acc:
        sets = sorted({k for a in acc.values() for k in a.get("int8", {})})
        lines += ["", "Accuracy of the same models on their folds' test parts, pooled (int8; "
                  "float in brackets; keyword sets: every speaker once; scene sets: the "
                  "profile's test clips, once per fold):", "",
                  "| variant | " + " | ".join(sets) + " | validation (float) |",
                  "|---|" + "---|" * (len(sets) + 1)]
        for n, a in acc.items():
            cells = []
            for k in sets:
                i8, fl = a.get("int8", {}).get(k), a.get("float", {}).get(k)
                cells.append("-" if i8 is None else
                             f"{100 * i8['accuracy']:.1f} % ({100 * fl['accuracy']:.1f}), "
                             f"{i8['n']}" if fl else f"{100 * i8['accuracy']:.1f} %, {i8['n']}")
            val = a.get("validation_float", {})
            lines.append(f"| {n} | " + " | ".join(cells) + " | " + ", ".join(
                f"{k} {100 * v['accuracy']:.1f} %" for k, v in sorted(val.items())) + " |")
    for name, s in summaries.items():
        if s["overlap"]:
            lines.append(f"\n- {name}: {s['overlap']} positive recordings were judged by more "
                         f"than one fold: not a proper cross-validation (same split.folds and "
                         f"seed for every fold?)")
    return "\n".join(lines) + "\n"


def plot_det(pooled: dict[str, dict], path: Path) -> Path | None:
    """Pooled DET curves, one per variant (its lower envelope over the smoothing windows)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    floor = None
    for name, p in pooled.items():
        pts = sorted(((c.per_hour, c.miss_rate) for by_t in p["counts"].values()
                      for c in by_t.values()))
        hours = _first(p["counts"]).negative_h
        floor = 0.5 / max(hours, 1e-9) if floor is None else min(floor, 0.5 / max(hours, 1e-9))
        xs, ys, best = [], [], 1.0
        for x, y in pts:           # the envelope: the fewest misses at or below each rate
            best = min(best, y)
            xs.append(x)
            ys.append(100 * best)
        ax.step([max(x, floor) for x in xs], ys, where="post", label=name)
    ax.axvline(floor, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (left dotted line: none)")
    ax.set_ylabel("miss rate (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("wake word, pooled over the folds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ running the folds
def fold_commands(variant: str, folds: int, fold: int, profile: str, overrides: Sequence[str],
                  root: Path, python: str = sys.executable) -> tuple[Path, list[list[str]]]:
    """The fold's build folder and the commands that train, export and benchmark it.

    Each fold builds in ``root/<variant>-fold<k>`` (its own corpus cache, models and streams),
    with ``split.folds`` and ``split.test_fold`` after the caller's ``--set`` values so they
    cannot be overridden by accident: training, export, the seed table of the deployed variant
    (its keyword and scene accuracies on the fold's test part, int8 and float) and the
    wake-word benchmark, whose report ``<folder>/wakeword.json`` marks the fold done. A profile
    with a wake verifier fits it on the fold's training part before the benchmark.
    """
    folder = Path(root) / f"{variant}-fold{fold}"
    sets = [*overrides, f"project.build_dir={folder}", f"split.folds={folds}",
            f"split.test_fold={fold}"]
    common = ["--profile", profile, *[a for s in sets for a in ("--set", s)]]
    from train.multitask import DEFAULT_VARIANT
    return folder, [
        [python, "-m", "train.multitask", *common, "--quiet"],
        [python, "-m", "export.multitask", *common],
        # The wake verifier, fit on the fold's training part (nothing for a profile without one).
        [python, "-m", "train.verifier", *common, "--export", "--quiet"],
        # The keyword and scene accuracies of the same model on the fold's test part.
        [python, "-m", "evaluation.seed_table", *common, "--variants", DEFAULT_VARIANT,
         "--reuse", "--quiet"],
        # Commands with and without the verifier's class readout (nothing without a verifier).
        [python, "-m", "evaluation.commands", *common],
        [python, "-m", "evaluation.wakeword", *common, "--engine", "hopwise",
         "--out", str(folder / "wakeword")],
    ]


def run_folds(variant: str, folds: int, profile: str, overrides: Sequence[str], root: Path,
              only: Sequence[int] | None = None) -> list[Path]:
    """Run every fold's commands (a fold whose report exists is skipped, so an interrupted
    cross-validation resumes); return the reports. Each step's output goes to the fold's
    ``cv.log``; a failing step stops the run and names that log."""
    if folds < 2:
        raise ValueError(f"--folds {folds}: cross-validation needs at least 2 folds")
    reports = []
    for k in (only or range(1, folds + 1)):
        folder, commands = fold_commands(variant, folds, k, profile, overrides, root)
        report = folder / "wakeword.json"
        if report.is_file():
            log.info("fold %d/%d: %s exists, skipped", k, folds, report)
            reports.append(report)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "cv.log", "a") as out:
            for cmd in commands:
                t0 = time.perf_counter()
                log.info("fold %d/%d: %s", k, folds, " ".join(cmd[1:4]))
                code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
                if code:
                    raise RuntimeError(f"fold {k}: `{' '.join(cmd[1:3])}` exited with {code}; "
                                       f"see {folder / 'cv.log'}")
                log.info("fold %d/%d: done in %.0f s", k, folds, time.perf_counter() - t0)
        reports.append(report)
    return reports


def pool_and_write(variants: Sequence[Sequence[str]], engine: str | None = None,
                   limits: Sequence[float] = DEFAULT_LIMITS, out: str | Path | None = None) -> int:
    """Pool each ``[name, report, ...]``, print the table, write ``out`` (.md, .json,
    _det.png) when given; 2 with the reason on stderr when a variant cannot be pooled."""
    pooled, summaries = {}, {}
    for name, *paths in variants:
        if not paths:
            print(f"error: --variant {name}: give its folds' report files after the name",
                  file=sys.stderr)
            return 2
        try:
            reports = [json.loads(Path(p).read_text()) for p in paths]
            pooled[name] = pool(reports, engine)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        summaries[name] = summarise(pooled[name], limits)
        tables = [seed_table_of(Path(p)) for p in paths]
        if all(t is not None for t in tables):
            summaries[name]["accuracy"] = pool_accuracies(tables)
        commands = [commands_of(Path(p)) for p in paths]
        if commands and all(c is not None for c in commands):
            from evaluation import commands as cmd_eval
            summaries[name]["commands"] = cmd_eval.pool(commands)
    first = next(iter(pooled.values()))
    text = markdown(summaries, limits, first["wake_word"], first["snr_db"])
    for name, summary in summaries.items():
        if "commands" in summary:
            from evaluation import commands as cmd_eval
            text += f"\n### `{name}`: " + cmd_eval.markdown(summary["commands"]).removeprefix(
                "## ") + "\n"
    sys.stdout.write(text)
    if out:
        stem = Path(out)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps(
            {"summaries": summaries, "folds": {n: p["folds"] for n, p in pooled.items()}},
            indent=1) + "\n")
        png = plot_det(pooled, stem.parent / f"{stem.name}_det.png")
        log.info("written: %s.md, %s.json%s", stem, stem, f", {png}" if png else "")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from device.config import add_profile_arguments
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.wakeword_cv",
        description="Cross-validate the wake word over speakers: train, export and benchmark "
                    "one model per fold (split.folds / split.test_fold), then pool the folds' "
                    "benchmarks into one DET curve and table per variant.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m evaluation.wakeword_cv run dscnn --profile real --folds 3\n"
               "  python -m evaluation.wakeword_cv pool --variant dscnn build/cv/dscnn-fold*/"
               "wakeword.json --out build/cv/wakeword_cv")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train, export and benchmark every fold of one variant")
    run.add_argument("variant", help="the variant's name (its folds build in ROOT/NAME-fold<k>)")
    run.add_argument("--folds", type=int, default=3,
                     help="K: each fold trains on about (K-1)/K of the speakers (default 3)")
    run.add_argument("--fold", type=int, action="append", default=None,
                     help="run only this fold (repeatable; default: all)")
    run.add_argument("--root", default=None,
                     help="where the folds build (default: <project.build_dir>/cv)")
    add_profile_arguments(run, "model.multitask.architecture=bcresnet")
    pl = sub.add_parser("pool", help="pool the folds' reports into one table and DET plot")
    pl.add_argument("--variant", nargs="+", action="append", required=True,
                    metavar=("NAME", "REPORT"),
                    help="a variant's name, then its folds' wakeword .json reports")
    pl.add_argument("--engine", default=None,
                    help="the hopwise engine's name in the reports (default: the first)")
    pl.add_argument("--limits", nargs="+", type=float, default=list(DEFAULT_LIMITS),
                    help="false alarms per hour to report the miss rate at")
    pl.add_argument("--out", default=None, help="write STEM.md, STEM.json, STEM_det.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "pool":
        return pool_and_write(args.variant, args.engine, args.limits, args.out)
    from device.config import ConfigError, config_from_args
    from device.paths import BuildPaths
    try:
        cfg = config_from_args(args)
        root = Path(args.root) if args.root else BuildPaths(cfg).root / "cv"
        if cfg["data.source"] != "real":
            log.warning("profile %s trains on no wake-word recording: every fold is judged on "
                        "all of them, so the folds are repeated trainings, not a "
                        "cross-validation (the pooled table will say the recordings were "
                        "judged more than once)", cfg.name)
        reports = run_folds(args.variant, args.folds, args.profile, args.overrides, root,
                            args.fold)
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.fold:
        print("reports:", *reports, sep="\n  ")
        return 0
    # Every fold done: the variant's pooled table, and the command that sets it beside others.
    code = pool_and_write([[args.variant, *map(str, reports)]], out=root / args.variant)
    print(f"\nbeside another variant: python -m evaluation.wakeword_cv pool --variant "
          f"{args.variant} {root}/{args.variant}-fold*/wakeword.json --variant OTHER ...")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
