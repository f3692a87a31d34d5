"""Real anatomy for `seg4seg bench`: 2-D brain MR cases with a real white-matter segmentation.

The image and its segmentation come from the MNI ICBM152 2009a symmetric template (T1 and tissue
probability maps), which the `nilearn` package ships inside its wheel, so nothing is downloaded.
A case is an axial slab of 3 slices (3 mm), rotated in-plane, downsampled to 3 mm pixels,
cropped to 64x64 at a random offset and mirrored at random, with a bias field, a linear intensity
change and noise drawn per case. The label is white matter (probability > 0.5 after the same
transforms). nnU-Net normalises MR images per case (z-score), so a shift the model fails on has to
change the image non-linearly: `BrainLook.gm_wm_contrast` moves grey matter towards white matter
(another sequence), `bias` sets the strength of the smooth multiplicative bias field (another coil).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from seg4seg_cli.errors import UsageError

SIZE = 64
FACTOR = 3  # 1 mm template voxels -> 3 mm pixels
SPACING = (3.0, 3.0)
FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass(frozen=True)
class BrainLook:
    """How one brain case departs from a plain one (all defaults: plain)."""

    gm_wm_contrast: float = (
        1.0  # 1: the template's grey/white contrast; 0.3: grey matter near white
    )
    bias: float = 0.08  # amplitude of the multiplicative bias field
    noise: float = 0.03  # white noise, as a share of white matter's intensity
    levels: tuple[float, float] = (0.35, 0.8)  # axial range, as a share of the brain's height


def data_folder() -> Path:
    """Where nilearn keeps the template files, without importing nilearn (slow)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the brain scenario needs the nilearn package, whose wheel ships the MNI152 template: "
            "pip install 'seg4seg[bench]' (or nilearn)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"nilearn at {folder} lacks {', '.join(missing)}; reinstall nilearn")
    return folder


@functools.lru_cache(maxsize=1)
def template() -> dict[str, np.ndarray]:
    """T1, grey and white matter maps as float32 arrays `(z, y, x)` at 1 mm."""
    folder = data_folder()
    volumes = {
        key: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name))).astype(np.float32)
        for key, name in FILES.items()
    }
    for key in ("gm", "wm"):  # stored as 0-255 in the template files: probabilities in [0, 1]
        volumes[key] /= max(float(volumes[key].max()), 1e-6)
    wm_area = (volumes["wm"] > 0.5).sum(axis=(1, 2))
    brain = np.flatnonzero(wm_area > 0)
    volumes["z_range"] = np.array([brain[0], brain[-1]])
    return volumes


def _slab(volume: np.ndarray, z: int) -> np.ndarray:
    return volume[z - 1 : z + 2].mean(axis=0)


def _downsample(plane: np.ndarray) -> np.ndarray:
    h, w = (s // FACTOR * FACTOR for s in plane.shape)
    return plane[:h, :w].reshape(h // FACTOR, FACTOR, w // FACTOR, FACTOR).mean(axis=(1, 3))


def _crop(plane: np.ndarray, top: int, left: int) -> np.ndarray:
    padded = np.pad(plane, SIZE, mode="constant")
    return padded[SIZE + top : 2 * SIZE + top, SIZE + left : 2 * SIZE + left]


def make_case(
    rng: np.random.Generator, look: BrainLook = BrainLook()
) -> tuple[np.ndarray, np.ndarray]:
    """One 64x64 int16 image and its uint8 white-matter label."""
    volumes = template()
    z0, z1 = volumes["z_range"]
    z = int(round(z0 + rng.uniform(*look.levels) * (z1 - z0)))
    angle = rng.uniform(-12.0, 12.0)
    planes = {}
    for key in ("t1", "gm", "wm"):
        plane = ndimage.rotate(_slab(volumes[key], z), angle, reshape=False, order=1)
        planes[key] = _downsample(plane)
    h, w = planes["t1"].shape
    top = (h - SIZE) // 2 + int(rng.integers(-3, 4))
    left = (w - SIZE) // 2 + int(rng.integers(-3, 4))
    flip = rng.random() < 0.5
    for key in planes:
        planes[key] = _crop(planes[key], top, left)
        if flip:
            planes[key] = planes[key][:, ::-1]

    t1, gm, wm = planes["t1"], planes["gm"], planes["wm"]
    wm_level = float(np.median(t1[wm > 0.5])) if (wm > 0.5).any() else float(t1.max())
    gm_level = float(np.median(t1[gm > 0.5])) if (gm > 0.5).any() else 0.5 * wm_level
    # grey matter moved towards white matter by (1 - contrast), weighted by its probability
    image = t1 + (1.0 - look.gm_wm_contrast) * (wm_level - gm_level) * np.clip(gm, 0, 1)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    a, b, c = rng.uniform(-1, 1, 3)
    field = 1.0 + look.bias * np.tanh(a * (yy - 0.5) * 3 + b * (xx - 0.5) * 3 + c * 0.5)
    image = image * field
    image = image + look.noise * wm_level * rng.standard_normal(image.shape)
    scale, offset = rng.uniform(8.0, 12.0), rng.uniform(0.0, 100.0)
    image = image * scale + offset
    label = (wm > 0.5).astype(np.uint8)
    return np.round(image).astype(np.int16), label


def write_nifti(array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(path), useCompression=True)
