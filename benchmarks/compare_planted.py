"""`seg4seg compare` on a planted regression, beside the worst-delta-k baseline.

Per seed of the bench: the baseline is the `plain` model, the candidate the `annotation` model
(the same recipe, but 30% of its training structures are striped and were traced 3 px inside
their edge); the test set is the annotation scenario's (120 cases, 15% striped with clean
references, 15% of the others distractors). The planted regression is the striped cases.
Scored like the bench: found when the best of the top-3 regressions has P@10 >= 0.8; worst-delta-k
is the k cases whose Dice dropped most, k the planted size.

    # after `seg4seg bench --scenarios annotation,null --seeds 5 --out BENCH`
    python benchmarks/compare_planted.py BENCH --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import SimpleITK as sitk

from seg4seg_cli import console
from seg4seg_cli.bench.score import precision_at
from seg4seg_cli.compare import CompareOptions, CompareRules, run_compare
from seg4seg_cli.predict import PredictOptions, run_predict


def f1(members: list[str], truth: set[str]) -> float:
    hits = sum(c in truth for c in members)
    return 0.0 if not hits else 2 * hits / (len(members) + len(truth))


def scatter_regressions(predictions: Path, truth: set[str], seed: int, target: Path) -> Path:
    """A copy of the candidate's predictions in which 15% of the other cases each lose their
    own way (eroded 1-3 px, or a random part of the structure removed): scattered regressions,
    as deep as the planted one, that a subgroup should not gather."""
    from scipy import ndimage

    rng = np.random.default_rng([seed, 7])
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(predictions.glob("*.nii.gz"))
    others = [f for f in files if f.name[: -len(".nii.gz")] not in truth]
    chosen = {f.name for f in rng.choice(others, int(0.15 * len(others)), replace=False)}
    for path in files:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        if path.name in chosen:
            mask = array > 0
            if rng.random() < 0.5:
                mask = ndimage.binary_erosion(mask, iterations=int(rng.integers(1, 4)))
            else:
                ys, xs = np.nonzero(mask.reshape(mask.shape[-2:]))
                if ys.size:
                    cy, cx = ys[rng.integers(ys.size)], xs[rng.integers(xs.size)]
                    yy, xx = np.ogrid[: mask.shape[-2], : mask.shape[-1]]
                    cut = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(4, 7) ** 2
                    mask = mask & ~cut.reshape(mask.shape)
            array = mask.astype(array.dtype)
        copy = sitk.GetImageFromArray(array)
        copy.CopyInformation(image)
        sitk.WriteImage(copy, str(target / path.name), True)
    return target


def one_seed(bench: Path, seed: int, work: Path, scattered: bool) -> dict:
    test = bench / "scenarios" / "annotation" / "n120" / f"seed{seed}"
    truth = set(json.loads((test / "truth.json").read_text())["subgroup"])
    predictions = {}
    for side, model in (("baseline", "plain"), ("candidate", "annotation")):
        out = work / f"{model}{seed}"
        weights = bench / "models" / model / f"seed{seed}" / "model"
        run_predict(PredictOptions(model=weights, out=out, data=test / "test", device="cpu"))
        predictions[side] = out / "predictions"
    label = "scattered" if scattered else "plain"
    if scattered:
        predictions["candidate"] = scatter_regressions(
            predictions["candidate"], truth, seed, work / f"annotation{seed}_scattered"
        )
    payload, verdict = run_compare(
        CompareOptions(
            data=test / "test", out=work / f"compare{seed}_{label}", seed=seed,
            baseline_predictions=predictions["baseline"],
            candidate_predictions=predictions["candidate"],
            rules=CompareRules(fail_regression=0.05),
        )
    )  # fmt: skip
    regressions = [g for g in payload["subgroups"] if g["direction"] == "regression"][:3]
    best = max(
        ((precision_at(g["case_ids"], truth), f1(g["case_ids"], truth)) for g in regressions),
        default=(0.0, 0.0),
    )
    # worst-delta-k: the k cases whose Dice dropped most
    sides = {}
    for side in ("baseline", "candidate"):
        table = pq.read_table(work / f"compare{seed}_{label}" / side / "cases.parquet")
        table = table.to_pandas()
        sides[side] = dict(zip(table["case_id"], table["dice"], strict=True))
    ids = sorted(set(sides["baseline"]) & set(sides["candidate"]))
    change = np.array([sides["candidate"][c] - sides["baseline"][c] for c in ids])
    worst = [ids[i] for i in np.argsort(change, kind="stable")[: len(truth)]]
    return {
        "seed": seed,
        "variant": label,
        "found": best[0] >= 0.8,
        "p_at_10": best[0],
        "f1": round(best[1], 3),
        "worst_k_p_at_10": precision_at(worst, truth),
        "worst_k_f1": round(f1(worst, truth), 3),
        "gate": verdict.status,
        "mean_change": payload["overall"]["mean_change"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--work", type=Path, default=Path("compare_planted"))
    args = parser.parse_args()
    console.settings.quiet = True
    for scattered in (False, True):
        rows = [one_seed(args.bench, int(s), args.work, scattered) for s in args.seeds.split(",")]
        for row in rows:
            print(json.dumps(row), flush=True)
        print(
            f"{rows[0]['variant']}: found {sum(r['found'] for r in rows)}/{len(rows)}, mean F1 "
            f"{np.mean([r['f1'] for r in rows]):.2f}; worst-delta-k found "
            f"{sum(r['worst_k_p_at_10'] >= 0.8 for r in rows)}/{len(rows)}, mean F1 "
            f"{np.mean([r['worst_k_f1'] for r in rows]):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
