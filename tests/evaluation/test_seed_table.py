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


def test_exported_models_are_evaluated_as_they_are_side_by_side(tiny, tone_model):
    """--exported: a model file as it is (here the tone stand-in, twice from two folders) on the
    seed table's test sets, no training: its accuracies are the device runner's own argmaxes,
    and the seed table itself is left alone."""
    import numpy as np
    from device.frontend import LogMelConfig
    from device.interpreter import TFLiteModel
    cfg, data = tiny
    copy = cfg.build_dir / "copy" / tone_model.name      # a manifest names its model's file
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(tone_model.read_bytes())
    copy.with_suffix(".json").write_text(tone_model.with_suffix(".json").read_text())
    table = seed_table.evaluate_exported(cfg, [str(tone_model), str(copy)])
    rows = list(table["models"].values())
    assert len(rows) == 2 and rows[0]["int8"] == rows[1]["int8"]
    assert set(rows[0]["int8"]) >= {"keyword_only", "mixed_keyword", "scene_only", "mixed_scene"}
    sets = mt.eval_sets(data, LogMelConfig.from_config(cfg, "keyword"),
                        float(cfg["eval.keyword_share"]), int(cfg["eval.seed"]),
                        int(cfg["eval.scene_crops_per_clip"]))
    feats, labels, head = sets["keyword_only"]
    direct = TFLiteModel(tone_model).predict(feats)[head].argmax(1)
    assert rows[0]["int8"]["keyword_only"]["accuracy"] == round(float(np.mean(direct == labels)), 4)
    reports = cfg.build_dir / "reports"
    md = (reports / "seed_table_exported_default.md").read_text()
    assert md.count("| `") == 2 and "keyword only" in md
    assert not (reports / "seed_table_default.json").exists()
