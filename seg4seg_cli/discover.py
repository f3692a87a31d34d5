"""`seg4seg discover`: find failure subgroups in an out folder and write `subgroups.json`.

Honest statistics by sample splitting: the cases are split at random (seeded) into a discovery
half and a test half. Methods see the quality of the discovery half only; their slices are then
applied to every case from embeddings and features alone, and every statistic (means, gap, CI,
effect size, p-value) is computed on the test half, where the slice was not chosen by looking at
the quality. So p-values are valid, and on data without a real failure subgroup they are uniform.
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
from seg4seg_cli.embeddings_store import read_embeddings
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
    method: str = "domino"
    metric: str = "dice"
    n_slices: int = 5
    min_size: int | None = None
    seed: int = 0
    holdout: float = 0.5
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


def load_out_folder(out: Path) -> tuple[pd.DataFrame, np.ndarray | None, str | None]:
    """cases.parquet as a DataFrame sorted by case id, and the embeddings aligned to it."""
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
    return cases, aligned, sources[0] if sources else None


def candidate_features(cases: pd.DataFrame) -> pd.DataFrame:
    """The columns rule-based methods may use: image features, volumes and component counts of
    reference and prediction, entropy and metadata; never the errors themselves."""
    keep = [
        c for c in cases.columns if c != "case_id" and c.split("__", 1)[0] not in _ERROR_FAMILIES
    ]
    return cases[keep]


def run_discover(options: DiscoverOptions) -> dict:
    """Run the method(s) on `options.out`, write subgroups.json and return its content."""
    started, start_iso = time.perf_counter(), now_iso()
    out = Path(options.out)
    methods = sorted(METHODS) if options.method == "all" else [options.method]
    for method in methods:
        if method not in METHODS:
            raise UsageError(
                f"--method must be one of {', '.join(sorted(METHODS))} or all, not {options.method!r}"
            )
    if options.params and len(methods) > 1:
        raise UsageError("hyperparameter overrides apply to one method, not to --method all")
    if not 0 < options.holdout < 1:
        raise UsageError(f"--holdout must be between 0 and 1, got {options.holdout}")
    if options.n_slices < 1:
        raise UsageError(f"--n-slices must be at least 1, got {options.n_slices}")

    cases, embeddings, embedding_source = load_out_folder(out)
    if options.metric not in cases.columns:
        metrics = [c for c in cases.columns if c.split("__", 1)[0] in METRIC_NAMES]
        raise UsageError(
            f"--metric {options.metric!r} is not a column of cases.parquet (choose from {', '.join(metrics)})"
        )
    values = cases[options.metric].to_numpy(dtype=np.float64, na_value=np.nan)
    usable = np.isfinite(values)
    if not usable.all():
        console.warn(
            f"{int((~usable).sum())} case(s) have no {options.metric} value and are left out"
        )
        cases, values = cases[usable].reset_index(drop=True), values[usable]
        embeddings = embeddings[usable] if embeddings is not None else None
    n_cases = len(cases)
    min_size = options.min_size if options.min_size is not None else default_min_size(n_cases)
    if n_cases < 2 * min_size:
        raise DataError(
            f"{n_cases} cases are too few to find subgroups of at least {min_size} cases (--min-size)"
        )
    quality = quality_of(values, options.metric)
    better = higher_is_better(options.metric)
    features = candidate_features(cases)

    rng = np.random.default_rng(options.seed)
    permutation = rng.permutation(n_cases)
    n_fit = int(round(n_cases * (1 - options.holdout)))
    fit_index, test_mask = np.sort(permutation[:n_fit]), np.zeros(n_cases, bool)
    test_mask[permutation[n_fit:]] = True

    candidates = []
    for method in methods:
        needs_embeddings = METHODS[method][2]
        if needs_embeddings and embeddings is None:
            raise DataError(
                f"{out}/embeddings.parquet does not exist; method {method} needs embeddings "
                "(run seg4seg predict, or features, which writes image descriptors when there is no model)"
            )
        fit_min_size = max(2, math.ceil(min_size * n_fit / n_cases))
        slicer = make_slicer(method, options.n_slices, options.seed, fit_min_size, options.params)
        slicer.fit(
            embeddings[fit_index] if embeddings is not None else None,
            quality[fit_index],
            features.iloc[fit_index].reset_index(drop=True),
        )
        strengths = slicer.transform(embeddings, features)
        for j in range(strengths.shape[1]):
            members = np.flatnonzero(strengths[:, j] > 0)
            if members.size < min_size:
                continue
            # strongest first; ties by case id
            order = sorted(members, key=lambda i: (-strengths[i, j], cases["case_id"].iloc[i]))
            candidates.append(
                {
                    "method": method,
                    "slice": j,
                    "order": order,
                    "rule": slicer.descriptions_[j] if j < len(slicer.descriptions_) else "",
                }
            )

    stats_rng = np.random.default_rng([options.seed, 1])
    fit_mask = ~test_mask
    failing = []
    for candidate in candidates:
        member_mask = np.zeros(n_cases, bool)
        member_mask[candidate["order"]] = True
        candidate["mask"] = member_mask
        inside, rest = values[member_mask & fit_mask], values[~member_mask & fit_mask]
        # a slice the method found no worse than the rest on its own cases is not a failure mode
        if (
            inside.size == 0
            or rest.size == 0
            or (1 if better else -1) * (rest.mean() - inside.mean()) <= 0
        ):
            continue
        failing.append(candidate)
    candidates = failing
    for candidate in candidates:
        member_mask = candidate["mask"]
        candidate["stats"] = gap_statistics(
            values[member_mask & test_mask], values[~member_mask & test_mask], better, stats_rng
        )

    clusters = merge_near_duplicates(
        [set(c["order"]) for c in candidates], [c["stats"].gap for c in candidates]
    )
    kept = [(candidates[cluster[0]], [candidates[i] for i in cluster[1:]]) for cluster in clusters]
    kept.sort(
        key=lambda item: (
            -item[0]["stats"].gap,
            -len(item[0]["order"]),
            item[0]["method"],
            item[0]["slice"],
        )
    )
    adjusted = benjamini_hochberg([c["stats"].p_value for c, _ in kept])

    subgroups = []
    for rank, ((candidate, merged), p_adjusted) in enumerate(
        zip(kept, adjusted, strict=True), start=1
    ):
        stats = candidate["stats"]
        description, top = describe(cases, candidate["mask"], options.metric, better)
        if candidate["rule"]:
            description = f"{candidate['rule']}; {description}"
        subgroups.append(
            {
                "rank": rank,
                "id": f"{candidate['method']}-{candidate['slice']}",
                "method": candidate["method"],
                "size": len(candidate["order"]),
                "fraction": _rounded(len(candidate["order"]) / n_cases),
                "case_ids": [cases["case_id"].iloc[i] for i in candidate["order"]],
                "metric_mean": _rounded(stats.metric_mean),
                "metric_mean_rest": _rounded(stats.metric_mean_rest),
                "gap": _rounded(stats.gap),
                "gap_ci95": [_rounded(v) for v in stats.gap_ci95] if stats.gap_ci95 else None,
                "effect_size": _rounded(stats.effect_size),
                "p_value": _rounded(stats.p_value),
                "p_adjusted": _rounded(p_adjusted),
                "n_test": stats.n_in,
                "n_test_rest": stats.n_rest,
                "description": description,
                "rule": candidate["rule"] or None,
                "merged": [f"{m['method']}-{m['slice']}" for m in merged],
                "top_features": [
                    {k: (_rounded(v) if isinstance(v, float) else v) for k, v in feature.items()}
                    for feature in top
                ],
            }
        )

    payload = {
        "schema_version": SCHEMA_VERSION,
        "method": options.method,
        **({"params": options.params} if options.params else {}),
        "metric": options.metric,
        "higher_is_better": better,
        "seed": options.seed,
        "n_cases": n_cases,
        "min_size": min_size,
        "holdout": options.holdout,
        "n_test": int(test_mask.sum()),
        "embedding_source": embedding_source,
        "overall": {
            "mean": _rounded(float(values.mean())),
            "median": _rounded(float(np.median(values))),
        },
        "statistics": (
            "means, gap, CI, effect size and p-values are computed on the held-out test cases only "
            "(honest: the slices were found on the other cases); p_adjusted is Benjamini-Hochberg "
            "across all subgroups reported"
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
                "holdout": options.holdout,
                "params": options.params or {},
            },
            "started_at": start_iso,
            "finished_at": now_iso(),
            "seconds": round(time.perf_counter() - started, 3),
            "n_subgroups": len(subgroups),
        },
    )
    return payload
