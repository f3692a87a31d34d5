"""Each metric against an independent reference, on random shapes, anisotropic spacing and edge cases.

References: brute-force numpy and scipy for overlap, volumes and components; MONAI (installed for
tests only) for the surfaces: its `get_mask_edges` gives the surface voxels, exact pairwise
distances in float64 give the directed distances, and MONAI's own metric functions check the
conventions end to end (to float32 precision, since MONAI returns float32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from seg4seg_cli.metrics import (
    METRIC_NAMES,
    binary_metrics,
    case_metrics,
    nsd_tol_within,
    surface_voxels,
)

# ---------------------------------------------------------------------------- references


def reference_overlap(ref: np.ndarray, pred: np.ndarray, spacing) -> dict:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    r, p = int(ref.sum()), int(pred.sum())
    both, either = int((ref & pred).sum()), int((ref | pred).sum())
    return {
        "dice": 1.0 if r + p == 0 else 2 * both / (r + p),
        "iou": 1.0 if either == 0 else both / either,
        "vol_ref_ml": r * voxel_ml,
        "vol_pred_ml": p * voxel_ml,
        "vol_diff_ml": (p - r) * voxel_ml,
        "fp_ml": int((pred & ~ref).sum()) * voxel_ml,
        "fn_ml": int((ref & ~pred).sum()) * voxel_ml,
    }


def reference_components(ref: np.ndarray, pred: np.ndarray) -> dict:
    structure = np.ones((3,) * ref.ndim, bool)
    ref_labels, n_ref = ndimage.label(ref, structure)
    pred_labels, n_pred = ndimage.label(pred, structure)
    missed = sum(1 for k in range(1, n_ref + 1) if not pred[ref_labels == k].any())
    extra = sum(1 for k in range(1, n_pred + 1) if not ref[pred_labels == k].any())
    return {
        "n_comp_ref": n_ref,
        "n_comp_pred": n_pred,
        "n_comp_missed": missed,
        "n_comp_extra": extra,
    }


def reference_surface(ref: np.ndarray, pred: np.ndarray, spacing, tol: float) -> dict:
    """MONAI's surface voxels, brute-force distances in float64, MONAI's formulas."""
    from monai.metrics.utils import get_mask_edges

    edges_pred, edges_ref = get_mask_edges(pred, ref, crop=True)
    ref_index, pred_index = np.argwhere(edges_ref), np.argwhere(edges_pred)

    def nearest(a, b):  # exact: scale integer index differences, as a distance transform does
        steps = (a[:, None, :] - b[None, :, :]) * np.asarray(spacing, float)
        return np.sqrt((steps**2).sum(-1)).min(axis=1)

    ref_to_pred, pred_to_ref = nearest(ref_index, pred_index), nearest(pred_index, ref_index)
    both = np.concatenate([ref_to_pred, pred_to_ref])
    return {
        "hd95_mm": max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95)),
        "assd_mm": both.mean(),
        "nsd": np.count_nonzero(both <= nsd_tol_within(tol)) / both.size,
        "distances": both,
    }


def monai_end_to_end(ref: np.ndarray, pred: np.ndarray, spacing, tol: float) -> dict:
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    y_pred = torch.from_numpy(pred[None, None].astype(np.float32))
    y = torch.from_numpy(ref[None, None].astype(np.float32))
    spacing = [float(s) for s in spacing]
    return {
        "hd95_mm": compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=spacing
        ).item(),
        "assd_mm": compute_average_surface_distance(
            y_pred, y, include_background=True, symmetric=True, spacing=spacing
        ).item(),
        "nsd": compute_surface_dice(
            y_pred, y, [tol], include_background=True, spacing=spacing
        ).item(),
    }


# ---------------------------------------------------------------------------- strategies


@st.composite
def mask_pairs(draw, min_side: int = 1, max_side: int = 10):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(min_side, max_side), min_size=ndim, max_size=ndim)))
    ref = draw(arrays(bool, shape))
    pred = draw(arrays(bool, shape))
    spacing = tuple(draw(st.lists(st.floats(0.2, 5.0), min_size=ndim, max_size=ndim)))
    tol = draw(st.floats(0.0, 4.0))
    return ref, pred, spacing, tol


def assert_close(ours: float, theirs: float, rtol: float, name: str) -> None:
    assert abs(ours - theirs) <= rtol * max(abs(theirs), 1e-12), f"{name}: {ours} vs {theirs}"


# the "explore" profile of conftest.py raises every count to its own (random search)
EXPLORE = settings.default.max_examples >= 1000
SETTINGS = settings(
    max_examples=settings.default.max_examples if EXPLORE else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------- properties


@SETTINGS
@given(mask_pairs())
def test_overlap_and_volumes_match_brute_force(case):
    ref, pred, spacing, tol = case
    metrics = binary_metrics(ref, pred, spacing, tol).as_dict()
    for name, expected in reference_overlap(ref, pred, spacing).items():
        assert metrics[name] == pytest.approx(expected, rel=1e-12, abs=1e-15), name


@SETTINGS
@given(mask_pairs())
def test_components_match_scipy_full_connectivity(case):
    ref, pred, spacing, tol = case
    metrics = binary_metrics(ref, pred, spacing, tol).as_dict()
    for name, expected in reference_components(ref, pred).items():
        assert metrics[name] == expected, name


@SETTINGS
@given(mask_pairs())
def test_surface_metrics_match_monai_surfaces_to_1e_6(case):
    ref, pred, spacing, tol = case
    if not ref.any() or not pred.any():
        return  # empty masks follow the documented conventions, tested below
    metrics = binary_metrics(ref, pred, spacing, tol)
    expected = reference_surface(ref, pred, spacing, tol)
    assert_close(metrics.hd95_mm, expected["hd95_mm"], 1e-6, "hd95_mm")
    assert_close(metrics.assd_mm, expected["assd_mm"], 1e-6, "assd_mm")
    assert_close(metrics.nsd, expected["nsd"], 1e-6, "nsd")


@settings(
    max_examples=settings.default.max_examples // 4 if EXPLORE else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mask_pairs(min_side=2, max_side=12))
def test_surface_metrics_match_monai_metric_functions(case):
    ref, pred, spacing, tol = case
    if not ref.any() or not pred.any():
        return
    metrics = binary_metrics(ref, pred, spacing, tol)
    expected = monai_end_to_end(ref, pred, spacing, tol)
    # MONAI computes in float32
    assert_close(metrics.hd95_mm, expected["hd95_mm"], 1e-5, "hd95_mm")
    assert_close(metrics.assd_mm, expected["assd_mm"], 1e-5, "assd_mm")
    distances = reference_surface(ref, pred, spacing, tol)["distances"]
    if not np.any(np.isclose(distances, tol, rtol=1e-5, atol=1e-6)):
        # a distance equal to the tolerance is decided by float32 rounding inside MONAI
        assert_close(metrics.nsd, expected["nsd"], 1e-5, "nsd")


@SETTINGS
@given(mask_pairs())
def test_no_metric_is_ever_infinite_or_nan(case):
    ref, pred, spacing, tol = case
    values = binary_metrics(ref, pred, spacing, tol).as_dict()
    assert all(np.isfinite(float(values[name])) for name in METRIC_NAMES)


def test_components_of_a_strided_crop_are_counted():
    # found by hypothesis in CI: the bounding box of this pair is a strided (2, 1, 1) view, which
    # cc3d read wrongly (n_comp_pred 0) until masks were made contiguous
    ref = np.zeros((2, 1, 2), bool)
    pred = np.zeros((2, 1, 2), bool)
    ref[0, 0, 0] = pred[1, 0, 0] = True
    metrics = binary_metrics(ref, pred, (1.0, 1.0, 1.0), 0.0).as_dict()
    for name, expected in reference_components(ref, pred).items():
        assert metrics[name] == expected, name
    assert (metrics["n_comp_pred"], metrics["n_comp_missed"], metrics["n_comp_extra"]) == (1, 1, 1)


def test_surface_voxels_are_mask_minus_face_erosion():
    rng = np.random.default_rng(1)
    for ndim in (2, 3):
        mask = rng.random((7,) * ndim) > 0.4
        eroded = ndimage.binary_erosion(
            mask, ndimage.generate_binary_structure(ndim, 1), border_value=0
        )
        np.testing.assert_array_equal(surface_voxels(mask), mask & ~eroded)


# ---------------------------------------------------------------------------- edge cases


def test_both_empty_is_perfect_agreement():
    empty = np.zeros((6, 7, 8), bool)
    m = binary_metrics(empty, empty, (2.5, 0.8, 0.8))
    assert (m.dice, m.iou, m.nsd, m.hd95_mm, m.assd_mm) == (1.0, 1.0, 1.0, 0.0, 0.0)
    assert m.ref_empty and m.pred_empty
    assert (m.n_comp_ref, m.n_comp_pred, m.n_comp_missed, m.n_comp_extra) == (0, 0, 0, 0)


@pytest.mark.parametrize("empty_side", ["reference", "prediction"])
def test_one_empty_side_gives_zero_overlap_and_the_image_diagonal(empty_side):
    spacing = (2.5, 0.8, 0.8)
    full = np.zeros((6, 7, 8), bool)
    full[2:4, 2:5, 3:6] = True
    empty = np.zeros_like(full)
    ref, pred = (empty, full) if empty_side == "reference" else (full, empty)
    m = binary_metrics(ref, pred, spacing)
    diagonal = float(np.sqrt((6 * 2.5) ** 2 + (7 * 0.8) ** 2 + (8 * 0.8) ** 2))
    assert (m.dice, m.iou, m.nsd) == (0.0, 0.0, 0.0)
    assert m.hd95_mm == pytest.approx(diagonal) and m.assd_mm == pytest.approx(diagonal)
    assert m.ref_empty == (empty_side == "reference") and m.pred_empty == (
        empty_side == "prediction"
    )
    assert m.n_comp_missed == (1 if empty_side == "prediction" else 0)
    assert m.n_comp_extra == (1 if empty_side == "reference" else 0)


def test_single_voxel_objects_with_anisotropic_spacing():
    ref = np.zeros((5, 5, 5), bool)
    pred = np.zeros((5, 5, 5), bool)
    ref[1, 1, 1] = True
    pred[3, 1, 2] = True
    m = binary_metrics(ref, pred, (3.0, 1.0, 0.5), nsd_tol_mm=1.0)
    distance = np.sqrt((2 * 3.0) ** 2 + (1 * 0.5) ** 2)
    assert m.hd95_mm == pytest.approx(distance) and m.assd_mm == pytest.approx(distance)
    assert (m.dice, m.nsd, m.n_comp_missed, m.n_comp_extra) == (0.0, 0.0, 1, 1)
    assert m.vol_ref_ml == pytest.approx(1.5 / 1000)


def test_diagonally_touching_objects_are_one_component():
    mask = np.zeros((6, 6, 6), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True  # touch at a corner: one object with full connectivity
    mask[4, 4, 4] = True
    m = binary_metrics(mask, mask, (1.0, 1.0, 1.0))
    assert m.n_comp_ref == 2
    m2d = binary_metrics(mask[1], mask[1] | np.eye(6, dtype=bool), (1.0, 1.0))
    assert m2d.n_comp_pred == 1


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(3)
    mask = ndimage.binary_dilation(rng.random((12, 12, 12)) > 0.97, iterations=2)
    m = binary_metrics(mask, mask, (1.5, 0.7, 0.7))
    assert (m.dice, m.iou, m.nsd, m.hd95_mm, m.assd_mm, m.fp_ml, m.fn_ml) == (
        1.0,
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
    )


def test_objects_touching_the_image_border_have_surface_there():
    ref = np.ones((4, 4), bool)
    pred = np.ones((4, 4), bool)
    pred[:, 3] = False
    m = binary_metrics(ref, pred, (1.0, 1.0))
    expected = reference_surface(ref, pred, (1.0, 1.0), 1.0)
    assert m.hd95_mm == pytest.approx(expected["hd95_mm"])
    assert m.assd_mm == pytest.approx(expected["assd_mm"])


# ---------------------------------------------------------------------------- labels and regions


def _random_label_maps(seed: int, shape=(10, 12, 11), n_labels: int = 3):
    rng = np.random.default_rng(seed)
    ref = ndimage.median_filter(rng.integers(0, n_labels + 1, shape), size=3).astype(np.uint8)
    pred = ref.copy()
    flip = rng.random(shape) < 0.15
    pred[flip] = rng.integers(0, n_labels + 1, int(flip.sum()))
    return ref, pred


def test_multi_label_metrics_equal_binary_metrics_per_label_on_full_arrays():
    ref, pred = _random_label_maps(0)
    spacing = (2.0, 0.9, 0.7)
    labels = {"a": (1,), "b": (2,), "c": (3,)}
    diagonal = float(np.sqrt(np.sum((np.asarray(ref.shape) * np.asarray(spacing)) ** 2)))
    results = case_metrics(ref, pred, labels, spacing, 1.5)
    for name, (value,) in labels.items():
        expected = binary_metrics(ref == value, pred == value, spacing, 1.5, diagonal)
        assert results[name] == expected, name


def test_regions_are_unions_of_label_values():
    ref, pred = _random_label_maps(1)
    spacing = (1.0, 1.0, 1.0)
    regions = {"whole": (1, 2, 3), "core": (2, 3), "enhancing": (3,)}
    results = case_metrics(ref, pred, regions, spacing)
    for name, values in regions.items():
        diagonal = float(np.sqrt(np.sum(np.asarray(ref.shape) ** 2)))
        expected = binary_metrics(
            np.isin(ref, values), np.isin(pred, values), spacing, 1.0, diagonal
        )
        assert results[name] == expected, name


def test_ignore_label_voxels_are_left_out():
    ref, pred = _random_label_maps(2, n_labels=2)
    ref[:, :, :3] = 9  # the ignore label covers a slab of the reference
    spacing = (1.0, 1.0, 1.0)
    results = case_metrics(ref, pred, {"a": (1,), "b": (2,)}, spacing, ignore_value=9)
    valid = ref != 9
    diagonal = float(np.sqrt(np.sum(np.asarray(ref.shape) ** 2)))
    for name, value in (("a", 1), ("b", 2)):
        expected = binary_metrics(
            (ref == value) & valid, (pred == value) & valid, spacing, 1.0, diagonal
        )
        assert results[name] == expected, name


def test_labels_absent_everywhere_follow_the_both_empty_convention():
    empty = np.zeros((5, 5), np.uint8)
    results = case_metrics(empty, empty, {"a": (1,)}, (1.0, 1.0))
    assert results["a"].dice == 1.0 and results["a"].ref_empty and results["a"].pred_empty


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    from seg4seg_cli.metrics import uncertainty_features

    certain = np.zeros((3, 4, 4))
    certain[0] = 1.0
    uniform = np.full((3, 4, 4), 1 / 3)
    foreground = np.zeros((4, 4), bool)
    foreground[1:3, 1:3] = True
    assert uncertainty_features(certain, foreground)["entropy_mean"] == pytest.approx(0.0, abs=1e-9)
    assert uncertainty_features(uniform, foreground)["entropy_in_pred"] == pytest.approx(1.0)
    halves = np.full((2, 4, 4), 0.5)  # region-based sigmoid outputs at 0.5: one bit each
    assert uncertainty_features(halves, foreground, region_based=True)[
        "entropy_mean"
    ] == pytest.approx(1.0)
    assert uncertainty_features(uniform, np.zeros((4, 4), bool))["entropy_in_pred"] == 0.0
