"""``python -m pipeline colorize``: colorize a user's grayscale (or colour) photos with a trained
colorizer (model.family ddpm_color or regression_color).

Per input file: decode it (any size and mode, as the photos source does), take its CIE L* at full
resolution, and make the condition the way training made it: the image resized (bicubic, as
preprocessing resizes) so its shorter side is ``scale`` times the model's crop size, then
``pipeline.color.lightness``. The model, a convolutional UNet, samples ab at that size; ab is
upsampled (bilinear) to the input's size and joined with the input's own full-resolution L*, with
the chroma of out-of-gamut pixels reduced at constant L* (``pipeline.color.join_lab``). So the
output has the input's exact size and lightness (within uint8 rounding).

Outputs: ``OUT/<name>.png`` per input (the first sample) and, with ``--samples K``, also
``OUT/<name>_2.png`` ... ``OUT/<name>_K.png``; files found in a folder keep their path relative to
it. Unreadable files are skipped and listed at the end, and the command exits 2; bad arguments (a
model that is not a colorizer, two inputs with one output name) stop it before any work, exit 2.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.color import AB_SCALE, join_lab, lightness, rgb_to_lab, split_lab
from pipeline.console import progress_bar
from pipeline.data.sources import IMAGE_SUFFIXES, decode_image, list_images
from pipeline.methods.base import GenerativeModel
from pipeline.methods.export import load_on
from pipeline.methods.registry import METHODS
from pipeline.pixels import to_uint8, to_unit
from pipeline.reports.grid import save_image

log = logging.getLogger(__name__)

DEFAULT_SCALE = 4.0  # shorter side / crop size: the middle of the photos' tile_scales (2 ... 8)


class UnreadableImages(OSError):
    """Some inputs could not be decoded; the others were colorized (exit status 2)."""


@dataclass(frozen=True)
class Job:
    """One input file and the name of its outputs (without suffix) relative to the output folder."""

    path: Path
    name: Path


def find_inputs(inputs: list[str]) -> list[Job]:
    """Files as given (any suffix: unreadable ones are reported later), folders searched for
    png/jpg files recursively; ValueError for a missing input, an empty folder or two inputs that
    would write the same output."""
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
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.name in seen:
            raise ValueError(
                f"{seen[job.name]} and {job.path} would both be written as {job.name}.png; "
                "colorize them into different --out folders"
            )
        seen[job.name] = job.path
    return jobs


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): gray repeated, transparency composited on white."""
    with Image.open(path) as img:
        img.load()
        pixels = decode_image(img)
    return np.repeat(pixels[..., None], 3, axis=-1) if pixels.ndim == 2 else pixels


def colorize_image(
    model: GenerativeModel,
    rgb: np.ndarray,
    *,
    samples: int,
    steps: int,
    scale: float,
    generator: torch.Generator,
) -> np.ndarray:
    """``samples`` colorizations (uint8 (K, H, W, 3)) of a uint8 RGB image (H, W, 3) (module
    docstring: condition at ``scale`` x the crop size, ab upsampled onto the full-size L*)."""
    h, w = rgb.shape[:2]
    short = max(8, round(scale * model.params.data.image_size))
    size = (max(1, round(w * short / min(h, w))), max(1, round(h * short / min(h, w))))
    small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
    x = to_unit(small.transpose(2, 0, 1)[None].copy())
    cond = lightness(x).expand(samples, -1, -1, -1).to(model.device)
    out = model.sample(samples, generator=generator, steps=steps, cond=cond)  # (K, 3, h', w')
    ab = split_lab(out.cpu())[1].double() * AB_SCALE
    ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
    full = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).double() / 255
    L = rgb_to_lab(full)[:, :1].expand(samples, -1, -1, -1)
    colour = join_lab(L, ab)  # (K, 3, H, W) in [0, 1]
    return to_uint8(colour * 2 - 1).permute(0, 2, 3, 1).numpy()


def load_colorizer(models_dir: str, device: str) -> GenerativeModel:
    """The exported model in ``models_dir`` on ``device``; ValueError unless it is a colorizer."""
    model = load_on(models_dir, device)
    if model.conditioning != "image":
        colorizers = [name for name, family in METHODS.items() if family.conditioning == "image"]
        raise ValueError(
            f"--model {models_dir} holds model.family {model.params.model.family!r}, not a "
            f"colorizer ({', '.join(colorizers)}); train one with `make colorize`"
        )
    return model


def run(args: argparse.Namespace) -> None:
    """The command: colorize every input, then report the unreadable ones (UnreadableImages)."""
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.scale <= 0:
        raise ValueError(f"--scale must be > 0, got {args.scale}")
    jobs = find_inputs(args.inputs)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_colorizer(args.model, device)
    out_dir = Path(args.out)
    failed: list[str] = []
    written = 0
    for job in progress_bar(jobs, desc="colorize", unit="img", disable=len(jobs) < 2):
        try:
            rgb = read_rgb(job.path)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            failed.append(f"{job.path}: {exc}")
            continue
        generator = torch.Generator(model.device).manual_seed(args.seed)
        images = colorize_image(
            model,
            rgb,
            samples=args.samples,
            steps=args.steps or model.params.eval.steps,
            scale=args.scale,
            generator=generator,
        )
        for k, image in enumerate(images, start=1):
            suffix = "" if k == 1 else f"_{k}"
            target = out_dir / job.name.parent / f"{job.name.name}{suffix}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            save_image(image, target)
            written += 1
    log.info("colorize: wrote %d image(s) to %s", written, out_dir)
    if failed:
        raise UnreadableImages(
            f"{len(failed)} of {len(jobs)} input(s) could not be read and were skipped:\n  "
            + "\n  ".join(failed)
        )


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "colorize",
        help="colorize grayscale photos with a trained colorizer",
        description=__doc__.split("\n\n")[0].replace("``", "").rstrip(".")
        + ". The output keeps the input's size and lightness; see the README.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument(
        "--model", required=True, help="an exported colorizer (e.g. colorize/models)"
    )
    parser.add_argument("--out", required=True, help="folder for the colorized PNGs")
    parser.add_argument(
        "--steps", type=int, help="sampler steps (default: the model's eval.steps); more is slower"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        help="K colorizations per input: NAME.png, NAME_2.png, ...",
    )
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same colours")
    parser.add_argument(
        "--scale",
        type=float,
        default=DEFAULT_SCALE,
        help="shorter side the model sees, in crop sizes (default %(default)s: as in training)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.set_defaults(func=run)
