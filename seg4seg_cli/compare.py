"""`seg4seg compare`: where is the candidate model worse than the baseline, on the same cases?

Both models are run on the same data (or their predictions are read), each into its own audit
folder (`OUT/baseline`, `OUT/candidate`: predictions, embeddings, cases.parquet), so both sides
resume like `seg4seg audit`. The paired change of each case (candidate − baseline, signed so
that positive is better) is then searched for subgroups the way `discover` searches errors:
cross-fitted, so that each case is tested once by a slice found without it, with stability.

Steps of `run_compare`:
1. each side: predict (a model) or take predictions made elsewhere; then features;
2. pair the cases: the ids both sides have with a finite metric; the rest is listed, not used;
3. overall change: paired mean with its t interval, shares of cases improved and worsened;
4. regressions: slices of the cases whose change is most negative, found on the representation
   of both models' embeddings and the candidate's label-free columns; improvements likewise;
5. statistics: the tested members' changes, paired t-test against 0; Benjamini-Hochberg across
   every subgroup reported; a regression is a *new* failure mode when the baseline was not worse
   there than elsewhere, else a *deepened* one;
6. the gate, `comparison.json` and the reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seg4seg_cli import atomic, console
from seg4seg_cli.crossfit import Candidate, cross_fit, fold_of_each_case
from seg4seg_cli.discover import (
    candidate_features,
    default_min_size,
    higher_is_better,
    load_out_folder,
    quality_of,
    slicer_factory,
)
from seg4seg_cli.errors import DataError, UsageError
from seg4seg_cli.features import FeaturesOptions, run_features
from seg4seg_cli.gate import Verdict
from seg4seg_cli.image_quality import QUALITY_FEATURES
from seg4seg_cli.predict import PredictOptions, run_predict
from seg4seg_cli.run_record import now_iso, write_step
from seg4seg_cli.slicers import METHODS
from seg4seg_cli.statistics import (
    PairedStatistics,
    benjamini_hochberg,
    describe,
    gap_statistics,
    merge_near_duplicates,
    paired_statistics,
)

SCHEMA_VERSION = 1
SIDES = ("baseline", "candidate")
# a regression is "new" when the baseline was not worse inside than outside by this much
NEW_MODE_MARGIN = 0.05
SHOWN_LEFT_OUT = 10
# compare's own defaults for the coherent slicer, under any --param given: its representation
# holds both models' embeddings side by side, and fewer principal components of them (16 rather
# than up to 32) found the planted regression among scattered ones on 30/32 development
# comparisons instead of 26/32 (8 to 24 all did as well; docs/compare.md). The silhouette check,
# member order and linear failure model are those the comparison bench ran with: the neighbour
# check and neighbour vote that became discover's defaults on 2026-12-03 were chosen on
# discovery data, not on comparisons. So was discover's member order by closeness to the nearest
# half of a slice's members (also 2026-12-03); compare keeps closeness to the 5 nearest.
COHERENT_DEFAULTS = {
    "n_pca_components": 16,
    "coherence": "silhouette",
    "order": "prob_near",
    "near_k": 5,
    "predictor": "linear",
}
# and the representation the comparison bench ran with: the mean-pooled bottleneck of each model
# (not the mean and maximum of every encoder stage that discover has used since 2026-12-03) and
# the candidate's label-free columns without the image-quality ones added on that day
LEFT_OUT_COLUMNS = QUALITY_FEATURES


@dataclass(frozen=True)
class CompareRules:
    fail_regression: float | None = None  # a significant regression with change <= -this fails
    fail_mean_drop: float | None = None  # an overall mean change <= -this fails
    alpha: float = 0.05

    @property
    def applied(self) -> bool:
        return self.fail_regression is not None or self.fail_mean_drop is not None


@dataclass
class CompareOptions:
    """What `seg4seg compare` was asked to do (flags of the same names)."""

    data: Path
    out: Path = Path("seg4seg_compare")
    baseline: Path | None = None
    candidate: Path | None = None
    baseline_predictions: Path | None = None
    candidate_predictions: Path | None = None
    metadata: Path | None = None
    method: str = "coherent"
    metric: str = "dice"
    n_slices: int = 5
    min_size: int | None = None
    seed: int = 0
    folds: int = 5
    device: str = "auto"
    checkpoint: str = "checkpoint_final.pth"
    workers: int = 1
    params: dict | None = None  # hyperparameter overrides of the method (as discover's)
    num_parts: int = 1  # >1: predict and compute features of one part of the cases only
    part_id: int = 0
    rules: CompareRules = field(default_factory=CompareRules)


@dataclass
class Side:
    """One model's audit folder and what was left out of it."""

    name: str
    out: Path
    source: str
    skipped: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------- step 1
