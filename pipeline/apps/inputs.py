"""The images a command reads (colorize, stylize): files and folders as the user names them, each
decoded the way the photos source decodes (any size and mode, upright by its EXIF orientation),
bounded before decoding: larger than ``--max-megapixels`` or longer than MAX_ASPECT times its
width is refused with one line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.apps.args import float_in
from pipeline.data.sources import IMAGE_SUFFIXES, decode_image, list_images

DEFAULT_MEGAPIXELS = 50.0  # --max-megapixels: colorize peaks at 1.25 GiB for 50 MP (benchmarks/)
MEGAPIXELS = (0.01, 400.0)  # --max-megapixels' range
MAX_ASPECT = 20  # longer side / shorter side: a 1 x 20000 strip is not a photo


@dataclass(frozen=True)
class Job:
    """One input file and the name of its outputs (without suffix) relative to the output folder."""

    path: Path
    name: Path


def find_inputs(inputs: list[str]) -> list[Job]:
    """Files as given (any suffix: unreadable ones are reported later), folders searched for
    png/jpg files recursively; ValueError for a missing input or an empty folder (two inputs with
    one output name are refused with the other outputs' checks, pipeline.apps.outputs)."""
    jobs = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise ValueError(f"{given}: no {'/'.join(IMAGE_SUFFIXES)} files in this folder")
            jobs += [Job(p, p.relative_to(path).with_suffix("")) for p in found]
        elif path.is_file():
            jobs.append(Job(path, Path(path.stem)))
        else:
            raise ValueError(f"{given}: no such file or folder")
    return jobs


def read_rgb(path: Path, max_pixels: int) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3), upright by its EXIF orientation: gray repeated,
    transparency composited on white. ValueError, before decoding, for more than ``max_pixels``
    pixels or a side longer than MAX_ASPECT times the other."""
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
        pixels = decode_image(img)
    return np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels


def add_max_megapixels(parser: argparse.ArgumentParser, peak: str) -> None:
    """``--max-megapixels``: larger inputs are skipped; ``peak`` says what memory that bounds."""
    parser.add_argument(
        "--max-megapixels",
        type=float_in(*MEGAPIXELS),
        default=DEFAULT_MEGAPIXELS,
        help=f"larger inputs are skipped (default %(default)s; {peak})",
    )
