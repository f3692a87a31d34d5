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
import hashlib
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
import pandas as pd

from seg4seg_cli import __version__, atomic, console
from seg4seg_cli.bench import baselines, train
from seg4seg_cli.bench import scenarios as sc
from seg4seg_cli.bench.score import score
from seg4seg_cli.discover import DiscoverOptions, load_out_folder, run_discover
from seg4seg_cli.errors import DataError, UsageError
from seg4seg_cli.features import FeaturesOptions, run_features
from seg4seg_cli.predict import PredictOptions, run_predict
from seg4seg_cli.provenance import tool_versions
from seg4seg_cli.slicers import METHODS, make_slicer

DEFAULT_METHOD = DiscoverOptions.method  # what `seg4seg discover` runs by default
METHOD_ORDER = list(METHODS)
# the quick run (CI) uses the scenario the default finds most reliably (5/5 in
# docs/BENCHMARK_DISCOVERY.md, worst-k 0/5): on artefact the default is weak (0/5 there) and a
# retrained model's result varies from 0.0 to 0.8 P@10, so it would test training luck
QUICK_SCENARIO = "annotation"
DISCOVER_KEYS = ("min_size", "folds", "n_slices")
DISCOVERY_VERSION = 10  # bump when a method changes: cached subgroups are then recomputed
DATA_VERSION = 2  # bump when generation or training changes: cached data and models are redone


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
    # "all" alone: each method on its own ("union" adds `discover --method all`, their merged
    # union, which reruns every method: Spotlight alone is most of the bench's discovery time)
    items = (
        list(METHOD_ORDER) if text.strip() == "all" else [t for t in text.split(",") if t.strip()]
    )
    for item in items:
        name, *pairs = item.strip().split(":")
        if name in ("all", "union") and not pairs:
            specs.append(MethodSpec("union", "all", {}))
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
    size: int = sc.N_TEST
    quick: bool = False
    doc: Path | None = None
    command: str = "seg4seg bench"


@contextlib.contextmanager
def inner_steps_quiet():
    """The audit steps inside the benchmark print only warnings; the bench prints its own lines."""
    saved = console.settings.quiet
    console.settings.quiet = not console.settings.verbose
    try:
        yield
    finally:
        console.settings.quiet = saved


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _model_fingerprint(scenario: sc.Scenario, seed: int) -> dict:
    # a JSON round trip, so that it compares equal to the copy read back from disk
    fingerprint = {"data_version": DATA_VERSION, **sc.training_fingerprint(scenario, seed)}
    return json.loads(json.dumps(fingerprint))


def model_folder(scenario: sc.Scenario, seed: int, out: Path) -> Path:
    """Where a scenario's model of a seed is trained; another training length of the same model
    (and the same training cases) keeps a folder of its own."""
    usual = next(s.epochs for s in sc.SCENARIOS.values() if s.model == scenario.model)
    longer = "" if scenario.epochs == usual else f"_epochs{scenario.epochs}"
    return out / "models" / scenario.model / f"seed{seed}{longer}"


def prepare_model(scenario: sc.Scenario, seed: int, out: Path) -> tuple[Path, float]:
    """The trained model of a scenario's `model` and seed, made or reused; returns (model
    folder, seconds spent training now). Scenarios with the same model share it."""
    folder = model_folder(scenario, seed, out)
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = _model_fingerprint(scenario, seed)
    dataset = folder / sc.training_name(scenario.model, seed)
    model = folder / "model"
    if _read_json(folder / "training.json") != fingerprint or not dataset.is_dir():
        if model.exists():
            shutil.rmtree(model)
        sc.generate_training(scenario, seed, folder)
        atomic.write_json(folder / "training.json", fingerprint)
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
                f"training the {scenario.model} model (seed {seed}) failed: {tail[0]} (log: {log})"
            )
        seconds = time.perf_counter() - started
    return model, seconds


def prepare_test(scenario: sc.Scenario, seed: int, n_test: int, out: Path) -> Path:
    """The scenario's test set and truth.json for a seed and size, made or reused; returns its
    folder (the audit goes to `audit/` inside)."""
    folder = out / "scenarios" / scenario.name / f"n{n_test}" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "data_version": DATA_VERSION,
        "scenario": json.loads(json.dumps(asdict(scenario))),
        "seed": seed,
        "n_test": n_test,
        "model": _model_fingerprint(scenario, seed),
    }
    if _read_json(folder / "scenario.json") != fingerprint or not (folder / "truth.json").exists():
        if (folder / "audit").exists():
            shutil.rmtree(folder / "audit")
        sc.generate_test(scenario, seed, n_test, folder)
        atomic.write_json(folder / "scenario.json", fingerprint)
    return folder


