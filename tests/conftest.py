"""Shared fixtures: the real sample model and dataset, small copies of it, and a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from seg4seg_cli import console
from seg4seg_cli.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SAMPLE_DATA = SAMPLE / "Dataset990_Seg4SegSample"
SAMPLE_MODEL = SAMPLE / "model" / "Dataset990_Seg4SegSample" / "nnUNetTrainer__nnUNetPlans__2d"
PLANTED = set(json.loads((SAMPLE / "planted_subgroup.json").read_text())["case_ids"])
ENDING = ".nii.gz"

# one thread: deterministic and polite on 2-core CI machines
torch.set_num_threads(1)

# Property tests draw the same examples on every run so that CI is reproducible; a search for
# new counterexamples is `HYPOTHESIS_PROFILE=explore make test` (random, many more examples).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=3000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def sample_test_case_ids() -> list[str]:
    return sorted(
        p.name[: -len("_0000.nii.gz")] for p in (SAMPLE_DATA / "imagesTs").glob("*_0000.nii.gz")
    )


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `seg4seg ARGS...` in-process; returns exit code, stdout and stderr."""

    def run(*args: object) -> CliResult:
        console.settings.quiet = console.settings.verbose = False
        console.settings.progress = "auto"
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(exit_info.value.code, captured.out, captured.err)

    return run


def make_dataset(
    root: Path, case_ids: list[str], name: str = "Dataset990_Small", source: Path = SAMPLE_DATA
) -> Path:
    """A raw nnU-Net dataset folder holding copies of the given test cases of `source` (default:
    the sample dataset)."""
    dataset = root / name
    (dataset / "imagesTs").mkdir(parents=True)
    (dataset / "labelsTs").mkdir()
    shutil.copy(source / "dataset.json", dataset / "dataset.json")
    for case_id in case_ids:
        shutil.copy(source / "imagesTs" / f"{case_id}_0000{ENDING}", dataset / "imagesTs")
        shutil.copy(source / "labelsTs" / f"{case_id}{ENDING}", dataset / "labelsTs")
    return dataset


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """Four sample test cases, two of them planted."""
    normal = [c for c in sample_test_case_ids() if c not in PLANTED][:2]
    planted = sorted(PLANTED)[:2]
    return make_dataset(tmp_path / "raw", normal + planted)


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A writable copy of the sample model's results folder."""
    target = tmp_path / "model" / SAMPLE_MODEL.name
    shutil.copytree(SAMPLE_MODEL, target)
    return target


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """`seg4seg predict` on the whole sample test set, run once for the session."""
    out = tmp_path_factory.mktemp("sample_run") / "out"
    console.settings.quiet = True
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(
                [
                    "predict",
                    "-m",
                    str(SAMPLE_MODEL),
                    "-d",
                    str(SAMPLE_DATA),
                    "-o",
                    str(out),
                    "--device",
                    "cpu",
                ]
            )
    finally:
        console.settings.quiet = False
    assert exit_info.value.code == 0
    return out
