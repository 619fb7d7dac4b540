"""A tiny multitask model trained on `tests.train.fakes.fake_corpus` and exported, for the export
and evaluation tests (a few seconds of training; the tests only need real int8 conversions)."""
from __future__ import annotations

from pathlib import Path

from device.config import load_config
from device.paths import BuildPaths
from export.multitask import export_variant
from tests.train.fakes import fake_corpus
from train import multitask as mt

TINY_MODEL = ["model.multitask.batch_size=16", "model.multitask.min_steps_per_epoch=1",
              "model.multitask.width=16", "model.multitask.blocks=2"]


def train_and_export(root: Path, *overrides: str, onnx: bool = True, n_per_keyword: int = 8,
                     n_per_scene: int = 5):
    """Train ``mt60j`` under ``root/build`` and export it as the deployed model.

    Returns
    -------
    (cfg, data, path, summary)
        The profile, the `TaskData` it trained on, the ``.tflite`` path and the export summary.
    """
    cfg = load_config("default", [f"project.build_dir='{Path(root) / 'build'}'", *TINY_MODEL,
                                  *overrides])
    data = mt.TaskData.from_corpus(fake_corpus(cfg, n_per_keyword, n_per_scene), cfg)
    mt.train_variant(cfg, data, data, mt.variants(cfg)["mt60j"], verbose=0)
    path = BuildPaths(cfg).deployed_model(mt.MODEL)
    return cfg, data, path, export_variant(cfg, "mt60j", path, onnx=onnx)
