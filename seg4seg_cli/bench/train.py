"""Train a tiny nnU-Net v2 (2d or 3d_fullres) on the CPU and export a slim, standard results folder.

Used by `sample_data/build.py`, `sample_data/build_3d.py` and by `seg4seg bench` (one model per
scenario and seed). nnU-Net
reads its folder variables (`nnUNet_raw`, ...) when it is first imported, so each training runs in
a process of its own::

    python -m seg4seg_cli.bench.train RAW_DATASET_DIR MODEL_DIR [--seed 0] [--configuration 3d_fullres]

`RAW_DATASET_DIR` is an nnU-Net raw dataset (`DatasetNNN_Name` with `dataset.json`, `imagesTr`,
`labelsTr`); only the training half is used. `MODEL_DIR` receives `plans.json`, `dataset.json` and
`fold_0/checkpoint_final.pth` (weights, `init_args`, `trainer_name`, mirroring axes; no optimizer
state), loadable with `torch.load(..., weights_only=True)`. The export is atomic: `MODEL_DIR`
appears only once the checkpoint is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Tiny network and short schedule (CPU, well under a minute of training).
FEATURES_PER_STAGE = [8, 16, 32, 64]
N_EPOCHS = 10
N_ITERATIONS_PER_EPOCH = 25
N_VAL_ITERATIONS_PER_EPOCH = 5
BATCH_SIZE = 12
N_VAL = 4  # fold 0 validates on the last 4 training cases
TRAINER_NAME_IN_CHECKPOINT = "nnUNetTrainer"


@dataclass(frozen=True)
class TinyUNet:
    """The shrunken network (4 stages) and batch of one configuration."""

    patch_size: tuple[int, ...]
    batch_size: int
    features: tuple[int, ...]
    kernels: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]


TINY = {
    "2d": TinyUNet(
        (64, 64), BATCH_SIZE, tuple(FEATURES_PER_STAGE), ((3, 3),) * 4, ((1, 1),) + ((2, 2),) * 3
    ),
    # anisotropic volumes (z coarsest): in-plane only first, as nnU-Net plans them; half the 2-D
    # widths, because 3-D convolutions are slow on CPUs
    "3d_fullres": TinyUNet(
        (16, 40, 40),
        2,
        (4, 8, 16, 32),
        ((1, 3, 3),) + ((3, 3, 3),) * 3,
        ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
    ),
}


def shrink_plans(plans: dict, configuration: str = "2d") -> dict:
    """Keep only `configuration` ('2d' or '3d_fullres') and make its U-Net the TINY one."""
    config = plans["configurations"][configuration]
    tiny = TINY[configuration]
    n_stages = len(tiny.features)
    config["patch_size"] = list(tiny.patch_size)
    config["batch_size"] = tiny.batch_size
    config["architecture"]["arch_kwargs"].update(
        n_stages=n_stages,
        features_per_stage=list(tiny.features),
        kernel_sizes=[list(k) for k in tiny.kernels],
        strides=[list(k) for k in tiny.strides],
        n_conv_per_stage=[2] * n_stages,
        n_conv_per_stage_decoder=[2] * (n_stages - 1),
    )
    plans["configurations"] = {configuration: config}
    return plans


def _plain(obj):
    """JSON round trip: turns numpy scalars and tuples into plain Python types."""
    return json.loads(json.dumps(obj))


def train_and_export(
    raw_dataset: Path,
    model_dir: Path,
    seed: int = 0,
    epochs: int = N_EPOCHS,
    configuration: str = "2d",
) -> float:
    """Train on `raw_dataset`'s training cases and export to `model_dir`; returns training seconds.

    Must run in a fresh process (nnU-Net's folder variables are read at import).
    """
    raw_dataset, model_dir = Path(raw_dataset).resolve(), Path(model_dir).resolve()
    name = raw_dataset.name
    dataset_id = int(name[len("Dataset") : len("Dataset") + 3])
    tmp = Path(tempfile.mkdtemp(prefix="seg4seg_nnunet_"))
    try:
        raw = tmp / "raw" / name
        raw.mkdir(parents=True)
        shutil.copy(raw_dataset / "dataset.json", raw / "dataset.json")
        shutil.copytree(raw_dataset / "imagesTr", raw / "imagesTr")
        shutil.copytree(raw_dataset / "labelsTr", raw / "labelsTr")

        os.environ["nnUNet_raw"] = str(tmp / "raw")
        os.environ["nnUNet_preprocessed"] = str(tmp / "preprocessed")
        os.environ["nnUNet_results"] = str(tmp / "results")
        os.environ.setdefault("nnUNet_def_n_proc", "2")
        os.environ["nnUNet_compile"] = "false"
        # nnUNet_n_proc_DA=0 must NOT be set yet: planning/preprocessing break with it
        os.environ.pop("nnUNet_n_proc_DA", None)

        import numpy as np
        import torch
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (
            extract_fingerprint_dataset,
            plan_experiment_dataset,
            preprocess_dataset,
        )
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        torch.set_num_threads(2)
        extract_fingerprint_dataset(
            dataset_id,
            num_processes=2,
            check_dataset_integrity=True,
            verbose=False,
            show_progress_bar=False,
        )
        plan_experiment_dataset(dataset_id)
        preprocessed = tmp / "preprocessed" / name
        plans_file = preprocessed / "nnUNetPlans.json"
        plans = shrink_plans(json.loads(plans_file.read_text()), configuration)
        plans_file.write_text(json.dumps(plans, indent=4))
        preprocess_dataset(
            dataset_id, configurations=(configuration,), num_processes=[2], show_progress_bar=False
        )

        ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
        ids = sorted(p.name[: -len(ending)] for p in (raw / "labelsTr").iterdir())
        val = ids[-N_VAL:]
        splits = [{"train": [i for i in ids if i not in val], "val": val}]
        (preprocessed / "splits_final.json").write_text(json.dumps(splits, indent=2))

        # augmentation in the main process only (no worker processes)
        os.environ["nnUNet_n_proc_DA"] = "0"

        class TinyTrainer(nnUNetTrainer):
            """nnUNetTrainer with a CPU-sized schedule."""

            def __init__(
                self, plans, configuration, fold, dataset_json, device=torch.device("cpu")
            ):
                super().__init__(plans, configuration, fold, dataset_json, device)
                self.num_epochs = epochs
                self.num_iterations_per_epoch = N_ITERATIONS_PER_EPOCH
                self.num_val_iterations_per_epoch = N_VAL_ITERATIONS_PER_EPOCH
                self.save_every = 10**6  # no intermediate checkpoints

        np.random.seed(seed)
        torch.manual_seed(seed)
        dataset_json = json.loads((raw / "dataset.json").read_text())
        trainer_plans = json.loads(plans_file.read_text())
        trainer_plans["continue_training"] = False  # the trainer pops this key
        trainer = TinyTrainer(
            trainer_plans, configuration, 0, dataset_json, device=torch.device("cpu")
        )
        start = time.perf_counter()
        trainer.run_training()  # no final validation/export: that is a separate call in nnU-Net
        seconds = time.perf_counter() - start

        staging = tmp / "export"
        (staging / "fold_0").mkdir(parents=True)
        (staging / "plans.json").write_text(
            json.dumps(trainer.plans_manager.plans, indent=4) + "\n"
        )
        (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")
        network = trainer.network
        network = getattr(network, "_orig_mod", network)
        checkpoint = {
            # no copies: PlainConvUNet's decoder references the encoder, so encoder weights appear
            # twice in the state dict; sharing their storage keeps the file at half the size
            "network_weights": network.state_dict(),
            "init_args": {
                "plans": _plain(trainer.plans_manager.plans),
                "configuration": configuration,
                "fold": 0,
                "dataset_json": _plain(dataset_json),
                "device": torch.device("cpu"),
            },
            "trainer_name": TRAINER_NAME_IN_CHECKPOINT,
            "inference_allowed_mirroring_axes": tuple(
                int(a) for a in trainer.inference_allowed_mirroring_axes
            ),
        }
        path = staging / "fold_0" / "checkpoint_final.pth"
        torch.save(checkpoint, path)
        torch.load(path, map_location="cpu", weights_only=True)  # must not raise
        if model_dir.exists():
            shutil.rmtree(model_dir)
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(model_dir))
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw_dataset", type=Path, help="nnU-Net raw dataset folder DatasetNNN_Name")
    parser.add_argument("model_dir", type=Path, help="results folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=N_EPOCHS)
    parser.add_argument("--configuration", choices=("2d", "3d_fullres"), default="2d")
    args = parser.parse_args(argv)
    seconds = train_and_export(
        args.raw_dataset,
        args.model_dir,
        args.seed,
        epochs=args.epochs,
        configuration=args.configuration,
    )
    print(json.dumps({"train_seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
