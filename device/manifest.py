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

`load_manifest` parses and checks the structure and the type of every field the runtime reads
(a ``"version": "1"`` or a ``"sha256": null`` is refused, as are a zero quantisation scale and a
zero normalisation deviation, which would silently change or break the arithmetic);
`verify_model` also checks the sha256 of the very bytes the device will load (`read_verified`),
the labels the configuration expects, and that the feature configuration matches the frontend
the device runs. Every failure is a `ManifestError` that names the file, what is wrong and how
to fix it (usually: re-run ``make export``, or fix the profile).
"""
from __future__ import annotations

import hashlib
import json
import math
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
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a hopwise model manifest (a JSON object); re-run "
                            f"`make export`")
    missing = [k for k in _REQUIRED if k not in data]
    if missing or data.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a hopwise model manifest (missing {missing or 'format'}); "
                            f"re-run `make export`")
    _check_fields(data, path)
    if data["version"] > VERSION:
        raise ManifestError(f"{path} has manifest version {data['version']}, this runtime reads up "
                            f"to {VERSION}; update hopwise on the device")
    data["_path"] = str(path)
    return data


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_fields(data: Mapping, path: Path) -> None:
    """The type and range of every field the runtime reads; the first bad one is an error."""
    def bad(field: str, value, want: str):
        raise ManifestError(f"{path}: {field} is {value!r}, but must be {want}; the manifest was "
                            f"edited or damaged: re-run `make export`")

    if not isinstance(data["version"], int) or isinstance(data["version"], bool):
        bad("version", data["version"], "a whole number")
    for field in ("name", "file"):
        if not isinstance(data[field], str) or not data[field]:
            bad(field, data[field], "a non-empty string")
    if Path(data["file"]).name != data["file"]:
        bad("file", data["file"], "a file name beside the manifest (no folders)")
    sha = data["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        bad("sha256", sha, "64 lower-case hex digits")
    for field in ("frontend", "input"):
        if not isinstance(data[field], dict):
            bad(field, data[field], "an object")
    stride = data.get("stride_hops")
    if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
        bad("stride_hops", stride, "a whole number >= 1 (or null)")
    inp = data["input"]
    if "shape" in inp and not (isinstance(inp["shape"], list) and inp["shape"]
                               and all(isinstance(v, int) and v > 0 for v in inp["shape"])):
        bad("input.shape", inp["shape"], "a list of positive whole numbers")
    if inp.get("scale") is not None and not (_is_number(inp["scale"]) and inp["scale"] > 0):
        bad("input.scale", inp["scale"], "a positive number (or null for a float input)")
    if inp.get("zero_point") is not None and not isinstance(inp["zero_point"], int):
        bad("input.zero_point", inp["zero_point"], "a whole number (or null)")
    norm = data.get("normalization") or inp.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            bad("input.normalization", norm, "an object with mean and std")
        for key in ("mean", "std"):
            v = norm.get(key)
            values = v if isinstance(v, list) else [v]
            if v is None or not values or not all(_is_number(x) for x in values):
                bad(f"input.normalization.{key}", v, "a number or a list of numbers")
            if key == "std" and not all(x > 0 for x in values):
                bad("input.normalization.std", v, "positive (a deviation of 0 divides by zero)")
        if isinstance(norm["mean"], list) and isinstance(norm["std"], list) \
                and len(norm["mean"]) != len(norm["std"]):
            bad("input.normalization", f"{len(norm['mean'])} means, {len(norm['std'])} deviations",
                "one mean and one deviation per band")
    if not isinstance(data["outputs"], list) or not data["outputs"]:
        bad("outputs", data["outputs"], "a non-empty list")
    for i, out in enumerate(data["outputs"]):
        if not isinstance(out, dict) or "labels" not in out or "name" not in out:
            raise ManifestError(f"{path}: output {i} has no name/labels; re-run `make export`")
        if not isinstance(out["name"], str) or not (
                isinstance(out["labels"], list) and out["labels"]
                and all(isinstance(x, str) for x in out["labels"])):
            bad(f"outputs[{i}]", {k: out[k] for k in ("name", "labels")},
                "a name (string) and a non-empty list of string labels")
        if out.get("scale") is not None and not (_is_number(out["scale"]) and out["scale"] > 0):
            bad(f"outputs[{i}].scale", out["scale"], "a positive number (or null)")
        if out.get("zero_point") is not None and not isinstance(out["zero_point"], int):
            bad(f"outputs[{i}].zero_point", out["zero_point"], "a whole number (or null)")


def read_verified(path: str | Path) -> tuple[dict, bytes]:
    """The manifest and the model's bytes, read once and checked against its sha256.

    The device loads these bytes (not the file again), so what was checked is what runs. A
    ``.tflite`` path whose manifest describes another file is refused: the manifest beside a
    model must be that model's.
    """
    path = Path(path)
    manifest = load_manifest(path)
    model = Path(manifest["_path"]).parent / manifest["file"]
    if path.suffix != ".json" and path.name != manifest["file"]:
        raise ManifestError(f"manifest {manifest['_path']} describes {manifest['file']}, not "
                            f"{path.name}; give the model the manifest exported with it "
                            f"(re-run `make export`)")
    try:
        content = model.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"model file {model} named by {manifest['_path']} is missing; deploy "
                            f"the .tflite with its manifest") from None
    except OSError as exc:
        raise ManifestError(f"model file {model} cannot be read ({exc}); check its permissions "
                            f"or re-deploy it") from exc
    actual = hashlib.sha256(content).hexdigest()
    if actual != manifest["sha256"]:
        raise ManifestError(f"model file {model} does not match its manifest (sha256 {actual[:12]}… "
                            f"!= {manifest['sha256'][:12]}…): the file was changed or damaged in "
                            f"transfer; re-run `make export deploy`")
    return manifest, content


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
    manifest, _ = read_verified(path)
    check_against_config(manifest, expected_labels=expected_labels, frontend=frontend)
    return manifest


def check_against_config(manifest: Mapping, *,
                         expected_labels: Mapping[str, Sequence[str]] | None = None,
                         frontend: Mapping | None = None) -> None:
    """The labels and frontend of a loaded manifest against the configuration (see
    `verify_model`); raise `ManifestError` on a mismatch."""
    model = Path(manifest["_path"]).parent / manifest["file"]
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
        # A manifest written before PCEN existed has no "compression": its model ate log-mel.
        written = {"compression": "log", **manifest["frontend"]}
        mismatched = {k: (written.get(k), v) for k, v in frontend.items()
                      if k in written and written[k] != v}
        if mismatched:
            detail = ", ".join(f"{k}: model {a!r} vs device {b!r}" for k, (a, b) in mismatched.items())
            raise ManifestError(f"model {model.name} was trained on other features ({detail}); the "
                                f"device must compute the features the model was trained on: fix "
                                f"the profile's [frontend] or re-train")

