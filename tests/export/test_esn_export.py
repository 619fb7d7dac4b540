"""export.esn: the ESN's files with manifests, the TFLite readout, the deploy bundle."""
from __future__ import annotations

import json

import numpy as np
import pytest

from device import esn as desn
from device.config import load_config
from device.manifest import ManifestError

pytestmark = pytest.mark.needs_tf


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from export.esn import export_esn
    from train import esn as tesn
    root = tmp_path_factory.mktemp("build")
    cfg = load_config("default", [f"project.build_dir='{root}'"])
    recs = tesn.synthetic_recordings(cfg, 6, seed=4, tag="export-test")
    est = tesn.EchoStateClassifier(grid_height=6, grid_width=8, leak=0.3, seed=5,
                                   labels=list(cfg["labels.percussion"]))
    est.fit([r.frames for r in recs], [r.labels for r in recs])
    folder = tesn.save_trained(est, recs, root / "models" / "esn" / "default" / "esn")
    return cfg, export_esn(cfg), folder


def test_export_writes_both_files_with_manifests_that_agree(exported):
    cfg, summary, _ = exported
    npz = cfg.build_dir / "export" / "esn_int8.npz"
    model, manifest = desn.read_esn_model(npz, labels=cfg["labels.percussion"],
                                          frontend=cfg.section("frontend.esn"))
    assert manifest["readout_tflite"]["file"] == "esn_readout_int8.tflite"
    assert manifest["reservoir"]["neurons"] == 48 and manifest["reservoir"]["q_state"] == 15
    assert summary["tflite_argmax_agreement"] >= 0.95


def test_the_stage_gives_the_same_beats_with_either_readout(exported):
    from device.pipeline import Pipeline
    from train.synth import clip_rng, percussion_clip
    cfg, _, _ = exported
    audio, _ = percussion_clip("snare", clip_rng(7, "held-out", "snare", 0), 1.0, 16000)
    x = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(8000, np.float32)])
    beats = {}
    for readout in ("int8", "tflite"):
        c = load_config("default", [f"project.build_dir='{cfg.build_dir}'", f"stages.esn.readout={readout}",
                                    'pipeline.stages=["esn"]', "runtime.shedding=false",
                                    "runtime.status_interval_s=0"])
        pipe = Pipeline.from_config(c)
        assert pipe.stages[0].describe()["readout"] == readout
        beats[readout] = [(e["label"], e["t_audio_s"]) for e in pipe.push(x) if e["type"] == "beat"]
        pipe.close()
    assert beats["int8"] == beats["tflite"] and len(beats["int8"]) == 1


def test_deploy_bundles_the_esn_and_refuses_a_tampered_one(exported, tmp_path):
    from export.deploy import build_bundle
    cfg, _, _ = exported
    bundle = build_bundle(cfg, tmp_path / "out", signal=False)   # no keyword model here
    files = json.loads((bundle / "bundle.json").read_text())["files"]
    for name in ("esn_int8.npz", "esn_int8.json", "esn_readout_int8.tflite", "esn_readout_int8.json"):
        assert f"build/export/{name}" in files
    npz = cfg.build_dir / "export" / "esn_int8.npz"
    good = npz.read_bytes()
    try:
        npz.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        from export.deploy import DeployError
        with pytest.raises(DeployError, match="esn_int8.npz does not match its manifest"):
            build_bundle(cfg, tmp_path / "out2", signal=False)
        with pytest.raises(ManifestError, match="does not match its manifest"):
            desn.read_esn_model(npz)
    finally:
        npz.write_bytes(good)
