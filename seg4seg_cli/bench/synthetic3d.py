"""Synthetic 3-D cases for the 3-D sample (`sample_data/build_3d.py`): anisotropic CT/MR-like volumes.

One case is an int16 volume with a label of two classes: 1 an organ (a bright ellipsoid with its own
texture) and 2 a lesion inside it (a darker sphere, cut to the organ). Volumes cover one field of
view (40 x 44.8 x 44.8 mm) at a spacing drawn per case around 2.5 x 0.8 x 0.8 mm (z, y, x), so their
shapes differ and nnU-Net resamples most of them to its target spacing before the sliding window.

`artefact=True` adds what the planted subgroup carries: a second bright ellipsoid, with the organ's
intensity and texture, 2-4 mm from the organ (never touching it). A model trained without it takes
it for organ, and the organ's Dice drops.

Everything is drawn from the `numpy.random.Generator` passed in, so a seed fixes every case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

FIELD_OF_VIEW_MM = (40.0, 44.8, 44.8)  # z, y, x
Z_SPACINGS_MM = (2.0, 2.5, 2.5, 3.0)  # 2.5 mm most often: the median nnU-Net targets
XY_SPACINGS_MM = (0.7, 0.8, 0.9)
ORGAN_SEMI_AXES_MM = ((8.0, 13.0), (7.0, 12.0))  # z range, in-plane range
LESION_RADIUS_MM = (3.5, 5.5)
ARTEFACT_SEMI_AXES_MM = ((6.0, 11.0), (5.0, 9.0))
FILE_ENDING = ".nii.gz"


def draw_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    """A (z, y, x) spacing in mm: slice thickness and in-plane pixel size drawn independently."""
    xy = float(rng.choice(XY_SPACINGS_MM))
    return float(rng.choice(Z_SPACINGS_MM)), xy, xy


def _grid(spacing: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates in mm, shape (nz, ny, nx) each."""
    shape = [int(round(f / s)) for f, s in zip(FIELD_OF_VIEW_MM, spacing, strict=True)]
    axes = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)]
    return np.meshgrid(*axes, indexing="ij")


def _ellipsoid(grid, center, semi_axes, angle: float) -> np.ndarray:
    """Ellipsoid mask; `semi_axes` (z, u, v) in mm, rotated by `angle` in the axial plane."""
    dz, dy, dx = (g - c for g, c in zip(grid, center, strict=True))
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (dz / semi_axes[0]) ** 2 + (u / semi_axes[1]) ** 2 + (v / semi_axes[2]) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, shape, sigma_mm: float, spacing) -> np.ndarray:
    sigma = [sigma_mm / s for s in spacing]
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / field.std()


def _organ(rng: np.random.Generator, grid) -> tuple[np.ndarray, tuple, tuple]:
    z_range, xy_range = ORGAN_SEMI_AXES_MM
    semi = (rng.uniform(*z_range), rng.uniform(*xy_range), rng.uniform(*xy_range))
    reach = max(semi[1:]) + 3.0
    center = (
        rng.uniform(semi[0] + 3.0, FIELD_OF_VIEW_MM[0] - semi[0] - 3.0),
        rng.uniform(reach, FIELD_OF_VIEW_MM[1] - reach),
        rng.uniform(reach, FIELD_OF_VIEW_MM[2] - reach),
    )
    return _ellipsoid(grid, center, semi, rng.uniform(0, np.pi)), center, semi


def _lesion(rng: np.random.Generator, grid, organ: np.ndarray, center, semi) -> np.ndarray:
    radius = rng.uniform(*LESION_RADIUS_MM)
    offset = [rng.uniform(-0.35, 0.35) * a for a in semi]
    lesion_center = [c + o for c, o in zip(center, offset, strict=True)]
    sphere = _ellipsoid(grid, lesion_center, (radius, radius, radius), 0.0)
    return sphere & organ


def _adjacent_artefact(rng: np.random.Generator, grid, organ: np.ndarray, spacing, center):
    """An ellipsoid 2-4 mm from the organ, inside the field of view, or None when none fits."""
    distance = ndimage.distance_transform_edt(~organ, sampling=spacing)
    z_range, xy_range = ARTEFACT_SEMI_AXES_MM
    for _ in range(50):
        semi = (rng.uniform(*z_range), rng.uniform(*xy_range), rng.uniform(*xy_range))
        angle, direction, gap = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(2, 4)
        reach = max(semi[1:]) + 1.5
        for step in np.arange(1.0, FIELD_OF_VIEW_MM[1], 0.5):
            where = (
                center[0],
                center[1] + step * np.sin(direction),
                center[2] + step * np.cos(direction),
            )
            inside = all(
                reach <= w <= f - reach
                for w, f in zip(where[1:], FIELD_OF_VIEW_MM[1:], strict=True)
            )
            if not inside:
                break
            mask = _ellipsoid(grid, where, semi, angle)
            if mask.any() and distance[mask].min() >= gap:
                return mask
    return None


def make_volume(
    rng: np.random.Generator, spacing: tuple[float, float, float], artefact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One volume (int16, z-y-x) and its label (uint8: 0 background, 1 organ, 2 lesion)."""
    grid = _grid(spacing)
    while True:
        organ, center, semi = _organ(rng, grid)
        extra = _adjacent_artefact(rng, grid, organ, spacing, center) if artefact else None
        if extra is not None or not artefact:
            break
    lesion = _lesion(rng, grid, organ, center, semi)
    shape = organ.shape
    image = (
        400.0
        + 40.0 * _smooth_noise(rng, shape, 8.0, spacing)
        + 25.0 * _smooth_noise(rng, shape, 1.2, spacing)
        + 12.0 * rng.standard_normal(shape)
    )
    edge_sigma = [0.5 / s for s in spacing]
    for mask in [organ] if extra is None else [organ, extra]:
        contrast = rng.uniform(140.0, 200.0)
        texture = 1.0 + 0.12 * _smooth_noise(rng, shape, 0.8, spacing)
        image += contrast * texture * ndimage.gaussian_filter(mask.astype(float), edge_sigma)
    image -= rng.uniform(150.0, 210.0) * ndimage.gaussian_filter(lesion.astype(float), edge_sigma)
    label = organ.astype(np.uint8)
    label[lesion] = 2
    return np.round(image).astype(np.int16), label


def write_volume(array: np.ndarray, path: Path, spacing: tuple[float, float, float]) -> None:
    """Write a z-y-x array as NIfTI with spacing (z, y, x) mm (SimpleITK takes x, y, z)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(image, str(path), useCompression=True)
