"""The images a command reads (colorize, stylize): files and folders as the user names them
(``find_inputs``), each read by ``pipeline.imagefile.read_rgb`` within ``--max-megapixels``."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.apps.args import float_in
from pipeline.data.sources import IMAGE_SUFFIXES, list_images
from pipeline.imagefile import DEFAULT_MEGAPIXELS

MEGAPIXELS = (0.01, 400.0)  # --max-megapixels' range


class UnreadableImages(OSError):
    """Some inputs could not be used; the others were done (exit status 2)."""


def raise_for_skipped(failed: list[str], total: int, what: str) -> None:
    """UnreadableImages listing the ``failed`` inputs (one line each: path and reason) of ``total``,
    which could not be ``what`` ("colorized"); nothing when none failed."""
    if failed:
        raise UnreadableImages(
            f"{len(failed)} of {total} input(s) could not be {what} and were skipped:\n  "
            + "\n  ".join(failed)
        )


@dataclass(frozen=True)
class Job:
    """One input file and the name of its outputs (without suffix) relative to the output folder."""

    path: Path
    name: Path


def output_stem(relative: Path) -> Path:
    """An input's path (relative to its folder) without its suffix, as outputs are named: the
    name's root by os.path.splitext, which keeps a leading dot (``..png`` -> ``..png``, where
    pathlib's stem would be ``.``, a folder, not a name)."""
    return relative.parent / os.path.splitext(relative.name)[0]


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
            jobs += [Job(p, output_stem(p.relative_to(path))) for p in found]
        elif path.is_file():
            jobs.append(Job(path, output_stem(Path(path.name))))
        else:
            raise ValueError(f"{given}: no such file or folder")
    return jobs


def add_max_megapixels(parser: argparse.ArgumentParser, peak: str) -> None:
    """``--max-megapixels``: larger inputs are skipped; ``peak`` says what memory that bounds."""
    parser.add_argument(
        "--max-megapixels",
        type=float_in(*MEGAPIXELS),
        default=DEFAULT_MEGAPIXELS,
        help=f"larger inputs are skipped (default %(default)s; {peak})",
    )
