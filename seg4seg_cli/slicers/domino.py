"""Domino-style error-aware mixture (Eyuboglu et al., "Domino: Discovering Systematic Errors with
Cross-Modal Embeddings", ICLR 2022), adapted to segmentation's continuous per-case quality.

Domino fits a Gaussian mixture with diagonal covariances to PCA-reduced embeddings whose EM also
models, per component, the labels and predictions, weighted by a hyperparameter γ; components
rich in errors become the slices. Segmentation has no class labels but a continuous quality, so
each component here also has a Gaussian over the per-case error (1 − Dice, say), as FACTS does
with softmax outputs, weighted by `quality_weight` (γ). The EM is our own numpy implementation
with log-sum-exp responsibilities and deterministic initialisation (k-means with `random_state`).

Held-out cases are assigned by the embedding part of the mixture only (quality marginalised), so
slices found on some cases can be tested honestly on others.
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
    are few cases: at most one per `min_component_cases`); `n_pca_components` (128);
    `quality_weight` γ, the weight of the error term in the likelihood; `min_slice_size`, the
    fewest cases a component must hold to be reported; `max_iter`, `tol` of EM;
    `reg_covar` added to every variance; `random_state`.
    """

    def __init__(
        self,
        n_slices: int = 5,
        n_components: int = 25,
        n_pca_components: int = 128,
        quality_weight: float = 5.0,
        min_component_cases: int = 25,
        min_components: int = 5,
        min_slice_size: int = 1,
        max_iter: int = 200,
        tol: float = 1e-5,
        reg_covar: float = 1e-3,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.n_components = n_components
        self.n_pca_components = n_pca_components
        self.quality_weight = quality_weight
        self.min_component_cases = min_component_cases
        self.min_components = min_components
        self.min_slice_size = min_slice_size
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state

    def fit(
        self, embeddings: np.ndarray, quality: np.ndarray, features: object = None
    ) -> DominoSlicer:
        embeddings, quality = check_inputs(embeddings, quality)
        if embeddings is None:
            raise ValueError("DominoSlicer needs embeddings of shape (n_cases, n_dims)")
        n_cases = embeddings.shape[0]
        self.reducer_ = EmbeddingReducer(self.n_pca_components, self.random_state).fit(embeddings)
        z = self.reducer_.transform(embeddings)
        error = errors_from_quality(quality)[:, None]
        k = int(
            min(self.n_components, max(self.min_components, n_cases // self.min_component_cases))
        )

        # deterministic start: k-means++ seeds on embeddings and (weighted) error together
        start = np.hstack(
            [z / (z.std() + 1e-12), np.sqrt(self.quality_weight) * error / (error.std() + 1e-12)]
        )
        centres, _ = kmeans_plusplus(start, n_clusters=k, random_state=self.random_state)
        labels = np.argmin(((start[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        resp = np.zeros((n_cases, k))
        resp[np.arange(n_cases), labels] = 1.0

        previous = -np.inf
        for iteration in range(self.max_iter):  # noqa: B007 (n_iter_ below)
            self._m_step(z, error, resp)
            log_joint = self._log_joint(z, error)
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
        # a slice is the set of cases whose most likely component (from embeddings alone) it is
        hard = np.bincount(self._embedding_posterior(z).argmax(axis=1), minlength=k)
        occupied = np.flatnonzero(hard >= max(1, self.min_slice_size))
        order = occupied[np.argsort(-component_error[occupied], kind="stable")]
        self.slice_components_ = order[: self.n_slices]
        self.component_error_ = component_error
        self.descriptions_ = [""] * len(self.slice_components_)
        self.memberships_ = self.transform(embeddings)
        return self

    def _m_step(self, z: np.ndarray, error: np.ndarray, resp: np.ndarray) -> None:
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

    def _log_joint(self, z: np.ndarray, error: np.ndarray | None) -> np.ndarray:
        log_joint = np.log(self.weights_) + _diag_log_density(z, self.means_, self.variances_)
        if error is not None:
            log_joint = log_joint + self.quality_weight * _diag_log_density(
                error, self.error_means_, self.error_variances_
            )
        return log_joint

    def _embedding_posterior(self, z: np.ndarray) -> np.ndarray:
        log_joint = self._log_joint(z, None)
        return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    def transform(self, embeddings: np.ndarray, features: object = None) -> np.ndarray:
        """Posterior of each slice's component from embeddings alone, `(n_cases, n_slices_found)`;
        0 for cases whose most likely component is another one."""
        z = self.reducer_.transform(np.asarray(embeddings, dtype=np.float64))
        posterior = self._embedding_posterior(z)
        return component_strengths(posterior, self.slice_components_)
