"""Build the seg4seg sample data: a synthetic 2D nnU-Net v2 dataset with a planted failure subgroup.

Run from the repository root::

    .venv/bin/python sample_data/build.py                  # data + tiny model + evaluation
    .venv/bin/python sample_data/build.py --skip-training  # data only

What it writes (all under ``sample_data/``):

``Dataset990_Seg4SegSample/``
    nnU-Net v2 raw dataset: ``dataset.json``, 40 training cases (``imagesTr``/``labelsTr``) and
    80 test cases (``imagesTs``/``labelsTs``). Images are 64x64 int16 ``.nii.gz`` with 0.8x0.8 mm
    pixels; labels are uint8 (0 background, 1 structure).
``planted_subgroup.json``
    The 12 test cases that carry a failure mode never seen in training: a bright artefact right
    next to (never overlapping) the structure, with the structure's intensity and texture. A model
    trained on the clean cases segments the artefact too, so Dice drops on these cases.
``metadata.csv``
    ``case_id,site,scanner_model,age`` for the test cases. Ten of the twelve planted cases come
    from site C (its scanner produces the artefact); the other cases are spread over sites A/B/C.
``model/Dataset990_Seg4SegSample/nnUNetTrainer__nnUNetPlans__2d/``
    A standard nnU-Net results folder (``plans.json``, ``dataset.json``,
    ``fold_0/checkpoint_final.pth``) holding a tiny 2D U-Net trained on the CPU on the training
    cases only. The checkpoint is slim (weights, ``init_args``, ``trainer_name``,
    ``inference_allowed_mirroring_axes``) and loads with ``torch.load(..., weights_only=True)``.

The data are generated deterministically from ``SEED``; training is not bit-reproducible (nnU-Net's
augmentation and CPU kernels), so a rebuilt model gives slightly different Dice values.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------
SEED = 990
HERE = Path(__file__).resolve().parent
DATASET_ID = 990
DATASET_NAME = "Dataset990_Seg4SegSample"
DATASET_DIR = HERE / DATASET_NAME
MODEL_ROOT = HERE / "model"
MODEL_DIR = MODEL_ROOT / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__2d"
PLANTED_JSON = HERE / "planted_subgroup.json"
METADATA_CSV = HERE / "metadata.csv"
FILE_ENDING = ".nii.gz"

SIZE = 64  # image side length in pixels
SPACING = (0.8, 0.8)  # mm, identical for images and labels
N_TRAIN = 40
N_TEST = 80
N_PLANTED = 12
N_VAL = 4  # fold 0 validates on 4 training cases and trains on the other 36

# Sites and their scanners. The artefact comes from site C's scanner; two planted cases come from
# elsewhere so that site is a strong but imperfect description of the subgroup.
SCANNERS = {"A": "Aurora 3T", "B": "Borealis 1.5T", "C": "Cygnus 1.5T"}
PLANTED_SITES = ["C"] * 10 + ["A", "B"]
NORMAL_SITES = ["A"] * 28 + ["B"] * 26 + ["C"] * 14

# Tiny network and short schedule (CPU, about a minute).
FEATURES_PER_STAGE = [8, 16, 32, 64]
N_EPOCHS = 10
N_ITERATIONS_PER_EPOCH = 25
N_VAL_ITERATIONS_PER_EPOCH = 5
BATCH_SIZE = 12
TRAINER_NAME_IN_CHECKPOINT = "nnUNetTrainer"


# ----------------------------------------------------------------------------------------------
# Synthetic images
# ----------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), sigma, mode="wrap")
    return field / field.std()


def _ellipse(center: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    """Boolean mask of a rotated ellipse (centre in pixels, semi-axes in pixels, angle in rad)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    dy, dx = yy - center[0], xx - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def _random_ellipse(
    rng: np.random.Generator, axis_range: tuple[float, float], margin: float
) -> np.ndarray:
    """A random ellipse fully inside the image, at least ``margin`` pixels from the border."""
    axes = (rng.uniform(*axis_range), rng.uniform(*axis_range))
    reach = max(axes) + margin
    center = (rng.uniform(reach, SIZE - 1 - reach), rng.uniform(reach, SIZE - 1 - reach))
    return _ellipse(center, axes, rng.uniform(0, np.pi))


