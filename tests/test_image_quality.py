"""Image-quality descriptors (image_noise, image_sharpness) against brute-force references and the
known noise of synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from seg4seg_cli.image_quality import MAX_PLANES, edge_strength, noise_sd, quality_features

MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], float)


def brute_noise(plane: np.ndarray) -> float:
    """Immerkaer's formula as printed: sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N|."""
    rows, cols = plane.shape
    total = 0.0
    for i in range(1, rows - 1):
        for j in range(1, cols - 1):
            total += abs(float((plane[i - 1 : i + 2, j - 1 : j + 2] * MASK).sum()))
    return np.sqrt(np.pi / 2) / (6 * (rows - 2) * (cols - 2)) * total


def brute_gradient_p99(plane: np.ndarray) -> float:
    """Central differences inside, one-sided at the borders, one pixel at a time."""
    rows, cols = plane.shape
    magnitude = []
    for i in range(rows):
        for j in range(cols):
            di = (
                (plane[i + 1, j] - plane[i - 1, j]) / 2 if 0 < i < rows - 1
                else (plane[1, j] - plane[0, j]) if i == 0 else (plane[i, j] - plane[i - 1, j])
            )  # fmt: skip
            dj = (
                (plane[i, j + 1] - plane[i, j - 1]) / 2 if 0 < j < cols - 1
                else (plane[i, 1] - plane[i, 0]) if j == 0 else (plane[i, j] - plane[i, j - 1])
            )  # fmt: skip
            magnitude.append(np.sqrt(di**2 + dj**2))
    ordered = np.sort(magnitude)
    position = 0.99 * (len(ordered) - 1)  # linear interpolation between closest ranks
    low = int(np.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (position - low) * (ordered[high] - ordered[low]))


@pytest.mark.parametrize("seed", range(6))
def test_noise_and_edges_match_brute_force_on_random_planes(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(3, 40, size=2))
    plane = rng.normal(0, rng.uniform(0.1, 50), shape) + rng.uniform(-100, 100)
    if seed % 2:  # an integer image, as most scanners write
        plane = np.round(plane * 10)
    assert noise_sd(plane) == pytest.approx(brute_noise(plane), rel=1e-9)
    assert edge_strength(plane) == pytest.approx(brute_gradient_p99(plane), rel=1e-9)


def test_noise_estimate_recovers_the_noise_of_a_smooth_image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256].astype(float)
    ramp = 3.0 * yy - 2.0 * xx + 500  # planar: the mask cancels it exactly
    assert noise_sd(ramp) == pytest.approx(0.0, abs=1e-9)
    for sd in (1.0, 12.0, 80.0):
        assert noise_sd(ramp + rng.normal(0, sd, ramp.shape)) == pytest.approx(sd, rel=0.03)


def test_descriptors_ignore_the_intensity_scale_and_see_noise_and_blur():
    rng = np.random.default_rng(1)
    image = np.zeros((96, 96))
    image[30:70, 25:60] = 400.0
    noisy = image + rng.normal(0, 20, image.shape)

    def features(a):
        p01, p99 = np.percentile(a, [1, 99])
        return quality_features(a, p01, p99)

    base = features(noisy)
    scaled = features(noisy * 7.5 - 300)
    for name in base:
        assert scaled[name] == pytest.approx(base[name], rel=1e-9)
    blurred = features(ndimage.gaussian_filter(noisy, 1.6))
    assert blurred["image_noise"] < 0.5 * base["image_noise"]
    assert blurred["image_sharpness"] < 0.6 * base["image_sharpness"]
    noisier = features(image + rng.normal(0, 80, image.shape))
    assert noisier["image_noise"] > 2 * base["image_noise"]


def test_volumes_use_at_most_max_planes_and_their_median():
    rng = np.random.default_rng(2)
    volume = rng.normal(0, 1, (40, 24, 24))
    volume[::2] *= 10  # every other plane is ten times noisier
    result = quality_features(volume, -1.0, 1.0)
    index = np.unique(np.linspace(0, 39, MAX_PLANES).round()).astype(int)
    expected = np.median([brute_noise(volume[i]) for i in index]) / 2.0
    assert result["image_noise"] == pytest.approx(expected, rel=1e-9)
    # a 2-D image stored with a leading axis of one is the 2-D image
    plane = volume[1]
    assert quality_features(plane[None], -1, 1) == quality_features(plane, -1, 1)


def test_constant_or_tiny_images_give_zero_not_nan():
    assert quality_features(np.full((8, 8), 5.0), 5.0, 5.0) == {
        "image_noise": 0.0,
        "image_sharpness": 0.0,
    }
    assert noise_sd(np.ones((2, 9))) == 0.0
    assert edge_strength(np.ones((1, 9))) == 0.0
