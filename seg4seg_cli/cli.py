"""The command line: parses arguments, calls one pipeline function per command, renders.

Exit codes: 0 success, 2 bad input or usage, 3 internal error (1 is reserved for the audit gate).
User errors are Seg4SegError subclasses, caught here once and printed as one line.
"""

from __future__ import annotations

import json
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape as rich_escape

from seg4seg_cli import console
from seg4seg_cli.errors import Seg4SegError, UsageError
from seg4seg_cli.provenance import set_command_line
from seg4seg_cli.subgroup_table import render_subgroups

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="seg4seg",
    help="Audit a trained nnU-Net segmentation model: find the subgroups of cases where it fails.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only errors and the result.")
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print details, nnU-Net's output and tracebacks.")
]

# sharding as nnU-Net: part K of N takes sorted(case_ids)[K::N]
NumPartsOption = Annotated[
    int | None,
    typer.Option(
        "--num-parts",
        "-num_parts",
        help="Split the cases into N parts (default: $SLURM_ARRAY_TASK_COUNT or 1).",
    ),
]
PartIdOption = Annotated[
    int | None,
    typer.Option(
        "--part-id",
        "-part_id",
        help="Which part to run, 0..N-1 (default: $SLURM_ARRAY_TASK_ID or 0).",
    ),
]


class ProgressMode(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class DeviceChoice(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


class Method(str, Enum):
    coherent = "coherent"
    domino = "domino"
    spotlight = "spotlight"
    planespot = "planespot"
    kmeans = "kmeans"
    sliceline = "sliceline"
    all = "all"


FoldsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--folds",
        "-f",
        help="Folds to ensemble, e.g. '0,1,2' or 'all' (default: every fold_X present).",
    ),
]
CheckpointOption = Annotated[
    str, typer.Option("--checkpoint", "-chk", help="Checkpoint file name in each fold.")
]
DeviceOption = Annotated[
    DeviceChoice, typer.Option("--device", help="auto (CUDA when available), cuda or cpu.")
]
StepSizeOption = Annotated[
    float,
    typer.Option(
        "--step-size", "-step_size", help="Sliding-window step as a fraction of the patch size."
    ),
]
DisableTtaOption = Annotated[
    bool,
    typer.Option(
        "--disable-tta",
        "--disable_tta",
        help="No test-time mirroring (faster, slightly less accurate).",
    ),
]
MetadataOption = Annotated[
    Path | None,
    typer.Option("--metadata", help="CSV with a case_id column; other columns become meta_*."),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers", "-w", help="Feature worker processes (one case in memory per worker)."
    ),
]
MethodOption = Annotated[
    Method, typer.Option("--method", help="Slice-discovery method, or all of them.")
]
MetricOption = Annotated[
    str,
    typer.Option(
        "--metric", help="Per-case metric column to audit (dice, nsd, hd95_mm, dice__LABEL...)."
    ),
]
NSlicesOption = Annotated[int, typer.Option("--n-slices", help="Slices each method returns.")]
MinSizeOption = Annotated[
    int | None,
    typer.Option("--min-size", help="Smallest subgroup reported (default max(10, 2% of cases))."),
]
SeedOption = Annotated[
    int | None,
    typer.Option("--seed", help="Seed of the split, the methods and the bootstrap (default 0)."),
]
_global_seed = 0  # `seg4seg --seed N COMMAND` sets it; a command's own --seed wins


def _seed(seed: int | None) -> int:
    return _global_seed if seed is None else seed


CrossfitOption = Annotated[
    int,
    typer.Option(
        "--crossfit-folds",
        help="Cross-fitting folds: each case is tested once, by slices found on the other folds.",
    ),
]
HoldoutOption = Annotated[
    float | None,
    typer.Option("--holdout", hidden=True, help="Deprecated: replaced by --crossfit-folds."),
]


