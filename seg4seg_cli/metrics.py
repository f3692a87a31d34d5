"""Per-label segmentation metrics: pure functions over numpy masks, no I/O.

Definitions (docs/metrics.md says why):
- overlap: Dice 2|R∩P|/(|R|+|P|), IoU |R∩P|/|R∪P|; volumes in ml from voxel counts and spacing.
- surfaces follow the voxel-boundary definition of MONAI and MetricsReloaded: the surface of a
  mask is its voxels that have a face neighbour outside it (mask minus its erosion with the
  face-connected structuring element; outside the image counts as outside the mask). Distances
  are Euclidean in mm between surface voxel centres, nearest neighbour by KD-tree, exact.
  HD95 is the larger of the two directed 95th percentiles (linear interpolation), ASSD the mean
  over both directed distance sets together, NSD the fraction of surface voxels of both masks
  within the tolerance of the other surface.
- components use full connectivity (8 in 2D, 26 in 3D). A reference component is missed when no
  voxel of it is predicted; a predicted component is extra when no voxel of it is in the reference.

Empty masks never raise and never produce inf or NaN (EMPTY_MASK_CONVENTIONS).

Arrays are in numpy axis order and `spacing_mm` follows the same order (for SimpleITK arrays:
(z, y, x) spacing, the reverse of `Image.GetSpacing()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cc3d
import numpy as np
from scipy.spatial import cKDTree

EMPTY_MASK_CONVENTIONS = {
    "both_empty": "perfect agreement: dice=iou=nsd=1, hd95_mm=assd_mm=0",
    "reference_empty_prediction_not": (
        "dice=iou=nsd=0; hd95_mm=assd_mm=the image diagonal in mm (the largest distance possible)"
    ),
    "prediction_empty_reference_not": (
        "dice=iou=nsd=0; hd95_mm=assd_mm=the image diagonal in mm (the largest distance possible)"
    ),
    "flags": "ref_empty__LABEL and pred_empty__LABEL columns say which case applied",
}

METRIC_NAMES = (
    "dice",
    "iou",
    "hd95_mm",
    "assd_mm",
    "nsd",
    "vol_ref_ml",
    "vol_pred_ml",
    "vol_diff_ml",
    "fp_ml",
    "fn_ml",
    "n_comp_ref",
    "n_comp_pred",
    "n_comp_missed",
    "n_comp_extra",
)


@dataclass(frozen=True)
class LabelMetrics:
    """The metrics of one label (or region) of one case; see the module docstring."""

    dice: float
    iou: float
    hd95_mm: float
    assd_mm: float
    nsd: float
    vol_ref_ml: float
    vol_pred_ml: float
    vol_diff_ml: float
    fp_ml: float
    fn_ml: float
    n_comp_ref: int
    n_comp_pred: int
    n_comp_missed: int
    n_comp_extra: int
    ref_empty: bool
    pred_empty: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def nsd_tol_within(nsd_tol_mm: float) -> float:
    """The NSD tolerance widened by float rounding (1e-9 relative), so that a distance equal to
    the tolerance counts as within it however the coordinates were rounded."""
    return nsd_tol_mm * (1 + 1e-9) + 1e-12


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel of `mask`, or None when there is none.

    Two passes at most: the extent along the first axis, then the projection of that slab.
    """
    if mask.ndim == 1:
        hits = np.flatnonzero(mask)
        return None if hits.size == 0 else (slice(int(hits[0]), int(hits[-1]) + 1),)
    profile = np.any(mask, axis=tuple(range(1, mask.ndim)))
    hits = np.flatnonzero(profile)
    if hits.size == 0:
        return None
    first = slice(int(hits[0]), int(hits[-1]) + 1)
    rest = bounding_box(np.any(mask[first], axis=0))
    return (first, *rest)


def joint_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    """The smallest box holding both boxes (None stands for an empty box)."""
    if a is None or b is None:
        return a if b is None else b
    return tuple(
        slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True)
    )


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of `mask` with at least one face neighbour outside it (or outside the array)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = mask.copy()
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            neighbour = list(core)
            neighbour[axis] = slice(1 + shift, padded.shape[axis] - 1 + shift)
            interior &= padded[tuple(neighbour)]
    return mask & ~interior


