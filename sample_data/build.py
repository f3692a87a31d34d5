"""Build the seg4seg sample data: a synthetic 2D nnU-Net v2 dataset with a planted failure subgroup.

Run from the repository root::

    .venv/bin/python sample_data/build.py                  # data + tiny model + evaluation
    .venv/bin/python sample_data/build.py --skip-training  # data only

What it writes (all under ``sample_data/``):

``Dataset990_Seg4SegSample/``
    nnU-Net v2 raw dataset: ``dataset.json``, 40 training cases (``imagesTr``/``labelsTr``) and
    200 test cases (``imagesTs``/``labelsTs``). Images are 64x64 int16 ``.nii.gz`` with 0.8x0.8 mm
    pixels; labels are uint8 (0 background, 1 structure).
``planted_subgroup.json``
    The 30 test cases (15%) that carry a failure mode never seen in training: a bright artefact right
    next to (never overlapping) the structure, with the structure's intensity and texture. A model
    trained on the clean cases segments the artefact too, so Dice drops on these cases.
``metadata.csv``
    ``case_id,site,scanner_model,age`` for the test cases. 25 of the 30 planted cases come
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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from seg4seg_cli.bench import train
from seg4seg_cli.bench.synthetic import FILE_ENDING, Look, make_case, write_nifti

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

N_TRAIN = 40
N_TEST = 200
N_PLANTED = 30

# Sites and their scanners. The artefact comes from site C's scanner; five planted cases come from
# elsewhere so that site is a strong but imperfect description of the subgroup.
SCANNERS = {"A": "Aurora 3T", "B": "Borealis 1.5T", "C": "Cygnus 1.5T"}
PLANTED_SITES = ["C"] * 25 + ["A"] * 3 + ["B"] * 2
NORMAL_SITES = ["A"] * 70 + ["B"] * 65 + ["C"] * 35


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
        image, label = make_case(rng, Look())
        write_nifti(image, DATASET_DIR / "imagesTr" / f"{case_id}_0000{FILE_ENDING}")
        write_nifti(label, DATASET_DIR / "labelsTr" / f"{case_id}{FILE_ENDING}")

    # Shuffled assignment: planted cases are scattered over the test ids.
    order = rng.permutation(N_TEST)
    planted = sorted(test_ids[i] for i in order[:N_PLANTED])
    planted_set = set(planted)
    for case_id in test_ids:
        image, label = make_case(rng, Look(artefact=case_id in planted_set))
        write_nifti(image, DATASET_DIR / "imagesTs" / f"{case_id}_0000{FILE_ENDING}")
        write_nifti(label, DATASET_DIR / "labelsTs" / f"{case_id}{FILE_ENDING}")

    PLANTED_JSON.write_text(
        json.dumps(
            {
                "description": (
                    "Test cases with a planted failure mode never seen in training: a bright "
                    "artefact adjacent to (not overlapping) the structure, with the structure's "
                    "intensity and texture. 25 of the 30 come from site C. For tests only."
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
# Evaluation with nnU-Net's own predictor
# ----------------------------------------------------------------------------------------------
def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    denom = pred.sum() + ref.sum()
    return float("nan") if denom == 0 else 2.0 * float(np.logical_and(pred, ref).sum()) / denom


def evaluate(model_dir: Path = MODEL_DIR) -> dict:
    """Predict imagesTs with an exported model and return per-case Dice and group means."""
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
        predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=(0,))
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


# ----------------------------------------------------------------------------------------------
# The candidate model of `seg4seg compare`: better on average, worse on large structures
# ----------------------------------------------------------------------------------------------
CANDIDATE_NAME = "Dataset991_Seg4SegCandidate"
CANDIDATE_DIR = MODEL_ROOT / CANDIDATE_NAME / "nnUNetTrainer__nnUNetPlans__2d"
REGRESSION_JSON = HERE / "planted_regression.json"
CANDIDATE_SEED = 991
N_CANDIDATE_PLAIN = 40
N_CANDIDATE_ARTEFACT = 20
LARGE_AREA_PX = 400  # structures at least this large were traced tightly (label eroded)
TIGHT_PX = 2


def generate_candidate_training(folder: Path) -> Path:
    """The candidate's training set: the baseline's kind of cases plus artefact cases labelled
    without the artefact (it learns to ignore it: better on site C), but a biased annotator traced
    every large structure TIGHT_PX inside its edge (it learns to under-segment them)."""
    rng = np.random.default_rng(CANDIDATE_SEED)
    dataset = folder / CANDIDATE_NAME
    for sub in ("imagesTr", "labelsTr"):
        (dataset / sub).mkdir(parents=True)
    n_cases = N_CANDIDATE_PLAIN + N_CANDIDATE_ARTEFACT
    dataset_json = json.loads((DATASET_DIR / "dataset.json").read_text())
    dataset_json.update(name=CANDIDATE_NAME, numTraining=n_cases)
    (dataset / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")
    yy, xx = np.mgrid[-TIGHT_PX : TIGHT_PX + 1, -TIGHT_PX : TIGHT_PX + 1]
    tight = yy**2 + xx**2 <= TIGHT_PX**2
    for i in range(n_cases):
        image, label = make_case(rng, Look(artefact=i >= N_CANDIDATE_PLAIN))
        if label.sum() >= LARGE_AREA_PX:
            label = ndimage.binary_erosion(label > 0, tight).astype(np.uint8)
        write_nifti(image, dataset / "imagesTr" / f"candidate_{i:03d}_0000{FILE_ENDING}")
        write_nifti(label, dataset / "labelsTr" / f"candidate_{i:03d}{FILE_ENDING}")
    return dataset


def write_planted_regression() -> list[str]:
    """The test cases whose structure is large: where the candidate is expected to regress."""
    large = []
    for path in sorted((DATASET_DIR / "labelsTs").glob(f"*{FILE_ENDING}")):
        if sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(bool).sum() >= LARGE_AREA_PX:
            large.append(path.name[: -len(FILE_ENDING)])
    description = (
        f"Test cases whose structure covers at least {LARGE_AREA_PX} pixels: the candidate model "
        f"was trained on labels of large structures traced {TIGHT_PX} px inside their edge, so it "
        "under-segments them, while it learnt to ignore site C's artefact. For tests only."
    )
    REGRESSION_JSON.write_text(
        json.dumps({"description": description, "case_ids": large}, indent=2) + "\n"
    )
    return large


def build_candidate() -> None:
    """Train the candidate in a fresh process (nnU-Net reads its folder variables at import)."""
    with tempfile.TemporaryDirectory(prefix="seg4seg_candidate_") as tmp:
        dataset = generate_candidate_training(Path(tmp))
        command = [
            sys.executable,
            "-m",
            "seg4seg_cli.bench.train",
            str(dataset),
            str(CANDIDATE_DIR),
        ]
        subprocess.run(command + ["--seed", str(CANDIDATE_SEED)], check=True)
    large = write_planted_regression()
    baseline, candidate = evaluate(MODEL_DIR), evaluate(CANDIDATE_DIR)
    group = set(large)
    for name, result in (("baseline", baseline), ("candidate", candidate)):
        values = result["per_case"]
        inside = np.nanmean([v for k, v in values.items() if k in group])
        print(
            f"{name}: mean Dice {np.nanmean(list(values.values())):.3f}, planted artefact "
            f"{result['planted_mean']:.3f}, large structures {inside:.3f} (n={len(group)})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-training",
        action="store_true",
        help="regenerate the data only; keep the existing model folder",
    )
    parser.add_argument(
        "--candidate-only",
        action="store_true",
        help="rebuild only the candidate model of `seg4seg compare` (and planted_regression.json)",
    )
    args = parser.parse_args(argv)
    if args.candidate_only:
        build_candidate()
        return 0

    t0 = time.perf_counter()
    summary = generate_data()
    print(
        f"data: {len(summary['train'])} training, {len(summary['test'])} test cases "
        f"({len(summary['planted'])} planted) in {time.perf_counter() - t0:.1f} s"
    )
    if args.skip_training:
        return 0

    # in-process: the same tiny model and schedule as `seg4seg bench` (seg4seg_cli/bench/train.py)
    seconds = train.train_and_export(DATASET_DIR, MODEL_DIR, seed=SEED)
    print(f"training: {seconds:.1f} s; model exported to {MODEL_DIR.relative_to(HERE.parent)}")
    result = evaluate()
    gap = result["normal_mean"] - result["planted_mean"]
    print(
        f"mean Dice: normal {result['normal_mean']:.3f} (n={N_TEST - N_PLANTED}), "
        f"planted {result['planted_mean']:.3f} (n={N_PLANTED}), gap {gap:.3f}; "
        f"lowest normal {result['normal_min']:.3f}, highest planted {result['planted_max']:.3f}"
    )
    build_candidate()
    print(f"total build time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
