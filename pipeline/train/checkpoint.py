"""Training checkpoints: what a resumed or restarted worker group needs to continue exactly.

``state.pt`` holds the model, EMA, optimiser and grad-scaler state dicts, the step, the metric
history so far (rows of ``reports/plots/train_loss.csv``) and the latest sample grid. RNG state is
not stored because there is none to restore: every step reseeds from (seed, rank, step)
(pipeline.train.step.step_seed) and the data order is a function of (seed, epoch).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray.train
import torch

CHECKPOINT_FILE = "state.pt"


@contextmanager
def checkpoint_of(state: dict[str, Any]) -> Iterator[ray.train.Checkpoint]:
    """A ray.train.Checkpoint holding ``state`` in a temporary directory (valid inside the block)."""
    with tempfile.TemporaryDirectory() as directory:
        torch.save(state, Path(directory) / CHECKPOINT_FILE)
        yield ray.train.Checkpoint.from_directory(directory)


def read_checkpoint(
    checkpoint: ray.train.Checkpoint, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The state dict saved by ``checkpoint_of`` (tensors mapped to ``device``)."""
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / CHECKPOINT_FILE, map_location=device, weights_only=True)


def ema_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The EMA copy of the UNet as a plain UNet state_dict (AveragedModel prefixes ``module.``)."""
    return {
        k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")
    }
