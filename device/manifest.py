"""Model manifests: what a deployed model is, checked before the device trusts it.

Every exported model ``<name>.tflite`` has ``<name>.json`` beside it::

    {
      "format": "hopwise-model", "version": 1,
      "name": "multitask", "kind": "multitask",
      "file": "multitask_int8.tflite", "sha256": "<hex of the file>",
      "frontend": {"name": "keyword", "sample_rate": 16000, "window_ms": 25.0, ...},
      "input": {"shape": [1, 98, 40, 1], "dtype": "int8", "scale": 0.1, "zero_point": -20},
      "outputs": [{"name": "keyword", "index": 0, "labels": [...], "dtype": "int8",
                   "scale": 0.0039, "zero_point": -128}, ...],
      "stride_hops": 10,
      "metrics": {...}, "created_utc": "..."
    }

`load_manifest` parses and checks the structure; `verify_model` also checks the file's sha256,
the labels the configuration expects, and that the feature configuration matches the frontend
the device runs. Every failure is a `ManifestError` that names the file, what is wrong and how
to fix it (usually: re-run ``make export``, or fix the profile).
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

FORMAT = "hopwise-model"
VERSION = 1
_REQUIRED = ("format", "version", "name", "file", "sha256", "frontend", "input", "outputs")


class ManifestError(ValueError):
    """A model or its manifest cannot be trusted; the message names the problem and the fix."""


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_for(model_path: str | Path) -> Path:
    """``models/x.tflite`` -> ``models/x.json``."""
    return Path(model_path).with_suffix(".json")


def write_manifest(model_path: str | Path, *, name: str, kind: str, frontend: Mapping,
                   input: Mapping, outputs: Sequence[Mapping], stride_hops: int | None = None,
                   metrics: Mapping | None = None, extra: Mapping | None = None) -> Path:
    """Write the manifest beside ``model_path`` with the file's sha256; return its path."""
    model_path = Path(model_path)
    data = {
        "format": FORMAT, "version": VERSION, "name": name, "kind": kind,
        "file": model_path.name, "sha256": sha256_file(model_path),
        "frontend": dict(frontend), "input": dict(input), "outputs": [dict(o) for o in outputs],
        "stride_hops": stride_hops, "metrics": dict(metrics or {}),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    data.update(extra or {})
    out = manifest_path_for(model_path)
    out.write_text(json.dumps(data, indent=2, default=float) + "\n", encoding="utf-8")
    return out


def load_manifest(path: str | Path) -> dict:
    """Read and structurally check a manifest (``.json``, or the ``.tflite`` beside it)."""
    path = Path(path)
    if path.suffix != ".json":
        path = manifest_path_for(path)
    if not path.exists():
        raise ManifestError(f"model manifest {path} is missing; every model needs its manifest "
                            f"beside it: re-run `make export` and deploy both files")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"model manifest {path} is not valid JSON ({exc}); re-run `make export`") from exc
    missing = [k for k in _REQUIRED if k not in data]
    if missing or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a hopwise model manifest (missing {missing or 'format'}); "
                            f"re-run `make export`")
    if data["version"] > VERSION:
        raise ManifestError(f"{path} has manifest version {data['version']}, this runtime reads up "
                            f"to {VERSION}; update hopwise on the device")
    for i, out in enumerate(data["outputs"]):
        if "labels" not in out or "name" not in out:
            raise ManifestError(f"{path}: output {i} has no name/labels; re-run `make export`")
    data["_path"] = str(path)
    return data


def verify_model(path: str | Path, *, expected_labels: Mapping[str, Sequence[str]] | None = None,
                 frontend: Mapping | None = None) -> dict:
    """Check a model against its manifest and the device configuration; return the manifest.

    Parameters
    ----------
    path : path to the ``.tflite`` model or its ``.json`` manifest.
    expected_labels : {output name: labels} the configuration expects, e.g.
        ``{"keyword": cfg.keyword_labels, "scene": cfg["labels.scenes"]}``.
    frontend : the frontend section the device runs (``cfg.section("frontend.keyword")``);
        every key in it that the manifest also has must be equal.
    """
    manifest = load_manifest(path)
    model = Path(manifest["_path"]).parent / manifest["file"]
    if not model.exists():
        raise ManifestError(f"model file {model} named by {manifest['_path']} is missing; deploy "
                            f"the .tflite with its manifest")
    actual = sha256_file(model)
    if actual != manifest["sha256"]:
        raise ManifestError(f"model file {model} does not match its manifest (sha256 {actual[:12]}… "
                            f"!= {manifest['sha256'][:12]}…): the file was changed or damaged in "
                            f"transfer; re-run `make export deploy`")
    if expected_labels:
        by_name = {o["name"]: list(o["labels"]) for o in manifest["outputs"]}
        for head, labels in expected_labels.items():
            if head not in by_name:
                raise ManifestError(f"model {model.name} has no '{head}' output (it has "
                                    f"{sorted(by_name)}); export a model for this profile")
            if by_name[head] != list(labels):
                raise ManifestError(f"model {model.name} '{head}' labels {by_name[head]} differ from "
                                    f"the configuration's {list(labels)}; re-train and export with "
                                    f"this profile, or use the profile the model was trained with")
    if frontend:
        mismatched = {k: (manifest["frontend"].get(k), v) for k, v in frontend.items()
                      if k in manifest["frontend"] and manifest["frontend"][k] != v}
        if mismatched:
            detail = ", ".join(f"{k}: model {a!r} vs device {b!r}" for k, (a, b) in mismatched.items())
            raise ManifestError(f"model {model.name} was trained on other features ({detail}); the "
                                f"device must compute the features the model was trained on: fix "
                                f"the profile's [frontend] or re-train")
    return manifest
