"""The feature row of one case: read its image, reference and prediction, check they share one
grid, and compute error, uncertainty and image features (the metrics themselves are in metrics.py).

Files are read with SimpleITK, not through a model, so predictions from any tool work. Nothing is
ever resampled: a geometry mismatch is an error naming the case and the file. The image's voxels
are needed last (intensity and image-quality features) and are the biggest read (a CT volume:
~0.35 s), so they are read in a thread while the labels are evaluated; SimpleITK releases the GIL
while it reads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from seg4seg_cli.errors import CaseError
from seg4seg_cli.file_checks import check_complete
from seg4seg_cli.image_quality import QUALITY_FEATURES, quality_features
from seg4seg_cli.labels import LabelSet
from seg4seg_cli.metrics import (
    METRIC_NAMES,
    bounding_box,
    case_metrics,
    joint_box,
    uncertainty_features,
)

# percentiles of huge images are computed on a regular subsample of at most this many voxels
PERCENTILE_SAMPLE = 1 << 18
IMAGE_FEATURES = (
    "spacing_x",
    "spacing_y",
    "spacing_z",
    "shape_x",
    "shape_y",
    "shape_z",
    "intensity_mean",
    "intensity_std",
    "intensity_p01",
    "intensity_p99",
    *QUALITY_FEATURES,
)
UNCERTAINTY_FEATURES = ("entropy_mean", "entropy_in_pred")
DESCRIPTOR_KEY = "image_descriptor"  # carried with the row, written to embeddings.parquet


@dataclass(frozen=True)
class FeatureCase:
    """The files of one case. `probabilities_file` is nnU-Net's `CASE.npz`, when saved."""

    case_id: str
    image_file: Path
    reference_file: Path
    prediction_file: Path
    probabilities_file: Path | None = None

    def input_files(self) -> list[Path]:
        files = [self.image_file, self.reference_file, self.prediction_file]
        return files + ([self.probabilities_file] if self.probabilities_file else [])


def _read(path: Path, what: str, case_id: str) -> sitk.Image:
    check_complete(path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _unreadable(exc, path, what) from exc
    _check_components(image.GetNumberOfComponentsPerPixel(), path, what)
    return image


def _read_header(path: Path, what: str) -> sitk.ImageFileReader:
    """The file's geometry (size, spacing, origin, direction) without its voxels."""
    check_complete(path, what)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _unreadable(exc, path, what) from exc
    _check_components(reader.GetNumberOfComponents(), path, what)
    return reader


def _unreadable(exc: RuntimeError, path: Path, what: str) -> CaseError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next(
        (line for line in lines if "rror" in line or "not" in line), lines[-1] if lines else ""
    )
    return CaseError(f"cannot read the {what} {path} ({detail[:160]}); replace the file")


def _check_components(components: int, path: Path, what: str) -> None:
    if components != 1:
        raise CaseError(
            f"the {what} {path} has {components} components per voxel; "
            "seg4seg reads one scalar channel per file (split it into CASE_0000, CASE_0001...)"
        )


def _same(a: tuple, b: tuple, tolerance: float) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance) for x, y in zip(a, b, strict=True)
    )


def check_geometry(
    case_id: str,
    image: sitk.Image | sitk.ImageFileReader,
    others: dict[str, tuple[Path, sitk.Image]],
) -> None:
    """Raise CaseError unless every other image has the first image's size, spacing, origin, direction."""
    for what, (path, other) in others.items():
        for name, getter, tolerance in (
            ("size", "GetSize", 0.0),
            ("spacing", "GetSpacing", 1e-5),
            ("origin", "GetOrigin", 1e-4),
            ("direction", "GetDirection", 1e-5),
        ):
            ours, theirs = getattr(other, getter)(), getattr(image, getter)()
            if not _same(tuple(ours), tuple(theirs), tolerance):
                raise CaseError(
                    f"the {what} {path} has {name} {_fmt(ours)} but the image has {_fmt(theirs)}; "
                    "it must be on the image's grid (seg4seg never resamples)"
                )


def _fmt(values: tuple) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _label_array(image: sitk.Image, path: Path, what: str) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"the {what} {path} has several components per voxel; a label map has one")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise CaseError(f"the {what} {path} holds non-integer values; it is not a label map")
        array = array.astype(np.int64)
    return array


def _check_label_values(
    array: np.ndarray, box: tuple[slice, ...] | None, labels: LabelSet, path: Path, what: str
) -> None:
    if box is None:
        return
    crop = array[box]
    if crop.dtype.kind == "u" and crop.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(crop.reshape(-1)))  # no sort: faster than unique
    else:
        present = np.unique(crop)
    unknown = sorted(int(v) for v in present if int(v) not in labels.allowed_values)
    if unknown:
        raise CaseError(
            f"the {what} {path} contains label value(s) {unknown} not in dataset.json "
            f"(allowed: {sorted(labels.allowed_values)}); fix the labels or dataset.json"
        )


