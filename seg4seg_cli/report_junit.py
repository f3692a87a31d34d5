"""The gate as JUnit XML for Jenkins and GitLab: one test case per gate check.

Checks: the overall metric (with --fail-below) and one per reported subgroup; a subgroup that
trips the gate is a <failure> carrying its statistics, the others pass.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from seg4seg_cli.gate import GateRules, subgroup_fails


def render_junit(payload: dict, rules: GateRules, seconds: float = 0.0) -> str:
    metric = payload["metric"]
    suite = ET.Element("testsuite", name="seg4seg audit", timestamp="", hostname="seg4seg")
    cases = []

    overall = ET.Element(
        "testcase", classname="seg4seg.overall", name=f"overall mean {metric}", time="0"
    )
    mean = payload["overall"]["mean"]
    if rules.fail_below is None:
        ET.SubElement(overall, "skipped", message="no --fail-below given")
    else:
        higher = payload.get("higher_is_better", True)
        if (mean < rules.fail_below) if higher else (mean > rules.fail_below):
            failure = ET.SubElement(
                overall,
                "failure",
                message=f"overall mean {metric} {mean} is worse than {rules.fail_below}",
                type="OverallMetric",
            )
            failure.text = (
                f"mean={mean} median={payload['overall']['median']} n_cases={payload['n_cases']}"
            )
    cases.append(overall)

    min_size = payload.get("min_size", 0)
    for group in payload["subgroups"]:
        case = ET.Element(
            "testcase",
            classname=f"seg4seg.subgroup.{group['method']}",
            name=f"rank {group['rank']}: {group['id']} ({group['size']} cases)",
            time="0",
        )
        if subgroup_fails(group, rules, min_size):
            failure = ET.SubElement(
                case,
                "failure",
                message=f"{metric} worse by {group['gap']} inside (adjusted p {group['p_adjusted']})",
                type="FailureSubgroup",
            )
            failure.text = "\n".join(
                [
                    f"description: {group['description']}",
                    f"size: {group['size']} ({group['fraction']})",
                    f"{metric} inside: {group['metric_mean']}, rest: {group['metric_mean_rest']}",
                    f"gap: {group['gap']} 95% CI {group['gap_ci95']}",
                    f"effect size: {group['effect_size']}",
                    f"p: {group['p_value']}, adjusted: {group['p_adjusted']}",
                    "cases: "
                    + ", ".join(group["case_ids"][:20])
                    + (" ..." if len(group["case_ids"]) > 20 else ""),
                ]
            )
        elif rules.fail_gap is None:
            ET.SubElement(case, "skipped", message="no --fail-gap given")
        cases.append(case)

    suite.extend(cases)
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    suite.set("time", f"{seconds:.3f}")
    suite.attrib.pop("timestamp")
    root = ET.Element("testsuites", name="seg4seg")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
