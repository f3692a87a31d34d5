"""Build the seg4seg 3-D sample: a tiny 3d_fullres nnU-Net v2 and the generator of its test set.

Run from the repository root::

    .venv/bin/python sample_data/build_3d.py               # train the model, then evaluate it
    .venv/bin/python sample_data/build_3d.py --data DIR    # write the test set into DIR and stop

Only the model is stored, under ``sample_data/model/Dataset992_Seg4Seg3D/
nnUNetTrainer__nnUNetPlans__3d_fullres/`` (``plans.json``, ``dataset.json``,
``fold_0/checkpoint_final.pth``). The volumes are ~120 kB each, so the test set is generated on
demand (``make demo-3d``, the tests) in about a second, byte-identical on every run.

The cases (``seg4seg_cli/bench/synthetic3d.py``) are anisotropic volumes, 40 x 44.8 x 44.8 mm at a
spacing drawn per case from 2.0/2.5/3.0 mm slices and 0.7/0.8/0.9 mm pixels, with two labels: an
organ (1) and a lesion inside it (2). nnU-Net resamples most of them to its target spacing
(2.0 x 0.8 x 0.8 mm), and its sliding window needs 8 tiles of 16 x 40 x 40 voxels per case. ``N_PLANTED`` of the ``N_TEST``
test cases carry the planted failure: an organ-like artefact 2-4 mm from the organ, never seen in
training; the model segments it as organ. ``DIR/planted_subgroup.json`` lists them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seg4seg_cli.bench import evaluate as evaluation
from seg4seg_cli.bench import train
from seg4seg_cli.bench.synthetic3d import FILE_ENDING, draw_spacing, make_volume, write_volume

HERE = Path(__file__).resolve().parent
DATASET_NAME = "Dataset992_Seg4Seg3D"
MODEL_DIR = HERE / "model" / DATASET_NAME / "nnUNetTrainer__nnUNetPlans__3d_fullres"
TRAIN_SEED = 992
TEST_SEED = 993
N_TRAIN = 40
N_TEST = 60
N_PLANTED = 12
EPOCHS = 150
LABELS = {"background": 0, "organ": 1, "lesion": 2}


def _dataset_json(n_training: int) -> dict:
    return {
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": n_training,
        "file_ending": FILE_ENDING,
        "name": DATASET_NAME,
        "description": "Synthetic anisotropic 3-D sample for seg4seg (see sample_data/README.md).",
    }


def _write_case(folder: Path, images: str, labels: str, case_id: str, rng, artefact: bool):
    spacing = draw_spacing(rng)
    image, label = make_volume(rng, spacing, artefact=artefact)
    write_volume(image, folder / images / f"{case_id}_0000{FILE_ENDING}", spacing)
    write_volume(label, folder / labels / f"{case_id}{FILE_ENDING}", spacing)


def write_training_set(folder: Path) -> Path:
    """The raw nnU-Net dataset the model is trained on: N_TRAIN plain volumes."""
    dataset = Path(folder) / DATASET_NAME
    for sub in ("imagesTr", "labelsTr"):
        (dataset / sub).mkdir(parents=True)
    (dataset / "dataset.json").write_text(json.dumps(_dataset_json(N_TRAIN), indent=4) + "\n")
    rng = np.random.default_rng(TRAIN_SEED)
    for i in range(N_TRAIN):
        _write_case(dataset, "imagesTr", "labelsTr", f"train_{i:03d}", rng, artefact=False)
    return dataset


def write_test_set(folder: Path) -> list[str]:
    """The test set (dataset.json, imagesTs, labelsTs, planted_subgroup.json) written into
    `folder`, replacing it. Returns the planted case ids."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(_dataset_json(N_TRAIN), indent=4) + "\n")
    rng = np.random.default_rng(TEST_SEED)
    case_ids = [f"volume_{i:03d}" for i in range(N_TEST)]
    planted = sorted(case_ids[i] for i in rng.permutation(N_TEST)[:N_PLANTED])
    for case_id in case_ids:
        _write_case(folder, "imagesTs", "labelsTs", case_id, rng, artefact=case_id in planted)
    description = (
        "Test volumes with a planted failure never seen in training: an organ-like artefact "
        "2-4 mm from the organ. For tests and the demo only."
    )
    (folder / "planted_subgroup.json").write_text(
        json.dumps({"description": description, "case_ids": planted}, indent=2) + "\n"
    )
    return planted


def evaluate(model_dir: Path, data: Path) -> dict[str, dict[str, float]]:
    """Per-case organ and lesion Dice of nnU-Net's own predictor on `data`'s imagesTs."""
    return {
        case_id: {name: evaluation.dice(pred == v, ref == v) for name, v in LABELS.items() if v}
        for case_id, ref, pred in evaluation.nnunet_label_maps(model_dir, data, FILE_ENDING)
    }


def _report(dice: dict[str, dict[str, float]], planted: set[str]) -> None:
    for group, members in (
        ("normal", [c for c in dice if c not in planted]),
        ("planted", [c for c in dice if c in planted]),
    ):
        means = {name: np.nanmean([dice[c][name] for c in members]) for name in ("organ", "lesion")}
        print(
            f"{group} (n={len(members)}): "
            + ", ".join(f"{k} Dice {v:.3f}" for k, v in means.items())
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help="write the 3-D test set into DIR and stop"
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    if args.data is not None:
        planted = write_test_set(args.data)
        print(f"3-D test set: {N_TEST} volumes ({len(planted)} planted) in {args.data}")
        return 0

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seg4seg_build3d_") as tmp:
        dataset = write_training_set(Path(tmp))
        seconds = train.train_and_export(
            dataset, MODEL_DIR, seed=TRAIN_SEED, epochs=args.epochs, configuration="3d_fullres"
        )
        print(f"training: {seconds:.1f} s; model exported to {MODEL_DIR.relative_to(HERE.parent)}")
        data = Path(tmp) / "test"
        planted = set(write_test_set(data))
        _report(evaluate(MODEL_DIR, data), planted)
    print(f"total build time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
