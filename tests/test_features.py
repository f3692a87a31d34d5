"""`seg4seg features`: the cases.parquet file, labels and regions, metadata, bad cases, resuming."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
from conftest import PLANTED, SAMPLE, SAMPLE_DATA, SAMPLE_MODEL, sample_test_case_ids

from seg4seg_cli.metrics import METRIC_NAMES, binary_metrics

PRODUCT_METRICS = [
    "dice", "iou", "hd95_mm", "assd_mm", "nsd", "vol_ref_ml", "vol_pred_ml", "vol_diff_ml", "fp_ml", "fn_ml",
    "n_comp_ref", "n_comp_pred", "n_comp_missed", "n_comp_extra",
]  # fmt: skip
IMAGE_COLUMNS = [
    "spacing_x", "spacing_y", "spacing_z", "shape_x", "shape_y", "shape_z",
    "intensity_mean", "intensity_std", "intensity_p01", "intensity_p99", "image_noise",
    "image_sharpness",
]  # fmt: skip


def _features(cli, data, out, *extra):
    return cli("features", "-d", data, "-o", out, *extra)


def _table(path):
    return pq.read_table(path).to_pydict()


def _write(array, path, spacing, origin=None, direction=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def make_label_dataset(
    root, labels, n_cases=4, shape=(12, 20, 18), spacing=(0.8, 0.9, 2.5), seed=0
):
    """A 3-D raw dataset with images, references and predictions (written as any tool would)."""
    rng = np.random.default_rng(seed)
    data = root / "Dataset500_Labels"
    for folder in ("imagesTs", "labelsTs", "preds"):
        (data / folder).mkdir(parents=True)
    (data / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": labels,
                "numTraining": 0,
                "file_ending": ".nii.gz",
            }
        )
    )
    values = sorted(
        {v for raw in labels.values() for v in (raw if isinstance(raw, list) else [raw])} - {0}
    )
    for i in range(n_cases):
        case_id = f"case_{i:03d}"
        ref = np.zeros(shape, np.uint8)
        for k, value in enumerate(values):
            z, y, x = 2 + k * 3, 3 + i, 4 + 3 * k
            ref[z : z + 3, y : y + 6, x : x + 5] = value
        pred = ref.copy()
        pred[:, :, : 2 + i] = 0
        pred[0, 0, -2:] = values[-1]
        _write(
            rng.normal(100, 20, shape).astype(np.int16),
            data / "imagesTs" / f"{case_id}_0000.nii.gz",
            spacing,
        )
        _write(ref, data / "labelsTs" / f"{case_id}.nii.gz", spacing)
        _write(pred, data / "preds" / f"{case_id}.nii.gz", spacing)
    return data


def _array(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_sample_features_write_every_column(cli, sample_run):
    result = _features(cli, SAMPLE_DATA, sample_run, "--metadata", SAMPLE / "metadata.csv")
    assert result.code == 0, result.err
    table = pq.read_table(sample_run / "cases.parquet")
    names = table.column_names
    assert names[0] == "case_id"
    for metric in PRODUCT_METRICS:
        assert metric in names and f"{metric}__structure" in names
    for column in IMAGE_COLUMNS + [
        "entropy_mean",
        "entropy_in_pred",
        "meta_site",
        "meta_scanner_model",
        "meta_age",
    ]:
        assert column in names
    rows = table.to_pydict()
    assert rows["case_id"] == sample_test_case_ids()
    assert rows["spacing_x"][0] == pytest.approx(0.8) and np.isnan(rows["spacing_z"][0])
    assert rows["shape_x"][0] == 64 and rows["shape_z"][0] == 1
    assert rows["entropy_mean"] == [None] * len(rows["case_id"])  # no probabilities were saved
    # the aggregate of one label is that label, and it matches a recomputation from the files
    assert rows["dice"] == rows["dice__structure"]
    for i in (0, 7, 33):
        case_id = rows["case_id"][i]
        ref = _array(SAMPLE_DATA / "labelsTs" / f"{case_id}.nii.gz") == 1
        pred = _array(sample_run / "predictions" / f"{case_id}.nii.gz") == 1
        spacing = sitk.ReadImage(str(SAMPLE_DATA / "labelsTs" / f"{case_id}.nii.gz")).GetSpacing()[
            ::-1
        ]
        expected = binary_metrics(
            ref, pred, spacing, 1.0, float(np.hypot(64 * spacing[0], 64 * spacing[1]))
        )
        for metric in METRIC_NAMES:
            assert rows[f"{metric}__structure"][i] == pytest.approx(
                getattr(expected, metric), rel=1e-12
            ), metric
    dice = dict(zip(rows["case_id"], rows["dice"], strict=True))
    assert (
        np.mean([d for c, d in dice.items() if c in PLANTED])
        < np.mean([d for c, d in dice.items() if c not in PLANTED]) - 0.15
    )


def test_parquet_metadata_holds_schema_version_and_empty_conventions(cli, sample_run):
    assert _features(cli, SAMPLE_DATA, sample_run).code == 0
    meta = json.loads(pq.read_schema(sample_run / "cases.parquet").metadata[b"seg4seg"])
    assert meta["schema_version"] == 1
    assert set(meta["empty_mask_conventions"]) >= {
        "both_empty",
        "reference_empty_prediction_not",
        "prediction_empty_reference_not",
    }
    assert "voxel boundary" in meta["surface_definition"]


def test_probabilities_give_uncertainty_features(cli, small_dataset, tmp_path):
    out = tmp_path / "out"
    assert (
        cli(
            "predict",
            "-m",
            SAMPLE_MODEL,
            "-d",
            small_dataset,
            "-o",
            out,
            "--device",
            "cpu",
            "--save-probabilities",
        ).code
        == 0
    )
    assert _features(cli, small_dataset, out).code == 0
    rows = _table(out / "cases.parquet")
    for mean, inside in zip(rows["entropy_mean"], rows["entropy_in_pred"], strict=True):
        assert 0 < mean < 1 and 0 < inside < 1


def test_multi_label_dataset_has_columns_per_label_and_mean_aggregates(cli, tmp_path):
    labels = {"background": 0, "liver": 1, "tumor": 2, "vessel": 3}
    data = make_label_dataset(tmp_path, labels)
    out = tmp_path / "out"
    result = _features(cli, data, out, "--predictions", data / "preds")
    assert result.code == 0, result.err
    rows = _table(out / "cases.parquet")
    for metric in METRIC_NAMES:
        per_label = np.array([rows[f"{metric}__{name}"] for name in ("liver", "tumor", "vessel")])
        np.testing.assert_allclose(rows[metric], per_label.mean(axis=0))
    ref = _array(data / "labelsTs" / "case_002.nii.gz")
    pred = _array(data / "preds" / "case_002.nii.gz")
    diagonal = float(np.sqrt(np.sum((np.array(ref.shape) * np.array((2.5, 0.9, 0.8))) ** 2)))
    expected = binary_metrics(ref == 2, pred == 2, (2.5, 0.9, 0.8), 1.0, diagonal)
    assert rows["hd95_mm__tumor"][2] == pytest.approx(expected.hd95_mm)
    vessel = binary_metrics(ref == 3, pred == 3, (2.5, 0.9, 0.8), 1.0, diagonal)
    assert rows["n_comp_extra__vessel"][2] == vessel.n_comp_extra == 1
    assert rows["spacing_z"][0] == pytest.approx(2.5)


def test_region_based_dataset_evaluates_each_region(cli, tmp_path):
    labels = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}
    data = make_label_dataset(tmp_path, labels)
    result = _features(cli, data, tmp_path / "out", "--predictions", data / "preds")
    assert result.code == 0, result.err
    rows = _table(tmp_path / "out" / "cases.parquet")
    ref = _array(data / "labelsTs" / "case_001.nii.gz")
    pred = _array(data / "preds" / "case_001.nii.gz")
    for name, values in (("whole", [1, 2, 3]), ("core", [2, 3]), ("enhancing", [3])):
        expected = binary_metrics(np.isin(ref, values), np.isin(pred, values), (2.5, 0.9, 0.8))
        assert rows[f"dice__{name}"][1] == pytest.approx(expected.dice)
        assert rows[f"vol_ref_ml__{name}"][1] == pytest.approx(expected.vol_ref_ml)


def test_empty_masks_give_flags_and_finite_values(cli, tmp_path):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1})
    empty = np.zeros((12, 20, 18), np.uint8)
    _write(
        empty, data / "labelsTs" / "case_000.nii.gz", (0.8, 0.9, 2.5)
    )  # both empty after the next line
    _write(empty, data / "preds" / "case_000.nii.gz", (0.8, 0.9, 2.5))
    _write(empty, data / "labelsTs" / "case_001.nii.gz", (0.8, 0.9, 2.5))  # reference empty only
    _write(empty, data / "preds" / "case_002.nii.gz", (0.8, 0.9, 2.5))  # prediction empty only
    assert _features(cli, data, tmp_path / "out", "-p", data / "preds").code == 0
    rows = _table(tmp_path / "out" / "cases.parquet")
    assert (rows["ref_empty__a"][:3], rows["pred_empty__a"][:3]) == (
        [True, True, False],
        [True, False, True],
    )
    assert rows["dice"][:3] == [1.0, 0.0, 0.0]
    for metric in PRODUCT_METRICS:
        assert np.all(np.isfinite(rows[metric])), metric


def test_metadata_ids_on_one_side_only_are_reported(cli, small_dataset, sample_run, tmp_path):
    cases = [p.name[: -len("_0000.nii.gz")] for p in sorted((small_dataset / "imagesTs").iterdir())]
    csv = tmp_path / "meta.csv"
    csv.write_text("case_id,site\n" + f"{cases[0]},A\n{cases[1]},B\nnot_a_case,C\n")
    out = tmp_path / "out"
    result = _features(cli, small_dataset, out, "-p", sample_run / "predictions", "--metadata", csv)
    assert result.code == 0, result.err
    assert "2 case(s) have no row" in result.err and f"{cases[2]}, {cases[3]}" in result.err
    assert "1 row(s)" in result.err and "not_a_case" in result.err
    rows = _table(out / "cases.parquet")
    assert rows["meta_site"] == ["A", "B", None, None]
    record = json.loads((out / "run.json").read_text())["steps"]["features"]
    assert record["metadata_rows_without_case"] == ["not_a_case"]
    assert record["metadata_cases_without_row"] == cases[2:]


def test_metadata_with_duplicate_ids_is_an_error(cli, small_dataset, sample_run, tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("case_id,site\nx,A\ny,B\nx,C\n")
    result = _features(
        cli, small_dataset, tmp_path / "out", "-p", sample_run / "predictions", "--metadata", csv
    )
    assert result.code == 2
    assert "lists case 'x' twice (rows 2 and 4)" in result.err


def test_bad_cases_get_one_error_each_and_the_others_complete(cli, tmp_path):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1, "b": 2}, n_cases=6)
    spacing = (0.8, 0.9, 2.5)
    pred = _array(data / "preds" / "case_000.nii.gz")
    _write(pred, data / "preds" / "case_000.nii.gz", (0.8, 0.9, 3.0))  # spacing
    _write(pred, data / "preds" / "case_001.nii.gz", spacing, origin=(5.0, 0.0, 0.0))  # origin
    _write(
        pred, data / "preds" / "case_002.nii.gz", spacing, direction=(0, 1, 0, 1, 0, 0, 0, 0, 1)
    )  # direction
    bad = pred.copy()
    bad[5, 5, 5] = 7
    _write(bad, data / "preds" / "case_003.nii.gz", spacing)  # label value not in dataset.json
    (data / "preds" / "case_004.nii.gz").unlink()  # missing prediction
    out = tmp_path / "out"
    result = _features(cli, data, out, "-p", data / "preds")
    assert result.code == 0
    skipped = json.loads((out / "run.json").read_text())["steps"]["features"]["cases_skipped"]
    assert "has spacing (0.8, 0.9, 3) but the image has (0.8, 0.9, 2.5)" in skipped["case_000"]
    assert "has origin (5, 0, 0)" in skipped["case_001"]
    assert "has direction" in skipped["case_002"] and "never resamples" in skipped["case_002"]
    assert "label value(s) [7] not in dataset.json" in skipped["case_003"]
    assert "no prediction" in skipped["case_004"]
    for case_id in ("case_000", "case_003", "case_004"):
        assert f"skipped {case_id}:" in result.err
    assert _table(out / "cases.parquet")["case_id"] == ["case_005"]


def test_rerun_reuses_unchanged_cases_and_recomputes_changed_ones(cli, tmp_path):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1})
    out = tmp_path / "out"
    assert "(4 new, 0 reused)" in _features(cli, data, out, "-p", data / "preds").err
    assert "(0 new, 4 reused)" in _features(cli, data, out, "-p", data / "preds").err
    touched = data / "preds" / "case_001.nii.gz"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    assert "(1 new, 3 reused)" in _features(cli, data, out, "-p", data / "preds").err
    assert (
        "(4 new, 0 reused)"
        in _features(cli, data, out, "-p", data / "preds", "--nsd-tol-mm", "2").err
    )


def test_workers_give_byte_identical_output(cli, tmp_path):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1, "b": 2}, n_cases=5)
    one, two = tmp_path / "one", tmp_path / "two"
    assert _features(cli, data, one, "-p", data / "preds").code == 0
    assert _features(cli, data, two, "-p", data / "preds", "--workers", "2").code == 0
    assert (one / "cases.parquet").read_bytes() == (two / "cases.parquet").read_bytes()


def test_parts_write_shards_that_cover_every_case_once(cli, tmp_path):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1}, n_cases=5)
    out = tmp_path / "out"
    seen = []
    for part in range(2):
        assert (
            _features(
                cli, data, out, "-p", data / "preds", "--num-parts", 2, "--part-id", part
            ).code
            == 0
        )
        seen += _table(out / "shards" / f"part-{part:05d}-of-00002.parquet")["case_id"]
    assert sorted(seen) == [f"case_{i:03d}" for i in range(5)]
    assert not (out / "cases.parquet").exists()


def test_missing_prediction_folder_is_a_usage_error(cli, small_dataset, tmp_path):
    result = _features(cli, small_dataset, tmp_path / "empty_out")
    assert result.code == 2
    assert "no prediction folder" in result.err


def test_without_model_embeddings_features_writes_image_descriptors(cli, tmp_path):
    from seg4seg_cli.embeddings_store import read_embeddings

    data = make_label_dataset(tmp_path, {"background": 0, "a": 1}, n_cases=5)
    out = tmp_path / "out"
    assert _features(cli, data, out, "-p", data / "preds").code == 0
    ids, matrix, sources = read_embeddings(out / "embeddings.parquet")
    assert ids == [f"case_{i:03d}" for i in range(5)]
    assert matrix.shape == (5, 8 * 8 * 8 + 32) and np.isfinite(matrix).all()
    assert set(sources) == {"image_descriptor"}
    assert len(np.unique(matrix.round(5), axis=0)) == 5


def test_model_embeddings_are_kept(cli, sample_run):
    from seg4seg_cli.embeddings_store import read_embeddings

    assert _features(cli, SAMPLE_DATA, sample_run).code == 0
    _, matrix, sources = read_embeddings(sample_run / "embeddings.parquet")
    assert set(sources) == {"nnunet_encoder"} and matrix.shape[1] == 240  # 2 x (8+16+32+64)


def test_resume_does_not_depend_on_how_paths_are_spelled(cli, tmp_path, monkeypatch):
    data = make_label_dataset(tmp_path, {"background": 0, "a": 1})
    out = tmp_path / "out"
    assert "(4 new, 0 reused)" in _features(cli, data, out, "-p", data / "preds").err
    monkeypatch.chdir(tmp_path)
    relative = data.relative_to(tmp_path)
    assert "(0 new, 4 reused)" in _features(cli, relative, "out", "-p", relative / "preds").err