def audit_test_set(dataset: Path, model: Path, out: Path) -> None:
    """predict + features on the test half, as `seg4seg audit` does (resumable)."""
    with inner_steps_quiet():
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


def validity(cases: pd.DataFrame, truth: dict) -> dict:
    """Mean Dice of the subgroup, the distractors and the clean rest; valid when the subgroup's is
    at least MIN_GAP below the clean rest's (distractors fail on purpose and are left out)."""
    inside = cases["case_id"].isin(set(truth["subgroup"])).to_numpy()
    distracted = cases["case_id"].isin(set(truth.get("distractors", []))).to_numpy()
    dice = cases["dice"].to_numpy(dtype=float)
    result = {"mean_dice": round(float(dice.mean()), 4)}
    if distracted.any():
        result["dice_distractors"] = round(float(dice[distracted].mean()), 4)
    if not truth["subgroup"]:
        return {**result, "valid": True}
    subgroup, rest = float(dice[inside].mean()), float(dice[~inside & ~distracted].mean())
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


def _baselines(
    cases: pd.DataFrame, embeddings: np.ndarray | None, truth: dict, seed: int
) -> tuple[dict, float | None]:
    """The worst-k score and the identifiability AUC of one audited scenario."""
    values = cases["dice"].to_numpy(dtype=float)
    members = cases["case_id"].isin(set(truth["subgroup"])).to_numpy()
    k = max(int(members.sum()), 10)
    worst = score(baselines.worst_k(cases, values, True, k), truth["subgroup"]).as_dict()
    auc = baselines.identifiability(cases, embeddings, members, seed) if members.any() else None
    return worst, (round(auc, 4) if auc is not None else None)


def _audit_digest(audit: Path) -> str:
    """sha256 of the audit's cases.parquet and embeddings.parquet: what discovery reads."""
    digest = hashlib.sha256()
    for name in ("cases.parquet", "embeddings.parquet"):
        path = audit / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _discover(
    spec: MethodSpec, seed: int, audit: Path, audit_digest: str, folder: Path, truth: dict
) -> dict:
    """Score of one method on one audited scenario; subgroups reused when nothing changed."""
    output = folder / f"subgroups-{_file_label(spec.label)}.json"
    key_file = output.with_suffix(".key.json")
    # what the subgroups depend on: a rerun with the same key reuses them
    key = {
        "discovery_version": DISCOVERY_VERSION,
        "seg4seg": __version__,
        "method": asdict(spec),
        "seed": seed,
        "audit": audit_digest,
    }
    previous = _read_json(key_file)
    stored = _read_json(output)
    if previous is not None and stored is not None and previous.get("key") == key:
        return {**score(stored["subgroups"], truth["subgroup"]).as_dict(), **previous["timing"]}
    started = time.perf_counter()
    with inner_steps_quiet():
        payload = run_discover(
            DiscoverOptions(
                out=audit,
                method=spec.name,
                seed=seed,
                params=spec.slicer_params() or None,
                **spec.discover_params(),
                output=output,
            )
        )
    timing = {"seconds": round(time.perf_counter() - started, 2)}
    atomic.write_json(key_file, {"key": key, "timing": timing})
    return {**score(payload["subgroups"], truth["subgroup"]).as_dict(), **timing}


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
    if options.size < 40:
        raise UsageError(f"--size must be at least 40 test cases, got {options.size}")
    seeds = list(range(options.first_seed, options.first_seed + n_seeds))
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)

    runs = []
    total = len(chosen) * len(seeds)
    for number, (scenario, seed) in enumerate(((s, k) for s in chosen for k in seeds), start=1):
        step_started = time.perf_counter()
        n_test = scenario.size(options.size)
        console.info(f"bench {number}/{total}: {scenario.name}, seed {seed}, {n_test} test cases")
        model, train_seconds = prepare_model(scenario, seed, out)
        folder = prepare_test(scenario, seed, n_test, out)
        audit = folder / "audit"
        audit_test_set(folder / "test", model, audit)
        truth = json.loads((folder / "truth.json").read_text())
        cases, embeddings, _ = load_out_folder(audit)
        check = validity(cases, truth)
        digest = _audit_digest(audit)
        results = {
            spec.label: _discover(spec, seed, audit, digest, folder, truth) for spec in specs
        }
        worst, auc = _baselines(cases, embeddings, truth, seed)
        run = {
            "scenario": scenario.name,
            "seed": seed,
            "n_test": n_test,
            "n_subgroup": len(truth["subgroup"]),
            "n_distractors": len(truth.get("distractors", [])),
            **check,
            "identifiability_auc": auc,
            "train_seconds": round(train_seconds, 1),
            "seconds": round(time.perf_counter() - step_started, 1),
            "methods": results,
            "worst_k": worst,
        }
        runs.append(run)
        console.info("  " + _run_line(run, scenario))

    summary = summarize(runs, specs, chosen)
    payload = {
        "seg4seg": __version__,
        "command": options.command,
        "machine": _machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "size": options.size,
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
            f"Dice subgroup {run['dice_subgroup']:.3f} vs clean rest {run['dice_rest']:.3f} "
            f"(gap {run['gap']:.3f}{'' if run['valid'] else f', INVALID: below {sc.MIN_GAP}'})"
            f", distractors {run.get('dice_distractors', float('nan')):.3f}"
        )
    parts = []
    for label, result in [*run["methods"].items(), ("worst-k", run["worst_k"])]:
        if result["found"] is None:
            if label != "worst-k":
                parts.append(f"{label} {result['false_alarms']} alarm(s)")
        else:
            parts.append(
                f"{label} {'found' if result['found'] else 'missed'} "
                f"(P@10 {result['p_at_10']:.1f}, F1 {result['f1']:.2f})"
            )
    return f"{head}; " + ", ".join(parts) + f"; {run['seconds']:.0f} s"


