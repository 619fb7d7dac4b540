"""Enrolment: re-teach the ESN's readout a user's own sounds, on the device, in well under a second.

    python -m device enrol --wav bass=b1.wav --wav bass=b2.wav --wav snare=s1.wav ...
    python -m device enrol --folder my_sounds/          # [<place>_]<class>_<nnn>.wav files
    python -m device enrol --mic 3 [--device USB]       # 3 examples per class, prompted
    python -m device enrol --restore                    # back to the readout before the last

Only the linear readout learns: each example goes through the device's own features
(`device.resample.to_frontend_rate`, `device.frontend.log_mel`) and fixed-point reservoir
(`device.esn`), its frames are labelled by the rule training uses (`device.esn.frame_labels`:
the sound's frames against the recording's noise floor, the rest ``silent``), and the ridge
readout is refitted in closed form with NumPy (`device.esn.ridge_fit`; no TensorFlow, no
scikit-learn). The old model files are kept in ``<export>/esn_previous/<UTC time>/`` for going
back; the new ``esn_int8.npz`` and its manifest (a new sha256, ``readout_source = "enrolled"``)
replace them, and a running ``esn`` stage picks them up within ``reload_check_s`` of audio
without a restart. The output says, per class, how many frames were seen, the refit time and
the refit's cross-validated accuracy (folds by example, ``model.esn.enrol_folds``).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from .esn import SILENT, EsnModel, Readout, frame_labels, read_esn_model, ridge_fit, write_esn_model
from .frontend import LogMelConfig, log_mel
from .paths import resolve_build_path
from .resample import to_frontend_rate

__all__ = ["Example", "clip_features", "load_example", "examples_from_folder", "record_take", "refit",
           "enrol", "restore", "add_arguments", "cmd_enrol"]

log = logging.getLogger("hopwise.enrol")
BACKUPS = "esn_previous"


class Example:
    """One enrolment example: its class, its ESN log-mel frames and their labels."""

    def __init__(self, label: str, frames: np.ndarray, frame_labels_: np.ndarray, source: str):
        self.label, self.frames, self.labels, self.source = label, frames, frame_labels_, source


def clip_features(audio: np.ndarray, cfg) -> np.ndarray:
    """ESN log-mel frames of pipeline-rate audio: the device's 16 -> 8 kHz resampling and frontend."""
    return log_mel(to_frontend_rate(audio, cfg, "esn"), LogMelConfig.from_config(cfg, "esn"))


def load_example(cfg, label: str, audio: np.ndarray, source: str) -> Example:
    """An example from pipeline-rate audio (float32 mono)."""
    frames = clip_features(np.asarray(audio, np.float32), cfg)
    if len(frames) == 0:
        raise ValueError(f"{source} is shorter than one ESN frame; record at least 0.1 s")
    return Example(label, frames, frame_labels(frames, label, cfg["model.esn.label_min_rise_db"],
                                               cfg["model.esn.label_rise_fraction"],
                          cfg["model.esn.label_min_sound_frames"]), source)


def read_audio(path: str | Path, rate: int) -> np.ndarray:
    """A whole file at ``rate`` (mono float32), through the device's file source, to its last
    sample (reading it in 4096-sample hops, as before, dropped up to a quarter second of each
    example's end)."""
    from .audio_source import FileSource
    with FileSource(path, rate=rate) as src:
        return src.read_all()


def examples_from_folder(folder: str | Path, labels: Sequence[str]) -> list[tuple[str, Path]]:
    """``(class, path)`` of every ``[<place>_]<class>_<nnn>.<ext>`` audio file in ``folder`` (or
    its ``raw_wav/``); a file of another name is an error naming it."""
    folder = Path(folder)
    if (folder / "raw_wav").is_dir():
        folder = folder / "raw_wav"
    if not folder.is_dir():
        raise FileNotFoundError(f"enrolment folder {folder} does not exist")
    out = []
    by_length = sorted(labels, key=len, reverse=True)     # "k-snare" before "snare"
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".wav", ".flac", ".ogg"):
            continue
        stem = path.stem.rsplit("_", 1)[0] if "_" in path.stem else path.stem
        label = next((lab for lab in by_length if stem == lab or stem.endswith("_" + lab)), None)
        if label is None:
            raise ValueError(f"{path.name}: the name does not say the class; name it "
                             f"[<place>_]<class>_<nnn>{path.suffix} with class one of {list(labels)}")
        out.append((label, path))
    if not out:
        raise FileNotFoundError(f"no .wav/.flac/.ogg files in {folder}")
    return out


