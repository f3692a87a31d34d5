"""`seg4seg predict`: resuming, sharding, model layouts, folds, probabilities, output streams."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import ENDING, SAMPLE_DATA, SAMPLE_MODEL, make_dataset, sample_test_case_ids

from seg4seg_cli.cases import find_cases, resolve_part, select_part
from seg4seg_cli.embeddings_store import read_embeddings


def _predict(cli, model, data, out, *extra):
    return cli("predict", "-m", model, "-d", data, "-o", out, "--device", "cpu", *extra)


def _prediction(out, case_id):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / "predictions" / f"{case_id}{ENDING}")))


def test_rerun_skips_finished_cases_and_redoes_missing_ones(cli, small_dataset, tmp_path):
    out = tmp_path / "out"
    first = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert first.code == 0
    assert "4 case(s) done (4 new, 0 reused)" in first.err
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()}

    second = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert second.code == 0
    assert "(0 new, 4 reused)" in second.err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()} == mtimes

    victim = sorted((out / "predictions").iterdir())[0]
    victim.unlink()
    third = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert "(1 new, 3 reused)" in third.err
    assert victim.is_file()
    ids, matrix, _ = read_embeddings(out / "embeddings.parquet")
    assert len(ids) == 4 and matrix.shape[0] == 4


def test_rerun_with_other_settings_needs_overwrite(cli, small_dataset, tmp_path):
    out = tmp_path / "out"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, out).code == 0
    refused = _predict(cli, SAMPLE_MODEL, small_dataset, out, "--disable-tta")
    assert refused.code == 2
    assert "use_mirroring changed" in refused.err and "--overwrite" in refused.err
    redone = _predict(cli, SAMPLE_MODEL, small_dataset, out, "--disable-tta", "--overwrite")
    assert redone.code == 0 and "(4 new, 0 reused)" in redone.err


def test_cached_embeddings_of_another_width_are_a_clear_error(cli, small_dataset, tmp_path):
    """An out folder whose per-case cache holds an embedding of another width (an older seg4seg
    recorded the bottleneck mean alone) is refused with a line naming the case and the fix."""
    out = tmp_path / "out"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, out).code == 0
    cached = sorted((out / "partial" / "embeddings").glob("*.npy"))[0]
    np.save(cached, np.zeros(64, np.float32))
    refused = _predict(cli, SAMPLE_MODEL, small_dataset, out)
    assert refused.code == 2
    assert "another width than this model's (240)" in refused.err
    assert cached.stem in refused.err and "--overwrite" in refused.err
    redone = _predict(cli, SAMPLE_MODEL, small_dataset, out, "--overwrite")
    assert redone.code == 0 and "(4 new, 0 reused)" in redone.err
    assert read_embeddings(out / "embeddings.parquet")[1].shape == (4, 240)


def test_parts_cover_every_case_once_and_match_nnunet_split():
    from nnunetv2.utilities.utils import get_identifiers_from_splitted_dataset_folder

    listing = find_cases(data_dir=SAMPLE_DATA, n_channels=1)
    nnunet_ids = list(
        get_identifiers_from_splitted_dataset_folder(str(SAMPLE_DATA / "imagesTs"), ENDING)
    )
    seen: list[str] = []
    for part in range(3):
        ours = [c.case_id for c in select_part(listing, 3, part).cases]
        assert ours == nnunet_ids[part::3]
        seen += ours
    assert sorted(seen) == sample_test_case_ids()


def test_sharded_runs_share_one_out_folder(cli, tmp_path):
    data = make_dataset(tmp_path / "raw", sample_test_case_ids()[:7])
    out = tmp_path / "out"
    for part in range(3):
        result = _predict(cli, SAMPLE_MODEL, data, out, "--num-parts", 3, "--part-id", part)
        assert result.code == 0, result.err
    predicted = sorted(p.name[: -len(ENDING)] for p in (out / "predictions").glob(f"*{ENDING}"))
    assert predicted == sample_test_case_ids()[:7]
    shard_ids = []
    for part in range(3):
        ids, _, _ = read_embeddings(out / "shards" / f"embeddings-part-{part:05d}-of-00003.parquet")
        shard_ids += ids
        record = json.loads((out / "shards" / f"run-part-{part:05d}-of-00003.json").read_text())
        assert sorted(record["steps"]["predict"]["cases_done"]) == ids
    assert sorted(shard_ids) == predicted
    assert not (out / "embeddings.parquet").exists()


def test_slurm_array_variables_choose_the_part(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert resolve_part(None, None) == (4, 2)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-4
    assert resolve_part(None, None) == (4, 3)
    assert resolve_part(2, 1) == (2, 1)


def test_model_given_as_fold_folder_or_pth_file_predicts_the_same(cli, small_dataset, tmp_path):
    outs = {}
    for name, model in {
        "results": SAMPLE_MODEL,
        "fold": SAMPLE_MODEL / "fold_0",
        "pth": SAMPLE_MODEL / "fold_0" / "checkpoint_final.pth",
    }.items():
        outs[name] = tmp_path / name
        assert _predict(cli, model, small_dataset, outs[name]).code == 0
    for case_id in (
        p.name[: -len(f"_0000{ENDING}")] for p in (small_dataset / "imagesTs").iterdir()
    ):
        np.testing.assert_array_equal(
            _prediction(outs["results"], case_id), _prediction(outs["fold"], case_id)
        )
        np.testing.assert_array_equal(
            _prediction(outs["results"], case_id), _prediction(outs["pth"], case_id)
        )


def test_all_folds_present_are_ensembled_and_embeddings_averaged(
    cli, small_dataset, model_copy, tmp_path
):
    shutil.copytree(model_copy / "fold_0", model_copy / "fold_1")
    one, two = tmp_path / "one", tmp_path / "two"
    assert _predict(cli, model_copy, small_dataset, one, "--folds", "0").code == 0
    assert _predict(cli, model_copy, small_dataset, two).code == 0
    record = json.loads((two / "run.json").read_text())
    assert record["steps"]["predict"]["settings"]["folds"] == ["0", "1"]
    # two identical folds: the ensemble equals one fold, and the embedding is a mean, not a sum
    _, single, _ = read_embeddings(one / "embeddings.parquet")
    _, double, _ = read_embeddings(two / "embeddings.parquet")
    np.testing.assert_allclose(double, single, rtol=1e-5, atol=1e-6)


def test_disable_tta_changes_the_embedding_passes(cli, small_dataset, tmp_path):
    with_tta, without = tmp_path / "tta", tmp_path / "notta"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, with_tta).code == 0
    assert _predict(cli, SAMPLE_MODEL, small_dataset, without, "--disable-tta").code == 0
    _, a, _ = read_embeddings(with_tta / "embeddings.parquet")
    _, b, _ = read_embeddings(without / "embeddings.parquet")
    assert a.shape == b.shape and not np.allclose(a, b)


def test_save_probabilities_writes_normalised_class_probabilities(cli, small_dataset, tmp_path):
    out = tmp_path / "out"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, out, "--save-probabilities").code == 0
    files = sorted((out / "predictions").glob("*.npz"))
    assert len(files) == 4
    probabilities = np.load(files[0])["probabilities"]
    assert probabilities.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-3)
    seg = _prediction(out, files[0].name[: -len(".npz")])
    np.testing.assert_array_equal(probabilities.argmax(0)[0], seg)


def test_stdout_stays_empty_and_progress_goes_to_stderr(cli, small_dataset, tmp_path):
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out")
    assert result.out == ""
    assert "predict: 4/4 cases (100%)" in result.err


def test_quiet_prints_only_the_summary(cli, small_dataset, tmp_path):
    result = cli(
        "-q",
        "predict",
        "-m",
        SAMPLE_MODEL,
        "-d",
        small_dataset,
        "-o",
        tmp_path / "o",
        "--device",
        "cpu",
    )
    assert result.code == 0
    assert result.err.strip().splitlines() == [result.err.strip().splitlines()[-1]]
    assert "4 case(s) done" in result.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_a_clear_error(cli, small_dataset, tmp_path):
    result = _predict(cli, SAMPLE_MODEL, small_dataset, tmp_path / "out", "--device", "cuda")
    assert result.code == 2
    assert "sees no CUDA device" in result.err and "--device cpu" in result.err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_cuda_predictions_agree_with_the_cpu(cli, small_dataset, tmp_path):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert _predict(cli, SAMPLE_MODEL, small_dataset, cpu).code == 0
    assert (
        cli("predict", "-m", SAMPLE_MODEL, "-d", small_dataset, "-o", gpu, "--device", "cuda").code
        == 0
    )
    for path in (cpu / "predictions").glob(f"*{ENDING}"):
        case_id = path.name[: -len(ENDING)]
        agree = (_prediction(cpu, case_id) == _prediction(gpu, case_id)).mean()
        assert agree > 0.99
    record = json.loads((gpu / "run.json").read_text())
    assert record["steps"]["predict"]["device"].startswith("cuda")
