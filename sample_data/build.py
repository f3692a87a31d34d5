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
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seg4seg_cli.bench import evaluate as evaluation
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
def evaluate(model_dir: Path = MODEL_DIR, dataset_dir: Path = DATASET_DIR) -> dict:
    """Predict imagesTs with an exported model and return per-case Dice and group means."""
    planted = set(json.loads(PLANTED_JSON.read_text())["case_ids"])
    dice = {
        case_id: evaluation.dice(pred > 0, ref > 0)
        for case_id, ref, pred in evaluation.nnunet_label_maps(model_dir, dataset_dir, FILE_ENDING)
    }
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
# `seg4seg compare`'s sample: a candidate model, and a test set with a new site
# ----------------------------------------------------------------------------------------------
CANDIDATE_NAME = "Dataset991_Seg4SegCandidate"
CANDIDATE_DIR = MODEL_ROOT / CANDIDATE_NAME / "nnUNetTrainer__nnUNetPlans__2d"
CANDIDATE_SEED = 991
CANDIDATE_EPOCHS = 30  # the baseline had 10: the candidate is better where it was not biased
N_CANDIDATE_PLAIN = 70
N_CANDIDATE_SITE_D = 25  # striped structures (site D's reconstruction), traced TIGHT_PX inside
TIGHT_PX = 2
COMPARE_SEED = 992
N_COMPARE_SITE_D = 24


def generate_candidate_training(folder: Path) -> Path:
    """The candidate's training set: more plain cases than the baseline's, and site D's striped
    structures, whose annotator traced every edge TIGHT_PX inside (the candidate learns to
    under-segment striped structures)."""
    rng = np.random.default_rng(CANDIDATE_SEED)
    dataset = folder / CANDIDATE_NAME
    for sub in ("imagesTr", "labelsTr"):
        (dataset / sub).mkdir(parents=True)
    n_cases = N_CANDIDATE_PLAIN + N_CANDIDATE_SITE_D
    dataset_json = json.loads((DATASET_DIR / "dataset.json").read_text())
    dataset_json.update(name=CANDIDATE_NAME, numTraining=n_cases)
    (dataset / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")
    for i in range(n_cases):
        site_d = i >= N_CANDIDATE_PLAIN
        look = Look(stripes=True, erode_label=TIGHT_PX) if site_d else Look()
        image, label = make_case(rng, look)
        write_nifti(image, dataset / "imagesTr" / f"candidate_{i:03d}_0000{FILE_ENDING}")
        write_nifti(label, dataset / "labelsTr" / f"candidate_{i:03d}{FILE_ENDING}")
    return dataset


def write_compare_data(folder: Path) -> list[str]:
    """The test set of `make demo-compare`, generated (not stored): the sample's 200 test cases
    and N_COMPARE_SITE_D cases of a new site D (striped structures, clean references). Returns the
    site D case ids: where the candidate regresses."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("imagesTs", "labelsTs"):
        shutil.copytree(DATASET_DIR / sub, folder / sub)
    shutil.copy(DATASET_DIR / "dataset.json", folder / "dataset.json")
    rng = np.random.default_rng(COMPARE_SEED)
    site_d = [f"site_d_{i:03d}" for i in range(N_COMPARE_SITE_D)]
    for case_id in site_d:
        image, label = make_case(rng, Look(stripes=True))
        write_nifti(image, folder / "imagesTs" / f"{case_id}_0000{FILE_ENDING}")
        write_nifti(label, folder / "labelsTs" / f"{case_id}{FILE_ENDING}")
    (folder / "planted_regression.json").write_text(
        json.dumps({"description": "site D: striped structures", "case_ids": site_d}, indent=2)
        + "\n"
    )
    return site_d


def build_candidate() -> None:
    """Train the candidate in a fresh process (nnU-Net reads its folder variables at import)
    and compare it with the baseline on the generated compare test set."""
    with tempfile.TemporaryDirectory(prefix="seg4seg_candidate_") as tmp:
        dataset = generate_candidate_training(Path(tmp))
        command = [
            sys.executable,
            "-m",
            "seg4seg_cli.bench.train",
            str(dataset),
            str(CANDIDATE_DIR),
        ]
        options = ["--seed", str(CANDIDATE_SEED), "--epochs", str(CANDIDATE_EPOCHS)]
        subprocess.run(command + options, check=True)
        data = Path(tmp) / "compare_data"
        site_d = set(write_compare_data(data))
        planted = set(json.loads(PLANTED_JSON.read_text())["case_ids"])
        for name, model in (("baseline", MODEL_DIR), ("candidate", CANDIDATE_DIR)):
            values = evaluate(model, data)["per_case"]
            groups = {
                "all": list(values.values()),
                "site D": [v for k, v in values.items() if k in site_d],
                "artefact": [v for k, v in values.items() if k in planted],
                "others": [v for k, v in values.items() if k not in site_d | planted],
            }
            print(f"{name}: " + ", ".join(f"{k} {np.nanmean(v):.3f}" for k, v in groups.items()))


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
        help="rebuild only the candidate model of `seg4seg compare`",
    )
    parser.add_argument(
        "--compare-data",
        type=Path,
        metavar="DIR",
        help="write the test set of `make demo-compare` into DIR and stop",
    )
    args = parser.parse_args(argv)
    if args.compare_data is not None:
        print(f"compare test set: {len(write_compare_data(args.compare_data))} site D cases added")
        return 0
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
