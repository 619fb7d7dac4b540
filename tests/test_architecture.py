"""The arrows between the packages, kept by a test: what runs on the Pi never reaches for the
host, and the host packages import in one direction only.

    firmware_bridge   (stands alone: the serial protocol, also spoken by a microcontroller)
    device            <- train <- export <- evaluation        (benchmarks may use them all)

Every ``import`` statement counts, wherever it stands (top level or inside a function), so a
lazy import cannot hide a wrong arrow. The one exception is written down below.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("device", "train", "export", "evaluation", "benchmarks", "firmware_bridge", "tests")
HOST_ONLY = ("tensorflow", "keras", "tf_keras", "librosa", "sklearn", "matplotlib", "tf2onnx",
             "onnx")

# package -> the project packages and the third-party packages it must never import
RULES = {
    "device": ({"train", "export", "evaluation", "benchmarks", "tests"}, set(HOST_ONLY)),
    "firmware_bridge": ({"device", "train", "export", "evaluation", "benchmarks", "tests"},
                        set(HOST_ONLY)),
    "train": ({"export", "evaluation", "benchmarks", "tests"}, set()),
    "export": ({"evaluation", "benchmarks", "tests"}, set()),
    "evaluation": ({"benchmarks", "tests"}, set()),
}


def imported_roots(path: Path, package: str | None = None) -> set[str]:
    """Top-level package names that ``path`` imports (a relative import is ``package``, by
    default the repository folder the file is in)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package or path.relative_to(REPO).parts[0]
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add(package if node.level else (node.module or "").split(".")[0])
    return roots


def _modules(package: str):
    folder = REPO / package
    return sorted(folder.rglob("*.py")) if folder.is_dir() else []


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_imports_follow_the_arrows(package):
    banned_project, banned_third_party = RULES[package]
    offenders = []
    for path in _modules(package):
        for root in sorted(imported_roots(path)):
            if root in banned_project or root in banned_third_party:
                offenders.append(f"{path.relative_to(REPO)} imports {root}")
    # device/interpreter.py may fall back to tensorflow.lite on a host, and device/bench.py
    # draws its optional PNG with matplotlib where it is installed, both through importlib (a
    # string, not an import statement) and both working without it, so they need no exception.
    assert not offenders, (f"{package}/ must not import "
                           f"{sorted(banned_project | banned_third_party)}:\n" + "\n".join(offenders))


def test_the_rules_see_real_imports(tmp_path):
    """The checker itself: it finds plain, from-, relative and function-level imports."""
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom export.convert import x\nfrom . import corpus\n"
                     "def f():\n    import evaluation.seed_table\n", encoding="utf-8")
    assert imported_roots(probe, "train") == {"os", "export", "train", "evaluation"}


def test_every_package_is_covered():
    """A new top-level package must be given its place in the arrows (add it to RULES)."""
    found = {p.name for p in REPO.iterdir()
             if p.is_dir() and (p / "__init__.py").exists()}
    assert found <= set(PROJECT), f"packages without a rule: {sorted(found - set(PROJECT))}"


# What the Pi has: the bundle's packages, numpy, and pytest with pytest-benchmark for the suites.
PI_PACKAGES = {"device", "firmware_bridge", "benchmarks", "numpy", "pytest", "pytest_benchmark"}


def import_time_roots(path: Path) -> set[str]:
    """Top-level packages ``path`` imports when it is imported: every import statement except
    those inside a function body (which run only when the function does)."""
    roots: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                roots.add("benchmarks" if child.level else (child.module or "").split(".")[0])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return roots


def test_benchmarks_import_only_what_the_pi_has():
    """benchmarks/ travels in the deploy bundle, and its suites must run there unchanged: when
    imported, a module uses only the standard library and `PI_PACKAGES`. Host-only parts (a
    stand-in model made with TensorFlow) import inside the function that needs them, and the
    suites skip when that fails."""
    import sys
    offenders = [f"{path.relative_to(REPO)} imports {root} at import time"
                 for path in _modules("benchmarks") for root in sorted(import_time_roots(path))
                 if root not in PI_PACKAGES and root not in sys.stdlib_module_names]
    assert not offenders, "\n".join(offenders)


def test_import_time_roots_skip_function_bodies(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\ntry:\n    import pytest\nexcept ImportError:\n    pass\n"
                     "class A:\n    import numpy\n"
                     "def f():\n    import tensorflow\n", encoding="utf-8")
    assert import_time_roots(probe) == {"os", "pytest", "numpy"}
