"""`seg4seg audit` end to end on the real sample model, the CI gate's exit codes, and the Markdown and
JUnit reports."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import PLANTED, SAMPLE, SAMPLE_DATA, SAMPLE_MODEL, make_dataset, sample_test_case_ids

from seg4seg_cli.gate import GateRules, evaluate_gate
from seg4seg_cli.report_junit import render_junit
from seg4seg_cli.report_markdown import render_markdown

JUNIT_XSD = Path(__file__).parent / "data" / "junit.xsd"


def _audit(cli, out, *extra, data=SAMPLE_DATA):
    return cli(
        "audit", "-m", SAMPLE_MODEL, "-d", data, "-o", out, "--device", "cpu",
        "--metadata", SAMPLE / "metadata.csv", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """One audit of the whole sample test set with the gate on; (exit code, out folder, stderr)."""
    from seg4seg_cli import console
    from seg4seg_cli.cli import main

    out = tmp_path_factory.mktemp("audit") / "out"
    junit = out.parent / "junit.xml"
    console.settings.quiet = console.settings.verbose = False
    with pytest.raises(SystemExit) as exit_info:
        main([
            "audit", "-m", str(SAMPLE_MODEL), "-d", str(SAMPLE_DATA), "-o", str(out), "--device", "cpu",
            "--metadata", str(SAMPLE / "metadata.csv"), "--fail-gap", "0.1", "--junit", str(junit),
        ])  # fmt: skip
    return exit_info.value.code, out, junit


def test_audit_finds_the_planted_subgroup_as_rank_1(audited):
    code, out, _ = audited
    payload = json.loads((out / "subgroups.json").read_text())
    top = payload["subgroups"][0]
    precision = sum(c in PLANTED for c in top["case_ids"][:10]) / 10
    assert precision >= 0.8, top
    assert top["p_adjusted"] < 0.05 and top["gap"] >= 0.1


def test_every_significant_subgroup_of_the_demo_has_a_ci_that_excludes_zero(audited):
    _, out, _ = audited
    payload = json.loads((out / "subgroups.json").read_text())
    assert payload["subgroups"]
    for group in payload["subgroups"]:
        assert 0 <= group["stability"] <= 1
        if group["p_adjusted"] < 0.05:
            assert group["gap_ci95"][0] > 0, group
            assert group["n_test"] >= 5  # a p-value needs tested cases behind it


def test_the_top_subgroup_is_stable_across_seeds_and_when_one_case_is_removed(audited, tmp_path):
    """Seeds 0..4 (all 10 pairs) and 5 runs each without one case, against the full run: the
    top subgroup's Jaccard is at least 0.7 in at least 90% of the 15 pairs."""
    import itertools

    import pyarrow.parquet as pq

    from seg4seg_cli.discover import DiscoverOptions, run_discover

    _, out, _ = audited

    def top(folder: Path, seed: int) -> set[str]:
        payload = run_discover(
            DiscoverOptions(out=folder, seed=seed, output=tmp_path / f"{folder.name}-{seed}.json")
        )
        return set(payload["subgroups"][0]["case_ids"]) if payload["subgroups"] else set()

    def jaccard(a: set, b: set) -> float:
        return len(a & b) / len(a | b) if a | b else 1.0

    by_seed = [top(out, seed) for seed in range(5)]
    pairs = [jaccard(a, b) for a, b in itertools.combinations(by_seed, 2)]
    table = pq.read_table(out / "cases.parquet")
    ids = sorted(table.column("case_id").to_pylist())
    for k in range(5):
        left_out = ids[37 * k % len(ids)]
        folder = tmp_path / f"without-{left_out}"
        folder.mkdir()
        keep = [c != left_out for c in table.column("case_id").to_pylist()]
        pq.write_table(table.filter(keep), folder / "cases.parquet")
        shutil.copy(out / "embeddings.parquet", folder / "embeddings.parquet")
        pairs.append(jaccard(by_seed[0], top(folder, 0)))
    assert sum(j >= 0.7 for j in pairs) >= 0.9 * len(pairs), [round(j, 2) for j in pairs]


def test_audit_with_fail_gap_exits_1_and_says_which_rule_tripped(audited):
    code, out, junit = audited
    assert code == 1
    record = json.loads((out / "run.json").read_text())
    verdict = record["steps"]["audit"]["verdict"]
    assert not verdict["passed"] and "--fail-gap 0.1" in verdict["reasons"][0]
    assert (out / "report.html").is_file()
    assert ET.parse(junit).getroot().find("testsuite").get("failures") != "0"


def test_audit_without_the_planted_cases_passes_with_exit_0(cli, tmp_path):
    clean = make_dataset(tmp_path / "raw", [c for c in sample_test_case_ids() if c not in PLANTED])
    result = _audit(cli, tmp_path / "out", "--fail-gap", "0.1", data=clean)
    assert result.code == 0, result.err
    assert "PASS" in result.err


def test_rerun_reuses_predictions_and_features(cli, audited, tmp_path):
    _, out, _ = audited
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    result = _audit(cli, copy, "--exit-zero", "-q")
    assert result.code == 0
    record = json.loads((copy / "run.json").read_text())["steps"]
    assert record["predict"]["cases_done"]  # kept
    assert "FAIL" not in result.err or "subgroup rank" in result.err


def test_quiet_prints_only_the_verdict(cli, audited, tmp_path):
    _, out, _ = audited
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    result = _audit(cli, copy, "-q", "--fail-gap", "0.1")
    assert result.code == 1
    assert result.err.strip().splitlines()[-1].startswith("FAIL: subgroup rank 1")
    assert result.out == ""