def _crossfit_folds(folds: int, holdout: float | None) -> int:
    if holdout is not None:
        console.warn(
            "--holdout is deprecated and ignored: every case is now used, by cross-fitting "
            f"(--crossfit-folds, {folds} folds)"
        )
    return folds


ProgressOption = Annotated[
    ProgressMode,
    typer.Option(
        "--progress",
        help="Progress display: auto (bar on a terminal, periodic lines elsewhere), always, never.",
    ),
]


def _apply_verbosity(quiet: bool, verbose: bool, progress: ProgressMode) -> None:
    """Options may be given before or after the command; either place counts."""
    console.settings.quiet = console.settings.quiet or quiet
    console.settings.verbose = console.settings.verbose or verbose
    if progress != ProgressMode.auto:
        console.settings.progress = progress.value


def _print_version(value: bool) -> None:
    if value:
        from seg4seg_cli.provenance import version_text

        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print versions of seg4seg, nnunetv2, torch and CUDA availability.",
        ),
    ] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
    seed: SeedOption = None,
) -> None:
    global _global_seed
    _apply_verbosity(quiet, verbose, progress)
    _global_seed = 0 if seed is None else seed


def _parse_folds(folds: list[str] | None) -> list[str] | None:
    if not folds:
        return None
    parsed = [f for item in folds for f in item.replace(",", " ").split()]
    for fold in parsed:
        if not (fold.isdigit() or fold == "all"):
            raise UsageError(f"--folds takes fold numbers or 'all', not {fold!r}")
    return parsed


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg predict --model nnUNet_results/Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres "
        "--data nnUNet_raw/Dataset001_X --out audit_X\n\n"
        "  seg4seg predict -m .../fold_0 --images scans/ --out audit_X --device cpu --disable-tta\n\n"
        "  sbatch --array=0-3 ... seg4seg predict -m MODEL -d DATA -o OUT   (parts from SLURM_ARRAY_*)"
    )
)
def predict(
    model: Annotated[
        Path,
        typer.Option(
            "--model",
            "-m",
            help="nnU-Net results folder Trainer__Plans__Config, a fold_X folder, or a .pth file.",
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="nnU-Net raw dataset folder (dataset.json; imagesTs preferred, else imagesTr).",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", "-i", help="Folder of images CASE_XXXX{ending}, instead of --data."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Out folder (predictions/, embeddings.parquet, run.json)."
        ),
    ] = Path("seg4seg_out"),
    folds: FoldsOption = None,
    checkpoint: CheckpointOption = "checkpoint_final.pth",
    device: DeviceOption = DeviceChoice.auto,
    step_size: StepSizeOption = 0.5,
    disable_tta: DisableTtaOption = False,
    save_probabilities: Annotated[
        bool,
        typer.Option("--save-probabilities", help="Also write CASE.npz with class probabilities."),
    ] = False,
    num_parts: NumPartsOption = None,
    part_id: PartIdOption = None,
    trust_checkpoint: Annotated[
        bool,
        typer.Option(
            "--trust-checkpoint",
            help="Allow full unpickling of checkpoints (runs code in them). Only for files you trust.",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Redo every case, even those already predicted in --out."),
    ] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Run an nnU-Net v2 model on a dataset; write predictions, encoder embeddings and run.json.

    Resumable: a rerun into the same --out skips finished cases.

    Sharded like nnU-Net: part K of N takes sorted(case_ids)[K::N].
    """
    _apply_verbosity(quiet, verbose, progress)
    if data is None and images is None:
        raise UsageError("give --data DATASET_DIR (nnU-Net raw layout) or --images DIR")
    from seg4seg_cli.predict import PredictOptions, run_predict

    result = run_predict(
        PredictOptions(
            model=model,
            out=out,
            data=data,
            images=images,
            folds=_parse_folds(folds),
            checkpoint=checkpoint,
            device=device.value,
            step_size=step_size,
            disable_tta=disable_tta,
            save_probabilities=save_probabilities,
            num_parts=num_parts,
            part_id=part_id,
            trust_checkpoint=trust_checkpoint,
            overwrite=overwrite,
        )
    )
    console.case_summary(
        "predict", result.new, result.reused, result.skipped, result.seconds, result.device, out
    )
    if not result.done:
        console.error("no case could be processed; the reasons are listed above")
        raise typer.Exit(EXIT_INPUT)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg features --data nnUNet_raw/Dataset001_X --out audit_X   (predictions from seg4seg predict)\n\n"
        "  seg4seg features -d nnUNet_raw/Dataset001_X --predictions my_preds/ -o audit_X --metadata sites.csv\n\n"
        "  seg4seg features -d DATA -o OUT --workers 8 --nsd-tol-mm 2.0"
    )
)
def features(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="nnU-Net raw dataset folder: dataset.json (labels), images and labelsTs/labelsTr.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Out folder; cases.parquet is written here.")
    ] = Path("seg4seg_out"),
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            "-p",
            help="Folder of predictions CASE{ending} from any tool (default: OUT/predictions).",
        ),
    ] = None,
    metadata: MetadataOption = None,
    nsd_tol_mm: Annotated[
        float, typer.Option("--nsd-tol-mm", help="Tolerance of the normalised surface Dice, in mm.")
    ] = 1.0,
    workers: WorkersOption = 1,
    num_parts: NumPartsOption = None,
    part_id: PartIdOption = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Recompute every case, even unchanged ones.")
    ] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Compute per-case error, uncertainty, image and metadata features into cases.parquet.

    Needs no model: predictions from any tool work. Resumable: unchanged cases are reused.
    """
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli.features import FeaturesOptions, run_features

    result = run_features(
        FeaturesOptions(
            data=data,
            out=out,
            predictions=predictions,
            metadata=metadata,
            nsd_tol_mm=nsd_tol_mm,
            workers=workers,
            num_parts=num_parts,
            part_id=part_id,
            overwrite=overwrite,
        )
    )
    if result.metadata_missing:
        console.warn(
            f"metadata: {len(result.metadata_missing)} case(s) have no row in {metadata}: {_some(result.metadata_missing)}"
        )
    if result.metadata_extra:
        console.warn(
            f"metadata: {len(result.metadata_extra)} row(s) in {metadata} match no case: {_some(result.metadata_extra)}"
        )
    console.case_summary(
        "features", result.new, result.reused, result.skipped, result.seconds, "cpu", out
    )
    if not result.done:
        console.error("no case could be processed; the reasons are listed above")
        raise typer.Exit(EXIT_INPUT)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg discover audit_X                       (the default, coherent, on Dice)\n\n"
        "  seg4seg discover audit_X --method all --metric hd95_mm --seed 1\n\n"
        "  seg4seg discover audit_X --method sliceline --min-size 20\n\n"
        "  seg4seg discover audit_X --crossfit-folds 10   (more fits, each on 90% of the cases)"
    )
)
def discover(
    out: Annotated[
        Path, typer.Argument(help="Out folder holding cases.parquet (and embeddings.parquet).")
    ],
    method: MethodOption = Method.coherent,
    metric: MetricOption = "dice",
    n_slices: NSlicesOption = 5,
    min_size: MinSizeOption = None,
    seed: SeedOption = None,
    crossfit_folds: CrossfitOption = 5,
    holdout: HoldoutOption = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (stderr) or json (subgroups.json on stdout).")
    ] = "table",
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Find subgroups of cases where the model fails systematically; write subgroups.json.

    Cross-fitted: slices are found on all cases and, per fold, on the other folds; each case is
    tested once by the matching slice of the fit that did not see it, so every case is used and
    the p-values are honest. Each subgroup's stability is the share of fold fits it reappears in.
    """
    _apply_verbosity(quiet, verbose, progress)
    if output_format not in ("table", "json"):
        raise UsageError(f"--format must be table or json, not {output_format!r}")
    from seg4seg_cli.discover import DiscoverOptions, run_discover

    payload = run_discover(
        DiscoverOptions(
            out=out,
            method=method.value,
            metric=metric,
            n_slices=n_slices,
            min_size=min_size,
            seed=_seed(seed),
            folds=_crossfit_folds(crossfit_folds, holdout),
        )
    )
    if output_format == "json":
        typer.echo(json.dumps(payload, indent=2))
    else:
        render_subgroups(payload)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"
    junit = "junit"


FailGapOption = Annotated[
    float | None,
    typer.Option(
        "--fail-gap",
        help="Gate: fail (exit 1) on a subgroup with adjusted p < alpha that is worse by at least this much.",
    ),
]
FailBelowOption = Annotated[
    float | None,
    typer.Option(
        "--fail-below", help="Gate: fail (exit 1) when the overall mean metric is worse than this."
    ),
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", help="Significance level of the gate (on adjusted p-values).")
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table (stderr), json or markdown (stdout).")
]
JunitOption = Annotated[
    Path | None, typer.Option("--junit", help="Write the gate as JUnit XML here.")
]
ExitZeroOption = Annotated[
    bool, typer.Option("--exit-zero", help="Report, but exit 0 even when the gate fails.")
]


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg audit --model nnUNet_results/Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres "
        "--data nnUNet_raw/Dataset001_X\n\n"
        "  seg4seg audit -m MODEL -d DATA --fail-gap 0.10 --junit audit.xml   (CI release gate: exit 1 on failure)\n\n"
        "  seg4seg audit -d DATA --predictions my_preds/ --metadata sites.csv --method all --format markdown"
    )
)
def audit(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="nnU-Net raw dataset folder (dataset.json, images, labels)."
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="nnU-Net results folder, fold_X folder or .pth (not needed with --predictions).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Out folder for everything.")] = Path(
        "seg4seg_out"
    ),
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions", "-p", help="Existing predictions CASE{ending}; skips inference."
        ),
    ] = None,
    metadata: MetadataOption = None,
    method: MethodOption = Method.coherent,
    metric: MetricOption = "dice",
    n_slices: NSlicesOption = 5,
    min_size: MinSizeOption = None,
    seed: SeedOption = None,
    crossfit_folds: CrossfitOption = 5,
    holdout: HoldoutOption = None,
    folds: FoldsOption = None,
    checkpoint: CheckpointOption = "checkpoint_final.pth",
    device: DeviceOption = DeviceChoice.auto,
    step_size: StepSizeOption = 0.5,
    disable_tta: DisableTtaOption = False,
    workers: WorkersOption = 1,
    fail_gap: FailGapOption = None,
    fail_below: FailBelowOption = None,
    alpha: AlphaOption = 0.05,
    output_format: FormatOption = OutputFormat.table,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Where to write the HTML report (default OUT/report.html)."),
    ] = None,
    junit: JunitOption = None,
    exit_zero: ExitZeroOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Audit a model in one command: predict, compute features, find failure subgroups, report.

    Exit codes: 0 pass, 1 the gate failed (--fail-gap / --fail-below), 2 bad input, 3 internal error.
    Rerunning the same command reuses every finished step whose inputs are unchanged.
    """
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli.audit import AuditOptions, run_audit
    from seg4seg_cli.gate import GateRules

    result = run_audit(
        AuditOptions(
            data=data, model=model, out=out, predictions=predictions, metadata=metadata,
            method=method.value, metric=metric, n_slices=n_slices, min_size=min_size, seed=_seed(seed),
            crossfit_folds=_crossfit_folds(crossfit_folds, holdout), folds=_parse_folds(folds), checkpoint=checkpoint, device=device.value,
            step_size=step_size, disable_tta=disable_tta, workers=workers,
            rules=GateRules(fail_gap=fail_gap, fail_below=fail_below, alpha=alpha), html=html, junit=junit,
            markdown=out / "report.md" if output_format == OutputFormat.markdown else None,
        )
    )  # fmt: skip
    _render_result(result.payload, result.verdict, output_format.value)
    console.info(f"report: {result.reports['html']}" + (f", JUnit: {junit}" if junit else ""))
    if not result.verdict.passed and not exit_zero:
        raise typer.Exit(EXIT_GATE)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg report audit_X                        (table on the terminal)\n\n"
        "  seg4seg report audit_X --format html --output report.html\n\n"
        "  seg4seg report audit_X --format junit --fail-gap 0.1 --output junit.xml"
    )
)
def report(
    out: Annotated[Path, typer.Argument(help="Out folder holding subgroups.json.")],
    output_format: Annotated[
        ReportFormat, typer.Option("--format", help="table, json, markdown, html or junit.")
    ] = ReportFormat.table,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="File to write (default: stdout; OUT/report.html for html)."),
    ] = None,
    fail_gap: FailGapOption = None,
    fail_below: FailBelowOption = None,
    alpha: AlphaOption = 0.05,
    exit_zero: ExitZeroOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Render an existing out folder's subgroups.json again, without recomputing anything."""
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli import atomic
    from seg4seg_cli.errors import DataError
    from seg4seg_cli.gate import GateRules, evaluate_gate

    path = out / "subgroups.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(
            f"{path} does not exist; run seg4seg discover or audit into {out} first"
        ) from exc
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); rerun seg4seg discover") from exc
    rules = GateRules(fail_gap=fail_gap, fail_below=fail_below, alpha=alpha)
    verdict = evaluate_gate(payload, rules)
    kind = output_format.value
    if kind == "html":
        from seg4seg_cli.report_html import write_html

        console.info(f"report: {write_html(out, output, verdict.as_dict())}")
    elif kind in ("junit", "markdown") or (kind == "json" and output is not None):
        if kind == "junit":
            from seg4seg_cli.report_junit import render_junit

            text = render_junit(payload, rules)
        elif kind == "markdown":
            from seg4seg_cli.report_markdown import render_markdown

            text = render_markdown(payload, verdict.as_dict())
        else:
            text = json.dumps(payload, indent=2) + "\n"
        if output is None:
            typer.echo(text, nl=False)
        else:
            atomic.write_bytes(output, text.encode("utf-8"))
    else:
        _render_result(payload, verdict, kind)
    if not verdict.passed and not exit_zero:
        raise typer.Exit(EXIT_GATE)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  seg4seg merge audit_X      (after every part of predict/features --num-parts N has run)\n\n"
        "  seg4seg merge compare_X    (a compare out folder: merges baseline/ and candidate/)"
    )
)
def merge(
    out: Annotated[Path, typer.Argument(help="Out folder whose shards/ holds the part files.")],
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    progress: ProgressOption = ProgressMode.auto,
) -> None:
    """Combine the parts of a sharded run into cases.parquet and embeddings.parquet.

    Checks that every part is present and every case occurs exactly once.
    """
    _apply_verbosity(quiet, verbose, progress)
    from seg4seg_cli.merge import run_merge

    # a compare out folder holds one sharded audit folder per model: merge each
    sides = [out / side for side in ("baseline", "candidate") if (out / side / "shards").is_dir()]
    for folder in sides if not (out / "shards").is_dir() and sides else [out]:
        result = run_merge(folder)
        console.console.print(
            f"merge: {result.num_parts} part(s), {result.n_cases} case rows, {result.n_embeddings} embeddings, "
            f"{len(result.skipped)} case(s) skipped by the parts -> {folder}",
            markup=False,
        )