WORST_K = "worst-k"
IDENTIFIABILITY = "identifiability"


def _cell_scores(scores: list[dict], planted: bool) -> dict:
    cell = {
        "false_alarms": int(sum(s["false_alarms"] for s in scores)),
        "runs_with_alarm": int(sum(s["false_alarms"] > 0 for s in scores)),
    }
    if planted:

        def mean(key: str) -> float | None:
            values = [s[key] for s in scores if s[key] is not None]
            return round(float(np.mean(values)), 3) if values else None

        cell.update(
            found=int(sum(bool(s["found"]) for s in scores)),
            p_at_10=mean("p_at_10"),
            precision=mean("precision"),
            recall=mean("recall"),
            f1=mean("f1"),
        )
    return cell


def summarize(runs: list[dict], specs: list[MethodSpec], chosen: list[sc.Scenario]) -> dict:
    """Per method (and the worst-k baseline) and scenario: valid seeds, found count, mean
    P@10/precision/recall/F1, alarms; per scenario the mean identifiability AUC."""
    table: dict[str, dict] = {}
    for label in [*(s.label for s in specs), WORST_K]:
        row = {}
        for scenario in chosen:
            mine = [r for r in runs if r["scenario"] == scenario.name]
            valid = [r for r in mine if r["valid"]]
            scores = [r["worst_k"] if label == WORST_K else r["methods"][label] for r in valid]
            row[scenario.name] = {
                "seeds": len(mine),
                "valid_seeds": len(valid),
                **_cell_scores(scores, scenario.test_subgroup is not None),
            }
        table[label] = row
    table[IDENTIFIABILITY] = {}
    for scenario in chosen:
        aucs = [
            r["identifiability_auc"]
            for r in runs
            if r["scenario"] == scenario.name
            and r["valid"]
            and r["identifiability_auc"] is not None
        ]
        table[IDENTIFIABILITY][scenario.name] = {
            "auc": round(float(np.mean(aucs)), 3) if aucs else None,
            "auc_min": round(float(np.min(aucs)), 3) if aucs else None,
        }
    return table


def _cell(cell: dict, null: bool) -> str:
    if cell["valid_seeds"] == 0:
        return "invalid"
    if null:
        return f"{cell['runs_with_alarm']}/{cell['valid_seeds']} alarmed"
    return f"{cell['found']}/{cell['valid_seeds']} · {cell['p_at_10']:.2f} · {cell['f1']:.2f}"


def _labels(payload: dict) -> list[str]:
    """Method labels in the order given, then the worst-k baseline."""
    return [m["label"] for m in payload["methods"]] + [WORST_K]


def table_rows(payload: dict, chosen: list[sc.Scenario]) -> tuple[list[str], list[list[str]]]:
    header = ["method"] + [s.name for s in chosen]
    rows = []
    for label in _labels(payload):
        row = payload["summary"][label]
        rows.append([label] + [_cell(row[s.name], s.test_subgroup is None) for s in chosen])
    ident = payload["summary"][IDENTIFIABILITY]
    rows.append(
        [IDENTIFIABILITY + " (AUC)"]
        + ["–" if ident[s.name]["auc"] is None else f"{ident[s.name]['auc']:.2f}" for s in chosen]
    )
    return header, rows


