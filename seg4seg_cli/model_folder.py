"""Resolving --model (a results folder, a fold_X folder or a .pth file) to the files to load.

nnU-Net keeps a trained model as `Trainer__Plans__Config/` with `plans.json`, `dataset.json` and
`fold_*/checkpoint_final.pth`. Users point at any of these levels; we accept all three.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from seg4seg_cli.errors import ModelError, UsageError

_FOLD_DIR = re.compile(r"^fold_(?P<fold>\d+|all)$")
_LAYOUT_HINT = (
    "--model must be an nnU-Net results folder Trainer__Plans__Config (with plans.json, "
    "dataset.json and fold_*/checkpoint_final.pth), one of its fold_X folders, or a .pth file in one"
)


@dataclass(frozen=True)
class ModelFiles:
    """The files that make up a model: plans, dataset description and one checkpoint per fold."""

    results_dir: Path
    plans_file: Path
    dataset_json_file: Path
    checkpoints: dict[str, Path]  # fold name ("0", "1", "all") -> checkpoint file

    @property
    def folds(self) -> list[str]:
        return list(self.checkpoints)

    def read_json(self, which: str) -> dict:
        path = self.plans_file if which == "plans" else self.dataset_json_file
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path}: {exc}") from exc

    def checksum(self) -> str:
        """sha256 over plans.json, dataset.json and every checkpoint, in fold order."""
        digest = hashlib.sha256()
        for path in (self.plans_file, self.dataset_json_file, *self.checkpoints.values()):
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _fold_sort_key(fold: str) -> tuple[int, int]:
    return (1, 0) if fold == "all" else (0, int(fold))


def resolve_model(
    model: Path, folds: list[str] | None = None, checkpoint_name: str = "checkpoint_final.pth"
) -> ModelFiles:
    """Find plans, dataset.json and the checkpoints of the requested folds (default: all present)."""
    model = Path(model)
    if not model.exists():
        raise ModelError(f"--model {model} does not exist; {_LAYOUT_HINT}")
    if model.is_file():
        if folds:
            raise UsageError(
                "--folds cannot be combined with a --model .pth file; point at the folder"
            )
        fold_dir = model.parent
        match = _FOLD_DIR.match(fold_dir.name)
        results_dir = fold_dir.parent if match else fold_dir
        checkpoints = {match["fold"] if match else "0": model}
    elif _FOLD_DIR.match(model.name) and not (model / "plans.json").is_file():
        if folds:
            raise UsageError("--folds cannot be combined with a fold_X folder; point at its parent")
        results_dir = model.parent
        checkpoints = {_FOLD_DIR.match(model.name)["fold"]: model / checkpoint_name}
    else:
        results_dir = model
        if folds:
            wanted = [str(f) for f in folds]
        else:
            wanted = sorted(
                (
                    m["fold"]
                    for d in model.iterdir()
                    if (m := _FOLD_DIR.match(d.name)) and d.is_dir()
                ),
                key=_fold_sort_key,
            )
            # as nnU-Net: fold_all is used only when asked for
            wanted = [
                f
                for f in wanted
                if f != "all" and (model / f"fold_{f}" / checkpoint_name).is_file()
            ]
            if not wanted:
                raise ModelError(
                    f"no fold_*/{checkpoint_name} in {model}; {_LAYOUT_HINT} "
                    "(or pass --checkpoint with another checkpoint file name)"
                )
        checkpoints = {f: model / f"fold_{f}" / checkpoint_name for f in wanted}

    plans_file = results_dir / "plans.json"
    dataset_json_file = results_dir / "dataset.json"
    for required in (plans_file, dataset_json_file):
        if not required.is_file():
            raise ModelError(f"{results_dir} has no {required.name}; {_LAYOUT_HINT}")
    for fold, path in checkpoints.items():
        if not path.is_file():
            available = sorted(
                (m["fold"] for d in results_dir.glob("fold_*") if (m := _FOLD_DIR.match(d.name))),
                key=_fold_sort_key,
            )
            raise ModelError(
                f"fold {fold} has no checkpoint: {path} does not exist "
                f"(folds present: {', '.join(available) or 'none'}); check --folds and --checkpoint"
            )
    return ModelFiles(results_dir, plans_file, dataset_json_file, checkpoints)
