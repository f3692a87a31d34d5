"""Compare our SliceLine with the PyPI packages `sliceline` and `pysubgroup` on the same inputs.

For every audited benchmark scenario (`<bench>/scenarios/<scenario>/n*/seed*`, with
`truth.json` and `audit/cases.parquet`) each method is fitted on all cases (in-sample: these are
rule learners) and scored against the planted subgroup:

- ours: `make_slicer("sliceline", n_slices=5, random_state=0, min_size=10)` (alpha 0.9, at most
  4 predicates, 4 quantile bins);
- `sliceline.Slicefinder(alpha=0.9, k=5, max_l=4, min_sup=10)`;
- `pysubgroup.Apriori` with `NumericTarget(error)`, `StandardQFNumeric(a=0.5)`, depth 4,
  result set size 5, `MinSupportConstraint(10)` and `min_quality=0` (a reported subgroup must
  have a mean error above the overall mean, as SliceLine's score must be > 0).

The libraries get exactly the predicates ours uses: every candidate column is cut into our
quantile bins (plus a "missing" level) by `seg4seg_cli.slicers.sliceline._column_predicates`,
and each case gets the code of its bin, so a library rule `column = code` is one of our
predicates. The error is `errors_from_quality(dice)` = 1 - Dice for all three.

Score per scenario-seed and method, as `seg4seg bench` does: of the top-3 slices keep the best by
precision@10 then F1; found means precision@10 >= 0.8. All three methods return 0/1 membership
(no strength order), so for precision@10 every method's members are ordered by lowest Dice
first (then case id), identically for all. Also recorded: seconds per fit, whether the top rule
equals ours (and whether its members do). The `null` scenario (nothing planted) only reports
how many slices each returns. Finally each method is timed on a synthetic table (10,000 cases,
16 numeric + 4 categorical columns, a planted ~10% rule), each in its own process with a capped
address space (`--memory-gb`) and a time limit (`--timeout`).

Run: `.venv/bin/python benchmarks/compare_rule_slicers.py [--bench /work/bench]`
Options: `--no-synthetic`, `--methods ours,sliceline`, `--sliceline-max-l 3`,
`--pysubgroup-a 1.0`, `--pysubgroup-depth 3`, `--json rows.json`. A package that does not import
is skipped with a message (pysubgroup 0.9.0 pins numpy<2; see docs/_sliceline_comparison.md for
how it was run). Set OMP_NUM_THREADS=1 on a shared machine (the script defaults it to 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from seg4seg_cli.bench.score import FOUND_AT, TOP, precision_at  # noqa: E402
from seg4seg_cli.discover import candidate_features, load_out_folder  # noqa: E402
from seg4seg_cli.slicers import make_slicer  # noqa: E402
from seg4seg_cli.slicers.base import errors_from_quality  # noqa: E402
from seg4seg_cli.slicers.sliceline import (  # noqa: E402
    _column_predicates,
    _predicate_masks,
)

N_SLICES = 5
ALPHA = 0.9  # our default
MAX_PREDICATES = 4
MIN_SUPPORT = 10
N_BINS = 4  # our default


# ---------------------------------------------------------------------------------------------
# shared inputs: our predicates as one integer code per column


@dataclass
class Binned:
    codes: pd.DataFrame  # (n_cases, n_columns) int: the index of the case's predicate
    texts: dict[str, list[str]]  # column -> description of each code
    predicates: dict[str, list]  # column -> our Predicate of each code


def bin_like_ours(features: pd.DataFrame, n_bins: int = N_BINS) -> Binned:
    """Each column's predicates exactly as our SliceLine makes them, as one code per case."""
    codes, texts, predicates = {}, {}, {}
    for column in sorted(features.columns, key=str):
        column_predicates, column_texts = _column_predicates(column, features[column], n_bins)
        if not column_predicates:
            continue
        masks = _predicate_masks(column_predicates, features)
        if not np.all(masks.sum(axis=1) == 1):  # the bins of a column partition the cases
            raise RuntimeError(f"predicates of {column!r} do not partition the cases")
        name = str(column)
        codes[name] = masks.argmax(axis=1).astype(np.int64)
        texts[name] = column_texts
        predicates[name] = column_predicates
    return Binned(pd.DataFrame(codes, index=features.index), texts, predicates)


