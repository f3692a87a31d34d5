"""nnU-Net's own predictor on a dataset's test cases, for the build scripts' Dice summaries.

`sample_data/build.py` and `sample_data/build_3d.py` check what they trained with the predictor
users would run, not with seg4seg (whose equality with it the tests check separately).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
    denom = pred.sum() + ref.sum()
    return float("nan") if denom == 0 else 2.0 * float(np.logical_and(pred, ref).sum()) / denom


def nnunet_label_maps(
    model_dir: Path, dataset_dir: Path, file_ending: str
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(case id, reference, prediction) for every case of `dataset_dir/labelsTs`, predicted from
    `imagesTs` by `nnUNetPredictor` (fold 0, CPU, its default mirroring and step size)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="seg4seg_pred_") as out:
        predictor = nnUNetPredictor(
            device=torch.device("cpu"),
            perform_everything_on_device=False,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=(0,))
        # the sequential API prints one line per case; keep the build output readable
        with contextlib.redirect_stdout(io.StringIO()):
            predictor.predict_from_files_sequential(str(Path(dataset_dir) / "imagesTs"), out)
        for ref_path in sorted((Path(dataset_dir) / "labelsTs").iterdir()):
            case_id = ref_path.name[: -len(file_ending)]
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_path)))
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(out) / ref_path.name)))
            yield case_id, ref, pred
