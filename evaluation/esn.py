"""Judge the vocal-percussion ESN as the device runs it, on any folder in the vocal-percussion
layout, and draw the original's figure for any recording.

    python -m evaluation.esn --profile real                       # the profile's beatbox folder
    python -m evaluation.esn --data ../shared/data/beatbox --cv   # + cross-validated figures
    python -m evaluation.esn --plot recording.wav                 # spectrogram + posteriors PNG
    python -m evaluation.esn --profile real --enrol 3             # + enrolment on held-out ones

Writes ``build/reports/esn_eval_<profile>.json``, ``esn_confusion_<profile>.png`` (and with
``--cv`` ``esn_confusion_cv_<profile>.png``):

* ``deployed``: the exported model (``stages.esn.model``) frame by frame through
  `device.esn.EsnRunner` (the int8 readout or whichever the device picks is not relevant
  here: the int8 weights are used, the device's default), on every recording of the folder:
  non-silent frame accuracy (strict, five-way, and the sound-class reading), silent accuracy,
  per-class recall, per-recording accuracy (majority of the sound frames), confusion matrix.
  If the model was trained on this folder, these are training figures; the JSON says so.
* ``pipeline_beats``: every recording through the device pipeline (streaming resampler,
  features, ``esn`` stage): does it raise exactly one ``beat`` with its label (none for a
  silent one)? With the deployed model, so again training figures when it was trained here.
* ``cross_validated`` (``--cv``): `train.esn.cross_validate` with the profile's
  ``[model.esn]``: every recording predicted by a model that never saw it (fixed-point
  reservoir with float and int8 readout, float reservoir), and the cross-place figure.
* ``enrolment`` (``--enrol N``): N recordings per class (seeded by ``project.seed``) are given
  to the device's enrolment refit (`device.enrol.refit`) as a user's takes; the other
  recordings are judged with the model before and after: the enrolled readout on recordings
  it never heard, and the refit's time.

The figure (``--plot``): the log-mel the ESN sees on top, the per-frame class posteriors below,
as the original project drew it live; here it is drawn offline, never on the audio path.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from device.config import add_profile_arguments, config_from_args
from device.esn import EsnRunner, read_esn_model
from device.paths import BuildPaths, resolve_build_path
from train import esn as tesn

__all__ = ["run_deployed", "judge", "evaluate_folder", "enrolment", "plot_confusion", "plot_recording",
           "main"]

log = logging.getLogger("evaluation.esn")


def run_deployed(model, frames: np.ndarray) -> np.ndarray:
    """Posteriors ``(T, classes)`` of one recording through the device's runner (zero state)."""
    runner = EsnRunner(model)
    out = np.empty((len(frames), len(model.labels)))
    for t, f in enumerate(frames):
        out[t] = model.readout.proba(runner.push(f))
    return out


def judge(model, recs) -> dict:
    """Frame metrics (`train.esn.frame_metrics`) and per-recording votes of ``model`` run by the
    device's runner over ``recs`` (`train.esn.Recording` s)."""
    labels = model.labels
    probas = [run_deployed(model, r.frames) for r in recs]
    truth = np.concatenate([r.labels for r in recs])
    lab = np.asarray(labels, object)
    pred = [lab[np.argmax(p, 1)] for p in probas]
    m = tesn.frame_metrics(truth, np.concatenate(pred), labels,
                           tesn.sound_class(np.concatenate(probas), labels))
    votes = [tesn.recording_vote(p, r.labels) for p, r in zip(pred, recs)]
    m["recording_accuracy"] = float(np.mean([v == r.label for v, r in zip(votes, recs)]))
    m["recordings"] = {r.group: {"label": r.label, "vote": v} for r, v in zip(recs, votes)}
    return m


def enrolment(cfg, recs, model, takes: int, seed: int) -> dict:
    """Enrolment as the device does it (`device.enrol.refit`: NumPy ridge, no TensorFlow or
    scikit-learn), judged on recordings it never heard: ``takes`` recordings of each class
    (drawn with ``seed``) are the user's examples, the rest are held out; the held-out
    figures before (the model as loaded) and after the refit."""
    from device.enrol import Example, refit
    rng = np.random.default_rng(seed)
    chosen = set()
    for label in model.labels:
        idx = [i for i, r in enumerate(recs) if r.label == label]
        if len(idx) <= takes and label != tesn.SILENT:
            raise ValueError(f"--enrol {takes}: only {len(idx)} {label} recordings, none would "
                             f"be left to judge on; use fewer takes")
        chosen.update(int(i) for i in rng.choice(idx, min(takes, len(idx)), replace=False))
    examples = [Example(recs[i].label, recs[i].frames, recs[i].labels, recs[i].group)
                for i in sorted(chosen)]
    held = [r for i, r in enumerate(recs) if i not in chosen]
    alpha = float(model.params.get("ridge_alpha", cfg["model.esn.ridge_alpha"]))
    new, report = refit(model, examples, alpha, int(cfg["model.esn.enrol_folds"]))
    keep = ("nonsilent_accuracy", "sound_class_accuracy", "silent_accuracy", "recording_accuracy")
    before, after = judge(model, held), judge(new, held)
    return {"takes_per_class": takes, "seed": seed, "enrolled": [recs[i].group for i in sorted(chosen)],
            "held_out": len(held), "refit": report,
            "before": {k: round(float(before[k]), 4) for k in keep},
            "after": {k: round(float(after[k]), 4) for k in keep}}


