"""Training patches for the slice-wise denoisers: clean heads made to look like clinical scans, cut
into 2-D patches in all three orientations, Rician noise drawn fresh for every patch.

A `Scene` is one training volume after one simulated acquisition: a bias field, a coarser grid
(1-3 mm voxels, isotropic or thick-slice, by `coarse_copy`: anti-alias blur and linear sampling),
optionally 8-bit quantisation, then the same normalisation inference uses. `PatchSampler` draws
patches from the scenes: a random head voxel, a random slice orientation, the slice and its two
neighbours, random in-plane flips, a random intensity scale, and Rician noise of 0-5 % of the
brightest tissue, stationary or with a coil-like map; 7 % and 9 % are never drawn. The sigma map
the network is given is the true one times a random factor, because at inference it is estimated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..volume import Volume

TRAINING_VOLUMES = ("colin27", "colin27-hr", "pydeface-mean", "robex-atlas")  # never mni152-2009
PATCH = 48  # the paper's patch size, also the gate's
MAX_LEVEL_PERCENT = 5.0
ZERO_NOISE_SHARE = 0.05  # a few noiseless patches teach the network to leave clean images alone
VARYING_SHARE = 0.5
SIGMA_JITTER = 0.12  # log-normal spread of the sigma map given to the network (estimator error)
SCALE_RANGE = (0.75, 1.33)  # intensity scale: a bright fat tail or a dim head moves the normalisation
NOISY_QUANTISE_SHARE = 0.2  # 8-bit export of the noisy scan itself
COIL_MAPS_PER_SCENE = 3
COIL_MAP_SHRINK = 4  # coil maps are smooth: kept at 1/4 resolution and interpolated


@dataclass
class Scene:
    name: str
    clean: np.ndarray  # (z, y, x) float32, normalised as at inference
    mask: np.ndarray  # head mask
    head_voxels: np.ndarray  # flat indices of the mask's voxels
    classes: np.ndarray  # uint8 intensity classes of the segmentation gate (1..4)
    reference: float  # brightest tissue, normalised units: "100 %" of the noise level
    spacing: tuple[float, float, float]  # (x, y, z) mm
    coil_maps: list[np.ndarray]  # mean-1 noise maps at 1/COIL_MAP_SHRINK resolution
    depth: np.ndarray  # mm below the head's surface (0 outside): what the gate reads


@dataclass
class Batch:
    slices: np.ndarray  # (n, 2r + 1, P, P) noisy centre slice between its neighbours, normalised
    sigma: np.ndarray  # (n, 1, P, P) sigma map given to the network (jittered)
    residual: np.ndarray  # (n, 1, P, P) noisy centre - clean centre
    clean: np.ndarray  # (n, 1, P, P)
    classes: np.ndarray  # (n, P, P) uint8 segmentation classes of the centre slice
    tissue: np.ndarray  # (n, P, P) bool head mask of the centre slice
    level_percent: np.ndarray  # (n,) mean noise level drawn
    depth: np.ndarray  # (n, P, P) mm below the head's surface of the centre slice


def load_training_volumes(ids=TRAINING_VOLUMES) -> list[Volume]:
    from ..data.fetch import fetch_volume
    from ..data.sources import source_by_id
    from ..io import read_volume

    volumes = []
    for volume_id in ids:
        if source_by_id(volume_id).role != "train":
            raise ValueError(f"{volume_id} is not a training volume")
        volumes.append(read_volume(fetch_volume(volume_id)))
        object.__setattr__(volumes[-1], "name", volume_id)
    return volumes


def draw_acquisition(native_spacing, rng: np.random.Generator) -> tuple[tuple[float, float, float], int | None, float]:
    """(spacing xyz mm, quantise bits or None, bias strength) of one simulated clinical scan."""
    if rng.random() < 0.5:
        spacing = np.full(3, rng.uniform(1.0, 3.0))
    else:  # thick slices: fine in-plane, coarse across
        spacing = np.full(3, rng.uniform(1.0, 2.0))
        spacing[rng.integers(3)] = rng.uniform(2.0, 3.0)
    spacing = np.maximum(spacing, native_spacing)
    bits = 8 if rng.random() < 0.5 else None
    bias = float(rng.uniform(0.0, 0.4)) if rng.random() < 0.6 else 0.0
    return tuple(float(s) for s in spacing), bits, bias


def make_scene(volume: Volume, spacing, bits, bias: float, rng: np.random.Generator) -> Scene:
    from ..degrade.noise import bias_field, brightest_tissue_intensity, coil_sensitivity_noise_map
    from ..degrade.resolution import coarse_copy
    from ..intensity import normalise
    from ..masks import head_mask
    from ..methods.smoe.anatomy import depth_below_surface
    from ..methods.smoe.gate import segment_classes

    source = volume
    if bias:
        field = bias_field(volume.array.shape, rng, bias, head_mask(volume.array))
        source = volume.with_array(volume.array * field)
    same_grid = np.allclose(spacing, volume.spacing, atol=1e-3)
    scan = source if same_grid and bits is None else coarse_copy(source, spacing, quantise_bits=bits)
    mask = head_mask(scan.array)
    clean, _ = normalise(scan.array, mask)
    classes, _ = segment_classes(clean, mask)
    small = tuple(max(2, n // COIL_MAP_SHRINK) for n in clean.shape)
    small_mask = ndimage.zoom(mask.astype(np.float32), np.array(small) / np.array(mask.shape), order=1) > 0.5
    small_mask = small_mask if small_mask.any() else None
    coil_maps = [coil_sensitivity_noise_map(small, rng, mask=small_mask) for _ in range(COIL_MAPS_PER_SCENE)]
    name = f"{volume.name} {'x'.join(f'{s:.1f}' for s in spacing)} mm{' 8-bit' if bits else ''}{f' bias {bias:.2f}' if bias else ''}"
    return Scene(
        name=name,
        clean=clean,
        mask=mask,
        head_voxels=np.flatnonzero(mask),
        classes=classes,
        reference=brightest_tissue_intensity(clean, mask),
        spacing=scan.spacing,
        coil_maps=coil_maps,
        depth=depth_below_surface(mask, scan.spacing),
    )


def make_scenes(volumes: list[Volume], per_volume: int, rng: np.random.Generator, log=print) -> list[Scene]:
    """`per_volume` scenes of each volume: the first at the volume's own grid (1 mm for the 0.5 mm
    colin27-hr), the rest drawn by `draw_acquisition`."""
    scenes = []
    for volume in volumes:
        for index in range(per_volume):
            native = np.asarray(volume.spacing)
            if index == 0:
                spacing, bits, bias = tuple(float(s) for s in np.maximum(native, 1.0)), None, 0.0
            else:
                spacing, bits, bias = draw_acquisition(native, rng)
            scene = make_scene(volume, spacing, bits, bias, rng)
            log(f"scene {scene.name}: {scene.clean.shape[::-1]} voxels, {scene.head_voxels.size} in the head")
            scenes.append(scene)
    return scenes


class PatchSampler:
    def __init__(self, scenes: list[Scene], rng: np.random.Generator, patch: int = PATCH, levels=(0.0, MAX_LEVEL_PERCENT), slice_radius: int = 1):
        self.scenes, self.rng, self.patch, self.levels, self.radius = scenes, rng, patch, levels, slice_radius

    def batch(self, n: int) -> Batch:
        items = [self.sample() for _ in range(n)]
        return Batch(*(np.stack([item[k] for item in items]) for k in range(8)))

    def sample(self):
        rng, p = self.rng, self.patch
        scene = self.scenes[rng.integers(len(self.scenes))]
        shape = scene.clean.shape
        flat = scene.head_voxels[rng.integers(scene.head_voxels.size)] if rng.random() < 0.9 else rng.integers(scene.clean.size)
        centre = np.unravel_index(flat, shape)
        spacing_zyx = np.asarray(scene.spacing)[::-1]
        if spacing_zyx.max() / spacing_zyx.min() > 1.3 and rng.random() < 0.5:
            axis = int(np.argmax(spacing_zyx))  # the plane inference uses for thick-slice scans
        else:
            axis = int(rng.integers(3))
        in_plane = [a for a in range(3) if a != axis]
        r = self.radius
        neighbours = centre[axis] + np.arange(-r, r + 1)
        neighbours = _reflect(neighbours, shape[axis])
        windows = []
        for a in in_plane:
            start = int(np.clip(centre[a] - rng.integers(p), 0, max(shape[a] - p, 0)))
            windows.append(np.arange(start, start + p))
        index = [None, None, None]
        index[axis] = neighbours[:, None, None]
        index[in_plane[0]] = np.minimum(windows[0], shape[in_plane[0]] - 1)[None, :, None]
        index[in_plane[1]] = np.minimum(windows[1], shape[in_plane[1]] - 1)[None, None, :]
        index = tuple(index)
        outside = (windows[0] >= shape[in_plane[0]])[:, None] | (windows[1] >= shape[in_plane[1]])[None, :]
        clean = np.where(outside, 0.0, scene.clean[index]).astype(np.float32)  # (3, p, p); air beyond the edge
        classes = np.where(outside, 1, scene.classes[index][r]).astype(np.uint8)
        tissue = ~outside & scene.mask[index][r]
        depth = np.where(outside, 0.0, scene.depth[index][r]).astype(np.float32)

        level = 0.0 if rng.random() < ZERO_NOISE_SHARE else rng.uniform(*self.levels)
        sigma = np.full(clean.shape, level / 100.0 * scene.reference, np.float32)
        if rng.random() < VARYING_SHARE:
            coil = scene.coil_maps[rng.integers(len(scene.coil_maps))]
            coords = np.meshgrid(*[np.asarray(i).ravel() for i in index], indexing="ij")
            coords = [c.reshape(clean.shape) * (m - 1) / max(n - 1, 1) for c, m, n in zip(_order(coords, axis, in_plane), coil.shape, shape)]
            sigma = sigma * ndimage.map_coordinates(coil, coords, order=1, mode="nearest").astype(np.float32)
        scale = np.exp(rng.uniform(*np.log(SCALE_RANGE)))
        clean, sigma = clean * scale, sigma * scale
        real = clean + sigma * rng.standard_normal(clean.shape, dtype=np.float32)
        imaginary = sigma * rng.standard_normal(clean.shape, dtype=np.float32)
        noisy = np.hypot(real, imaginary)
        if rng.random() < NOISY_QUANTISE_SHARE:
            step = rng.uniform(1.0, 1.6) / 255.0 * scale
            noisy = np.round(noisy / step) * step
        given = sigma[r : r + 1] * np.float32(np.exp(rng.normal(0.0, SIGMA_JITTER)))

        # In-plane flips and transposition, and which neighbour is "below".
        if rng.random() < 0.5:
            noisy, clean, given, classes, tissue, depth = (x[..., ::-1, :] for x in (noisy, clean, given, classes, tissue, depth))
        if rng.random() < 0.5:
            noisy, clean, given, classes, tissue, depth = (x[..., :, ::-1] for x in (noisy, clean, given, classes, tissue, depth))
        if rng.random() < 0.5:
            noisy, clean, given, classes, tissue, depth = (np.swapaxes(x, -1, -2) for x in (noisy, clean, given, classes, tissue, depth))
        if rng.random() < 0.5:
            noisy = noisy[::-1]
        noisy = np.ascontiguousarray(noisy, dtype=np.float32)
        centre_clean = np.ascontiguousarray(clean[r : r + 1], dtype=np.float32)
        return (
            noisy,
            np.ascontiguousarray(given, dtype=np.float32),
            noisy[r : r + 1] - centre_clean,
            centre_clean,
            np.ascontiguousarray(classes),
            np.ascontiguousarray(tissue),
            np.float32(level),
            np.ascontiguousarray(depth),
        )


def _reflect(indices: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(indices)
    indices = np.where(indices < 0, -indices, indices)
    return np.where(indices >= n, 2 * (n - 1) - indices, indices)


def _order(coords, axis, in_plane):
    """meshgrid over (slice axis, in-plane 0, in-plane 1) -> coordinates in (z, y, x) order."""
    by_axis = {axis: coords[0], in_plane[0]: coords[1], in_plane[1]: coords[2]}
    return [by_axis[a] for a in range(3)]
