"""The Spotlight slicer: finds a planted high-error subgroup, keeps the slicer contract, and is
deterministic. Real fits on synthetic embeddings, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

from seg4seg_cli.slicers.spotlight import SpotlightSlicer

N_CASES = 400
N_DIMS = 64
SHIFTED_DIMS = [0, 1, 2]


def planted_cases(seed: int, n_cases: int = N_CASES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings `(n_cases, 64)` ~ N(0, I) where a random 10% is shifted by +3 in three
    dimensions and has Dice ~0.55 (the rest ~0.92 +- 0.03); returns (embeddings, quality, planted)."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n_cases, N_DIMS))
    planted = rng.choice(n_cases, size=n_cases // 10, replace=False)
    embeddings[np.ix_(planted, SHIFTED_DIMS)] += 3.0
    quality = np.clip(0.92 + 0.03 * rng.normal(size=n_cases), 0.0, 1.0)
    quality[planted] = np.clip(0.55 + 0.03 * rng.normal(size=planted.size), 0.0, 1.0)
    is_planted = np.zeros(n_cases, dtype=bool)
    is_planted[planted] = True
    return embeddings, quality, is_planted


def top_members(memberships: np.ndarray, slice_index: int, count: int) -> np.ndarray:
    """The `count` strongest members of one slice, strongest first."""
    column = memberships[:, slice_index]
    order = np.argsort(-column, kind="stable")[:count]
    return order[column[order] > 0]


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return planted_cases(seed=0)


@pytest.fixture(scope="module")
def fitted(planted) -> SpotlightSlicer:
    embeddings, quality, _ = planted
    return SpotlightSlicer(n_slices=3, random_state=0).fit(embeddings, quality)


def test_first_spotlight_lights_up_the_planted_subgroup(planted, fitted):
    _, _, is_planted = planted
    top10 = top_members(fitted.memberships_, 0, 10)
    assert top10.size == 10
    assert is_planted[top10].mean() >= 0.8


def test_memberships_have_one_nonnegative_column_per_spotlight(fitted):
    assert fitted.memberships_.shape == (N_CASES, 3)
    assert np.all(fitted.memberships_ >= 0)
    assert fitted.centers_.shape == fitted.precisions_.shape == (3, 32)
    assert np.all(fitted.precisions_ > 0)
    assert fitted.descriptions_ == ["", "", ""]


def test_members_are_the_top_effective_size_cases_by_kernel_weight(fitted):
    # the port bug this guards against: thresholding normalised weights at 0.5 keeps nobody
    for j, size in enumerate(fitted.effective_sizes_):
        members = np.flatnonzero(fitted.memberships_[:, j])
        assert members.size == max(1, round(size))
        assert fitted.memberships_[members, j].min() > 0


def test_spotlight_size_respects_the_minimum_weight(fitted):
    # the barrier keeps the total kernel weight near or above S = 5% of 400 cases
    assert np.all(fitted.effective_sizes_ >= 0.9 * 0.05 * N_CASES)


def test_down_weighting_sends_the_second_spotlight_elsewhere(fitted):
    first = set(top_members(fitted.memberships_, 0, 10).tolist())
    second = set(top_members(fitted.memberships_, 1, 10).tolist())
    assert len(first & second) <= 3
    assert not np.allclose(fitted.centers_[0], fitted.centers_[1])


def test_transform_applies_the_learned_spotlights_to_new_cases(fitted):
    new_embeddings, _, new_planted = planted_cases(seed=1, n_cases=200)
    strengths = fitted.transform(new_embeddings)
    assert strengths.shape == (200, 3)
    assert np.all(strengths >= 0)

    # brute-force reference from the stored parameters
    reduced = fitted.reducer_.transform(new_embeddings)
    for j in range(3):
        weights = np.maximum(
            0.0, 1.0 - ((reduced - fitted.centers_[j]) ** 2) @ fitted.precisions_[j]
        )
        n_members = max(1, round(max(1, round(fitted.effective_sizes_[j])) / N_CASES * 200))
        members = np.flatnonzero(strengths[:, j])
        assert members.size == min(n_members, np.count_nonzero(weights))
        np.testing.assert_allclose(strengths[members, j], weights[members])
        assert weights[members].min() >= np.delete(weights, members).max()

    # the first spotlight still finds the subgroup among cases it never saw
    assert new_planted[top_members(strengths, 0, 10)].mean() >= 0.8


def test_transform_of_the_fit_cases_is_memberships(planted, fitted):
    embeddings, _, _ = planted
    np.testing.assert_array_equal(fitted.transform(embeddings), fitted.memberships_)


def test_same_inputs_and_random_state_give_identical_spotlights(planted, fitted):
    embeddings, quality, _ = planted
    again = SpotlightSlicer(n_slices=3, random_state=0).fit(embeddings, quality)
    np.testing.assert_array_equal(again.memberships_, fitted.memberships_)
    np.testing.assert_array_equal(again.centers_, fitted.centers_)
    np.testing.assert_array_equal(again.precisions_, fitted.precisions_)


def test_hyperparameters_are_stored_unchanged():
    slicer = SpotlightSlicer(n_slices=2, min_weight=0.02, n_components=8, n_steps=50)
    assert (slicer.n_slices, slicer.min_weight, slicer.n_components, slicer.n_steps) == (
        2,
        0.02,
        8,
        50,
    )


@pytest.mark.parametrize(
    ("embeddings", "quality", "message"),
    [
        (np.zeros(10), np.ones(10), "embeddings must have shape"),
        (np.zeros((10, 4)), np.ones(9), "embeddings must have shape"),
        (np.zeros((10, 4)), np.ones((10, 1)), "quality must have shape"),
        (np.zeros((10, 4)), np.full(10, np.nan), "quality must be finite"),
        (np.zeros((1, 4)), np.ones(1), "at least 2 cases"),
    ],
)
def test_fit_rejects_bad_shapes_naming_the_argument(embeddings, quality, message):
    with pytest.raises(ValueError, match=message):
        SpotlightSlicer(n_steps=5).fit(embeddings, quality)


@pytest.mark.parametrize(
    "params",
    [
        {"min_weight": 0.0},
        {"min_weight": 5},
        {"n_slices": 0},
        {"n_steps": 0},
        {"learning_rate": 0.0},
        {"barrier_x_schedule": [10.0, 1.0]},
    ],
)
def test_fit_rejects_bad_hyperparameters(params):
    embeddings, quality, _ = planted_cases(seed=2, n_cases=40)
    with pytest.raises(ValueError):
        SpotlightSlicer(**{"n_steps": 5, **params}).fit(embeddings, quality)


def test_transform_rejects_embeddings_of_another_width(fitted):
    with pytest.raises(ValueError, match=r"embeddings must have shape \(n_cases, 64\)"):
        fitted.transform(np.zeros((5, 63)))


def test_transform_before_fit_is_an_error():
    with pytest.raises(ValueError, match="not fitted"):
        SpotlightSlicer().transform(np.zeros((5, 4)))