def _surface_distances(
    source: np.ndarray, target: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """Distance (mm) from every surface voxel of `source` to the nearest one of `target`.

    Voxels on both surfaces are at distance 0 and skip the KD-tree query: for a good
    segmentation most of the surface is shared, so most of the work is skipped (exact).
    """
    distances = np.zeros(int(np.count_nonzero(source)))
    shared = target[source]
    if not shared.all():
        points = np.argwhere(source & ~target).astype(np.float64) * spacing_mm
        tree = cKDTree(
            np.argwhere(target).astype(np.float64) * spacing_mm,
            balanced_tree=False,
            compact_nodes=False,
        )
        # threads pay off only for large surfaces; small ones lose more in start-up (0.26 vs 0.04 ms)
        workers = -1 if len(points) > 20_000 else 1
        distances[~shared] = tree.query(points, k=1, workers=workers)[0]
    return distances


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    connectivity = 26 if mask.ndim == 3 else 8
    if mask.ndim not in (2, 3):
        raise ValueError(f"masks must be 2-D or 3-D, got {mask.ndim}-D")
    # cc3d 4.1 mislabels bool arrays of shape (1, n) in 2-D, and strided views (such as a
    # bounding-box crop of shape (2, 1, 2)) lose voxels; a contiguous uint8 copy is right
    labels, count = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=connectivity, return_N=True
    )
    return labels, int(count)


def _count_untouched(labels: np.ndarray, count: int, other: np.ndarray) -> int:
    """How many of the `count` components in `labels` share no voxel with `other`."""
    if count == 0:
        return 0
    touched = np.bincount(labels[other], minlength=count + 1)[1:]
    return count - int(np.count_nonzero(touched))


def binary_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Sequence[float],
    nsd_tol_mm: float = 1.0,
    max_distance_mm: float | None = None,
) -> LabelMetrics:
    """All metrics of one binary reference/prediction pair of shape `(z, y, x)` or `(y, x)`.

    `max_distance_mm` is the distance reported when exactly one mask is empty (default: the
    diagonal of the arrays in mm).
    """
    reference = np.asarray(reference, dtype=bool)
    prediction = np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError(
            f"reference {reference.shape} and prediction {prediction.shape} differ in shape"
        )
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (reference.ndim,) or np.any(spacing <= 0):
        raise ValueError(f"spacing_mm must hold {reference.ndim} positive values, got {spacing_mm}")
    if max_distance_mm is None:
        max_distance_mm = float(np.sqrt(np.sum((np.asarray(reference.shape) * spacing) ** 2)))
    voxel_ml = float(np.prod(spacing)) / 1000.0

    box = bounding_box(reference | prediction)
    if box is None:
        return LabelMetrics(
            1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0, True, True
        )
    reference, prediction = reference[box], prediction[box]

    n_ref = int(np.count_nonzero(reference))
    n_pred = int(np.count_nonzero(prediction))
    n_both = int(np.count_nonzero(reference & prediction))
    dice = 2.0 * n_both / (n_ref + n_pred)
    iou = n_both / (n_ref + n_pred - n_both)

    ref_labels, n_comp_ref = _components(reference)
    pred_labels, n_comp_pred = _components(prediction)
    missed = _count_untouched(ref_labels, n_comp_ref, prediction)
    extra = _count_untouched(pred_labels, n_comp_pred, reference)

    if n_ref == 0 or n_pred == 0:
        hd95 = assd = float(max_distance_mm)
        nsd = 0.0
    else:
        ref_surface, pred_surface = surface_voxels(reference), surface_voxels(prediction)
        ref_to_pred = _surface_distances(ref_surface, pred_surface, spacing)
        pred_to_ref = _surface_distances(pred_surface, ref_surface, spacing)
        hd95 = float(max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95)))
        total = ref_to_pred.size + pred_to_ref.size
        assd = float((ref_to_pred.sum() + pred_to_ref.sum()) / total)
        # distances equal to the tolerance count as within it, whatever the rounding of coordinates
        limit = nsd_tol_within(nsd_tol_mm)
        within = np.count_nonzero(ref_to_pred <= limit) + np.count_nonzero(pred_to_ref <= limit)
        nsd = float(within / total)

    return LabelMetrics(
        dice=float(dice),
        iou=float(iou),
        hd95_mm=hd95,
        assd_mm=assd,
        nsd=nsd,
        vol_ref_ml=n_ref * voxel_ml,
        vol_pred_ml=n_pred * voxel_ml,
        vol_diff_ml=(n_pred - n_ref) * voxel_ml,
        fp_ml=(n_pred - n_both) * voxel_ml,
        fn_ml=(n_ref - n_both) * voxel_ml,
        n_comp_ref=n_comp_ref,
        n_comp_pred=n_comp_pred,
        n_comp_missed=missed,
        n_comp_extra=extra,
        ref_empty=n_ref == 0,
        pred_empty=n_pred == 0,
    )


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Per-voxel entropy of class probabilities `(n_classes, *spatial)`, divided by log(n_classes)."""
    n_classes = probabilities.shape[0]
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=0) / np.log(n_classes)


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Per-voxel mean over channels of the binary entropy (bits) of independent sigmoid outputs
    `(n_regions, *spatial)`, as region-based nnU-Net models produce; in [0, 1]."""
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=0)


