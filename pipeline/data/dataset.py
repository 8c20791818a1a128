"""The preprocessed images as a torch Dataset: uint8 (C, H, W) on disk -> float32 in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.color import colourfulness
from pipeline.data.manifest import load_array, read_manifest
from pipeline.pixels import to_unit

CHUNK = 4096  # crops per colourfulness pass (bounded memory over a memory-mapped split)


def spread(total: int, count: int) -> np.ndarray:
    """``count`` indices evenly spaced over ``range(total)`` (all of them when count >= total):
    a fixed subset that covers a split whose images come in runs (the crops of one photo)."""
    if count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(np.int64)


def colourful(images: np.ndarray, minimum: float) -> np.ndarray:
    """Indices of the uint8 RGB images (N, 3, H, W) whose colourfulness M (Hasler and Suesstrunk
    2003, eq. 3) is at least ``minimum``: BigColor (Kim et al. 2022) trains without the least
    colourful images, so that gray skies and walls do not teach the model to leave colour out."""
    scores = [
        colourfulness(torch.from_numpy(np.array(images[i : i + CHUNK])).double() / 255)
        for i in range(0, len(images), CHUNK)
    ]
    return np.flatnonzero(torch.cat(scores).numpy() >= minimum)


class ProcessedImages(Dataset):
    """One split of ``data/processed`` (see pipeline.data.preprocess), memory-mapped.

    x = ``pipeline.pixels.to_unit(uint8)``, shape (C, H, W): the [-1, 1] range the models assume.
    """

    def __init__(
        self, processed_dir: str | Path, split: str = "train", labels: bool = False
    ) -> None:
        manifest = read_manifest(processed_dir)
        if split not in manifest["splits"]:
            raise ValueError(f"unknown split {split!r}; allowed: {', '.join(manifest['splits'])}")
        entry = manifest["splits"][split]
        self.images = load_array(processed_dir, entry["images"])  # (N, C, H, W) uint8, memmap
        self.labels = None  # (N,) int64 when requested and the source has labels
        if labels and entry.get("labels"):
            self.labels = torch.from_numpy(np.array(load_array(processed_dir, entry["labels"])))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x in [-1, 1], (C, H, W); with labels, (x, label)."""
        x = to_unit(np.array(self.images[index]))  # (C, H, W); a copy of the memmap's pixels
        return x if self.labels is None else (x, self.labels[index])
