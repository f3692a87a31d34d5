"""`seg4seg discover` on synthetic out folders: planted subgroups are found, null data stays quiet,
statistics are right, results are byte-identical for a seed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seg4seg_cli.discover import DiscoverOptions, run_discover
from seg4seg_cli.embeddings_store import write_embeddings
from seg4seg_cli.statistics import benjamini_hochberg, gap_statistics, merge_near_duplicates

EMBEDDING_METHODS = ["coherent", "domino", "spotlight", "planespot", "kmeans"]


def make_out_folder(root, n_cases=400, planted_fraction=0.1, seed=0, plant=True):
    """cases.parquet and embeddings.parquet of a synthetic audit: 10% of cases shifted in
    embedding space and worse in Dice (when `plant`), metadata columns unrelated to it."""
    rng = np.random.default_rng(seed)
    case_ids = [f"case_{i:04d}" for i in range(n_cases)]
    planted = np.zeros(n_cases, bool)
    if plant:
        planted[rng.choice(n_cases, int(planted_fraction * n_cases), replace=False)] = True
    embeddings = rng.normal(size=(n_cases, 64))
    embeddings[planted, :5] += 3.0
    dice = np.clip(
        np.where(planted, rng.normal(0.6, 0.08, n_cases), rng.normal(0.9, 0.05, n_cases)), 0, 1
    )
    cases = pd.DataFrame(
        {
            "case_id": case_ids,
            "dice": dice,
            "hd95_mm": np.where(planted, 12.0, 3.0) + rng.gamma(2.0, 1.0, n_cases),
            "meta_site": rng.choice(["A", "B", "C"], n_cases),
            "meta_scanner": rng.choice(["X", "Y"], n_cases),
            "spacing_z": rng.choice([1.0, 2.5, 5.0], n_cases),
            "intensity_mean": rng.normal(100, 10, n_cases),
        }
    )
    out = root / "out"
    out.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(cases, preserve_index=False), out / "cases.parquet")
    write_embeddings(
        out / "embeddings.parquet", case_ids, list(embeddings.astype(np.float32)), source="test"
    )
    return out, {c for c, p in zip(case_ids, planted, strict=True) if p}


def precision_at_10(group, planted):
    top = group["case_ids"][:10]
    return sum(c in planted for c in top) / len(top)


@pytest.mark.parametrize("method", EMBEDDING_METHODS)
def test_embedding_methods_recover_a_planted_subgroup(tmp_path, method):
    out, planted = make_out_folder(tmp_path)
    payload = run_discover(DiscoverOptions(out=out, method=method))
    best = max((precision_at_10(g, planted) for g in payload["subgroups"][:3]), default=0.0)
    assert best >= 0.8, [
        (g["id"], precision_at_10(g, planted), g["size"]) for g in payload["subgroups"]
    ]
    top = payload["subgroups"][0]
    assert top["gap"] > 0.15 and top["p_adjusted"] < 0.05


def test_sliceline_recovers_a_planted_metadata_rule_exactly(tmp_path):
    out, _ = make_out_folder(tmp_path, plant=False)
    cases = pq.read_table(out / "cases.parquet").to_pandas()
    rule = (cases["meta_site"] == "B") & (cases["meta_scanner"] == "Y")
    rng = np.random.default_rng(5)
    cases.loc[rule, "dice"] = np.clip(rng.normal(0.6, 0.05, int(rule.sum())), 0, 1)
    pq.write_table(pa.Table.from_pandas(cases, preserve_index=False), out / "cases.parquet")
    payload = run_discover(DiscoverOptions(out=out, method="sliceline"))
    top = payload["subgroups"][0]
    assert top["rule"] == "meta_scanner = Y AND meta_site = B"
    assert set(top["case_ids"]) == set(cases.loc[rule, "case_id"])
    assert top["p_adjusted"] < 0.05


@pytest.mark.parametrize("method", ["coherent", "domino"])
def test_null_data_raises_no_significant_subgroup_in_19_of_20_seeds(tmp_path, method):
    false_alarms = 0
    for seed in range(20):
        out, _ = make_out_folder(tmp_path / str(seed), n_cases=200, seed=seed, plant=False)
        payload = run_discover(DiscoverOptions(out=out, method=method, seed=seed))
        false_alarms += any(g["p_adjusted"] < 0.05 for g in payload["subgroups"])
    assert false_alarms <= 1


def test_null_data_with_scattered_failures_raises_no_alarm_in_19_of_20_seeds(tmp_path):
    """15% of cases fail badly, each for its own reason (a random direction of the embedding):
    bad cases, but no subgroup. The default method must not report them as one."""
    false_alarms = 0
    for seed in range(20):
        out, _ = make_out_folder(tmp_path / str(seed), n_cases=120, seed=seed, plant=False)
        cases = pq.read_table(out / "cases.parquet").to_pandas()
        rng = np.random.default_rng(seed + 100)
        scattered = rng.choice(len(cases), 18, replace=False)
        cases.loc[scattered, "dice"] = rng.uniform(0.2, 0.7, 18)
        pq.write_table(pa.Table.from_pandas(cases, preserve_index=False), out / "cases.parquet")
        payload = run_discover(DiscoverOptions(out=out, seed=seed))
        false_alarms += any(
            g["p_adjusted"] < 0.05 and g["gap"] >= 0.05 for g in payload["subgroups"]
        )
    assert false_alarms <= 1


def test_same_inputs_and_seed_give_byte_identical_subgroups(tmp_path):
    out, _ = make_out_folder(tmp_path)
    run_discover(DiscoverOptions(out=out, method="domino", seed=3))
    first = (out / "subgroups.json").read_bytes()
    run_discover(DiscoverOptions(out=out, method="domino", seed=3))
    assert (out / "subgroups.json").read_bytes() == first


def test_cross_fitting_tests_every_case_once_with_a_slice_fit_without_it():
    """A slicer whose slice is 'x above the threshold learnt from the fit cases' makes the rule
    each held-out case was tested by visible: it must be the one learnt without its fold."""
    from seg4seg_cli.crossfit import cross_fit, fold_of_each_case

    class ThresholdSlicer:
        def fit(self, embeddings, quality, features):
            x = features["x"].to_numpy()
            self.threshold_ = float(np.median(x[quality < np.median(quality)]))
            self.descriptions_ = [""]
            self.memberships_ = self.transform(embeddings, features)
            return self

        def transform(self, embeddings, features):
            return (features["x"].to_numpy() >= self.threshold_).astype(float)[:, None]

    rng = np.random.default_rng(0)
    n = 100
    features = pd.DataFrame({"x": rng.normal(size=n)})
    quality = 0.9 - 0.3 * (features["x"].to_numpy() > 1) + rng.normal(0, 0.05, n)
    folds = fold_of_each_case(n, 5, seed=4)
    assert np.bincount(folds).tolist() == [20] * 5
    (candidate,) = cross_fit(
        "t", lambda _: ThresholdSlicer(), None, quality, features, folds, 5, np.arange(n)
    )
    for fold in range(5):
        train = folds != fold
        rule = ThresholdSlicer().fit(None, quality[train], features[train].reset_index(drop=True))
        expected = features["x"].to_numpy()[folds == fold] >= rule.threshold_
        np.testing.assert_array_equal(candidate.tested[folds == fold], expected)
    assert 0 <= candidate.stability <= 1 and candidate.stability * 5 == round(
        candidate.stability * 5
    )


def test_stability_counts_the_fold_fits_that_test_the_subgroup():
    """A fold fit that does not find the subgroup again (here: the fit missing the case with the
    lowest x slices the other side) tests none of its held-out cases, and stability is the share
    of fold fits that found it: so no p-value comes from a rule resampling does not reproduce."""
    from seg4seg_cli.crossfit import cross_fit, fold_of_each_case

    rng = np.random.default_rng(1)
    n = 100
    features = pd.DataFrame({"x": rng.normal(size=n)})
    x = features["x"].to_numpy()
    quality = 0.9 - 0.3 * (x > 1)

    class PickySlicer:
        def __init__(self, needs: float) -> None:
            self.needs = needs  # a fit without this x value slices the other side

        def fit(self, embeddings, quality, features):
            self.found_ = self.needs in set(features["x"].tolist())
            self.descriptions_ = [""]
            self.memberships_ = self.transform(embeddings, features)
            return self

        def transform(self, embeddings, features):
            values = features["x"].to_numpy()
            return ((values > 1) if self.found_ else (values < -1)).astype(float)[:, None]

    folds = fold_of_each_case(n, 5, seed=0)
    (candidate,) = cross_fit(
        "t", lambda _: PickySlicer(x.min()), None, quality, features, folds, 5, np.arange(n)
    )
    odd = folds[x.argmin()]  # the one fold fit that did not see it
    assert candidate.stability == 0.8
    np.testing.assert_array_equal(candidate.tested, (x > 1) & (folds != odd))

    # every fold fit misses it (the needed value is seen by the full fit only): never tested
    full_only = PickySlicer(x.min())
    (candidate,) = cross_fit(
        "t", lambda m: full_only if m == n else PickySlicer(np.inf), None, quality, features,
        folds, 5, np.arange(n),
    )  # fmt: skip
    assert candidate.stability == 0.0 and not candidate.tested.any()

    # a fold rule that reproduces it on the fit's cases and takes every held-out case: it was
    # found again (and tests them all), whatever the full fit said of the held-out cases
    class GreedySlicer(PickySlicer):
        def fit(self, embeddings, quality, features):
            self.seen_ = set(features["x"].tolist())
            return super().fit(embeddings, quality, features)

        def transform(self, embeddings, features):
            values = features["x"].to_numpy()
            seen = np.array([v in self.seen_ for v in values.tolist()])
            return np.where(seen, values > 1, True).astype(float)[:, None]

    (candidate,) = cross_fit(
        "t", lambda _: GreedySlicer(x.min()), None, quality, features, folds, 5, np.arange(n)
    )
    assert candidate.stability == 1.0 and candidate.tested.all()


def test_the_top_subgroup_is_the_planted_one_and_stable_in_every_seed(tmp_path):
    """(Stability between seeds and with a case removed is tested on the real sample audit in
    test_audit.py; here the signal is weak, and recall varies between seeds.)"""
    out, planted = make_out_folder(tmp_path)
    for seed in range(3):
        payload = run_discover(DiscoverOptions(out=out, seed=seed))
        top = payload["subgroups"][0]
        # stability counts the fold fits that find it again on their own cases (Jaccard >= 0.5):
        # the weak signal here puts one fold of seed 2 just below (0.48)
        assert top["stability"] >= 0.6
        assert sum(c in planted for c in top["case_ids"]) >= 0.9 * top["size"]
        assert all(g["n_test"] >= 1 and g["gap"] is not None for g in payload["subgroups"])


def test_subgroups_json_follows_the_contract(tmp_path):
    out, _ = make_out_folder(tmp_path)
    payload = run_discover(DiscoverOptions(out=out))
    stored = json.loads((out / "subgroups.json").read_text())
    assert stored == payload
    for key in ("schema_version", "method", "metric", "seed", "n_cases", "overall", "subgroups"):
        assert key in stored
    group = stored["subgroups"][0]
    for key in (
        "rank", "id", "size", "fraction", "case_ids", "metric_mean", "metric_mean_rest", "gap", "gap_ci95",
        "effect_size", "p_value", "p_adjusted", "stability", "description", "top_features",
    ):  # fmt: skip
        assert key in group
    assert [g["rank"] for g in stored["subgroups"]] == list(range(1, len(stored["subgroups"]) + 1))
    gaps = [g["gap"] for g in stored["subgroups"]]
    assert gaps == sorted(gaps, reverse=True)
    assert group["description"].startswith("low dice")
    assert {"name", "mean_in", "mean_rest", "auc"} <= set(group["top_features"][0])
    assert all(g["size"] >= stored["min_size"] for g in stored["subgroups"])


def test_lower_is_better_metric_counts_high_values_as_worse(tmp_path):
    out, planted = make_out_folder(tmp_path)
    payload = run_discover(DiscoverOptions(out=out, method="kmeans", metric="hd95_mm"))
    top = payload["subgroups"][0]
    assert payload["higher_is_better"] is False
    assert top["metric_mean"] > top["metric_mean_rest"] and top["gap"] > 0
    assert top["description"].startswith("high hd95_mm")


def test_method_all_merges_near_duplicates(tmp_path):
    out, planted = make_out_folder(tmp_path)
    payload = run_discover(DiscoverOptions(out=out, method="all"))
    sets = [set(g["case_ids"]) for g in payload["subgroups"]]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            assert len(sets[i] & sets[j]) / len(sets[i] | sets[j]) < 0.5
    assert any(g["merged"] for g in payload["subgroups"])


def test_unknown_metric_is_a_usage_error(cli, tmp_path):
    out, _ = make_out_folder(tmp_path)
    result = cli("discover", out, "--metric", "accuracy")
    assert result.code == 2 and "is not a column of cases.parquet" in result.err


def test_json_format_prints_subgroups_on_stdout_only(cli, tmp_path):
    out, _ = make_out_folder(tmp_path)
    result = cli("discover", out, "--format", "json", "--method", "kmeans")
    assert result.code == 0
    assert json.loads(result.out) == json.loads((out / "subgroups.json").read_text())


# ---------------------------------------------------------------------------- statistics


def test_gap_statistics_sign_ci_and_test():
    rng = np.random.default_rng(0)
    inside, rest = rng.normal(0.6, 0.05, 30), rng.normal(0.9, 0.05, 200)
    stats = gap_statistics(inside, rest, True, np.random.default_rng(1))
    assert stats.gap == pytest.approx(rest.mean() - inside.mean())
    assert stats.gap_ci95[0] < stats.gap < stats.gap_ci95[1]
    # no relabelling and no bootstrap resample reaches the gap: the smallest p the CI allows
    assert stats.effect_size > 3 and stats.p_value == pytest.approx(2 / 1001)
    flipped = gap_statistics(-inside, -rest, False, np.random.default_rng(1))
    assert flipped.gap == pytest.approx(stats.gap) and flipped.p_value == pytest.approx(
        stats.p_value
    )
    too_few = gap_statistics(inside[:4], rest, True, np.random.default_rng(1))
    assert too_few.p_value == 1.0 and too_few.gap_ci95 is None  # fewer than MIN_TEST_CASES


def test_a_significant_gap_always_has_a_ci_that_excludes_zero():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n_in = int(rng.integers(5, 15))
        inside = rng.normal(0.8 - rng.uniform(0, 0.3), rng.uniform(0.05, 0.4), n_in)
        rest = rng.normal(0.85, 0.1, 100)
        stats = gap_statistics(inside, rest, True, rng)
        if stats.p_value < 0.05:
            assert stats.gap_ci95[0] > 0, stats


def test_benjamini_hochberg_matches_the_definition():
    p = [0.01, 0.04, 0.03, 0.2]
    # sorted: 0.01*4/1=0.04, 0.03*4/2=0.06, 0.04*4/3=0.0533, 0.2; monotone from the top
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.0533333, 0.0533333, 0.2], rel=1e-5)
    assert benjamini_hochberg([]) == []


def test_merge_keeps_the_strongest_of_overlapping_groups():
    groups = [{1, 2, 3, 4}, {1, 2, 3, 5}, {7, 8}]
    assert merge_near_duplicates(groups, [0.1, 0.3, 0.2]) == [[1, 0], [2]]


def test_permutation_p_value_is_uniform_under_the_null_and_follows_the_gap(monkeypatch):
    import seg4seg_cli.statistics as statistics

    rng = np.random.default_rng(7)
    p_values = [
        statistics.permutation_p_value(rng.normal(size=15), rng.normal(size=60), True, rng, 500)
        for _ in range(200)
    ]
    assert 0.03 < np.mean(np.array(p_values) < 0.1) < 0.18  # about 10% below 0.1
    # a shifted median with an equal mean is not a worse mean: not significant
    inside = np.full(40, 0.85)
    rest = np.concatenate([np.full(180, 0.9), np.full(20, 0.45)])  # mean 0.855, median 0.9
    assert statistics.permutation_p_value(inside, rest, True, rng) > 0.3
    # above the exact limit the normal approximation is used; it agrees with counting
    big_in, big_rest = rng.normal(0.0, 1, 300), rng.normal(0.12, 1, 1900)
    approx = statistics.permutation_p_value(big_in, big_rest, True, rng)
    monkeypatch.setattr(statistics, "EXACT_PERMUTATION_MAX_CASES", 10_000)
    counted = statistics.permutation_p_value(big_in, big_rest, True, np.random.default_rng(1), 4000)
    assert abs(counted - approx) < 0.02, (counted, approx)


def test_domino_models_the_prediction_summary_where_embeddings_do_not_separate():
    """An artefact segmented as an extra blob: invisible to the (averaged) embedding, visible in
    the predicted mask's component count and volume, which need no reference. Held-out cases
    are assigned by the prediction summary; without it they are assigned at random."""
    from seg4seg_cli.slicers.domino import DominoSlicer

    rng = np.random.default_rng(3)
    n_cases = 300
    planted = np.zeros(n_cases, bool)
    planted[rng.choice(n_cases, 45, replace=False)] = True
    embeddings = rng.normal(size=(n_cases, 64))  # the same distribution for every case
    vol_ref = rng.uniform(0.1, 0.3, n_cases)
    quality = np.where(planted, rng.normal(0.6, 0.05, n_cases), rng.normal(0.95, 0.02, n_cases))
    features = pd.DataFrame(
        {
            "vol_pred_ml": vol_ref + np.where(planted, rng.uniform(0.1, 0.2, n_cases), 0.0),
            "n_comp_pred": np.where(planted, 2.0, 1.0),
        }
    )
    fit, held_out = np.arange(0, n_cases, 2), np.arange(1, n_cases, 2)

    def held_out_precision(**params) -> float:
        slicer = DominoSlicer(random_state=0, min_slice_size=10, **params)
        slicer.fit(embeddings[fit], quality[fit], features.iloc[fit].reset_index(drop=True))
        strengths = slicer.transform(
            embeddings[held_out], features.iloc[held_out].reset_index(drop=True)
        )
        members = strengths[:, 0] > 0  # the slice of highest error
        return planted[held_out][members].mean() if members.any() else 0.0

    assert held_out_precision() >= 0.95
    assert held_out_precision(prediction_weight=0.0) < 0.5  # embeddings alone: near 15% chance
