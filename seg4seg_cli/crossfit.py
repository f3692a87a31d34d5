"""Cross-fitting: every case used to find subgroups, and every case tested once by a rule it did
not shape.

The cases are split at random (seeded) into K folds. The method is fitted K + 1 times: once on
all cases, which gives the subgroups reported (their members, strongest first), and once per
fold on the other K − 1 folds. For each reported subgroup and each fold, the fold's fit offers
the slice that best matches the subgroup on that fit's own cases (Jaccard); the held-out cases
of the fold that this slice assigns (from embeddings and features alone, never their quality)
are the subgroup's *tested* members, provided the fold's fit found the subgroup again (Jaccard
≥ 0.5 on the fit's own cases); a fit that did not find it assigns none of its held-out cases to
it. So every case is tested exactly once, by a slice found without its quality, the statistics
use all cases instead of a half, and a subgroup that resampling does not reproduce cannot reach
significance.

The fold fits are also resamples of the discovery: a subgroup's `stability` is the share of
them that found it again, by the same criterion, so a subgroup with stability 0 has no tested
member and no p-value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

STABLE_JACCARD = 0.5


@dataclass
class Candidate:
    """One slice of the fit on all cases, with its cross-fitted test membership."""

    method: str
    slice: int
    order: list[int]  # members (row indices), strongest first
    mask: np.ndarray  # (n_cases,) the same members as a boolean mask
    rule: str = ""
    tested: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (n_cases,) held-out
    stability: float = 0.0


def fold_of_each_case(n_cases: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold index (0..n_folds-1) of each case: a seeded permutation dealt round-robin."""
    folds = np.empty(n_cases, dtype=int)
    folds[np.random.default_rng([seed, 2]).permutation(n_cases)] = np.arange(n_cases) % n_folds
    return folds


def _rows(features: pd.DataFrame | None, index: np.ndarray) -> pd.DataFrame | None:
    return None if features is None else features.iloc[index].reset_index(drop=True)


def _jaccard_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard of every column of `a` (n, p) with every column of `b` (n, q): (p, q)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    inter = a.T @ b
    union = a.sum(axis=0)[:, None] + b.sum(axis=0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def cross_fit(
    method: str,
    make: Callable[[int], object],
    embeddings: np.ndarray | None,
    quality: np.ndarray,
    features: pd.DataFrame | None,
    folds: np.ndarray,
    min_size: int,
    tie_break: np.ndarray,
) -> list[Candidate]:
    """Fit `make(n_fit_cases)` on all cases and on each fold's complement; returns the slices of
    the full fit with at least `min_size` members, each with its tested members and stability.

    `make(n)` builds an unfitted slicer for a fit on n cases; `tie_break` orders members of
    equal strength (e.g. case ids).
    """
    n_cases = quality.shape[0]
    full = make(n_cases).fit(embeddings, quality, features)
    strengths = np.asarray(full.memberships_)
    candidates = []
    for j in range(strengths.shape[1]):
        members = np.flatnonzero(strengths[:, j] > 0)
        if members.size < min_size:
            continue
        order = sorted(members, key=lambda i, j=j: (-strengths[i, j], tie_break[i]))
        rule = full.descriptions_[j] if j < len(full.descriptions_) else ""
        candidates.append(Candidate(method, j, [int(i) for i in order], strengths[:, j] > 0, rule))
    if not candidates:
        return []
    full_masks = np.column_stack([c.mask for c in candidates])
    tested = np.zeros((n_cases, len(candidates)), bool)
    reappeared = np.zeros(len(candidates))
    n_folds = int(folds.max()) + 1
    for fold in range(n_folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        slicer = make(train.size).fit(
            embeddings[train] if embeddings is not None else None,
            quality[train],
            _rows(features, train),
        )
        fold_members = np.asarray(slicer.transform(embeddings, features)) > 0
        if fold_members.shape[1] == 0:
            continue
        # which of the fold's slices is each reported subgroup, and did the fit find it again:
        # judged on the fit's own cases only (the full fit's membership of the held-out cases
        # was shaped by their quality, so it must not decide whether they are tested)
        match = _jaccard_matrix(full_masks[train], fold_members[train])
        best = match.argmax(axis=1)
        for c in range(len(candidates)):
            if match[c, best[c]] >= STABLE_JACCARD:
                tested[test, c] = fold_members[test, best[c]]
                reappeared[c] += 1
    for c, candidate in enumerate(candidates):
        candidate.tested = tested[:, c]
        candidate.stability = float(reappeared[c] / n_folds)
    return candidates
