"""`moemri-web`: the methods in a browser, for teaching and for people without 3D Slicer.

A trame-slicer page (Kitware's trame with the MRML of PyPI's `slicer-core`, rendered offscreen)
that loads the shipped sample head or a file, optionally degrades it so a demo shows something
(Rician noise for denoising, thick slices for super-resolution), runs any registry method in a
background process with progress and Cancel, and shows input | result in two linked slice views
with a fade, the expert map as a label layer with its legend, and axial/coronal/sagittal.

A front end beside the two Slicer modules: it imports the core (method choices and options, the
background run, the crop) and the Slicer-side helpers of MoEMRILib (processing logic, expert
overlay, compare views, sample head), which run on the MRML of `slicer-core`; neither the core
nor the Slicer modules import it. It needs the optional extra: `pip install -e '.[web]'`.

One job per file:
- setup: the optional packages, offscreen rendering, the sample head;
- plugins: methods registered from outside moemri (`MOEMRI_WEB_EXTRA_METHODS=module:attr`);
- choices: the pickers' items and the method options as plain data (no trame);
- inputs: the input volume: sample or file, the demo crop, the demo degradations, its node;
- views: the two linked slice views of trame-slicer, orientation, slice offsets;
- layers: which volume each view shows, fade, the expert label layer and its legend;
- run_control: a background run polled from the trame event loop, and Cancel;
- ui: the page;
- app: the application object that ties them together, and `main(argv)`.
"""
