"""Training checkpoints: what a resumed or restarted worker group needs to continue exactly.

``state.pt`` holds ``pipeline.train.state.TrainState.state_dict()``: the method's state (networks,
optimisers, grad scalers), the EMA, the step, the metric history so far (rows of
``reports/plots/train_loss.csv``) and the latest sample grid. Checkpoints written before the methods
layout (issue 12: model/optimizer/scaler at the top level) are not resumed: they are skipped with a
warning naming them, like any checkpoint of another structure. RNG state is
not stored because there is none to restore: every step reseeds from (seed, rank, step)
(pipeline.seeding.derived_seed) and the data order is a function of (seed, epoch).

Resuming across separate ``fit`` calls does not rely on Ray's run snapshot alone: a worker that dies
right after reporting a checkpoint can leave it persisted on disk but unregistered by the controller.
``latest_checkpoint_dir`` scans the run directory for the newest valid checkpoint instead.

Every ``state.pt`` has a ``state.pt.sha256`` sidecar (pipeline.io.save_verified) and is loaded with
``weights_only=True``: a checkpoint whose bytes changed, that is truncated, holds another structure
or a pickle of code, is skipped for the previous one with a warning naming it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray.train
import torch

from pipeline.io import CorruptFileError, load_verified, save_verified, verify_checksum

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
STATE_KEYS = ("method", "ema", "step", "history", "samples")  # TrainState.state_dict()


@contextmanager
def checkpoint_of(state: dict[str, Any]) -> Iterator[ray.train.Checkpoint]:
    """A ray.train.Checkpoint holding ``state`` in a temporary directory (valid inside the block)."""
    with tempfile.TemporaryDirectory() as directory:
        save_verified(state, Path(directory) / CHECKPOINT_FILE)
        yield ray.train.Checkpoint.from_directory(directory)


def read_checkpoint(
    checkpoint: ray.train.Checkpoint, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The state dict saved by ``checkpoint_of`` (tensors mapped to ``device``)."""
    with checkpoint.as_directory() as directory:
        return read_state(directory, device)


def _checked(state: Any, file: Path) -> dict[str, Any]:
    """``state`` if it has a checkpoint's structure; CorruptFileError naming ``file`` otherwise."""
    if not isinstance(state, dict) or not set(STATE_KEYS) <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CorruptFileError(
            f"{file}: not a training checkpoint of this version (holds {keys}, expected "
            f"{', '.join(STATE_KEYS)}); a checkpoint from before the methods layout cannot be "
            "resumed: delete its run directory"
        )
    if not isinstance(state["step"], int):
        raise CorruptFileError(f"{file}: step must be an integer, got {state['step']!r}")
    return state


def read_state(
    directory: str | Path, device: torch.device | str = "cpu", *, check: bool = True
) -> dict[str, Any]:
    """The state dict in a checkpoint directory on disk, its sha256 and structure checked;
    CorruptFileError naming the file otherwise."""
    file = Path(directory) / CHECKPOINT_FILE
    return _checked(load_verified(file, device, check=check), file)


def latest_checkpoint_dir(run_dir: str | Path) -> Path | None:
    """The checkpoint directory under ``run_dir`` with the highest step whose state is valid, or
    None. Candidates are ordered by their step (read without the checksum), then verified newest
    first; an invalid one (partly copied when a run died, corrupted, foreign) is skipped for the
    previous one with a warning naming it."""
    candidates: list[tuple[int, Path]] = []
    for file in Path(run_dir).glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        try:
            candidates.append((read_state(file.parent, check=False)["step"], file.parent))
        except (CorruptFileError, OSError) as exc:
            log.warning("skipping checkpoint %s: %s", file.parent, exc)
    for _, directory in sorted(candidates, key=lambda c: c[0], reverse=True):
        try:  # the structure passed the peek; the bytes must match their sha256
            verify_checksum(directory / CHECKPOINT_FILE)
            return directory
        except (CorruptFileError, OSError) as exc:
            log.warning("skipping checkpoint %s: %s", directory, exc)
    return None
