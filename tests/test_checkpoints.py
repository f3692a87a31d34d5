"""Checkpoints are read without executing code; custom trainers load from the plans."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
import torch
from conftest import ENDING, SAMPLE_MODEL


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint(model_dir):
    return torch.load(model_dir / "fold_0" / "checkpoint_final.pth", weights_only=True)


def _predict(cli, model, data, out, *extra):
    return cli("predict", "-m", model, "-d", data, "-o", out, "--device", "cpu", *extra)


def test_sample_checkpoint_is_slim_and_named_for_the_default_trainer():
    checkpoint = _checkpoint(SAMPLE_MODEL)
    assert checkpoint["trainer_name"] == "nnUNetTrainer"
    assert "optimizer_state" not in checkpoint


def test_checkpoint_of_a_custom_trainer_loads_from_the_plans(
    cli, small_dataset, model_copy, tmp_path
):
    checkpoint = _checkpoint(model_copy)
    checkpoint["trainer_name"] = "nnUNetTrainer_MyLab_NotInstalled"
    torch.save(checkpoint, model_copy / "fold_0" / "checkpoint_final.pth")
    custom, default = tmp_path / "custom", tmp_path / "default"
    result = _predict(cli, model_copy, small_dataset, custom)
    assert result.code == 0, result.err
    assert _predict(cli, SAMPLE_MODEL, small_dataset, default).code == 0
    for path in (default / "predictions").glob(f"*{ENDING}"):
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(custom / "predictions" / path.name)))
        np.testing.assert_array_equal(ours, sitk.GetArrayFromImage(sitk.ReadImage(str(path))))


def test_code_executing_checkpoint_is_refused_without_trust(
    cli, small_dataset, model_copy, tmp_path
):
    marker = tmp_path / "code_ran"
    checkpoint = _checkpoint(model_copy)
    checkpoint["payload"] = _RunsCode(marker)
    torch.save(checkpoint, model_copy / "fold_0" / "checkpoint_final.pth")

    refused = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert refused.code == 2
    assert "refusing to unpickle" in refused.err and "--trust-checkpoint" in refused.err
    assert not marker.exists()

    trusted = _predict(cli, model_copy, small_dataset, tmp_path / "out2", "--trust-checkpoint")
    assert trusted.code == 0, trusted.err
    assert marker.exists()  # full unpickling ran the file's code, as the flag warns
