"""The Spotlight (d'Eon, d'Eon, Wright & Leyton-Brown, FAccT 2022): slices as kernels in embedding space.

A spotlight is a kernel over the (standardised, PCA-reduced) embeddings,

    k_i = max(0, 1 - (x_i - mu)^T P (x_i - mu)),      P = diag(exp(log_precision)),

whose centre `mu` and diagonal precision `P` are moved by gradient ascent on the kernel-weighted
mean error  sum_i k_i l_i / sum_i k_i,  while a barrier keeps the spotlight's total weight
sum_i k_i above the minimum size S. As in the paper the barrier is a quadratic penalty

    barrier_scale * (W - (S + x_t))^2 / x_t^2    whenever  W = sum_i k_i < S + x_t,

whose width x_t shrinks geometrically from n - S (the spotlight must cover everything) to a small
fraction of S over the optimisation, so the spotlight starts wide and narrows onto high error.
Adam takes full-batch steps (numpy, analytic gradient), with the learning rate halved when the
objective plateaus. After each
spotlight the errors are down-weighted by (1 - k / max k), so the next one looks elsewhere.

Membership is the top `round(sum_i k_i)` cases by kernel weight (the spotlight's effective size),
never a threshold on normalised weights, which on thousands of cases selects nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seg4seg_cli.slicers.base import EmbeddingReducer, check_inputs, errors_from_quality

# guards the weighted mean against a spotlight that has drifted off every case
_WEIGHT_FLOOR = 1e-12
# Adam's and ReduceLROnPlateau's defaults in torch, which the paper's code used
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_PLATEAU_THRESHOLD = 1e-4


class SpotlightSlicer:
    """Find `n_slices` high-error regions of embedding space, one spotlight at a time.

    Parameters
    ----------
    n_slices : number of spotlights to fit, each on the errors left by the previous ones.
    min_weight : minimum spotlight size S, as a fraction of the fit cases (the paper's 1-5%).
    min_slice_size : S is at least this many cases (the smallest subgroup reported).
    n_components : PCA dimensions the spotlights live in (see `EmbeddingReducer`).
    n_steps : full-batch Adam steps per spotlight.
    learning_rate : initial Adam learning rate, in units of the reduced data's typical spread
        (paper's experiments: 1e-2; 1e-3 leaves a 1000-step spotlight far from converged).
    barrier_x_schedule : barrier width per step, in cases, length `n_steps`; None uses the paper's
        geometric schedule from n - S down to `barrier_final_x * S`.
    barrier_final_x : final barrier width as a fraction of S (paper: 0.05), when the schedule is None.
    barrier_scale : height of the barrier penalty (paper: 1).
    lr_patience, lr_factor : ReduceLROnPlateau patience (steps) and decay factor (paper: 20, 0.5).
    random_state : seeds the PCA; the spotlight optimisation itself is deterministic.

    Attributes
    ----------
    reducer_ : the fitted `EmbeddingReducer`.
    centers_ : `(n_slices, n_reduced)` spotlight centres in the reducer's PCA coordinates.
    precisions_ : `(n_slices, n_reduced)` diagonals of the precision matrices, PCA coordinates.
    effective_sizes_ : `(n_slices,)` total kernel weight of each spotlight on the fit cases.
    member_fractions_ : `(n_slices,)` members kept per spotlight, as a fraction of the cases.
    memberships_ : `(n_cases, n_slices)` `transform` on the fit data.
    descriptions_ : one empty string per spotlight (spotlights have no rule).
    """

    def __init__(
        self,
        n_slices: int = 5,
        min_weight: float = 0.05,
        min_slice_size: int = 1,
        n_components: int | None = 32,
        n_steps: int = 1000,
        learning_rate: float = 1e-2,
        barrier_x_schedule: Sequence[float] | None = None,
        barrier_final_x: float = 0.05,
        barrier_scale: float = 1.0,
        lr_patience: int = 20,
        lr_factor: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.min_weight = min_weight
        self.min_slice_size = min_slice_size
        self.n_components = n_components
        self.n_steps = n_steps
        self.learning_rate = learning_rate
        self.barrier_x_schedule = barrier_x_schedule
        self.barrier_final_x = barrier_final_x
        self.barrier_scale = barrier_scale
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.random_state = random_state

    def fit(
        self, embeddings: np.ndarray, quality: np.ndarray, features: object = None
    ) -> SpotlightSlicer:
        """Fit on `embeddings` `(n_cases, n_dims)` and `quality` `(n_cases,)`, higher is better.

        `features` is accepted for the common slicer interface and not used.
        """
        embeddings, quality = check_inputs(embeddings, quality)
        if embeddings is None:
            raise ValueError("embeddings are required: the Spotlight searches embedding space")
        n_cases = embeddings.shape[0]
        if n_cases < 2:
            raise ValueError(f"embeddings must have at least 2 cases, got {n_cases}")
        self._check_hyperparameters()

        self.reducer_ = EmbeddingReducer(self.n_components, random_state=self.random_state)
        reduced = self.reducer_.fit_transform(embeddings)
        # one length unit for every dataset, so that the learning rate means the same everywhere
        self.scale_ = float(np.sqrt(np.mean(reduced.var(axis=0)))) or 1.0

        # at least the smallest subgroup discover may report: with 5% of 120 cases a spotlight
        # of 6 could never be reported with the default minimum of 10
        min_size = max(self.min_weight * n_cases, float(self.min_slice_size))
        schedule = self._barrier_schedule(n_cases, min_size)
        errors = errors_from_quality(quality)

        scaled = reduced / self.scale_
        centers, precisions, sizes = [], [], []
        for _ in range(self.n_slices):
            center, precision = _fit_one_spotlight(
                scaled,
                errors,
                *_initial_spotlight(scaled, errors, min_size),
                min_size=min_size,
                barrier_schedule=schedule,
                barrier_scale=self.barrier_scale,
                learning_rate=self.learning_rate,
                lr_patience=self.lr_patience,
                lr_factor=self.lr_factor,
            )
            center, precision = center * self.scale_, precision / self.scale_**2
            weights = _kernel_weights(reduced, center, precision)
            if weights.max() > 0:
                errors = errors * (1.0 - weights / weights.max())
            centers.append(center)
            precisions.append(precision)
            sizes.append(float(weights.sum()))

        width = reduced.shape[1]
        self.centers_ = np.asarray(centers, dtype=np.float64).reshape(self.n_slices, width)
        self.precisions_ = np.asarray(precisions, dtype=np.float64).reshape(self.n_slices, width)
        self.effective_sizes_ = np.asarray(sizes, dtype=np.float64)
        self.member_fractions_ = np.maximum(1, np.round(self.effective_sizes_)) / n_cases
        self.descriptions_ = [""] * self.n_slices
        self.memberships_ = self.transform(embeddings)
        return self

    def transform(self, embeddings: np.ndarray, features: object = None) -> np.ndarray:
        """Kernel weight `(n_cases, n_slices)` of each case in each spotlight; 0 = not a member.

        Each spotlight keeps as many of the given cases as its effective size on the fit cases,
        scaled to the number of cases given; quality is not used.
        """
        if not hasattr(self, "centers_"):
            raise ValueError("this SpotlightSlicer is not fitted yet: call fit first")
        embeddings = np.asarray(embeddings, dtype=np.float64)
        n_dims = self.reducer_.mean_.shape[0]
        if embeddings.ndim != 2 or embeddings.shape[1] != n_dims:
            raise ValueError(
                f"embeddings must have shape (n_cases, {n_dims}) like the fit data, got {embeddings.shape}"
            )
        if not np.all(np.isfinite(embeddings)):
            raise ValueError("embeddings must be finite")
        n_cases = embeddings.shape[0]
        strengths = np.zeros((n_cases, self.n_slices), dtype=np.float64)
        if n_cases == 0:
            return strengths
        reduced = self.reducer_.transform(embeddings)
        for j in range(self.n_slices):
            weights = _kernel_weights(reduced, self.centers_[j], self.precisions_[j])
            n_members = max(1, int(round(self.member_fractions_[j] * n_cases)))
            # stable sort: ties at the boundary resolve the same way on every run
            top = np.argsort(-weights, kind="stable")[:n_members]
            top = top[weights[top] > 0]
            strengths[top, j] = weights[top]
        return strengths

    def _check_hyperparameters(self) -> None:
        if int(self.n_slices) != self.n_slices or self.n_slices < 1:
            raise ValueError(f"n_slices must be a positive integer, got {self.n_slices}")
        if not 0.0 < self.min_weight < 1.0:
            raise ValueError(
                f"min_weight must be a fraction of the cases in (0, 1), got {self.min_weight}"
            )
        if int(self.n_steps) != self.n_steps or self.n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {self.n_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.barrier_final_x > 0:
            raise ValueError(f"barrier_final_x must be positive, got {self.barrier_final_x}")

    def _barrier_schedule(self, n_cases: int, min_size: float) -> np.ndarray:
        if self.barrier_x_schedule is None:
            return np.geomspace(n_cases - min_size, self.barrier_final_x * min_size, self.n_steps)
        schedule = np.asarray(self.barrier_x_schedule, dtype=np.float64)
        if schedule.shape != (self.n_steps,) or not np.all(schedule > 0):
            raise ValueError(
                f"barrier_x_schedule must hold n_steps={self.n_steps} positive widths, got shape {schedule.shape}"
            )
        return schedule


def _kernel_weights(points: np.ndarray, center: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Spotlight weights `(n_cases,)` of `points` `(n_cases, n_dims)`: 1 at the centre, falling
    to 0 on the edge of the ellipsoid with diagonal precision `precision` `(n_dims,)`."""
    return np.maximum(0.0, 1.0 - ((points - center) ** 2) @ precision)


def _fit_one_spotlight(
    points: np.ndarray,
    errors: np.ndarray,
    center_init: np.ndarray,
    precision_init: np.ndarray,
    *,
    min_size: float,
    barrier_schedule: np.ndarray,
    barrier_scale: float,
    learning_rate: float,
    lr_patience: int,
    lr_factor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One spotlight's centre and diagonal precision, each `(n_dims,)`, by full-batch Adam on the
    barrier objective, from `center_init` and `precision_init`; `points` `(n_cases, n_dims)`,
    `errors` `(n_cases,)`.

    numpy with the analytic gradient, Adam as torch.optim.Adam (betas 0.9/0.999, eps 1e-8, bias
    correction) and the learning rate cut as torch's ReduceLROnPlateau (mode min, relative
    threshold 1e-4, no cooldown): the earlier torch version gave the same parameters to 1e-15
    over the first 300 steps and took 30 times longer (autograd overhead per step).
    """
    center = np.array(center_init, dtype=np.float64)
    log_precision = np.log(np.asarray(precision_init, dtype=np.float64))
    moments = [(np.zeros_like(center), np.zeros_like(center)) for _ in range(2)]
    learning, best, bad_steps = learning_rate, np.inf, 0
    for step, barrier_x in enumerate(barrier_schedule.tolist(), start=1):
        precision = np.exp(log_precision)
        offset = points - center
        squared = offset**2
        raw = 1.0 - squared @ precision
        active = raw > 0
        weights = np.where(active, raw, 0.0)
        total = weights.sum()
        clamped = max(total, _WEIGHT_FLOOR)
        weighted_error = (weights * errors).sum()
        shortfall = max(min_size + barrier_x - total, 0.0)
        objective = barrier_scale * (shortfall / barrier_x) ** 2 - weighted_error / clamped
        # d objective / d weight_i, then through the kernel to the parameters
        d_weight = -errors / clamped - 2.0 * barrier_scale * shortfall / barrier_x**2
        if total > _WEIGHT_FLOOR:
            d_weight = d_weight + weighted_error / clamped**2
        d_weight = np.where(active, d_weight, 0.0)
        gradients = (2.0 * precision * (d_weight @ offset), -precision * (d_weight @ squared))
        for parameter, gradient, index in (
            (center, gradients[0], 0),
            (log_precision, gradients[1], 1),
        ):
            first, second = moments[index]
            first *= _BETA1
            first += (1 - _BETA1) * gradient
            second *= _BETA2
            second += (1 - _BETA2) * gradient * gradient
            denominator = np.sqrt(second) / np.sqrt(1 - _BETA2**step) + _ADAM_EPS
            parameter -= learning / (1 - _BETA1**step) * first / denominator
        if objective < best * (1 - _PLATEAU_THRESHOLD):
            best, bad_steps = objective, 0
        else:
            bad_steps += 1
        if bad_steps > lr_patience:
            if learning - learning * lr_factor > 1e-8:
                learning *= lr_factor
            bad_steps = 0
    return center, np.exp(log_precision)


def _initial_spotlight(
    points: np.ndarray, errors: np.ndarray, min_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centre `(n_dims,)` and spherical precision `(n_dims,)` to start from: the error-weighted
    centre of the worst `S` cases, wide enough to cover every case, as the barrier demands at the
    first step. Deterministic: ties between equal errors keep case order."""
    n_worst = max(1, int(np.ceil(min_size)))
    worst = np.argsort(-errors, kind="stable")[:n_worst]
    worst_errors = errors[worst]
    if worst_errors.sum() > 0:
        center = worst_errors @ points[worst] / worst_errors.sum()
    else:
        center = points[worst].mean(axis=0)
    farthest = float(((points - center) ** 2).sum(axis=1).max())
    # 1.01: the farthest case sits just inside the edge, so every case starts with a gradient
    radius_squared = max(1.01 * farthest, _WEIGHT_FLOOR)
    return center, np.full(points.shape[1], 1.0 / radius_squared)
