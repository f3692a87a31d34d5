"""The 3-D sample (a 3d_fullres nnU-Net on anisotropic volumes) end to end, with the real nnU-Net:
predictions and probabilities against `nnUNetPredictor`, the embedding's passes against nnU-Net's
tile count, features against independent references, the report's slices, sharding, discovery."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk
import torch
from conftest import REPO, SAMPLE, make_dataset
from PIL import Image
from test_metrics import monai_end_to_end, reference_overlap

from seg4seg_cli.embeddings_store import read_embeddings

MODEL = SAMPLE / "model" / "Dataset992_Seg4Seg3D" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
ENDING = ".nii.gz"
LABELS = ("organ", "lesion")


def _array(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The 3-D test set, written by the committed build script exactly as `make demo-3d` does."""
    folder = tmp_path_factory.mktemp("sample3d") / "data"
    subprocess.run(
        [sys.executable, str(SAMPLE / "build_3d.py"), "--data", str(folder)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return folder


@pytest.fixture(scope="module")
def case_ids(data):
    return sorted(p.name[: -len(f"_0000{ENDING}")] for p in (data / "imagesTs").iterdir())


@pytest.fixture(scope="module")
def planted(data):
    return set(json.loads((data / "planted_subgroup.json").read_text())["case_ids"])


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """predict (with probabilities), features and discover on the whole 3-D test set."""
    from seg4seg_cli import console
    from seg4seg_cli.cli import main

    out = tmp_path_factory.mktemp("run3d") / "out"
    console.settings.quiet = True
    try:
        for args in (
            [
                "predict",
                "-m",
                MODEL,
                "-d",
                data,
                "-o",
                out,
                "--device",
                "cpu",
                "--save-probabilities",
            ],
            ["features", "-d", data, "-o", out],
            ["discover", out],
            ["report", out, "--format", "html"],
        ):
            with pytest.raises(SystemExit) as exit_info:
                main([str(a) for a in args])
            assert exit_info.value.code == 0, args
    finally:
        console.settings.quiet = False
    return out


def test_the_sample_is_anisotropic_and_resampled_by_nnunet(data, case_ids):
    plans = json.loads((MODEL / "plans.json").read_text())
    target = plans["configurations"]["3d_fullres"]["spacing"]
    spacings = {
        tuple(sitk.ReadImage(str(p)).GetSpacing()[::-1]) for p in (data / "imagesTs").iterdir()
    }
    assert all(s[0] / s[1] >= 2.2 for s in spacings)  # slices 2-3 mm, pixels 0.7-0.9 mm
    assert sum(not np.allclose(s, target) for s in spacings) >= 3  # most are resampled
    assert set(np.unique(_array(data / "labelsTs" / f"{case_ids[0]}{ENDING}"))) == {0, 1, 2}


def test_predictions_and_probabilities_equal_nnunet_predictor(run, data, case_ids, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    subset = case_ids[::3]  # 20 volumes, of every spacing
    reference = tmp_path / "nnunet"
    reference.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(MODEL), use_folds=(0,))
        predictor.predict_from_files_sequential(
            [[str(data / "imagesTs" / f"{c}_0000{ENDING}")] for c in subset],
            str(reference),
            save_probabilities=True,
        )
    for case_id in subset:
        ours = sitk.ReadImage(str(run / "predictions" / f"{case_id}{ENDING}"))
        theirs = sitk.ReadImage(str(reference / f"{case_id}{ENDING}"))
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs), err_msg=case_id
        )
        assert ours.GetSpacing() == theirs.GetSpacing() and ours.GetOrigin() == theirs.GetOrigin()
        with (
            np.load(run / "predictions" / f"{case_id}.npz") as a,
            np.load(reference / f"{case_id}.npz") as b,
        ):
            np.testing.assert_array_equal(a["probabilities"], b["probabilities"], err_msg=case_id)


def test_model_is_worse_on_the_planted_subgroup(run, planted):
    rows = pq.read_table(run / "cases.parquet").to_pandas().set_index("case_id")
    inside = rows.index.isin(planted)
    assert rows.loc[~inside, "dice__organ"].mean() > 0.8
    assert rows.loc[inside, "dice__organ"].mean() < rows.loc[~inside, "dice__organ"].mean() - 0.1


