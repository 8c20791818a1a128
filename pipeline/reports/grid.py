"""Sample grids: a batch of images in [-1, 1] tiled into one uint8 picture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.io import atomic_path
from pipeline.pixels import to_uint8


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into a (rows*(H+p)+p, nrow*(W+p)+p, C) uint8 array.

    ``nrow`` images per row (default: ceil(sqrt(N)), a near-square grid); ``padding`` pixels of black
    between and around tiles. Values are mapped to uint8 by ``pipeline.pixels.to_uint8``.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    pixels = to_uint8(images)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), np.uint8)
    for i, image in enumerate(pixels.numpy()):  # image: (C, H, W)
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[top : top + h, left : left + w] = image.transpose(1, 2, 0)
    return grid


def image_format(path: str | Path) -> str:
    """The PIL format ``path``'s suffix names (PNG for ``x.png``, also for a name such as
    ``..png`` that PIL's own guess, os.path.splitext, reads as having no suffix); ValueError
    naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    found = Image.registered_extensions().get(suffix)
    if found is None or found not in Image.SAVE:
        raise ValueError(f"{path}: cannot write images of suffix {suffix or '(none)'!r}")
    return found


def save_image(array: np.ndarray, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write an (H, W, C) uint8 array (C = 1 becomes grayscale) in the format its suffix names
    (``image_format``), atomically; without ``overwrite``, never over a file that exists
    (pipeline.io.OutputExistsError)."""
    mode_array = array[..., 0] if array.shape[-1] == 1 else array
    kind = image_format(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(mode_array).save(tmp, format=kind)
    return Path(path)


def save_gif(
    frames: list[np.ndarray], path: str | Path, frame_ms: int = 80, hold_ms: int = 1500
) -> Path:
    """(H, W, C) uint8 frames as a looping GIF; the last frame is held for ``hold_ms``, atomically."""
    images = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [hold_ms]
    with atomic_path(path) as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return Path(path)
