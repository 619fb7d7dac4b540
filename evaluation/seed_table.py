"""The seed table: every multitask variant, float Keras and exported int8 TFLite, on held-out data.

    python -m evaluation.seed_table --profile default      # trains, exports, evaluates
    python -m evaluation.seed_table --profile real --variants mt60j --reuse
    python -m evaluation.seed_table --exported export/multitask_int8.tflite \
        export/multitask_stream_int8.tflite     # exported models as they are, no training

For each variant (`train.multitask.VARIANTS`: ``kw``, ``scene``, ``mt50``, ``mt60``,
``mt60j``) it trains (`train.multitask.train_variant`; with ``--reuse`` it loads what is
trained), exports it to int8 (`export.multitask.export_variant` ->
``build/export/<profile>/<variant>_int8.tflite``), and measures top-1 accuracy of the float
Keras model and of the int8 model run by the device's own runner
(`device.interpreter.TFLiteModel`) on the profile's *test* split (speaker-disjoint keywords,
source-disjoint scenes):

=================  ============================================================
keyword only       clean keyword clips
scene only         the loudest 1 s windows of clean scene clips
mixed keyword      each keyword clip mixed with a test scene at ``eval.keyword_share``
mixed scene        each scene window mixed with a test keyword clip at that share
=================  ============================================================

The mixtures are drawn once with ``eval.seed``, so every variant sees the same inputs. A
single-task baseline has no head for the other task: its cells say "-".

The deployed variant is the multitask variant with the best mean of mixed-keyword and
mixed-scene accuracy on the *validation* split (the test split only reports); it is written
to ``build/models/multitask/<profile>/deployed.json`` and exported as
``build/export/<profile>/multitask_int8.tflite``. Outputs: ``build/reports/seed_table_<profile>
.md/.json``, ``seed_table.md/.json`` (all profiles run so far), and one confusion-matrix PNG per
variant (int8, all four test sets).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args
from device.frontend import LogMelConfig
from device.interpreter import TFLiteModel
from device.paths import BuildPaths, profile_tag
from export.multitask import export_variant, seed_table_accuracies, seed_table_report
from train import loop
from train import multitask as mt

log = logging.getLogger("evaluation.seed_table")

SETS = ("keyword_only", "scene_only", "mixed_keyword", "mixed_scene")
# Reported beside the four when the test split mixes recorded and synthetic speakers (real profile).
EXTRA_SETS = ("keyword_recorded",)
COLUMNS = {"keyword_only": "keyword only", "scene_only": "scene only",
           "mixed_keyword": "mixed keyword", "mixed_scene": "mixed scene",
           "keyword_recorded": "keyword only, recorded speakers"}


def accuracy_and_confusion(probs: np.ndarray, labels: np.ndarray, n_classes: int):
    pred = probs.argmax(1)
    confusion = np.zeros((n_classes, n_classes), int)
    np.add.at(confusion, (labels, pred), 1)
    return float(np.mean(pred == labels)), confusion


def evaluate_sets(predict, sets: Mapping, heads: Sequence[str], n_classes: Mapping[str, int]):
    """``{set: {"accuracy", "n", "confusion"}}`` for the sets whose head the model has."""
    out = {}
    for name, (feats, labels, head) in sets.items():
        if head not in heads:
            continue
        acc, conf = accuracy_and_confusion(predict(feats)[head], labels, n_classes[head])
        out[name] = {"accuracy": round(acc, 4), "n": int(len(labels)), "confusion": conf.tolist()}
    return out


def plot_confusions(results: Mapping, label_sets: Mapping, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s for s in SETS + EXTRA_SETS if s in results]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 5))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names):
        head = "keyword" if "keyword" in name else "scene"
        conf = np.asarray(results[name]["confusion"], float)
        norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        labels = label_sets[head]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if conf[i, j]:
                    ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(f"{COLUMNS[name]}: {results[name]['accuracy'] * 100:.1f} %")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(entry: Mapping | None, name: str) -> str:
    if not entry or name not in entry:
        return "-"
    return f"{entry[name]['accuracy'] * 100:.1f}"


def markdown(table: Mapping) -> str:
    """The seed table of one profile as Markdown."""
    prof = table["profile"]
    lines = [f"## Seed table: profile `{prof}`", "",
             f"Test split: {table['test_sizes']}. Mixed columns: every model sees the same "
             f"mixtures at keyword share {table['eval_keyword_share']:.2f} (seed "
             f"{table['eval_seed']}). Top-1 accuracy in %.", ""]
    extra = tuple(s for s in EXTRA_SETS if s in table.get("test_sizes", {}))
    columns = SETS + extra
    if extra:
        lines += [f"The last column counts only the recorded clips of the keyword test set "
                  f"({', '.join(str(table['test_sizes'][s]) for s in extra)} clips from held-out "
                  f"speakers, no synthetic voices).", ""]
    for kind, title in (("float", "float Keras"), ("int8", "int8 TFLite (ai_edge_litert)")):
        lines += [f"### {title}", "",
                  "| model | " + " | ".join(COLUMNS[s] for s in columns) + " |",
                  "|---" * (1 + len(columns)) + "|"]
        for name, v in table["variants"].items():
            mark = " **(deployed)**" if name == table.get("deployed") else ""
            lines.append(f"| {name}: {v['description']}{mark} | "
                         + " | ".join(_cell(v.get(kind), s) for s in columns) + " |")
        lines.append("")
    lines += ["### Models", "",
              "| model | params | int8 bytes | epochs (best) | train s | starts from | "
              "validation mixed kw / scene (float) |",
              "|---|---|---|---|---|---|---|"]
    for name, v in table["variants"].items():
        val = v.get("validation_float", {})
        init = Path(v["init_from"]).name if v.get("init_from") else "scratch"
        lines.append(f"| {name} | {v['params']} | {v.get('int8_bytes', '-')} | "
                     f"{v.get('epochs_run', '-')} ({v.get('best_epoch', '-')}) | "
                     f"{v.get('train_seconds', '-')} | {init} | {_cell(val, 'mixed_keyword')} / "
                     f"{_cell(val, 'mixed_scene')} |")
    lines += ["", "Train seconds are this variant's own training; a variant that starts from "
              "`kw` also used the keyword baseline's training (its row)."]
    lines += ["", f"Deployed: `{table.get('deployed')}` ({table.get('deployed_reason', '')})", ""]
    return "\n".join(lines)


def run(cfg: Config, names: Sequence[str] | None = None, reuse: bool = False,
        verbose: int = 2) -> dict:
    """Train (or reuse), export and evaluate the variants; write the table; return it."""
    tag = profile_tag(cfg)
    all_variants = mt.variants(cfg)
    names = list(names or all_variants)
    splits = mt.load_splits(cfg)
    lm_cfg = LogMelConfig.from_config(cfg, "keyword")
    share = float(cfg["eval.keyword_share"])
    seed = int(cfg["eval.seed"])
    crops = int(cfg["eval.scene_crops_per_clip"])
    t0 = time.perf_counter()
    test_sets = mt.eval_sets(splits["test"], lm_cfg, share, seed, crops)
    val_sets = mt.eval_sets(splits["validation"], lm_cfg, share, seed + 1, crops)
    log.info("evaluation sets ready in %.0f s: test %s", time.perf_counter() - t0,
             {k: len(v[1]) for k, v in test_sets.items()})
    label_sets = {h: cfg.head_labels[h] for h in mt.HEADS}
    n_classes = {h: len(v) for h, v in label_sets.items()}
    paths = BuildPaths(cfg)
    json_path = seed_table_report(cfg)
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    table = {"profile": tag, "eval_keyword_share": share, "eval_seed": seed,
             "test_sizes": {k: int(len(v[1])) for k, v in test_sets.items()},
             "variants": dict(previous.get("variants", {}))}
    for name in names:
        variant = all_variants[name]
        trained = mt.run_files(cfg, name).trained()
        if reuse and trained:
            log.info("%s: reusing the trained model in %s", name, mt.run_files(cfg, name).folder)
        else:
            mt.train_variant(cfg, splits["train"], splits["validation"], variant, verbose=verbose)
        model, normalizer, info = mt.load_trained(cfg, name)
        path = paths.variant_export(name)
        export = export_variant(cfg, name, path, name=f"{mt.MODEL}_{name}", onnx=False)
        int8 = TFLiteModel(path, expected_labels={h: label_sets[h] for h in variant.tasks},
                           frontend=cfg.section("frontend.keyword"))
        t1 = time.perf_counter()
        res_float = evaluate_sets(lambda f: mt.predict(model, f, normalizer), test_sets,
                                  variant.tasks, n_classes)
        res_int8 = evaluate_sets(int8.predict, test_sets, variant.tasks, n_classes)
        res_val = evaluate_sets(lambda f: mt.predict(model, f, normalizer), val_sets,
                                variant.tasks, n_classes)
        plot_confusions(res_int8, label_sets, paths.report(f"confusion_{tag}_{name}_int8.png"),
                        f"{name} ({variant.description}), int8 TFLite, profile {tag}, test split")
        plot_confusions(res_float, label_sets, paths.report(f"confusion_{tag}_{name}_float.png"),
                        f"{name} ({variant.description}), float Keras, profile {tag}, test split")
        table["variants"][name] = {
            "description": variant.description, "tasks": list(variant.tasks),
            "keyword_share": variant.keyword_share, "share_jitter": variant.share_jitter,
            "params": info["params"], "train_seconds": info["train_seconds"],
            "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
            "init_from": info.get("init_from"),
            "int8_bytes": export["size_bytes"], "int8_file": str(path),
            "float": res_float, "int8": res_int8, "validation_float": res_val,
        }
        log.info("%s: float %s | int8 %s (evaluated in %.0f s)", name,
                 {k: v["accuracy"] for k, v in res_float.items()},
                 {k: v["accuracy"] for k, v in res_int8.items()}, time.perf_counter() - t1)
        # Write after every variant: a run cut short still leaves the rows it finished.
        _write(cfg, table)
    candidates = {n: v for n, v in table["variants"].items() if len(v["tasks"]) == 2}
    if candidates:
        def score(v):
            val = v["validation_float"]
            return (val["mixed_keyword"]["accuracy"] + val["mixed_scene"]["accuracy"]) / 2
        best = max(candidates, key=lambda n: score(candidates[n]))
        reason = (f"best mean validation accuracy on mixed keyword + mixed scene "
                  f"({score(candidates[best]) * 100:.1f} %) among "
                  + ", ".join(f"{n} {score(v) * 100:.1f} %" for n, v in candidates.items()))
        table["deployed"], table["deployed_reason"] = best, reason
        loop.write_deployed(cfg, mt.MODEL, best, reason)
        dst = paths.profile_export(mt.MODEL)
        export_variant(cfg, best, dst, onnx=True,
                       metrics=seed_table_accuracies(table["variants"][best]))
        log.info("deployed variant: %s (%s) -> %s", best, reason, dst)
    _write(cfg, table)
    return table


def evaluate_exported(cfg: Config, models: Sequence[str]) -> dict:
    """Exported int8 models, as they are, on the seed table's test sets: no training.

    Each model (a path, or relative to ``project.build_dir``: the profile's reference
    ``export/multitask_int8.tflite`` and its streaming conversion
    ``export/multitask_stream_int8.tflite``) is run by the device's runner
    (`TFLiteModel.predict`; a streaming model takes each example as a window from silence) on
    the same four test sets as the seed table (same split, mixtures and seed), so the rows sit
    side by side. Writes ``build/reports/seed_table_exported_<profile>.{json,md}``.
    """
    from device.paths import resolve_build_path
    tag = profile_tag(cfg)
    lm_cfg = LogMelConfig.from_config(cfg, "keyword")
    splits = mt.load_splits(cfg)
    test_sets = mt.eval_sets(splits["test"], lm_cfg, float(cfg["eval.keyword_share"]),
                             int(cfg["eval.seed"]), int(cfg["eval.scene_crops_per_clip"]))
    label_sets = {h: cfg.head_labels[h] for h in mt.HEADS}
    n_classes = {h: len(v) for h, v in label_sets.items()}
    table = {"profile": tag, "eval_keyword_share": float(cfg["eval.keyword_share"]),
             "eval_seed": int(cfg["eval.seed"]),
             "test_sizes": {k: int(len(v[1])) for k, v in test_sets.items()}, "models": {}}
    for model in models:
        path = resolve_build_path(cfg, model)
        int8 = TFLiteModel(path, frontend=cfg.section("frontend.keyword"))
        heads = [h for h in mt.HEADS if h in int8.outputs]
        t0 = time.perf_counter()
        res = evaluate_sets(int8.predict, test_sets, heads, n_classes)
        table["models"][str(model)] = {"file": str(path), "bytes": path.stat().st_size,
                                       "streaming": int8.streaming is not None,
                                       "int8": res, "seconds": round(time.perf_counter() - t0, 1)}
        log.info("%s: %s (%.0f s)", model, {k: v["accuracy"] for k, v in res.items()},
                 time.perf_counter() - t0)
    paths = BuildPaths(cfg)
    out = paths.report(f"seed_table_exported_{tag}.json")
    out.write_text(json.dumps(table, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown_exported(table) + "\n")
    return table


def markdown_exported(table: Mapping) -> str:
    """`evaluate_exported`'s table as Markdown: one row per exported int8 model."""
    columns = [s for s in SETS + EXTRA_SETS if s in table["test_sizes"]]
    lines = [f"## Exported int8 models on the seed table's test sets: profile `{table['profile']}`",
             "", f"Test split: {table['test_sizes']}. Mixed columns at keyword share "
             f"{table['eval_keyword_share']:.2f} (seed {table['eval_seed']}), as the seed table. "
             "Top-1 accuracy in %, the device's runner (a streaming model: each example a window "
             "from silence).", "",
             "| model | bytes | " + " | ".join(COLUMNS[s] for s in columns) + " |",
             "|---" * (2 + len(columns)) + "|"]
    for name, v in table["models"].items():
        kind = " (streaming)" if v["streaming"] else ""
        lines.append(f"| `{name}`{kind} | {v['bytes']:,} | "
                     + " | ".join(_cell(v["int8"], s) for s in columns) + " |")
    return "\n".join(lines)


