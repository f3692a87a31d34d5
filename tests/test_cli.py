"""The command line itself: entry points, versions, help, exit codes for usage and internal errors."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
import torch
from conftest import REPO


def test_version_names_seg4seg_nnunet_torch_and_cuda():
    result = subprocess.run(
        [sys.executable, "-m", "seg4seg_cli", "--version"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "seg4seg 0.1.0" in result.stdout
    assert f"nnunetv2 {metadata.version('nnunetv2')}" in result.stdout
    assert f"torch {torch.__version__}" in result.stdout
    assert f"CUDA available: {'yes' if torch.cuda.is_available() else 'no'}" in result.stdout


def test_console_script_is_installed():
    script = REPO / ".venv" / "bin" / "seg4seg"
    executable = str(script) if script.exists() else "seg4seg"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, check=True)
    assert "predict" in result.stdout


def test_predict_help_shows_an_example(cli):
    result = cli("predict", "--help")
    assert result.code == 0
    assert "Examples" in result.out and "seg4seg predict --model" in result.out


@pytest.mark.parametrize(
    "command",
    ["predict", "features", "discover", "audit", "report", "merge", "slurm-script", "bench"],
)
def test_every_command_has_help_with_examples(cli, command):
    result = cli(command, "--help")
    assert result.code == 0
    assert "Examples" in result.out and f"seg4seg {command}" in result.out


def test_unknown_option_is_a_usage_error(cli):
    result = cli("predict", "--no-such-flag")
    assert result.code == 2
    assert "No such option" in result.err


def test_internal_error_exits_3_with_one_line(cli, monkeypatch, small_dataset, tmp_path):
    import seg4seg_cli.predict

    def broken(options):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(seg4seg_cli.predict, "run_predict", broken)
    result = cli("predict", "-m", tmp_path, "-d", small_dataset, "-o", tmp_path / "out")
    assert result.code == 3
    assert "internal error RuntimeError: simulated bug" in result.err
    assert "Traceback" not in result.err


def test_global_seed_is_the_default_of_a_command_seed(cli, tmp_path):
    from test_discover import make_out_folder

    out, _ = make_out_folder(tmp_path)
    assert (
        json.loads(
            cli("--seed", "2", "discover", out, "--method", "kmeans", "--format", "json").out
        )["seed"]
        == 2
    )
    assert (
        json.loads(
            cli(
                "--seed",
                "2",
                "discover",
                out,
                "--method",
                "kmeans",
                "--seed",
                "5",
                "--format",
                "json",
            ).out
        )["seed"]
        == 5
    )
    assert (
        json.loads(cli("discover", out, "--method", "kmeans", "--format", "json").out)["seed"] == 0
    )
