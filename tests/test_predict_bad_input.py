"""Bad input to `seg4seg predict`: one clear line naming the path and the fix, and the right exit.

A bad model, dataset or out folder stops the run with exit code 2. A bad case is skipped, listed
with its reason in the summary and in run.json, and the other cases are predicted.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import SimpleITK as sitk
import torch
from conftest import ENDING, SAMPLE_MODEL


def _predict(cli, model, data, out, *extra):
    return cli("predict", "-m", model, "-d", data, "-o", out, "--device", "cpu", *extra)


def _one_line_error(result) -> str:
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.err
    return lines[0]


def _record(out):
    return json.loads((out / "run.json").read_text())["steps"]["predict"]


def _case_ids(dataset):
    return sorted(
        p.name[: -len(f"_0000{ENDING}")] for p in (dataset / "imagesTs").glob(f"*_0000{ENDING}")
    )


def test_model_folder_without_plans_json(cli, small_dataset, model_copy, tmp_path):
    (model_copy / "plans.json").unlink()
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "has no plans.json" in _one_line_error(result)


def test_model_folder_without_dataset_json(cli, small_dataset, model_copy, tmp_path):
    (model_copy / "dataset.json").unlink()
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "has no dataset.json" in _one_line_error(result)


def test_model_folder_without_checkpoint(cli, small_dataset, model_copy, tmp_path):
    (model_copy / "fold_0" / "checkpoint_final.pth").unlink()
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "no fold_*/checkpoint_final.pth" in _one_line_error(result)


def test_fold_not_found(cli, small_dataset, tmp_path):
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out", "--folds", "3")
    assert result.code == 2
    line = _one_line_error(result)
    assert "fold 3" in line and "folds present: 0" in line


def test_model_path_that_does_not_exist(cli, small_dataset, tmp_path):
    result = _predict(cli, tmp_path / "nowhere", small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "does not exist" in _one_line_error(result)


def test_truncated_checkpoint(cli, small_dataset, model_copy, tmp_path):
    path = model_copy / "fold_0" / "checkpoint_final.pth"
    path.write_bytes(path.read_bytes()[:5000])
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "corrupt or truncated" in _one_line_error(result)


def test_weights_that_do_not_fit_the_plans(cli, small_dataset, model_copy, tmp_path):
    plans = json.loads((model_copy / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"] = [
        4,
        8,
        16,
        32,
    ]
    (model_copy / "plans.json").write_text(json.dumps(plans))
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "do not fit the network" in _one_line_error(result)


def test_plans_without_the_configuration(cli, small_dataset, model_copy, tmp_path):
    plans = json.loads((model_copy / "plans.json").read_text())
    plans["configurations"]["3d_fullres"] = plans["configurations"].pop("2d")
    (model_copy / "plans.json").write_text(json.dumps(plans))
    result = _predict(cli, model_copy, small_dataset, tmp_path / "out")
    assert result.code == 2
    line = _one_line_error(result)
    assert "'2d'" in line and "available: 3d_fullres" in line


def test_neither_data_nor_images(cli, tmp_path):
    result = cli("predict", "-m", SAMPLE_MODEL, "-o", tmp_path / "out")
    assert result.code == 2
    assert "--data" in _one_line_error(result)


def test_data_folder_without_dataset_json(cli, small_dataset, tmp_path):
    (small_dataset / "dataset.json").unlink()
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "has no dataset.json" in _one_line_error(result)


def test_empty_dataset(cli, small_dataset, tmp_path):
    for path in (small_dataset / "imagesTs").iterdir():
        path.unlink()
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "no .nii.gz images" in _one_line_error(result)


def test_out_folder_that_cannot_be_written(cli, small_dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = _predict(cli, SAMPLE_MODEL, small_dataset, blocker / "out")
    assert result.code == 2
    assert "cannot write to --out" in _one_line_error(result)


def test_part_id_out_of_range(cli, small_dataset, tmp_path):
    result = _predict(
        cli, SAMPLE_MODEL, small_dataset, tmp_path / "out", "--num-parts", 2, "--part-id", 2
    )
    assert result.code == 2
    assert "--part-id must be in 0..1" in _one_line_error(result)


def test_label_without_image_is_reported_and_the_rest_predicted(cli, small_dataset, tmp_path):
    shutil.copy(
        next((small_dataset / "labelsTs").iterdir()), small_dataset / "labelsTs" / f"orphan{ENDING}"
    )
    out = tmp_path / "out"
    result = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert result.code == 0
    assert "skipped orphan: label" in result.err and "has no image" in result.err
    assert "orphan" in _record(out)["cases_skipped"]
    assert len(_record(out)["cases_done"]) == 4


def test_truncated_image_is_skipped_and_the_rest_predicted(cli, small_dataset, tmp_path):
    victim = _case_ids(small_dataset)[0]
    path = small_dataset / "imagesTs" / f"{victim}_0000{ENDING}"
    path.write_bytes(path.read_bytes()[:100])
    out = tmp_path / "out"
    result = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert result.code == 0
    assert f"skipped {victim}: cannot read image" in result.err
    assert str(path) in _record(out)["cases_skipped"][victim]
    assert sorted(_record(out)["cases_done"]) == _case_ids(small_dataset)[1:]


def test_file_that_is_not_an_image_is_skipped(cli, small_dataset, tmp_path):
    (small_dataset / "imagesTs" / f"notes_0000{ENDING}").write_text("these are notes, not an image")
    out = tmp_path / "out"
    result = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert result.code == 0
    assert "skipped notes: cannot read image" in result.err


def _as_nrrd(dataset):
    """Convert a dataset to .nrrd: SimpleITK's NIfTI reader turns NaN and inf into 0, NRRD keeps them."""
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    dataset_json["file_ending"] = ".nrrd"
    (dataset / "dataset.json").write_text(json.dumps(dataset_json))
    for path in sorted(dataset.glob(f"*/*{ENDING}")):
        image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
        sitk.WriteImage(image, str(path).replace(ENDING, ".nrrd"))
        path.unlink()


