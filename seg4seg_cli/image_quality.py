"""Label-free image-quality descriptors of one image: its noise level and the sharpness of its edges.

Another scanner, another reconstruction kernel or a low-field acquisition changes how noisy and how
sharp every image is, and a model trained on other images can fail on all of them. These two
numbers say so without a reference, in the spirit of MRIQC's image-quality metrics, so that the
discovery methods can group such cases and a subgroup's description can name the cause:

- `image_noise`: the standard deviation of the noise by Immerkaer's fast estimator (the mean
  absolute response to the 3x3 mask [[1,-2,1],[-2,4,-2],[1,-2,1]], which cancels any locally
  planar signal, times sqrt(pi/2)/6), divided by the 1st-99th percentile range of the image.
- `image_sharpness`: the 99th percentile of the gradient magnitude (central differences, in
  intensity per voxel), divided by the same range: the steepness of the image's strongest edges.
  A blurred image has less; noise adds some.

Both are unitless, so they do not change with the intensity scale, and are computed in the image
plane (the last two array axes; for a volume, on at most `MAX_PLANES` planes evenly spaced through
it, the median over them), in voxel units: the voxel spacing is left out on purpose, as the model
sees voxels. J. Immerkaer, "Fast noise variance estimation", CVIU 64(2), 1996.
"""

from __future__ import annotations

import numpy as np

QUALITY_FEATURES = ("image_noise", "image_sharpness")
MAX_PLANES = 16  # planes of a volume measured; enough for a median, cheap for a CT
_FACTOR = np.sqrt(np.pi / 2) / 6.0


def _planes(image: np.ndarray) -> np.ndarray:
    """The image as a stack of 2-D planes `(n, rows, cols)`: one for 2-D images (a leading
    singleton axis dropped), at most MAX_PLANES evenly spaced ones for volumes."""
    image = np.asarray(image)
    while image.ndim > 2 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        return image[None].astype(np.float64)
    if image.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D image, got shape {image.shape}")
    index = np.unique(np.linspace(0, image.shape[0] - 1, min(MAX_PLANES, image.shape[0])).round())
    return image[index.astype(int)].astype(np.float64)


def noise_sd(plane: np.ndarray) -> float:
    """Immerkaer's estimate of the noise standard deviation of one 2-D plane (0 below 3x3)."""
    if min(plane.shape) < 3:
        return 0.0
    a = plane
    # the mask [[1,-2,1],[-2,4,-2],[1,-2,1]] at every interior pixel, by shifted slices
    response = (
        a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:]
        - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1] - 2 * a[1:-1, 2:]
        + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:]
    )  # fmt: skip
    return float(_FACTOR * np.abs(response).mean())


def edge_strength(plane: np.ndarray) -> float:
    """99th percentile of the gradient magnitude of one 2-D plane (0 below 2x2)."""
    if min(plane.shape) < 2:
        return 0.0
    rows, cols = np.gradient(plane)
    return float(np.percentile(np.hypot(rows, cols), 99))


def quality_features(image: np.ndarray, p01: float, p99: float) -> dict[str, float]:
    """`image_noise` and `image_sharpness` of an image whose 1st and 99th intensity percentiles
    are `p01` and `p99` (0 for both when the image is constant over that range)."""
    span = float(p99) - float(p01)
    if not np.isfinite(span) or span <= 0:
        return dict.fromkeys(QUALITY_FEATURES, 0.0)
    planes = _planes(image)
    return {
        "image_noise": float(np.median([noise_sd(p) for p in planes])) / span,
        "image_sharpness": float(np.median([edge_strength(p) for p in planes])) / span,
    }
