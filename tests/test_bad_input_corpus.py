"""A corpus of bad inputs, each with the message a user sees and the exit code.

Run-stopping problems exit 2 with one `error:` line; a bad case is skipped with its reason (in the
summary and run.json) while the other cases complete (exit 0). Nothing is written outside --out.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import SAMPLE_MODEL, make_dataset, sample_test_case_ids

SPACING = (0.8, 0.9, 2.5)


def _write(array, path, spacing=SPACING, origin=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: array.ndim] if array.ndim < 4 else spacing)
    if origin is not None:
        image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))


def labels_dataset(root: Path, n_cases: int = 3) -> Path:
    """A 3-D dataset with references and predictions (from 'another tool'), all fine."""
    data = root / "Dataset501_Corpus"
    for folder in ("imagesTs", "labelsTs", "preds"):
        (data / folder).mkdir(parents=True)
    (data / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1},
                "file_ending": ".nii.gz",
            }
        )
    )
    rng = np.random.default_rng(0)
    for i in range(n_cases):
        ref = np.zeros((8, 12, 12), np.uint8)
        ref[2:6, 3 + i : 8, 3:9] = 1
        pred = np.roll(ref, 1, axis=2)
        _write(
            rng.normal(0, 1, ref.shape).astype(np.float32),
            data / "imagesTs" / f"case_{i}_0000.nii.gz",
        )
        _write(ref, data / "labelsTs" / f"case_{i}.nii.gz")
        _write(pred, data / "preds" / f"case_{i}.nii.gz")
    return data


@dataclass
class Entry:
    """One kind of bad input: `setup(tmp_path)` returns the CLI arguments to run."""

    name: str
    setup: object
    exit_code: int
    message: str  # expected in stderr


def _features(data, tmp):
    return ["features", "-d", data, "-o", tmp / "out", "-p", data / "preds"]


def _predict(data, tmp, model=SAMPLE_MODEL):
    return ["predict", "-m", model, "-d", data, "-o", tmp / "out", "--device", "cpu"]


def _sample(tmp, n=3):
    return make_dataset(tmp / "raw", sample_test_case_ids()[:n])


def _model(tmp):
    target = tmp / "model" / SAMPLE_MODEL.name
    shutil.copytree(SAMPLE_MODEL, target)
    return target


def truncated_image(tmp):
    data = _sample(tmp)
    path = sorted((data / "imagesTs").iterdir())[0]
    path.write_bytes(path.read_bytes()[:200])
    return _predict(data, tmp)


def not_an_image(tmp):
    data = _sample(tmp)
    (data / "imagesTs" / "notes_0000.nii.gz").write_text("not an image")
    return _predict(data, tmp)


def nan_intensities(tmp):
    data = labels_dataset(tmp)
    dataset_json = json.loads((data / "dataset.json").read_text())
    dataset_json["file_ending"] = ".nrrd"
    (data / "dataset.json").write_text(json.dumps(dataset_json))
    for path in data.glob("*/*.nii.gz"):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        if "imagesTs" in str(path) and "case_0" in path.name:
            array = array.astype(np.float32)
            array[1, 1, 1] = np.nan
        _write(array, Path(str(path).replace(".nii.gz", ".nrrd")))
        path.unlink()
    return _features(data, tmp)


def label_not_in_dataset_json(tmp):
    data = labels_dataset(tmp)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labelsTs" / "case_0.nii.gz")))
    ref[0, 0, 0] = 5
    _write(ref, data / "labelsTs" / "case_0.nii.gz")
    return _features(data, tmp)


def four_d_image(tmp):
    data = labels_dataset(tmp)
    volume = sitk.GetImageFromArray(np.zeros((8, 12, 12), np.float32))
    sitk.WriteImage(
        sitk.JoinSeries([volume, volume]), str(data / "imagesTs" / "case_0_0000.nii.gz")
    )
    return _features(data, tmp)


def vector_image(tmp):
    data = labels_dataset(tmp)
    image = sitk.GetImageFromArray(np.zeros((8, 12, 12, 3), np.float32), isVector=True)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(data / "imagesTs" / "case_0_0000.nii.gz"))
    return _features(data, tmp)


def _misplace(what):
    def setup(tmp):
        data = labels_dataset(tmp)
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "preds" / "case_0.nii.gz")))
        if what == "spacing":
            _write(pred, data / "preds" / "case_0.nii.gz", spacing=(1.0, 1.0, 1.0))
        elif what == "origin":
            _write(pred, data / "preds" / "case_0.nii.gz", origin=(3.0, 0.0, 0.0))
        elif what == "size":
            _write(pred[:, :10], data / "preds" / "case_0.nii.gz")
        else:
            image = sitk.GetImageFromArray(pred)
            image.SetSpacing(SPACING)
            image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
            sitk.WriteImage(image, str(data / "preds" / "case_0.nii.gz"))
        return _features(data, tmp)

    return setup


def float_prediction(tmp):
    data = labels_dataset(tmp)
    _write(np.full((8, 12, 12), 0.5, np.float32), data / "preds" / "case_0.nii.gz")
    return _features(data, tmp)


def empty_dataset(tmp):
    data = _sample(tmp)
    for path in (data / "imagesTs").iterdir():
        path.unlink()
    return _predict(data, tmp)


def empty_prediction_folder(tmp):
    data = labels_dataset(tmp)
    for path in (data / "preds").iterdir():
        path.unlink()
    return _features(data, tmp)


def missing_prediction(tmp):
    data = labels_dataset(tmp)
    (data / "preds" / "case_1.nii.gz").unlink()
    return _features(data, tmp)


def label_without_image(tmp):
    data = _sample(tmp)
    shutil.copy(next((data / "labelsTs").iterdir()), data / "labelsTs" / "orphan.nii.gz")
    return _predict(data, tmp)


def backslash_in_case_id(tmp):
    data = _sample(tmp)
    source = sorted((data / "imagesTs").iterdir())[0]
    shutil.copy(source, data / "imagesTs" / "evil\\name_0000.nii.gz")
    return _predict(data, tmp)


def control_character_in_case_id(tmp):
    data = _sample(tmp)
    source = sorted((data / "imagesTs").iterdir())[0]
    shutil.copy(source, data / "imagesTs" / "bad\nname_0000.nii.gz")
    return _predict(data, tmp)


def _metadata(content):
    def setup(tmp):
        data = labels_dataset(tmp)
        csv = tmp / "meta.csv"
        csv.write_text(content)
        return [*_features(data, tmp), "--metadata", csv]

    return setup


def corrupt_checkpoint(tmp):
    model = _model(tmp)
    path = model / "fold_0" / "checkpoint_final.pth"
    path.write_bytes(path.read_bytes()[:1000])
    return _predict(_sample(tmp), tmp, model)


def weights_not_fitting(tmp):
    model = _model(tmp)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"] = [
        4,
        8,
        16,
        32,
    ]
    (model / "plans.json").write_text(json.dumps(plans))
    return _predict(_sample(tmp), tmp, model)


def plans_without_configuration(tmp):
    model = _model(tmp)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"] = {"3d_fullres": plans["configurations"]["2d"]}
    (model / "plans.json").write_text(json.dumps(plans))
    return _predict(_sample(tmp), tmp, model)


def model_without_plans(tmp):
    model = _model(tmp)
    (model / "plans.json").unlink()
    return _predict(_sample(tmp), tmp, model)


def not_a_checkpoint_dict(tmp):
    model = _model(tmp)
    torch.save({"something": torch.zeros(2)}, model / "fold_0" / "checkpoint_final.pth")
    return _predict(_sample(tmp), tmp, model)


def duplicate_case_in_shards(tmp):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp / "out"
    (out / "shards").mkdir(parents=True)
    table = pa.table({"case_id": ["a", "b"], "dice": [0.9, 0.8]})
    pq.write_table(table, out / "shards" / "part-00000-of-00002.parquet")
    pq.write_table(table.slice(1), out / "shards" / "part-00001-of-00002.parquet")
    return ["merge", out]


def report_without_subgroups(tmp):
    (tmp / "out").mkdir()
    return ["report", tmp / "out"]


def discover_without_features(tmp):
    (tmp / "out").mkdir()
    return ["discover", tmp / "out"]


CORPUS = [
    Entry("truncated image", truncated_image, 0, "is truncated (its gzip stream ends early)"),
    Entry("file that is not an image", not_an_image, 0, "skipped notes: cannot read image"),
    Entry("NaN intensities", nan_intensities, 0, "skipped case_0: the image"),
    Entry(
        "label value not in dataset.json",
        label_not_in_dataset_json,
        0,
        "label value(s) [5] not in dataset.json",
    ),
    Entry(
        "4-D image where 3-D is expected",
        four_d_image,
        0,
        "is 4-D; seg4seg evaluates 2-D and 3-D images",
    ),
    Entry("image with several components per voxel", vector_image, 0, "has 3 components per voxel"),
    Entry(
        "mismatched spacing",
        _misplace("spacing"),
        0,
        "has spacing (1, 1, 1) but the image has (0.8, 0.9, 2.5)",
    ),
    Entry("mismatched origin", _misplace("origin"), 0, "has origin (3, 0, 0)"),
    Entry("mismatched direction", _misplace("direction"), 0, "has direction"),
    Entry(
        "mismatched size",
        _misplace("size"),
        0,
        "has size (12, 10, 8) but the image has (12, 12, 8)",
    ),
    Entry(
        "prediction that is not a label map",
        float_prediction,
        0,
        "holds non-integer values; it is not a label map",
    ),
    Entry("empty dataset", empty_dataset, 2, "no .nii.gz images in"),
    Entry("empty prediction folder", empty_prediction_folder, 2, "0 case(s) done"),
    Entry("missing prediction", missing_prediction, 0, "skipped case_1: no prediction"),
    Entry("label without image", label_without_image, 0, "skipped orphan: label"),
    Entry(
        "case id with a path separator",
        backslash_in_case_id,
        0,
        "contains a path separator or control character",
    ),
    Entry(
        "case id with a control character",
        control_character_in_case_id,
        0,
        "contains a path separator or control character",
    ),
    Entry(
        "metadata with missing ids",
        _metadata("case_id,site\ncase_0,A\n"),
        0,
        "2 case(s) have no row",
    ),
    Entry(
        "metadata with extra ids",
        _metadata("case_id,site\ncase_0,A\ncase_1,B\ncase_2,A\n../../etc/passwd,C\n"),
        0,
        "1 row(s)",
    ),
    Entry(
        "metadata with duplicate ids",
        _metadata("case_id,site\ncase_0,A\ncase_0,B\n"),
        2,
        "lists case 'case_0' twice",
    ),
    Entry("metadata without case_id", _metadata("id,site\ncase_0,A\n"), 2, "has no case_id column"),
    Entry("corrupt checkpoint", corrupt_checkpoint, 2, "the file is corrupt or truncated"),
    Entry(
        "checkpoint that is not nnU-Net's",
        not_a_checkpoint_dict,
        2,
        "is not an nnU-Net v2 checkpoint",
    ),
    Entry("weights that do not fit the plans", weights_not_fitting, 2, "do not fit the network"),
    Entry(
        "plans without the configuration", plans_without_configuration, 2, "available: 3d_fullres"
    ),
    Entry("model folder without plans.json", model_without_plans, 2, "has no plans.json"),
    Entry(
        "case in two shards",
        duplicate_case_in_shards,
        2,
        "occurs in both part-00000-of-00002.parquet and part-00001-of-00002.parquet",
    ),
    Entry(
        "report without subgroups.json",
        report_without_subgroups,
        2,
        "subgroups.json does not exist",
    ),
    Entry(
        "discover without cases.parquet",
        discover_without_features,
        2,
        "cases.parquet does not exist",
    ),
]


def test_the_corpus_has_at_least_20_kinds():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_bad_input_gives_its_message_and_exit_code(entry, cli, tmp_path):
    args = entry.setup(tmp_path)
    before = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts}
    result = cli(*args)
    assert result.code == entry.exit_code, result.err
    assert entry.message in result.err, result.err
    assert "Traceback" not in result.err
    if entry.exit_code == 2:
        assert sum(line.startswith("error:") for line in result.err.splitlines()) == 1, result.err
    # nothing is written outside --out (case ids are never trusted as paths)
    after = {p for p in tmp_path.rglob("*") if "out" not in p.relative_to(tmp_path).parts}
    assert after == before
