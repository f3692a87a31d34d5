"""The coherent slicer's parts against independent references (scikit-learn) and its coherence
check on data built to have, or not have, a coherent failure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_samples
from sklearn.neighbors import NearestNeighbors

from seg4seg_cli.slicers.coherence import nearest_neighbours, neighbour_core
from seg4seg_cli.slicers.coherent import MODEL_OUTPUTS, CoherentSlicer, silhouette
from seg4seg_cli.slicers.logistic import BalancedLogistic


@pytest.mark.parametrize("seed", range(3))
def test_balanced_logistic_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 6))
    y = (x[:, 0] + rng.normal(size=150)) > 1.0  # unbalanced classes
    ours = BalancedLogistic(C=0.1).fit(x, y)
    theirs = LogisticRegression(C=0.1, class_weight="balanced", tol=1e-12, max_iter=10_000)
    theirs.fit(x, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_.ravel(), atol=1e-6)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_[0], atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x)[:, 1], atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_silhouette_is_the_members_mean_of_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 5))
    members = rng.choice(80, 15, replace=False)
    x[members[:8]] += 2.0  # half of them a little apart
    labels = np.isin(np.arange(80), members).astype(int)
    reference = silhouette_samples(x, labels)[labels == 1].mean()
    assert silhouette(x, members, seed=0) == pytest.approx(reference, abs=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_nearest_neighbours_match_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 7))
    rows = rng.choice(300, 40, replace=False)
    _, reference = NearestNeighbors(n_neighbors=9).fit(x).kneighbors(x[rows])
    # scikit-learn counts the case itself as its nearest neighbour; ours excludes it
    np.testing.assert_array_equal(nearest_neighbours(x, rows, 8), reference[:, 1:])
    queries = rng.normal(size=(25, 7))
    _, reference = NearestNeighbors(n_neighbors=8).fit(x).kneighbors(queries)
    np.testing.assert_array_equal(nearest_neighbours(x, None, 8, queries), reference)


def _brute_force_core(x, members, k, share):
    """The same peeling, written the slow way: one member at a time, by its own neighbours."""
    inside = set(members.tolist())
    distance = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    changed = True
    while changed:
        changed = False
        low = []
        for i in sorted(inside):
            order = sorted((d, j) for j, d in enumerate(distance[i]) if j != i)
            nearest = [j for _, j in order[:k]]
            if sum(j in inside for j in nearest) < share * k:
                low.append(i)
        if low:
            inside -= set(low)
            changed = True
    return np.array(sorted(inside), dtype=int)


@pytest.mark.parametrize("seed", range(3))
def test_neighbour_core_keeps_a_cluster_and_peels_scattered_members(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 4))
    cluster = np.arange(20)
    x[cluster] = rng.normal(size=(20, 4)) * 0.3 + 4.0  # a tight group away from the rest
    scattered = np.arange(100, 112)  # ordinary cases, no nearer to one another than to others
    members = np.concatenate([cluster, scattered])
    core = neighbour_core(x, members, 10, 0.3)
    np.testing.assert_array_equal(np.sort(core), cluster)
    np.testing.assert_array_equal(np.sort(core), _brute_force_core(x, members, 10, 0.3))
    assert neighbour_core(x, scattered, 10, 0.3).size == 0
    mixed = rng.choice(150, 40, replace=False)  # partly peeled: compare with the slow way
    np.testing.assert_array_equal(
        np.sort(neighbour_core(x, mixed, 8, 0.25)), _brute_force_core(x, mixed, 8, 0.25)
    )
    assert neighbour_core(x, np.array([], dtype=int), 10, 0.3).size == 0


def _cases(n: int, seed: int, direction_per_failure: bool) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and Dice of `n` cases, 15% failing: along one shared direction (a coherent
    failure mode) or each along its own random direction (scattered failures)."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, 24))
    dice = rng.uniform(0.85, 0.97, n)
    failing = rng.choice(n, int(0.15 * n), replace=False)
    shared = rng.normal(size=24)
    for case in failing:
        direction = rng.normal(size=24) if direction_per_failure else shared
        embeddings[case] += 4.0 * direction / np.linalg.norm(direction)
    dice[failing] = rng.uniform(0.3, 0.6, failing.size)
    return embeddings, dice


@pytest.mark.parametrize("seed", range(3))
def test_a_shared_failure_is_found_and_scattered_ones_are_not(seed):
    embeddings, dice = _cases(200, seed, direction_per_failure=False)
    found = CoherentSlicer(random_state=0).fit(embeddings, dice).memberships_
    failing = dice < 0.7
    assert found.shape[1] >= 1
    top = found[:, 0] > 0
    hits = (top & failing).sum()
    assert hits >= 0.8 * top.sum() and hits >= 0.5 * failing.sum()
    embeddings, dice = _cases(200, seed, direction_per_failure=True)
    scattered = CoherentSlicer(random_state=0).fit(embeddings, dice).memberships_
    failing = dice < 0.7
    for j in range(scattered.shape[1]):
        members = scattered[:, j] > 0
        assert (members & failing).sum() < 0.5 * members.sum(), "scattered failures as one slice"


def test_model_output_columns_are_left_out_only_when_asked():
    rng = np.random.default_rng(0)
    features = pd.DataFrame(
        {
            "intensity_mean": rng.normal(size=60),
            "vol_pred_ml": rng.uniform(1, 2, 60),
            "n_comp_pred": rng.integers(1, 3, 60),
            "entropy_mean": rng.uniform(0, 1, 60),
            "vol_ref_ml": rng.uniform(1, 2, 60),
        }
    )
    with_outputs = CoherentSlicer()
    with_outputs.fit_representation(None, features, 60)
    assert set(with_outputs.scaler_.columns_) == {
        "intensity_mean", "vol_pred_ml", "n_comp_pred", "entropy_mean",
    }  # fmt: skip
    inputs_only = CoherentSlicer(use_outputs=False)
    inputs_only.fit_representation(None, features, 60)
    assert inputs_only.scaler_.columns_ == ["intensity_mean"]
    assert not any(c.startswith(MODEL_OUTPUTS) for c in inputs_only.scaler_.columns_)


@pytest.mark.parametrize("seed", range(3))
def test_failures_sharing_only_a_symptom_are_dropped_by_the_coherence_check(seed):
    """Scattered failures (each its own embedding direction) that all show extra predicted
    components: a linear model groups them by that symptom; the default neighbour check drops
    the group because its members' nearest cases lie outside it (and so does the silhouette
    check it replaced, with the linear failure model it was used with, the members being no
    closer to one another than to the other cases)."""
    embeddings, dice = _cases(200, seed, direction_per_failure=True)
    rng = np.random.default_rng(seed)
    failing = dice < 0.7
    features = pd.DataFrame(
        {
            "n_comp_pred": np.where(failing, rng.integers(2, 5, 200), 1),
            "intensity_mean": rng.normal(size=200),
        }
    )

    def failing_slices(**params):
        slicer = CoherentSlicer(random_state=0, **params)
        found = slicer.fit(embeddings, dice, features).memberships_ > 0
        return [j for j in range(found.shape[1]) if (found[:, j] & failing).sum() >= 10]

    assert failing_slices(coherence="none"), "the symptom alone makes a slice without a check"
    assert failing_slices() == []
    # the silhouette check with the linear failure model: the settings `compare` keeps
    assert failing_slices(coherence="silhouette", min_silhouette=0.0, predictor="linear") == []


def test_unknown_coherence_settings_are_refused_by_name():
    embeddings, dice = _cases(60, 0, direction_per_failure=False)
    for params in (
        {"coherence": "knn"}, {"order": "share"}, {"coherence_space": "raw"}, {"predictor": "svm"},
    ):  # fmt: skip
        name = next(iter(params))
        with pytest.raises(ValueError, match=f"{name} must be one of"):
            CoherentSlicer(**params).fit(embeddings, dice)


@pytest.mark.parametrize("seed", range(3))
def test_the_failure_vote_is_the_failing_share_of_each_cases_nearest_cases(seed):
    """predictor="neighbours": the share of failing cases among each case's 10 nearest (itself
    excluded) in the unwhitened PCA space beside the columns, against scikit-learn's search."""
    from sklearn.neighbors import NearestNeighbors

    embeddings, dice = _cases(150, seed, direction_per_failure=False)
    rng = np.random.default_rng(seed)
    features = pd.DataFrame({"intensity_mean": rng.normal(size=150)})
    slicer = CoherentSlicer(random_state=seed)
    x = slicer.fit_representation(embeddings, features, 150)
    failing = dice < np.quantile(dice, 0.2)
    ours = slicer._failure_probability(x, failing, 0)
    scale = slicer._space_scale(x.shape[1])
    scaled = x * scale
    _, index = NearestNeighbors(n_neighbors=11).fit(scaled).kneighbors(scaled)
    expected = failing[index[:, 1:]].mean(axis=1)  # the first neighbour is the case itself
    np.testing.assert_allclose(ours, expected)
    # the unwhitened space: PCA scores keep their relative spread, the columns their own
    spread = slicer.pc_scale_ / np.sqrt(np.mean(slicer.pc_scale_**2))
    np.testing.assert_allclose(scale[: spread.size], spread)
    assert scale[-1] == 1.0


