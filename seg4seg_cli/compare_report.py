"""comparison.json for people: the terminal table (stderr) and Markdown (CI step summaries)."""

from __future__ import annotations

from seg4seg_cli import console
from seg4seg_cli.report_markdown import MAX_CASES_LISTED, escape_markdown, verdict_markdown


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def overall_line(payload: dict) -> str:
    overall = payload["overall"]
    return (
        f"{payload['metric']}: baseline {_number(overall['baseline_mean'])}, candidate "
        f"{_number(overall['candidate_mean'])} over {payload['n_cases']} paired cases; change "
        f"{overall['mean_change']:+.3f} {_ci(overall['mean_change_ci95'])} (p {_p(overall['p_value'])}); "
        f"{overall['improved']:.0%} improved, {overall['worsened']:.0%} worsened"
    )


def _kind(group: dict) -> str:
    return f"regression ({group['mode']})" if group["direction"] == "regression" else "improvement"


def render_comparison(payload: dict) -> None:
    """The overall line and one row per subgroup, regressions first."""
    from rich.table import Table
    from rich.text import Text

    console.console.print(overall_line(payload), markup=False)
    groups = payload["subgroups"]
    console.console.print(
        f"{sum(g['direction'] == 'regression' for g in groups)} regression(s) and "
        f"{sum(g['direction'] == 'improvement' for g in groups)} improvement(s) by "
        f"{payload['method']}",
        markup=False,
    )
    if not groups or console.settings.quiet:
        return
    table = Table(show_lines=False)
    for column in ("rank", "kind", "size", "baseline", "candidate", "change [95% CI]", "p adj"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    table.add_column("stable", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for group in groups:
        table.add_row(
            str(group["rank"]),
            _kind(group),
            str(group["size"]),
            _number(group["baseline_mean"]),
            _number(group["candidate_mean"]),
            f"{group['mean_change']:+.3f} {_ci(group['mean_change_ci95'])}",
            _p(group["p_adjusted"]),
            "–" if group["stability"] is None else f"{group['stability']:.0%}",
            Text(console.printable(group["description"])),  # untrusted: never rich markup
        )
    console.console.print(table)


def render_comparison_markdown(payload: dict, verdict: dict | None) -> str:
    metric = escape_markdown(payload["metric"])
    lines = ["# seg4seg compare", ""]
    if verdict is not None:
        lines += [verdict_markdown(verdict, hint="--fail-regression or --fail-mean-drop"), ""]
    lines += [escape_markdown(overall_line(payload)), ""]
    left = payload["left_out"]
    n_left = len(left["only_baseline"]) + len(left["only_candidate"]) + len(left["no_metric"])
    if n_left:
        lines += [f"{n_left} case(s) left out (on one side only, or without a {metric} value).", ""]
    if payload["subgroups"]:
        lines.append(
            f"| rank | kind | size | baseline {metric} | candidate {metric} | change [95% CI] "
            "| adj. p | stability | description |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for group in payload["subgroups"]:
            stability = "–" if group["stability"] is None else f"{group['stability']:.0%}"
            lines.append(
                f"| {group['rank']} | {_kind(group)} | {group['size']} | "
                f"{_number(group['baseline_mean'])} | {_number(group['candidate_mean'])} | "
                f"{group['mean_change']:+.3f} {_ci(group['mean_change_ci95'])} | "
                f"{_p(group['p_adjusted'])} | {stability} | "
                f"{escape_markdown(group['description'])} |"
            )
        lines.append("")
        for group in payload["subgroups"]:
            shown = ", ".join(escape_markdown(c) for c in group["case_ids"][:MAX_CASES_LISTED])
            more = len(group["case_ids"]) - MAX_CASES_LISTED
            lines.append(
                f"- rank {group['rank']}: {shown}" + (f" (+{more} more)" if more > 0 else "")
            )
    else:
        lines.append("No subgroup changed systematically.")
    return "\n".join(lines) + "\n"


def render_comparison_junit(payload: dict, rules) -> str:
    """The compare gate as JUnit XML: the overall mean change and one test case per regression;
    a regression that trips --fail-regression is a <failure> with its statistics."""
    import xml.etree.ElementTree as ET

    from seg4seg_cli.compare import significant

    metric = payload["metric"]
    suite = ET.Element("testsuite", name="seg4seg compare", hostname="seg4seg")
    overall = ET.SubElement(
        suite, "testcase", classname="seg4seg.compare.overall", name=f"mean {metric} change"
    )
    change = payload["overall"]["mean_change"]
    if rules.fail_mean_drop is None:
        ET.SubElement(overall, "skipped", message="no --fail-mean-drop given")
    elif change <= -rules.fail_mean_drop:
        failure = ET.SubElement(
            overall,
            "failure",
            type="MeanDrop",
            message=f"mean {metric} change {change} <= -{rules.fail_mean_drop}",
        )
        failure.text = overall_line(payload)
    for group in payload["subgroups"]:
        if group["direction"] != "regression":
            continue
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"seg4seg.compare.regression.{group['method']}",
            name=f"rank {group['rank']}: {group['id']} ({group['size']} cases, {group['mode']})",
        )
        if rules.fail_regression is None:
            ET.SubElement(case, "skipped", message="no --fail-regression given")
        elif significant(group, rules.alpha) and group["mean_change"] <= -rules.fail_regression:
            failure = ET.SubElement(
                case,
                "failure",
                type="Regression",
                message=(
                    f"{metric} changes by {group['mean_change']} inside (adjusted p "
                    f"{group['p_adjusted']})"
                ),
            )
            failure.text = "\n".join(
                [
                    f"description: {group['description']}",
                    f"baseline {group['baseline_mean']}, candidate {group['candidate_mean']}",
                    f"change {group['mean_change']} 95% CI {group['mean_change_ci95']}",
                    "cases: " + ", ".join(group["case_ids"][:20]),
                ]
            )
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    root = ET.Element("testsuites", name="seg4seg")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
