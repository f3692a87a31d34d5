"""False alarms of `seg4seg compare` between two models that differ only by their training seed.

The bench's `plain` models (one per seed, same data recipe, same schedule) are pairwise the same
model retrained with another seed: any significant regression between two of them is a false
alarm. For each ordered pair of distinct seeds (baseline a, candidate b), both predict the null
scenario's test set of seed a, and compare runs on the two prediction folders with
`--fail-regression 0.05`. Prints the pairs, their overall change and alarms.

    # after `seg4seg bench --scenarios null --seeds 5 --out BENCH` (and --seed 100 --seeds 2)
    python benchmarks/compare_null.py BENCH --pairs 20
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from seg4seg_cli import console
from seg4seg_cli.compare import CompareOptions, CompareRules, run_compare
from seg4seg_cli.predict import PredictOptions, run_predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="the seg4seg bench --out folder")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("compare_null"))
    args = parser.parse_args()
    console.settings.quiet = True
    seeds = sorted(
        int(p.name[4:])
        for p in (args.bench / "models" / "plain").glob("seed*")
        if (p / "model").is_dir()
        and (args.bench / "scenarios" / "null" / "n120" / p.name / "test").is_dir()
    )
    pairs = list(itertools.permutations(seeds, 2))[: args.pairs]
    alarms = 0
    for a, b in pairs:
        test = args.bench / "scenarios" / "null" / "n120" / f"seed{a}"
        dataset = test / "test"
        predictions = {}
        for side, seed in (("baseline", a), ("candidate", b)):
            out = args.work / f"seed{seed}_on_{a}"
            model = args.bench / "models" / "plain" / f"seed{seed}" / "model"
            run_predict(PredictOptions(model=model, out=out, data=dataset, device="cpu"))
            predictions[side] = out / "predictions"
        payload, verdict = run_compare(
            CompareOptions(
                data=dataset, out=args.work / f"compare_{a}_{b}",
                baseline_predictions=predictions["baseline"],
                candidate_predictions=predictions["candidate"], seed=a,
                rules=CompareRules(fail_regression=0.05),
            )
        )  # fmt: skip
        significant = [
            g
            for g in payload["subgroups"]
            if g["p_adjusted"] is not None and g["p_adjusted"] < 0.05
        ]
        regressions = [g for g in significant if g["direction"] == "regression"]
        alarms += not verdict.passed
        overall = payload["overall"]
        print(
            f"baseline seed {a}, candidate seed {b}: change {overall['mean_change']:+.3f}, "
            f"{len(regressions)} significant regression(s), verdict {verdict.status}"
            + "".join(f"; {g['size']} cases {g['mean_change']:+.3f}" for g in regressions),
            flush=True,
        )
    print(json.dumps({"pairs": len(pairs), "gate_failures": alarms}))


if __name__ == "__main__":
    main()
