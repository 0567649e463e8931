"""Slicer-side helpers shared by the MoEDenoise and MoESuperRes modules.

Everything here works on MRML nodes and the `moemri` core, with no qt import at module load, so
the tests can run it on the MRML of PyPI's `slicer-core` in a plain Python. The modules' own files
only declare the module, bind the panel and call into this package.
"""
