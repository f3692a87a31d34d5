"""`seg4seg compare` on the real sample model: paired statistics against scipy, a planted
regression found and gated, identical models silent, mismatched case sets, bad input, resume."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ENDING, SAMPLE_DATA, SAMPLE_MODEL, make_dataset, sample_test_case_ids
from scipy import ndimage, stats

from seg4seg_cli.statistics import paired_statistics


@pytest.mark.parametrize("seed", range(4))
def test_paired_statistics_match_scipys_paired_t_test(seed):
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(0.5, 1.0, 12 + 7 * seed)
    candidate = np.clip(baseline + rng.normal(-0.03 * seed, 0.08, baseline.size), 0, 1)
    ours = paired_statistics(candidate - baseline)
    reference = stats.ttest_rel(candidate, baseline)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-15)
    interval = reference.confidence_interval(0.95)
    assert ours.ci95 == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert ours.mean == pytest.approx(np.mean(candidate - baseline))
    # p < 0.05 exactly when the interval excludes 0
    assert (ours.p_value < 0.05) == (ours.ci95[0] > 0 or ours.ci95[1] < 0)


def test_compare_gives_coherent_its_own_defaults_under_the_users_params():
    from seg4seg_cli.compare import COHERENT_DEFAULTS, CompareOptions, slicer_params

    options = CompareOptions(data=SAMPLE_DATA)
    # the settings the comparison bench was run with, whatever discover's default becomes
    assert slicer_params(options) == COHERENT_DEFAULTS == {
        "n_pca_components": 16, "coherence": "silhouette", "order": "prob_near", "near_k": 5,
        "predictor": "linear",
    }  # fmt: skip
    options.params = {"n_pca_components": 8, "C": 0.3}
    assert slicer_params(options) == {
        "n_pca_components": 8, "C": 0.3, "coherence": "silhouette", "order": "prob_near",
        "near_k": 5, "predictor": "linear",
    }  # fmt: skip
    options.method, options.params = "domino", None
    assert slicer_params(options) is None  # other methods keep their own defaults


def test_compare_keeps_the_representation_its_bench_ran_with(cli, sample_run):
    """Both models' mean-pooled bottlenecks side by side (not every stage's mean and maximum,
    which discover uses), and no image-quality columns in what the slicer sees."""
    from seg4seg_cli.compare import LEFT_OUT_COLUMNS, Side, _pair
    from seg4seg_cli.discover import load_out_folder
    from seg4seg_cli.image_quality import QUALITY_FEATURES

    assert cli("features", "-d", SAMPLE_DATA, "-o", sample_run).code == 0
    sides = {n: Side(n, sample_run, "model") for n in ("baseline", "candidate")}
    paired = _pair(sides, "dice")
    _, everything, _ = load_out_folder(sample_run)
    _, bottleneck, _ = load_out_folder(sample_run, bottleneck_only=True)
    assert everything.shape[1] == 240 and bottleneck.shape[1] == 64
    np.testing.assert_array_equal(paired.embeddings, np.hstack([bottleneck, bottleneck]))
    assert set(LEFT_OUT_COLUMNS) == set(QUALITY_FEATURES) <= set(paired.features.columns)


def test_paired_statistics_without_a_test():
    assert paired_statistics(np.array([-0.5, -0.4, -0.6])).p_value == 1.0  # too few cases
    unchanged = paired_statistics(np.zeros(30))
    assert unchanged.mean == 0 and unchanged.p_value == 1.0


def _brightest(case_ids: list[str], share: float = 0.15) -> set[str]:
    """The cases whose image is brightest on average: an input property, like a scanner."""
    means = {
        c: float(sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DATA / "imagesTs" / f"{c}_0000{ENDING}"))).mean())
        for c in case_ids
    }  # fmt: skip
    return set(sorted(means, key=means.get, reverse=True)[: int(share * len(case_ids))])


@pytest.fixture(scope="module")
def planted(sample_run, tmp_path_factory):
    """Candidate predictions: the sample model's, eroded by 2 px on the brightest 15% of cases
    (a regression on one group); the baseline's are the sample model's own."""
    root = tmp_path_factory.mktemp("compare")
    candidate = root / "candidate_predictions"
    candidate.mkdir()
    group = _brightest(sample_test_case_ids())
    for path in sorted((sample_run / "predictions").glob(f"*{ENDING}")):
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        if path.name[: -len(ENDING)] in group:
            array = np.where(ndimage.binary_erosion(array > 0, iterations=2), array, 0)
        eroded = sitk.GetImageFromArray(array.astype(sitk.GetArrayFromImage(image).dtype))
        eroded.CopyInformation(image)
        sitk.WriteImage(eroded, str(candidate / path.name), True)
    return sample_run / "predictions", candidate, group, root


def _compare(cli, out, baseline, candidate, *extra, data=SAMPLE_DATA):
    return cli(
        "compare", "--baseline-predictions", baseline, "--candidate-predictions", candidate,
        "--data", data, "--out", out, "--progress", "never", *extra,
    )  # fmt: skip


def test_a_planted_regression_is_found_first_and_fails_the_gate(cli, planted):
    baseline, candidate, group, root = planted
    out = root / "out"
    result = _compare(cli, out, baseline, candidate, "--fail-regression", "0.05")
    assert result.code == 1, result.err
    assert "FAIL: regression rank 1" in result.err
    payload = json.loads((out / "comparison.json").read_text())
    top = payload["subgroups"][0]
    assert top["direction"] == "regression" and top["mode"] == "new"
    assert sum(c in group for c in top["case_ids"][:10]) >= 8  # P@10 >= 0.8
    assert top["p_adjusted"] < 0.05 and top["mean_change_ci95"][1] < 0
    assert payload["overall"]["worsened"] == pytest.approx(len(group) / 200, abs=0.03)
    assert payload["verdict"]["status"] == "fail"
    # the same comparison with --exit-zero reports but exits 0, reusing both sides' features
    again = _compare(cli, out, baseline, candidate, "--fail-regression", "0.05", "--exit-zero")
    assert again.code == 0 and again.err.count("reusing them") == 2
    markdown = (out / "comparison.md").read_text()
    assert markdown.startswith("# seg4seg compare") and "**❌ FAIL**" in markdown


def test_the_html_report_loads_offline_with_both_models_contours(cli, planted, tmp_path):
    from test_report_html import load_in_chromium

    baseline, candidate, _, root = planted
    out = root / "out_html"
    junit = tmp_path / "compare.xml"
    result = _compare(cli, out, baseline, candidate, "--fail-regression", "0.05", "--junit", junit)
    assert result.code == 1
    page = out / "comparison.html"
    text = page.read_text(encoding="utf-8")
    assert "Gate failed" in text and "a new failure mode" in text
    # per regression case shown: a baseline and a candidate tile
    assert (
        text.count(": baseline contours and error map")
        == text.count(": candidate contours and error map")
        >= 4
    )
    failures = ET.parse(junit).getroot().find("testsuite").get("failures")
    assert failures == "1"
    load = load_in_chromium(page, tmp_path / "comparison.png")
    page_url = page.resolve().as_uri()
    assert [u for u in load.requests if u != page_url and not u.startswith("data:")] == []
    assert load.failed == [] and load.console_errors == []
    assert len(load.images) == text.count("<img ")
    assert all(i["complete"] and i["width"] > 0 for i in load.images)


def test_without_rules_the_comparison_is_not_gated(cli, planted):
    baseline, candidate, _, root = planted
    result = _compare(cli, root / "out_free", baseline, candidate, "--format", "markdown")
    assert result.code == 0 and "**⚪ NOT GATED**" in result.out and "PASS" not in result.out


def test_a_candidate_identical_to_the_baseline_changes_nothing(cli, planted, tmp_path):
    baseline, _, _, _ = planted
    result = _compare(cli, tmp_path / "out", baseline, baseline, "--fail-regression", "0.05")
    assert result.code == 0, result.err
    payload = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert payload["overall"]["mean_change"] == 0 and payload["overall"]["unchanged"] == 1
    assert payload["subgroups"] == []
    assert "PASS: no gate rule tripped" in result.err


def test_mismatched_case_sets_are_named_and_the_intersection_compared(cli, planted, tmp_path):
    baseline, candidate, _, _ = planted
    partial = tmp_path / "partial"
    shutil.copytree(candidate, partial)
    dropped = sorted(p.name[: -len(ENDING)] for p in partial.glob(f"*{ENDING}"))[:3]
    for case_id in dropped:
        (partial / f"{case_id}{ENDING}").unlink()
    result = _compare(cli, tmp_path / "out", baseline, partial)
    assert result.code == 0, result.err
    payload = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert payload["n_cases"] == 197
    assert payload["left_out"]["only_baseline"] == dropped
    assert sorted(payload["left_out"]["skipped"]["candidate"]) == dropped
    assert all(case_id in result.err for case_id in dropped)


def test_bad_input_on_either_side_exits_2_with_one_line(cli, planted, tmp_path):
    baseline, _, _, _ = planted
    neither = cli("compare", "--baseline-predictions", baseline, "-d", SAMPLE_DATA, "-o", tmp_path)
    assert neither.code == 2 and "--candidate MODEL or --candidate-predictions" in neither.err
    missing = cli(
        "compare", "--baseline-predictions", baseline, "--candidate", tmp_path / "nope",
        "-d", SAMPLE_DATA, "-o", tmp_path / "out",
    )  # fmt: skip
    assert missing.code == 2 and len(missing.err.strip().splitlines()[-1]) > 0
    assert "nope" in missing.err
    both = cli(
        "compare", "--baseline", SAMPLE_MODEL, "--baseline-predictions", baseline,
        "--candidate-predictions", baseline, "-d", SAMPLE_DATA, "-o", tmp_path / "out2",
    )  # fmt: skip
    assert both.code == 2 and "got both" in both.err


def test_the_sample_model_compared_with_itself_reports_no_regression(cli, tmp_path):
    """Both sides predicted by the real model (on a third of the sample, for time)."""
    cases = sample_test_case_ids()[::3]
    data = make_dataset(tmp_path / "raw", cases)
    result = cli(
        "compare", "--baseline", SAMPLE_MODEL, "--candidate", SAMPLE_MODEL, "--data", data,
        "--out", tmp_path / "out", "--device", "cpu", "--fail-regression", "0.05",
        "--progress", "never",
    )  # fmt: skip
    assert result.code == 0, result.err
    payload = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert payload["n_cases"] == len(cases) and payload["subgroups"] == []
    for side in ("baseline", "candidate"):
        assert (tmp_path / "out" / side / "embeddings.parquet").is_file()
        assert len(list((tmp_path / "out" / side / "predictions").glob(f"*{ENDING}"))) == len(cases)
    # a rerun (as after a crash) redoes nothing that was finished, on either side
    again = cli(
        "compare", "--baseline", SAMPLE_MODEL, "--candidate", SAMPLE_MODEL, "--data", data,
        "--out", tmp_path / "out", "--device", "cpu", "--progress", "never",
    )  # fmt: skip
    assert again.code == 0, again.err
    for step in ("predict", "features"):
        for side in ("baseline", "candidate"):
            assert (
                f"{step} ({side}): {len(cases)} case(s) done (0 new, {len(cases)} reused)"
                in again.err
            )


def test_a_killed_compare_resumes_without_redoing_the_finished_side(cli, tmp_path):
    """kill -9 once the candidate side has started: the rerun predicts nothing of the baseline
    again (it may finish the candidate's remaining cases)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cases = sample_test_case_ids()[1::4]
    data = make_dataset(tmp_path / "raw", cases)
    out = tmp_path / "out"
    args = [
        "compare", "--baseline", str(SAMPLE_MODEL), "--candidate", str(SAMPLE_MODEL),
        "--data", str(data), "--out", str(out), "--device", "cpu", "--progress", "never",
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "seg4seg_cli", "-q", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if (out / "candidate").is_dir():
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / "baseline" / "cases.parquet").is_file()  # the baseline side had finished
    again = cli(*args)
    assert again.code == 0, again.err
    n = len(cases)
    assert f"predict (baseline): {n} case(s) done (0 new, {n} reused)" in again.err
    assert json.loads((out / "comparison.json").read_text())["n_cases"] == n


def test_sharded_parts_merged_give_the_same_comparison_as_one_run(cli, planted, tmp_path):
    baseline, candidate, _, _ = planted
    whole = _compare(cli, tmp_path / "whole", baseline, candidate)
    assert whole.code == 0, whole.err
    sharded = tmp_path / "sharded"
    for part in range(3):
        result = _compare(cli, sharded, baseline, candidate, "--num-parts", "3", "--part-id", part)
        assert result.code == 0 and f"compare part {part} of 3 done" in result.err
        assert not (sharded / "comparison.json").exists()  # nothing is paired before the merge
    merged = cli("merge", sharded)
    assert merged.code == 0 and merged.err.count("merge: 3 part(s)") == 2
    final = _compare(cli, sharded, baseline, candidate)
    assert final.code == 0, final.err
    assert final.err.count("(0 new, 200 reused)") == 2  # features of both sides, from the parts
    one, parts = (
        json.loads((f / "comparison.json").read_text()) for f in (tmp_path / "whole", sharded)
    )
    assert parts["overall"] == one["overall"] and parts["subgroups"] == one["subgroups"]


def test_the_sample_candidate_is_better_on_average_yet_its_regression_is_found_first(cli, tmp_path):
    """`make demo-compare`: the candidate model of sample_data against the sample model, on the
    sample test set plus the generated site D cases."""
    import subprocess
    import sys

    from conftest import REPO, SAMPLE

    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(SAMPLE / "build.py"), "--compare-data", str(data)],
        check=True,
        cwd=REPO,
    )
    site_d = set(json.loads((data / "planted_regression.json").read_text())["case_ids"])
    candidate = SAMPLE / "model" / "Dataset991_Seg4SegCandidate" / "nnUNetTrainer__nnUNetPlans__2d"
    args = [
        "compare", "--baseline", SAMPLE_MODEL, "--candidate", candidate, "--data", data,
        "--out", tmp_path / "out", "--device", "cpu", "--fail-regression", "0.05",
        "--progress", "never",
    ]  # fmt: skip
    result = cli(*args)
    assert result.code == 1, result.err
    payload = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert payload["overall"]["mean_change"] > 0  # better on average
    top = payload["subgroups"][0]
    assert top["direction"] == "regression" and top["mean_change"] <= -0.05
    assert sum(c in site_d for c in top["case_ids"][:10]) >= 8
    assert cli(*args, "--exit-zero").code == 0
