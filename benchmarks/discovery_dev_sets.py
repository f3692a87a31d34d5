"""More development data for choosing discovery settings, and their scores on it.

The bench's development seeds (100, 101) give 14 planted scenario-seeds and 2 null ones: too few
to see a false-alarm rate. This script draws further test sets with the development models (seed
100 or 101, alternating): seeds 200-203 of every planted scenario and 200-219 of the null, audits
them (about 10 s each on 2 cores), then scores a discovery method on every development set, as
`seg4seg bench` scores (best of the top 3, P@10 >= 0.8; a null alarm is a subgroup with
p_adjusted < 0.05 and gap >= 0.05). The reported seeds 0-4 are never read.

    # after `seg4seg bench --seed 100 --seeds 2 --out BENCH` (trains the dev models)
    python benchmarks/discovery_dev_sets.py BENCH
    python benchmarks/discovery_dev_sets.py BENCH --params '{"min_silhouette": 0.03}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from seg4seg_cli import console
from seg4seg_cli.bench import scenarios as sc
from seg4seg_cli.bench.runner import audit_test_set, model_folder
from seg4seg_cli.bench.score import score
from seg4seg_cli.discover import DiscoverOptions, run_discover

PLANTED = ["artefact", "appearance", "acquisition", "annotation", "small", "brain", "few"]
DEV_MODELS = (100, 101)


def plan() -> list[tuple[str, int]]:
    extra = [("null", s) for s in range(200, 220)]
    return extra + [(name, s) for s in range(200, 204) for name in PLANTED]


def make_sets(bench: Path) -> None:
    for name, seed in plan():
        folder = bench / "dev" / name / f"seed{seed}"
        if (folder / "audit" / "cases.parquet").exists():
            continue
        scenario = sc.SCENARIOS[name]
        model = model_folder(scenario, DEV_MODELS[seed % 2], bench) / "model"
        if not model.is_dir():
            raise SystemExit(f"{model} is missing: run seg4seg bench --seed 100 --seeds 2 first")
        folder.mkdir(parents=True, exist_ok=True)
        size = scenario.size(120)
        audit_test_set(sc.generate_test(scenario, seed, size, folder), model, folder / "audit")
        print(f"audited {name} seed {seed}", flush=True)


def folders(bench: Path) -> list[tuple[str, int, Path]]:
    found = []
    for name in [*PLANTED, "null"]:
        for seed in DEV_MODELS:
            found += [
                (name, seed, f) for f in sorted(bench.glob(f"scenarios/{name}/n*/seed{seed}"))
            ]
        found += [(name, s, bench / "dev" / name / f"seed{s}") for n, s in plan() if n == name]
    return [(n, s, f) for n, s, f in found if "n300" not in str(f) and (f / "audit").is_dir()]


def evaluate(bench: Path, method: str, params: dict | None, work: Path) -> pd.DataFrame:
    rows = []
    for name, seed, folder in folders(bench):
        truth = json.loads((folder / "truth.json").read_text())
        output = work / f"{name}-{folder.parent.name}-{seed}.json"
        payload = run_discover(
            DiscoverOptions(
                out=folder / "audit", method=method, seed=seed, params=params, output=output
            )
        )
        result = score(payload["subgroups"], truth["subgroup"])
        rows.append(
            {"scenario": name, "seed": seed, "found": result.found, "f1": result.f1,
             "alarms": result.false_alarms}
        )  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path, help="the seg4seg bench --out folder")
    parser.add_argument("--method", default="coherent")
    parser.add_argument("--params", type=json.loads, default=None, help="JSON overrides")
    parser.add_argument("--work", type=Path, default=Path("dev_subgroups"))
    args = parser.parse_args()
    console.settings.quiet = True
    make_sets(args.bench)
    args.work.mkdir(parents=True, exist_ok=True)
    table = evaluate(args.bench, args.method, args.params, args.work)
    planted, null = table[table.scenario != "null"], table[table.scenario == "null"]
    print(table.groupby("scenario")[["found", "f1"]].mean().round(2).to_string())
    print(
        f"{args.method} {args.params or {}}: found {int(planted.found.sum())}/{len(planted)}, "
        f"mean F1 {planted.f1.mean():.2f}, null seeds with an alarm "
        f"{int((null.alarms > 0).sum())}/{len(null)}"
    )


if __name__ == "__main__":
    main()
