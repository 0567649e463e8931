"""The input volume of a demo run: the sample head or a file, the demo crop, and the optional
degradation that gives a clean image something to repair (Rician noise for denoising, thick
slices for super-resolution). Plain numpy and Volumes, so the page can build it off the event
loop; `write_input_node` puts it into the scene.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MoEMRILib.volume_nodes import update_node_from_volume
from moemri.io import read_volume
from moemri.volume import Volume, crop_volume

# The demo crop: every other voxel of a central box of at most this many voxels (x, y, z), e.g.
# 88 x 96 x 64 voxels of 2 mm from the 1 mm sample: real anatomy, quick on a laptop's CPU.
CROP_BOX_XYZ = (176, 192, 128)
CROP_STEP = 2
DEMO_SEED = 0  # the same noise every time: a class sees what the teacher saw
MAX_NOISE_PERCENT = 20.0
MAX_SLICE_FACTOR = 7


@dataclass(frozen=True)
class InputRecipe:
    """How the input is made; two equal recipes give the same voxels."""

    path: str
    crop: bool = False
    task: str = "denoise"
    noise_percent: float = 0.0  # denoising: Rician noise added first (% of the brightest tissue)
    slice_factor: int = 1  # super-resolution: thick slices, each averaging this many along z

    def describe(self) -> str:
        name = Path(self.path).name
        parts = [name + (" (demo crop)" if self.crop else "")]
        if self.task == "denoise" and self.noise_percent > 0:
            parts.append(f"+ {self.noise_percent:g} % Rician noise")
        if self.task == "superres" and self.slice_factor > 1:
            parts.append(f"as {self.slice_factor}x thicker slices")
        return " ".join(parts)


@dataclass(frozen=True)
class PreparedInput:
    volume: Volume  # what the method gets
    source_spacing: tuple[float, float, float]  # before any degradation: the super-resolution target
    description: str


@functools.lru_cache(maxsize=2)
def _source(path: str, crop: bool) -> Volume:
    volume = read_volume(path)
    return demo_crop(volume) if crop else volume


def demo_crop(volume: Volume) -> Volume:
    """Every `CROP_STEP`-th voxel of the central box of at most `CROP_BOX_XYZ` voxels."""
    size = np.asarray(volume.size_xyz)
    box = np.minimum(size, CROP_BOX_XYZ)
    start = (size - box) // 2
    return crop_volume(volume, start, start + box, CROP_STEP)


def prepare_input(recipe: InputRecipe) -> PreparedInput:
    """Read (cached), crop and degrade as the recipe says. Raises moemri errors with the user's words."""
    source = _source(str(recipe.path), recipe.crop)
    volume = source
    if recipe.task == "denoise" and recipe.noise_percent > 0:
        from moemri.degrade.noise import add_rician

        volume, _ = add_rician(source, min(float(recipe.noise_percent), MAX_NOISE_PERCENT), DEMO_SEED)
    elif recipe.task == "superres" and recipe.slice_factor > 1:
        from moemri.degrade.resolution import thick_slices

        volume = thick_slices(source, min(int(recipe.slice_factor), MAX_SLICE_FACTOR), axis="z")
    name = Path(recipe.path).name.split(".")[0]
    return PreparedInput(volume.with_array(volume.array, name=name), tuple(source.spacing), recipe.describe())


def write_input_node(scene, volume: Volume, node=None, name: str = "input"):
    """The input as a scalar volume node (reused when given), with a display node."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    else:
        node.SetName(name)
    update_node_from_volume(node, volume)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node
