"""Loading nnU-Net checkpoints without executing code from them.

`torch.load(weights_only=True)` refuses any pickled object that is not a tensor or a plain
container, so a checkpoint cannot run code while it is read. nnU-Net checkpoints also hold numpy
scalars and dtypes (in their training log and init arguments); those few classes are allowed.
Full unpickling happens only when the user passes --trust-checkpoint.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from seg4seg_cli import console
from seg4seg_cli.errors import ModelError


def _numpy_globals() -> list[Any]:
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtype_classes = [
        getattr(np.dtypes, name)
        for name in dir(np.dtypes)
        if name.endswith("DType") and name != "ObjectDType"
    ]
    return [scalar, np.dtype, *dtype_classes]


def load_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    """Read an nnU-Net checkpoint dict from `path` onto the CPU.

    Raises ModelError naming the file when it is unreadable, not an nnU-Net checkpoint, or
    carries objects that would execute code (unless `trust`).
    """
    import torch

    try:
        if trust:
            console.warn(
                f"--trust-checkpoint: unpickling {path} fully; this runs any code the file holds"
            )
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_globals()):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if trust:
            raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc
        first = str(exc).strip().splitlines()
        culprit = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), "")
        raise ModelError(
            f"checkpoint {path} holds objects other than weights ({culprit.strip() or 'unsafe pickle'}); "
            "refusing to unpickle it. Pass --trust-checkpoint only if you trust who made this file"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot read checkpoint {path} ({message}); the file is corrupt or truncated: "
            "copy it again from where the model was trained"
        ) from exc
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise ModelError(
            f"{path} is not an nnU-Net v2 checkpoint (no 'network_weights'); "
            "pass checkpoint_final.pth of a trained fold"
        )
    return checkpoint
