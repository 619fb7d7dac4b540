"""Where everything generated goes: the one owner of the build folder layout.

Every path under ``project.build_dir`` is made here, so a new model or report only adds a line
here and no module builds a path of its own::

    paths = BuildPaths(cfg)
    paths.model_dir("multitask", "mt60j")     # build/models/multitask/<profile>/mt60j
    paths.deployed_model("multitask")         # build/export/multitask_int8.tflite
    paths.report("seed_table_default.md")     # build/reports/seed_table_default.md
    paths.bench_report_dir()                  # build/reports/default (the hop-budget report)

Layout (``<profile>`` is `profile_tag`: ``default``, ``real`` or a profile file's stem)::

    build/
      cache/corpus-<hash>/                    corpus cache (train.corpus)
      models/<model>/<profile>/<variant>/     checkpoints, normaliser, history (train.*)
      models/<model>/<profile>/deployed.json  which variant is deployed
      export/<model>_int8.tflite (+ .json)    what the device runs (export.*)
      export/<profile>/<variant>_int8.tflite  every exported variant (evaluation.seed_table)
      reports/                                tables, curves, confusion matrices, benchmarks
      reports/seed_table_<profile>.json       float and int8 accuracy of every variant
      reports/<profile>/hop_budget.*          the hop-budget report (python -m device bench)
      reports/<profile>/<host>/hop_budget.*   the same, measured on a Pi (make bench TARGET=...)
      deploy/                                 the bundle for the Pi (export.deploy)
      demo/                                   make demo's recording and events
      state/                                  runtime.state_dir: MQTT queue, event log

No file is created by asking for a path, except that `reports_dir` exists once asked for.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["BuildPaths", "profile_tag", "resolve_build_path"]


def profile_tag(cfg) -> str:
    """``default`` / ``real`` / the stem of a profile file: keeps profiles' outputs apart."""
    return Path(str(cfg.name)).stem


def resolve_build_path(cfg, path: str | Path) -> Path:
    """A path from the profile: absolute; else relative to the cwd when it exists there; else
    relative to ``project.build_dir`` (so ``export/multitask_int8.tflite`` in a profile means
    the build folder's, and ``--model ./my.tflite`` means the user's file)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return cfg.build_dir / p


class BuildPaths:
    """The build folder of one loaded profile.

    Parameters
    ----------
    cfg : device.config.Config
        Supplies ``project.build_dir`` (the root), the profile name (the per-profile folders)
        and ``runtime.state_dir``.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.root = cfg.build_dir
        self.profile = profile_tag(cfg)

    # ------------------------------------------------------------------ data
    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def corpus_cache(self, key: str) -> Path:
        """The cached corpus keyed by ``key`` (a digest of the settings it depends on)."""
        return self.cache_dir / f"corpus-{key}"

    def teacher_cache(self, key: str) -> Path:
        """The distillation teacher's embeddings of a corpus (`train.teacher`), keyed by the
        corpus cache's key and the embedding settings."""
        return self.cache_dir / f"teacher-{key}"

    # ------------------------------------------------------------------ training
    def models_dir(self, model: str) -> Path:
        """All variants of one model family for this profile."""
        return self.root / "models" / model / self.profile

    def model_dir(self, model: str, variant: str) -> Path:
        """One trained variant: checkpoint, normaliser, history, calibration sample."""
        return self.models_dir(model) / variant

    def deployed_choice(self, model: str) -> Path:
        """``deployed.json``: which variant of ``model`` is the one to export and deploy."""
        return self.models_dir(model) / "deployed.json"

    # ------------------------------------------------------------------ export
    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def deployed_model(self, model: str, suffix: str = "_int8.tflite") -> Path:
        """What the device runs: ``export/<model>_int8.tflite`` (the profile's stage default)."""
        return self.export_dir / f"{model}{suffix}"

    def variant_export(self, variant: str, suffix: str = "_int8.tflite") -> Path:
        """Every exported variant of this profile: ``export/<profile>/<variant>_int8.tflite``."""
        return self.export_dir / self.profile / f"{variant}{suffix}"

    def profile_export(self, model: str, suffix: str = "_int8.tflite") -> Path:
        """This profile's deployed model beside its variants: ``export/<profile>/<model>...``."""
        return self.export_dir / self.profile / f"{model}{suffix}"

    # ------------------------------------------------------------------ reports
    @property
    def reports_dir(self) -> Path:
        path = self.root / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report(self, name: str) -> Path:
        return self.reports_dir / name

    def seed_table_report(self) -> Path:
        """``reports/seed_table_<profile>.json``: the seed table's float and int8 accuracies
        (written by evaluation.seed_table, read by export for manifests and by the hop-budget
        report)."""
        return self.report(f"seed_table_{self.profile}.json")

    def bench_report_dir(self, host: str | None = None) -> Path:
        """Where the hop-budget report goes: ``reports/<profile>/``, or ``reports/<profile>/
        <host>/`` for one measured on another machine and fetched (not created here)."""
        folder = self.reports_dir / self.profile
        return folder / host if host else folder

    # ------------------------------------------------------------------ device side
    @property
    def deploy_dir(self) -> Path:
        return self.root / "deploy"

    @property
    def demo_dir(self) -> Path:
        return self.root / "demo"

    @property
    def state_dir(self) -> Path:
        """``runtime.state_dir``: the MQTT queue and event log (relative: under the build dir)."""
        p = Path(self.cfg["runtime.state_dir"])
        return p if p.is_absolute() else self.root / p

    def resolve(self, path: str | Path) -> Path:
        """See `resolve_build_path`."""
        return resolve_build_path(self.cfg, path)