def _brute_force_strengths(points, metric_points, members, k_share):
    """Each member's strength written the slow way: the mean of its percentile among the
    members in closeness (mean distance to the nearest half of the other members) and in the
    share of members among its `k_share` nearest fit cases (in the slice's metric)."""
    inside = set(members.tolist())
    half = int(np.ceil(len(members) / 2))
    distance, share = {}, {}
    for i in members:
        to_members = sorted(
            float(np.sqrt(((points[i] - points[j]) ** 2).sum())) for j in members if j != i
        )
        distance[i] = np.mean(to_members[:half])
        to_all = sorted(
            (float(((metric_points[i] - metric_points[j]) ** 2).sum()), j)
            for j in range(len(points))
            if j != i
        )
        share[i] = np.mean([j in inside for _, j in to_all[:k_share]])
    near = {i: np.mean([distance[j] >= distance[i] for j in members]) for i in members}
    shares = {i: np.mean([share[j] <= share[i] for j in members]) for i in members}
    return np.array([(near[i] + shares[i]) / 2 for i in members])


@pytest.mark.parametrize("seed", range(3))
def test_members_are_ordered_by_closeness_to_the_nearest_half_and_member_share(seed):
    """The default member order, against the slow way. Closeness to the nearest half of a
    slice's members (not to its 5 nearest) puts the slice's main mode first; a tight little group
    of other failures inside the slice is close only to itself."""
    embeddings, dice = _cases(200, seed, direction_per_failure=False)
    slicer = CoherentSlicer(random_state=0).fit(embeddings, dice)
    assert slicer.memberships_.shape[1] >= 1
    members = np.flatnonzero(slicer.fit_assigned_ == 0)
    expected = _brute_force_strengths(
        slicer.fit_points_, slicer.fit_points_ * slicer._metric(0), members, slicer.coherence_k
    )
    np.testing.assert_allclose(slicer.memberships_[members, 0], expected, atol=1e-9)
    # the order before: the predicted probability counts too, and the 5 nearest members
    before = CoherentSlicer(random_state=0, order="prob_near_share", near_k=5)
    before = before.fit(embeddings, dice).memberships_[members, 0]
    assert not np.allclose(before, expected)
