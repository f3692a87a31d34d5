"""Statistics of a subgroup against the rest: gap with a bootstrap CI, effect size, one-sided
permutation p-value of the gap, Benjamini–Hochberg adjustment, near-duplicate merging, and
descriptions.

Pure functions over numpy arrays and a pandas feature table; every random draw comes from a
generator seeded by the caller, so results are reproducible byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import mannwhitneyu, norm

N_BOOTSTRAP = 1000
# fewer tested cases inside a subgroup than this and no p-value is given (p = 1, no CI): a test
# on three or four cases says nothing, whatever its p
MIN_TEST_CASES = 5


@dataclass(frozen=True)
class GapStatistics:
    """Quality inside vs outside a subgroup; `gap` > 0 means worse inside."""

    n_in: int
    n_rest: int
    metric_mean: float
    metric_mean_rest: float
    gap: float
    gap_ci95: tuple[float, float] | None
    effect_size: float | None
    p_value: float


def gap_statistics(
    inside: np.ndarray,
    rest: np.ndarray,
    higher_is_better: bool,
    rng: np.random.Generator,
    n_bootstrap: int = N_BOOTSTRAP,
) -> GapStatistics:
    """Compare metric values `inside` a subgroup with the `rest`.

    gap = mean(rest) − mean(inside) for higher-is-better metrics (the reverse otherwise), so a
    positive gap always means the subgroup is worse. The 95% CI resamples both groups with
    replacement (`n_bootstrap` times, from `rng`); the effect size is Cohen's d with pooled
    standard deviation, signed like the gap; the p-value is a one-sided permutation test of the
    gap (`permutation_p_value`), made consistent with the CI: it is at least twice the share of
    bootstrap gaps at or below 0, so p < 0.05 only where the 95% CI excludes 0. With fewer than
    MIN_TEST_CASES cases inside, or fewer than two in the rest, there is no test: p = 1, no CI.
    """
    inside = np.asarray(inside, dtype=np.float64)
    rest = np.asarray(rest, dtype=np.float64)
    sign = 1.0 if higher_is_better else -1.0
    mean_in = float(inside.mean()) if inside.size else float("nan")
    mean_rest = float(rest.mean()) if rest.size else float("nan")
    gap = sign * (mean_rest - mean_in)
    if inside.size < MIN_TEST_CASES or rest.size < 2:
        return GapStatistics(inside.size, rest.size, mean_in, mean_rest, gap, None, None, 1.0)

    boot_in = rng.choice(inside, size=(n_bootstrap, inside.size), replace=True).mean(axis=1)
    boot_rest = rng.choice(rest, size=(n_bootstrap, rest.size), replace=True).mean(axis=1)
    boot_gaps = sign * (boot_rest - boot_in)
    low, high = np.percentile(boot_gaps, [2.5, 97.5])
    bootstrap_p = min(1.0, 2.0 * (1 + np.count_nonzero(boot_gaps <= 0)) / (1 + n_bootstrap))
    pooled = np.sqrt(
        ((inside.size - 1) * inside.var(ddof=1) + (rest.size - 1) * rest.var(ddof=1))
        / (inside.size + rest.size - 2)
    )
    effect = float(gap / pooled) if pooled > 0 else None
    p_value = permutation_p_value(inside, rest, higher_is_better, rng)
    if low <= 0:  # the CI holds 0: never call it significant
        p_value = max(p_value, bootstrap_p, 0.05)
    else:
        p_value = max(p_value, bootstrap_p)
    return GapStatistics(
        inside.size, rest.size, mean_in, mean_rest, gap, (float(low), float(high)), effect, p_value
    )


N_PERMUTATIONS = 2000
EXACT_PERMUTATION_MAX_CASES = 2000


def permutation_p_value(
    inside: np.ndarray,
    rest: np.ndarray,
    higher_is_better: bool,
    rng: np.random.Generator,
    n_permutations: int = N_PERMUTATIONS,
) -> float:
    """One-sided permutation test of the gap (the difference in means): how often a random
    relabelling of the same values gives a gap at least as large as the observed one.

    The test is about the very quantity reported, so a "significant" subgroup is one whose mean
    is worse, not merely one whose distribution is shifted. Up to EXACT_PERMUTATION_MAX_CASES
    cases it counts `n_permutations` random relabellings, p = (1 + hits) / (1 + n_permutations);
    above, it uses the normal limit of the same permutation distribution (mean 0, variance
    S²(1/n_in + 1/n_rest) with S² the pooled sample variance), which is exact there to well
    below the Monte Carlo error.
    """
    sign = 1.0 if higher_is_better else -1.0
    values = np.concatenate([inside, rest])
    n_in, n = inside.size, values.size
    observed = sign * (rest.mean() - inside.mean())
    tolerance = 1e-12 * max(1.0, abs(observed))
    if n > EXACT_PERMUTATION_MAX_CASES:
        spread = values.var(ddof=1) * (1.0 / n_in + 1.0 / (n - n_in))
        if spread <= 0:
            return 1.0
        return float(norm.sf((observed - tolerance) / np.sqrt(spread)))
    total, hits, done = values.sum(), 0, 0
    while done < n_permutations:
        batch = min(250, n_permutations - done)
        chosen = np.argsort(rng.random((batch, n)), axis=1)[:, :n_in]
        sum_in = values[chosen].sum(axis=1)
        gaps = sign * ((total - sum_in) / (n - n_in) - sum_in / n_in)
        hits += int(np.count_nonzero(gaps >= observed - tolerance))
        done += batch
    return (1 + hits) / (1 + n_permutations)


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (step-up, monotone, capped at 1), in input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


def jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def merge_near_duplicates(
    groups: list[set], strengths: list[float], threshold: float = 0.5
) -> list[list[int]]:
    """Group indices of `groups` whose Jaccard overlap is ≥ `threshold`.

    Groups are visited by decreasing `strengths` (e.g. gap); each joins the first kept group it
    overlaps enough, else starts a new one. Returns, per kept group, [kept index, merged indices...].
    """
    order = sorted(range(len(groups)), key=lambda i: (-strengths[i], i))
    kept: list[list[int]] = []
    for i in order:
        for cluster in kept:
            if jaccard(groups[cluster[0]], groups[i]) >= threshold:
                cluster.append(i)
                break
        else:
            kept.append([i])
    return kept


def feature_auc(values: np.ndarray, members: np.ndarray) -> float | None:
    """P(member value > non-member value) + ½ P(equal): the AUC of a feature for membership."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    inside, rest = values[members & finite], values[~members & finite]
    if inside.size == 0 or rest.size == 0:
        return None
    u = mannwhitneyu(inside, rest, alternative="two-sided").statistic
    return float(u / (inside.size * rest.size))


