"""`seg4seg discover`: find failure subgroups in an out folder and write `subgroups.json`.

Honest statistics by cross-fitting (`crossfit.py`): the method is fitted on all cases, which gives
the subgroups reported, and once per fold on the other folds; each case is tested once, as a
member or not of the matching slice of the fit that did not see its quality. Every statistic
(means, gap, CI, effect size, p-value) compares the tested members with the other cases, so all
cases are used and p-values stay valid: on data without a real failure subgroup they are uniform.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from seg4seg_cli import atomic, console
from seg4seg_cli.crossfit import Candidate, cross_fit, fold_of_each_case
from seg4seg_cli.embeddings_store import bottleneck_mean, read_embedding_blocks, read_embeddings
from seg4seg_cli.errors import DataError, UsageError
from seg4seg_cli.metrics import METRIC_NAMES
from seg4seg_cli.run_record import now_iso, write_step
from seg4seg_cli.slicers import METHODS, make_slicer
from seg4seg_cli.statistics import (
    benjamini_hochberg,
    describe,
    gap_statistics,
    merge_near_duplicates,
)

SCHEMA_VERSION = 1
HIGHER_IS_BETTER = {"dice", "iou", "nsd"}
# Properties of the reference alone or of the prediction alone (volumes, component counts) describe
# a case without measuring the error, so rule-based methods may use them ("vol_ref_ml < 0.2",
# "n_comp_pred >= 2"); every other metric compares the two and is never a candidate predicate.
DESCRIPTIVE_METRICS = {"vol_ref_ml", "vol_pred_ml", "n_comp_ref", "n_comp_pred"}
_ERROR_FAMILIES = (set(METRIC_NAMES) - DESCRIPTIVE_METRICS) | {"ref_empty", "pred_empty"}


@dataclass
class DiscoverOptions:
    """What `seg4seg discover` was asked to do (flags of the same names)."""

    out: Path
    method: str = "coherent"
    metric: str = "dice"
    n_slices: int = 5
    min_size: int | None = None
    seed: int = 0
    folds: int = 5  # cross-fitting folds
    # hyperparameter overrides of the method (one method only), and where to write the result
    params: dict | None = None
    output: Path | None = None  # default OUT/subgroups.json


def default_min_size(n_cases: int) -> int:
    return max(10, math.ceil(0.02 * n_cases))


def higher_is_better(metric: str) -> bool:
    return metric.split("__", 1)[0] in HIGHER_IS_BETTER


def quality_of(values: np.ndarray, metric: str) -> np.ndarray:
    """Higher-is-better quality from a metric column (lower-is-better ones negated; a signed
    volume difference by its magnitude)."""
    if higher_is_better(metric):
        return values
    if metric.split("__", 1)[0] == "vol_diff_ml":
        return -np.abs(values)
    return -values


def _rounded(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def load_out_folder(
    out: Path, bottleneck_only: bool = False
) -> tuple[pd.DataFrame, np.ndarray | None, str | None]:
    """cases.parquet as a DataFrame sorted by case id, and the embeddings aligned to it (only the
    deepest stage's mean-pooled block with `bottleneck_only`)."""
    cases_file = out / "cases.parquet"
    if not cases_file.is_file():
        raise DataError(f"{cases_file} does not exist; run `seg4seg features` into {out} first")
    cases = (
        pq.read_table(cases_file)
        .to_pandas()
        .sort_values("case_id", kind="stable")
        .reset_index(drop=True)
    )
    embeddings_file = out / "embeddings.parquet"
    if not embeddings_file.is_file():
        return cases, None, None
    ids, matrix, sources = read_embeddings(embeddings_file)
    index = {case_id: i for i, case_id in enumerate(ids)}
    missing = [c for c in cases["case_id"] if c not in index]
    if missing:
        raise DataError(
            f"{embeddings_file} has no embedding for {len(missing)} case(s) of cases.parquet "
            f"({', '.join(missing[:5])}); rerun predict or features into {out}"
        )
    aligned = matrix[[index[c] for c in cases["case_id"]]]
    if bottleneck_only:
        aligned = bottleneck_mean(aligned, read_embedding_blocks(embeddings_file))
    return cases, aligned, sources[0] if sources else None


def candidate_features(cases: pd.DataFrame) -> pd.DataFrame:
    """The columns rule-based methods may use: image features, volumes and component counts of
    reference and prediction, entropy and metadata; never the errors themselves."""
    keep = [
        c for c in cases.columns if c != "case_id" and c.split("__", 1)[0] not in _ERROR_FAMILIES
    ]
    return cases[keep]


def _validate(options: DiscoverOptions) -> list[str]:
    methods = sorted(METHODS) if options.method == "all" else [options.method]
    for method in methods:
        if method not in METHODS:
            raise UsageError(
                f"--method must be one of {', '.join(sorted(METHODS))} or all, not {options.method!r}"
            )
    if options.params and len(methods) > 1:
        raise UsageError("hyperparameter overrides apply to one method, not to --method all")
    if options.folds < 2:
        raise UsageError(f"--crossfit-folds must be at least 2, got {options.folds}")
    if options.n_slices < 1:
        raise UsageError(f"--n-slices must be at least 1, got {options.n_slices}")
    return methods


def _usable_cases(
    out: Path, metric: str
) -> tuple[pd.DataFrame, np.ndarray | None, str | None, np.ndarray]:
    """cases.parquet rows with a finite `metric`, their embeddings, and the metric values."""
    cases, embeddings, embedding_source = load_out_folder(out)
    if metric not in cases.columns:
        metrics = [c for c in cases.columns if c.split("__", 1)[0] in METRIC_NAMES]
        raise UsageError(
            f"--metric {metric!r} is not a column of cases.parquet (choose from {', '.join(metrics)})"
        )
    values = cases[metric].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(values)
    if not usable.all():
        console.warn(f"{int((~usable).sum())} case(s) have no {metric} value and are left out")
        cases, values = cases[usable].reset_index(drop=True), values[usable]
        embeddings = embeddings[usable] if embeddings is not None else None
    return cases, embeddings, embedding_source, values


def _find_candidates(
    options: DiscoverOptions,
    methods: list[str],
    cases: pd.DataFrame,
    embeddings: np.ndarray | None,
    quality: np.ndarray,
    min_size: int,
    folds: np.ndarray,
) -> list[Candidate]:
    features = candidate_features(cases)
    n_cases = len(cases)
    tie_break = cases["case_id"].to_numpy()
    candidates = []
    for method in methods:
        if METHODS[method][2] and embeddings is None:
            raise DataError(
                f"{options.out}/embeddings.parquet does not exist; method {method} needs embeddings "
                "(run seg4seg predict, or features, which writes image descriptors when there is no model)"
            )

        make = slicer_factory(
            method, options.n_slices, options.seed, min_size, n_cases, options.params
        )
        candidates += cross_fit(
            method, make, embeddings, quality, features, folds, min_size, tie_break
        )
    return candidates


def slicer_factory(
    method: str, n_slices: int, seed: int, min_size: int, n_cases: int, params: dict | None
):
    """`make(n_fit)` for `cross_fit`: the method's slicer for a fit on n_fit of the n_cases, its
    minimum size scaled down with the share of cases the fit sees."""

    def make(n_fit: int):
        fit_min_size = max(2, math.ceil(min_size * n_fit / n_cases))
        return make_slicer(method, n_slices, seed, fit_min_size, params)

    return make


def _failing(candidates: list[Candidate], values: np.ndarray, better: bool) -> list[Candidate]:
    """Slices worse than the rest on the cases they were found on: the failure modes."""
    sign = 1 if better else -1
    kept = []
    for candidate in candidates:
        mask = candidate.mask
        if sign * (values[~mask].mean() - values[mask].mean()) > 0:
            kept.append(candidate)
    return kept


def _rank(
    candidates: list[Candidate], values: np.ndarray, better: bool, seed: int
) -> list[tuple[Candidate, list[Candidate], object, float]]:
    """Tested statistics of each candidate, near-duplicates merged, ranked by gap, BH-adjusted."""
    rng = np.random.default_rng([seed, 1])
    # a slice that no fold fit found again has no tested member: nothing to report or test
    candidates = [c for c in candidates if c.tested.any() and not c.tested.all()]
    stats = [gap_statistics(values[c.tested], values[~c.tested], better, rng) for c in candidates]
    clusters = merge_near_duplicates([set(c.order) for c in candidates], [s.gap for s in stats])
    kept = [(cluster[0], cluster[1:]) for cluster in clusters]
    kept.sort(
        key=lambda item: (
            -stats[item[0]].gap,
            -len(candidates[item[0]].order),
            candidates[item[0]].method,
            candidates[item[0]].slice,
        )
    )
    adjusted = benjamini_hochberg([stats[i].p_value for i, _ in kept])
    return [
        (candidates[i], [candidates[m] for m in merged], stats[i], p)
        for (i, merged), p in zip(kept, adjusted, strict=True)
    ]


def _subgroup_entry(
    rank: int,
    candidate: Candidate,
    merged: list[Candidate],
    stats,
    p_adjusted: float,
    cases: pd.DataFrame,
    metric: str,
    better: bool,
) -> dict:
    description, top = describe(cases, candidate.mask, metric, better)
    if candidate.rule:
        description = f"{candidate.rule}; {description}"
    n_cases = len(cases)
    return {
        "rank": rank,
        "id": f"{candidate.method}-{candidate.slice}",
        "method": candidate.method,
        "size": len(candidate.order),
        "fraction": _rounded(len(candidate.order) / n_cases),
        "case_ids": [cases["case_id"].iloc[i] for i in candidate.order],
        "metric_mean": _rounded(stats.metric_mean),
        "metric_mean_rest": _rounded(stats.metric_mean_rest),
        "gap": _rounded(stats.gap),
        "gap_ci95": [_rounded(v) for v in stats.gap_ci95] if stats.gap_ci95 else None,
        "effect_size": _rounded(stats.effect_size),
        "p_value": _rounded(stats.p_value),
        "p_adjusted": _rounded(p_adjusted),
        "stability": _rounded(candidate.stability),
        "n_test": stats.n_in,
        "n_test_rest": stats.n_rest,
        "description": description,
        "rule": candidate.rule or None,
        "merged": [f"{m.method}-{m.slice}" for m in merged],
        "top_features": [
            {k: (_rounded(v) if isinstance(v, float) else v) for k, v in feature.items()}
            for feature in top
        ],
    }


def run_discover(options: DiscoverOptions) -> dict:
    """Run the method(s) on `options.out`, write subgroups.json and return its content."""
    started, start_iso = time.perf_counter(), now_iso()
    out = Path(options.out)
    methods = _validate(options)
    cases, embeddings, embedding_source, values = _usable_cases(out, options.metric)
    n_cases = len(cases)
    min_size = options.min_size if options.min_size is not None else default_min_size(n_cases)
    if n_cases < 2 * min_size:
        raise DataError(
            f"{n_cases} cases are too few to find subgroups of at least {min_size} cases (--min-size)"
        )
    better = higher_is_better(options.metric)
    folds = fold_of_each_case(n_cases, min(options.folds, n_cases), options.seed)
    quality = quality_of(values, options.metric)
    candidates = _find_candidates(options, methods, cases, embeddings, quality, min_size, folds)
    ranked = _rank(_failing(candidates, values, better), values, better, options.seed)
    subgroups = [
        _subgroup_entry(rank, *item, cases, options.metric, better)
        for rank, item in enumerate(ranked, start=1)
    ]
    payload = {
        "schema_version": SCHEMA_VERSION,
        "method": options.method,
        **({"params": options.params} if options.params else {}),
        "metric": options.metric,
        "higher_is_better": better,
        "seed": options.seed,
        "n_cases": n_cases,
        "min_size": min_size,
        "folds": int(folds.max()) + 1,
        "n_test": n_cases,
        "embedding_source": embedding_source,
        "overall": {
            "mean": _rounded(float(values.mean())),
            "median": _rounded(float(np.median(values))),
        },
        "statistics": (
            "cross-fitted: each case is tested once, as a member or not of the matching slice of "
            "the fit made without its fold; means, gap, CI, effect size and p-values compare the "
            "tested members with the other cases; p_adjusted is Benjamini-Hochberg across all "
            "subgroups reported; stability is the share of fold fits in which the subgroup "
            "reappears with Jaccard >= 0.5"
        ),
        "subgroups": subgroups,
    }
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic.write_bytes(options.output or out / "subgroups.json", text.encode("utf-8"))
    write_step(
        out / "run.json",
        "discover",
        {
            "settings": {
                "method": options.method,
                "metric": options.metric,
                "n_slices": options.n_slices,
                "min_size": min_size,
                "seed": options.seed,
                "folds": payload["folds"],
                "params": options.params or {},
            },
            "started_at": start_iso,
            "finished_at": now_iso(),
            "seconds": round(time.perf_counter() - started, 3),
            "n_subgroups": len(subgroups),
        },
    )
    return payload