def _write(cfg: Config, table: Mapping) -> None:
    json_path = seed_table_report(cfg)
    reports = json_path.parent
    json_path.write_text(json.dumps(table, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(markdown(table) + "\n")
    # The combined table: every profile that has been run into this build folder.
    tables = {}
    for path in sorted(reports.glob("seed_table_*.json")):
        data = json.loads(path.read_text())
        tables[data["profile"]] = data
    paths = BuildPaths(cfg)
    paths.report("seed_table.json").write_text(json.dumps(tables, indent=1) + "\n")
    paths.report("seed_table.md").write_text(
        "# Seed table: keyword + scene multitask variants\n\n"
        + "\n".join(markdown(t) for t in tables.values()) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.seed_table",
        description="Train (or reuse), export to int8 and evaluate the keyword/scene variants "
                    "on the held-out test split; write build/reports/seed_table.md/.json, "
                    "confusion matrices, and choose the deployed multitask variant.",
        epilog="Example: python -m evaluation.seed_table --profile real --reuse")
    add_profile_arguments(parser)
    parser.add_argument("--variants", nargs="+", default=None, choices=mt.VARIANT_NAMES,
                        help="subset to run (default: all of them)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate already-trained models instead of retraining them")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch Keras lines")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the Markdown from the saved JSON (and train_info.json "
                             "files); trains and evaluates nothing")
    parser.add_argument("--exported", nargs="+", default=None, metavar="MODEL",
                        help="evaluate these exported int8 models as they are (paths, or "
                             "relative to project.build_dir, e.g. export/multitask_int8.tflite "
                             "export/multitask_stream_int8.tflite) on the same test sets, side "
                             "by side; trains nothing and leaves the seed table as it is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    loop.configure_threads()
    cfg = config_from_args(args)
    if args.exported:
        print(markdown_exported(evaluate_exported(cfg, args.exported)))
        return 0
    if args.report_only:
        table = json.loads(seed_table_report(cfg).read_text())
        for name, v in table["variants"].items():
            info_path = mt.run_files(cfg, name).train_info
            if info_path.exists():
                v["init_from"] = json.loads(info_path.read_text()).get("init_from")
        _write(cfg, table)
        print(markdown(table))
        return 0
    table = run(cfg, args.variants, reuse=args.reuse, verbose=0 if args.quiet else 2)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