# metrics that measure the same thing: naming one after another says nothing new
_KINDS = ({"dice", "iou", "nsd"}, {"hd95_mm", "assd_mm"})


def _family(column: str) -> str:
    base = column.split("__", 1)[0]
    return next((min(kind) for kind in _KINDS if base in kind), base)


def describe(
    features: pd.DataFrame, members: np.ndarray, metric: str, higher_is_better: bool, n_top: int = 5
) -> tuple[str, list[dict]]:
    """A one-line description and the `top_features` that best separate members from the rest.

    Numeric columns are ranked by |AUC − ½|; the first phrase states the audited metric ("low
    dice"), then up to two other strong columns ("high n_comp_extra"), then the categorical level
    most over-represented among members ("78% meta_site=C") when it covers most of them.
    """
    members = np.asarray(members, dtype=bool)
    scored = []
    seen_values: list[np.ndarray] = []
    for column in features.columns:
        if (
            column == "case_id"
            or not pd.api.types.is_numeric_dtype(features[column])
            or pd.api.types.is_bool_dtype(features[column])
        ):
            continue
        values = features[column].to_numpy(dtype=np.float64, na_value=np.nan)
        if any(np.array_equal(values, other, equal_nan=True) for other in seen_values):
            continue  # the aggregate of a single label repeats the label's column
        seen_values.append(values)
        auc = feature_auc(values, members)
        if auc is None:
            continue
        inside, rest = values[members], values[~members]
        scored.append(
            {
                "name": column,
                "mean_in": float(np.nanmean(inside)) if np.isfinite(inside).any() else None,
                "mean_rest": float(np.nanmean(rest)) if np.isfinite(rest).any() else None,
                "auc": auc,
            }
        )
    scored.sort(key=lambda f: (-abs(f["auc"] - 0.5), f["name"]))
    top = scored[:n_top]

    worse = "low" if higher_is_better else "high"
    phrases = [f"{worse} {metric}"]
    for item in scored:
        if len(phrases) >= 3 or abs(item["auc"] - 0.5) < 0.15:
            break
        if _family(item["name"]) == _family(metric):
            continue
        phrases.append(f"{'high' if item['auc'] > 0.5 else 'low'} {item['name']}")
    categorical = _over_represented_level(features, members)
    if categorical:
        phrases.append(categorical)
    return "; ".join(phrases), top


def _over_represented_level(features: pd.DataFrame, members: np.ndarray) -> str | None:
    best = None
    for column in features.columns:
        series = features[column]
        if (
            column == "case_id"
            or pd.api.types.is_numeric_dtype(series)
            and not pd.api.types.is_bool_dtype(series)
        ):
            continue
        values = series.astype("string").fillna("<missing>").to_numpy()
        levels, counts_in = np.unique(values[members], return_counts=True)
        for level, count in zip(levels, counts_in, strict=True):
            share_in = count / max(1, members.sum())
            share_all = float(np.mean(values == level))
            if share_in >= 0.5 and share_in >= 1.5 * share_all:
                key = (share_in / share_all, share_in, column)
                if best is None or key > best[0]:
                    best = (key, f"{share_in:.0%} {column}={level}")
    return best[1] if best else None


@dataclass(frozen=True)
class PairedStatistics:
    """Paired change of one group of cases: candidate − baseline, signed so that positive is
    better (quality), tested against no change."""

    n: int
    mean: float
    ci95: tuple[float, float] | None
    effect_size: float | None  # mean / sd of the changes (Cohen's d_z)
    p_value: float


def paired_statistics(changes: np.ndarray) -> PairedStatistics:
    """Paired t-test of per-case changes against 0 (two-sided), with the matching t interval.

    A paired test: each case is its own control, so the two models' shared difficulty of a case
    cancels. p < 0.05 exactly when the 95% interval excludes 0. With fewer than MIN_TEST_CASES
    cases there is no test (p = 1, no interval); changes all equal give p 1 when they are 0 and
    0 otherwise.
    """
    changes = np.asarray(changes, dtype=np.float64)
    n = int(changes.size)
    mean = float(changes.mean()) if n else float("nan")
    if n < MIN_TEST_CASES:
        return PairedStatistics(n, mean, None, None, 1.0)
    sd = float(changes.std(ddof=1))
    if sd <= 1e-15 * max(1.0, abs(mean)):
        return PairedStatistics(n, mean, (mean, mean), None, 1.0 if mean == 0 else 0.0)
    standard_error = sd / np.sqrt(n)
    t = mean / standard_error
    p_value = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    half = float(stats.t.ppf(0.975, df=n - 1) * standard_error)
    return PairedStatistics(n, mean, (mean - half, mean + half), mean / sd, min(1.0, p_value))
