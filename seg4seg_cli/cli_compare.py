"""The `seg4seg compare` command: its flags and output; the work is in compare.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from seg4seg_cli import atomic, console
from seg4seg_cli.cli import (
    EXIT_GATE,
    AlphaOption,
    CheckpointOption,
    CrossfitOption,
    DeviceChoice,
    DeviceOption,
    ExitZeroOption,
    FormatOption,
    JunitOption,
    MetadataOption,
    Method,
    MetricOption,
    MinSizeOption,
    NSlicesOption,
    NumPartsOption,
    OutputFormat,
    PartIdOption,
    ProgressMode,
    ProgressOption,
    QuietOption,
    SeedOption,
    VerboseOption,
    WorkersOption,
    _apply_verbosity,
    _seed,
    app,
    print_verdict,
)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg compare --baseline results/shipped/nnUNetTrainer__nnUNetPlans__2d "
        "--candidate results/new/nnUNetTrainer__nnUNetPlans__2d --data nnUNet_raw/Dataset001_X "
        "--fail-regression 0.05\n\n"
        "  seg4seg compare --baseline-predictions preds_v1/ --candidate MODEL -d DATA -o cmp/\n\n"
        "  seg4seg compare --baseline A --candidate B -d DATA --format markdown --exit-zero"
    )
)
def compare(
    data: Annotated[
        Path,
        typer.Option("--data", "-d", help="nnU-Net raw dataset folder (images and labels)."),
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="The model you ship: results folder, fold_X folder or .pth."
        ),
    ] = None,
    candidate: Annotated[
        Path | None,
        typer.Option("--candidate", help="The model you consider releasing (same forms)."),
    ] = None,
    baseline_predictions: Annotated[
        Path | None,
        typer.Option("--baseline-predictions", help="The baseline's predictions made elsewhere."),
    ] = None,
    candidate_predictions: Annotated[
        Path | None,
        typer.Option("--candidate-predictions", help="The candidate's predictions made elsewhere."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Out folder: baseline/, candidate/, comparison.json."),
    ] = Path("seg4seg_compare"),
    metadata: MetadataOption = None,
    method: Annotated[
        Method, typer.Option("--method", help="Slice-discovery method (one, not all).")
    ] = Method.coherent,
    metric: MetricOption = "dice",
    n_slices: NSlicesOption = 5,
    min_size: MinSizeOption = None,
    seed: SeedOption = None,
    crossfit_folds: CrossfitOption = 5,
    checkpoint: CheckpointOption = "checkpoint_final.pth",
    device: DeviceOption = DeviceChoice.auto,
    workers: WorkersOption = 1,
    num_parts: NumPartsOption = None,
    part_id: PartIdOption = None,
    fail_regression: Annotated[
        float | None,
        typer.Option(
            "--fail-regression",
            help="Gate: fail (exit 1) on a regression with adjusted p < alpha whose mean change "
            "is this much worse or more.",
        ),
    ] = None,
    fail_mean_drop: Annotated[
        float | None,
        typer.Option(
            "--fail-mean-drop",
            help="Gate: fail (exit 1) when the overall mean changes by this much for the worse.",
        ),
    ] = None,
    alpha: AlphaOption = 0.05,
    output_format: FormatOption = OutputFormat.table,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Where to write the HTML report (default OUT/comparison.html)."
        ),
    ] = None,
    junit: JunitOption = None,
    exit_zero: ExitZeroOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Compare a candidate model with the baseline you ship, case by case, and find the
    subgroups where the candidate is systematically worse (regressions) or better.

    Exit codes: 0 pass or not gated, 1 the gate failed (--fail-regression / --fail-mean-drop),
    2 bad input, 3 internal error. A rerun reuses both sides' finished predictions and features.
    """
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli.cases import resolve_part
    from seg4seg_cli.compare import CompareOptions, CompareRules, run_compare, run_compare_part
    from seg4seg_cli.compare_report import (
        render_comparison,
        render_comparison_junit,
        render_comparison_markdown,
    )
    from seg4seg_cli.report_markdown import append_step_summary

    parts, part = resolve_part(num_parts, part_id)  # defaults from a SLURM array
    options = CompareOptions(
            data=data, out=out, baseline=baseline, candidate=candidate,
            baseline_predictions=baseline_predictions, candidate_predictions=candidate_predictions,
            metadata=metadata, method=method.value, metric=metric, n_slices=n_slices,
            min_size=min_size, seed=_seed(seed), folds=crossfit_folds, device=device.value,
            checkpoint=checkpoint, workers=workers,
            rules=CompareRules(fail_regression=fail_regression, fail_mean_drop=fail_mean_drop, alpha=alpha),
            num_parts=parts, part_id=part,
    )  # fmt: skip
    if options.num_parts > 1:  # one part of a sharded comparison: no pairing yet
        run_compare_part(options)
        return
    payload, verdict = run_compare(options)
    markdown = render_comparison_markdown(payload, verdict.as_dict())
    atomic.write_bytes(out / "comparison.md", markdown.encode("utf-8"))
    if junit is not None:
        junit_xml = render_comparison_junit(payload, options.rules)
        atomic.write_bytes(junit, junit_xml.encode("utf-8"))
    append_step_summary(markdown)
    if output_format == OutputFormat.json:
        typer.echo(json.dumps(payload, indent=2))
    elif output_format == OutputFormat.markdown:
        typer.echo(markdown, nl=False)
    else:
        render_comparison(payload)
    print_verdict(verdict, hint="--fail-regression or --fail-mean-drop")
    from seg4seg_cli.compare_html import write_comparison_html

    report = write_comparison_html(out, html)
    console.info(f"comparison: {out / 'comparison.json'}, {out / 'comparison.md'}, {report}")
    if not verdict.passed and not exit_zero:
        raise typer.Exit(EXIT_GATE)