@app.command(
    "slurm-script",
    epilog=(
        "Examples:\n\n"
        "  seg4seg slurm-script -m MODEL -d DATA -o /scratch/audit_X --num-parts 8 > audit.sh && bash audit.sh\n\n"
        "  seg4seg slurm-script -m MODEL -d DATA -o OUT --partition gpu --time 02:00:00 --mem 64G"
    ),
)
def slurm_script(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="nnU-Net results folder, fold_X folder or .pth.")
    ],
    data: Annotated[Path, typer.Option("--data", "-d", help="nnU-Net raw dataset folder.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Out folder on a file system every node sees.")
    ] = Path("seg4seg_out"),
    num_parts: Annotated[
        int, typer.Option("--num-parts", help="Array tasks, one part of the cases each.")
    ] = 4,
    metadata: MetadataOption = None,
    method: MethodOption = Method.coherent,
    metric: MetricOption = "dice",
    seed: SeedOption = None,
    cpus_per_task: Annotated[
        int, typer.Option("--cpus-per-task", help="CPUs per array task (feature workers).")
    ] = 8,
    mem: Annotated[str, typer.Option("--mem", help="Memory per job (sbatch --mem).")] = "32G",
    time_limit: Annotated[
        str, typer.Option("--time", help="Time limit per job (sbatch --time).")
    ] = "04:00:00",
    gpus_per_task: Annotated[
        int, typer.Option("--gpus-per-task", help="GPUs per array task (0: CPU only).")
    ] = 1,
    partition: Annotated[str | None, typer.Option("--partition", help="SLURM partition.")] = None,
) -> None:
    """Print an sbatch script: a GPU array job for predict+features per part, then a dependent
    merge+discover+report job."""
    from seg4seg_cli.slurm_script import SlurmOptions, render_slurm_script

    if num_parts < 1:
        raise UsageError(f"--num-parts must be at least 1, got {num_parts}")
    typer.echo(
        render_slurm_script(
            SlurmOptions(
                model=model, data=data, out=out, num_parts=num_parts, method=method.value, metric=metric,
                seed=_seed(seed), metadata=metadata, cpus_per_task=cpus_per_task, mem=mem, time=time_limit,
                gpus_per_task=gpus_per_task, partition=partition,
            )
        ),
        nl=False,
    )  # fmt: skip