def _check(options: CompareOptions) -> None:
    for side in SIDES:
        model = getattr(options, side)
        predictions = getattr(options, f"{side}_predictions")
        if (model is None) == (predictions is None):
            raise UsageError(
                f"give exactly one of --{side} MODEL or --{side}-predictions DIR "
                f"(got {'both' if model is not None else 'neither'})"
            )
        if predictions is not None and not Path(predictions).is_dir():
            raise UsageError(f"--{side}-predictions {predictions} is not a folder")
    if options.method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(sorted(METHODS))}")
    if options.folds < 2:
        raise UsageError(f"--crossfit-folds must be at least 2, got {options.folds}")


def _prepare_side(options: CompareOptions, name: str, step: int) -> Side:
    """Predict with the side's model (or take its predictions) and compute its features."""
    out = Path(options.out) / name
    model = getattr(options, name)
    predictions = getattr(options, f"{name}_predictions")
    skipped: dict[str, str] = {}
    if model is not None:
        console.info(f"compare {step}/4: predicting with the {name} model")
        predicted = run_predict(
            PredictOptions(
                model=model, out=out, data=options.data, checkpoint=options.checkpoint,
                device=options.device, on_settings_change="redo", num_parts=options.num_parts,
                part_id=options.part_id,
            )
        )  # fmt: skip
        console.case_summary(
            f"predict ({name})", predicted.new, predicted.reused, predicted.skipped,
            predicted.seconds, predicted.device, out, is_result=False,
        )  # fmt: skip
        skipped.update(predicted.skipped)
    console.info(f"compare {step}/4: computing the {name} features")
    features = run_features(
        FeaturesOptions(
            data=options.data, out=out, predictions=predictions, metadata=options.metadata,
            workers=options.workers, num_parts=options.num_parts, part_id=options.part_id,
        )
    )  # fmt: skip
    console.case_summary(
        f"features ({name})", features.new, features.reused, features.skipped, features.seconds,
        "cpu", out, is_result=False,
    )  # fmt: skip
    skipped.update(features.skipped)
    source = str(model) if model is not None else f"predictions {predictions}"
    return Side(name, out, source, skipped)


# ---------------------------------------------------------------------------- step 2
@dataclass
class Paired:
    case_ids: np.ndarray
    baseline: np.ndarray  # metric values
    candidate: np.ndarray
    change: np.ndarray  # quality(candidate) - quality(baseline): positive is better
    embeddings: np.ndarray | None
    features: pd.DataFrame  # the candidate's columns, for slicers and descriptions
    left_out: dict[str, list[str]]


