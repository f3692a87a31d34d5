"""`seg4seg features` per-case cost against metric libraries, side by side in one process.

Two synthetic cases are written (fixed seed) as .nii.gz with SimpleITK into a temporary folder:
- `ct`: SimpleITK size 512x512x200, spacing 0.8x0.8x2.5 mm, an int16 CT-like image (air, body,
  spine, noise), a binary organ-like reference (rough ellipsoid with a notch and a small detached
  piece) and a prediction that is shifted, dilated and re-roughened, has four false-positive blobs,
  two bites taken out of it and misses the detached piece;
- `multi`: 128^3, spacing 1x1x1.25 mm, five foreground labels (two touching organs, a lesion inside
  one, a tube, three small nodes), a prediction perturbed per label (shifts, dilation/erosion,
  extra and missed components, a broken tube).

Timed for each case, in rounds (each implementation once per round, so drift hits all alike),
median of `--runs` rounds after one untimed warm-up of every implementation on a tiny case:
- read: `sitk.ReadImage` + `GetArrayViewFromImage` of the image, reference and prediction files
  (and, as a second row, of the two label files only: what a library pipeline would have to read);
- ours, full: `features_for_case` (reads the three files itself, checks geometry and labels,
  computes every metric and the image features);
- ours, core: `metrics.case_metrics` on the label arrays already in memory;
- surface-distance (DeepMind, 0.1), MONAI, medpy: on the label arrays already in memory (their
  time excludes reading), per label: Dice + HD95 + ASSD + NSD (medpy: no NSD), plus the rest of our
  metric set computed the usual way next to them: IoU, volumes and FP/FN volumes with numpy, and
  connected components (26-connected, missed/extra) with `scipy.ndimage.label`. The "numpy volumes
  + scipy components" row times that shared part alone.
MetricsReloaded is not on PyPI (it installs from its git repository only), so it is not measured;
the script checks with `pip index versions` and says so in its output.

Peak memory: every implementation is also run once in a fresh child process (this script with
`--child`). After its imports and, for in-memory implementations, loading the two label arrays,
the child notes its RSS, resets its high-water mark (`/proc/self/clear_refs`), runs the call and
reports VmHWM: the peak RSS during the call, and its rise over the RSS at the call's start.
(`getrusage(...).ru_maxrss` is not used: Linux carries a parent's high-water mark over
fork+exec, so a child of a 700 MiB parent reports at least 700 MiB.)

Run: `.venv/bin/python benchmarks/bench_features.py [--runs 3] [--profile]`.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SEED = 20261129
NSD_TOL_MM = 1.0
COMPARED = ("dice", "iou", "hd95_mm", "assd_mm", "nsd")
COUNTED = ("n_comp_ref", "n_comp_pred", "n_comp_missed", "n_comp_extra")

# ----------------------------------------------------------------------------- synthetic cases


def smooth_field(
    rng: np.random.Generator, n: int = 6, wavelengths_mm: tuple[float, float] = (30.0, 90.0)
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random function of mm offsets (sum of `n` plane waves), values in [-1, 1]."""
    directions = rng.normal(size=(n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    k = directions * (2 * np.pi / rng.uniform(*wavelengths_mm, n))[:, None]
    phases = rng.uniform(0, 2 * np.pi, n)
    amplitudes = rng.uniform(0.5, 1.0, n)
    amplitudes /= amplitudes.sum()

    def field(dz: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        total = np.zeros(np.broadcast_shapes(dz.shape, dy.shape, dx.shape), np.float32)
        for a, (kz, ky, kx), phase in zip(amplitudes, k, phases, strict=True):
            total += np.float32(a) * np.sin(kz * dz + ky * dy + kx * dx + phase, dtype=np.float32)
        return total

    return field


def paint(
    labelmap: np.ndarray,
    spacing: tuple[float, float, float],
    value: int,
    centre_mm: tuple[float, float, float],
    radii_mm: tuple[float, float, float],
    rough: tuple = (),
    grow_mm: float = 0.0,
    only: int | None = None,
) -> None:
    """Set a rough ellipsoid to `value` in place (only over voxels equal to `only`, if given).

    `rough` holds (field, amplitude) pairs; fields take offsets from the centre in mm, so painting
    the same fields at a moved centre moves the same shape. `grow_mm` dilates (or erodes) it.
    """
    centre, radii, sp = (np.asarray(v, np.float64) for v in (centre_mm, radii_mm, spacing))
    reach = radii * (1 + sum(a for _, a in rough)) + abs(grow_mm) + 2 * sp
    lo = np.maximum(np.floor((centre - reach) / sp).astype(int), 0)
    hi = np.minimum(np.ceil((centre + reach) / sp).astype(int) + 1, labelmap.shape)
    if np.any(hi <= lo):
        return
    offsets = [
        (np.arange(lo[a], hi[a]) * sp[a] - centre[a])
        .astype(np.float32)
        .reshape([-1 if b == a else 1 for b in range(3)])
        for a in range(3)
    ]
    q = np.sqrt(sum((o / np.float32(r)) ** 2 for o, r in zip(offsets, radii, strict=True)))
    f = q - 1
    for field, amplitude in rough:
        f += np.float32(amplitude) * field(*offsets)
    inside = f * np.float32(radii.min()) < grow_mm
    box = labelmap[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))]
    if only is not None:
        inside &= box == only
    box[inside] = value


def noisy_image(
    shape: tuple[int, int, int], base: np.ndarray, noise_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """int16 image: `base` (float HU, of `shape`) plus Gaussian noise, slab by slab."""
    image = np.empty(shape, np.int16)
    for z in range(0, shape[0], 16):
        slab = base[z : z + 16]
        noise = rng.standard_normal(slab.shape, dtype=np.float32) * np.float32(noise_sd)
        image[z : z + 16] = np.clip(np.rint(slab + noise), -1024, 3071).astype(np.int16)
    return image


def write_case(
    directory: Path,
    name: str,
    image: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    labels: dict[str, int],
    description: str,
) -> Path:
    case_dir = directory / name
    case_dir.mkdir(parents=True)
    for array, stem in ((image, "image"), (reference, "reference"), (prediction, "prediction")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
        itk.SetOrigin((-100.0, -120.0, 30.0))
        sitk.WriteImage(itk, str(case_dir / f"{stem}.nii.gz"), useCompression=True)
    meta = {"name": name, "description": description, "labels": {"background": 0, **labels}}
    (case_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    return case_dir


def make_ct_case(directory: Path, rng: np.random.Generator) -> Path:
    shape = (200, 512, 512)
    sp = (2.5, 0.8, 0.8)
    centre = (250.0, 190.0, 170.0)
    radii = (75.0, 80.0, 100.0)
    organ = smooth_field(rng, 6, (40.0, 120.0))
    wobble = smooth_field(rng, 6, (15.0, 40.0))
    notch_c, notch_r = (250.0, 255.0, 225.0), (30.0, 28.0, 28.0)
    satellite = ((190.0, 150.0, 290.0), (7.0, 6.0, 6.0))

    ref = np.zeros(shape, np.uint8)
    paint(ref, sp, 1, centre, radii, rough=((organ, 0.12),))
    paint(ref, sp, 0, notch_c, notch_r, only=1)
    paint(ref, sp, 1, *satellite)

    shift = np.array([2.5, 1.6, -2.4])
    pred = np.zeros(shape, np.uint8)
    paint(
        pred,
        sp,
        1,
        tuple(centre + shift),
        radii,
        rough=((organ, 0.12), (wobble, 0.03)),
        grow_mm=1.5,
    )
    paint(pred, sp, 0, tuple(notch_c + shift), notch_r, only=1)
    for bite in ((250.0, 190.0, 272.0), (322.0, 200.0, 160.0)):  # missed bits on the boundary
        paint(pred, sp, 0, bite, (14.0, 12.0, 12.0), only=1)
    for fp_centre, r in (
        ((120.0, 260.0, 300.0), 5.0),
        ((330.0, 300.0, 260.0), 8.0),
        ((90.0, 210.0, 110.0), 4.0),
        ((400.0, 230.0, 320.0), 10.0),
    ):
        paint(pred, sp, 1, fp_centre, (r, r, r), rough=((wobble, 0.2),))

    # image: air, an elliptic body, a spine, a brighter organ, noise
    yy = (np.arange(shape[1]) * sp[1])[:, None]
    xx = (np.arange(shape[2]) * sp[2])[None, :]
    body = ((yy - 205) / 150) ** 2 + ((xx - 205) / 185) ** 2 <= 1
    spine = (yy - 320) ** 2 + (xx - 205) ** 2 <= 18**2
    base2d = np.where(body, 35.0, -1000.0) + np.where(spine, 600.0, 0.0)
    base = np.broadcast_to(base2d.astype(np.float32), shape).copy()
    base[ref == 1] = 70.0
    image = noisy_image(shape, base, 18.0, rng)
    return write_case(
        directory, "ct", image, ref, pred, sp, {"organ": 1},
        "512x512x200, spacing 0.8x0.8x2.5 mm, int16 CT-like image, 1 label (organ ~2.5 l)",
    )  # fmt: skip


def make_multi_case(directory: Path, rng: np.random.Generator) -> Path:
    shape = (128, 128, 128)
    sp = (1.25, 1.0, 1.0)
    fields = [smooth_field(rng, 5, (15.0, 50.0)) for _ in range(4)]
    f_ref, f_pred = fields[0], fields[1]
    structures = [  # label, centre, radii, roughness
        (1, (80.0, 64.0, 55.0), (45.0, 35.0, 32.0), 0.10),
        (2, (80.0, 64.0, 96.0), (30.0, 22.0, 18.0), 0.10),
        (3, (70.0, 60.0, 48.0), (7.0, 7.0, 7.0), 0.20),
        (4, (80.0, 104.0, 64.0), (70.0, 4.0, 4.0), 0.15),
    ]
    nodes = [((30.0, 30.0, 30.0), 5.0), ((130.0, 25.0, 100.0), 4.0), ((140.0, 105.0, 25.0), 6.0)]

    ref = np.zeros(shape, np.uint8)
    for label, c, r, rough in structures:
        paint(ref, sp, label, c, r, rough=((f_ref, rough),))
    for c, r in nodes:
        paint(ref, sp, 5, c, (r, r, r), rough=((f_ref, 0.2),))

    pred = np.zeros(shape, np.uint8)
    grow = {1: 1.0, 2: -0.8, 3: 1.2, 4: 0.3}
    for label, c, r, rough in structures:
        shift = rng.uniform(-1.5, 1.5, 3)
        paint(
            pred, sp, label, tuple(np.asarray(c) + shift), r,
            rough=((f_ref, rough), (f_pred, 0.04)), grow_mm=grow[label],
        )  # fmt: skip
    paint(pred, sp, 0, (80.0, 104.0, 64.0), (3.0, 8.0, 8.0), only=4)  # a broken tube
    for c, r in nodes[:2]:  # the third node is missed
        paint(pred, sp, 5, tuple(np.asarray(c) + 1.0), (r, r, r), rough=((f_ref, 0.2),))
    paint(pred, sp, 5, (20.0, 100.0, 110.0), (4.0, 4.0, 4.0))  # extra node
    paint(pred, sp, 2, (120.0, 30.0, 110.0), (6.0, 5.0, 5.0), rough=((fields[2], 0.2),))  # FP
    paint(pred, sp, 3, (95.0, 70.0, 40.0), (3.0, 3.0, 3.0), only=1)  # FP lesion inside organ 1
    paint(pred, sp, 1, (120.0, 64.0, 40.0), (9.0, 9.0, 9.0), only=0)  # FP bulge of organ 1

    means = np.array([0.0, 60.0, 110.0, 20.0, 180.0, 90.0], np.float32)
    image = noisy_image(shape, means[ref], 25.0, rng)
    labels = {"organ_a": 1, "organ_b": 2, "lesion": 3, "tube": 4, "nodes": 5}
    return write_case(
        directory, "multi", image, ref, pred, sp, labels,
        "128^3, spacing 1x1x1.25 mm, int16 image, 5 labels",
    )  # fmt: skip


def make_tiny_case(directory: Path, rng: np.random.Generator) -> Path:
    shape = (24, 24, 24)
    sp = (1.0, 1.0, 1.0)
    ref = np.zeros(shape, np.uint8)
    paint(ref, sp, 1, (12.0, 12.0, 10.0), (6.0, 5.0, 5.0))
    paint(ref, sp, 2, (12.0, 12.0, 18.0), (3.0, 3.0, 3.0))
    pred = np.roll(ref, 1, axis=0)
    image = noisy_image(shape, np.float32(40.0) * ref, 10.0, rng)
    return write_case(directory, "tiny", image, ref, pred, sp, {"a": 1, "b": 2}, "warm-up")


# ----------------------------------------------------------------------------- implementations


@dataclass
class Loaded:
    """One case: its files, its label arrays in memory, spacing in numpy (z, y, x) order."""

    directory: Path
    meta: dict
    reference: np.ndarray | None = None
    prediction: np.ndarray | None = None
    spacing_zyx: tuple[float, ...] = ()

    @property
    def files(self) -> tuple[Path, Path, Path]:
        d = self.directory
        return d / "image.nii.gz", d / "reference.nii.gz", d / "prediction.nii.gz"

    @property
    def label_set(self):
        from seg4seg_cli.labels import label_set_from_dataset_json

        return label_set_from_dataset_json({"labels": self.meta["labels"]})

    @property
    def values(self) -> dict[str, int]:
        return {k: v for k, v in self.meta["labels"].items() if v != 0}


def load(directory: Path, arrays: bool = True) -> Loaded:
    case = Loaded(directory, json.loads((directory / "meta.json").read_text()))
    if arrays:
        ref_img = sitk.ReadImage(str(case.files[1]))
        case.reference = sitk.GetArrayFromImage(ref_img)
        case.prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(case.files[2])))
        case.spacing_zyx = tuple(reversed(ref_img.GetSpacing()))
    return case


Metrics = dict[str, dict[str, float]]


def _read_all(paths: tuple[Path, ...]) -> None:
    images = [sitk.ReadImage(str(path)) for path in paths]  # a view needs its image kept alive
    arrays = [sitk.GetArrayViewFromImage(image) for image in images]
    assert all(array.size > 0 for array in arrays)


def run_read(case: Loaded) -> None:
    _read_all(case.files)


def run_read_labels(case: Loaded) -> None:
    _read_all(case.files[1:])


def run_ours_full(case: Loaded) -> Metrics:
    from seg4seg_cli.case_features import FeatureCase, features_for_case

    labels = case.label_set
    row = features_for_case(FeatureCase(case.directory.name, *case.files), labels, NSD_TOL_MM)
    return {
        name: {m: float(row[f"{m}__{name}"]) for m in COMPARED + COUNTED}
        for name in labels.foreground
    }


def run_ours_core(case: Loaded) -> Metrics:
    from seg4seg_cli.metrics import case_metrics

    result = case_metrics(
        case.reference, case.prediction, case.label_set.foreground, case.spacing_zyx, NSD_TOL_MM
    )
    return {name: {k: float(v) for k, v in m.as_dict().items()} for name, m in result.items()}


_STRUCTURE = np.ones((3, 3, 3), bool)


def volumes_and_components(ref: np.ndarray, pred: np.ndarray, voxel_ml: float) -> dict:
    """The non-distance part of our metric set, the usual numpy/scipy way (full arrays)."""
    from scipy import ndimage

    n_ref = int(np.count_nonzero(ref))
    n_pred = int(np.count_nonzero(pred))
    n_both = int(np.count_nonzero(ref & pred))
    ref_lab, n_comp_ref = ndimage.label(ref, structure=_STRUCTURE)
    pred_lab, n_comp_pred = ndimage.label(pred, structure=_STRUCTURE)
    touched_ref = np.count_nonzero(np.bincount(ref_lab[pred], minlength=n_comp_ref + 1)[1:])
    touched_pred = np.count_nonzero(np.bincount(pred_lab[ref], minlength=n_comp_pred + 1)[1:])
    union = n_ref + n_pred - n_both
    return {
        "iou": n_both / union if union else 1.0,
        "vol_ref_ml": n_ref * voxel_ml,
        "vol_pred_ml": n_pred * voxel_ml,
        "vol_diff_ml": (n_pred - n_ref) * voxel_ml,
        "fp_ml": (n_pred - n_both) * voxel_ml,
        "fn_ml": (n_ref - n_both) * voxel_ml,
        "n_comp_ref": float(n_comp_ref),
        "n_comp_pred": float(n_comp_pred),
        "n_comp_missed": float(n_comp_ref - touched_ref),
        "n_comp_extra": float(n_comp_pred - touched_pred),
    }


def run_extras_only(case: Loaded) -> Metrics:
    voxel_ml = float(np.prod(case.spacing_zyx)) / 1000
    return {
        name: volumes_and_components(case.reference == v, case.prediction == v, voxel_ml)
        for name, v in case.values.items()
    }


def run_surface_distance(case: Loaded) -> Metrics:
    import surface_distance as sd

    voxel_ml = float(np.prod(case.spacing_zyx)) / 1000
    out = {}
    for name, v in case.values.items():
        ref, pred = case.reference == v, case.prediction == v
        dists = sd.compute_surface_distances(ref, pred, case.spacing_zyx)
        d_rp, d_pr = dists["distances_gt_to_pred"], dists["distances_pred_to_gt"]
        a_r, a_p = dists["surfel_areas_gt"], dists["surfel_areas_pred"]
        out[name] = {
            "dice": float(sd.compute_dice_coefficient(ref, pred)),
            "hd95_mm": float(sd.compute_robust_hausdorff(dists, 95)),
            # symmetric ASSD: surfel-area-weighted mean over both directions together
            "assd_mm": float((d_rp @ a_r + d_pr @ a_p) / (a_r.sum() + a_p.sum())),
            "nsd": float(sd.compute_surface_dice_at_tolerance(dists, NSD_TOL_MM)),
            **volumes_and_components(ref, pred, voxel_ml),
        }
    return out


def run_monai(case: Loaded) -> Metrics:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
        compute_surface_dice,
    )

    names, values = zip(*case.values.items(), strict=True)
    ref_t, pred_t = torch.from_numpy(case.reference), torch.from_numpy(case.prediction)
    ref_1h = torch.stack([ref_t == v for v in (0, *values)])[None]
    pred_1h = torch.stack([pred_t == v for v in (0, *values)])[None]
    spacing = tuple(float(s) for s in case.spacing_zyx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecated argument
        dice = compute_dice(pred_1h, ref_1h, include_background=False)[0]
        iou = compute_iou(pred_1h, ref_1h, include_background=False)[0]
        hd95 = compute_hausdorff_distance(pred_1h, ref_1h, percentile=95, spacing=spacing)[0]
        assd = compute_average_surface_distance(pred_1h, ref_1h, symmetric=True, spacing=spacing)[0]
        nsd = compute_surface_dice(
            pred_1h, ref_1h, class_thresholds=[NSD_TOL_MM] * len(values), spacing=spacing
        )[0]
    voxel_ml = float(np.prod(case.spacing_zyx)) / 1000
    out = {}
    for i, (name, v) in enumerate(zip(names, values, strict=True)):
        extras = volumes_and_components(case.reference == v, case.prediction == v, voxel_ml)
        extras.update(
            dice=float(dice[i]),
            iou=float(iou[i]),
            hd95_mm=float(hd95[i]),
            assd_mm=float(assd[i]),
            nsd=float(nsd[i]),
        )
        out[name] = extras
    return out


def run_medpy(case: Loaded) -> Metrics:
    from medpy.metric import binary

    voxel_ml = float(np.prod(case.spacing_zyx)) / 1000
    out = {}
    for name, v in case.values.items():
        ref, pred = case.reference == v, case.prediction == v
        out[name] = {
            **volumes_and_components(ref, pred, voxel_ml),
            "dice": float(binary.dc(pred, ref)),
            "iou": float(binary.jc(pred, ref)),
            "hd95_mm": float(binary.hd95(pred, ref, voxelspacing=case.spacing_zyx)),
            "assd_mm": float(binary.assd(pred, ref, voxelspacing=case.spacing_zyx)),
        }
    return out


@dataclass(frozen=True)
class Impl:
    key: str
    label: str
    run: Callable[[Loaded], Metrics | None]
    in_memory: bool


IMPLS = (
    Impl("read", "read 3 files (SimpleITK)", run_read, False),
    Impl("read_labels", "read the 2 label files only", run_read_labels, False),
    Impl("ours_full", "**seg4seg `features_for_case`** (incl. reading)", run_ours_full, False),
    Impl("ours_core", "seg4seg `case_metrics` (in memory)", run_ours_core, True),
    Impl("extras", "numpy volumes + scipy components only", run_extras_only, True),
    Impl("surface_distance", "DeepMind surface-distance + numpy/scipy", run_surface_distance, True),
    Impl("monai", "MONAI + numpy/scipy", run_monai, True),
    Impl("medpy", "medpy (no NSD) + numpy/scipy", run_medpy, True),
)
LIBRARIES = ("surface_distance", "monai", "medpy")


def code_version() -> str:
    """The commit under test, and whether seg4seg_cli/ differs from it in the work tree."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "seg4seg_cli"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" with uncommitted changes in seg4seg_cli/" if dirty else "")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in (
        "numpy",
        "scipy",
        "SimpleITK",
        "connected-components-3d",
        "torch",
        "monai",
        "surface-distance",
        "medpy",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def metricsreloaded_status() -> str:
    for name in ("MetricsReloaded", "metricsreloaded"):
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "index", "versions", name],
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"not checked ({exc})"
        if proc.returncode == 0:
            return (
                f"on PyPI: {proc.stdout.strip().splitlines()[0]} (not benchmarked by this script)"
            )
    return "not on PyPI (`pip index versions MetricsReloaded` and `metricsreloaded`: no matching distribution); not measured"


# ----------------------------------------------------------------------------- measuring


def proc_status_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc/self/status, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_main(key: str, case_dir: Path) -> None:
    """Run one implementation once in this fresh process; print its memory figures as JSON.

    getrusage's ru_maxrss is not used: Linux carries the parent's high-water mark over fork+exec.
    VmHWM in /proc/self/status belongs to this process's own address space, and is reset to the
    current RSS just before the call, so after it VmHWM is the peak RSS during the call.
    """
    impl = next(i for i in IMPLS if i.key == key)
    # imports and (for in-memory implementations) the label arrays first: they are the baseline
    case = load(case_dir, arrays=impl.in_memory)
    if key == "monai":
        import monai.metrics  # noqa: F401
        import torch  # noqa: F401
    if key == "surface_distance":
        import surface_distance  # noqa: F401
    if key == "medpy":
        import medpy.metric  # noqa: F401
    import scipy.ndimage  # noqa: F401
    import scipy.spatial  # noqa: F401

    import seg4seg_cli.case_features  # noqa: F401

    before = proc_status_mib("VmRSS")
    was_reset = reset_peak()
    start = time.perf_counter()
    impl.run(case)
    seconds = time.perf_counter() - start
    peak = proc_status_mib("VmHWM")
    print(
        json.dumps({"peak_mib": peak, "before_mib": before, "reset": was_reset, "seconds": seconds})
    )


def peak_memory(key: str, case_dir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", key, str(case_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_case(
    case: Loaded, impls: list[Impl], runs: int, slow_s: float
) -> tuple[dict[str, list[float]], dict[str, Metrics]]:
    times: dict[str, list[float]] = {i.key: [] for i in impls}
    results: dict[str, Metrics] = {}
    for round_ in range(runs):
        for impl in impls:
            if times[impl.key] and times[impl.key][0] > slow_s:
                continue  # too slow to repeat: timed once
            start = time.perf_counter()
            result = impl.run(case)
            times[impl.key].append(time.perf_counter() - start)
            if result is not None:
                results[impl.key] = result
            print(
                f"  round {round_ + 1}/{runs} {impl.key}: {times[impl.key][-1]:.3f} s",
                file=sys.stderr,
                flush=True,
            )
    return times, results


def max_rel_diff(ours: Metrics, theirs: Metrics, metric: str) -> tuple[float, str]:
    worst, where = 0.0, ""
    for name, mine in ours.items():
        if metric not in theirs.get(name, {}):
            return float("nan"), ""
        a, b = mine[metric], theirs[name][metric]
        diff = abs(b - a) / abs(a) if a else abs(b - a)
        if diff >= worst:
            worst, where = diff, name
    return worst, where


def profile_features(case: Loaded, top: int = 14) -> str:
    run_ours_full(case)  # warm file cache
    profiler = cProfile.Profile()
    profiler.enable()
    run_ours_full(case)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    return stream.getvalue()


# ----------------------------------------------------------------------------- report


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def report_case(
    case: Loaded,
    impls: list[Impl],
    times: dict[str, list[float]],
    results: dict[str, Metrics],
    peaks: dict[str, dict],
    runs: int,
    slow_s: float,
) -> tuple[list[str], dict]:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    ours, core, read = med["ours_full"], med["ours_core"], med.get("read", float("nan"))
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in case.files)
    lines = [
        f"### case `{case.meta['name']}`: {case.meta['description']}",
        "",
        f"Files: {sizes}. Median of {runs} rounds (s); ratios are medians divided by ours.",
        "",
        "| implementation | median s | runs (s) | ÷ ours full | ÷ ours core | peak RSS in call, MiB (rise) |",
        "|---|---|---|---|---|---|",
    ]
    for impl in impls:
        if impl.key not in med:
            continue
        runs_s = ", ".join(fmt_s(t) for t in times[impl.key])
        if len(times[impl.key]) == 1 and runs > 1:
            runs_s += f" (once: first run > {slow_s:.0f} s)"
        peak = peaks.get(impl.key, {})
        peak_s = (
            f"{peak['peak_mib']:.0f} (+{peak['peak_mib'] - peak['before_mib']:.0f})"
            + ("" if peak["reset"] else " (peak since start: reset failed)")
            if "peak_mib" in peak
            else peak.get("error", "–")
        )
        lines.append(
            f"| {impl.label} | {fmt_s(med[impl.key])} | {runs_s} | {med[impl.key] / ours:.2f} | "
            f"{med[impl.key] / core:.2f} | {peak_s} |"
        )
    libs = {k: med[k] for k in LIBRARIES if k in med}
    summary: dict = {"ours_full_s": ours, "ours_core_s": core, "read_s": read}
    lines.append("")
    lines.append(
        f"- ours full / read time: **{ours / read:.2f}**; ours core / read time: {core / read:.2f}"
    )
    if libs:
        fastest = min(libs, key=libs.get)
        label = next(i.label for i in impls if i.key == fastest)
        summary.update(fastest=fastest, fastest_s=libs[fastest])
        lines.append(
            f"- fastest library: {label}, {fmt_s(libs[fastest])} s = **{libs[fastest] / ours:.1f}× "
            f"ours full**, {libs[fastest] / core:.1f}× ours core"
        )
    # agreement of our metrics (core) with each library
    ref_metrics = results.get("ours_core")
    if ref_metrics is not None:
        lines += [
            "",
            "Agreement with ours (`case_metrics`): max over labels of |theirs − ours| / |ours| "
            "(label in brackets); components: labels whose four counts all equal ours.",
            "",
            "| library | " + " | ".join(COMPARED) + " | components equal |",
            "|---|" + "---|" * (len(COMPARED) + 1),
        ]
        for key in ("ours_full", *LIBRARIES):
            if key not in results:
                continue
            cells = []
            for metric in COMPARED:
                diff, where = max_rel_diff(ref_metrics, results[key], metric)
                cells.append("n/a" if np.isnan(diff) else f"{diff:.2e} ({where})")
                summary[f"agree_{key}_{metric}"] = diff
            same = sum(
                all(results[key][n][c] == ref_metrics[n][c] for c in COUNTED) for n in ref_metrics
            )
            label = next(i.label for i in impls if i.key == key)
            cells.append(f"{same}/{len(ref_metrics)}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "Our values (`case_metrics`):", ""]
        lines.append("| label | " + " | ".join(COMPARED + COUNTED) + " |")
        lines.append("|---|" + "---|" * len(COMPARED + COUNTED))
        for name, m in ref_metrics.items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{m[k]:.4g}" for k in COMPARED)
                + " | "
                + " | ".join(str(int(m[k])) for k in COUNTED)
                + " |"
            )
    return lines, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default="ct,multi", help="comma-separated: ct, multi")
    parser.add_argument(
        "--impls", default=",".join(i.key for i in IMPLS), help="comma-separated keys"
    )
    parser.add_argument(
        "--slow-s", type=float, default=180.0, help="time once what takes longer than this"
    )
    parser.add_argument("--no-peak", action="store_true", help="skip the peak-memory children")
    parser.add_argument("--profile", action="store_true", help="cProfile features_for_case")
    parser.add_argument("--keep", type=Path, help="write the cases here instead of a temp dir")
    parser.add_argument("--json", type=Path, help="also write the medians and ratios here")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "CASE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    np.Inf = np.inf  # surface-distance 0.1 still uses np.Inf, gone in NumPy 2
    if args.child:
        child_main(args.child[0], Path(args.child[1]))
        return

    keys = args.impls.split(",")
    impls = [i for i in IMPLS if i.key in keys]
    for needed in ("ours_full", "ours_core"):
        if needed not in keys:
            parser.error(f"--impls must include {needed}")
    missing = []
    for key, module, install in (
        ("surface_distance", "surface_distance", "surface-distance==0.1"),
        ("monai", "monai", "monai"),
        ("medpy", "medpy", "medpy"),
    ):
        if key in keys and importlib.util.find_spec(module) is None:
            impls = [i for i in impls if i.key != key]
            missing.append(
                f'{key} skipped: not installed (`pip install "torch==2.13.0" {install}`)'
            )
    versions = library_versions()
    mr_status = metricsreloaded_status()

    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        root = args.keep or Path(tmp)
        # each case has its own generator, so a case is the same whichever cases are chosen
        makers = {"tiny": make_tiny_case, "ct": make_ct_case, "multi": make_multi_case}
        seeds = {name: np.random.default_rng([SEED, i]) for i, name in enumerate(makers)}
        started = time.perf_counter()
        tiny = load(make_tiny_case(root, seeds["tiny"]))
        case_dirs = {name: makers[name](root, seeds[name]) for name in args.cases.split(",")}
        print(f"wrote cases in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        for impl in impls:  # warm-up: imports, lazy initialisation, allocator
            impl.run(tiny)

        out = [
            "## seg4seg features vs metric libraries",
            "",
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, versions: "
            + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"Code under test: seg4seg at {code_version()}.",
            f"MetricsReloaded: {mr_status}.",
            *[f"{line}." for line in missing],
            f"Command: `.venv/bin/python benchmarks/bench_features.py {' '.join(sys.argv[1:])}`".rstrip()
            + "",
            "",
        ]
        summaries = {}
        profiles = {}
        for name, case_dir in case_dirs.items():
            print(f"case {name}", file=sys.stderr, flush=True)
            case = load(case_dir)
            times, results = time_case(case, impls, args.runs, args.slow_s)
            peaks = {}
            if not args.no_peak:
                for impl in impls:
                    if impl.key == "extras":
                        continue
                    peaks[impl.key] = peak_memory(impl.key, case_dir)
                    print(f"  peak {impl.key}: {peaks[impl.key]}", file=sys.stderr, flush=True)
            lines, summary = report_case(case, impls, times, results, peaks, args.runs, args.slow_s)
            out += lines + [""]
            summaries[name] = summary
            if args.profile:
                profiles[name] = profile_features(case)

        out.append("### goals")
        out.append("")
        for name, s in summaries.items():
            fastest = s.get("fastest_s", float("nan"))
            speedup = fastest / s["ours_full_s"]
            read_ratio = s["ours_full_s"] / s["read_s"]
            out.append(
                f"- `{name}`: ours full is {speedup:.1f}× faster than the fastest library "
                f"({'met' if speedup >= 10 else 'NOT met'}: goal ≥ 10×) and takes "
                f"{read_ratio:.2f}× the read time ({'met' if read_ratio <= 2 else 'NOT met'}: "
                f"goal ≤ 2×). Ours core (in memory, like the libraries) is "
                f"{fastest / s['ours_core_s']:.1f}× faster than the fastest library. 10× the "
                f"fastest library is {fastest / 10:.3f} s; reading the 3 files alone takes "
                f"{s['read_s']:.3f} s."
            )
        print("\n".join(out))
        for name, text in profiles.items():
            print(f"\n### cProfile of features_for_case, case `{name}` (sorted by tottime)\n")
            print("```\n" + text.strip() + "\n```")
        if args.json:
            args.json.write_text(json.dumps({"versions": versions, "cases": summaries}, indent=1))


if __name__ == "__main__":
    main()
