"""The import graph reads core <- Slicer helpers <- modules and web demo, with no arrow back.

Read with `ast` (nothing is imported): every module of the core `moemri/` imports neither Slicer
(slicer, vtk, qt, ctk, sitkUtils), nor the Slicer helpers (MoEMRILib), nor a front end (MoEWeb,
trame), and none changes sys.path; the Slicer helpers import no front end.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLICER_SIDE = {"slicer", "vtk", "vtkmodules", "qt", "ctk", "sitkUtils", "MoEMRILib", "MoEDenoise", "MoESuperRes"}
FRONT_ENDS = {"MoEWeb", "trame", "trame_slicer", "trame_vuetify"}


def _imported_tops(tree: ast.AST) -> set[str]:
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "__import__", "import_module"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                tops.add(node.args[0].value.split(".")[0])
    return tops


def _touches_sys_path(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Attribute) and node.attr == "path" and ast.unparse(node.value) == "sys"
               for node in ast.walk(tree))


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("moemri"), ids=lambda p: str(p.relative_to(REPO)))
def test_core_imports_no_slicer_code_and_leaves_sys_path_alone(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    wrong = _imported_tops(tree) & (SLICER_SIDE | FRONT_ENDS)
    assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}: the core must stay free of Slicer and front ends"
    assert not _touches_sys_path(tree), f"{path.relative_to(REPO)} manipulates sys.path"


@pytest.mark.parametrize("path", _files("MoEMRILib"), ids=lambda p: str(p.relative_to(REPO)))
def test_slicer_helpers_import_no_front_end_or_module(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    wrong = _imported_tops(tree) & (FRONT_ENDS | {"MoEDenoise", "MoESuperRes"})
    assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"
    assert not _touches_sys_path(tree), f"{path.relative_to(REPO)} manipulates sys.path"


@pytest.mark.parametrize("path", _files("MoEWeb"), ids=lambda p: str(p.relative_to(REPO)))
def test_web_demo_imports_no_slicer_module_and_leaves_sys_path_alone(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert not _imported_tops(tree) & {"MoEDenoise", "MoESuperRes", "qt", "ctk"}
    assert not _touches_sys_path(tree), f"{path.relative_to(REPO)} manipulates sys.path"


@pytest.mark.parametrize("name", ["progress", "palette"])
def test_the_low_modules_import_nothing_of_the_package(name):
    # The progress callback and the expert palette sit under methods, tiler, worker, CLI and
    # Slicer logic alike, so they may not import any of them.
    tree = ast.parse((REPO / "moemri" / f"{name}.py").read_text())
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert not relative and "moemri" not in _imported_tops(tree)


def test_the_progress_type_comes_from_its_own_module():
    # methods.base still re-exports Progress and no_progress for the method, training and
    # benchmark files that name them there; nothing else reaches for the type through it.
    def imports_progress_from_base(node):
        return (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "base"
                and "Progress" in {alias.name for alias in node.names})

    users = [str(p.relative_to(REPO)) for p in _files("moemri") + _files("MoEMRILib") + _files("MoEWeb")
             if any(imports_progress_from_base(node) for node in ast.walk(ast.parse(p.read_text())))]
    assert not users, f"import Progress from moemri.progress: {users}"


def test_command_line_code_lives_in_cli():
    # The degradation models take volumes and numbers; reading flags (`args`) is the CLI's job.
    for path in _files("moemri/degrade"):
        functions = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)]
        assert not [f.name for f in functions if "args" in {a.arg for a in f.args.args}], path.name
    users = [str(p.relative_to(REPO)) for p in _files("moemri") + _files("MoEMRILib") + _files("MoEWeb")
             if "degrade_from_args" in p.read_text() and "moemri/cli/" not in str(p)]
    assert not users


def test_the_checker_sees_the_imports_it_forbids():
    tree = ast.parse("import slicer\nfrom MoEMRILib.x import y\ndef f():\n    import qt\n    importlib.import_module('vtk')\n"
                     "import sys\nsys.path.insert(0, '.')\n")
    assert _imported_tops(tree) >= {"slicer", "MoEMRILib", "qt", "vtk"}
    assert _touches_sys_path(tree)
    assert not _touches_sys_path(ast.parse("import os\nos.path.join('a')\n"))


def test_moemri_web_hands_over_to_the_front_end_entry_point(monkeypatch):
    import importlib.metadata

    from moemri.cli import main as cli

    calls = []

    class EntryPoint:
        name = cli.WEB_SCRIPT

        def load(self):
            return lambda argv: calls.append(argv) or 0

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [EntryPoint()] if group == "console_scripts" else [])
    assert cli.main(["web", "--port", "8081"]) == 0 and calls == [["--port", "8081"]]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [])
    assert cli.main(["web"]) == 69


def test_the_web_entry_point_names_the_front_end():
    text = (REPO / "pyproject.toml").read_text()
    assert 'moemri-web = "MoEWeb.app:main"' in text and '"MoEWeb*"' in text
    assert (REPO / "MoEWeb" / "app.py").is_file()
