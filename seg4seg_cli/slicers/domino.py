"""Domino-style error-aware mixture (Eyuboglu et al., "Domino: Discovering Systematic Errors with
Cross-Modal Embeddings", ICLR 2022), adapted to segmentation's continuous per-case quality.

Domino fits a Gaussian mixture with diagonal covariances to PCA-reduced embeddings whose EM also
models, per component, the labels and predictions, weighted by a hyperparameter γ; components
rich in errors become the slices. Segmentation has no class labels but a continuous quality, so
each component here also has a Gaussian over the per-case error (1 − Dice, say), as FACTS does
with softmax outputs, weighted by `quality_weight` (γ). The EM is our own numpy implementation
with log-sum-exp responsibilities and deterministic initialisation (k-means with `random_state`).

Domino's mixture also models the model's prediction Ŷ. A segmentation model's prediction is a
mask; its summary per case, the predicted volume and number of connected components
(`vol_pred_ml`, `n_comp_pred` of cases.parquet, log1p-scaled and standardised), is modelled by a
third diagonal Gaussian weighted by `prediction_weight`. Unlike the error it needs no reference,
so held-out cases are assigned by the embedding and prediction parts of the mixture (the error
marginalised), and slices found on some cases can be tested honestly on others. An encoder
embedding averaged over the image barely sees a second, structure-like blob next to the
structure; the prediction summary does (an extra component, a larger volume).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.cluster import kmeans_plusplus

from seg4seg_cli.slicers.base import (
    EmbeddingReducer,
    check_inputs,
    component_strengths,
    errors_from_quality,
)

_LOG_2PI = np.log(2 * np.pi)
# the prediction summary: aggregate columns of cases.parquet that need no reference
PREDICTION_COLUMNS = ("vol_pred_ml", "n_comp_pred")


def _prediction_summary(features: object, n_cases: int) -> np.ndarray | None:
    """log1p of the prediction columns, `(n_cases, 2)`; None when `features` lacks them."""
    columns = getattr(features, "columns", None)
    if columns is None or any(c not in columns for c in PREDICTION_COLUMNS):
        return None
    raw = np.asarray(features[list(PREDICTION_COLUMNS)], dtype=np.float64)
    if raw.shape[0] != n_cases:
        raise ValueError(f"features must have {n_cases} rows, got {raw.shape[0]}")
    if not np.all(np.isfinite(raw)):
        raise ValueError(f"{', '.join(PREDICTION_COLUMNS)} must be finite for every case")
    return np.log1p(np.maximum(raw, 0.0))


def _diag_log_density(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log N(x_i; mean_k, diag(var_k)) for every case i and component k: `(n_cases, n_components)`."""
    precisions = 1.0 / variances
    quadratic = (
        (x**2) @ precisions.T
        - 2 * x @ (means * precisions).T
        + np.sum(means**2 * precisions, axis=1)
    )
    return -0.5 * (x.shape[1] * _LOG_2PI + np.sum(np.log(variances), axis=1) + quadratic)