def _pair(sides: dict[str, Side], metric: str) -> Paired:
    frames, embeddings = {}, {}
    for name, side in sides.items():
        cases, matrix, _ = load_out_folder(side.out, bottleneck_only=True)
        if metric not in cases.columns:
            raise UsageError(f"--metric {metric!r} is not a column of {side.out}/cases.parquet")
        frames[name], embeddings[name] = cases, matrix
    ids = {name: set(frame["case_id"]) for name, frame in frames.items()}
    left_out = {
        "only_baseline": sorted(ids["baseline"] - ids["candidate"]),
        "only_candidate": sorted(ids["candidate"] - ids["baseline"]),
    }
    common = sorted(ids["baseline"] & ids["candidate"])
    values, rows = {}, {}
    for name, frame in frames.items():
        index = pd.Index(frame["case_id"])
        rows[name] = index.get_indexer(common)
        values[name] = frame[metric].to_numpy(dtype=np.float64, na_value=np.nan)[rows[name]]
    finite = np.isfinite(values["baseline"]) & np.isfinite(values["candidate"])
    left_out["no_metric"] = [c for c, ok in zip(common, finite, strict=True) if not ok]
    for key, label in (
        ("only_baseline", "only the baseline has"),
        ("only_candidate", "only the candidate has"),
        ("no_metric", f"have no {metric} value on one side and are"),
    ):
        if left_out[key]:
            shown = ", ".join(left_out[key][:SHOWN_LEFT_OUT])
            more = len(left_out[key]) - SHOWN_LEFT_OUT
            console.warn(
                f"{len(left_out[key])} case(s) {label} left out of the comparison: {shown}"
                + (f" (+{more} more)" if more > 0 else "")
            )
    keep = np.flatnonzero(finite)
    if keep.size == 0:
        raise DataError("the baseline and the candidate share no case with a metric value")
    matrices = [embeddings[n][rows[n][keep]] for n in SIDES if embeddings[n] is not None]
    base, cand = values["baseline"][keep], values["candidate"][keep]
    features = frames["candidate"].iloc[rows["candidate"][keep]].reset_index(drop=True)
    return Paired(
        case_ids=np.asarray(common, dtype=object)[keep],
        baseline=base,
        candidate=cand,
        change=quality_of(cand, metric) - quality_of(base, metric),
        embeddings=np.hstack(matrices) if matrices else None,
        features=features,
        left_out=left_out,
    )


# ---------------------------------------------------------------------------- step 3
def _overall(paired: Paired) -> dict:
    stats = paired_statistics(paired.change)
    return {
        "baseline_mean": _rounded(float(paired.baseline.mean())),
        "candidate_mean": _rounded(float(paired.candidate.mean())),
        "mean_change": _rounded(stats.mean),
        "mean_change_ci95": [_rounded(v) for v in stats.ci95] if stats.ci95 else None,
        "p_value": _significant(stats.p_value),
        "improved": _rounded(float(np.mean(paired.change > 0))),
        "worsened": _rounded(float(np.mean(paired.change < 0))),
        "unchanged": _rounded(float(np.mean(paired.change == 0))),
    }


# ---------------------------------------------------------------------------- step 4
def slicer_params(options: CompareOptions) -> dict | None:
    """The slicer's hyperparameters: compare's defaults for `coherent`, then the user's."""
    if options.method != "coherent":
        return options.params
    return {**COHERENT_DEFAULTS, **(options.params or {})}


def _find(
    options: CompareOptions, paired: Paired, min_size: int, folds: np.ndarray
) -> list[tuple[str, Candidate]]:
    """Slices of the most negative changes (regressions) and of the most positive ones."""
    if not np.any(paired.change):
        return []  # the two models agree on every case: nothing to find
    if METHODS[options.method][2] and paired.embeddings is None:
        raise DataError(f"method {options.method} needs embeddings; neither side has any")
    features = candidate_features(paired.features)
    features = features.drop(columns=[c for c in LEFT_OUT_COLUMNS if c in features.columns])
    make = slicer_factory(
        options.method, options.n_slices, options.seed, min_size, paired.change.size,
        slicer_params(options),
    )  # fmt: skip

    found = []
    for direction, quality in (("regression", paired.change), ("improvement", -paired.change)):
        for candidate in cross_fit(
            options.method, make, paired.embeddings, quality, features, folds, min_size,
            paired.case_ids,
        ):  # fmt: skip
            inside = quality[candidate.mask].mean()
            if inside < quality[~candidate.mask].mean() and inside < 0:
                found.append((direction, candidate))
    return found