def _adjacent_artefact(rng: np.random.Generator, structure: np.ndarray) -> np.ndarray | None:
    """An ellipse at least 2-4 pixels (random) from ``structure``, or None if none fits."""
    distance_to_structure = ndimage.distance_transform_edt(~structure)
    cy, cx = np.argwhere(structure).mean(axis=0)
    for _ in range(50):
        axes = (rng.uniform(6.5, 12.0), rng.uniform(6.5, 12.0))
        angle = rng.uniform(0, np.pi)
        direction = rng.uniform(0, 2 * np.pi)
        gap = rng.uniform(2.0, 4.0)
        # Walk outwards from the structure's centre until the artefact keeps the desired gap.
        for step in np.arange(1.0, SIZE, 0.5):
            center = (cy + step * np.sin(direction), cx + step * np.cos(direction))
            reach = max(axes) + 2
            if not (
                reach <= center[0] <= SIZE - 1 - reach and reach <= center[1] <= SIZE - 1 - reach
            ):
                break
            mask = _ellipse(center, axes, angle)
            if distance_to_structure[mask].min() >= gap:
                return mask
    return None


def make_case(rng: np.random.Generator, with_artefact: bool) -> tuple[np.ndarray, np.ndarray]:
    """One 64x64 image (int16) and its label (uint8).

    Background: a slowly varying bias field, a mid-frequency "tissue" texture and white noise.
    Structure: a rotated ellipse of random size and position, brighter than the background, with its
    own fine texture and a slightly blurred edge. Artefact (planted cases only): a second ellipse
    with the same brightness and texture next to the structure; it is not part of the label.
    """
    while True:
        structure = _random_ellipse(rng, axis_range=(7.0, 13.0), margin=3.0)
        artefact = _adjacent_artefact(rng, structure) if with_artefact else None
        if artefact is not None or not with_artefact:
            break

    image = (
        400.0
        + 40.0 * _smooth_noise(rng, 10.0)
        + 25.0 * _smooth_noise(rng, 1.5)
        + 12.0 * rng.standard_normal((SIZE, SIZE))
    )
    bright = [structure] if artefact is None else [structure, artefact]
    for mask in bright:
        contrast = rng.uniform(140.0, 200.0)
        texture = 1.0 + 0.12 * _smooth_noise(rng, 1.0)
        image += contrast * texture * ndimage.gaussian_filter(mask.astype(float), 0.6)
    return np.round(image).astype(np.int16), structure.astype(np.uint8)


def _write_nifti(array: np.ndarray, path: Path) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(SPACING)
    sitk.WriteImage(img, str(path), useCompression=True)


def generate_data() -> dict:
    """Write the raw dataset, planted_subgroup.json and metadata.csv. Returns a small summary."""
    rng = np.random.default_rng(SEED)
    if DATASET_DIR.exists():
        shutil.rmtree(DATASET_DIR)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (DATASET_DIR / sub).mkdir(parents=True)

    dataset_json = {
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "structure": 1},
        "numTraining": N_TRAIN,
        "file_ending": FILE_ENDING,
        "name": DATASET_NAME,
        "description": "Synthetic 2D sample data for seg4seg (see sample_data/README.md).",
    }
    (DATASET_DIR / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")

    train_ids = [f"sample_{i:03d}" for i in range(N_TRAIN)]
    test_ids = [f"sample_{i:03d}" for i in range(N_TRAIN, N_TRAIN + N_TEST)]

    for case_id in train_ids:
        image, label = make_case(rng, with_artefact=False)
        _write_nifti(image, DATASET_DIR / "imagesTr" / f"{case_id}_0000{FILE_ENDING}")
        _write_nifti(label, DATASET_DIR / "labelsTr" / f"{case_id}{FILE_ENDING}")

    # Shuffled assignment: planted cases are scattered over the test ids.
    order = rng.permutation(N_TEST)
    planted = sorted(test_ids[i] for i in order[:N_PLANTED])
    planted_set = set(planted)
    for case_id in test_ids:
        image, label = make_case(rng, with_artefact=case_id in planted_set)
        _write_nifti(image, DATASET_DIR / "imagesTs" / f"{case_id}_0000{FILE_ENDING}")
        _write_nifti(label, DATASET_DIR / "labelsTs" / f"{case_id}{FILE_ENDING}")

    PLANTED_JSON.write_text(
        json.dumps(
            {
                "description": (
                    "Test cases with a planted failure mode never seen in training: a bright "
                    "artefact adjacent to (not overlapping) the structure, with the structure's "
                    "intensity and texture. 10 of the 12 come from site C. For tests only."
                ),
                "case_ids": planted,
            },
            indent=2,
        )
        + "\n"
    )

    planted_sites = list(rng.permutation(PLANTED_SITES))
    normal_sites = list(rng.permutation(NORMAL_SITES))
    with METADATA_CSV.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["case_id", "site", "scanner_model", "age"])
        for case_id in test_ids:
            site = str(planted_sites.pop() if case_id in planted_set else normal_sites.pop())
            writer.writerow([case_id, site, SCANNERS[site], int(rng.integers(25, 86))])

    return {"train": train_ids, "test": test_ids, "planted": planted}


