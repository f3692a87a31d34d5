"""SliceLine: rules over per-case metadata (conjunctions of predicates) where the error is high.

Our own implementation of Sagadeeva & Boehm, "SliceLine: Fast, Linear-Algebra-based Slice Finding
for ML Model Debugging", SIGMOD 2021. A predicate is one level of one column (`meta_site = B`, or
a quantile bin of a numeric column such as `2.5 < spacing_z <= 3`); a slice is a conjunction of
predicates on different columns. A slice S is scored

    sc(S) = alpha * (mean_error(S) / mean_error - 1) - (1 - alpha) * (n_cases / |S| - 1),

which rewards a high error and penalises a small size. The search walks the lattice level by
level: level 1 holds the single predicates; a level k+1 candidate joins two level-k slices that
share k-1 predicates (Apriori-style, so each candidate is made once) and is kept only if all of
its k+1 parents survived. Before a candidate is evaluated, the paper's upper bound on the score of
it and all its descendants, computed from its parents (size <= min parent size, error sum <= min
parent error sum, max error <= min parent max error), is compared with the current k-th best
score; the bound is exact pruning, so the result equals that of an exhaustive search.

Numeric columns are cut at (at most `n_bins - 1`) distinct quantiles that are data values; the
bottom and top bins are open (`x <= c1`, `x > c_last`) so that the rules apply to new cases
outside the range seen in `fit`. NaN gets a level of its own (`x is missing`), in numeric and
categorical columns alike, because missing metadata can itself mark a failing subgroup.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError

from seg4seg_cli.slicers.base import check_inputs, errors_from_quality

# a column with more levels than this is an identifier or free text, not a subgroup
MAX_LEVELS = 30
NUMERIC_OPS = ("<=", ">", "in")
MISSING_OP = "is missing"


class Predicate(NamedTuple):
    """One condition on one column.

    `op` is `"<="`, `">"`, `"in"` (value `(low, high)`, meaning `low < x <= high`), `"=="`
    (value: the level) or `"is missing"` (value `None`).
    """

    column: Hashable
    op: str
    value: Any


class _Found(NamedTuple):
    predicates: tuple[int, ...]
    score: float
    size: int
    error_sum: float


class SliceLineSlicer:
    """Top-`n_slices` metadata rules with the highest SliceLine score (Sagadeeva & Boehm 2021).

    Parameters
    ----------
    n_slices : int
        How many slices to return at most (K of the paper).
    alpha : float in (0, 1]
        Weight of the error term against the size term of the score. The size term is harsh:
        with alpha=0.6 (the paper's experiments) a slice of 1/6 of the cases needs about 4x the
        mean error to score above 0, which continuous segmentation errors (1 - Dice of a failing
        subgroup is typically 2-4x the mean) rarely reach; the default 0.9 reports such slices.
    max_predicates : int
        Most predicates in one rule (levels of the lattice).
    min_support : int
        Fewest cases a slice must hold.
    n_bins : int
        Quantile bins per numeric column (fewer where quantiles coincide).
    random_state : int
        Unused (the search is exhaustive and deterministic); kept for a uniform interface.

    Attributes
    ----------
    slices_ : list of dict
        Best first: `predicates` (list of `Predicate(column, op, value)`, sorted by column name),
        `description`, `score`, `size` and `mean_error` on the fit cases.
    descriptions_ : list of str
        The rule of each slice, e.g. `"meta_scanner = Y AND meta_site = B"`.
    memberships_ : ndarray of shape (n_cases, n_slices_found)
        `transform` on the fit cases.
    candidate_columns_ : list
        The columns that produced at least one predicate.
    """

    def __init__(
        self,
        n_slices: int = 5,
        alpha: float = 0.9,
        max_predicates: int = 4,
        min_support: int = 10,
        n_bins: int = 4,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.alpha = alpha
        self.max_predicates = max_predicates
        self.min_support = min_support
        self.n_bins = n_bins
        self.random_state = random_state

    def fit(
        self,
        embeddings: np.ndarray | None,
        quality: np.ndarray,
        features: pd.DataFrame | None = None,
    ) -> SliceLineSlicer:
        """Find the slices.

        Parameters
        ----------
        embeddings : ignored (may be None)
        quality : ndarray of shape (n_cases,)
            Higher-is-better per-case quality; the error is `errors_from_quality(quality)`.
        features : DataFrame with n_cases rows (same order as `quality`)
            Candidate columns; quality-metric columns must already be removed.
        """
        self._check_params()
        _, quality = check_inputs(None, quality)
        features = _check_features(features, n_cases=quality.shape[0])
        errors = errors_from_quality(quality)

        predicates, texts = [], []
        for column in sorted(features.columns, key=str):
            column_predicates, column_texts = _column_predicates(
                column, features[column], self.n_bins
            )
            predicates += column_predicates
            texts += column_texts
        self.candidate_columns_ = list(dict.fromkeys(p.column for p in predicates))

        members = _predicate_masks(predicates, features)
        column_ids = np.unique([str(p.column) for p in predicates], return_inverse=True)[1]
        found = find_slices(
            members,
            errors,
            column_ids.reshape(-1),
            n_slices=self.n_slices,
            alpha=self.alpha,
            max_predicates=self.max_predicates,
            min_support=self.min_support,
        )
        self.slices_ = [
            {
                "predicates": [predicates[i] for i in slice_.predicates],
                "description": " AND ".join(texts[i] for i in slice_.predicates),
                "score": slice_.score,
                "size": slice_.size,
                "mean_error": slice_.error_sum / slice_.size,
            }
            for slice_ in found
        ]
        self.descriptions_ = [slice_["description"] for slice_ in self.slices_]
        self.memberships_ = self.transform(None, features)
        return self

    def transform(
        self, embeddings: np.ndarray | None, features: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Membership of each case in each slice: 1.0 where it satisfies the rule, else 0.0.

        Uses only `features` (the bin edges learned in `fit`), never quality.

        Parameters
        ----------
        embeddings : ignored (may be None)
        features : DataFrame of shape (n_cases, ...) holding every column the rules use.

        Returns
        -------
        ndarray of shape (n_cases, n_slices_found), float64.
        """
        if not hasattr(self, "slices_"):
            raise NotFittedError("SliceLineSlicer is not fitted yet; call fit first")
        if not isinstance(features, pd.DataFrame):
            raise ValueError("features must be a pandas DataFrame with one row per case")
        used = {p.column for slice_ in self.slices_ for p in slice_["predicates"]}
        missing = sorted(str(c) for c in used if c not in features.columns)
        if missing:
            raise ValueError(f"features lacks the columns the slices use: {', '.join(missing)}")
        out = np.zeros((len(features), len(self.slices_)), dtype=np.float64)
        for k, slice_ in enumerate(self.slices_):
            masks = _predicate_masks(slice_["predicates"], features)
            out[:, k] = masks.all(axis=1)
        return out

    def _check_params(self) -> None:
        if int(self.n_slices) < 1:
            raise ValueError(f"n_slices must be at least 1, got {self.n_slices}")
        if not 0.0 < float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must lie in (0, 1], got {self.alpha}")
        if int(self.max_predicates) < 1:
            raise ValueError(f"max_predicates must be at least 1, got {self.max_predicates}")
        if int(self.min_support) < 1:
            raise ValueError(f"min_support must be at least 1, got {self.min_support}")
        if int(self.n_bins) < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")


def _check_features(features: pd.DataFrame | None, n_cases: int) -> pd.DataFrame:
    if features is None:
        raise ValueError("SliceLine needs features: a DataFrame of per-case columns to slice on")
    if not isinstance(features, pd.DataFrame):
        raise ValueError(f"features must be a pandas DataFrame, got {type(features).__name__}")
    if features.shape[1] == 0 or len(features) == 0:
        raise ValueError(f"features is empty (shape {features.shape}); SliceLine needs columns")
    if len(features) != n_cases:
        raise ValueError(f"features must have one row per case ({n_cases}), got {len(features)}")
    if not features.columns.is_unique:
        raise ValueError("features has duplicate column names")
    return features


# ---------------------------------------------------------------------------------------------
# predicates


def _column_predicates(
    column: Hashable, series: pd.Series, n_bins: int
) -> tuple[list[Predicate], list[str]]:
    """The predicates of one column and their descriptions; none for a useless column."""
    name = str(column)
    is_numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if is_numeric:
        values = _numeric_values(series)
        missing = np.isnan(values)
        present = values[~missing]
        distinct = np.unique(present)
        if distinct.size < 2:
            return [], []
        probabilities = np.arange(1, n_bins) / n_bins
        cuts = np.unique(np.quantile(present, probabilities, method="inverted_cdf"))
        cuts = cuts[cuts < distinct[-1]]
        if cuts.size == 0:  # one value holds most cases: split it from the largest
            cuts = distinct[-2:-1]
        cuts = [float(c) for c in cuts]
        labels = _format_cuts(cuts)
        predicates = [Predicate(column, "<=", cuts[0])]
        texts = [f"{name} <= {labels[0]}"]
        for i in range(1, len(cuts)):
            predicates.append(Predicate(column, "in", (cuts[i - 1], cuts[i])))
            texts.append(f"{labels[i - 1]} < {name} <= {labels[i]}")
        predicates.append(Predicate(column, ">", cuts[-1]))
        texts.append(f"{name} > {labels[-1]}")
    else:
        values = series.astype(object).to_numpy()
        missing = pd.isna(values)
        levels = list(pd.unique(values[~missing]))
        if len(levels) > MAX_LEVELS or len(levels) + bool(missing.any()) < 2:
            return [], []
        levels.sort(key=str)  # stable: equal strings keep their order of appearance
        predicates = [Predicate(column, "==", _plain(level)) for level in levels]
        texts = [f"{name} = {level}" for level in levels]
    if missing.any():
        predicates.append(Predicate(column, MISSING_OP, None))
        texts.append(f"{name} is missing")
    return predicates, texts


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars, so that rules print and compare plainly."""
    return value.item() if isinstance(value, np.generic) else value


def _format_cuts(cuts: Sequence[float]) -> list[str]:
    """Compact numbers (4 significant digits, more only where two cuts would print alike)."""
    for digits in range(4, 18):
        labels = [_format_number(c, digits) for c in cuts]
        if len(set(labels)) == len(labels):
            return labels
    return [repr(c) for c in cuts]


def _format_number(value: float, digits: int) -> str:
    if not math.isfinite(value) or value == 0.0:
        return str(value) if value != 0.0 else "0"
    integer_digits = math.floor(math.log10(abs(value))) + 1
    return np.format_float_positional(
        value, precision=max(digits, integer_digits), unique=True, fractional=False, trim="-"
    )


def _numeric_values(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan)


def _predicate_masks(predicates: Sequence[Predicate], features: pd.DataFrame) -> np.ndarray:
    """Boolean matrix of shape (n_cases, n_predicates): which cases satisfy which predicate."""
    masks = np.zeros((len(features), len(predicates)), dtype=bool)
    prepared: dict[tuple[Hashable, bool], np.ndarray] = {}
    for j, (column, op, value) in enumerate(predicates):
        numeric = op in NUMERIC_OPS
        key = (column, numeric)
        if key not in prepared:
            series = features[column]
            prepared[key] = _numeric_values(series) if numeric else series.astype(object).to_numpy()
        values = prepared[key]
        if op == "<=":
            masks[:, j] = values <= value
        elif op == ">":
            masks[:, j] = values > value
        elif op == "in":
            masks[:, j] = (values > value[0]) & (values <= value[1])
        elif op == "==":
            masks[:, j] = pd.Series(values, dtype=object).eq(value).to_numpy(dtype=bool)
        elif op == MISSING_OP:
            masks[:, j] = pd.isna(values)
        else:
            raise ValueError(f"unknown predicate operator {op!r}")
    return masks


# ---------------------------------------------------------------------------------------------
# the lattice search (pure arithmetic on arrays)


def slice_scores(
    sizes: np.ndarray, error_sums: np.ndarray, n_cases: int, mean_error: float, alpha: float
) -> np.ndarray:
    """SliceLine score of slices with the given sizes and error sums, shape (n_slices,)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return alpha * (error_sums / sizes / mean_error - 1.0) - (1.0 - alpha) * (
            n_cases / sizes - 1.0
        )


def score_upper_bounds(
    size_bounds: np.ndarray,
    error_bounds: np.ndarray,
    max_error_bounds: np.ndarray,
    n_cases: int,
    mean_error: float,
    alpha: float,
    min_support: int,
) -> np.ndarray:
    """Upper bound on the score of any slice with size in [min_support, size_bound], error sum
    <= error_bound and max error <= max_error_bound (the paper's bound), shape (n_slices,).

    For a size s the best error sum is min(error_bound, s * max_error_bound); the score is
    monotone in s on each side of s = error_bound / max_error_bound, so the maximum over the
    interval lies at one of its ends or at that point.
    """
    size_bounds = np.asarray(size_bounds, dtype=np.float64)
    low = np.maximum(np.minimum(float(min_support), size_bounds), 1.0)
    high = np.maximum(size_bounds, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        knee = np.where(max_error_bounds > 0, error_bounds / max_error_bounds, low)
    best = np.full(size_bounds.shape, -np.inf)
    for size in (low, np.clip(knee, low, high), high):
        error_sum = np.minimum(size * max_error_bounds, error_bounds)
        best = np.maximum(best, slice_scores(size, error_sum, n_cases, mean_error, alpha))
    return best


def find_slices(
    members: np.ndarray,
    errors: np.ndarray,
    predicate_columns: np.ndarray,
    n_slices: int,
    alpha: float,
    max_predicates: int,
    min_support: int,
) -> list[_Found]:
    """The `n_slices` best slices with positive score, best first.

    Parameters
    ----------
    members : bool ndarray of shape (n_cases, n_predicates)
    errors : ndarray of shape (n_cases,), in [0, 1]
    predicate_columns : int ndarray of shape (n_predicates,)
        The column of each predicate; a slice uses each column at most once.

    Ties in score go to fewer predicates, then to lower predicate indices.
    """
    n_cases, n_predicates = members.shape
    mean_error = float(errors.mean()) if n_cases else 0.0
    if mean_error <= 0.0 or n_predicates == 0:
        return []
    # cases in descending error: the first member of a slice then holds its max error
    order = np.argsort(-errors, kind="stable")
    errors = errors[order]
    by_predicate = np.ascontiguousarray(members[order].T)  # (n_predicates, n_cases)
    rows_of = _RowsOfSlice(by_predicate)
    best = _TopK(n_slices)

    def upper_bounds(sizes, error_sums, max_errors):
        return score_upper_bounds(
            sizes, error_sums, max_errors, n_cases, mean_error, alpha, min_support
        )

    slices = np.arange(n_predicates)[:, None]
    sizes = np.count_nonzero(by_predicate, axis=1)
    error_sums = by_predicate @ errors
    max_errors = np.where(sizes > 0, errors[by_predicate.argmax(axis=1)], 0.0)
    while True:
        scores = slice_scores(sizes, error_sums, n_cases, mean_error, alpha)
        valid = (sizes >= min_support) & (error_sums > 0)
        good = valid & (scores > 0)
        best.offer(slices[good], scores[good], sizes[good], error_sums[good])
        # a slice whose own bound cannot beat the k-th best has no descendant that can
        floor = best.floor() - 1e-9 * max(1.0, abs(best.floor()))
        parents = valid & (upper_bounds(sizes, error_sums, max_errors) > floor)
        if slices.shape[1] >= max_predicates or np.count_nonzero(parents) < 2:
            break
        slices, sizes, error_sums, max_errors = (
            slices[parents],
            sizes[parents],
            error_sums[parents],
            max_errors[parents],
        )
        candidates, parent_ids = _join(slices, predicate_columns)
        if len(candidates) == 0:
            break
        size_bounds = sizes[parent_ids].min(axis=1)
        error_bounds = error_sums[parent_ids].min(axis=1)
        max_error_bounds = max_errors[parent_ids].min(axis=1)
        keep = (size_bounds >= min_support) & (
            upper_bounds(size_bounds, error_bounds, max_error_bounds) > floor
        )
        slices = candidates[keep]
        if len(slices) == 0:
            break
        sizes, error_sums, max_errors = _evaluate(slices, rows_of, by_predicate, errors)
    return best.slices()


def _join(slices: np.ndarray, predicate_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Level k+1 candidates from the level-k slices (rows sorted lexicographically).

    Two slices that share their first k-1 predicates and whose last predicates lie on different
    columns make one candidate; a candidate is kept only if all k+1 of its parents are in
    `slices`. Returns the candidates, shape (n_candidates, k+1) and sorted lexicographically, and
    the row in `slices` of each parent, shape (n_candidates, k+1).
    """
    n_slices, k = slices.shape
    starts = np.flatnonzero(np.r_[True, np.any(slices[1:, :-1] != slices[:-1, :-1], axis=1)])
    stops = np.r_[starts[1:], n_slices]
    firsts, seconds = [], []
    for start, stop in zip(starts, stops, strict=True):
        if stop - start < 2:
            continue
        i, j = np.triu_indices(stop - start, 1)
        lasts = predicate_columns[slices[start:stop, -1]]
        distinct = lasts[i] != lasts[j]
        firsts.append(start + i[distinct])
        seconds.append(start + j[distinct])
    if not firsts:
        return np.zeros((0, k + 1), dtype=np.int64), np.zeros((0, k + 1), dtype=np.int64)
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    candidates = np.column_stack([slices[first], slices[second, -1]])
    parent_ids = np.empty((len(candidates), k + 1), dtype=np.int64)
    parent_ids[:, k] = first  # dropping the last predicate
    parent_ids[:, k - 1] = second  # dropping the one before
    for dropped in range(k - 1):
        parent_ids[:, dropped] = _find_rows(slices, np.delete(candidates, dropped, axis=1))
    complete = np.all(parent_ids >= 0, axis=1)
    return candidates[complete], parent_ids[complete]


def _find_rows(table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of `table` (unique rows) equal to each row of `queries`, or -1; shape (n_queries,)."""
    _, inverse = np.unique(np.concatenate([table, queries]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    row_of_group = np.full(inverse.max() + 1, -1, dtype=np.int64)
    row_of_group[inverse[: len(table)]] = np.arange(len(table))
    return row_of_group[inverse[len(table) :]]


class _RowsOfSlice:
    """Member cases (sorted row indices) of a slice, built from its prefix and cached along the
    current path, so that slices visited in lexicographic order share the work."""

    def __init__(self, by_predicate: np.ndarray) -> None:
        self._by_predicate = by_predicate
        self._path: list[tuple[int, np.ndarray]] = []

    def __call__(self, predicates: Sequence[int]) -> np.ndarray:
        shared = 0
        while (
            shared < min(len(self._path), len(predicates))
            and self._path[shared][0] == predicates[shared]
        ):
            shared += 1
        del self._path[shared:]
        for predicate in predicates[shared:]:
            if self._path:
                rows = self._path[-1][1]
                rows = rows[self._by_predicate[predicate, rows]]
            else:
                rows = np.flatnonzero(self._by_predicate[predicate])
            self._path.append((predicate, rows))
        return self._path[-1][1]


def _evaluate(
    slices: np.ndarray, rows_of: _RowsOfSlice, by_predicate: np.ndarray, errors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size, error sum and max error of each slice (rows sorted lexicographically), each of
    shape (n_slices,); `errors` must be in descending order."""
    n_slices = len(slices)
    sizes = np.zeros(n_slices, dtype=np.int64)
    error_sums = np.zeros(n_slices)
    max_errors = np.zeros(n_slices)
    prefixes = slices[:, :-1]
    starts = np.flatnonzero(np.r_[True, np.any(prefixes[1:] != prefixes[:-1], axis=1)])
    stops = np.r_[starts[1:], n_slices]
    for start, stop in zip(starts, stops, strict=True):
        rows = rows_of(prefixes[start].tolist())
        inside = by_predicate[np.ix_(slices[start:stop, -1], rows)]  # (n_group, n_rows)
        sizes[start:stop] = np.count_nonzero(inside, axis=1)
        error_sums[start:stop] = inside @ errors[rows]
        first = inside.argmax(axis=1)
        max_errors[start:stop] = np.where(sizes[start:stop] > 0, errors[rows][first], 0.0)
    return sizes, error_sums, max_errors


SCORE_DECIMALS = 10


class _TopK:
    """The k best slices so far, ordered by score, then fewer predicates, then indices."""

    def __init__(self, k: int) -> None:
        self._k = k
        self._found: list[_Found] = []

    def offer(
        self, slices: np.ndarray, scores: np.ndarray, sizes: np.ndarray, error_sums: np.ndarray
    ) -> None:
        if len(slices) == 0:
            return
        # scores rounded: the same cases reached by other predicates differ in the last bits of
        # their error sums, which must not beat the "fewer predicates" tie-break
        rounded = np.round(scores, SCORE_DECIMALS)
        keys = tuple(slices[:, i] for i in reversed(range(slices.shape[1]))) + (-rounded,)
        for i in np.lexsort(keys)[: self._k]:
            self._found.append(
                _Found(
                    tuple(int(p) for p in slices[i]),
                    float(scores[i]),
                    int(sizes[i]),
                    float(error_sums[i]),
                )
            )
        self._found.sort(
            key=lambda f: (-round(f.score, SCORE_DECIMALS), len(f.predicates), f.predicates)
        )
        del self._found[self._k :]

    def floor(self) -> float:
        """Score a new slice must beat: the k-th best, or 0 until there are k."""
        return self._found[-1].score if len(self._found) == self._k else 0.0

    def slices(self) -> list[_Found]:
        return list(self._found)
