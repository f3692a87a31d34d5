"""Sharded runs as on a SLURM cluster: the printed sbatch script's own commands, merge, and the
result against an unsharded run."""

from __future__ import annotations

import json
import shlex
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, SAMPLE_MODEL, make_dataset, sample_test_case_ids

N_PARTS = 3


def _script(cli, data, out):
    result = cli(
        "slurm-script", "-m", SAMPLE_MODEL, "-d", data, "-o", out, "--num-parts", N_PARTS,
        "--metadata", SAMPLE / "metadata.csv", "--method", "kmeans", "--cpus-per-task", 1,
    )  # fmt: skip
    assert result.code == 0, result.err
    return result.out


def _job_commands(script: str, marker: str) -> list[list[str]]:
    """The seg4seg command lines inside one heredoc job of the script."""
    body = script.split(f"<<'{marker}'\n", 1)[1].split(f"\n{marker}\n", 1)[0]
    return [shlex.split(line)[1:] for line in body.splitlines() if line.startswith("seg4seg ")]


@pytest.fixture(scope="module")
def cluster_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("raw"), sample_test_case_ids()[::10])  # 20 cases


def test_printed_script_passes_bash_n(cli, cluster_dataset, tmp_path):
    script = _script(cli, cluster_dataset, tmp_path / "out")
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert f"--array=0-{N_PARTS - 1}" in script and "--dependency=afterok:" in script


def test_sharded_run_of_the_script_steps_equals_the_unsharded_run(
    cli, cluster_dataset, tmp_path, monkeypatch
):
    sharded, plain = tmp_path / "sharded", tmp_path / "plain"
    script = _script(cli, cluster_dataset, sharded)
    for part in range(N_PARTS):  # what each array task runs
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(part))
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", str(N_PARTS))
        for args in _job_commands(script, "PARTS"):
            result = cli(*args)
            assert result.code == 0, (args, result.err)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    for args in _job_commands(script, "REPORT"):  # the dependent job
        result = cli(*args)
        assert result.code == 0, (args, result.err)
    assert (sharded / "report.html").is_file()

    # the same audit without shards
    for args in _job_commands(script.replace(str(sharded), str(plain)), "PARTS"):
        args = [a for a in args]
        i = args.index("--num-parts")
        del args[i : i + 2]
        assert cli(*args).code == 0
    assert cli("discover", plain, "--method", "kmeans", "--metric", "dice", "--seed", "0").code == 0

    sharded_cases, plain_cases = (
        pq.read_table(sharded / "cases.parquet"),
        pq.read_table(plain / "cases.parquet"),
    )
    assert sharded_cases.schema.equals(plain_cases.schema, check_metadata=True)
    # NaN (spacing_z of 2-D images) is unequal to itself for Arrow; pandas compares it as equal
    pd.testing.assert_frame_equal(sharded_cases.to_pandas(), plain_cases.to_pandas())
    assert pq.read_table(sharded / "embeddings.parquet").equals(
        pq.read_table(plain / "embeddings.parquet")
    )
    assert (sharded / "subgroups.json").read_bytes() == (plain / "subgroups.json").read_bytes()
    record = json.loads((sharded / "run.json").read_text())["steps"]
    assert len(record["predict"]["cases_done"]) == 20 and record["merge"]["num_parts"] == N_PARTS


@pytest.fixture
def merged_parts(cli, cluster_dataset, tmp_path):
    out = tmp_path / "out"
    for part in range(N_PARTS):
        common = ["-d", cluster_dataset, "-o", out, "--num-parts", N_PARTS, "--part-id", part]
        assert cli("predict", "-m", SAMPLE_MODEL, "--device", "cpu", *common).code == 0
        assert cli("features", *common).code == 0
    return out


def test_merge_reports_a_missing_part(cli, merged_parts):
    (merged_parts / "shards" / "part-00001-of-00003.parquet").unlink()
    result = cli("merge", merged_parts)
    assert result.code == 2
    assert "lacks shards/part-00001-of-00003.parquet" in result.err and "--part-id 1" in result.err


def test_merge_reports_a_case_in_two_parts(cli, merged_parts):
    shards = merged_parts / "shards"
    table = pq.read_table(shards / "part-00000-of-00003.parquet")
    other = pq.read_table(shards / "part-00002-of-00003.parquet")
    duplicate = table.slice(0, 1)
    import pyarrow as pa

    pq.write_table(pa.concat_tables([other, duplicate]), shards / "part-00002-of-00003.parquet")
    result = cli("merge", merged_parts)
    assert result.code == 2
    case_id = duplicate.column("case_id")[0].as_py()
    assert (
        f"case '{case_id}' occurs in both part-00000-of-00003.parquet and part-00002-of-00003.parquet"
        in result.err
    )


def test_merge_without_shards_is_an_error(cli, tmp_path):
    result = cli("merge", tmp_path)
    assert result.code == 2 and "nothing to merge" in result.err
