"""The seed table command on a tiny corpus: trains two variants for a few steps, exports them to
int8, evaluates float and int8 on the four test sets (plus the recorded-speakers set when the
split mixes recorded and synthetic voices) and picks the deployed multitask variant."""
from __future__ import annotations

import json

import pytest

from device.config import load_config
from evaluation import seed_table
from tests.train.fakes import fake_corpus
from train import multitask as mt


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    cfg = load_config("default", [f"project.build_dir='{tmp_path / 'build'}'",
                                  "model.multitask.epochs=2", "model.multitask.batch_size=16",
                                  "model.multitask.min_steps_per_epoch=2",
                                  "model.multitask.width=16", "model.multitask.blocks=2",
                                  "export.calibration_examples=16", "eval.scene_crops_per_clip=1"])
    corpus = fake_corpus(cfg, n_per_keyword=4, n_per_scene=3)
    for clip in corpus.keywords[::2]:
        clip.meta["synthetic"] = True
    data = mt.TaskData.from_corpus(corpus, cfg)
    # The corpus builder is tested on its own; here every split is the tiny corpus.
    monkeypatch.setattr(mt, "load_splits", lambda cfg, progress=True: {
        "train": data, "validation": data, "test": data})
    return cfg, data


def test_seed_table_writes_markdown_json_and_deploys_a_multitask_variant(tiny):
    cfg, data = tiny
    table = seed_table.run(cfg, ["kw", "mt60j"], verbose=0)
    reports = cfg.build_dir / "reports"
    saved = json.loads((reports / "seed_table_default.json").read_text())
    assert saved["deployed"] == table["deployed"] == "mt60j"
    assert set(saved["variants"]) == {"kw", "mt60j"}
    mt60j = saved["variants"]["mt60j"]
    for kind in ("float", "int8"):
        assert set(mt60j[kind]) == {"keyword_only", "scene_only", "mixed_keyword",
                                    "mixed_scene", "keyword_recorded"}
        assert mt60j[kind]["keyword_recorded"]["n"] == int(data.keyword_recorded.sum())
        assert 0.0 <= mt60j[kind]["mixed_scene"]["accuracy"] <= 1.0
    assert set(saved["variants"]["kw"]["int8"]) == {"keyword_only", "mixed_keyword",
                                                    "keyword_recorded"}
    md = (reports / "seed_table_default.md").read_text()
    assert "| model | keyword only | scene only | mixed keyword | mixed scene | " \
           "keyword only, recorded speakers |" in md
    assert "**(deployed)**" in md and md.count("| kw: ") == 2  # float and int8 tables
    assert (reports / "confusion_default_mt60j_int8.png").stat().st_size > 5000
    deployed = cfg.build_dir / "export" / "default" / "multitask_int8.tflite"
    assert deployed.exists() and deployed.with_suffix(".json").exists()
    assert json.loads((cfg.build_dir / "models" / "multitask" / "default" /
                       "deployed.json").read_text())["variant"] == "mt60j"
