"""The Slicer module files agree with each other, checked without Slicer.

The module files import Slicer's application (qt, ScriptedLoadableModule), so they are read here
as text: `ast` for the Python, ElementTree for the Qt Designer .ui files, regular expressions for
the CMake lists.
"""
from __future__ import annotations

import ast
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = ("MoEDenoise", "MoESuperRes")
# The shared panel code that reaches into the modules' `ui` (self.ui.<name> or ui.<name>).
SHARED_PANEL_FILES = (REPO / "MoEMRILib" / "module_panel.py", REPO / "MoEMRILib" / "result_views.py")
# Widgets that hold or arrange others, and labels: they need no tooltip of their own.
NO_TOOLTIP_CLASSES = {"QLabel", "qMRMLWidget", "ctkCollapsibleButton", "QWidget", "QGroupBox", "QFrame"}


def _ui_path(module: str) -> Path:
    return REPO / module / "Resources" / "UI" / f"{module}.ui"


def _ui_widgets(module: str) -> dict[str, ET.Element]:
    root = ET.parse(_ui_path(module)).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _string_property(widget: ET.Element, name: str) -> str | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            text = prop.find("string")
            return text.text if text is not None else None
    return None


def _ui_names_used(path: Path) -> set[str]:
    """Every `self.ui.<name>` and `ui.<name>` in a Python file, and `getattr(self.ui, f"...")`
    patterns spelled out by the module (spacing{axis}SpinBox)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if (isinstance(owner, ast.Attribute) and owner.attr == "ui" and isinstance(owner.value, ast.Name) and owner.value.id == "self") or (
            isinstance(owner, ast.Name) and owner.id == "ui"
        ):
            names.add(node.attr)
    names |= {f"spacing{axis}SpinBox" for axis in "XYZ"} if "spacing{axis}SpinBox" in path.read_text() else set()
    return names


def _parameter_node_fields(module: str) -> dict[str, str]:
    """Field name -> annotation source of the module's @parameterNodeWrapper class."""
    source = (REPO / module / f"{module}.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(d, ast.Name) and d.id == "parameterNodeWrapper")
            or (isinstance(d, ast.Call) and getattr(d.func, "id", None) == "parameterNodeWrapper")
            for d in node.decorator_list
        ):
            return {
                stmt.target.id: ast.get_source_segment(source, stmt.annotation)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
    raise AssertionError(f"{module}.py declares no @parameterNodeWrapper class")


def _cmake_list(text: str, variable: str, substitutions: dict[str, str]) -> list[str]:
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"no set({variable} ...)"
    items = match.group(1).split()
    for key, value in substitutions.items():
        items = [item.replace("${" + key + "}", value) for item in items]
    return items


# .ui files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_ui_parses_and_is_a_slicer_module_panel(module):
    root = ET.parse(_ui_path(module)).getroot()
    assert root.tag == "ui"
    assert root.findtext("class") == module
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "widget names repeat"
    # Every node selector gets the scene from the panel.
    receivers = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors <= receivers


@pytest.mark.parametrize("module", MODULES)
def test_ui_has_the_controls_the_issue_asks_for(module):
    widgets = _ui_widgets(module)
    classes = {name: w.get("class") for name, w in widgets.items()}
    assert classes["inputSelector"] == classes["outputSelector"] == "qMRMLNodeComboBox"
    assert classes["methodComboBox"] == classes["expertsComboBox"] == classes["deviceComboBox"] == "QComboBox"
    assert classes["optionsCollapsibleButton"] == "ctkCollapsibleButton"
    assert classes["applyButton"] == "QPushButton" and classes["compareButton"] == "QPushButton"
    assert classes["progressBar"] == "QProgressBar"
    assert classes["resultLabel"] == "QLabel"
    assert classes["showExpertMapCheckBox"] == "QCheckBox"
    assert classes["expertMapOpacitySliderWidget"] == "ctkSliderWidget"
    assert classes["fadeSliderWidget"] == "ctkSliderWidget"
    # Method description and what the method selects for the input (describe_selection).
    assert classes["methodDescriptionLabel"] == classes["selectionLabel"] == "QLabel"
    # Generic controls for the method's other options are built inside this container.
    assert classes["methodOptionsWidget"] == "QWidget"
    assert classes["expertLegendTable"] == "QTableWidget" and classes["overlayComboBox"] == "QComboBox"
    assert classes["inputsCollapsibleButton"] == classes["outputsCollapsibleButton"] == "ctkCollapsibleButton"
    if module == "MoESuperRes":
        assert classes["resolutionModeComboBox"] == "QComboBox" and classes["scaleFactorSpinBox"] == "QDoubleSpinBox"


@pytest.mark.parametrize("module", MODULES)
def test_every_control_has_a_tooltip(module):
    missing = [
        name
        for name, widget in _ui_widgets(module).items()
        if widget.get("class") not in NO_TOOLTIP_CLASSES and not _string_property(widget, "toolTip")
    ]
    assert not missing, f"controls without a tooltip: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_widget_names_used_in_python_exist_in_the_ui(module):
    widgets = set(_ui_widgets(module))
    for path in (REPO / module / f"{module}.py", *SHARED_PANEL_FILES):
        used = _ui_names_used(path)
        assert used, f"{path.name} uses no self.ui widgets?"
        assert not used - widgets, f"{path.name} uses widgets missing from {module}.ui: {sorted(used - widgets)}"


@pytest.mark.parametrize("module", MODULES)
def test_slicer_parameter_names_match_the_parameter_node(module):
    fields = _parameter_node_fields(module)
    bound = {}
    for name, widget in _ui_widgets(module).items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.findtext("string")
    assert bound, "no widget is bound to the parameter node"
    unknown = {w: p for w, p in bound.items() if p not in fields}
    assert not unknown, f"SlicerParameterName without a parameter node field: {unknown}"
    assert len(set(bound.values())) == len(bound), "two widgets bound to one parameter"
    # A QComboBox bound to a str needs a fixed Choice: dynamic pickers are filled by the panel instead.
    for widget_name, parameter in bound.items():
        if _ui_widgets(module)[widget_name].get("class") == "QComboBox":
            assert "Choice(" in fields[parameter], f"{parameter} is bound to a QComboBox without Choice"
    # The issue's parameters.
    for field in ("inputVolume", "outputVolume", "method", "experts", "device"):
        assert field in fields
    assert fields["method"] == "str" and fields["experts"] == "int" and fields["device"] == "str"


def test_task_specific_parameters():
    denoise = _parameter_node_fields("MoEDenoise")
    assert "noiseMode" in denoise and '"auto"' in denoise["noiseMode"] and '"manual"' in denoise["noiseMode"]
    assert "float" in denoise["noiseLevel"]
    superres = _parameter_node_fields("MoESuperRes")
    assert all("float" in superres[f"spacing{axis}"] for axis in "XYZ")


# Module Python files -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*(REPO / m / f"{m}.py" for m in MODULES), *sorted((REPO / "MoEMRILib").glob("*.py"))], ids=lambda p: p.name)
def test_python_files_compile(path):
    compile(path.read_text(), str(path), "exec")


def _class_bases(path: Path) -> dict[str, list[str]]:
    tree = ast.parse(path.read_text())
    return {node.name: [ast.unparse(b) for b in node.bases] for node in tree.body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("module", MODULES)
def test_module_file_has_the_template_classes(module):
    # The template's four classes; widget, logic and test over the shared bases of MoEMRILib,
    # which are Slicer's template classes.
    classes = _class_bases(REPO / module / f"{module}.py")
    assert classes[module] == ["ScriptedLoadableModule"]
    assert classes[f"{module}Widget"] == ["MoEModuleWidget"]
    assert classes[f"{module}Logic"] == ["MoEModuleLogic"]
    assert classes[f"{module}Test"] == ["self_test.MoEModuleTest"]
    shared = {**_class_bases(REPO / "MoEMRILib" / "module_widget.py"), **_class_bases(REPO / "MoEMRILib" / "self_test.py")}
    assert "ScriptedLoadableModuleWidget" in shared["MoEModuleWidget"]
    assert shared["MoEModuleLogic"] == ["ScriptedLoadableModuleLogic"]
    assert shared["MoEModuleTest"] == ["ScriptedLoadableModuleTest"]
    source = (REPO / module / f"{module}.py").read_text()
    assert '["Filtering.MoE-MRI"]' in source
    texts = _parent_texts(module)
    for paper in ("DnCNN", "2501.14198", "REMIx", "Morell-Ortega", "MIDL 2024"):
        assert paper in texts["helpText"], f"help text does not name {paper}"
    for paper in ("DnCNN", "2501.14198", "REMIx"):
        assert paper in texts["acknowledgementText"], f"acknowledgement does not name {paper}"


# Papers the project means to implement; each may be named in help texts only once a registered
# method cites it (its title, description or reference), so the help never promises a method.
PAPERS = ("N-SMoE", "MoEDiff-SR", "2504.07308", "Steered Mixture", "REMIx", "2501.14198", "DnCNN")


def _registered_citations() -> str:
    from moemri.methods.registry import all_methods

    return " ".join(f"{m.info.title} {m.info.description} {m.info.reference}" for m in all_methods())


@pytest.mark.parametrize("where", [*MODULES, "CMakeLists.txt"])
def test_texts_describe_only_methods_that_exist(where):
    if where == "CMakeLists.txt":
        texts = {"EXTENSION_DESCRIPTION": re.search(r'set\(EXTENSION_DESCRIPTION "([^"]*)"\)', (REPO / where).read_text()).group(1)}
    else:
        texts = _parent_texts(where)
    cited = _registered_citations()
    for name, text in texts.items():
        promised = [paper for paper in PAPERS if paper in text and paper not in cited]
        assert not promised, f"{where} {name} names {promised}, which no registered method implements"


def _longest_shared_run(a: list[str], b: list[str]) -> int:
    """The longest run of consecutive lines that both files contain (blank lines ignored)."""
    best = 0
    previous = [0] * (len(b) + 1)
    for line in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b):
            if line == other:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def test_module_files_are_thin_over_one_widget_base():
    lines = {m: [line for line in (REPO / m / f"{m}.py").read_text().splitlines() if line.strip()] for m in MODULES}
    for module, text in lines.items():
        assert len(text) <= 115, f"{module}.py has {len(text)} non-blank lines: move shared code into MoEMRILib"
    # What both share beyond the imports is the parameter node's common fields (Slicer's
    # parameterNodeWrapper declares each module's fields in its own class).
    assert _longest_shared_run(*lines.values()) <= 14


def _parent_texts(module: str) -> dict[str, str]:
    """The strings assigned to self.parent.<name> in the module's __init__."""
    texts = {}
    for node in ast.walk(ast.parse((REPO / module / f"{module}.py").read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self.parent":
                    texts[target.attr] = node.value.value
    return texts


@pytest.mark.parametrize(
    "path", [*(REPO / m / f"{m}.py" for m in MODULES), *sorted((REPO / "MoEMRILib").glob("*.py"))], ids=lambda p: p.name
)
def test_method_names_come_from_the_registry(path):
    # Never a method's name in the Slicer code: a method added to the core must appear unchanged.
    from moemri.methods.registry import all_methods

    names = {m.info.name for m in all_methods()} | {"curvature-diffusion", "nlmeans-rician", "ants-denoise", "linear", "bspline",
                                                   "windowed-sinc", "remix", "smoe-patch", "smoe-segment", "moediff-sr"}
    quoted = set(re.findall(r"[\"']([a-z0-9-]+)[\"']", path.read_text()))
    assert not quoted & names, f"{path.name} names methods {sorted(quoted & names)}"


# CMake and extension description ----------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_name_existing_files(module):
    text = (REPO / module / "CMakeLists.txt").read_text()
    assert re.search(rf"set\(MODULE_NAME {module}\)", text)
    names = {"MODULE_NAME": module}
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS", names)
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES", names)
    assert scripts == [f"{module}.py"]
    assert f"Resources/UI/{module}.ui" in resources and f"Resources/Icons/{module}.png" in resources
    for item in scripts + resources:
        assert (REPO / module / item).is_file(), f"{module}/CMakeLists.txt names missing {item}"
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "add_subdirectory(Testing/Python)" in text

    testing = (REPO / module / "Testing" / "Python" / "CMakeLists.txt").read_text()
    script = re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+(\S+)", testing).group(1)
    assert (REPO / module / "Testing" / "Python" / script.replace("${MODULE_NAME}", module)).resolve() == (
        REPO / module / f"{module}.py"
    )


def test_top_cmake_and_shared_package_install():
    text = (REPO / "CMakeLists.txt").read_text()
    for variable, value in (
        ("EXTENSION_HOMEPAGE", "https://github.com/moe-mri/SlicerMoEMRI"),
        ("EXTENSION_CATEGORY", "Filtering"),
        ("EXTENSION_CONTRIBUTORS", "MoE-MRI team"),
        ("EXTENSION_DEPENDS", "PyTorch"),
    ):
        assert re.search(rf'set\({variable} "{re.escape(value)}"\)', text), variable
    for required in ("EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                     "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                     "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert required in text
    for directory in re.findall(r"add_subdirectory\((\w+)\)", text):
        assert (REPO / directory / "CMakeLists.txt").is_file(), directory
    assert set(re.findall(r"add_subdirectory\((\w+)\)", text)) >= {"MoEMRILib", *MODULES}

    lib = (REPO / "MoEMRILib" / "CMakeLists.txt").read_text()
    assert "ctkMacroCompilePythonScript(" in lib
    assert "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}" in lib
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in lib
    globs = re.findall(r"\$\{_moemri_root\}/([\w/.*]+)", lib)
    assert "moemri/*.py" in globs and "MoEMRILib/*.py" in globs
    assert "GLOB_RECURSE MOEMRI_CORE_SCRIPTS" in lib
    for pattern in globs:
        folder = REPO / pattern.split("*")[0]
        if "Weights" in pattern:
            continue  # filled once models are trained; an empty glob installs nothing
        assert folder.exists(), f"MoEMRILib/CMakeLists.txt globs a missing {folder}"
    assert "Resources/SampleData/*" in globs and "Resources/Weights/*" in globs


# The Extensions Index's catalog entry schema (Slicer/Slicer Schemas/slicer-extension-catalog-entry-
# schema-v1.0.1.json): its properties with their JSON types; "additionalProperties": false.
CATALOG_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
CATALOG_PROPERTIES = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int,
}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}


def _cmake_variable(name: str) -> str:
    match = re.search(rf'set\({name} "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text())
    assert match, name
    return match.group(1)


def _extension_name() -> str:
    return re.search(r"^project\((\w+)\)", (REPO / "CMakeLists.txt").read_text(), re.M).group(1)


def test_extension_is_named_after_the_repository():
    name = _extension_name()
    assert name == "SlicerMoEMRI" and _cmake_variable("EXTENSION_HOMEPAGE").rstrip("/").endswith("/" + name)
    assert not list(REPO.glob("*.s4ext")), "the index reads <name>.json now; an .s4ext would drift from it"


def test_catalog_entry_matches_the_schema_and_the_cmake_project():
    import json

    entry = json.loads((REPO / f"{_extension_name()}.json").read_text())
    assert entry["$schema"] == CATALOG_SCHEMA
    assert CATALOG_REQUIRED <= set(entry), "missing required fields"
    assert set(entry) <= set(CATALOG_PROPERTIES), f"fields the schema does not allow: {set(entry) - set(CATALOG_PROPERTIES)}"
    for key, value in entry.items():
        assert type(value) is CATALOG_PROPERTIES[key], f"{key} must be a {CATALOG_PROPERTIES[key].__name__}"
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert entry["scm_type"] == "git" and entry["tier"] in (1, 3, 5) and entry["enabled"] is True
    # The same extension as the CMake project describes.
    assert entry["category"] == _cmake_variable("EXTENSION_CATEGORY") == "Filtering"
    assert entry["build_dependencies"] == _cmake_variable("EXTENSION_DEPENDS").split() == ["PyTorch"]
    assert entry["scm_url"].removesuffix(".git") == _cmake_variable("EXTENSION_HOMEPAGE")
    assert entry["build_subdirectory"] == "." and (REPO / entry["build_subdirectory"] / "CMakeLists.txt").is_file()


def test_extension_urls_point_at_files_in_this_repository():
    raw = _cmake_variable("EXTENSION_HOMEPAGE").replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    urls = [_cmake_variable("EXTENSION_ICONURL"), *_cmake_variable("EXTENSION_SCREENSHOTURLS").split()]
    for url in urls:
        assert url.startswith(raw), url
        assert (REPO / url[len(raw):]).is_file(), f"{url} names a file this repository does not have"


def test_the_screenshots_are_small_and_show_the_shipped_methods():
    # Made by `make screenshots` from real runs (test_web.py), not from the browser tests' doubles.
    readme = (REPO / "README.md").read_text()
    for name, method in (("web-denoise", "smoe-patch"), ("web-superres", "REMIx")):
        path = REPO / "Resources" / "Screenshots" / f"{name}.png"
        assert path.stat().st_size < 300_000, f"{path.name} is over 300 KB"
        caption = readme.split(f"![](Resources/Screenshots/{name}.png)", 1)[1].split("\n\n", 1)[0]
        assert method in caption and "stand-in" not in caption and "test double" not in caption, caption


def test_licence_files_ship():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence and "END OF TERMS AND CONDITIONS" in licence
    assert re.search(r'^license = "Apache-2.0"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert "Apache-2.0" in (REPO / "README.md").read_text()
    text = (REPO / "CMakeLists.txt").read_text()
    assert "set(EXTENSION_LICENSE_FILE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)" in text
    assert "set(EXTENSION_README_FILE ${CMAKE_CURRENT_SOURCE_DIR}/README.md)" in text
    # Every shipped sample volume carries its own licence beside it (installed by the same glob).
    for volume in (REPO / "Resources" / "SampleData").glob("*.nii.gz"):
        notice = volume.with_name(volume.name.removesuffix(".nii.gz") + ".LICENSE.txt")
        assert notice.is_file(), f"{volume.name} ships without its licence notice"
    mni = (REPO / "Resources" / "SampleData" / "MNI152-2009a-T1.LICENSE.txt").read_text()
    for words in ("Copyright (C) 1993-2004 Louis Collins, McConnell Brain", "provided that the above copyright notice appear in all copies"):
        assert words in mni
    from moemri.data.fetch import sha256_of

    assert sha256_of(REPO / "Resources" / "SampleData" / "MNI152-2009a-T1.nii.gz") in mni


@pytest.mark.parametrize(
    "path",
    [REPO / "Resources" / "Icons" / "SlicerMoEMRI.png", *(REPO / m / "Resources" / "Icons" / f"{m}.png" for m in MODULES)],
    ids=lambda p: p.name,
)
def test_icons_are_128_pixel_pngs(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


def test_module_icons_differ():
    icons = {(REPO / m / "Resources" / "Icons" / f"{m}.png").read_bytes() for m in MODULES}
    icons.add((REPO / "Resources" / "Icons" / "SlicerMoEMRI.png").read_bytes())
    assert len(icons) == 3