def evaluate_folder(cfg, folder: str | Path | None, model_path: str | Path,
                    cv: bool = False, enrol_takes: int = 0) -> dict:
    """The JSON report (module docstring)."""
    recs = tesn.load_recordings(cfg, folder)
    if not recs:
        raise FileNotFoundError(f"no recordings in {folder or cfg['data.real.vocal_percussion']}")
    model, manifest = read_esn_model(model_path, labels=cfg["labels.percussion"],
                                     frontend=cfg.section("frontend.esn"))
    m = judge(model, recs)
    truth = np.concatenate([r.labels for r in recs])
    report = {"model": str(model_path), "model_sha256": manifest["sha256"],
              "folder": str(folder or cfg["data.real.vocal_percussion"]),
              "recordings": len(recs), "frames": int(len(truth)),
              "frame_label_rule": "sound = the run around the loudest frame with energy > floor "
                                  "+ max(label_min_rise_db, label_rise_fraction * (peak - floor))",
              "deployed": m}
    report["pipeline_beats"] = pipeline_beats(cfg, folder, model_path)
    if cv:
        params = tesn.params_from_config(cfg)
        report["cross_validated"] = tesn.cross_validate(
            recs, params, int(cfg["model.esn.cv_folds"]), int(cfg["project.seed"]), both=True)
        if len({r.place for r in recs}) > 1:
            report["cross_place"] = tesn.cross_place(recs, params)
    if enrol_takes:
        report["enrolment"] = enrolment(cfg, recs, model, enrol_takes, int(cfg["project.seed"]))
    return report


def pipeline_beats(cfg, folder: str | Path | None, model_path: str | Path) -> dict:
    """Each recording through the device pipeline (the ``esn`` stage on the audio, 10 ms hops,
    streaming resampler and features): its ``beat`` events. A hit recording is right when it
    raises exactly one beat with its label, a silent one when it raises none."""
    from device.config import load_config
    from device.pipeline import Pipeline
    from train.datasets import load_vocal_percussion
    root = Path(folder or cfg["data.real.vocal_percussion"])
    c = load_config(cfg.name, [f"stages.esn.model={model_path}", "stages.esn.if_missing=error",
                               'pipeline.stages=["esn"]', "runtime.shedding=false",
                               "runtime.status_interval_s=0"])
    rows = {}
    quiet = logging.getLogger("hopwise.stages.esn")
    level, quiet.level = quiet.level, logging.WARNING     # one start-up line per recording is noise
    for clip in load_vocal_percussion(root, int(c["pipeline.rate"])):
        pipe = Pipeline.from_config(c)
        tail = np.zeros(int(0.3 * pipe.rate), np.float32)   # let a hit at the very end finish
        beats = [(e["label"], e["t_audio_s"]) for e in pipe.push(np.concatenate([clip.audio, tail]))
                 if e["type"] == "beat"]
        pipe.close()
        want = [] if clip.label == tesn.SILENT else [clip.label]
        rows[str(clip.path)] = {"label": clip.label, "beats": beats,
                                "right": [b[0] for b in beats] == want}
    quiet.setLevel(level)
    return {"recordings": len(rows), "right": sum(r["right"] for r in rows.values()),
            "accuracy": round(float(np.mean([r["right"] for r in rows.values()])), 4),
            "rule": "a hit recording: exactly one beat, with its label; a silent one: none",
            "per_recording": rows}


def plot_confusion(metrics: dict, path: Path, title: str) -> Path:
    """The confusion matrix of ``metrics`` (`train.esn.frame_metrics`) as a PNG."""
    from train.plots import save_confusion_matrix
    return save_confusion_matrix(metrics["labels"], metrics["confusion"], path, f"{title}: frames",
                                 xlabel="predicted frame class", ylabel="true frame class")