def uncertainty_features(
    probabilities: np.ndarray, predicted_foreground: np.ndarray, region_based: bool = False
) -> dict[str, float]:
    """`entropy_mean` over the image and `entropy_in_pred` over predicted foreground (0 if none).

    Softmax outputs (`region_based=False`) use the normalised entropy of the class distribution;
    region-based sigmoid outputs the mean binary entropy of the regions.
    """
    entropy = binary_entropy(probabilities) if region_based else normalised_entropy(probabilities)
    entropy = entropy.reshape(predicted_foreground.shape)
    inside = entropy[predicted_foreground]
    return {
        "entropy_mean": float(entropy.mean()),
        "entropy_in_pred": float(inside.mean()) if inside.size else 0.0,
    }


def intensity_features(image: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation and 1st/99th percentiles of an image's intensities."""
    values = np.asarray(image, dtype=np.float64).ravel()
    p01, p99 = np.percentile(values, [1, 99])
    return {
        "intensity_mean": float(values.mean()),
        "intensity_std": float(values.std()),
        "intensity_p01": float(p01),
        "intensity_p99": float(p99),
    }


def region_mask(segmentation: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Voxels whose label is one of `values` (one value for a label, several for a region)."""
    if len(values) == 1:
        return segmentation == values[0]
    return np.isin(segmentation, values)


def case_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    labels: dict[str, tuple[int, ...]],
    spacing_mm: Sequence[float],
    nsd_tol_mm: float = 1.0,
    ignore_value: int | None = None,
    max_distance_mm: float | None = None,
) -> dict[str, LabelMetrics]:
    """`binary_metrics` for every foreground label or region of a case's label maps.

    `labels` maps names to label values (a region lists several, as nnU-Net's region-based
    dataset.json). Reference voxels equal to `ignore_value` (nnU-Net's "ignore" label) are left
    out of both masks. Both maps are first cropped to their joint foreground, so each label costs
    time in proportion to the structure, not to the image. `max_distance_mm` (default: the
    diagonal of these arrays) is the distance reported when one mask of a label is empty.
    """
    if reference.shape != prediction.shape:
        raise ValueError(
            f"reference {reference.shape} and prediction {prediction.shape} differ in shape"
        )
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    diagonal_mm = max_distance_mm
    if diagonal_mm is None:
        diagonal_mm = float(np.sqrt(np.sum((np.asarray(reference.shape) * spacing) ** 2)))
    box = bounding_box((reference != 0) | (prediction != 0))
    if box is not None:
        reference, prediction = reference[box], prediction[box]
    valid = None if ignore_value is None else reference != ignore_value
    results = {}
    for name, values in labels.items():
        if box is None:
            results[name] = binary_metrics(
                np.zeros((1,) * reference.ndim, bool),
                np.zeros((1,) * reference.ndim, bool),
                spacing,
            )
            continue
        ref_mask = region_mask(reference, values)
        pred_mask = region_mask(prediction, values)
        if valid is not None:
            ref_mask &= valid
            pred_mask &= valid
        results[name] = binary_metrics(ref_mask, pred_mask, spacing, nsd_tol_mm, diagonal_mm)
    return results