def _folds_model(tmp_path):
    """A copy of the model with a second fold whose bottleneck weights differ (noise added)."""
    model = tmp_path / MODEL.name
    shutil.copytree(MODEL, model)
    shutil.copytree(model / "fold_0", model / "fold_1")
    checkpoint = torch.load(model / "fold_1" / "checkpoint_final.pth", weights_only=True)
    noise = torch.Generator().manual_seed(0)
    for name, weights in checkpoint["network_weights"].items():
        # in place: the decoder's reference to the encoder shares these tensors
        if name.startswith("encoder.stages.3") and name.endswith("conv.weight"):
            weights.add_(0.3 * weights.std() * torch.randn(weights.shape, generator=noise))
    torch.save(checkpoint, model / "fold_1" / "checkpoint_final.pth")
    return model


def test_embedding_pools_every_stage_over_tiles_mirrors_and_folds(data, case_ids, tmp_path):
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    from seg4seg_cli.model_folder import resolve_model
    from seg4seg_cli.nnunet_adapter import NnunetModel

    model = NnunetModel(resolve_model(_folds_model(tmp_path), None), torch.device("cpu"))
    stages = list(model.predictor.network.encoder.stages)
    # an independent record: every output of every stage, pooled by mean and by maximum
    seen: list[list[torch.Tensor]] = [[] for _ in stages]
    for k, stage in enumerate(stages):
        stage.register_forward_hook(
            lambda module, inputs, output, k=k: seen[k].extend(
                torch.cat([item.float().mean((1, 2, 3)), item.float().amax((1, 2, 3))])
                for item in output.detach()
            )
        )
    patch = model.configuration_manager.patch_size
    n_mirrors = 2 ** len(model.predictor.allowed_mirroring_axes)
    for case_id in case_ids[:2]:
        files = (data / "imagesTs" / f"{case_id}_0000{ENDING}",)
        preprocessed, _ = model.preprocess(*model.read_case(files))
        steps = compute_steps_for_sliding_window(preprocessed.shape[1:], patch, 0.5)
        n_tiles = int(np.prod([len(s) for s in steps]))
        assert n_tiles >= 4, "the sample must need several tiles"
        for record in seen:
            record.clear()
        prediction = model.predict_files(files)
        expected = []
        for record in seen:
            assert len(record) == n_tiles * n_mirrors * 2  # two folds
            per_fold = torch.stack(record).reshape(2, -1, record[0].numel()).mean(1)
            expected.append(per_fold.mean(0))
        assert not torch.allclose(per_fold[0], per_fold[1])  # the folds differ (bottleneck)
        np.testing.assert_allclose(prediction.embedding, torch.cat(expected).numpy(), rtol=1e-5)
        assert prediction.embedding.size == 2 * sum(model.predictor.network.encoder.output_channels)


def test_features_on_anisotropic_volumes_match_independent_references(run, data, case_ids):
    rows = pq.read_table(run / "cases.parquet").to_pandas().set_index("case_id")
    for case_id in case_ids[:6]:
        image = sitk.ReadImage(str(data / "labelsTs" / f"{case_id}{ENDING}"))
        spacing = image.GetSpacing()[::-1]
        ref = sitk.GetArrayFromImage(image)
        pred = _array(run / "predictions" / f"{case_id}{ENDING}")
        assert rows.loc[case_id, "spacing_z"] == pytest.approx(spacing[0])
        for value, name in enumerate(LABELS, start=1):
            r, p = ref == value, pred == value
            expected = reference_overlap(r, p, spacing)
            if r.any() and p.any():
                expected |= monai_end_to_end(r, p, spacing, 1.0)
            for metric, number in expected.items():
                assert rows.loc[case_id, f"{metric}__{name}"] == pytest.approx(number, rel=1e-5), (
                    case_id,
                    metric,
                    name,
                )


def test_uncertainty_columns_come_from_the_saved_probabilities(run, case_ids):
    rows = pq.read_table(run / "cases.parquet").to_pandas().set_index("case_id")
    assert rows["entropy_mean"].notna().all() and rows["entropy_in_pred"].notna().all()
    case_id = case_ids[0]
    with np.load(run / "predictions" / f"{case_id}.npz") as archive:
        p = archive["probabilities"].astype(np.float64)
    entropy = -(p * np.log(np.clip(p, 1e-12, 1))).sum(0) / np.log(p.shape[0])
    predicted = _array(run / "predictions" / f"{case_id}{ENDING}") > 0
    assert rows.loc[case_id, "entropy_mean"] == pytest.approx(entropy.mean(), rel=1e-6)
    assert rows.loc[case_id, "entropy_in_pred"] == pytest.approx(
        entropy[predicted].mean(), rel=1e-6
    )


