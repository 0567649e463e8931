"""Slicer-side helpers shared by the MoEDenoise and MoESuperRes modules.

The modules' own files only declare the module, its parameter node, its task-specific controls
and self-test, over the shared bases of module_widget and self_test. One job per file:
- volume_nodes: volume node <-> moemri Volume (geometry bit for bit), and the input refusals;
- processing_logic: prepare -> run (in-process or background) -> finish, writing the result nodes;
- expert_overlay, expert_probabilities: the expert map as a named label map, and the gate's
  per-expert probability maps as coloured scalar volumes;
- result_volumes: a result's per-expert difference maps and further label maps (N-SMoE's kernel
  orientation), attached to the output node and refilled by a rerun;
- compare_views: side-by-side linked views, fade, overlays;
- sample_data, dependencies: the demo head in Sample Data; packages installed on the user's consent
  (in the background, keeping Slicer's numpy/SciPy/SimpleITK/VTK), and what a stock Slicer runs;
- slicer_version: the oldest Slicer the modules run in (5.8);
- module_widget (needs the application): the widget and logic both modules subclass;
- module_panel, option_widgets, result_views (need qt): the panel both modules show;
- self_test: the in-Slicer checks both modules' self-tests run (`MoEModuleTest`).

Everything but module_widget, the three qt files and self_test imports no qt, so the tests run it on the MRML of
PyPI's `slicer-core` in a plain Python.

What needs no Slicer lives in the core, which imports nothing from here: what the pickers offer
and the method options (`moemri.methods.choices`, `moemri.methods.options`), the background
process, its protocol and Cancel (`moemri.background`), the per-expert probability volumes
(`moemri.methods.expert_probabilities`) and the crop (`moemri.volume.crop_volume`). The web demo
(`MoEWeb/`) is a front end beside the two modules and uses these helpers too.

Hook for method authors: a method object may define `describe_selection(volume) -> str`; the
panel shows its text (e.g. REMIx: which expert the input's slice spacing selects) as soon as the
input or the method changes, before Apply. See moemri.methods.choices.
"""
