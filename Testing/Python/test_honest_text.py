"""What the code says about itself holds outside this machine (issue 16, item 5): no paths of the
machine it was written on, papers cited by author and identifier, and each option name spelled
once, as a constant, so that a renamed option cannot leave a caller behind."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from moemri.methods.base import NOISE_LEVEL_OPTION, SPACING_OPTION

REPO = Path(__file__).resolve().parents[2]
PRODUCT_FOLDERS = ("moemri", "MoEMRILib", "MoEDenoise", "MoESuperRes")
MACHINE_PATH = re.compile(r"/work/|/home/|/root/|shared/seeds|\bpaper 00\d\b")
# Options the CLI, the Slicer modules or the web demo set by name: spelled only in methods/base.py.
SHARED_OPTIONS = {NOISE_LEVEL_OPTION, SPACING_OPTION}


def _product_files(*suffixes: str) -> list[Path]:
    files = [p for folder in PRODUCT_FOLDERS for p in sorted((REPO / folder).rglob("*")) if p.suffix in suffixes and p.is_file()]
    assert files
    return files


@pytest.mark.parametrize(
    "path",
    [*_product_files(".py", ".ui", ".txt"), REPO / "CMakeLists.txt", REPO / "README.md", REPO / "SlicerMoEMRI.json"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_machine_paths_or_private_paper_numbers(path):
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not hits, f"cite the paper (authors, venue, arXiv/doi), not a path or a private number: {hits}"


def _spelled_option_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Shared option names written as string literals where an option is named: the first
    argument of OptionSpec, a subscript (opts["..."]), a key of an options= dict, a constant."""
    found = []

    def literal(node) -> str | None:
        return node.value if isinstance(node, ast.Constant) and node.value in SHARED_OPTIONS else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "OptionSpec" and node.args:
            if name := literal(node.args[0]):
                found.append((node.lineno, f"OptionSpec({name!r})"))
        elif isinstance(node, ast.Subscript) and (name := literal(node.slice)):
            found.append((node.lineno, f"[{name!r}]"))
        elif isinstance(node, ast.keyword) and node.arg == "options" and isinstance(node.value, ast.Dict):
            found += [(node.value.lineno, f"options={{{k.value!r}: ...}}") for k in node.value.keys if literal(k)]
        elif isinstance(node, ast.Assign) and (name := literal(node.value)):
            found.append((node.lineno, f"a second constant for {name!r}"))
    return found


@pytest.mark.parametrize("path", _product_files(".py"), ids=lambda p: str(p.relative_to(REPO)))
def test_shared_option_names_come_from_one_constant(path):
    if path == REPO / "moemri" / "methods" / "base.py":
        return  # where the constants live
    found = _spelled_option_names(ast.parse(path.read_text(), filename=str(path)))
    assert not found, f"use NOISE_LEVEL_OPTION / SPACING_OPTION from moemri.methods.base: {found}"


def test_the_option_check_sees_a_literal():
    """The check above would pass on any file if the walk missed the cases it looks for."""
    source = 'OptionSpec("spacing", "floats")\nopts["noise_level_percent"]\nrun(options={"spacing": 1})\nSPACING = "spacing"\n'
    assert len(_spelled_option_names(ast.parse(source))) == 4


def test_declared_options_use_the_shared_names():
    from moemri.methods.registry import all_methods

    for method in all_methods():
        names = {o.name for o in method.info.options}
        if method.info.task == "superres":
            assert SPACING_OPTION in names, method.info.name  # the CLI's --spacing and --scale set it
        assert not {n for n in names if n.lower() in {"noise_level", "noise", "sigma", "output_spacing"}}, method.info.name


def test_a_renamed_method_fails_the_tests_that_need_it():
    fixtures = pytest.importorskip("test_slicer_fixtures")  # needs slicer-core, as those tests do
    try:
        fixtures.registered("a-method-renamed-since")
    except pytest.fail.Exception as failure:
        assert "renamed or removed" in str(failure)
    except pytest.skip.Exception:
        pytest.fail("a test whose method was renamed would be skipped, and nobody would notice")
    else:
        pytest.fail("a test whose method was renamed would go on")
    fixtures.registered("curvature-diffusion")  # a registered one passes