def _tiles(html: str) -> list[tuple[str, int, np.ndarray]]:
    """(case id, slice shown, palette indices) of every case tile in a report."""
    found = []
    for src, case_id, z in re.findall(
        r'<img src="data:image/png;base64,([^"]+)" alt="([^":]+): contours and error map '
        r'\(slice z=(\d+)\)"',
        html,
    ):
        with Image.open(io.BytesIO(base64.b64decode(src))) as png:
            found.append((case_id, int(z), np.asarray(png)))
    return found


def test_report_shows_each_cases_worst_slice_with_contours_in_place(run, data):
    from seg4seg_cli.report_html import _REF, TILE_GAP_PX

    tiles = _tiles((run / "report.html").read_text())
    assert len(tiles) >= 3
    for case_id, z, pixels in tiles:
        ref = _array(data / "labelsTs" / f"{case_id}{ENDING}")
        pred = _array(run / "predictions" / f"{case_id}{ENDING}")
        assert z == int((ref != pred).sum(axis=(1, 2)).argmax()), case_id
        panel = pixels[:, : (pixels.shape[1] - TILE_GAP_PX) // 2]
        rows, cols = np.nonzero(panel == _REF)
        assert rows.size > 0, case_id
        # every reference-contour pixel lies on the reference of that slice, at its place
        y = ((rows + 0.5) * ref.shape[1] / panel.shape[0]).astype(int)
        x = ((cols + 0.5) * ref.shape[2] / panel.shape[1]).astype(int)
        assert (ref[z][y, x] > 0).all(), case_id


def test_sharded_predict_and_features_merge_to_the_single_run(run, data, case_ids, tmp_path):
    from seg4seg_cli import console
    from seg4seg_cli.cli import main

    subset = case_ids[::6]  # 10 volumes
    small = make_dataset(tmp_path, subset, "data", source=data)
    out = tmp_path / "out"
    console.settings.quiet = True
    try:
        commands = []
        for part in (0, 1):
            shard = ["-d", small, "-o", out, "--num-parts", 2, "--part-id", part]
            commands += [
                ["predict", "-m", MODEL, "--device", "cpu", "--save-probabilities", *shard],
                ["features", *shard],
            ]
        for args in [*commands, ["merge", out]]:
            with pytest.raises(SystemExit) as exit_info:
                main([str(a) for a in args])
            assert exit_info.value.code == 0, args
    finally:
        console.settings.quiet = False
    merged = pq.read_table(out / "cases.parquet").to_pandas().set_index("case_id")
    single = pq.read_table(run / "cases.parquet").to_pandas().set_index("case_id")
    assert list(merged.index) == subset
    pd.testing.assert_frame_equal(merged, single.loc[subset], check_exact=True)
    ids, matrix, _ = read_embeddings(out / "embeddings.parquet")
    all_ids, all_matrix, _ = read_embeddings(run / "embeddings.parquet")
    np.testing.assert_array_equal(matrix, all_matrix[[all_ids.index(c) for c in ids]])


def test_discovery_puts_the_planted_subgroup_first_or_second(run, planted):
    subgroups = json.loads((run / "subgroups.json").read_text())["subgroups"]
    precision = [np.mean([c in planted for c in g["case_ids"][:10]]) for g in subgroups[:2]]
    assert max(precision) >= 0.8, [(g["id"], g["size"], g["case_ids"][:10]) for g in subgroups]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_cuda_predictions_equal_nnunet_predictor_on_cuda(cli, data, case_ids, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    small = make_dataset(tmp_path, case_ids[:6], "data", source=data)
    out, reference = tmp_path / "out", tmp_path / "nnunet"
    reference.mkdir()
    result = cli("predict", "-m", MODEL, "-d", small, "-o", out, "--device", "cuda")
    assert result.code == 0, result.err
    with contextlib.redirect_stdout(io.StringIO()):
        predictor = nnUNetPredictor(device=torch.device("cuda"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(MODEL), use_folds=(0,))
        predictor.predict_from_files_sequential(str(small / "imagesTs"), str(reference))
    for case_id in case_ids[:6]:
        np.testing.assert_array_equal(
            _array(out / "predictions" / f"{case_id}{ENDING}"),
            _array(reference / f"{case_id}{ENDING}"),
            err_msg=case_id,
        )
