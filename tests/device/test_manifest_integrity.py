"""A model the device cannot trust is refused before the first hop: a damaged or swapped file,
and manifest fields of the wrong type or value, each with a message that names the fix."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from device.interpreter import TFLiteModel
from device.manifest import ManifestError, load_manifest, verify_model


@pytest.fixture
def model_copy(tone_model, tmp_path):
    """A private copy of the tone model and its manifest, free to damage."""
    dst = tmp_path / tone_model.name
    shutil.copy(tone_model, dst)
    shutil.copy(tone_model.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _edit(path, **changes):
    mpath = path.with_suffix(".json")
    data = json.loads(mpath.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    mpath.write_text(json.dumps(data))


@pytest.mark.parametrize("changes, match", [
    ({"version": "1"}, r"version is '1', but must be a whole number"),
    ({"sha256": None}, r"sha256 is None, but must be 64 lower-case hex digits"),
    ({"input__scale": 0}, r"input.scale is 0, but must be a positive number"),
    ({"input__normalization__std": 0.0}, r"std is 0.0, but must be positive"),
    ({"stride_hops": 0}, r"stride_hops is 0"),
    ({"file": "../elsewhere.tflite"}, r"a file name beside the manifest"),
    ({"outputs": []}, r"outputs is \[\], but must be a non-empty list"),
])
def test_manifest_fields_of_the_wrong_type_are_refused(model_copy, changes, match):
    _edit(model_copy, **changes)
    with pytest.raises(ManifestError, match=match):
        load_manifest(model_copy)


def test_a_zero_deviation_in_a_band_is_refused(model_copy):
    data = json.loads(model_copy.with_suffix(".json").read_text())
    std = data["input"]["normalization"]["std"]
    std = [0.0] + std[1:] if isinstance(std, list) else [0.0]
    _edit(model_copy, input__normalization__std=std)
    with pytest.raises(ManifestError, match="divides by zero"):
        load_manifest(model_copy)


def test_damaged_bytes_are_refused_and_the_checked_bytes_are_the_ones_loaded(model_copy):
    model = TFLiteModel(model_copy)
    good = model.run(np.zeros((model.frames, 40), np.float32))
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="does not match its manifest"):
        TFLiteModel(model_copy)
    assert set(good) == set(model.labels)


def test_a_model_under_another_models_manifest_is_refused(model_copy):
    """`--model other.tflite` with other.json copied from a good model: the manifest's sha256
    is right for the good file, so only the name check catches that other bytes would run."""
    other = model_copy.with_name("other.tflite")
    shutil.copy(model_copy, other)
    shutil.copy(model_copy.with_suffix(".json"), other.with_suffix(".json"))
    with pytest.raises(ManifestError, match=f"describes {model_copy.name}, not other.tflite"):
        verify_model(other)


def test_garbage_that_matches_its_manifest_is_a_clear_error(model_copy):
    model_copy.write_bytes(b"not a flatbuffer at all" * 10)
    from device.manifest import sha256_file
    _edit(model_copy, sha256=sha256_file(model_copy))
    with pytest.raises(ManifestError, match="is not a valid TFLite model .*re-run `make export`"):
        TFLiteModel(model_copy)
