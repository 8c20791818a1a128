"""``python -m pipeline stylize``: paint photos in the style of a painting (neural style transfer,
pipeline.style).

Per content file: decode it (pipeline.apps.inputs), optimise an image at the working size
(``--size``, its longer side) coarse to fine so that its features keep the photo's layout while their
Gram matrices match the style's (pipeline.style.transfer), and resize the result (bicubic) to the
content's own size. ``--out`` is the output file when one content file is given and OUT ends in
.png/.jpg/.jpeg, else a folder that receives ``<name>.png`` per content (files found in a folder
keep their path relative to it). Outputs follow pipeline.apps.outputs: all checked before any
work, never an input, nothing half-written. A content file that cannot be read is skipped and
listed at the end (exit 2); an unreadable style stops the command before any work.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.apps.args import add_overwrite, float_in, int_in, seed
from pipeline.apps.inputs import Job, add_max_megapixels, find_inputs, raise_for_skipped
from pipeline.apps.outputs import check_outputs
from pipeline.console import progress_bar
from pipeline.imagefile import read_rgb
from pipeline.io import first_line
from pipeline.reports.grid import save_image
from pipeline.style.choice import FeatureChoice, build_features
from pipeline.style.transfer import (
    MAX_STEPS,
    MAX_WEIGHT,
    MIN_SIDE,
    SIZES,
    StyleOptions,
    stylize,
    to_tensor,
    to_uint8,
)

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".png", ".jpg", ".jpeg")  # --out names a file with one of these
DEFAULTS = StyleOptions()


def targets_of(jobs: list[Job], out: Path) -> list[Path]:
    """One output per job: ``out`` itself for a single content file when it names an image file,
    else ``out/<name>.png``."""
    if len(jobs) == 1 and out.suffix.lower() in FILE_SUFFIXES:
        return [out]
    return [out / job.name.parent / f"{job.name.name}.png" for job in jobs]


def check_side(rgb: np.ndarray) -> np.ndarray:
    """A uint8 photo (H, W, 3) as given; ValueError when its longer side is under MIN_SIDE."""
    if max(rgb.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"{rgb.shape[0]}x{rgb.shape[1]} px; stylize paints images of at least {MIN_SIDE} px "
            "on the longer side"
        )
    return rgb


def paint(
    rgb: np.ndarray,
    style: torch.Tensor,
    features: nn.Module,
    options: StyleOptions,
    *,
    on_step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """A uint8 photo (H, W, 3) painted in ``style`` (pipeline.style.transfer.stylize), uint8 at
    the photo's size; ValueError for a photo under MIN_SIDE or non-finite pixels (never a black
    image in its place)."""
    image, _ = stylize(
        to_tensor(check_side(rgb), style.device), style, features, options, on_step=on_step
    )
    if not torch.isfinite(image).all():
        raise ValueError("painting it gave non-finite pixels; nothing written")
    return to_uint8(image, rgb.shape[:2])


def run(args: argparse.Namespace) -> None:
    """The command: check every output, read the style, stylize every content file, then report
    the files that were skipped (UnreadableImages)."""
    options = StyleOptions(
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        steps=args.steps,
        size=args.size,
        passes=DEFAULTS.passes,
        seed=args.seed,
    )
    jobs = find_inputs(args.inputs)
    inputs = [*args.inputs, args.style]
    out = Path(args.out)
    targets = targets_of(jobs, out)
    folder = None if targets == [out] else out  # one file named by --out, or files inside it
    targets = check_outputs(targets, inputs, overwrite=args.overwrite, root=folder)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    max_pixels = round(args.max_megapixels * 1e6)
    try:
        style = to_tensor(read_rgb(Path(args.style), max_pixels), device)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--style {args.style}: {first_line(exc)}") from None
    if (args.vgg19 is None) != (args.vgg19_sha256 is None):
        raise ValueError("--vgg19 and --vgg19-sha256 go together: the weights file and its sha256")
    if args.vgg19 and args.features not in (None, "vgg19"):
        raise ValueError(
            f"--vgg19 is VGG-19's weights: it goes with --features vgg19, not {args.features}"
        )
    kind = args.features or ("vgg19" if args.vgg19 else "random")
    if kind == "vgg19" and not args.vgg19:
        raise ValueError(
            "--features vgg19 needs --vgg19 FILE and --vgg19-sha256 HEX (never downloaded)"
        )
    choice = FeatureChoice(kind, args.vgg19, args.vgg19_sha256)
    features = build_features(choice, options.seed, device)
    failed: list[str] = []
    total = options.steps * options.passes * len(jobs)
    with progress_bar(total=total, desc="stylize", unit="eval") as bar:
        for job, target in zip(jobs, targets, strict=True):
            try:
                rgb = check_side(read_rgb(job.path, max_pixels))
            except (OSError, ValueError) as exc:
                failed.append(f"{job.path}: {first_line(exc)}")
                bar.total -= options.steps * options.passes
                continue
            try:
                image = paint(rgb, style, features, options, on_step=bar.update)
            except ValueError as exc:
                failed.append(f"{job.path}: {first_line(exc)}")
                continue
            save_image(image, target, overwrite=args.overwrite)
    log.info("stylize: wrote %d image(s) to %s", len(jobs) - len(failed), args.out)
    raise_for_skipped(failed, len(jobs), "stylized")


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "stylize",
        help="paint photos in the style of a painting (neural style transfer)",
        description=__doc__.split("\n\n")[0].replace("``", "").rstrip(".")
        + ". The output has the content's size; see docs/stylize.md.",
    )
    parser.add_argument("inputs", nargs="+", metavar="CONTENT", help="photo files or folders")
    parser.add_argument("--style", required=True, help="the painting (an image file)")
    parser.add_argument(
        "--out", required=True, help="output file (one CONTENT, .png/.jpg) or folder"
    )
    parser.add_argument(
        "--content-weight",
        type=float_in(0.0, MAX_WEIGHT),
        default=DEFAULTS.content_weight,
        help="lambda_content: how closely the photo's layout is kept (default %(default)s)",
    )
    parser.add_argument(
        "--style-weight",
        type=float_in(0.0, MAX_WEIGHT),
        default=DEFAULTS.style_weight,
        help="lambda_style: how closely the painting's Gram matrices are matched "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int_in(1, MAX_STEPS),
        default=DEFAULTS.steps,
        help="loss evaluations per pass (default %(default)s; each pass doubles the size)",
    )
    parser.add_argument(
        "--size",
        type=int_in(*SIZES),
        default=DEFAULTS.size,
        help="longer side of the working image in px (default %(default)s); the output is "
        "resized to the content's size",
    )
    parser.add_argument(
        "--seed", type=seed, default=0, help="the random features' filters (default %(default)s)"
    )
    parser.add_argument(
        "--features",
        choices=("random", "colorizer", "vgg19"),
        help="what the Gram matrices are taken of: random filters (the default), the shipped "
        "colorizer's UNet, or VGG-19 from --vgg19 (docs/stylize.md)",
    )
    parser.add_argument(
        "--vgg19",
        metavar="FILE",
        help="VGG-19 weights (safetensors, torchvision's names) for Gatys et al.'s features "
        "instead of the random ones; never downloaded",
    )
    parser.add_argument("--vgg19-sha256", metavar="HEX", help="the sha256 --vgg19 must have")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add_max_megapixels(parser, "the photo is decoded whole before it is resized")
    add_overwrite(parser)
    parser.set_defaults(func=run)
