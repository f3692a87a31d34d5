"""Synthetic 2-D cases for the sample data and the discovery benchmark.

One case is a 64x64 int16 image with 0.8 mm pixels and a uint8 label (0 background, 1 structure).
Background: a slowly varying bias field, a mid-frequency "tissue" texture and white noise.
Structure: a rotated ellipse of random size and position, brighter than the background, with its
own fine texture and a slightly blurred edge. `Look` changes what a case looks like (an adjacent
artefact, inverted contrast, another acquisition, a brighter structure, a smaller one); the label
is always the structure itself unless a scenario dilates it on purpose (annotation bias).

Everything is drawn from the `numpy.random.Generator` passed in, so a seed fixes every case.
`sample_data/build.py` and `seg4seg bench` both build their data here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

SIZE = 64  # image side length in pixels
SPACING = (0.8, 0.8)  # mm, identical for images and labels
FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class Look:
    """How one case departs from the plain case (all defaults: a plain case)."""

    artefact: bool = False  # a structure-like bright ellipse next to (never touching) it
    artefact_axes: tuple[float, float] = (6.5, 12.0)  # range of the artefact's semi-axes in pixels
    inverted: bool = False  # structure darker than the background instead of brighter
    noise_sd: float = 12.0  # white noise
    blur_sigma: float = 0.0  # in pixels, applied to the whole image after the noise
    contrast: tuple[float, float] = (140.0, 200.0)  # structure brightness above background
    axes: tuple[float, float] = (7.0, 13.0)  # range of the ellipse's semi-axes in pixels
    dilate_label: int = 0  # annotation bias: label dilated by this many pixels
    erode_label: int = 0  # annotation bias: label eroded by this many pixels
    stripes: bool = False  # the structure's texture is striped (period 4 px) instead of smooth
    downsample: int = 1  # acquired at this many times coarser resolution (block means, upsampled)


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma, mode="wrap")
    return field / field.std()


def ellipse(center: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    """Boolean mask of a rotated ellipse (centre in pixels, semi-axes in pixels, angle in rad)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    dy, dx = yy - center[0], xx - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def random_ellipse(
    rng: np.random.Generator, axis_range: tuple[float, float], margin: float
) -> np.ndarray:
    """A random ellipse fully inside the image, at least `margin` pixels from the border."""
    axes = (rng.uniform(*axis_range), rng.uniform(*axis_range))
    reach = max(axes) + margin
    center = (rng.uniform(reach, SIZE - 1 - reach), rng.uniform(reach, SIZE - 1 - reach))
    return ellipse(center, axes, rng.uniform(0, np.pi))


def adjacent_artefact(
    rng: np.random.Generator, structure: np.ndarray, axis_range: tuple[float, float] = (6.5, 12.0)
) -> np.ndarray | None:
    """An ellipse at least 2-4 pixels (random) from `structure`, or None if none fits."""
    distance_to_structure = ndimage.distance_transform_edt(~structure)
    cy, cx = np.argwhere(structure).mean(axis=0)
    for _ in range(50):
        axes = (rng.uniform(*axis_range), rng.uniform(*axis_range))
        angle = rng.uniform(0, np.pi)
        direction = rng.uniform(0, 2 * np.pi)
        gap = rng.uniform(2.0, 4.0)
        # walk outwards from the structure's centre until the artefact keeps the desired gap
        for step in np.arange(1.0, SIZE, 0.5):
            center = (cy + step * np.sin(direction), cx + step * np.cos(direction))
            reach = max(axes) + 2
            if not (
                reach <= center[0] <= SIZE - 1 - reach and reach <= center[1] <= SIZE - 1 - reach
            ):
                break
            mask = ellipse(center, axes, angle)
            if distance_to_structure[mask].min() >= gap:
                return mask
    return None


def make_case(rng: np.random.Generator, look: Look = Look()) -> tuple[np.ndarray, np.ndarray]:
    """One 64x64 image (int16) and its label (uint8) with the given look."""
    while True:
        structure = random_ellipse(rng, axis_range=look.axes, margin=3.0)
        artefact = adjacent_artefact(rng, structure, look.artefact_axes) if look.artefact else None
        if artefact is not None or not look.artefact:
            break

    image = (
        400.0
        + 40.0 * smooth_noise(rng, 10.0)
        + 25.0 * smooth_noise(rng, 1.5)
        + look.noise_sd * rng.standard_normal((SIZE, SIZE))
    )
    bright = [structure] if artefact is None else [structure, artefact]
    sign = -1.0 if look.inverted else 1.0
    for mask in bright:
        contrast = rng.uniform(*look.contrast)
        texture = 1.0 + 0.12 * smooth_noise(rng, 1.0)
        if look.stripes and mask is structure:
            texture = texture + 0.45 * _stripes(rng.uniform(0, np.pi))
        image += sign * contrast * texture * ndimage.gaussian_filter(mask.astype(float), 0.6)
    if look.downsample > 1:
        f = look.downsample
        coarse = image.reshape(SIZE // f, f, SIZE // f, f).mean(axis=(1, 3))
        image = np.repeat(np.repeat(coarse, f, axis=0), f, axis=1)
    if look.blur_sigma > 0:
        image = ndimage.gaussian_filter(image, look.blur_sigma)
    label = structure
    if look.dilate_label > 0:
        label = ndimage.binary_dilation(structure, _disk(look.dilate_label))
    if look.erode_label > 0:
        label = ndimage.binary_erosion(structure, _disk(look.erode_label))
    return np.round(image).astype(np.int16), label.astype(np.uint8)


def _stripes(angle: float) -> np.ndarray:
    """Unit-amplitude stripes of period 4 pixels at `angle`."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    return np.sin(2 * np.pi / 4.0 * (xx * np.cos(angle) + yy * np.sin(angle)))


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return yy**2 + xx**2 <= radius**2


def write_nifti(array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(path), useCompression=True)
