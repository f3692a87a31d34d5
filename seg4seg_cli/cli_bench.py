"""The `seg4seg bench` command: its flags and output; the work is in bench/runner.py (discovery)
and bench/comparisons.py (`--comparisons`: `seg4seg compare` on planted regressions and nulls)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from seg4seg_cli import console
from seg4seg_cli.cli import (
    ProgressMode,
    ProgressOption,
    QuietOption,
    SeedOption,
    VerboseOption,
    _apply_verbosity,
    _seed,
    app,
)
from seg4seg_cli.errors import UsageError


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg bench --quick                                   (one scenario, the default method, one seed: a few minutes)\n\n"
        "  seg4seg bench --methods all --scenarios all --seeds 5   (the full table, under 60 min on 2 CPU cores)\n\n"
        "  seg4seg bench --scenarios artefact,null --methods coherent,coherent:fail_share=0.2\n\n"
        "  seg4seg bench --comparisons --seeds 5                   (seg4seg compare: planted regressions, 20 null pairs)\n\n"
        "Scenarios: artefact, appearance, acquisition, annotation, small, brain, few, null (see docs/bench.md);\n"
        "with --comparisons: regression, scattered, null."
    ),
)
def bench(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Work folder: data, models, audits, bench.json.")
    ] = Path("seg4seg_bench"),
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="Comma-separated methods or all; name:key=value overrides a hyperparameter.",
        ),
    ] = "all",
    scenarios: Annotated[
        str, typer.Option("--scenarios", help="Comma-separated scenarios or all.")
    ] = "all",
    seeds: Annotated[
        int, typer.Option("--seeds", help="Seeds per scenario (data, model and discovery).")
    ] = 3,
    size: Annotated[
        int,
        typer.Option(
            "--size", help="Test cases per scenario (scenarios with a size of their own keep it)."
        ),
    ] = 120,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="One scenario (annotation), one seed, the default method unless --methods.",
        ),
    ] = False,
    comparisons: Annotated[
        bool,
        typer.Option(
            "--comparisons",
            help="Score `seg4seg compare` instead: planted regressions and retrained-seed nulls.",
        ),
    ] = False,
    doc: Annotated[
        Path | None,
        typer.Option(
            "--doc", help="Also write the Markdown table here (e.g. docs/BENCHMARK_DISCOVERY.md)."
        ),
    ] = None,
    seed: SeedOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Score the discovery methods on planted-failure scenarios, each with its own tiny nnU-Net.

    Generates each scenario's data, trains its model on the CPU (cached in --out), audits the
    test cases with every method and prints found rate and precision@10 per method and scenario;
    writes OUT/bench.json and OUT/BENCHMARK_DISCOVERY.md. Seeds run from --seed upwards. With
    --comparisons it scores `seg4seg compare` instead (OUT/bench_comparisons.json and
    OUT/BENCHMARK_COMPARE.md).
    """
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli.provenance import command_line

    command = " ".join(shlex.quote(a) for a in command_line())
    if comparisons:
        _comparisons(out, methods, scenarios, seeds, _seed(seed), doc, command)
        return
    from seg4seg_cli.bench.runner import BenchOptions, parse_scenarios, print_table, run_bench

    payload = run_bench(
        BenchOptions(
            out=out, methods=methods, scenarios=scenarios, seeds=seeds, first_seed=_seed(seed),
            size=size, quick=quick, doc=doc, command=command,
        )
    )  # fmt: skip
    print_table(payload, parse_scenarios(",".join(payload["scenarios"])))
    console.info(
        f"bench: {len(payload['runs'])} scenario run(s) in {payload['seconds'] / 60:.1f} min -> "
        f"{out / 'bench.json'}, {out / 'BENCHMARK_DISCOVERY.md'}" + (f", {doc}" if doc else "")
    )


def _comparisons(
    out: Path, methods: str, scenarios: str, seeds: int, first_seed: int, doc, command: str
) -> None:
    from seg4seg_cli.bench.comparisons import (
        KINDS,
        ComparisonBenchOptions,
        render_markdown,
        run_comparison_bench,
    )
    from seg4seg_cli.bench.runner import parse_methods

    params, method = None, "coherent"
    if methods != "all":
        specs = parse_methods(methods)
        if len(specs) != 1:
            raise UsageError(
                "--comparisons scores one setting of compare: give one --methods entry"
            )
        params, method = specs[0].slicer_params() or None, specs[0].name
    kinds = KINDS if scenarios == "all" else tuple(k.strip() for k in scenarios.split(","))
    payload = run_comparison_bench(
        ComparisonBenchOptions(
            out=out, seeds=seeds, first_seed=first_seed, kinds=kinds, method=method,
            params=params, doc=doc, command=command,
        )
    )  # fmt: skip
    typer.echo(render_markdown(payload), err=True, nl=False)
    console.info(
        f"bench: {len(payload['runs'])} comparison run(s) in {payload['seconds'] / 60:.1f} min -> "
        f"{out / 'bench_comparisons.json'}, {out / 'BENCHMARK_COMPARE.md'}"
        + (f", {doc}" if doc else "")
    )
