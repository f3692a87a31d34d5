"""`seg4seg bench`: score every discovery method on planted-failure scenarios.

For each scenario and seed: generate the data (`scenarios.py`), train a tiny 2-D nnU-Net on its
training half in a subprocess (`train.py`), predict and compute features on its test half exactly
as `seg4seg audit` does, check the scenario is valid (the subgroup's mean Dice at least 0.15
below the rest), run each method's discovery, and score it (`score.py`). Everything is cached
under `--out`: data and models by a fingerprint of their definition, predictions and features by
the usual resumable steps, so a rerun (or a run killed half way) redoes only what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from seg4seg_cli import __version__, atomic, console
from seg4seg_cli.bench import scenarios as sc
from seg4seg_cli.bench import train
from seg4seg_cli.bench.score import score
from seg4seg_cli.discover import DiscoverOptions, run_discover
from seg4seg_cli.errors import DataError, UsageError
from seg4seg_cli.features import FeaturesOptions, run_features
from seg4seg_cli.predict import PredictOptions, run_predict
from seg4seg_cli.provenance import tool_versions
from seg4seg_cli.slicers import METHODS, make_slicer

DEFAULT_METHOD = DiscoverOptions.method  # what `seg4seg discover` runs by default
METHOD_ORDER = list(METHODS)
QUICK_SCENARIO = "artefact"
DISCOVER_KEYS = ("min_size", "holdout", "n_slices")
DATA_VERSION = 1  # bump when generation or training changes: cached data and models are redone


@dataclass(frozen=True)
class MethodSpec:
    """A method and overrides, written `name` or `name:key=value:key=value`.

    Keys of `seg4seg discover` itself (`min_size`, `holdout`, `n_slices`) set that option; any
    other key is a hyperparameter of the method's class.
    """

    label: str
    name: str
    params: dict = field(default_factory=dict)

    def slicer_params(self) -> dict:
        return {k: v for k, v in self.params.items() if k not in DISCOVER_KEYS}

    def discover_params(self) -> dict:
        return {k: v for k, v in self.params.items() if k in DISCOVER_KEYS}


def parse_methods(text: str) -> list[MethodSpec]:
    specs = []
    # "all": each method on its own, then `discover --method all` (their merged union)
    items = (
        [*METHOD_ORDER, "all"]
        if text.strip() == "all"
        else [t for t in text.split(",") if t.strip()]
    )
    for item in items:
        name, *pairs = item.strip().split(":")
        if name == "all" and not pairs:
            specs.append(MethodSpec("all", "all", {}))
            continue
        if name not in METHODS:
            raise UsageError(
                f"--methods: unknown method {name!r} "
                f"(choose from {', '.join(METHOD_ORDER)}, all (their union), or all of them)"
            )
        params = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(f"--methods: {item!r}: write overrides as name:key=value")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        spec = MethodSpec(item.strip(), name, params)
        try:  # an unknown or ill-typed hyperparameter fails here, before hours of work
            make_slicer(name, 5, 0, 10, spec.slicer_params())
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--methods: {item!r}: {exc}") from None
        specs.append(spec)
    if not specs:
        raise UsageError("--methods: give at least one method")
    if len({s.label for s in specs}) != len(specs):
        raise UsageError("--methods: a method is listed twice")
    return specs


def parse_scenarios(text: str) -> list[sc.Scenario]:
    names = list(sc.SCENARIOS) if text.strip() == "all" else [t.strip() for t in text.split(",")]
    unknown = [n for n in names if n not in sc.SCENARIOS]
    if unknown or not names:
        raise UsageError(
            f"--scenarios: unknown {', '.join(unknown) or '(none)'} "
            f"(choose from {', '.join(sc.SCENARIOS)} or all)"
        )
    return [sc.SCENARIOS[n] for n in names]


@dataclass
class BenchOptions:
    out: Path = Path("seg4seg_bench")
    methods: str = "all"
    scenarios: str = "all"
    seeds: int = 3
    first_seed: int = 0
    quick: bool = False
    doc: Path | None = None
    command: str = "seg4seg bench"


@contextlib.contextmanager
def _inner_steps_quiet():
    """The audit steps inside the benchmark print only warnings; the bench prints its own lines."""
    saved = console.settings.quiet
    console.settings.quiet = not console.settings.verbose
    try:
        yield
    finally:
        console.settings.quiet = saved


def _fingerprint(scenario: sc.Scenario, seed: int) -> dict:
    return {
        "data_version": DATA_VERSION,
        "scenario": json.loads(json.dumps(asdict(scenario))),
        "seed": seed,
        "n_train": sc.N_TRAIN,
        "n_test": sc.N_TEST,
        "n_subgroup": sc.N_SUBGROUP,
        "training": {
            "features_per_stage": train.FEATURES_PER_STAGE,
            "iterations_per_epoch": train.N_ITERATIONS_PER_EPOCH,
            "batch_size": train.BATCH_SIZE,
        },
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def prepare(scenario: sc.Scenario, seed: int, folder: Path) -> tuple[Path, Path, float]:
    """Dataset and trained model of one scenario and seed, made or reused; returns
    (dataset, model folder, seconds spent training now)."""
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(scenario, seed)
    dataset = folder / sc.dataset_name(scenario, seed)
    model = folder / "model"
    if _read_json(folder / "scenario.json") != fingerprint or not (folder / "truth.json").exists():
        for stale in (folder / "audit", model):
            if stale.exists():
                shutil.rmtree(stale)
        sc.generate(scenario, seed, folder)
        atomic.write_json(folder / "scenario.json", fingerprint)
    seconds = 0.0
    if not (model / "fold_0" / "checkpoint_final.pth").exists():
        started = time.perf_counter()
        log = folder / "train.log"
        with log.open("w") as handle:
            done = subprocess.run(
                [sys.executable, "-m", "seg4seg_cli.bench.train", str(dataset), str(model)]
                + ["--seed", str(seed), "--epochs", str(scenario.epochs)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise DataError(
                f"training the {scenario.name} model (seed {seed}) failed: {tail[0]} (log: {log})"
            )
        seconds = time.perf_counter() - started
    return dataset, model, seconds


def audit_test_set(dataset: Path, model: Path, out: Path) -> None:
    """predict + features on the test half, as `seg4seg audit` does (resumable)."""
    with _inner_steps_quiet():
        predicted = run_predict(
            PredictOptions(
                model=model, out=out, data=dataset, device="cpu", on_settings_change="redo"
            )
        )
        features = run_features(FeaturesOptions(data=dataset, out=out))
    skipped = {**predicted.skipped, **features.skipped}
    if skipped:
        raise DataError(
            f"{out}: {len(skipped)} bench case(s) failed: {sorted(skipped.items())[:3]}"
        )


def validity(out: Path, truth: list[str]) -> dict:
    """Mean Dice inside and outside the planted subgroup, and whether the gap makes it valid."""
    table = pq.read_table(out / "cases.parquet", columns=["case_id", "dice"]).to_pandas()
    inside = table["case_id"].isin(set(truth)).to_numpy()
    dice = table["dice"].to_numpy(dtype=float)
    result = {"mean_dice": round(float(dice.mean()), 4)}
    if not truth:
        return {**result, "valid": True}
    subgroup, rest = float(dice[inside].mean()), float(dice[~inside].mean())
    gap = rest - subgroup
    return {
        **result,
        "dice_subgroup": round(subgroup, 4),
        "dice_rest": round(rest, 4),
        "gap": round(gap, 4),
        "valid": gap >= sc.MIN_GAP,
    }


def _file_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._=-" else "_" for c in label)


def run_bench(options: BenchOptions) -> dict:
    started = time.perf_counter()
    methods, scenarios, n_seeds = options.methods, options.scenarios, options.seeds
    if options.quick:
        scenarios, n_seeds = QUICK_SCENARIO, 1
        if methods == "all":
            methods = DEFAULT_METHOD
    specs = parse_methods(methods)
    chosen = parse_scenarios(scenarios)
    if n_seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {n_seeds}")
    seeds = list(range(options.first_seed, options.first_seed + n_seeds))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)

    runs = []
    total = len(chosen) * len(seeds)
    for number, (scenario, seed) in enumerate(((s, k) for s in chosen for k in seeds), start=1):
        step_started = time.perf_counter()
        folder = out / "scenarios" / scenario.name / f"seed{seed}"
        console.info(f"bench {number}/{total}: {scenario.name}, seed {seed}")
        dataset, model, train_seconds = prepare(scenario, seed, folder)
        audit = folder / "audit"
        audit_test_set(dataset, model, audit)
        truth = json.loads((folder / "truth.json").read_text())["subgroup"]
        check = validity(audit, truth)
        results = {}
        for spec in specs:
            method_started = time.perf_counter()
            with _inner_steps_quiet():
                payload = run_discover(
                    DiscoverOptions(
                        out=audit,
                        method=spec.name,
                        seed=seed,
                        params=spec.slicer_params() or None,
                        **spec.discover_params(),
                        output=folder / f"subgroups-{_file_label(spec.label)}.json",
                    )
                )
            results[spec.label] = {
                **score(payload["subgroups"], truth).as_dict(),
                "seconds": round(time.perf_counter() - method_started, 2),
            }
        run = {
            "scenario": scenario.name,
            "seed": seed,
            **check,
            "train_seconds": round(train_seconds, 1),
            "seconds": round(time.perf_counter() - step_started, 1),
            "methods": results,
        }
        runs.append(run)
        console.info("  " + _run_line(run, scenario))

    summary = summarize(runs, specs, chosen)
    payload = {
        "seg4seg": __version__,
        "command": options.command,
        "machine": _machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "methods": [asdict(s) for s in specs],
        "scenarios": [s.name for s in chosen],
        "seeds": seeds,
        "runs": runs,
        "summary": summary,
    }
    atomic.write_json(out / "bench.json", payload)
    text = render_markdown(payload, chosen)
    atomic.write_bytes(out / "BENCHMARK_DISCOVERY.md", text.encode("utf-8"))
    if options.doc is not None:
        atomic.write_bytes(options.doc, text.encode("utf-8"))
    return payload


def _machine() -> str:
    versions = tool_versions()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {versions['python']}, "
        f"torch {versions['torch']} (CPU)"
    )


def _run_line(run: dict, scenario: sc.Scenario) -> str:
    if scenario.test_subgroup is None:
        head = f"mean Dice {run['mean_dice']:.3f}, nothing planted"
    else:
        head = (
            f"Dice subgroup {run['dice_subgroup']:.3f} vs rest {run['dice_rest']:.3f} "
            f"(gap {run['gap']:.3f}{'' if run['valid'] else f', INVALID: below {sc.MIN_GAP}'})"
        )
    parts = []
    for label, result in run["methods"].items():
        if result["found"] is None:
            parts.append(f"{label} {result['false_alarms']} alarm(s)")
        else:
            parts.append(
                f"{label} {'found' if result['found'] else 'missed'} (P@10 {result['p_at_10']:.1f})"
            )
    return f"{head}; " + ", ".join(parts) + f"; {run['seconds']:.0f} s"


def summarize(runs: list[dict], specs: list[MethodSpec], chosen: list[sc.Scenario]) -> dict:
    """Per method and scenario: valid seeds, found count, mean P@10/precision/recall/F1, alarms."""
    table: dict[str, dict] = {}
    for spec in specs:
        row = {}
        for scenario in chosen:
            mine = [r for r in runs if r["scenario"] == scenario.name]
            valid = [r for r in mine if r["valid"]]
            scores = [r["methods"][spec.label] for r in valid]
            cell = {
                "seeds": len(mine),
                "valid_seeds": len(valid),
                "false_alarms": int(sum(s["false_alarms"] for s in scores)),
                "runs_with_alarm": int(sum(s["false_alarms"] > 0 for s in scores)),
            }
            if scenario.test_subgroup is not None:

                def mean(key: str, scores=scores) -> float | None:
                    values = [s[key] for s in scores if s[key] is not None]
                    return round(float(np.mean(values)), 3) if values else None

                cell.update(
                    found=int(sum(bool(s["found"]) for s in scores)),
                    p_at_10=mean("p_at_10"),
                    precision=mean("precision"),
                    recall=mean("recall"),
                    f1=mean("f1"),
                )
            row[scenario.name] = cell
        table[spec.label] = row
    return table


def _cell(cell: dict, null: bool) -> str:
    if cell["valid_seeds"] == 0:
        return "invalid"
    if null:
        return f"{cell['runs_with_alarm']}/{cell['valid_seeds']} alarmed"
    return f"{cell['found']}/{cell['valid_seeds']} · {cell['p_at_10']:.2f}"


def _labels(payload: dict) -> list[str]:
    """Method labels in the order given (bench.json's summary is stored with sorted keys)."""
    return [m["label"] for m in payload["methods"]]


def table_rows(payload: dict, chosen: list[sc.Scenario]) -> tuple[list[str], list[list[str]]]:
    header = ["method"] + [s.name for s in chosen]
    rows = []
    for label in _labels(payload):
        row = payload["summary"][label]
        rows.append([label] + [_cell(row[s.name], s.test_subgroup is None) for s in chosen])
    return header, rows


def render_markdown(payload: dict, chosen: list[sc.Scenario]) -> str:
    header, rows = table_rows(payload, chosen)
    lines = [
        "# Discovery benchmark",
        "",
        "Made by `seg4seg bench`; regenerate with:",
        "",
        "```",
        payload["command"],
        "```",
        "",
        f"seg4seg {payload['seg4seg']} on {payload['machine']}; seeds {payload['seeds']}; "
        f"{payload['seconds'] / 60:.1f} min in all (data, training, prediction, features, "
        "discovery).",
        "",
        "Each cell: **found / valid seeds · mean precision@10** of the best of the top-3 "
        "subgroups (found when P@10 >= 0.8, dcbench's criterion). On `null` (nothing planted): "
        "runs with a false alarm, i.e. a subgroup with p_adjusted < 0.05 and gap >= 0.05 Dice.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "## Scenarios",
        "",
        f"Each scenario trains its own tiny 2-D nnU-Net ({sc.N_TRAIN} training cases, "
        f"{train.N_EPOCHS} epochs on the CPU) and audits {sc.N_TEST} test cases, "
        f"{sc.N_SUBGROUP} of them in the subgroup. A scenario counts only where the subgroup's mean Dice is at least "
        f"{sc.MIN_GAP} below the rest's (valid); the Dice of each seed is below.",
        "",
        "| scenario | what | seed: Dice subgroup / rest (gap) |",
        "|---|---|---|",
    ]
    for scenario in chosen:
        mine = [r for r in payload["runs"] if r["scenario"] == scenario.name]
        if scenario.test_subgroup is None:
            cells = "; ".join(f"{r['seed']}: mean {r['mean_dice']:.3f}" for r in mine)
        else:
            cells = "; ".join(
                f"{r['seed']}: {r['dice_subgroup']:.3f} / {r['dice_rest']:.3f} ({r['gap']:.3f}"
                + ("" if r["valid"] else ", invalid")
                + ")"
                for r in mine
            )
        lines.append(f"| `{scenario.name}` | {scenario.description} | {cells} |")
    lines += [
        "",
        "## Precision, recall and F1 of the best subgroup",
        "",
        "Means over valid seeds of the best of the top-3 subgroups (whole subgroup, not only "
        "its first 10 cases); the last column counts, over those seeds, every subgroup reported "
        "with p_adjusted < 0.05 and gap >= 0.05, the planted one included.",
        "",
        "| method | scenario | precision | recall | F1 | significant subgroups |",
        "|---|---|---|---|---|---|",
    ]
    for label in _labels(payload):
        row = payload["summary"][label]
        for scenario in chosen:
            cell = row[scenario.name]
            if scenario.test_subgroup is None or cell["valid_seeds"] == 0:
                continue
            lines.append(
                f"| {label} | {scenario.name} | {cell['precision']:.2f} | {cell['recall']:.2f} "
                f"| {cell['f1']:.2f} | {cell['false_alarms']} |"
            )
    return "\n".join(lines) + "\n"


def print_table(payload: dict, chosen: list[sc.Scenario]) -> None:
    from rich.table import Table

    header, rows = table_rows(payload, chosen)
    table = Table(
        title="discovery benchmark: found/valid seeds · mean P@10 (null: runs with a false alarm)"
    )
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.console.print(table)
