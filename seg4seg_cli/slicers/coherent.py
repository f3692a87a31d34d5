"""Coherent-failure discovery, seg4seg's default: failures that the representation predicts.

A systematic failure is one that can be predicted from what the model sees; a case with its own
odd problem cannot. So instead of grouping the worst cases, this method asks which failures are
predictable from the representation without their own label, and groups those:

1. Representation: the encoder embedding, standardised and reduced by PCA (whitened), beside the
   label-free columns of cases.parquet (image intensity and quality statistics, predicted volume and
   component counts, uncertainty, numeric metadata; never a column that needs the reference),
   log-scaled when they are counts or volumes, standardised and clipped to ±`clip_sd` so that a
   single odd case cannot dominate a linear model. `use_outputs=False` leaves out the columns
   computed from the model's output (predicted volume and components, entropy): fewer false
   alarms from unrelated failures that share a symptom, but artefacts the model segments as
   structure are then found less often (docs/methods.md).
2. Failing cases: the `fail_share` of cases with the largest error (1 − quality).
3. Predicted failure (`predictor="neighbours"`): each case's probability of failing is the share
   of failing cases among its `predictor_k` nearest cases, itself excluded (a leave-one-out
   prediction), in the representation with the PCA scores unwhitened. A scattered failure gets
   a low probability (its neighbours are ordinary cases); a member of a coherent failure a high
   one (its neighbours fail too). Unlike a linear model, the vote does not join failures that
   lie on opposite sides of the normal cases (an artefact the model segments as extra
   structure and erased parts that shrink the prediction). `predictor="linear"`, the default
   before 2026-12-03, is a balanced L2 logistic regression of "failing" on the representation,
   `n_folds`-fold and repeated `n_repeats` times with shuffled folds, out of fold.
4. Candidates: cases ordered by that probability; the prefix whose actual error differs most
   from the rest's (the largest two-sample t statistic), between `min_slice_size` cases and
   `max_share` of all.
5. Core (`prune`): a candidate that lies far from the other candidates (mean distance to its
   `n_neighbors` nearest) is a scattered failure that the prediction happened to score high;
   the candidates split into near and far at the threshold with the largest between-group
   variance (Otsu), and the far ones are dropped when the two groups are clearly apart
   (`prune_separation`).
6. Slice (`expand`): every case that looks like the core, failed or not. A second out-of-fold
   logistic regression, core against the rest, and the cases it gives a probability of at least
   0.5. Members of a failure mode on which the model happened to do well belong to it too.
7. Coherence (`coherence="neighbours"`): a failure mode is a region of the representation, so
   its members are one another's neighbours. Every member with fewer than `coherence_share` of
   its `coherence_k` nearest cases in the slice is removed, repeatedly; a slice whose remaining
   core is smaller than `coherence_min` x `min_slice_size` is a scatter of unrelated failures
   that share a symptom (several kinds of corruption that all lower the predicted volume): it is
   dropped and its cases are not searched again. Distances are taken in the representation with
   the PCA scores unwhitened (`coherence_space="pca"`; whitening shrinks a component that holds
   a shift to the noise components' spread) and each dimension scaled by the slice classifier's
   |weight| to the power `coherence_gamma`, so that dimensions the slice is not about count
   less. (`coherence="silhouette"`, the check before 2026-12-03, keeps a slice whose mean
   silhouette is at least `min_silhouette`.)
8. Further slices repeat steps 2-7 on the cases not yet in a slice (another failure mode).

Membership strength orders a slice's cases, strongest first: the mean of two percentiles among
the slice's fit members, of closeness to the other members (the mean distance to the nearest
half of them, `near_k=None`) and of the share of the case's `coherence_k` nearest fit cases that
are members. A scattered failure lies far from the others and among non-members, and a tight
little group of unrelated failures inside a slice (several erased structures beside a slice of
artefacts) lies far from the slice's main mode, so the first cases of a slice are its most
typical. `order="prob_near_share"` adds the percentile of the predicted probability (the order
until 2026-12-03, with closeness to the `n_neighbors` nearest members); it ranks the cases the
slice's linear classifier is surest of first, which are its most extreme, distractors among
them. `order="prob_near"` leaves out the share.

`transform` needs no quality: a case belongs to the first slice whose final classifier (fitted on
all fit cases) gives it a probability at or above that slice's threshold (and, without `expand`,
that lies as close to the core as its members do). Slices found on some cases can so be tested
honestly on others.

The defaults (`fail_share` 0.2, `C` 0.1, Otsu pruning, expansion) were chosen on the benchmark's
development seeds 100 and 101; the silhouette of 0 on those and on further development test sets
(seeds 200-203 of every scenario, 200-219 of the null), never on the seeds reported; the
neighbour check that replaced the silhouette, and the neighbour share in the member order, on
the same development sets; the neighbour vote (10 neighbours) with the every-stage embedding and
the image-quality columns on those sets with `few`'s seeds 200-203 added, and with them the
neighbour check's share of 0.25 (docs/methods.md). The member order by closeness to the nearest
half and the share, and the neighbour check's smaller core (`coherence_min` 0.8, was 1.0), on
the development sets and two further draws (seeds 220-239), then confirmed on a fresh draw
(seeds 240-249) by a criterion written before it was drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from seg4seg_cli.slicers.base import EmbeddingReducer, check_inputs, errors_from_quality
from seg4seg_cli.slicers.coherence import (
    nearest_neighbours,
    neighbour_core,
    silhouette,
    squared_distances,
)
from seg4seg_cli.slicers.logistic import BalancedLogistic

# columns computed from the model's output (what it predicted), not from what it sees
MODEL_OUTPUTS = ("vol_pred", "n_comp_pred", "entropy")
COHERENCE_CHECKS = ("neighbours", "silhouette", "none")
ORDERS = ("near_share", "prob_near_share", "prob_near")
SPACES = ("pca", "whitened")
PREDICTORS = ("neighbours", "linear")
LARGE = 2000  # cases above which one out-of-fold split replaces `n_repeats`
# columns that need the reference (or compare with it) are never part of the representation
_REFERENCE_MARKERS = ("_ref", "ref_empty", "pred_empty")


def label_free_columns(features: pd.DataFrame | None) -> list[str]:
    """Numeric, non-boolean columns that describe a case without its reference."""
    if features is None:
        return []
    keep = []
    for column in features.columns:
        series = features[column]
        if column == "case_id" or any(marker in column for marker in _REFERENCE_MARKERS):
            continue
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        keep.append(column)
    return keep


class FeatureScaler:
    """log1p of non-negative skewed columns, standardisation and clipping, learnt on fit cases."""

    def __init__(self, clip_sd: float = 3.0) -> None:
        self.clip_sd = clip_sd

    def fit(self, features: pd.DataFrame) -> FeatureScaler:
        columns = label_free_columns(features)
        raw = features[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(raw)
        usable = finite.all(axis=0)
        values = raw[:, usable]
        spread = values.std(axis=0) if values.size else np.zeros(0)
        keep = spread > 1e-9
        self.columns_ = [c for c, ok in zip(np.array(columns)[usable], keep, strict=True) if ok]
        values = values[:, keep]
        self.log_ = (values >= 0).all(axis=0) & (np.abs(_skew(values)) > 1.0)
        values = np.where(self.log_, np.log1p(np.maximum(values, 0)), values)
        self.mean_ = values.mean(axis=0)
        scale = values.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return self

    def transform(self, features: pd.DataFrame | None, n_cases: int) -> np.ndarray:
        if not self.columns_:
            return np.zeros((n_cases, 0))
        if features is None or any(c not in features.columns for c in self.columns_):
            raise ValueError(
                f"this slicer was fitted with feature columns {', '.join(self.columns_)}; "
                "pass the same columns to transform"
            )
        values = features[self.columns_].to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.where(self.log_, np.log1p(np.maximum(values, 0)), values)
        scaled = (values - self.mean_) / self.scale_
        return np.clip(np.nan_to_num(scaled), -self.clip_sd, self.clip_sd)


def _skew(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=0)
    sd = centred.std(axis=0)
    return np.where(sd > 0, (centred**3).mean(axis=0) / np.maximum(sd, 1e-12) ** 3, 0.0)


def best_cut(error_sorted: np.ndarray, low: int, high: int) -> tuple[int, float]:
    """Prefix length m in [low, high] of cases sorted by predicted failure that maximises the
    two-sample t statistic of the actual error (prefix against the rest); returns (m, t)."""
    n = error_sorted.size
    high = min(high, n - 2)
    if high < low:
        return 0, 0.0
    total, total_sq = error_sorted.sum(), (error_sorted**2).sum()
    m = np.arange(low, high + 1)
    cum, cum_sq = np.cumsum(error_sorted)[m - 1], np.cumsum(error_sorted**2)[m - 1]
    mean_in, mean_out = cum / m, (total - cum) / (n - m)
    var_in = np.maximum(cum_sq / m - mean_in**2, 0.0)
    var_out = np.maximum((total_sq - cum_sq) / (n - m) - mean_out**2, 0.0)
    t = (mean_in - mean_out) / np.sqrt(var_in / m + var_out / (n - m) + 1e-12)
    best = int(np.argmax(t))  # the first of equal maxima, the smallest prefix
    return int(m[best]), float(t[best])


def otsu_split(values: np.ndarray) -> tuple[float, float]:
    """Threshold between the two groups of 1-D `values` with the largest between-group variance,
    and how far apart the groups are (difference of means over the pooled standard deviation)."""
    ordered = np.sort(values)
    n = ordered.size
    if n < 4:
        return (float(ordered[-1]) if n else 0.0), 0.0
    cum = np.cumsum(ordered)
    sizes = np.arange(1, n)
    mean_low = cum[:-1] / sizes
    mean_high = (cum[-1] - cum[:-1]) / (n - sizes)
    between = sizes * (n - sizes) * (mean_high - mean_low) ** 2
    i = int(np.argmax(between))
    low, high = ordered[: i + 1], ordered[i + 1 :]
    pooled = np.sqrt((low.var() * low.size + high.var() * high.size) / n)
    separation = float((high.mean() - low.mean()) / pooled) if pooled > 0 else 0.0
    return float(ordered[i]), separation


class CoherentSlicer:
    """Slices of cases whose failure is predicted out of fold from the representation.

    Parameters: `n_slices` at most; `n_pca_components` (32, fewer when there are few cases: at
    most one per `pca_cases_per_dim`); `fail_share` of cases labelled failing; `C`, the inverse
    L2 strength of the logistic regression; `n_folds`, `n_repeats` of the out-of-fold
    prediction; `max_share` of all cases one slice may hold; `min_slice_size`; `clip_sd`;
    `use_features` (False: the embedding alone); `use_outputs` (True: also the model-output
    columns); `coherence` ("neighbours", "silhouette" or "none") with `coherence_k`,
    `coherence_share`, `coherence_min`, `coherence_gamma`, `coherence_space` ("pca" or
    "whitened"), or `min_silhouette`; `order` of the members ("near_share", "prob_near_share"
    or "prob_near") with `near_k`, the members closeness is measured to (None: half of them);
    `predictor` of failure ("neighbours", with `predictor_k`, or "linear"); `random_state`.
    """

    def __init__(
        self,
        n_slices: int = 5,
        n_pca_components: int = 32,
        pca_cases_per_dim: float = 4.0,
        fail_share: float = 0.2,
        C: float = 0.1,
        n_folds: int = 5,
        n_repeats: int = 3,
        max_share: float = 0.4,
        min_slice_size: int = 10,
        clip_sd: float = 3.0,
        use_features: bool = True,
        n_neighbors: int = 5,
        prune: str = "otsu",
        prune_separation: float = 2.5,
        fence_mads: float = 3.0,
        expand: bool = True,
        min_silhouette: float | None = 0.0,
        use_outputs: bool = True,
        coherence: str = "neighbours",
        coherence_k: int = 15,
        coherence_share: float = 0.25,
        coherence_min: float = 0.8,
        coherence_gamma: float = 0.1,
        order: str = "near_share",
        coherence_space: str = "pca",
        predictor: str = "neighbours",
        predictor_k: int = 10,
        near_k: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.n_pca_components = n_pca_components
        self.pca_cases_per_dim = pca_cases_per_dim
        self.fail_share = fail_share
        self.C = C
        self.n_folds = n_folds
        self.n_repeats = n_repeats
        self.max_share = max_share
        self.min_slice_size = min_slice_size
        self.clip_sd = clip_sd
        self.use_features = use_features
        self.n_neighbors = n_neighbors
        self.prune = prune
        self.prune_separation = prune_separation
        self.fence_mads = fence_mads
        self.expand = expand
        self.min_silhouette = min_silhouette
        self.use_outputs = use_outputs
        self.coherence = coherence
        self.coherence_k = coherence_k
        self.coherence_share = coherence_share
        self.coherence_min = coherence_min
        self.coherence_gamma = coherence_gamma
        self.order = order
        self.coherence_space = coherence_space
        self.predictor = predictor
        self.predictor_k = predictor_k
        self.near_k = near_k
        self.random_state = random_state

    # ------------------------------------------------------------------ representation
    def _represent(self, embeddings: np.ndarray | None, features, n_cases: int) -> np.ndarray:
        parts = []
        if embeddings is not None:
            z = self.reducer_.transform(embeddings) / self.pc_scale_
            parts.append(np.clip(z, -self.clip_sd, self.clip_sd))
        if self.scaler_ is not None:
            parts.append(self.scaler_.transform(features, n_cases))
        return np.hstack(parts) if parts else np.zeros((n_cases, 0))

    def fit_representation(self, embeddings, features, n_cases: int) -> np.ndarray:
        """Learn the representation (reducer, feature scaler) and return it, `(n_cases, d)`."""
        self.reducer_ = None
        if embeddings is not None:
            dims = min(self.n_pca_components, max(2, int(n_cases // self.pca_cases_per_dim)))
            self.reducer_ = EmbeddingReducer(dims, self.random_state).fit(embeddings)
            scores = self.reducer_.transform(embeddings)
            spread = scores.std(axis=0)
            self.pc_scale_ = np.where(spread > 1e-12, spread, 1.0)
        use = self.use_features and isinstance(features, pd.DataFrame)
        if use and not self.use_outputs:
            features = features[[c for c in features.columns if not c.startswith(MODEL_OUTPUTS)]]
        self.scaler_ = FeatureScaler(self.clip_sd).fit(features) if use else None
        if self.scaler_ is not None and not self.scaler_.columns_:
            self.scaler_ = None
        representation = self._represent(embeddings, features, n_cases)
        if representation.shape[1] == 0:
            raise ValueError(
                "CoherentSlicer needs embeddings or numeric label-free feature columns"
            )
        return representation

    # ------------------------------------------------------------------ prediction
    def _classifier(self) -> BalancedLogistic:
        return BalancedLogistic(C=self.C)

    def _out_of_fold(self, x: np.ndarray, failing: np.ndarray, salt: int) -> np.ndarray:
        """Mean out-of-fold probability of failing over `n_repeats` shuffled K-fold splits."""
        n_pos = int(failing.sum())
        folds = min(self.n_folds, n_pos, failing.size - n_pos)
        if folds < 2:
            return np.zeros(failing.size)
        predicted = np.zeros(failing.size)
        # repeats steady the prediction of small test sets; at scale one split is as steady
        repeats = self.n_repeats if failing.size <= LARGE else 1
        for repeat in range(repeats):
            splitter = StratifiedKFold(
                folds, shuffle=True, random_state=self.random_state * 1000 + salt * 37 + repeat
            )
            for train, test in splitter.split(x, failing):
                model = self._classifier().fit(x[train], failing[train])
                predicted[test] += model.predict_proba(x[test])
        return predicted / repeats

    def _failure_probability(self, x: np.ndarray, failing: np.ndarray, salt: int) -> np.ndarray:
        """Each case's probability of failing, predicted without its own label: the share of
        failing cases among its `predictor_k` nearest cases, or out of fold by the linear model."""
        if self.predictor == "linear":
            return self._out_of_fold(x, failing, salt)
        scaled = x * self._space_scale(x.shape[1])
        neighbours = nearest_neighbours(scaled, np.arange(len(x)), self.predictor_k)
        return failing[neighbours].mean(axis=1)

    # ------------------------------------------------------------------ estimator API
    def fit(
        self, embeddings: np.ndarray | None, quality: np.ndarray, features=None
    ) -> CoherentSlicer:
        """`embeddings` `(n_cases, n_dims)` or None, `quality` `(n_cases,)` higher-is-better,
        `features` a DataFrame of per-case columns (only label-free ones are used)."""
        for name, value, allowed in (
            ("coherence", self.coherence, COHERENCE_CHECKS),
            ("order", self.order, ORDERS),
            ("coherence_space", self.coherence_space, SPACES),
            ("predictor", self.predictor, PREDICTORS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        embeddings, quality = check_inputs(embeddings, quality)
        n_cases = quality.shape[0]
        x = self.fit_representation(embeddings, features, n_cases)
        error = errors_from_quality(quality)
        high = int(np.floor(self.max_share * n_cases))
        remaining = np.ones(n_cases, bool)
        self.models_, self.thresholds_, self.t_statistics_ = [], [], []
        self.member_points_, self.max_distance_, member_index = [], [], []
        member_neighbours = []  # per slice, its members' neighbours (by increasing case index)
        self.predicted_ = np.zeros((n_cases, 0))
        for salt in range(self.n_slices):
            index = np.flatnonzero(remaining)
            if index.size < 2 * self.min_slice_size:
                break
            cutoff = np.quantile(error[index], 1.0 - self.fail_share)
            failing = error[index] >= cutoff
            if failing.all():  # most cases tie at the lowest error (e.g. unchanged cases)
                failing = error[index] > cutoff
            if failing.all() or not failing.any():
                break
            probability = self._failure_probability(x[index], failing, salt)
            order = np.lexsort((index, -probability))
            m, t = best_cut(error[index][order], self.min_slice_size, high)
            if m == 0 or t <= 0:
                break
            j = len(self.models_)
            self.models_.append(self._classifier().fit(x[index], failing))
            self.thresholds_.append(float(probability[order][m - 1]))
            self.t_statistics_.append(t)
            members = self._core(x, index[order][:m], j)
            if self.expand:
                probability, members = self._expand(x, index, members, salt, j, probability)
            members = np.sort(members)  # the order of the fit cases, as `fit_assigned_ == j`
            neighbours = self._member_neighbours(x, members, j)
            if not self._is_coherent(x, members, j, neighbours):
                # scattered, not a coherent failure: dropped, and its cases not searched again
                self._drop_last()
                remaining[members] = False
                continue
            member_neighbours.append(neighbours)
            column = np.zeros(n_cases)
            column[index] = probability
            self.predicted_ = np.hstack([self.predicted_, column[:, None]])
            remaining[members] = False
            member_index.append(members)
        self.descriptions_ = [""] * len(self.models_)
        self.fit_assigned_ = np.full(n_cases, -1)
        for j, members in enumerate(member_index):
            self.fit_assigned_[members] = j
        # each fit member's distance to the other members, computed once: it is both the
        # reference the strengths of any case are ranked against and the fit cases' own
        fit_distances = [
            self._neighbour_distance(x[self.fit_assigned_ == j], j, True, self._near_k(j))
            for j in range(len(self.models_))
        ]
        self.member_distance_ = [np.sort(d) for d in fit_distances]
        self.member_probability_ = [
            np.sort(self.predicted_[members, j]) for j, members in enumerate(member_index)
        ]
        self.fit_points_ = x
        # each fit member's share of members among its neighbours, from the neighbours found
        # for the coherence check (members of later slices count as non-members)
        fit_shares = [
            np.zeros(0) if nb is None else (self.fit_assigned_[nb] == j).mean(axis=1)
            for j, nb in enumerate(member_neighbours)
        ]
        self.member_share_ = [np.sort(v) for v in fit_shares]
        self.memberships_ = self._strengths(
            x, self.predicted_, self.fit_assigned_, fit_distances, fit_shares
        )
        return self

    def _member_neighbours(self, x: np.ndarray, members: np.ndarray, j: int) -> np.ndarray | None:
        """The `coherence_k` nearest cases of each member of slice j in its metric, or None
        when neither the coherence check nor the member order needs them."""
        if self.coherence != "neighbours" and self.order == "prob_near":
            return None
        return nearest_neighbours(x * self._metric(j), members, self.coherence_k)

    def _is_coherent(
        self, x: np.ndarray, members: np.ndarray, j: int, neighbours: np.ndarray | None
    ) -> bool:
        """Whether slice j is a failure mode rather than a scatter of unrelated failures."""
        if self.coherence == "neighbours":
            # `neighbours` were found in slice j's metric (`_member_neighbours`, never None with
            # this check), so `x` serves here only for its number of cases
            core = neighbour_core(x, members, self.coherence_k, self.coherence_share, neighbours)
            return core.size >= self.coherence_min * self.min_slice_size
        if self.coherence == "silhouette" and self.min_silhouette is not None:
            return silhouette(x, members, self.random_state) >= self.min_silhouette
        return True

    def _drop_last(self) -> None:
        for bookkeeping in (
            self.models_,
            self.thresholds_,
            self.t_statistics_,
            self.member_points_,
            self.max_distance_,
        ):
            bookkeeping.pop()

    def _core(self, x: np.ndarray, members: np.ndarray, j: int) -> np.ndarray:
        """Slice j's candidates without those far from the others (scattered failures that the
        prediction happened to score high); records the member points and distance limit."""
        self.member_points_.append(x[members])
        self.max_distance_.append(np.inf)
        if self.prune == "none":
            return members
        distance = self._neighbour_distance(x[members], j, fitted=True)
        if self.prune == "otsu":
            limit, separation = otsu_split(distance)
        else:
            centre = np.median(distance)
            mad = 1.4826 * np.median(np.abs(distance - centre))
            limit, separation = centre + self.fence_mads * mad, np.inf
        core = distance <= limit
        if core.sum() < self.min_slice_size or separation < self.prune_separation:
            return members
        members = members[core]
        self.member_points_[j] = x[members]
        self.max_distance_[j] = float(self._neighbour_distance(x[members], j, fitted=True).max())
        return members

    def _expand(
        self,
        x: np.ndarray,
        index: np.ndarray,
        members: np.ndarray,
        salt: int,
        j: int,
        probability: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every case of `index` that looks like slice j's core, failed or not: the out-of-fold
        probability of core-likeness (replacing the failure probability) and the members."""
        core = np.isin(index, members)
        likeness = self._out_of_fold(x[index], core, salt + 1000)
        expanded = likeness >= 0.5
        if expanded.sum() < self.min_slice_size:
            return probability, members
        self.models_[j] = self._classifier().fit(x[index], core)
        self.thresholds_[j] = 0.5
        self.member_points_[j] = x[index[expanded]]
        self.max_distance_[j] = np.inf
        return likeness, index[expanded]

    def _assign(self, probability: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Slice of each new case (-1 for none): the first whose probability reaches its
        threshold and whose core it lies close to."""
        assigned = np.full(probability.shape[0], -1)
        for j, threshold in enumerate(self.thresholds_):
            candidate = (assigned == -1) & (probability[:, j] >= threshold)
            if np.isfinite(self.max_distance_[j]) and candidate.any():
                near = self._neighbour_distance(x[candidate], j, False) <= self.max_distance_[j]
                candidate[np.flatnonzero(candidate)[~near]] = False
            assigned[candidate] = j
        return assigned

    def _near_k(self, j: int) -> int:
        """How many of slice j's fit members a case's closeness is measured to: `near_k`, or
        half of them (None), so that the slice's main mode, not a tight little group of
        unrelated failures inside it, is what is close."""
        if self.near_k is not None:
            return self.near_k
        return int(np.ceil(len(self.member_points_[j]) / 2))

    def _neighbour_distance(
        self, points: np.ndarray, j: int, fitted: bool, k: int | None = None
    ) -> np.ndarray:
        """Mean distance of each point to its `k` (`n_neighbors`) nearest fit members of slice
        j (itself excluded when `fitted`: the points are those members)."""
        members = self.member_points_[j]
        k = min(k or self.n_neighbors, len(members) - (1 if fitted else 0))
        if k < 1 or len(points) == 0:
            return np.zeros(len(points))
        start = 1 if fitted else 0
        member_norms = (members**2).sum(axis=1)[None, :]
        result = np.empty(len(points))
        # rows in batches of at most ~64 MB of distances, whatever the number of members
        batch = max(1, int(8_000_000 // max(1, len(members))))
        for first in range(0, len(points), batch):
            squared = squared_distances(points[first : first + batch], members, member_norms)
            # the k (+1) smallest per row, without sorting whole rows
            nearest = np.partition(squared, start + k - 1, axis=1)
            nearest = np.sort(nearest[:, : start + k], axis=1)[:, start:]
            result[first : first + batch] = np.sqrt(nearest).mean(axis=1)
        return result

    def _strengths(
        self,
        x: np.ndarray,
        probability: np.ndarray,
        assigned: np.ndarray | None = None,
        distances: list[np.ndarray] | None = None,
        shares: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Strengths `(n_cases, n_slices)` in (0, 1] for members, 0 elsewhere. For the fit cases
        `assigned` (their slices) and `distances` (each member's to the others) are given; for
        new cases both follow from the rule."""
        if assigned is None:
            assigned = self._assign(probability, x)
        strengths = np.zeros((x.shape[0], len(self.models_)))
        for j in range(len(self.models_)):
            member = assigned == j
            if not member.any():
                continue
            distance = (
                distances[j]
                if distances is not None
                else self._neighbour_distance(x[member], j, False, self._near_k(j))
            )
            near = _percentile(-self.member_distance_[j][::-1], -distance)
            ranks = [near]
            if self.order != "near_share":
                ranks.append(_percentile(self.member_probability_[j], probability[member, j]))
            if self.order != "prob_near":
                share = shares[j] if shares is not None else self._member_share(x[member], j)
                ranks.append(_percentile(self.member_share_[j], share))
            strength = sum(ranks) / len(ranks)
            strengths[member, j] = np.maximum(strength, 1e-6)
        return strengths

    def _metric(self, j: int) -> np.ndarray:
        """Per-dimension scale of slice j's neighbourhoods: the PCA scores' own spread back
        (`coherence_space="pca"`), times its classifier's |weights| to the power
        `coherence_gamma` (0: no weighting)."""
        weight = np.abs(self.models_[j].coef_)
        scale = self._space_scale(weight.size)
        if self.coherence_gamma <= 0 or weight.max() <= 0:
            return scale
        return scale * (weight / weight.max()) ** self.coherence_gamma

    def _space_scale(self, dims: int) -> np.ndarray:
        """Per-dimension scale of the `dims`-wide representation for distances: the PCA scores'
        own spread back when `coherence_space="pca"` (relative to their root mean square), else
        ones."""
        scale = np.ones(dims)
        if self.coherence_space == "pca" and self.reducer_ is not None:
            spread = self.pc_scale_ / np.sqrt(np.mean(self.pc_scale_**2))
            scale[: spread.size] = spread
        return scale

    def _member_share(self, points: np.ndarray, j: int) -> np.ndarray:
        """Share of the `coherence_k` nearest fit cases of each new point that are members of
        slice j, in the slice's metric."""
        scale = self._metric(j)
        neighbours = nearest_neighbours(
            self.fit_points_ * scale, None, self.coherence_k, points * scale
        )
        return (self.fit_assigned_[neighbours] == j).mean(axis=1)

    def transform(self, embeddings: np.ndarray | None, features=None) -> np.ndarray:
        """Membership strengths `(n_cases, n_slices_found)` from the representation alone."""
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float64)
        n_cases = embeddings.shape[0] if embeddings is not None else len(features)
        x = self._represent(embeddings if self.reducer_ is not None else None, features, n_cases)
        probability = np.zeros((n_cases, len(self.models_)))
        for j, model in enumerate(self.models_):
            probability[:, j] = model.predict_proba(x)
        return self._strengths(x, probability)


def _percentile(sorted_reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of `sorted_reference` at or below each value, in [0, 1]."""
    if sorted_reference.size == 0:
        return np.zeros(len(values))
    return np.searchsorted(sorted_reference, values, side="right") / sorted_reference.size
