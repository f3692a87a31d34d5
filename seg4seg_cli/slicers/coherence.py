"""Is a slice a failure mode or a scatter of unrelated failures? Checks on the representation.

A coherent failure mode is a region of the representation: its members are one another's
neighbours. Unrelated failures that a linear model groups by a shared symptom (several kinds of
corruption that all lower the predicted volume) are not: each member's nearest cases are mostly
cases outside the slice.
"""

from __future__ import annotations

import numpy as np


def squared_distances(
    a: np.ndarray, b: np.ndarray, b_norms: np.ndarray | None = None
) -> np.ndarray:
    """Squared Euclidean distances `(len(a), len(b))`, never below 0 (rounding); `b_norms`, the
    row-vector of b's squared norms, when the caller reuses it across blocks of a."""
    if b_norms is None:
        b_norms = (b**2).sum(axis=1)[None, :]
    return np.maximum((a**2).sum(axis=1)[:, None] - 2 * a @ b.T + b_norms, 0.0)


def nearest_neighbours(
    x: np.ndarray, rows: np.ndarray | None, k: int, queries: np.ndarray | None = None
) -> np.ndarray:
    """Indices `(n_queries, k)` of the k nearest cases of `x`, nearest first (ties by index):
    for the cases `rows` of `x` themselves (each excluded from its own neighbours), or for the
    new points `queries` when `rows` is None. Computed in blocks of about 64 MB."""
    k = min(k, x.shape[0] - (0 if rows is None else 1))
    points = x[rows] if rows is not None else queries
    norms = (x**2).sum(axis=1)[None, :]
    result = np.empty((len(points), k), dtype=np.int64)
    batch = max(1, int(8_000_000 // max(1, x.shape[0])))
    for first in range(0, len(points), batch):
        squared = squared_distances(points[first : first + batch], x, norms)
        if rows is not None:
            block = rows[first : first + batch]
            squared[np.arange(len(block)), block] = np.inf
        nearest = np.argpartition(squared, k - 1, axis=1)[:, :k]
        order = np.lexsort((nearest, np.take_along_axis(squared, nearest, axis=1)), axis=1)
        result[first : first + batch] = np.take_along_axis(nearest, order, axis=1)
    return result


def neighbour_core(
    x: np.ndarray, members: np.ndarray, k: int, share: float, neighbours: np.ndarray | None = None
) -> np.ndarray:
    """The members that stay when every member with fewer than `share` of its `k` nearest cases
    (among all cases of `x`) in the slice is removed, repeatedly until none is: the part of the
    slice that is a region of the representation. Empty for a scatter of unrelated cases.
    `neighbours`: `nearest_neighbours(x, members, k)` when the caller has it already."""
    members = np.asarray(members)
    if members.size == 0 or k < 1:
        return members
    if neighbours is None:
        neighbours = nearest_neighbours(x, members, k)
    inside = np.zeros(x.shape[0], bool)
    inside[members] = True
    keep = np.ones(members.size, bool)
    while True:
        low = keep & (inside[neighbours].mean(axis=1) < share)
        if not low.any():
            return members[keep]
        keep &= ~low
        inside[members[low]] = False


def silhouette(x: np.ndarray, members: np.ndarray, seed: int, sample: int = 2000) -> float:
    """Mean silhouette of `members` against all other cases of `x`: (b - a) / max(a, b) with a
    the mean distance to the other members and b to the non-members (at most `sample` of each,
    drawn with `seed`). Positive when the members lie closer to one another than to the rest."""
    inside = np.zeros(x.shape[0], bool)
    inside[members] = True
    rng = np.random.default_rng(seed)
    own, other = np.flatnonzero(inside), np.flatnonzero(~inside)
    if own.size < 2 or other.size == 0:
        return 0.0
    if own.size > sample:
        own = np.sort(rng.choice(own, sample, replace=False))
    if other.size > sample:
        other = np.sort(rng.choice(other, sample, replace=False))

    within = np.sqrt(squared_distances(x[own], x[own]))
    a = within.sum(axis=1) / (own.size - 1)
    b = np.sqrt(squared_distances(x[own], x[other])).mean(axis=1)
    return float(np.mean((b - a) / np.maximum(np.maximum(a, b), 1e-12)))
