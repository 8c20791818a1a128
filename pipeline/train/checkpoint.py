"""Training checkpoints: what a resumed or restarted worker group needs to continue exactly.

``state.pt`` holds the model, EMA, optimiser and grad-scaler state dicts, the step, the metric
history so far (rows of ``reports/plots/train_loss.csv``) and the latest sample grid. RNG state is
not stored because there is none to restore: every step reseeds from (seed, rank, step)
(pipeline.seeding.derived_seed) and the data order is a function of (seed, epoch).

Resuming across separate ``fit`` calls does not rely on Ray's run snapshot alone: a worker that dies
right after reporting a checkpoint can leave it persisted on disk but unregistered by the controller.
``latest_checkpoint_dir`` scans the run directory for the newest loadable checkpoint instead.
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
        return read_state(directory, device)


def read_state(directory: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state dict in a checkpoint directory on disk."""
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location=device, weights_only=True)


def latest_checkpoint_dir(run_dir: str | Path) -> Path | None:
    """The checkpoint directory under ``run_dir`` with the highest step that loads, or None.

    Loads with ``mmap=True``: the structure and step are read, the tensors are not.
    """
    best: tuple[int, Path] | None = None
    for file in Path(run_dir).glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        try:
            step = torch.load(file, map_location="cpu", weights_only=True, mmap=True)["step"]
        except (OSError, RuntimeError, KeyError, EOFError):  # partly copied when a run died
            continue
        if best is None or step > best[0]:
            best = (step, file.parent)
    return None if best is None else best[1]


def ema_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The EMA copy of the UNet as a plain UNet state_dict (AveragedModel prefixes ``module.``)."""
    return {
        k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")
    }
