"""`seg4seg bench --comparisons`: `seg4seg compare` scored on planted regressions and on nulls.

Built from the discovery bench's own models and test sets (trained and cached the same way):

- `regression`: the baseline is the `plain` model of seed s, trained as long as the candidate
  (30 epochs, `PLAIN`); the candidate the `annotation` model of seed s (the same recipe, but 30%
  of its training structures are striped and were traced 3 px inside their edge, so it learns to
  under-segment striped structures). The test set is the annotation scenario's (120 cases: the
  striped ones, with clean references, are the planted regression; 15% of the others are
  distractors, which fail under both models).
- `scattered`: the same, and in the candidate's predictions 15% of the other cases each lose
  their own way (eroded 1-3 px, or a random part cut out), as deep as the planted regression:
  regressions in the change that no subgroup should gather. Without them, ranking cases by
  their change already finds the planted regression (the worst-delta-k row).
- `null`: the baseline is the `plain` model (30 epochs) of seed a, the candidate the `plain` model
  of another seed b (the baseline retrained): every ordered pair of the seeds, on the null
  scenario's test set of seed a. A false alarm is a regression with `p_adjusted < 0.05` and a mean change of at
  least 0.05 worse (the discovery bench's alarm criterion); regressions that are significant
  but smaller are counted apart.

Every comparison runs through both models, as `seg4seg compare --baseline MODEL --candidate MODEL`
does: both predictions and both sets of encoder embeddings (the scattered damage is done to the
candidate's predictions inside compare's out folder, after predicting).

Scored as the discovery bench: found when the best of the top-3 regressions has precision@10 of at
least 0.8. The worst-delta-k row is the k cases whose metric dropped most, k the planted size.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import SimpleITK as sitk
from scipy import ndimage

from seg4seg_cli import __version__, atomic, console
from seg4seg_cli.bench import runner
from seg4seg_cli.bench import scenarios as sc
from seg4seg_cli.bench.score import ALARM_GAP, ALARM_P, score
from seg4seg_cli.compare import CompareOptions, run_compare, significant
from seg4seg_cli.errors import UsageError
from seg4seg_cli.predict import PredictOptions, run_predict

KINDS = ("regression", "scattered", "null")
SCATTER_SHARE = 0.15
METRIC = "dice"
# the plain model as this bench trains it: as long as the annotation model (30 epochs, not the
# discovery bench's 10), so that a planted comparison differs from its baseline in the planted
# bias alone and a null one in the seed alone (docs/compare.md: 10-epoch retrains differed on
# coherent groups of clean cases)
PLAIN = dataclasses.replace(sc.SCENARIOS["null"], epochs=sc.SCENARIOS["annotation"].epochs)


@dataclass
class ComparisonBenchOptions:
    out: Path = Path("seg4seg_bench")
    seeds: int = 5
    first_seed: int = 0
    kinds: tuple[str, ...] = KINDS
    method: str = "coherent"  # compare's --method (the name of the one --methods entry)
    params: dict | None = None  # overrides of compare's slicer (name:key=value in --methods)
    doc: Path | None = None
    command: str = "seg4seg bench --comparisons"


def _predict(model: Path, data: Path, out: Path) -> Path:
    """The model's predictions (and embeddings) of `data` under `out` (resumable)."""
    with runner.inner_steps_quiet():
        run_predict(
            PredictOptions(model=model, out=out, data=data, device="cpu", on_settings_change="redo")
        )
    return out / "predictions"


