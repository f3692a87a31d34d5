"""`seg4seg audit`: predict → features → discover → gate → reports, in one out folder.

Every step is resumable on its own: predictions of unchanged settings (model checksum, folds, step
size, mirroring) are reused and any change re-predicts every case; feature rows are reused while
their input files and settings are unchanged; discovery is deterministic and cheap, so it always
runs. A rerun of the same command therefore redoes only what changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from seg4seg_cli import atomic, console
from seg4seg_cli.discover import DiscoverOptions, run_discover
from seg4seg_cli.errors import UsageError
from seg4seg_cli.features import FeaturesOptions, FeaturesResult, run_features
from seg4seg_cli.gate import GateRules, Verdict, evaluate_gate
from seg4seg_cli.predict import PredictOptions, PredictResult, run_predict
from seg4seg_cli.report_junit import render_junit
from seg4seg_cli.report_markdown import append_step_summary, render_markdown
from seg4seg_cli.run_record import write_step


@dataclass
class AuditOptions:
    """What `seg4seg audit` was asked to do (flags of the same names)."""

    data: Path
    model: Path | None = None
    out: Path = Path("seg4seg_out")
    predictions: Path | None = None
    metadata: Path | None = None
    method: str = "coherent"
    metric: str = "dice"
    n_slices: int = 5
    min_size: int | None = None
    seed: int = 0
    crossfit_folds: int = 5
    folds: list[str] | None = None
    checkpoint: str = "checkpoint_final.pth"
    device: str = "auto"
    step_size: float = 0.5
    disable_tta: bool = False
    workers: int = 1
    rules: GateRules = field(default_factory=GateRules)
    html: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None


@dataclass
class AuditResult:
    payload: dict
    verdict: Verdict
    seconds: float
    predicted: PredictResult | None
    features: FeaturesResult
    reports: dict[str, Path] = field(default_factory=dict)


def run_audit(options: AuditOptions) -> AuditResult:
    started = time.perf_counter()
    if options.model is None and options.predictions is None:
        raise UsageError(
            "give --model (to predict) or --predictions DIR (predictions made elsewhere)"
        )
    out = Path(options.out)
    predicted = None
    if options.predictions is None:
        console.info("audit 1/3: predicting")
        predicted = run_predict(
            PredictOptions(
                model=options.model, out=out, data=options.data, folds=options.folds,
                checkpoint=options.checkpoint, device=options.device, step_size=options.step_size,
                disable_tta=options.disable_tta, on_settings_change="redo",
            )
        )  # fmt: skip
        console.case_summary(
            "predict",
            predicted.new,
            predicted.reused,
            predicted.skipped,
            predicted.seconds,
            predicted.device,
            out,
            is_result=False,
        )
    console.info("audit 2/3: computing features")
    features = run_features(
        FeaturesOptions(
            data=options.data, out=out, predictions=options.predictions, metadata=options.metadata,
            workers=options.workers,
        )
    )  # fmt: skip
    console.case_summary(
        "features",
        features.new,
        features.reused,
        features.skipped,
        features.seconds,
        "cpu",
        out,
        is_result=False,
    )
    console.info("audit 3/3: discovering subgroups")
    payload = run_discover(
        DiscoverOptions(
            out=out, method=options.method, metric=options.metric, n_slices=options.n_slices,
            min_size=options.min_size, seed=options.seed, folds=options.crossfit_folds,
        )
    )  # fmt: skip
    verdict = evaluate_gate(payload, options.rules)
    seconds = time.perf_counter() - started
    result = AuditResult(payload, verdict, seconds, predicted, features)
    result.reports = write_reports(
        out, payload, verdict, options.rules, seconds, options.html, options.junit, options.markdown
    )
    write_step(
        out / "run.json", "audit", {"verdict": verdict.as_dict(), "seconds": round(seconds, 3)}
    )
    return result


def write_reports(
    out: Path,
    payload: dict,
    verdict: Verdict,
    rules: GateRules,
    seconds: float,
    html: Path | None = None,
    junit: Path | None = None,
    markdown: Path | None = None,
) -> dict[str, Path]:
    """report.html always (or at `html`); JUnit and Markdown when asked; the Markdown is also
    appended to $GITHUB_STEP_SUMMARY when that is set."""
    from seg4seg_cli.report_html import write_html

    written = {"html": write_html(out, html, verdict.as_dict())}
    if junit is not None:
        atomic.write_bytes(junit, render_junit(payload, rules, seconds).encode("utf-8"))
        written["junit"] = Path(junit)
    text = render_markdown(payload, verdict.as_dict())
    if markdown is not None:
        atomic.write_bytes(markdown, text.encode("utf-8"))
        written["markdown"] = Path(markdown)
    append_step_summary(text + "\n")
    return written