def rule_text(rule: frozenset[tuple[str, int]], binned: Binned) -> str:
    return " AND ".join(binned.texts[c][v] for c, v in sorted(rule))


# ---------------------------------------------------------------------------------------------
# the methods: each returns memberships (n_cases, n_found) and rules as {(column, code)}


@dataclass
class Fit:
    memberships: np.ndarray
    rules: list[frozenset[tuple[str, int]]]
    seconds: float
    note: str = ""


def fit_ours(features: pd.DataFrame, quality: np.ndarray, binned: Binned) -> Fit:
    start = time.perf_counter()
    slicer = make_slicer("sliceline", n_slices=N_SLICES, random_state=0, min_size=MIN_SUPPORT).fit(
        None, quality, features
    )
    seconds = time.perf_counter() - start
    rules = [
        frozenset(
            (str(p.column), binned.predicates[str(p.column)].index(p)) for p in slice_["predicates"]
        )
        for slice_ in slicer.slices_
    ]
    return Fit(np.asarray(slicer.memberships_), rules, seconds)


# settings of the library runs (command-line options change them)
SLICELINE = {"max_l": MAX_PREDICATES}
PYSUBGROUP = {"a": 0.5, "depth": MAX_PREDICATES}


def fit_sliceline(features: pd.DataFrame, quality: np.ndarray, _shared: Binned) -> Fit:
    from sliceline import Slicefinder

    start = time.perf_counter()
    # binning is timed as part of the fit, as ours bins inside fit; it is deterministic, so the
    # codes equal those of `_shared`, which the caller uses to print the rules
    binned = bin_like_ours(features)
    x = binned.codes.to_numpy()
    finder = Slicefinder(
        alpha=ALPHA, k=N_SLICES, max_l=SLICELINE["max_l"], min_sup=MIN_SUPPORT, verbose=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "numba not available"
        finder.fit(x, errors_from_quality(quality))
        found = len(finder.top_slices_)
        memberships = finder.transform(x).astype(np.float64) if found else np.zeros((len(x), 0))
    seconds = time.perf_counter() - start
    columns = list(binned.codes.columns)
    rules = [
        frozenset((columns[j], int(value)) for j, value in enumerate(slice_) if value is not None)
        for slice_ in finder.top_slices_
    ]
    note = f"{found} slices (ties at the k-th score)" if found > N_SLICES else ""
    return Fit(memberships, rules, seconds, note)


def fit_pysubgroup(features: pd.DataFrame, quality: np.ndarray, _shared: Binned) -> Fit:
    import pysubgroup as ps

    start = time.perf_counter()
    binned = bin_like_ours(features)
    data = binned.codes.copy()
    target = "__error__"
    data[target] = errors_from_quality(quality)
    search_space = [
        ps.EqualitySelector(column, int(code))
        for column in binned.codes.columns
        for code in range(len(binned.texts[column]))
    ]
    task = ps.SubgroupDiscoveryTask(
        data,
        ps.NumericTarget(target),
        search_space,
        qf=ps.StandardQFNumeric(PYSUBGROUP["a"]),
        result_set_size=N_SLICES,
        depth=PYSUBGROUP["depth"],
        min_quality=0.0,
        constraints=[ps.MinSupportConstraint(MIN_SUPPORT)],
    )
    result = ps.Apriori(use_numba=False).execute(task)
    memberships = np.zeros((len(data), len(result.results)))
    rules = []
    for j, (_, subgroup, _) in enumerate(result.results):
        memberships[:, j] = np.asarray(subgroup.covers(data), dtype=bool)
        rules.append(
            frozenset((s.attribute_name, int(s.attribute_value)) for s in subgroup.selectors)
        )
    return Fit(memberships, rules, time.perf_counter() - start)


# name -> (package to import, fit function, install hint)
METHODS: dict[str, tuple[str | None, Callable[..., Fit], str]] = {
    "ours": (None, fit_ours, ""),
    "sliceline": ("sliceline", fit_sliceline, "pip install sliceline==0.3.0"),
    "pysubgroup": (
        "pysubgroup",
        fit_pysubgroup,
        "pysubgroup 0.9.0 requires numpy<2, so it is not installed in our venv; "
        "see docs/_sliceline_comparison.md",
    ),
}


def available_methods(wanted: list[str]) -> list[str]:
    """The wanted methods whose package imports; a message for each one that does not."""
    names = []
    for name in wanted:
        package, _, hint = METHODS[name]
        if package is not None:
            try:
                __import__(package)
            except ImportError as error:
                print(f"note: skipping {name}: it does not import ({error}); {hint}")
                continue
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass
class Scored:
    found: bool | None  # None on a null scenario
    p_at_10: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    best_index: int | None  # which of the top-3 slices was best
    n_slices: int
    seconds: float


def score_fit(fit: Fit, case_ids: np.ndarray, dice: np.ndarray, truth: set[str]) -> Scored:
    """Best of the top-3 slices by precision@10, then F1; members ordered by strength, then by
    lowest Dice (every method here has 0/1 strengths), then case id."""
    n_found = fit.memberships.shape[1]
    if not truth:
        return Scored(None, None, None, None, None, None, n_found, fit.seconds)
    best_key, best = None, (0.0, 0.0, 0.0, 0.0, None)
    for j in range(min(TOP, n_found)):
        strength = fit.memberships[:, j]
        members = np.flatnonzero(strength > 0)
        order = sorted(members, key=lambda i, s=strength: (-s[i], dice[i], case_ids[i]))
        ids = [case_ids[i] for i in order]
        hits = sum(c in truth for c in ids)
        precision = hits / len(ids) if ids else 0.0
        recall = hits / len(truth)
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        key = (precision_at(ids, truth), f1, -j)
        if best_key is None or key > best_key:
            best_key, best = key, (key[0], precision, recall, f1, j)
    p_at_10, precision, recall, f1, j = best
    return Scored(p_at_10 >= FOUND_AT, p_at_10, precision, recall, f1, j, n_found, fit.seconds)


# ---------------------------------------------------------------------------------------------
# the benchmark scenarios


def scenario_folders(bench: Path) -> list[Path]:
    return sorted(
        p for p in (bench / "scenarios").glob("*/n*/seed*") if (p / "truth.json").is_file()
    )


def run_scenarios(bench: Path, methods: list[str]) -> list[dict]:
    rows = []
    for folder in scenario_folders(bench):
        scenario = folder.parts[-3]
        truth_json = json.loads((folder / "truth.json").read_text())
        truth = set(truth_json.get("subgroup") or [])
        cases, _, _ = load_out_folder(folder / "audit")
        usable = np.isfinite(cases["dice"].to_numpy(dtype=np.float64, na_value=np.nan))
        cases = cases[usable].reset_index(drop=True)
        features = candidate_features(cases)
        dice = cases["dice"].to_numpy(dtype=np.float64)
        case_ids = cases["case_id"].to_numpy()
        binned = bin_like_ours(features)
        fits = {m: METHODS[m][1](features, dice, binned) for m in methods}
        ours = fits.get("ours")
        for method, fit in fits.items():
            scored = score_fit(fit, case_ids, dice, truth)
            row = {"scenario": scenario, "folder": str(folder), "method": method}
            row |= scored.__dict__ | {"n_cases": len(cases), "n_planted": len(truth)}
            row["top_rule"] = rule_text(fit.rules[0], binned) if fit.rules else "(none)"
            row["best_rule"] = (
                rule_text(fit.rules[scored.best_index], binned)
                if scored.best_index is not None
                else ""
            )
            row["same_top_rule"] = row["same_top_members"] = None
            if ours is not None and method != "ours":
                row["same_top_rule"] = fit.rules[:1] == ours.rules[:1]
                row["same_top_members"] = bool(
                    fit.memberships.shape[1] == ours.memberships.shape[1] == 0
                    or (
                        fit.memberships.shape[1] > 0
                        and ours.memberships.shape[1] > 0
                        and np.array_equal(fit.memberships[:, 0] > 0, ours.memberships[:, 0] > 0)
                    )
                )
            top3 = fit.memberships[:, :TOP] > 0
            row["distinct_top3"] = len({tuple(top3[:, j]) for j in range(top3.shape[1])})
            row["note"] = fit.note
            rows.append(row)
    return rows


def _mean(values: list) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def print_scenario_table(rows: list[dict], methods: list[str]) -> None:
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    header = f"{'scenario':<12}" + "".join(f"| {m:<28}" for m in methods)
    print("\nPer scenario: found/seeds  mean P@10  mean F1  (mean s/fit)")
    print(header)
    print("-" * len(header))
    totals = {m: [] for m in methods}
    for scenario in scenarios:
        line = f"{scenario:<12}"
        for method in methods:
            cell = [r for r in rows if r["scenario"] == scenario and r["method"] == method]
            seconds = _mean([r["seconds"] for r in cell])
            if all(r["found"] is None for r in cell):
                slices = ", ".join(str(r["n_slices"]) for r in cell)
                text = f"null: {slices} slices ({seconds:.2f}s)"
            else:
                found = sum(bool(r["found"]) for r in cell)
                text = (
                    f"{found}/{len(cell)}  {_mean([r['p_at_10'] for r in cell]):.2f}  "
                    f"{_mean([r['f1'] for r in cell]):.2f} ({seconds:.2f}s)"
                )
                totals[method] += cell
            line += f"| {text:<28}"
        print(line)
    line = f"{'all planted':<12}"
    for method in methods:
        cell = totals[method]
        found = sum(bool(r["found"]) for r in cell)
        text = (
            f"{found}/{len(cell)}  {_mean([r['p_at_10'] for r in cell]):.2f}  "
            f"{_mean([r['f1'] for r in cell]):.2f} ({_mean([r['seconds'] for r in cell]):.2f}s)"
        )
        line += f"| {text:<28}"
    print("-" * len(header))
    print(line)


def print_rules(rows: list[dict]) -> None:
    print("\nTop rule per scenario-seed ('=' same rule as ours, '~' other rule, same members)")
    for folder in dict.fromkeys(r["folder"] for r in rows):
        parts = Path(folder).parts
        print(f"{parts[-3]}/{parts[-1]}:")
        for r in (r for r in rows if r["folder"] == folder):
            mark = " "
            if r["same_top_rule"]:
                mark = "="
            elif r["same_top_members"]:
                mark = "~"
            elif r["same_top_rule"] is not None:
                mark = "x"
            note = f"  [{r['note']}]" if r["note"] else ""
            print(f"  {mark} {r['method']:<11} {r['top_rule']}{note}")


def print_agreement(rows: list[dict], methods: list[str]) -> None:
    fits = len(dict.fromkeys(r["folder"] for r in rows))
    for method in methods:
        cell = [r for r in rows if r["method"] == method and r["same_top_rule"] is not None]
        if cell:
            rule = sum(r["same_top_rule"] for r in cell)
            members = sum(r["same_top_members"] for r in cell)
            print(
                f"{method}: top rule same as ours in {rule}/{fits} fits, "
                f"same top-slice members in {members}/{fits}"
            )


# ---------------------------------------------------------------------------------------------
# speed on a synthetic 10,000-case table


def synthetic(n_cases: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """16 numeric + 4 categorical columns; the planted ~10%: feature_0 in its top quartile (one
    of our bins) and meta_0 = A (40% of the cases); Dice ~0.6 there and ~0.9 elsewhere."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {f"feature_{i}": rng.normal(size=n_cases) for i in range(16)}
        | {"meta_0": rng.choice(list("ABCD"), n_cases, p=[0.4, 0.2, 0.2, 0.2])}
        | {f"meta_{i}": rng.choice(list("ABCD"), n_cases) for i in range(1, 4)}
    )
    cut = features["feature_0"].quantile(0.75)
    planted = (features["feature_0"] > cut).to_numpy() & (features["meta_0"] == "A").to_numpy()
    dice = np.clip(
        np.where(planted, rng.normal(0.6, 0.08, n_cases), rng.normal(0.9, 0.05, n_cases)), 0, 1
    )
    return features, dice, planted


def synthetic_one(method: str, n_cases: int, memory_gb: float) -> dict:
    """Fit one method on the synthetic table (in its own process, address space capped)."""
    import resource

    limit = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    features, dice, planted = synthetic(n_cases)
    case_ids = np.array([f"case_{i:06d}" for i in range(n_cases)])
    binned = bin_like_ours(features)
    try:
        fit = METHODS[method][1](features, dice, binned)
    except MemoryError as error:
        return {"error": f"MemoryError above {memory_gb:g} GB address space ({error})"}
    scored = score_fit(fit, case_ids, dice, set(case_ids[planted]))
    return {
        "seconds": fit.seconds,
        "p_at_10": scored.p_at_10,
        "f1": scored.f1,
        "n_slices": scored.n_slices,
        "top": rule_text(fit.rules[0], binned) if fit.rules else "(none)",
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_synthetic(methods: list[str], args: argparse.Namespace) -> None:
    _, _, planted = synthetic(args.synthetic_cases)
    print(
        f"\nSynthetic table: {args.synthetic_cases} cases, 16 numeric + 4 categorical columns, "
        f"planted {planted.mean():.1%} (feature_0 in its top quartile AND meta_0 = A); each "
        f"method in its own process, {args.memory_gb:g} GB address space, "
        f"{args.timeout:g} s time limit"
    )
    for method in methods:
        command = [sys.executable, __file__, "--synthetic-one", method]
        command += ["--synthetic-cases", str(args.synthetic_cases)]
        command += ["--memory-gb", str(args.memory_gb)]
        command += ["--pysubgroup-a", str(PYSUBGROUP["a"])]
        command += ["--pysubgroup-depth", str(PYSUBGROUP["depth"])]
        command += ["--sliceline-max-l", str(SLICELINE["max_l"])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"  {method:<11} did not finish within {args.timeout:g} s")
            continue
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"  {method:<11} failed (exit {done.returncode}): {last}")
            continue
        result = json.loads(lines[-1])
        if "error" in result:
            print(f"  {method:<11} failed: {result['error']}")
            continue
        print(
            f"  {method:<11} {result['seconds']:8.2f} s  peak {result['peak_mb']:6.0f} MB  "
            f"P@10 {result['p_at_10']:.2f}  F1 {result['f1']:.2f}  "
            f"{result['n_slices']} slices  top: {result['top']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, default=Path("/work/bench"))
    parser.add_argument("--no-synthetic", action="store_true", help="skip the speed test")
    parser.add_argument("--synthetic-cases", type=int, default=10_000)
    parser.add_argument(
        "--memory-gb", type=float, default=6.0, help="address-space cap of a synthetic fit"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed to a synthetic fit"
    )
    parser.add_argument("--pysubgroup-a", type=float, default=PYSUBGROUP["a"])
    parser.add_argument("--pysubgroup-depth", type=int, default=PYSUBGROUP["depth"])
    parser.add_argument("--sliceline-max-l", type=int, default=SLICELINE["max_l"])
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated subset of ours,sliceline,pysubgroup",
    )
    parser.add_argument("--json", type=Path, help="also write the per-fit rows here")
    parser.add_argument("--synthetic-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    PYSUBGROUP.update(a=args.pysubgroup_a, depth=args.pysubgroup_depth)
    SLICELINE.update(max_l=args.sliceline_max_l)
    if args.synthetic_one:
        result = synthetic_one(args.synthetic_one, args.synthetic_cases, args.memory_gb)
        print(json.dumps(result))
        return

    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    methods = available_methods(wanted)
    print(
        f"methods: {', '.join(methods)}; alpha={ALPHA}, min support {MIN_SUPPORT}, {N_BINS} "
        f"quantile bins; max predicates: ours {MAX_PREDICATES}, sliceline "
        f"{SLICELINE['max_l']}, pysubgroup {PYSUBGROUP['depth']} "
        f"(StandardQFNumeric a={PYSUBGROUP['a']})"
    )
    folders = scenario_folders(args.bench)
    if not folders:
        print(f"no scenarios with truth.json under {args.bench / 'scenarios'}")
    else:
        rows = run_scenarios(args.bench, methods)
        print_scenario_table(rows, methods)
        print_rules(rows)
        print_agreement(rows, methods)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1, default=str))
    if not args.no_synthetic:
        run_synthetic(methods, args)


if __name__ == "__main__":
    main()
