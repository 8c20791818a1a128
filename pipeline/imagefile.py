"""Reading a user's image file the one way every command and the style pipeline read it: decoded as
the photos source decodes (any size and mode, upright by its EXIF orientation; pipeline.data.sources),
bounded before decoding: more than a pixel budget or longer than MAX_ASPECT times its width is
refused with one line."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.sources import decode_image

DEFAULT_MEGAPIXELS = 50.0  # --max-megapixels: colorize peaks at 1.25 GiB for 50 MP (benchmarks/)
MAX_ASPECT = 20  # longer side / shorter side: a 1 x 20000 strip is not a photo


def read_rgb(path: Path, max_pixels: int) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3), upright by its EXIF orientation: gray repeated,
    transparency composited on white. ValueError, before decoding, for more than ``max_pixels``
    pixels or a side longer than MAX_ASPECT times the other; for anything but a regular file (a
    FIFO would block the command forever, a device be read without end) before opening it."""
    if not stat.S_ISREG(Path(path).stat().st_mode):
        raise ValueError("not a regular file; images are read from files")
    with Image.open(path) as img:
        w, h = img.size
        if w * h > max_pixels:
            raise ValueError(
                f"{w}x{h} is {w * h / 1e6:.1f} megapixels, above --max-megapixels "
                f"{max_pixels / 1e6:g}"
            )
        if max(w, h) > MAX_ASPECT * min(w, h):
            raise ValueError(f"{w}x{h} is longer than {MAX_ASPECT} times its width; not a photo")
        img.load()
        return as_rgb(decode_image(img))


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels, uint8 (H, W) gray or (H, W, 3) RGB, as RGB: gray repeated."""
    return np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels
