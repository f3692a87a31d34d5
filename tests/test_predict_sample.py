"""`seg4seg predict` on the real sample model and dataset: the outputs, checked against nnU-Net."""

from __future__ import annotations

import contextlib
import io
import json
from importlib import metadata

import numpy as np
import pyarrow.parquet as pq
import SimpleITK as sitk
import torch
from conftest import ENDING, PLANTED, SAMPLE_DATA, SAMPLE_MODEL, sample_test_case_ids

from seg4seg_cli.embeddings_store import bottleneck_mean, read_embedding_blocks, read_embeddings


def _read(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(pred, ref).sum() / total


def test_predictions_equal_nnunet_predictor_voxel_for_voxel(sample_run, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    reference_dir = tmp_path / "nnunet"
    reference_dir.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(SAMPLE_MODEL), use_folds=(0,))
        predictor.predict_from_files_sequential(str(SAMPLE_DATA / "imagesTs"), str(reference_dir))
    for case_id in sample_test_case_ids():
        ours, ours_image = _read(sample_run / "predictions" / f"{case_id}{ENDING}")
        theirs, theirs_image = _read(reference_dir / f"{case_id}{ENDING}")
        np.testing.assert_array_equal(ours, theirs, err_msg=case_id)
        assert ours_image.GetSpacing() == theirs_image.GetSpacing()


def test_predictions_keep_the_input_geometry(sample_run):
    for case_id in sample_test_case_ids()[:10]:
        _, pred = _read(sample_run / "predictions" / f"{case_id}{ENDING}")
        _, image = _read(SAMPLE_DATA / "imagesTs" / f"{case_id}_0000{ENDING}")
        assert pred.GetSize() == image.GetSize()
        assert pred.GetSpacing() == image.GetSpacing()
        assert pred.GetOrigin() == image.GetOrigin()
        assert pred.GetDirection() == image.GetDirection()


def test_sample_model_is_good_on_normal_cases_and_worse_on_the_planted_subgroup(sample_run):
    dice = {}
    for case_id in sample_test_case_ids():
        pred, _ = _read(sample_run / "predictions" / f"{case_id}{ENDING}")
        ref, _ = _read(SAMPLE_DATA / "labelsTs" / f"{case_id}{ENDING}")
        dice[case_id] = _dice(pred == 1, ref == 1)
    normal = np.mean([d for c, d in dice.items() if c not in PLANTED])
    planted = np.mean([d for c, d in dice.items() if c in PLANTED])
    assert normal > 0.85
    assert planted < normal - 0.15


def test_embeddings_pool_every_stage_one_row_per_case(sample_run):
    plans = json.loads((SAMPLE_MODEL / "plans.json").read_text())
    stages = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["features_per_stage"]
    width = 2 * sum(stages)  # the mean and the maximum of every encoder stage
    table = pq.read_table(sample_run / "embeddings.parquet")
    assert table.schema.field("embedding").type.list_size == width
    assert str(table.schema.field("embedding").type.value_type) == "float"
    case_ids, matrix, sources = read_embeddings(sample_run / "embeddings.parquet")
    assert case_ids == sample_test_case_ids()
    assert matrix.shape == (len(case_ids), width)
    assert np.isfinite(matrix).all()
    assert set(sources) == {"nnunet_encoder"}
    blocks = read_embedding_blocks(sample_run / "embeddings.parquet")
    expected, start = [], 0
    for k, channels in enumerate(stages):
        for pooling in ("mean", "max"):
            expected.append((f"encoder.stages[{k}].{pooling}", start, channels))
            start += channels
    assert [(b["name"], b["start"], b["width"]) for b in blocks] == expected
    # the maximum over space is never below the mean over space, channel by channel
    for k in range(len(stages)):
        mean, high = blocks[2 * k], blocks[2 * k + 1]
        assert (
            matrix[:, high["start"] : high["start"] + high["width"]]
            >= matrix[:, mean["start"] : mean["start"] + mean["width"]] - 1e-6
        ).all()
    bottleneck = bottleneck_mean(matrix, blocks)
    np.testing.assert_array_equal(bottleneck, matrix[:, blocks[-2]["start"] : blocks[-1]["start"]])
    assert bottleneck.shape == (len(case_ids), stages[-1])


def test_embeddings_differ_between_visually_different_cases(sample_run):
    case_ids, matrix, _ = read_embeddings(sample_run / "embeddings.parquet")
    assert len(np.unique(matrix.round(6), axis=0)) == len(case_ids)
    standardised = (matrix - matrix.mean(0)) / (matrix.std(0) + 1e-8)
    planted = np.array([c in PLANTED for c in case_ids])
    centroid_gap = np.linalg.norm(standardised[planted].mean(0) - standardised[~planted].mean(0))
    # the artefact cases sit apart: their centroid is further from the normal centroid than a
    # typical normal case is
    spread = np.linalg.norm(standardised[~planted] - standardised[~planted].mean(0), axis=1).mean()
    assert centroid_gap > 0.5 * spread


def test_run_json_records_provenance(sample_run):
    record = json.loads((sample_run / "run.json").read_text())
    assert record["versions"]["seg4seg"]
    assert record["versions"]["nnunetv2"] == metadata.version("nnunetv2")
    assert record["versions"]["torch"] == torch.__version__
    step = record["steps"]["predict"]
    assert step["command_line"][:2] == ["seg4seg", "predict"]
    assert str(SAMPLE_MODEL) in step["command_line"]
    assert len(step["settings"]["model_checksum_sha256"]) == 64
    assert step["device"] == "cpu"
    assert set(step["cases_done"]) == set(sample_test_case_ids())
    assert all(v["seconds"] > 0 for v in step["cases_done"].values())
    assert step["cases_skipped"] == {}
    assert step["finished_at"]


def test_out_folder_holds_no_temporaries(sample_run):
    leftovers = [p for p in sample_run.rglob(".*") if p.is_file()]
    assert leftovers == []