def plot_recording(cfg, model_path: str | Path, audio_path: str | Path, out: Path) -> Path:
    """Log-mel on top, per-frame class posteriors below (the original project's figure)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from device.enrol import clip_features, read_audio
    model, _ = read_esn_model(model_path, labels=cfg["labels.percussion"],
                              frontend=cfg.section("frontend.esn"))
    frames = clip_features(read_audio(audio_path, int(cfg["pipeline.rate"])), cfg)
    proba = run_deployed(model, frames)
    hop_s = cfg["frontend.esn.hop_ms"] / 1000.0
    t = np.arange(len(frames)) * hop_s
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1.2, 1]})
    top.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
               extent=[0, len(frames) * hop_s, 0, frames.shape[1]])
    top.set_ylabel("mel band")
    top.set_title(f"{Path(audio_path).name}: log-mel ({frames.shape[1]} bands, "
                  f"{cfg['frontend.esn.sample_rate']} Hz) and ESN posteriors", fontsize=9)
    for i, lab in enumerate(model.labels):
        bottom.plot(t, proba[:, i], label=lab, lw=1.4 if lab != "silent" else 0.8,
                    ls="-" if lab != "silent" else ":")
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("posterior")
    bottom.set_xlabel("time (s)")
    bottom.legend(fontsize=7, ncol=len(model.labels), loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.esn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_profile_arguments(parser, "model.esn.cv_folds=5")
    parser.add_argument("--data", help="a vocal-percussion folder (raw_wav/...; default: the "
                        "profile's data)")
    parser.add_argument("--model", help="the ESN .npz (default: stages.esn.model)")
    parser.add_argument("--cv", action="store_true", help="also cross-validate by recording")
    parser.add_argument("--plot", metavar="FILE", help="draw FILE's log-mel and posteriors only")
    parser.add_argument("--enrol", type=int, default=0, metavar="N",
                        help="also enrol N recordings per class onto the model (device.enrol's "
                             "refit) and judge it before and after on the other recordings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    paths = BuildPaths(cfg)
    model_path = resolve_build_path(cfg, args.model or cfg["stages.esn.model"])
    try:
        if args.plot:
            out = plot_recording(cfg, model_path, args.plot,
                                 paths.report(f"esn_{Path(args.plot).stem}.png"))
            print(f"wrote {out}")
            return 0
        report = evaluate_folder(cfg, args.data, model_path, cv=args.cv, enrol_takes=args.enrol)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluation.esn: {exc}", file=sys.stderr)
        return 2
    tag = paths.profile
    out = paths.report(f"esn_eval_{tag}.json")
    out.write_text(json.dumps(report, indent=1) + "\n")
    d = report["deployed"]
    png = plot_confusion(d, paths.report(f"esn_confusion_{tag}.png"),
                         f"ESN frames, {report['recordings']} recordings (deployed model)")
    print(f"deployed model on {report['recordings']} recordings: non-silent frames "
          f"{d['nonsilent_accuracy']:.3f} (sound class {d['sound_class_accuracy']:.3f}), silent "
          f"{d['silent_accuracy']:.3f}, recordings {d['recording_accuracy']:.3f}")
    b = report["pipeline_beats"]
    print(f"device pipeline: {b['right']} of {b['recordings']} recordings raise exactly their "
          f"beat (silent ones none)")
    if "cross_validated" in report:
        cvr = report["cross_validated"]
        png_cv = plot_confusion(cvr["fixed"], paths.report(f"esn_confusion_cv_{tag}.png"),
                                f"ESN frames, {report['recordings']} recordings, each predicted "
                                f"by a model that never heard it")
        print(f"wrote {png_cv}")
        for name in ("fixed", "fixed_int8", "float"):
            m = cvr[name]
            print(f"cross-validated {name:10s}: non-silent {m['nonsilent_accuracy']:.3f} (sound "
                  f"class {m['sound_class_accuracy']:.3f}), silent {m['silent_accuracy']:.3f}, "
                  f"recordings {m['recording_accuracy']:.3f} (sound class "
                  f"{m['recording_sound_class_accuracy']:.3f})")
        for name, m in report.get("cross_place", {}).items():
            print(f"cross-place {name}: non-silent {m['nonsilent_accuracy']:.3f} (sound class "
                  f"{m['sound_class_accuracy']:.3f}), recordings {m['recording_accuracy']:.3f}")
    if "enrolment" in report:
        e = report["enrolment"]
        b, a = e["before"], e["after"]
        print(f"enrolment, {e['takes_per_class']} recordings per class, refit "
              f"{e['refit']['refit_s'] * 1000:.0f} ms + {e['refit']['states_s'] * 1000:.0f} ms of "
              f"states; {e['held_out']} held-out recordings, before -> after: sound frames "
              f"{b['nonsilent_accuracy']:.3f} -> {a['nonsilent_accuracy']:.3f}, silent "
              f"{b['silent_accuracy']:.3f} -> {a['silent_accuracy']:.3f}, recordings "
              f"{b['recording_accuracy']:.3f} -> {a['recording_accuracy']:.3f}")
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