# ----------------------------------------------------------------------------------------------
# Training (nnU-Net v2, in-process, CPU)
# ----------------------------------------------------------------------------------------------
def _shrink_plans(plans: dict) -> dict:
    """Keep only configuration '2d' and make its U-Net tiny (4 stages, 8..64 features)."""
    config = plans["configurations"]["2d"]
    n_stages = len(FEATURES_PER_STAGE)
    config["patch_size"] = [SIZE, SIZE]
    config["batch_size"] = BATCH_SIZE
    arch = config["architecture"]["arch_kwargs"]
    arch.update(
        n_stages=n_stages,
        features_per_stage=list(FEATURES_PER_STAGE),
        kernel_sizes=[[3, 3]] * n_stages,
        strides=[[1, 1]] + [[2, 2]] * (n_stages - 1),
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans["configurations"] = {"2d": config}
    return plans


def _plain(obj):
    """JSON round trip: turns numpy scalars and tuples into plain Python types."""
    return json.loads(json.dumps(obj))


def train_and_export() -> float:
    """Train the tiny model in a temporary nnU-Net tree and export a slim results folder.

    Returns the wall time of ``run_training`` in seconds.
    """
    tmp = Path(tempfile.mkdtemp(prefix="seg4seg_nnunet_"))
    try:
        raw = tmp / "raw" / DATASET_NAME
        raw.mkdir(parents=True)
        # Only the training half goes into nnU-Net's raw folder.
        shutil.copy(DATASET_DIR / "dataset.json", raw / "dataset.json")
        shutil.copytree(DATASET_DIR / "imagesTr", raw / "imagesTr")
        shutil.copytree(DATASET_DIR / "labelsTr", raw / "labelsTr")

        # nnunetv2.paths reads these at import time: set them before importing nnunetv2.
        os.environ["nnUNet_raw"] = str(tmp / "raw")
        os.environ["nnUNet_preprocessed"] = str(tmp / "preprocessed")
        os.environ["nnUNet_results"] = str(tmp / "results")
        os.environ.setdefault("nnUNet_def_n_proc", "2")
        os.environ["nnUNet_compile"] = "false"
        # nnUNet_n_proc_DA=0 must NOT be set yet: planning/preprocessing break with it.
        os.environ.pop("nnUNet_n_proc_DA", None)

        import torch
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        torch.set_num_threads(2)

        extract_fingerprint_dataset(
            DATASET_ID,
            num_processes=2,
            check_dataset_integrity=True,
            verbose=False,
            show_progress_bar=False,
        )
        plan_experiment_dataset(DATASET_ID)
        preprocessed = tmp / "preprocessed" / DATASET_NAME
        plans_file = preprocessed / "nnUNetPlans.json"
        plans = _shrink_plans(json.loads(plans_file.read_text()))
        plans_file.write_text(json.dumps(plans, indent=4))
        preprocess_dataset(
            DATASET_ID, configurations=("2d",), num_processes=[2], show_progress_bar=False
        )

        # Fold 0: 36 training cases, 4 validation cases.
        ids = sorted(p.name[: -len(FILE_ENDING)] for p in (raw / "labelsTr").iterdir())
        val = ids[-N_VAL:]
        splits = [{"train": [i for i in ids if i not in val], "val": val}]
        (preprocessed / "splits_final.json").write_text(json.dumps(splits, indent=2))

        # Augmentation in the main process only (no worker processes).
        os.environ["nnUNet_n_proc_DA"] = "0"

        class TinyTrainer(nnUNetTrainer):
            """nnUNetTrainer with a CPU-sized schedule."""

            def __init__(
                self, plans, configuration, fold, dataset_json, device=torch.device("cpu")
            ):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.num_epochs = N_EPOCHS
                self.num_iterations_per_epoch = N_ITERATIONS_PER_EPOCH
                self.num_val_iterations_per_epoch = N_VAL_ITERATIONS_PER_EPOCH
                self.save_every = 10**6  # no intermediate checkpoints

        np.random.seed(SEED)
        torch.manual_seed(SEED)
        dataset_json = json.loads((raw / "dataset.json").read_text())
        trainer_plans = json.loads(plans_file.read_text())
        trainer_plans["continue_training"] = False  # the trainer pops this key
        trainer = TinyTrainer(trainer_plans, "2d", 0, dataset_json, device=torch.device("cpu"))
        start = time.perf_counter()
        trainer.run_training()  # no final validation/export: that is a separate call in nnU-Net
        seconds = time.perf_counter() - start

        # Slim, weights_only-loadable export.
        if MODEL_ROOT.exists():
            shutil.rmtree(MODEL_ROOT)
        (MODEL_DIR / "fold_0").mkdir(parents=True)
        (MODEL_DIR / "plans.json").write_text(
            json.dumps(trainer.plans_manager.plans, indent=4) + "\n"
        )
        (MODEL_DIR / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")
        network = trainer.network
        network = getattr(network, "_orig_mod", network)
        checkpoint = {
            # No copies: PlainConvUNet's decoder references the encoder, so encoder weights appear
            # twice in the state dict; sharing their storage keeps the file at half the size.
            "network_weights": network.state_dict(),
            "init_args": {
                "plans": _plain(trainer.plans_manager.plans),
                "configuration": "2d",
                "fold": 0,
                "dataset_json": _plain(dataset_json),
                "device": torch.device("cpu"),
            },
            "trainer_name": TRAINER_NAME_IN_CHECKPOINT,
            "inference_allowed_mirroring_axes": tuple(
                int(a) for a in trainer.inference_allowed_mirroring_axes
            ),
        }
        path = MODEL_DIR / "fold_0" / "checkpoint_final.pth"
        torch.save(checkpoint, path)
        torch.load(path, map_location="cpu", weights_only=True)  # must not raise
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Evaluation with nnU-Net's own predictor
# ----------------------------------------------------------------------------------------------
def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    denom = pred.sum() + ref.sum()
    return float("nan") if denom == 0 else 2.0 * float(np.logical_and(pred, ref).sum()) / denom


def evaluate() -> dict:
    """Predict imagesTs with the exported model and return per-case Dice and group means."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(2)
    planted = set(json.loads(PLANTED_JSON.read_text())["case_ids"])
    with tempfile.TemporaryDirectory(prefix="seg4seg_pred_") as out:
        predictor = nnUNetPredictor(
            device=torch.device("cpu"),
            perform_everything_on_device=False,
            verbose=False,
            verbose_preprocessing=False,
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(MODEL_DIR), use_folds=(0,))
        # The sequential API prints one line per case; keep the build output readable.
        with contextlib.redirect_stdout(io.StringIO()):
            predictor.predict_from_files_sequential(str(DATASET_DIR / "imagesTs"), out)
        dice = {}
        for ref_path in sorted((DATASET_DIR / "labelsTs").iterdir()):
            case_id = ref_path.name[: -len(FILE_ENDING)]
            ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_path))) > 0
            pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(out) / ref_path.name))) > 0
            dice[case_id] = _dice(pred, ref)
    normal = [v for k, v in dice.items() if k not in planted]
    planted_values = [v for k, v in dice.items() if k in planted]
    return {
        "per_case": dice,
        "normal_mean": float(np.nanmean(normal)),
        "normal_min": float(np.nanmin(normal)),
        "planted_mean": float(np.nanmean(planted_values)),
        "planted_max": float(np.nanmax(planted_values)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-training",
        action="store_true",
        help="regenerate the data only; keep the existing model folder",
    )
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    summary = generate_data()
    print(
        f"data: {len(summary['train'])} training, {len(summary['test'])} test cases "
        f"({len(summary['planted'])} planted) in {time.perf_counter() - t0:.1f} s"
    )
    if args.skip_training:
        return 0

    seconds = train_and_export()
    print(f"training: {seconds:.1f} s; model exported to {MODEL_DIR.relative_to(HERE.parent)}")
    result = evaluate()
    gap = result["normal_mean"] - result["planted_mean"]
    print(
        f"mean Dice: normal {result['normal_mean']:.3f} (n={N_TEST - N_PLANTED}), "
        f"planted {result['planted_mean']:.3f} (n={N_PLANTED}), gap {gap:.3f}; "
        f"lowest normal {result['normal_min']:.3f}, highest planted {result['planted_max']:.3f}"
    )
    print(f"total build time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
