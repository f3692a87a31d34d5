"""Incoherent failures for `seg4seg bench`: each distractor case gets its own random corruption.

Real test sets hold failures that no subgroup explains: one case with a motion burst, another with
part of the organ cut off, a third with a bright blob. Without them, listing the worst cases
"finds" any planted subgroup, and a benchmark measures error ranking instead of discovery. So
about 15% of the non-subgroup test cases of every scenario get a corruption whose kind and
parameters are drawn per case; they fail about as badly as the subgroup, are named as
distractors in `truth.json`, and never count as truth.

Every corruption is local (a region of the image, never the whole of it: a global change of
contrast or noise would be an acquisition shift, which is a subgroup), and a third of the
distractors combine two kinds, so that no two distractors look alike. The corruptions work on
any 2-D image with a binary label (synthetic or real), measured from the case itself: the
structure's mean intensity, the surrounding tissue's, and the structure's size.

- erase   part of the structure takes the surrounding tissue's intensity (the label keeps it)
- drop    part of the structure keeps a tenth to a third of its contrast, under local noise
- blob    two to four structure-like blobs of irregular shape away from the structure
- burst   strong local noise over part of the structure
- ghost   a shifted copy of the structure (motion ghosting), overlapping its edge
- band    a dark band two to five pixels wide across the structure (a signal dropout)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

KINDS = ("erase", "drop", "blob", "burst", "ghost", "band")
SECOND_KIND_SHARE = 1 / 3


def _disk(shape: tuple[int, int], center: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _soft(mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(float), sigma)


def _intensities(image: np.ndarray, inside: np.ndarray) -> tuple[float, float, float]:
    """(structure mean, surrounding tissue mean, structure radius in pixels)."""
    ring = ndimage.binary_dilation(inside, iterations=4) & ~inside
    fg = float(image[inside].mean())
    bg = float(image[ring].mean()) if ring.any() else float(image[~inside].mean())
    radius = float(np.sqrt(inside.sum() / np.pi))
    return fg, bg, max(radius, 2.0)


def corrupt(
    rng: np.random.Generator,
    image: np.ndarray,
    label: np.ndarray,
    kind: str | None = None,
    allowed: tuple[str, ...] = KINDS,
    second_kind_share: float = SECOND_KIND_SHARE,
) -> tuple[np.ndarray, dict]:
    """A corrupted copy of `image` (same dtype; the label is left as it is) and what was done.

    `kind` is drawn from `allowed` when None, and then a second, other kind is added to
    `second_kind_share` of the cases (a third by default; two kinds fail worse than one: mean
    Dice 0.58 against 0.70 on the development sets); every parameter is drawn from `rng`.
    """
    inside = label > 0
    if not inside.any():
        return image.copy(), {"kind": "none"}
    kinds = [kind or str(rng.choice(allowed))]
    if kind is None and rng.random() < second_kind_share:
        kinds.append(str(rng.choice([k for k in allowed if k != kinds[0]])))
    out = image.astype(np.float64)
    details = []
    for name in kinds:
        out, params = _apply(rng, out, inside, name)
        details.append({"kind": name, **params})
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(image.dtype), {"kind": "+".join(kinds), "parts": details}


def _apply(
    rng: np.random.Generator, out: np.ndarray, inside: np.ndarray, kind: str
) -> tuple[np.ndarray, dict]:
    out = out.copy()
    fg, bg, radius = _intensities(out, inside)
    contrast = fg - bg
    points = np.argwhere(inside)
    shape = out.shape
    if kind == "erase":
        # a disk centred inside the structure, covering 50-95% of it
        share = rng.uniform(0.5, 0.95)
        region = _region(shape, inside, points[rng.integers(len(points))], share, radius)
        weight = _soft(region) * inside
        out -= contrast * rng.uniform(0.85, 1.05) * weight
        params = {"share": round(float(share), 3)}
    elif kind == "drop":
        keep, share = rng.uniform(0.1, 0.35), rng.uniform(0.5, 0.95)
        region = _region(shape, inside, points[rng.integers(len(points))], share, radius)
        weight = _soft(region) * _soft(inside, 0.8)
        out -= contrast * (1.0 - keep) * weight
        out += abs(contrast) * rng.uniform(0.15, 0.35) * rng.standard_normal(shape) * weight
        params = {"kept_contrast": round(float(keep), 3), "share": round(float(share), 3)}
    elif kind == "blob":
        n_blobs = int(rng.integers(2, 5))
        far = ndimage.distance_transform_edt(~inside) > 3
        added = np.zeros(shape, bool)
        for _ in range(n_blobs):
            candidates = np.argwhere(far & ~added)
            if len(candidates) == 0:
                break
            center = candidates[rng.integers(len(candidates))]
            r = radius * rng.uniform(0.8, 1.3)
            noise = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
            blob = _disk(shape, center, r) & (noise > -0.3 * noise.std()) & far
            added |= blob
        out += contrast * rng.uniform(1.0, 1.3) * _soft(added, 0.7)
        params = {"n_blobs": n_blobs, "pixels": int(added.sum())}
    elif kind == "burst":
        center = points[rng.integers(len(points))]
        r = radius * rng.uniform(1.0, 1.8)
        sd = abs(contrast) * rng.uniform(1.6, 3.0)
        noise = ndimage.gaussian_filter(rng.standard_normal(shape), 0.7)
        out += sd * noise / noise.std() * _soft(_disk(shape, center, r))
        params = {"noise_sd": round(float(sd), 1)}
    elif kind == "ghost":
        angle = rng.uniform(0, 2 * np.pi)
        distance = radius * rng.uniform(0.8, 1.4)
        offset = (distance * np.sin(angle), distance * np.cos(angle))
        ghost = ndimage.shift(_soft(inside, 1.0), offset, order=1, mode="constant")
        out += contrast * rng.uniform(0.9, 1.2) * ghost
        params = {"shift_px": round(float(distance), 1)}
    elif kind == "band":
        center = points[rng.integers(len(points))]
        angle = rng.uniform(0, np.pi)
        width = rng.uniform(2.0, 5.0)
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        across = (xx - center[1]) * np.cos(angle) + (yy - center[0]) * np.sin(angle)
        band = _soft(np.abs(across) <= width / 2, 0.6)
        out -= (fg - min(fg, bg) + abs(contrast) * rng.uniform(0.2, 0.6)) * band
        params = {"width_px": round(float(width), 1)}
    else:
        raise ValueError(f"unknown distractor kind {kind!r} (choose from {', '.join(KINDS)})")
    return out, params


def _region(
    shape: tuple[int, int], inside: np.ndarray, center: np.ndarray, share: float, radius: float
) -> np.ndarray:
    """The smallest disk around `center` that covers `share` of the structure."""
    r = radius
    for r in np.linspace(0.3 * radius, 3.0 * radius, 40):
        if (_disk(shape, center, r) & inside).sum() >= share * inside.sum():
            break
    return _disk(shape, center, r)