def _intensity_features(image: np.ndarray) -> dict[str, float]:
    """Intensity statistics on a regular subsample of at most PERCENTILE_SAMPLE voxels (every
    voxel for images up to that size): a CT volume costs milliseconds instead of a second."""
    flat = image.reshape(-1)
    sample = flat[:: max(1, flat.size // PERCENTILE_SAMPLE)].astype(np.float64)
    p01, p99 = np.percentile(sample, [1, 99])
    return {
        "intensity_mean": float(sample.mean()),
        "intensity_std": float(sample.std()),
        "intensity_p01": float(p01),
        "intensity_p99": float(p99),
    }


def geometry_features(image: sitk.Image) -> dict[str, float | int]:
    spacing = tuple(image.GetSpacing()) + (math.nan,) * (3 - image.GetDimension())
    size = tuple(image.GetSize()) + (1,) * (3 - image.GetDimension())
    return {
        "spacing_x": float(spacing[0]),
        "spacing_y": float(spacing[1]),
        "spacing_z": float(spacing[2]),
        "shape_x": int(size[0]),
        "shape_y": int(size[1]),
        "shape_z": int(size[2]),
    }


def features_for_case(
    case: FeatureCase, labels: LabelSet, nsd_tol_mm: float = 1.0
) -> dict[str, object]:
    """The feature row of one case (without metadata); CaseError for bad input."""
    header = _read_header(case.image_file, "image")
    if header.GetDimension() not in (2, 3):
        raise CaseError(
            f"the image {case.image_file} is {header.GetDimension()}-D; seg4seg evaluates 2-D and 3-D images"
        )
    with ThreadPoolExecutor(max_workers=1) as reader:
        image_read = reader.submit(_read, case.image_file, "image", case.case_id)
        row = _label_features(case, header, labels, nsd_tol_mm)
        image = image_read.result()
    image_array = sitk.GetArrayViewFromImage(image)
    if image_array.dtype.kind == "f" and not np.all(np.isfinite(image_array)):
        raise CaseError(f"the image {case.image_file} contains NaN or inf values; fix the image")
    row.update(geometry_features(image))
    row.update(_intensity_features(image_array))
    row.update(quality_features(image_array, row["intensity_p01"], row["intensity_p99"]))
    row[DESCRIPTOR_KEY] = image_descriptor(
        image_array, row["intensity_p01"], row["intensity_p99"]
    ).tolist()
    return row


def _label_features(
    case: FeatureCase, header: sitk.ImageFileReader, labels: LabelSet, nsd_tol_mm: float
) -> dict[str, object]:
    """Read the reference and prediction, check them against the image's grid, and compute the
    error metrics (per label and their means) and the uncertainty features."""
    reference = _read(case.reference_file, "reference", case.case_id)
    prediction = _read(case.prediction_file, "prediction", case.case_id)
    check_geometry(
        case.case_id,
        header,
        {
            "reference": (case.reference_file, reference),
            "prediction": (case.prediction_file, prediction),
        },
    )
    ref = _label_array(reference, case.reference_file, "reference")
    pred = _label_array(prediction, case.prediction_file, "prediction")
    box = joint_box(bounding_box(ref), bounding_box(pred))
    _check_label_values(ref, box, labels, case.reference_file, "reference")
    _check_label_values(pred, box, labels, case.prediction_file, "prediction")

    spacing_zyx = tuple(reversed(header.GetSpacing()))
    diagonal_mm = float(np.sqrt(np.sum((np.asarray(ref.shape) * np.asarray(spacing_zyx)) ** 2)))
    if box is not None:
        ref, pred = ref[box], pred[box]
    per_label = case_metrics(
        ref, pred, labels.foreground, spacing_zyx, nsd_tol_mm, labels.ignore_value, diagonal_mm
    )

    row: dict[str, object] = {"case_id": case.case_id}
    for metric in METRIC_NAMES:
        row[metric] = float(np.mean([getattr(m, metric) for m in per_label.values()]))
    for metric in METRIC_NAMES:
        for name, values in per_label.items():
            row[f"{metric}__{name}"] = getattr(values, metric)
    for name, values in per_label.items():
        row[f"ref_empty__{name}"] = values.ref_empty
        row[f"pred_empty__{name}"] = values.pred_empty

    row.update(dict.fromkeys(UNCERTAINTY_FEATURES))
    if case.probabilities_file is not None:
        row.update(_uncertainty(case, prediction, labels.region_based))
    return row


def image_descriptor(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """A model-free embedding of an image: a thumbnail (16x16 in 2-D, 8x8x8 in 3-D) and a 32-bin
    histogram of its intensities, both on intensities rescaled so that [p01, p99] maps to [0, 1].

    Used by the discovery methods when predictions come from another tool and no encoder
    embedding exists. Shape `(288,)` for 2-D images, `(544,)` for 3-D.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    side = 16 if image.ndim == 2 else 8
    # a strided subsample first, so huge volumes cost little; then linear resampling to the thumbnail
    step = [max(1, n // (4 * side)) for n in image.shape]
    small = image[tuple(slice(None, None, s) for s in step)].astype(np.float64)
    scale = (high - low) if high > low else 1.0
    small = np.clip((small - low) / scale, 0.0, 1.0)
    thumbnail = ndimage.zoom(
        small, [side / n for n in small.shape], order=1, grid_mode=True, mode="nearest"
    )
    histogram, _ = np.histogram(small, bins=32, range=(0.0, 1.0))
    return np.concatenate([thumbnail.ravel(), histogram / max(1, small.size)]).astype(np.float32)


def _uncertainty(case: FeatureCase, prediction: sitk.Image, region_based: bool) -> dict[str, float]:
    try:
        with np.load(case.probabilities_file) as archive:
            probabilities = archive["probabilities"]
    except (OSError, KeyError, ValueError) as exc:
        raise CaseError(
            f"cannot read probabilities {case.probabilities_file} ({exc}); rerun predict with --save-probabilities"
        ) from exc
    predicted = sitk.GetArrayViewFromImage(prediction) != 0
    if probabilities.ndim < 2 or probabilities[0].size != predicted.size:
        raise CaseError(
            f"probabilities {case.probabilities_file} have shape {probabilities.shape}, which does not fit the "
            f"prediction's {predicted.shape}; rerun predict with --save-probabilities"
        )
    return uncertainty_features(
        probabilities, predicted.reshape(probabilities.shape[1:]), region_based
    )