def _design(model: EsnModel, examples: Sequence[Example]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Readout inputs and class indices of each example (the fixed-point states)."""
    index = {lab: i for i, lab in enumerate(model.labels)}
    out = []
    for ex in examples:
        states, _ = model.states(ex.frames)
        x = states.astype(np.float64) / 2.0 ** 15
        if model.readout.concat_input:
            x = np.concatenate([x, model.normalise(ex.frames)], axis=1)
        out.append((x, np.array([index[str(v)] for v in ex.labels])))
    return out


def _fit(model: EsnModel, design, alpha: float) -> Readout:
    x = np.concatenate([d[0] for d in design])
    y = np.concatenate([d[1] for d in design])
    # the class weighting the model was trained with (model.esn.class_balance)
    coef, intercept = ridge_fit(x, y, len(model.labels), alpha,
                                float(model.params.get("class_balance", 0.0)))
    return Readout(coef, intercept, model.labels, model.readout.concat_input)


def refit(model: EsnModel, examples: Sequence[Example], alpha: float, folds: int = 3) -> tuple[EsnModel, dict]:
    """The model with a readout refitted on ``examples``, and a report: frames per class, the
    refit time, the cross-validated (by example) non-silent frame accuracy."""
    missing = [lab for lab in model.labels if lab != SILENT
               and not any(ex.label == lab for ex in examples)]
    if missing:
        raise ValueError(f"enrolment needs at least one example of every sound; missing: "
                         f"{', '.join(missing)} (add --wav {missing[0]}=FILE, or record with --mic)")
    t0 = time.perf_counter()
    design = _design(model, examples)
    t1 = time.perf_counter()
    readout = _fit(model, design, alpha)
    t2 = time.perf_counter()
    labels = model.labels
    silent = labels.index(SILENT) if SILENT in labels else -1
    seen = {lab: 0 for lab in labels}
    for _, y in design:
        for i, c in zip(*np.unique(y, return_counts=True)):
            seen[labels[i]] += int(c)
    # Folds by example, each class spread over the folds (example i of a class -> fold i % k).
    order: dict[str, int] = {}
    fold_of = []
    for ex in examples:
        fold_of.append(order.get(ex.label, 0) % folds)
        order[ex.label] = order.get(ex.label, 0) + 1
    right = total = right_sound = 0
    for k in range(folds):
        train = [d for d, f in zip(design, fold_of) if f != k]
        test = [d for d, f in zip(design, fold_of) if f == k]
        if not train or not test:
            continue
        ro = _fit(model, train, alpha)
        for x, y in test:
            s = x @ ro.coef.T + ro.intercept
            sound = y != silent
            right += int(np.sum(np.argmax(s, 1)[sound] == y[sound]))
            s_sound = s.copy()
            if silent >= 0:
                s_sound[:, silent] = -np.inf
            right_sound += int(np.sum(np.argmax(s_sound, 1)[sound] == y[sound]))
            total += int(sound.sum())
    report = {"examples": {lab: sum(ex.label == lab for ex in examples) for lab in labels},
              "frames": seen, "states_s": round(t1 - t0, 4), "refit_s": round(t2 - t1, 4),
              "cv_folds": folds,
              "cv_nonsilent_accuracy": round(right / total, 4) if total else None,
              "cv_sound_class_accuracy": round(right_sound / total, 4) if total else None}
    return model.with_readout(readout), report


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def enrol(cfg, model_path: str | Path, examples: Sequence[Example]) -> dict:
    """Refit, back up the current files, write the new ones; return the report."""
    model_path = Path(model_path)
    model, manifest = read_esn_model(model_path, labels=cfg["labels.percussion"],
                                     frontend=cfg.section("frontend.esn"))
    alpha = float(model.params.get("ridge_alpha", cfg["model.esn.ridge_alpha"]))
    new, report = refit(model, examples, alpha, int(cfg["model.esn.enrol_folds"]))
    backup = model_path.parent / BACKUPS / _stamp()
    backup.mkdir(parents=True)
    for p in (model_path, model_path.with_suffix(".json")):
        shutil.copy2(p, backup / p.name)
    extra = {k: manifest[k] for k in ("params",) if k in manifest}
    extra.update(readout_source="enrolled", enrolled_utc=datetime.now(timezone.utc).isoformat(
        timespec="seconds"), enrolment=report, previous=str(backup))
    # The manifest last: a running stage sees the new manifest only once the .npz it names is
    # written (a stage that read in between would refuse the pair and keep its model).
    write_esn_model(new, model_path, manifest["frontend"], metrics=manifest.get("metrics"),
                    extra=extra)
    report["saved"] = str(model_path)
    report["previous"] = str(backup)
    return report


def restore(model_path: str | Path) -> Path:
    """Put the newest backup back (the readout before the last enrolment); return its folder."""
    model_path = Path(model_path)
    root = model_path.parent / BACKUPS
    backups = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not backups:
        raise FileNotFoundError(f"no earlier readout in {root}: nothing to go back to")
    last = backups[-1]
    shutil.copy2(last / model_path.name, model_path)
    shutil.copy2(last / model_path.with_suffix(".json").name, model_path.with_suffix(".json"))
    shutil.rmtree(last)
    return last


# --------------------------------------------------------------------------- command line
def add_arguments(p) -> None:
    p.add_argument("--wav", action="append", default=[], metavar="CLASS=FILE",
                   help="an example recording of CLASS (repeat; WAV/FLAC/OGG, any rate)")
    p.add_argument("--folder", help="a folder of [<place>_]<class>_<nnn>.wav examples")
    p.add_argument("--mic", type=int, default=0, metavar="N",
                   help="record N examples of each class from the microphone, prompted")
    p.add_argument("--seconds", type=float, default=1.5, help="length of each --mic recording")
    p.add_argument("--device", default=None, help="--mic capture device, name or index (default: "
                   "capture.device of the profile; see list-devices)")
    p.add_argument("--esn-model", default=None, help="the ESN .npz (default: stages.esn.model)")
    p.add_argument("--restore", action="store_true",
                   help="go back to the readout before the last enrolment")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def record_take(cfg, seconds: float, device=None) -> np.ndarray:
    """``seconds`` of pipeline-rate audio from the microphone, through the capture path that
    ``python -m device run`` uses (`device.audio_source.SoundDeviceSource`: int16 from
    PortAudio at ``capture.capture_rate`` or the device's own rate, downmixed and resampled to
    ``pipeline.rate``), so an enrolled sound is what the running service will hear."""
    from .audio_source import AudioInputError, SoundDeviceSource
    rate = int(cfg["pipeline.rate"])
    n = int(round(seconds * rate))
    source = SoundDeviceSource(device if device is not None else (cfg["capture.device"] or None),
                               rate=rate, capture_rate=cfg["capture.capture_rate"] or None,
                               channels=cfg["capture.channels"], block_ms=cfg["capture.block_ms"],
                               buffer_s=seconds + 2.0)
    with source:
        audio = source.read(n, timeout=seconds + 5.0)
    if audio is None or len(audio) < n:
        raise AudioInputError(f"{source.device_name!r} delivered less than {seconds:g} s in "
                              f"{seconds + 5:g} s: is it capturing? (`python -m device run "
                              f"--device ...` shows its level)")
    return audio


def _mic_examples(cfg, args) -> list[Example]:
    out = []
    for label in cfg["labels.percussion"]:
        for i in range(args.mic):
            what = "stay quiet" if label == SILENT else f"make a {label} sound"
            input(f"[{label} {i + 1}/{args.mic}] press Enter, then {what} now ... ")
            audio = record_take(cfg, args.seconds, args.device)
            out.append(load_example(cfg, label, audio, f"mic {label} {i + 1}"))
            print(f"  recorded {args.seconds:g} s, {int(np.sum(out[-1].labels != SILENT))} "
                  f"frames of sound", flush=True)
    return out


def cmd_enrol(cfg, args) -> int:
    path = resolve_build_path(cfg, args.esn_model or cfg["stages.esn.model"])
    if args.restore:
        print(f"restored the readout from {restore(path)}")
        return 0
    labels = list(cfg["labels.percussion"])
    rate = int(cfg["pipeline.rate"])
    pairs: list[tuple[str, Path]] = []
    for spec in args.wav:
        label, sep, file = spec.partition("=")
        if not sep or label not in labels:
            raise ValueError(f"--wav {spec!r}: write CLASS=FILE with CLASS one of {labels}")
        pairs.append((label, Path(file)))
    if args.folder:
        pairs += examples_from_folder(args.folder, labels)
    examples = [load_example(cfg, label, read_audio(p, rate), str(p)) for label, p in pairs]
    if args.mic:
        examples += _mic_examples(cfg, args)
    if not examples:
        raise ValueError("no examples: give --wav CLASS=FILE, --folder DIR or --mic N")
    report = enrol(cfg, path, examples)
    if args.json:
        print(json.dumps(report))
        return 0
    for lab in labels:
        print(f"{lab:10s} {report['examples'][lab]:3d} examples, {report['frames'][lab]:5d} frames")
    acc = report["cv_nonsilent_accuracy"]
    print(f"refit {report['refit_s'] * 1000:.1f} ms (+ {report['states_s'] * 1000:.0f} ms of "
          f"reservoir states); cross-validated ({report['cv_folds']} folds by example) non-silent "
          f"frame accuracy {'n/a' if acc is None else f'{acc:.3f}'}, sound class "
          f"{report['cv_sound_class_accuracy']}")
    print(f"saved {report['saved']} (previous in {report['previous']}; --restore goes back)")
    return 0
