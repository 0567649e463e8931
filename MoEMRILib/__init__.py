"""Slicer-side helpers shared by the MoEDenoise and MoESuperRes modules.

The modules' own files only declare the module, its parameter node and self-test, and mount the
shared panel. One job per file:
- volume_nodes: volume node <-> moemri Volume (geometry bit for bit), and the input refusals;
- method_choices: what the pickers offer, from the registry; the `describe_selection` hook;
- method_options: the method options shown as generic controls, kept as JSON in the parameter node;
- processing_logic: prepare -> run (in-process or background) -> finish, writing the result nodes;
- process_runner, worker, worker_protocol: the background process (a JSON-lines protocol, polled
  without threads) and Cancel;
- expert_overlay, expert_probabilities: the expert map as a named label map, and the gate's
  per-expert probability maps as coloured scalar volumes;
- compare_views: side-by-side linked views, fade, overlays;
- sample_data, dependencies: the demo head in Sample Data; packages installed on the user's consent;
- module_panel, option_widgets, result_views (need qt): the panel both modules show;
- self_test: the in-Slicer checks both modules' self-tests run.

Everything but the three qt files and self_test imports no qt, so the tests run it on the MRML of
PyPI's `slicer-core` in a plain Python.

Hook for method authors: a method object may define `describe_selection(volume) -> str`; the
panel shows its text (e.g. REMIx: which expert the input's slice spacing selects) as soon as the
input or the method changes, before Apply. See method_choices.
"""