def test_other_file_endings_are_predicted_in_the_same_ending(cli, small_dataset, tmp_path):
    _as_nrrd(small_dataset)
    out = tmp_path / "out"
    result = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        f"{c}.nrrd" for c in _case_ids_nrrd(small_dataset)
    ]


def _case_ids_nrrd(dataset):
    return sorted(p.name[: -len("_0000.nrrd")] for p in (dataset / "imagesTs").glob("*_0000.nrrd"))


def test_nan_or_inf_intensities_are_skipped(cli, small_dataset, tmp_path):
    _as_nrrd(small_dataset)
    nan_case, inf_case = _case_ids_nrrd(small_dataset)[:2]
    for case_id, value in ((nan_case, np.nan), (inf_case, np.inf)):
        path = small_dataset / "imagesTs" / f"{case_id}_0000.nrrd"
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
        array[3, 3] = value
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        sitk.WriteImage(bad, str(path))
    out = tmp_path / "out"
    result = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert result.code == 0
    for case_id in (nan_case, inf_case):
        assert f"skipped {case_id}: image" in result.err
        assert "NaN or inf" in _record(out)["cases_skipped"][case_id]
    assert len(_record(out)["cases_done"]) == 2


def test_no_case_could_be_processed_exits_2(cli, small_dataset, tmp_path):
    for path in (small_dataset / "imagesTs").iterdir():
        path.write_bytes(b"garbage")
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "0 case(s) done" in result.err and "4 skipped" in result.err


def _two_channel_model(model_dir):
    """The sample model widened to two input channels; the second channel's weights are zero."""
    dataset_json = json.loads((model_dir / "dataset.json").read_text())
    dataset_json["channel_names"] = {"0": "MRI", "1": "MRI_copy"}
    (model_dir / "dataset.json").write_text(json.dumps(dataset_json))
    plans = json.loads((model_dir / "plans.json").read_text())
    config = plans["configurations"]["2d"]
    config["normalization_schemes"] *= 2
    config["use_mask_for_norm"] *= 2
    props = plans["foreground_intensity_properties_per_channel"]
    props["1"] = props["0"]
    (model_dir / "plans.json").write_text(json.dumps(plans))
    path = model_dir / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(path, weights_only=True)
    for key, tensor in checkpoint["network_weights"].items():
        if tensor.ndim == 4 and tensor.shape[1] == 1:  # the first convolution, under each alias
            checkpoint["network_weights"][key] = torch.cat(
                [tensor, torch.zeros_like(tensor)], dim=1
            )
    torch.save(checkpoint, path)


def _two_channel_dataset(dataset):
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    dataset_json["channel_names"] = {"0": "MRI", "1": "MRI_copy"}
    (dataset / "dataset.json").write_text(json.dumps(dataset_json))
    for path in sorted((dataset / "imagesTs").glob(f"*_0000{ENDING}")):
        shutil.copy(path, path.with_name(path.name.replace(f"_0000{ENDING}", f"_0001{ENDING}")))


def test_two_channel_model_predicts_and_bad_cases_are_skipped(
    cli, small_dataset, model_copy, tmp_path
):
    reference = tmp_path / "reference"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, reference).code == 0
    _two_channel_model(model_copy)
    _two_channel_dataset(small_dataset)
    missing, different = _case_ids(small_dataset)[:2]
    (small_dataset / "imagesTs" / f"{missing}_0001{ENDING}").unlink()
    small = sitk.Image(32, 32, sitk.sitkInt16)
    small.SetSpacing((0.8, 0.8))
    sitk.WriteImage(small, str(small_dataset / "imagesTs" / f"{different}_0001{ENDING}"))

    out = tmp_path / "out"
    result = _predict(cli, model_copy, small_dataset, out)
    assert result.code == 0, result.err
    skipped = _record(out)["cases_skipped"]
    assert f"missing channel file(s) {missing}_0001{ENDING}" in skipped[missing]
    assert "has shape (1, 32, 32)" in skipped[different] and "share one grid" in skipped[different]
    assert sorted(_record(out)["cases_done"]) == _case_ids(small_dataset)[2:]

    # the zero weights make channel 1 irrelevant: predictions equal the one-channel model's
    for case_id in _case_ids(small_dataset)[2:]:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / f"{case_id}{ENDING}")))
        b = sitk.GetArrayFromImage(
            sitk.ReadImage(str(reference / "predictions" / f"{case_id}{ENDING}"))
        )
        np.testing.assert_array_equal(a, b)


def test_dataset_with_other_channels_than_the_model(cli, small_dataset, tmp_path):
    _two_channel_dataset(small_dataset)
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out")
    assert result.code == 2
    assert "declares 2 channel(s) but the model takes 1" in _one_line_error(result)
