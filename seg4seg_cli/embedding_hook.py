"""Capturing a per-case embedding during the forward passes that make the prediction.

A forward hook on a network module (nnU-Net: the encoder's last stage, the bottleneck) averages its
output over space, and the recorder averages those vectors over every call made for the case:
sliding-window tiles, test-time mirrorings and folds. No extra forward pass is run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PooledActivationRecorder:
    """Running mean of a module's spatially averaged output, over all calls since `reset`.

    The module output has shape `(batch, channels, *spatial)`; the recorded embedding has shape
    `(channels,)`. Sums stay on the module's device so that a CUDA run does not synchronise per tile.
    """

    def __init__(self, module: nn.Module) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        spatial_dims = tuple(range(2, output.ndim))
        pooled = output.detach().float().mean(dim=spatial_dims).sum(dim=0)
        self._sum = pooled if self._sum is None else self._sum + pooled
        self._count += output.shape[0]

    def reset(self) -> None:
        self._sum, self._count = None, 0

    @property
    def calls(self) -> int:
        return self._count

    def pop(self) -> np.ndarray:
        """The mean embedding since the last reset, as float32 `(channels,)`; resets the recorder."""
        if self._sum is None:
            raise RuntimeError("no forward pass was recorded for this case")
        embedding = (self._sum / self._count).cpu().numpy().astype(np.float32)
        self.reset()
        return embedding

    def remove(self) -> None:
        self._handle.remove()