def _render_result(payload: dict, verdict, output_format: str) -> None:
    """json/markdown to stdout; the table and the verdict line to stderr."""
    if output_format == "json":
        typer.echo(json.dumps(payload, indent=2))
    elif output_format == "markdown":
        from seg4seg_cli.report_markdown import render_markdown

        typer.echo(render_markdown(payload, verdict.as_dict()), nl=False)
    elif not console.settings.quiet:
        render_subgroups(payload)
    print_verdict(verdict)


def print_verdict(verdict, hint: str = "--fail-gap or --fail-below") -> None:
    """The verdict line on stderr, coloured by PASS, FAIL or NOT GATED."""
    from seg4seg_cli.gate import FAIL, NOT_GATED, PASS, verdict_line

    style = {PASS: "bold green", FAIL: "bold red", NOT_GATED: "bold yellow"}[verdict.status]
    line = verdict_line(verdict.as_dict(), hint)
    console.console.print(f"[{style}]{rich_escape(line)}[/{style}]")


def _some(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `seg4seg` script: runs the app and maps errors to exit codes."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    set_command_line(args)
    try:
        code = command.main(args=args, prog_name="seg4seg", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        console.error("aborted")
        code = 130
    except typer.TyperException as exc:  # usage errors of the argument parser
        show = getattr(exc, "show", None)
        if show is not None:
            show(file=sys.stderr)
        else:
            console.error(str(exc))
        code = EXIT_INPUT
    except Seg4SegError as exc:
        console.error(str(exc))
        code = EXIT_INPUT
    except KeyboardInterrupt:
        console.error("interrupted; finished cases are kept, rerun the same command to resume")
        code = 130
    except Exception as exc:  # a bug: say so, and how to report it
        if console.settings.verbose:
            traceback.print_exc()
        console.error(
            f"internal error {type(exc).__name__}: {exc} (rerun with -v for the traceback and "
            "report it with seg4seg --version)"
        )
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else EXIT_OK)


# commands in modules of their own register themselves on `app` when imported
from seg4seg_cli import cli_bench, cli_compare  # noqa: E402, F401