def scatter_regressions(predictions: Path, keep: set[str], seed: int, target: Path) -> Path:
    """A copy of `predictions` in which SCATTER_SHARE of the cases outside `keep` each lose their
    own way: the structure eroded 1-3 px, or a random half-plane of it cut out."""
    rng = np.random.default_rng(10_000 + seed)
    files = sorted(predictions.glob(f"*{sc.FILE_ENDING}"))
    candidates = [p for p in files if p.name[: -len(sc.FILE_ENDING)] not in keep]
    hit = {
        candidates[i].name
        for i in rng.permutation(len(candidates))[: round(SCATTER_SHARE * len(candidates))]
    }
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        if path.name not in hit:
            shutil.copy(path, staging / path.name)
            continue
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        mask = array > 0
        if rng.random() < 0.5:
            radius = int(rng.integers(1, 4))
            mask = ndimage.binary_erosion(mask, iterations=radius)
        else:
            points = np.argwhere(mask)
            if len(points):
                centre = points.mean(axis=0)
                normal = rng.normal(size=mask.ndim)
                grid = np.indices(mask.shape).reshape(mask.ndim, -1).T - centre
                mask = mask & (grid @ normal < 0).reshape(mask.shape)
        copy = sitk.GetImageFromArray(mask.astype(array.dtype))
        copy.CopyInformation(image)
        sitk.WriteImage(copy, str(staging / path.name), True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target


def scatter_in_place(side: Path, keep: set[str], seed: int) -> None:
    """Damage the predictions of a compare side folder (`side/predictions`) once, as
    `scatter_regressions` does, keeping the side's embeddings; a marker file makes it resumable
    (a killed run restarts from the undamaged copy)."""
    marker = side / "scattered.json"
    if marker.is_file():
        return
    predictions, original = side / "predictions", side / "predictions.original"
    source = original if original.is_dir() else predictions
    damaged = scatter_regressions(source, keep, seed, side / "predictions.scattered")
    if source == predictions:
        predictions.rename(original)
    elif predictions.is_dir():
        shutil.rmtree(predictions)
    damaged.rename(predictions)
    atomic.write_json(marker, {"seed": seed, "share": SCATTER_SHARE})
    shutil.rmtree(original)


def _as_scored(regressions: list[dict]) -> list[dict]:
    """compare's regressions in the shape `score` reads: gap = how much worse (−mean change)."""
    return [
        {**g, "gap": -g["mean_change"] if g["mean_change"] is not None else None}
        for g in regressions
    ]


def _changes(folder: Path) -> pd.Series:
    sides = {}
    for side in ("baseline", "candidate"):
        table = pq.read_table(folder / side / "cases.parquet", columns=["case_id", METRIC])
        sides[side] = table.to_pandas().set_index("case_id")[METRIC]
    return (sides["candidate"] - sides["baseline"]).dropna().sort_index()


def worst_delta_k(change: pd.Series, k: int) -> list[dict]:
    """The k cases whose metric dropped most, as one regression."""
    order = np.lexsort((change.index.to_numpy(), change.to_numpy()))[:k]
    members = [str(change.index[i]) for i in order]
    return [{"rank": 1, "case_ids": members, "p_adjusted": None, "gap": None}]


def _compare(
    data: Path,
    baseline: Path,
    candidate: Path,
    out: Path,
    seed: int,
    params: dict | None,
    method: str = "coherent",
) -> dict:
    """compare through both models (predictions and encoder embeddings of each), as a user runs
    `seg4seg compare --baseline MODEL --candidate MODEL`."""
    with runner.inner_steps_quiet():
        payload, _ = run_compare(
            CompareOptions(
                data=data, out=out, seed=seed, params=params, baseline=baseline,
                candidate=candidate, device="cpu", method=method,
            )
        )  # fmt: skip
    return payload


def _result(payload: dict, folder: Path, truth: list[str]) -> dict:
    regressions = [g for g in payload["subgroups"] if g["direction"] == "regression"]
    tested = [g for g in regressions if significant(g, ALARM_P)]
    result = {
        "compare": score(_as_scored(regressions), truth).as_dict(),
        "n_regressions": len(regressions),
        "significant_regressions": len(tested),
        "largest_significant_drop": (
            round(-min(g["mean_change"] for g in tested), 4) if tested else None
        ),
        "mean_change": payload["overall"]["mean_change"],
    }
    if truth:
        change = _changes(folder)
        result["worst_delta_k"] = score(worst_delta_k(change, len(truth)), truth).as_dict()
    return result


def _planted(
    kind: str,
    seed: int,
    out: Path,
    params: dict | None,
    test_seed: int | None = None,
    method: str = "coherent",
) -> dict:
    """The plain model of `seed` as the baseline, the annotation model of `seed` as the
    candidate, on the annotation test set of `test_seed` (default: `seed`)."""
    annotation = sc.SCENARIOS["annotation"]
    test_seed = seed if test_seed is None else test_seed
    plain_model, _ = runner.prepare_model(PLAIN, seed, out)
    candidate_model, _ = runner.prepare_model(annotation, seed, out)
    test = runner.prepare_test(annotation, test_seed, annotation.size(sc.N_TEST), out)
    truth = json.loads((test / "truth.json").read_text())["subgroup"]
    name = kind if test_seed == seed else f"{kind}_test{test_seed}"
    folder = out / "comparisons" / f"seed{seed}" / name
    if kind == "scattered":
        _predict(candidate_model, test / "test", folder / "candidate")
        scatter_in_place(folder / "candidate", set(truth), test_seed)
    payload = _compare(test / "test", plain_model, candidate_model, folder, seed, params, method)
    return {
        "kind": kind, "seed": seed, "test_seed": test_seed, "n_subgroup": len(truth),
        **_result(payload, folder, truth),
    }  # fmt: skip


def _null(
    a: int,
    b: int,
    out: Path,
    params: dict | None,
    test_seed: int | None = None,
    method: str = "coherent",
) -> dict:
    """The plain model of seed a against the plain model of seed b on the null test set of
    `test_seed` (default: a)."""
    null = sc.SCENARIOS["null"]
    test_seed = a if test_seed is None else test_seed
    baseline_model, _ = runner.prepare_model(PLAIN, a, out)
    candidate_model, _ = runner.prepare_model(PLAIN, b, out)
    test = runner.prepare_test(null, test_seed, null.size(sc.N_TEST), out)
    name = f"null_vs_seed{b}" + ("" if test_seed == a else f"_test{test_seed}")
    folder = out / "comparisons" / f"seed{a}" / name
    payload = _compare(test / "test", baseline_model, candidate_model, folder, a, params, method)
    return {
        "kind": "null", "seed": a, "candidate_seed": b, "test_seed": test_seed,
        **_result(payload, folder, []),
    }  # fmt: skip


def run_comparison_bench(options: ComparisonBenchOptions) -> dict:
    started = time.perf_counter()
    unknown = [k for k in options.kinds if k not in KINDS]
    if unknown or not options.kinds:
        raise UsageError(f"comparison kinds: unknown {unknown} (choose from {', '.join(KINDS)})")
    if options.seeds < 1 or ("null" in options.kinds and options.seeds < 2):
        raise UsageError("--seeds must be at least 1, and at least 2 for the null (pairs of seeds)")
    seeds = list(range(options.first_seed, options.first_seed + options.seeds))
    out = Path(options.out)
    jobs: list[tuple] = [(k, s) for k in options.kinds if k != "null" for s in seeds]
    if "null" in options.kinds:
        jobs += [("null", pair) for pair in itertools.permutations(seeds, 2)]
    runs = []
    for number, (kind, what) in enumerate(jobs, start=1):
        step = time.perf_counter()
        console.info(f"bench comparisons {number}/{len(jobs)}: {kind}, seed {what}")
        if kind == "null":
            run = _null(*what, out, options.params, method=options.method)
        else:
            run = _planted(kind, what, out, options.params, method=options.method)
        run["seconds"] = round(time.perf_counter() - step, 1)
        runs.append(run)
        console.info("  " + _line(run))
    payload = {
        "seg4seg": __version__,
        "command": options.command,
        "seconds": round(time.perf_counter() - started, 1),
        "seeds": seeds,
        "method": options.method,
        "params": options.params,
        "runs": runs,
        "summary": summarize(runs),
    }
    atomic.write_json(out / "bench_comparisons.json", payload)
    text = render_markdown(payload)
    atomic.write_bytes(out / "BENCHMARK_COMPARE.md", text.encode("utf-8"))
    if options.doc is not None:
        atomic.write_bytes(options.doc, text.encode("utf-8"))
    return payload


def _line(run: dict) -> str:
    if run["kind"] == "null":
        return (
            f"null seed {run['seed']} vs {run['candidate_seed']}: "
            f"{run['compare']['false_alarms']} alarm(s), {run['significant_regressions']} "
            f"significant regression(s), overall change {run['mean_change']:+.3f}"
        )
    mine, worst = run["compare"], run["worst_delta_k"]
    return (
        f"{run['kind']} seed {run['seed']}: compare P@10 {mine['p_at_10']:.2f} F1 {mine['f1']:.2f}"
        f" ({'found' if mine['found'] else 'missed'}); worst-delta-k P@10 "
        f"{worst['p_at_10']:.2f} F1 {worst['f1']:.2f}"
    )


def summarize(runs: list[dict]) -> dict:
    summary: dict[str, dict] = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        if kind == "null":
            summary[kind] = {
                "pairs": len(mine),
                "alarmed": sum(r["compare"]["false_alarms"] > 0 for r in mine),
                "with_significant_regression": sum(r["significant_regressions"] > 0 for r in mine),
            }
            continue
        for row in ("compare", "worst_delta_k"):
            scores = [r[row] for r in mine]
            summary.setdefault(kind, {})[row] = {
                "seeds": len(scores),
                "found": sum(bool(s["found"]) for s in scores),
                "p_at_10": round(float(np.mean([s["p_at_10"] for s in scores])), 3),
                "f1": round(float(np.mean([s["f1"] for s in scores])), 3),
            }
    return summary


def render_markdown(payload: dict) -> str:
    summary = payload["summary"]
    lines = [
        "# `seg4seg compare` on the bench's comparison scenarios",
        "",
        f"Command: `{payload['command']}` (seg4seg {payload['seg4seg']}, seeds "
        f"{', '.join(map(str, payload['seeds']))}, {payload['seconds'] / 60:.1f} min; "
        f"`compare --method {payload.get('method', 'coherent')}`"
        + (f" with {json.dumps(payload['params'])}" if payload.get("params") else "")
        + ").",
        "",
        "Found: the best of the top-3 regressions has precision@10 ≥ 0.8. Worst-delta-k: the k "
        "cases whose Dice dropped most, k the planted size (a scenario it solves is a ranking "
        "problem, not a discovery one).",
        "",
        "| scenario | compare: found · mean P@10 · mean F1 | worst-delta-k: found · P@10 · F1 |",
        "|---|---|---|",
    ]
    for kind in ("regression", "scattered"):
        if kind in summary:
            cells = [
                f"{c['found']}/{c['seeds']} · {c['p_at_10']:.2f} · {c['f1']:.2f}"
                for c in (summary[kind]["compare"], summary[kind]["worst_delta_k"])
            ]
            lines.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    if "null" in summary:
        null = summary["null"]
        lines += [
            "",
            f"Null (the baseline retrained with another seed, {null['pairs']} ordered pairs): "
            f"**{null['alarmed']}/{null['pairs']} alarmed** (a regression with p_adjusted < "
            f"{ALARM_P} and a drop ≥ {ALARM_GAP}); {null['with_significant_regression']}/"
            f"{null['pairs']} with a significant regression of any size.",
        ]
    lines += ["", "## Runs", ""]
    lines += [f"- {_line(r)}" for r in payload["runs"]]
    return "\n".join(lines) + "\n"