# ---------------------------------------------------------------------------- step 5
def _subgroups(
    found: list[tuple[str, Candidate]], paired: Paired, options: CompareOptions
) -> list[dict]:
    tested = [(direction, c) for direction, c in found if c.tested.any() and not c.tested.all()]
    stats = [paired_statistics(paired.change[c.tested]) for _, c in tested]
    # one entry per direction and near-duplicate cluster, the strongest change kept
    entries = []
    for direction in ("regression", "improvement"):
        index = [i for i, (d, _) in enumerate(tested) if d == direction]
        strength = [-stats[i].mean if direction == "regression" else stats[i].mean for i in index]
        clusters = merge_near_duplicates([set(tested[i][1].order) for i in index], strength)
        for cluster in clusters:
            entries.append((index[cluster[0]], [index[m] for m in cluster[1:]]))
    adjusted = benjamini_hochberg([stats[i].p_value for i, _ in entries])
    better = higher_is_better(options.metric)
    rng = np.random.default_rng([options.seed, 3])
    groups = [
        _entry(tested[i][0], tested[i][1], [tested[m][1] for m in merged], stats[i], p, paired,
               options.metric, better, rng)
        for (i, merged), p in zip(entries, adjusted, strict=True)
    ]  # fmt: skip
    groups.sort(
        key=lambda g: (
            g["direction"] != "regression",
            g["mean_change"] * (1 if g["direction"] == "regression" else -1),
            g["id"],
        )
    )
    for rank, group in enumerate(groups, start=1):
        group["rank"] = rank
    return groups


def _entry(
    direction: str,
    candidate: Candidate,
    merged: list[Candidate],
    stats: PairedStatistics,
    p_adjusted: float,
    paired: Paired,
    metric: str,
    better: bool,
    rng: np.random.Generator,
) -> dict:
    mask = candidate.mask
    change_column = f"{metric}_change"
    frame = paired.features.assign(**{change_column: paired.change})
    description, _ = describe(frame, mask, change_column, direction == "regression")
    if direction == "improvement":
        description = description.replace(f"high {change_column}", f"higher {metric}", 1)
    else:
        description = description.replace(f"low {change_column}", f"lower {metric}", 1)
    baseline = gap_statistics(paired.baseline[mask], paired.baseline[~mask], better, rng)
    mode = None
    if direction == "regression":
        worse_before = baseline.gap >= NEW_MODE_MARGIN and baseline.p_value < 0.05
        mode = "deepened" if worse_before else "new"
    return {
        "rank": 0,
        "id": f"{direction}-{candidate.method}-{candidate.slice}",
        "direction": direction,
        "mode": mode,
        "method": candidate.method,
        "size": len(candidate.order),
        "fraction": _rounded(len(candidate.order) / len(paired.change)),
        "case_ids": [str(paired.case_ids[i]) for i in candidate.order],
        "baseline_mean": _rounded(float(paired.baseline[mask].mean())),
        "candidate_mean": _rounded(float(paired.candidate[mask].mean())),
        "baseline_gap": _rounded(baseline.gap),
        "mean_change": _rounded(stats.mean),
        "mean_change_ci95": [_rounded(v) for v in stats.ci95] if stats.ci95 else None,
        "mean_change_rest": _rounded(float(paired.change[~candidate.tested].mean())),
        "effect_size": _rounded(stats.effect_size),
        "p_value": _significant(stats.p_value),
        "p_adjusted": _significant(p_adjusted),
        "stability": _rounded(candidate.stability),
        "n_test": stats.n,
        "description": description,
        "merged": [f"{direction}-{m.method}-{m.slice}" for m in merged],
    }


# ---------------------------------------------------------------------------- step 6
def significant(group: dict, alpha: float) -> bool:
    return group["p_adjusted"] is not None and group["p_adjusted"] < alpha


def evaluate_compare_gate(payload: dict, rules: CompareRules) -> Verdict:
    """PASS, FAIL or NOT GATED of a comparison, in the vocabulary of `audit`."""
    metric = payload["metric"]
    verdict = Verdict(
        passed=True,
        rules={
            "fail_regression": rules.fail_regression,
            "fail_mean_drop": rules.fail_mean_drop,
            "alpha": rules.alpha,
            "applied": rules.applied,
        },
    )
    for group in payload["subgroups"]:
        if (
            rules.fail_regression is not None
            and group["direction"] == "regression"
            and significant(group, rules.alpha)
            and group["mean_change"] <= -rules.fail_regression
        ):
            verdict.failing_subgroups.append(group["id"])
            verdict.reasons.append(
                f"regression rank {group['rank']} ({group['size']} cases, {group['mode']} failure "
                f"mode) changes {metric} by {group['mean_change']:.3f} (<= -{rules.fail_regression}"
                f" of --fail-regression) with adjusted p = {group['p_adjusted']:.2g} "
                f"(< --alpha {rules.alpha})"
            )
    change = payload["overall"]["mean_change"]
    if rules.fail_mean_drop is not None and change <= -rules.fail_mean_drop:
        verdict.reasons.append(
            f"overall mean {metric} change {change:.3f} is <= -{rules.fail_mean_drop} "
            "(--fail-mean-drop)"
        )
    verdict.passed = not verdict.reasons
    return verdict