def _totals(payload: dict, chosen: list[sc.Scenario]) -> list[str]:
    """One line per method: planted scenario-seeds found, mean F1, and scenarios beating worst-k."""
    planted = [s for s in chosen if s.test_subgroup is not None]
    lines = []
    worst = payload["summary"][WORST_K]
    for label in _labels(payload):
        row = payload["summary"][label]
        found = sum(row[s.name].get("found", 0) for s in planted)
        valid = sum(row[s.name]["valid_seeds"] for s in planted)
        f1s = [row[s.name]["f1"] for s in planted if row[s.name].get("f1") is not None]
        beats = sum(
            1
            for s in planted
            if row[s.name].get("f1") is not None
            and worst[s.name].get("f1") is not None
            and row[s.name]["f1"] > worst[s.name]["f1"]
        )
        share = f"{found / valid:.0%}" if valid else "–"
        mean_f1 = f"{np.mean(f1s):.2f}" if f1s else "–"
        versus = "–" if label == WORST_K else f"{beats}/{len(planted)}"
        lines.append(f"| {label} | {found}/{valid} ({share}) | {mean_f1} | {versus} |")
    return lines


def render_markdown(payload: dict, chosen: list[sc.Scenario]) -> str:
    header, rows = table_rows(payload, chosen)
    size = payload.get("size", sc.N_TEST)
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
        "Each cell: **found / valid seeds · mean precision@10 · mean F1** of the best of the top-3 "
        "subgroups (found when P@10 >= 0.8, dcbench's criterion). `worst-k` is the baseline: "
        "the k lowest-Dice cases as one subgroup, k the planted subgroup's size; a method that "
        "does no better than it measures error ranking, not discovery. `identifiability` is the "
        "cross-validated AUC of a supervised classifier of membership on the default method's "
        "representation: near 1, the subgroup can be told apart; a miss is the method's fault. "
        "On `null` (nothing planted): runs with a false alarm, i.e. a subgroup with "
        "p_adjusted < 0.05 and gap >= 0.05 Dice.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        "## Totals over the planted scenarios",
        "",
        "| method | scenario-seeds found | mean F1 | scenarios with F1 above worst-k's |",
        "|---|---|---|---|",
        *_totals(payload, chosen),
        "",
        "## Scenarios",
        "",
        f"Each scenario's model is a tiny 2-D nnU-Net ({sc.N_TRAIN} training cases, "
        f"{train.N_EPOCHS} epochs on the CPU; scenarios of the same training share it). Test sets "
        f"have {size} cases unless the scenario fixes its own size, {sc.SUBGROUP_SHARE:.0%} of them "
        f"in the subgroup, and {sc.DISTRACTOR_SHARE:.0%} of the others are distractors, each with "
        "its own random corruption. A scenario counts only where the subgroup's mean Dice is at "
        f"least {sc.MIN_GAP} below the clean rest's (valid). Per seed: Dice of subgroup / "
        "distractors / clean rest.",
        "",
        "| scenario | test cases | what | seed: Dice subgroup / distractors / rest |",
        "|---|---|---|---|",
    ]
    for scenario in chosen:
        mine = [r for r in payload["runs"] if r["scenario"] == scenario.name]
        n_test = mine[0]["n_test"] if mine else scenario.size(size)
        if scenario.test_subgroup is None:
            cells = "; ".join(
                f"{r['seed']}: mean {r['mean_dice']:.3f}, distractors {r.get('dice_distractors', 0):.3f}"
                for r in mine
            )
        else:
            cells = "; ".join(
                f"{r['seed']}: {r['dice_subgroup']:.2f} / {r.get('dice_distractors', 0):.2f} / "
                f"{r['dice_rest']:.2f}" + ("" if r["valid"] else " (invalid)")
                for r in mine
            )
        lines.append(f"| `{scenario.name}` | {n_test} | {scenario.description} | {cells} |")
    lines += [
        "",
        "## Precision, recall and F1 of the best subgroup",
        "",
        "Means over valid seeds of the best of the top-3 subgroups (whole subgroup, not only "
        "its first 10 cases); the last column counts, over those seeds, every subgroup reported "
        "with p_adjusted < 0.05 and gap >= 0.05, the planted one included.",
        "",
        "| method | scenario | precision | recall | F1 | worst-k F1 | significant subgroups |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = payload["summary"][WORST_K]
    for label in _labels(payload)[:-1]:
        row = payload["summary"][label]
        for scenario in chosen:
            cell = row[scenario.name]
            if scenario.test_subgroup is None or cell["valid_seeds"] == 0:
                continue
            lines.append(
                f"| {label} | {scenario.name} | {cell['precision']:.2f} | {cell['recall']:.2f} "
                f"| {cell['f1']:.2f} | {worst[scenario.name]['f1']:.2f} | {cell['false_alarms']} |"
            )
    return "\n".join(lines) + "\n"


def print_table(payload: dict, chosen: list[sc.Scenario]) -> None:
    from rich.table import Table

    header, rows = table_rows(payload, chosen)
    table = Table(
        title="discovery benchmark: found/valid seeds · mean P@10 · mean F1 (null: runs with a false alarm)"
    )
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.console.print(table)