class DominoSlicer:
    """Error-aware diagonal Gaussian mixture over embeddings and per-case error.

    Parameters: `n_slices` returned; `n_components` of the mixture (default 25, fewer when there
    are few cases: at most one per `min_component_cases`); `n_pca_components` (128, fewer when there
    are few cases: at most one dimension per `pca_cases_per_dim` cases);
    `quality_weight` γ, the weight of the error term in the likelihood; `min_slice_size`, the
    fewest cases a component must hold to be reported; `max_iter`, `tol` of EM;
    `reg_covar` added to every variance; `prediction_weight`, the weight of the prediction term
    (0: embeddings and error only, as without a prediction summary); `random_state`.
    """

    def __init__(
        self,
        n_slices: int = 5,
        n_components: int = 25,
        n_pca_components: int = 128,
        quality_weight: float = 5.0,
        min_component_cases: int = 25,
        pca_cases_per_dim: float = 6.0,
        min_components: int = 5,
        min_slice_size: int = 1,
        max_iter: int = 200,
        tol: float = 1e-5,
        reg_covar: float = 1e-3,
        prediction_weight: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.n_components = n_components
        self.n_pca_components = n_pca_components
        self.quality_weight = quality_weight
        self.min_component_cases = min_component_cases
        self.pca_cases_per_dim = pca_cases_per_dim
        self.min_components = min_components
        self.min_slice_size = min_slice_size
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.prediction_weight = prediction_weight
        self.random_state = random_state

    def fit(
        self, embeddings: np.ndarray, quality: np.ndarray, features: object = None
    ) -> DominoSlicer:
        embeddings, quality = check_inputs(embeddings, quality)
        if embeddings is None:
            raise ValueError("DominoSlicer needs embeddings of shape (n_cases, n_dims)")
        n_cases = embeddings.shape[0]
        # a diagonal Gaussian per component needs several cases per dimension: with 100 cases and
        # 128 dimensions each component memorises its own cases and held-out cases scatter
        dims = min(self.n_pca_components, max(2, int(n_cases // self.pca_cases_per_dim)))
        self.reducer_ = EmbeddingReducer(dims, self.random_state).fit(embeddings)
        z = self.reducer_.transform(embeddings)
        error = errors_from_quality(quality)[:, None]
        raw = _prediction_summary(features, n_cases)
        self.prediction_columns_, pred = [], None
        if raw is not None and self.prediction_weight > 0:
            self.prediction_columns_ = list(PREDICTION_COLUMNS)
            self.prediction_mean_ = raw.mean(axis=0)
            scale = raw.std(axis=0)
            self.prediction_scale_ = np.where(scale > 1e-12, scale, 1.0)
            pred = (raw - self.prediction_mean_) / self.prediction_scale_
        k = int(
            min(self.n_components, max(self.min_components, n_cases // self.min_component_cases))
        )

        # deterministic start: k-means++ seeds on embeddings and (weighted) error together
        parts = [
            z / (z.std() + 1e-12),
            np.sqrt(self.quality_weight) * error / (error.std() + 1e-12),
        ]
        if pred is not None:
            parts.append(np.sqrt(self.prediction_weight) * pred)
        start = np.hstack(parts)
        centres, _ = kmeans_plusplus(start, n_clusters=k, random_state=self.random_state)
        labels = np.argmin(((start[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        resp = np.zeros((n_cases, k))
        resp[np.arange(n_cases), labels] = 1.0

        previous = -np.inf
        for iteration in range(self.max_iter):  # noqa: B007 (n_iter_ below)
            self._m_step(z, error, pred, resp)
            log_joint = self._log_joint(z, error, pred)
            log_norm = logsumexp(log_joint, axis=1, keepdims=True)
            resp = np.exp(log_joint - log_norm)
            mean_ll = float(log_norm.mean())
            if abs(mean_ll - previous) < self.tol * max(1.0, abs(mean_ll)):
                break
            previous = mean_ll
        self.n_iter_ = iteration + 1
        self.log_likelihood_ = mean_ll
        self.responsibilities_ = resp

        weight = resp.sum(axis=0)
        component_error = (resp * error).sum(axis=0) / np.maximum(weight, 1e-12)
        # a slice is the set of cases whose most likely component it is, from the embeddings and
        # the prediction summary (never the error)
        hard = np.bincount(self._embedding_posterior(z, pred).argmax(axis=1), minlength=k)
        occupied = np.flatnonzero(hard >= max(1, self.min_slice_size))
        order = occupied[np.argsort(-component_error[occupied], kind="stable")]
        self.slice_components_ = order[: self.n_slices]
        self.component_error_ = component_error
        self.descriptions_ = [""] * len(self.slice_components_)
        self.memberships_ = self.transform(embeddings, features)
        return self

    def _prediction(self, features: object, n_cases: int) -> np.ndarray | None:
        """Standardised prediction summary of the cases, or None when it is not modelled."""
        if not self.prediction_columns_:
            return None
        raw = _prediction_summary(features, n_cases)
        if raw is None:
            raise ValueError(
                f"this slicer was fitted with {', '.join(self.prediction_columns_)}; "
                "pass the same feature columns to transform"
            )
        return (raw - self.prediction_mean_) / self.prediction_scale_

    def _m_step(
        self, z: np.ndarray, error: np.ndarray, pred: np.ndarray | None, resp: np.ndarray
    ) -> None:
        weight = resp.sum(axis=0) + 1e-10
        self.weights_ = weight / weight.sum()
        self.means_ = (resp.T @ z) / weight[:, None]
        self.variances_ = (resp.T @ z**2) / weight[:, None] - self.means_**2 + self.reg_covar
        self.variances_ = np.maximum(self.variances_, self.reg_covar)
        self.error_means_ = (resp.T @ error) / weight[:, None]
        self.error_variances_ = np.maximum(
            (resp.T @ error**2) / weight[:, None] - self.error_means_**2 + self.reg_covar,
            self.reg_covar,
        )
        if pred is not None:
            self.pred_means_ = (resp.T @ pred) / weight[:, None]
            self.pred_variances_ = np.maximum(
                (resp.T @ pred**2) / weight[:, None] - self.pred_means_**2 + self.reg_covar,
                self.reg_covar,
            )

    def _log_joint(
        self, z: np.ndarray, error: np.ndarray | None, pred: np.ndarray | None
    ) -> np.ndarray:
        log_joint = np.log(self.weights_) + _diag_log_density(z, self.means_, self.variances_)
        if error is not None:
            log_joint = log_joint + self.quality_weight * _diag_log_density(
                error, self.error_means_, self.error_variances_
            )
        if pred is not None:
            log_joint = log_joint + self.prediction_weight * _diag_log_density(
                pred, self.pred_means_, self.pred_variances_
            )
        return log_joint

    def _embedding_posterior(self, z: np.ndarray, pred: np.ndarray | None) -> np.ndarray:
        """Posterior of the components without the error: embedding (and prediction) terms."""
        log_joint = self._log_joint(z, None, pred)
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def transform(self, embeddings: np.ndarray, features: object = None) -> np.ndarray:
        """Posterior of each slice's component from embeddings and prediction summary (never the
        error), `(n_cases, n_slices_found)`; 0 for cases whose most likely component is another."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        z = self.reducer_.transform(embeddings)
        posterior = self._embedding_posterior(z, self._prediction(features, embeddings.shape[0]))
        return component_strengths(posterior, self.slice_components_)
