"""What a saved scene keeps: the modules' parameter nodes written to a .mrml and read back, the
method options kept as JSON in them, the sample data entry and the installed layout.

slicer-core has no `parameterNodeWrapper`, so the parameter node is written here as the wrapper's
serializers write it (Slicer's Base/Python/slicer/parameterNodeWrapper/serializers.py: numbers and
strings as str(value), bools as "True"/"False", nodes as a node reference plus an empty
parameter), for every field the module file declares, and checked after a real MRML save and
reload; the field list and defaults are read from the module files themselves.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import shutil
import sys
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from MoEMRILib import sample_data  # noqa: E402
from MoEMRILib.dependencies import plan_for_module, plan_for_reason  # noqa: E402
from moemri.methods.choices import methods_for_task, selection_text  # noqa: E402
from moemri.methods.options import coerce, generic_options, load_store, output_spacing_mm, stored_options, with_option  # noqa: E402
from moemri.methods.base import OptionSpec  # noqa: E402
from moemri.methods.registry import get_method  # noqa: E402
from test_slicer_fixtures import fake_methods, scene  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
NODE_TYPES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode")


def declared_fields(module: str) -> dict[str, tuple[str, object]]:
    """name -> (annotation text, default) of the module's @parameterNodeWrapper class."""
    tree = ast.parse((REPO / module / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == f"{module}ParameterNode":
            return {
                s.target.id: (ast.unparse(s.annotation), ast.literal_eval(s.value) if s.value is not None else None)
                for s in node.body if isinstance(s, ast.AnnAssign)
            }
    raise AssertionError(f"no {module}ParameterNode in {module}.py")


def write_parameter(node, name, annotation, value):
    if annotation in NODE_TYPES:
        node.SetParameter(name, "")
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
    elif annotation == "bool":
        node.SetParameter(name, "True" if value else "False")
    else:
        node.SetParameter(name, str(value))


def read_parameter(node, name, annotation):
    if annotation in NODE_TYPES:
        return node.GetNodeReference(name)
    text = node.GetParameter(name)
    if annotation == "bool":
        return text == "True"
    if annotation == "int":
        return int(text)
    return float(text) if "float" in annotation else text


def validate(annotation: str, value) -> None:
    """The Choice / WithinRange validators the module declares, applied to a value."""
    choice = ast.literal_eval(annotation.split("Choice(", 1)[1].rsplit(")", 2)[0]) if "Choice(" in annotation else None
    if choice is not None:
        assert value in choice, f"{value!r} not in {choice}"
    if "WithinRange(" in annotation:
        low, high = ast.literal_eval("(" + annotation.split("WithinRange(", 1)[1].split(")")[0] + ")")
        assert low <= value <= high


def new_parameter_node(scene, module):
    # As ScriptedLoadableModuleLogic.createParameterNode makes it.
    node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
    node.UnRegister(None)
    node.SetSingletonTag(module)
    node.SetName(scene.GenerateUniqueName(module))
    node.SetAttribute("ModuleName", module)
    return scene.AddNode(node)


def chosen_values(module, scene, fields):
    task, handled = {"MoEDenoise": ("denoise", ("noise_level_percent",)), "MoESuperRes": ("superres", ("spacing",))}[module]
    method = next(c for c in methods_for_task(task) if generic_options(c.name, handled))  # one with options to keep
    spec = generic_options(method.name, handled)[-1]
    value = spec.maximum if spec.kind in ("int", "float") and spec.maximum is not None else spec.default
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1 input")
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1 output")
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "T1 experts")
    values = {
        "inputVolume": volume, "outputVolume": output, "expertMapVolume": labels, "method": method.name,
        "experts": method.expert_counts[-1], "device": "cpu", "methodOptions": with_option("", method.name, spec, value),
        "noiseMode": "manual", "noiseLevel": 3.5, "resolutionMode": "scale", "scaleFactor": 2.5,
        "spacingX": 0.5, "spacingY": 0.75, "spacingZ": 1.25, "showExpertMap": False, "expertMapOpacity": 0.3,
        "overlay": "2", "fade": 0.8,
    }
    missing = set(fields) - set(values)
    assert not missing, f"the test gives no value for {missing}: add one"
    return {k: v for k, v in values.items() if k in fields}, (method.name, spec.name, value)


@pytest.mark.parametrize("module", ["MoEDenoise", "MoESuperRes"])
def test_parameter_node_survives_saving_and_reloading_the_scene(scene, fake_methods, tmp_path, module):
    fields = declared_fields(module)
    values, (method, option, option_value) = chosen_values(module, scene, fields)
    node = new_parameter_node(scene, module)
    for name, (annotation, default) in fields.items():
        if annotation not in NODE_TYPES:
            validate(annotation, default)
            validate(annotation, values[name])
        write_parameter(node, name, annotation, values[name])

    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    reloaded = slicer.vtkMRMLScene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    assert reloaded.Connect()

    restored = reloaded.GetSingletonNode(module, "vtkMRMLScriptedModuleNode")
    assert restored is not None and restored.GetAttribute("ModuleName") == module
    for name, (annotation, _) in fields.items():
        value = read_parameter(restored, name, annotation)
        if annotation in NODE_TYPES:
            assert value is not None and value.GetName() == values[name].GetName() and value.IsA(annotation)
        else:
            assert value == values[name], name
    # The generic option survives, checked against the method's spec again.
    assert stored_options(restored.GetParameter("methodOptions"), method)[option] == option_value


def test_method_options_are_kept_per_method_and_checked(fake_methods):
    store = with_option("", "test-selecting-superres", get_method("test-selecting-superres").info.options[1], 50.4)
    store = with_option(store, "test-fake-moe-denoise", fake_methods["FakeGatedDenoiser"].info.options[0], 0.25)
    assert load_store(store) == {"test-selecting-superres": {"steps": 50}, "test-fake-moe-denoise": {"strength": 0.25}}
    # Handled options are not generic; a value out of range is clamped, a wrong one dropped.
    assert [s.name for s in generic_options("test-selecting-superres", ("spacing",))] == ["steps", "seed"]
    spoilt = json.dumps({"test-selecting-superres": {"steps": 5000, "seed": "many", "gone": 1}})
    assert stored_options(spoilt, "test-selecting-superres", ("spacing",)) == {"steps": 1000}
    assert stored_options("{not json", "test-selecting-superres") == {}
    floats = OptionSpec("spacing", "floats", (1.0, 1.0, 1.0), "mm", minimum=0.1, maximum=10.0)
    assert coerce(floats, "0.5, 1 x 20") == (0.5, 1.0, 10.0)
    assert coerce(OptionSpec("on", "bool", False, ""), "True") is True
    with pytest.raises(ValueError):
        coerce(OptionSpec("c", "choice", "a", "", choices=("a", "b")), "z")
    assert output_spacing_mm((1.0, 1.0, 5.0), "scale", 2.0, (9, 9, 9)) == (0.5, 0.5, 2.5)
    assert output_spacing_mm((1.0, 1.0, 5.0), "spacing", 2.0, (0.7, 0.7, 0.7)) == (0.7, 0.7, 0.7)


def test_describe_selection_hook_is_shown_before_apply(fake_methods):
    from moemri.volume import Volume

    thick = Volume(np.zeros((4, 5, 6), np.float32), spacing=(1.0, 1.0, 5.0))
    assert selection_text("test-selecting-superres", thick) == "the expert for 5 mm slices will be used"
    # A refusal is shown as the method words it; methods without the hook show nothing.
    assert selection_text("test-selecting-superres", Volume(thick.array, spacing=(1, 1, 9))) == "no expert was trained for 9 mm slices"
    assert selection_text("test-fake-moe-denoise", thick) == ""
    assert selection_text("no-such-method", thick) == ""


def test_install_plans_name_the_right_package():
    assert plan_for_module("sklearn.cluster").requirement == "scikit-learn"
    assert plan_for_module("torch").kind == "pytorch"
    assert plan_for_module("numpy") is None and plan_for_module("SimpleITK") is None  # Slicer's own
    ants = get_method("ants-denoise")
    reason = "needs the optional package antspyx: pip install 'moemri[ants]'"
    assert plan_for_reason(ants.availability() or reason).requirement == "antspyx"
    assert plan_for_reason("REMIx needs PyTorch (pip install torch)").kind == "pytorch"
    assert plan_for_reason("weights missing in Resources/Weights") is None


def test_sample_data_entry_matches_the_sample_data_api(monkeypatch, tmp_path):
    registered = []

    class SampleDataLogic:  # the Slicer 5 signature (Modules/Scripted/SampleData/SampleData.py)
        @staticmethod
        def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None, nodeNames=None,
                                           customDownloader=None, thumbnailFileName=None, loadFileTypes=None,
                                           loadFiles=None, loadFileProperties={}, checksums=None, loadFileType=None):
            registered.append(dict(category=category, sampleName=sampleName, uris=uris, fileNames=fileNames,
                                   nodeNames=nodeNames, checksums=checksums, loadFileType=loadFileType))

    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=SampleDataLogic))
    monkeypatch.setattr(sample_data, "_registered", False)
    assert sample_data.register_sample_data("icon.png") and sample_data.register_sample_data()
    assert len(registered) == 1  # once, whichever module asks first
    entry = registered[0]
    assert entry["category"] == "MoE-MRI" and entry["loadFileType"] == "VolumeFile"
    assert entry["uris"].startswith("file:") and entry["checksums"].startswith("SHA256:")
    # What Sample Data does with it: fetch the URI into its cache and compare the checksum.
    cached = tmp_path / entry["fileNames"]
    urllib.request.urlretrieve(entry["uris"], cached)
    assert "SHA256:" + hashlib.sha256(cached.read_bytes()).hexdigest() == entry["checksums"]


def test_resources_are_found_in_the_installed_layout(tmp_path):
    # Installed: qt-scripted-modules/{MoEMRILib, moemri, Resources} side by side, as in the source tree.
    installed = tmp_path / "qt-scripted-modules"
    shutil.copytree(REPO / "MoEMRILib", installed / "MoEMRILib", ignore=shutil.ignore_patterns("__pycache__"))
    (installed / "Resources" / "SampleData").mkdir(parents=True)
    (installed / "Resources" / "SampleData" / sample_data.SAMPLE_FILE_NAME).write_bytes(b"")
    spec = importlib.util.spec_from_file_location("installed_sample_data", installed / "MoEMRILib" / "sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.sample_volume_path() == installed / "Resources" / "SampleData" / sample_data.SAMPLE_FILE_NAME
    assert module.weights_dir() == installed / "Resources" / "Weights"
