"""The package layering of the README's architecture section: imports only run down, and no two modules
import each other (read from the source with :mod:`ast`, so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "nmflow"
# lower layers first; a module may import its own layer's neighbours and any layer below
LAYERS = [
    {"nmflow", "nmflow.errors", "nmflow.log"},
    {"nmflow.fileio", "nmflow.networks", "nmflow.stats", "nmflow.slurm"},
    {"nmflow.images"},
    {"nmflow.bids_io"},
    {"nmflow.participant", "nmflow.normative", "nmflow.dicom", "nmflow.fmriprep_runner"},
    {"nmflow.group"},
    {"nmflow.prepost"},
    {"nmflow.simulate", "nmflow.reports"},
    {"nmflow.interfaces"},
    {"nmflow.workflows"},
    {"nmflow.cli"},
    {"nmflow.demo"},
]
LEVEL = {package: k for k, layer in enumerate(LAYERS) for package in layer}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """nmflow modules imported by the file (``from a.b import c`` counts ``a.b.c`` when it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmflow"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            found |= subs or ({node.module} & modules.keys())
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & modules.keys()
    return found


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


MODULES = _modules()
GRAPH = {name: _imports(path, MODULES) for name, path in MODULES.items()}


def test_every_package_has_a_layer():
    assert {_package(m) for m in MODULES} <= LEVEL.keys()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layers(module):
    upward = [m for m in GRAPH[module] if LEVEL[_package(m)] > LEVEL[_package(module)]]
    assert not upward, f"{module} imports a higher layer: {upward}"


def test_no_two_modules_import_each_other():
    pairs = {tuple(sorted((a, b))) for a, targets in GRAPH.items() for b in targets
             if a in GRAPH.get(b, ()) and a != b and not b.startswith(a + ".")}  # a package's __init__ re-exports
    assert not pairs


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule is not vacuous: a lower-layer file importing a workflow is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nmflow.workflows.group import run_group\n")
    assert _imports(bad, MODULES) == {"nmflow.workflows.group"}