def run_compare_part(options: CompareOptions) -> None:
    """One part of a sharded comparison: both sides' predictions and features of that part."""
    _check(options)
    for i, name in enumerate(SIDES):
        _prepare_side(options, name, i + 1)
    console.info(
        f"compare part {options.part_id} of {options.num_parts} done; when every part is, run "
        f"`seg4seg merge {options.out}`, then this command without --num-parts/--part-id"
    )


def run_compare(options: CompareOptions) -> tuple[dict, Verdict]:
    """Both sides, the paired discovery and the gate; writes OUT/comparison.json."""
    started, start_iso = time.perf_counter(), now_iso()
    _check(options)
    if options.num_parts > 1:
        raise UsageError("a part of a sharded comparison pairs nothing: use run_compare_part")
    out = Path(options.out)
    sides = {name: _prepare_side(options, name, i + 1) for i, name in enumerate(SIDES)}
    console.info("compare 3/4: pairing the cases")
    paired = _pair(sides, options.metric)
    n_cases = paired.change.size
    min_size = options.min_size if options.min_size is not None else default_min_size(n_cases)
    if n_cases < 2 * min_size:
        raise DataError(
            f"{n_cases} paired cases are too few for subgroups of at least {min_size} (--min-size)"
        )
    console.info("compare 4/4: finding subgroups of the paired change")
    folds = fold_of_each_case(n_cases, min(options.folds, n_cases), options.seed)
    found = _find(options, paired, min_size, folds)
    payload = _payload(options, sides, paired, _subgroups(found, paired, options), min_size, folds)
    verdict = evaluate_compare_gate(payload, options.rules)
    payload["verdict"] = verdict.as_dict()
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    atomic.write_bytes(out / "comparison.json", text.encode("utf-8"))
    write_step(
        out / "run.json",
        "compare",
        {
            "settings": {
                "method": options.method, "metric": options.metric, "seed": options.seed,
                "folds": payload["folds"], "min_size": min_size, "n_slices": options.n_slices,
            },
            "started_at": start_iso,
            "finished_at": now_iso(),
            "seconds": round(time.perf_counter() - started, 3),
            "verdict": verdict.as_dict(),
        },
    )  # fmt: skip
    return payload, verdict


def _payload(
    options: CompareOptions,
    sides: dict[str, Side],
    paired: Paired,
    subgroups: list[dict],
    min_size: int,
    folds: np.ndarray,
) -> dict:
    skipped = {name: dict(sorted(side.skipped.items())) for name, side in sides.items()}
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "comparison",
        "method": options.method,
        "params": slicer_params(options),
        "metric": options.metric,
        "higher_is_better": higher_is_better(options.metric),
        "change": "candidate - baseline per case, signed so that positive is better",
        "seed": options.seed,
        "n_cases": int(paired.change.size),
        "min_size": min_size,
        "folds": int(folds.max()) + 1,
        "baseline": {"source": sides["baseline"].source, "out": str(sides["baseline"].out)},
        "candidate": {"source": sides["candidate"].source, "out": str(sides["candidate"].out)},
        "left_out": {**paired.left_out, "skipped": skipped},
        "overall": _overall(paired),
        "statistics": (
            "paired: each case's change is candidate minus baseline; subgroups are cross-fitted "
            "(each case tested once by the slice of the fit made without its fold); mean_change "
            "and its 95% t interval are over the tested members; p is a two-sided paired t-test "
            "against no change; p_adjusted is Benjamini-Hochberg across all subgroups; a "
            "regression is new when the baseline was not significantly worse there by "
            f"{NEW_MODE_MARGIN} or more, else deepened"
        ),
        "subgroups": subgroups,
    }


def _significant(value: float) -> float:
    """A p-value to 3 significant digits (rounding to decimals would turn 1e-9 into 0)."""
    return float(f"{value:.3g}")


def _rounded(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(round(value, 6))
