"""k-means baseline: clusters of the (standardised, PCA-reduced) embeddings, ranked by mean error."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from seg4seg_cli.slicers.base import EmbeddingReducer, check_inputs, errors_from_quality


class KMeansSlicer:
    """k-means over embeddings; the clusters with the highest mean error are the slices.

    `n_clusters` defaults to 10, or fewer when there are few cases (at most one per
    `min_cluster_cases`). Members are ordered by closeness to their cluster centre.
    """

    def __init__(
        self,
        n_slices: int = 5,
        n_clusters: int = 10,
        n_pca_components: int = 32,
        min_cluster_cases: int = 8,
        random_state: int = 0,
    ) -> None:
        self.n_slices = n_slices
        self.n_clusters = n_clusters
        self.n_pca_components = n_pca_components
        self.min_cluster_cases = min_cluster_cases
        self.random_state = random_state

    def fit(
        self, embeddings: np.ndarray, quality: np.ndarray, features: object = None
    ) -> KMeansSlicer:
        embeddings, quality = check_inputs(embeddings, quality)
        if embeddings is None:
            raise ValueError("KMeansSlicer needs embeddings of shape (n_cases, n_dims)")
        self.reducer_ = EmbeddingReducer(self.n_pca_components, self.random_state).fit(embeddings)
        z = self.reducer_.transform(embeddings)
        k = int(min(self.n_clusters, max(2, embeddings.shape[0] // self.min_cluster_cases)))
        with threadpool_limits(limits=1):  # small matrices: threads only add overhead
            self.kmeans_ = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit(z)
        error = errors_from_quality(quality)
        labels = self.kmeans_.labels_
        self.cluster_error_ = np.array([error[labels == c].mean() for c in range(k)])
        self.slice_clusters_ = np.argsort(-self.cluster_error_, kind="stable")[: self.n_slices]
        self.descriptions_ = [""] * len(self.slice_clusters_)
        self.memberships_ = self.transform(embeddings)
        return self

    def transform(self, embeddings: np.ndarray, features: object = None) -> np.ndarray:
        """1 / (1 + distance to the centre) for members of each slice's cluster, else 0."""
        z = self.reducer_.transform(np.asarray(embeddings, dtype=np.float64))
        distances = self.kmeans_.transform(z)
        nearest = distances.argmin(axis=1)
        strengths = np.zeros((z.shape[0], len(self.slice_clusters_)))
        for j, cluster in enumerate(self.slice_clusters_):
            members = nearest == cluster
            strengths[members, j] = 1.0 / (1.0 + distances[members, cluster])
        return strengths
