"""More development comparisons for choosing `seg4seg compare`'s settings, and their scores.

The comparison bench's development seeds (100, 101) give 2 planted comparisons of each kind and 2
null pairs: too few to choose anything on. This script adds test sets drawn with the same
development models: the annotation scenario's seeds 200-229 (the plain model of seed 100 or 101
against the annotation model of the same seed, alternating) for `regression` and `scattered`, and
the null scenario's seeds 200-219 for both ordered null pairs (100 vs 101, 101 vs 100). Scored as
`seg4seg bench --comparisons` scores; the reported seeds 0-4 are never read.

    # after `seg4seg bench --comparisons --seed 100 --seeds 2 --out BENCH` (trains the models)
    python benchmarks/compare_dev_sets.py BENCH
    python benchmarks/compare_dev_sets.py BENCH --params '{"use_outputs": false}'
    # a wider null, like the reported one (every ordered pair of 5 models; trains 102-104)
    python benchmarks/compare_dev_sets.py BENCH --planted 0 --null-models 5 --null 40

The first run predicts and computes features (about 10 s a comparison on 2 cores, 15 minutes in
all, and 1.7 min for each plain model it trains); later runs with other `--params` redo only the
discovery (about 4 minutes). 2026-12-03 with the 30-epoch plain models: `--planted 14 --null 0`
gave regression 16/16, scattered 15/16 (F1 0.81), null 0/2; `--planted 0 --null-models 5
--null 40` null 0/60 (10-epoch plain models: 8/60).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pandas as pd

from seg4seg_cli import console
from seg4seg_cli.bench.comparisons import _null, _planted

DEV_MODELS = (100, 101)


def plan(n_planted: int, n_null: int, null_models: int = 2) -> list[tuple]:
    """(kind, model seed or (baseline, candidate) seeds, test seed) of every comparison."""
    jobs: list[tuple] = []
    if n_planted:  # the development models' own annotation test sets, then the extra ones
        jobs += [(kind, s, s) for kind in ("regression", "scattered") for s in DEV_MODELS]
    for test_seed in range(200, 200 + n_planted):
        model = DEV_MODELS[test_seed % 2]
        jobs += [("regression", model, test_seed), ("scattered", model, test_seed)]
    # every ordered pair of the null models on the baseline's own null test set (as the reported
    # bench does); the extra test sets go to both pairs of two models, or are dealt in turn to
    # the pairs of more
    pairs = list(itertools.permutations(range(100, 100 + null_models), 2))
    jobs += [("null", pair, pair[0]) for pair in pairs]
    if null_models == 2:
        jobs += [("null", pair, t) for t in range(200, 200 + n_null) for pair in pairs]
    else:
        jobs += [("null", pairs[i % len(pairs)], 200 + i) for i in range(n_null)]
    return jobs


def evaluate(
    bench: Path, params: dict | None, n_planted: int, n_null: int, null_models: int = 2
) -> pd.DataFrame:
    rows = []
    for kind, what, test_seed in plan(n_planted, n_null, null_models):
        if kind == "null":
            run = _null(*what, bench, params, test_seed)
            rows.append({"kind": kind, "test_seed": run["test_seed"], "found": False, "f1": 0.0,
                         "alarms": run["compare"]["false_alarms"]})  # fmt: skip
        else:
            run = _planted(kind, what, bench, params, test_seed)
            mine, worst = run["compare"], run["worst_delta_k"]
            rows.append({"kind": kind, "test_seed": run["test_seed"], "found": mine["found"],
                         "p10": mine["p_at_10"], "f1": mine["f1"],
                         "worst_f1": worst["f1"], "alarms": 0})  # fmt: skip
        print(f"{kind} {what} test {run['test_seed']}: {rows[-1]}", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="the seg4seg bench --out folder")
    parser.add_argument("--params", type=json.loads, default=None, help="JSON overrides")
    parser.add_argument("--planted", type=int, default=30, help="annotation test sets (200+)")
    parser.add_argument("--null", type=int, default=20, help="null test sets (200+)")
    parser.add_argument(
        "--null-models", type=int, default=2,
        help="plain models of seeds 100.. for the null (more than 2: train them first with "
        "seg4seg bench --scenarios null --seed 102 --seeds N-2)",
    )  # fmt: skip
    args = parser.parse_args()
    console.settings.quiet = True
    table = evaluate(args.bench, args.params, args.planted, args.null, args.null_models)
    for kind in ("regression", "scattered"):
        rows = table[table.kind == kind]
        if rows.empty:
            continue
        print(
            f"{kind}: found {int(rows.found.sum())}/{len(rows)}, mean P@10 {rows.p10.mean():.2f},"
            f" mean F1 {rows.f1.mean():.2f} (worst-delta-k F1 {rows.worst_f1.mean():.2f})"
        )
    null = table[table.kind == "null"]
    print(f"null: {int((null.alarms > 0).sum())}/{len(null)} alarmed   params {args.params or {}}")


if __name__ == "__main__":
    main()