def test_bad_input_exits_2(cli, tmp_path):
    result = cli("audit", "-m", tmp_path / "missing", "-d", SAMPLE_DATA, "-o", tmp_path / "out")
    assert result.code == 2 and "does not exist" in result.err


def test_internal_error_exits_3(cli, monkeypatch, tmp_path):
    import seg4seg_cli.audit

    def broken(options):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(seg4seg_cli.audit, "run_audit", broken)
    result = cli("audit", "-m", SAMPLE_MODEL, "-d", SAMPLE_DATA, "-o", tmp_path / "out")
    assert result.code == 3 and "internal error ZeroDivisionError" in result.err


def test_report_renders_an_existing_folder_without_recomputing(cli, audited):
    _, out, _ = audited
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    result = cli("report", out, "--format", "json")
    assert result.code == 0 and json.loads(result.out)["subgroups"]
    markdown = cli("report", out, "--format", "markdown", "--fail-gap", "0.1")
    assert markdown.code == 1 and markdown.out.startswith("# seg4seg audit")
    assert "**❌ FAIL**" in markdown.out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before


def test_without_gate_rules_every_format_says_not_gated_never_pass(cli, audited, tmp_path):
    """The sample's planted subgroup is significant; with no rule the verdict is "not gated"."""
    _, out, _ = audited
    markdown = cli("report", out, "--format", "markdown")
    assert markdown.code == 0 and "**⚪ NOT GATED**: no gate rules given" in markdown.out
    assert "PASS" not in markdown.out
    table = cli("report", out)
    assert table.code == 0 and "NOT GATED: no gate rules given" in table.err
    assert "PASS" not in table.err
    html = cli("report", out, "--format", "html", "--output", tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert html.code == 0 and "Not gated" in text and "Gate passed" not in text
    payload = json.loads((out / "subgroups.json").read_text())
    assert evaluate_gate(payload, GateRules()).as_dict()["status"] == "not gated"
    assert evaluate_gate(payload, GateRules(fail_gap=0.9)).as_dict()["status"] == "pass"


def test_github_step_summary_gets_the_markdown(cli, audited, monkeypatch, tmp_path):
    _, out, _ = audited
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert _audit(cli, copy, "--exit-zero", "-q").code == 0
    assert summary.read_text().startswith("# seg4seg audit")


# ---------------------------------------------------------------------------- renderers


def _payload(n_cases: int = 100, case_id: str = "case") -> dict:
    ids = [f"{case_id}_{i}" for i in range(n_cases)]
    group = {
        "rank": 1, "id": "domino-0", "method": "domino", "size": n_cases // 2, "fraction": 0.5,
        "case_ids": ids[: n_cases // 2], "metric_mean": 0.6, "metric_mean_rest": 0.9, "gap": 0.3,
        "gap_ci95": [0.2, 0.4], "effect_size": 2.0, "p_value": 1e-6, "p_adjusted": 1e-5,
        "n_test": 20, "n_test_rest": 30, "description": "low dice; 90% meta_site=<b>C</b>",
        "rule": None, "merged": [], "top_features": [],
    }  # fmt: skip
    return {
        "schema_version": 1, "method": "domino", "metric": "dice", "higher_is_better": True, "seed": 0,
        "n_cases": n_cases, "min_size": 10, "folds": 5, "n_test": n_cases,
        "overall": {"mean": 0.8, "median": 0.85}, "subgroups": [group],
    }  # fmt: skip


def test_markdown_escapes_untrusted_text():
    payload = _payload(case_id="<script>alert(1)</script>")
    text = render_markdown(payload, evaluate_gate(payload, GateRules(fail_gap=0.1)).as_dict())
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<b>" not in text


def test_markdown_stays_under_1_mib_for_10000_cases():
    payload = _payload(10_000)
    payload["subgroups"] = [
        dict(payload["subgroups"][0], rank=k, id=f"domino-{k}") for k in range(1, 26)
    ]
    text = render_markdown(payload, evaluate_gate(payload, GateRules(fail_gap=0.1)).as_dict())
    assert len(text.encode("utf-8")) < 1 << 20


def test_junit_validates_against_the_junit_schema():
    lxml = pytest.importorskip("lxml.etree", reason="lxml validates the XML schema")
    payload = _payload()
    for rules in (GateRules(), GateRules(fail_gap=0.1, fail_below=0.9)):
        document = lxml.fromstring(render_junit(payload, rules).encode("utf-8"))
        schema = lxml.XMLSchema(lxml.parse(str(JUNIT_XSD)))
        assert schema.validate(document), schema.error_log
    root = ET.fromstring(render_junit(payload, GateRules(fail_gap=0.1, fail_below=0.9)))
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "2"


def test_gate_rules():
    payload = _payload()
    assert evaluate_gate(payload, GateRules()).passed
    assert not evaluate_gate(payload, GateRules(fail_gap=0.25)).passed
    assert evaluate_gate(payload, GateRules(fail_gap=0.35)).passed
    assert evaluate_gate(payload, GateRules(fail_gap=0.25, alpha=1e-6)).passed
    verdict = evaluate_gate(payload, GateRules(fail_below=0.85))
    assert not verdict.passed and "below --fail-below 0.85" in verdict.reasons[0]
    payload["higher_is_better"] = False
    assert evaluate_gate(payload, GateRules(fail_below=0.85)).passed


def test_terminal_table_shows_untrusted_text_literally(cli, tmp_path):
    payload = _payload()
    payload["subgroups"][0]["description"] = "low dice; 90% meta_site=[bold red]C[/bold red]"
    (tmp_path / "subgroups.json").write_text(json.dumps(payload))
    result = cli("report", tmp_path)
    assert result.code == 0
    assert "meta_site=[bold red]C[/bold red]" in result.err
