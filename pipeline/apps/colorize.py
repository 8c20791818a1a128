"""``python -m pipeline colorize``: colorize a user's grayscale (or colour) photos with a trained
colorizer (model.family ddpm_color, regression_color or classify_color).

Per input file: decode it (any size and mode, as the photos source does, turned upright by its EXIF
orientation) and colorize it as pipeline.photo says: a model trained on crops (the shipped
colorizer) runs on overlapping tiles of the photo at its crops' scale, one trained on whole-photo
views sees the whole photo at once; each output takes the guide's colours (``--guide``; by
default, without ``--model``, the shipped colorizer's) with ``--vividness`` of the chroma that
``--draws`` diffusion samples add (default with a guide: none, so nothing is drawn), at
``--saturation``; the predicted ab is joined onto the input's own full-resolution L*, so the output
has the input's exact size and lightness.

Bounded work, whatever the input (docs/colorization.md, benchmarks/README.md for the measured
peak): inputs above ``--max-megapixels`` (default 50) or longer than MAX_ASPECT times their width
are refused; the model sees at most pipeline.photo.WORK_PIXELS pixels (larger working sizes shrink
to fit), one sample at a time; the full-resolution join runs in strips.

Outputs: ``OUT/<name>.png`` per input (the first sample) and, with ``--samples K``, also
``OUT/<name>_2.png`` ... ``OUT/<name>_K.png``; files found in a folder keep their path relative to
it. Outputs follow pipeline.apps.outputs: checked before any work, they never replace an input, a
file inside an input folder, each other, or (without ``--overwrite``) any file that exists. An input
that cannot be read or is too large is skipped and listed at the end with one line each, the others
are colorized, and the command exits 2.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from PIL import Image

from pipeline.apps.args import add_overwrite, add_precision, float_in, int_in, seed
from pipeline.apps.inputs import Job, add_max_megapixels, find_inputs, raise_for_skipped
from pipeline.apps.outputs import check_outputs
from pipeline.console import progress_bar
from pipeline.imagefile import read_rgb
from pipeline.io import first_line
from pipeline.photo import (
    DEFAULT_DRAWS,
    GUIDE_FAMILIES,
    GUIDED,
    TILED_SCALE,
    UNGUIDED,
    WHOLE_SCALE,
    WORK_PIXELS,
    decoding,
)
from pipeline.photo_colorizer import SATURATIONS, Colorizer, colorizer_dirs
from pipeline.reports.grid import save_image

log = logging.getLogger(__name__)

SCALES = (0.5, 8.0)  # --scale's range: the photos' tile_scales are 2 ... 8
MAX_SAMPLES = 16  # --samples: colorizations per input
MAX_DRAWS = 16
MAX_STEPS = 100_000  # --steps before the model's own bound (diffusion.timesteps) is known


def output_names(job: Job, samples: int) -> list[Path]:
    """The outputs of one input, relative to --out: NAME.png, NAME_2.png ... NAME_K.png."""
    name = job.name
    return [
        name.parent / f"{name.name}{'' if k == 1 else f'_{k}'}.png" for k in range(1, samples + 1)
    ]


def run(args: argparse.Namespace) -> None:
    """The command: check every output, colorize every input, then report the inputs that were
    skipped (UnreadableImages)."""
    with tempfile.TemporaryDirectory() as workdir:  # where models named by URI are downloaded
        colorize_all(args, *colorizer_dirs(args.model, args.guide, workdir))


def colorize_all(args: argparse.Namespace, models_dir: str, guide_dir: str | None) -> None:
    """``run`` with the colorizer and guide in local folders."""
    jobs = find_inputs(args.inputs)
    out_dir = Path(args.out)
    chosen = decoding(guide_dir is not None, args.vividness, args.saturation)
    if guide_dir and chosen.vividness == 0 and args.samples > 1:
        raise ValueError(
            f"--samples {args.samples}: at --vividness 0 with a guide (the default with one) "
            f"every sample is the guide's colours, the same {args.samples} times; pass "
            "--vividness above 0 (e.g. 0.25) for samples that differ"
        )
    targets = iter(
        check_outputs(
            [out_dir / name for job in jobs for name in output_names(job, args.samples)],
            [*args.inputs, models_dir, *([guide_dir] if guide_dir else [])],
            overwrite=args.overwrite,
            root=out_dir,
        )
    )
    outputs = {job: [next(targets) for _ in range(args.samples)] for job in jobs}
    colorizer = Colorizer.load(models_dir, guide_dir, args.device, args.precision)
    colorizer.steps(args.steps)  # a bad --steps stops the command before any work
    failed: list[str] = []
    written = 0
    for job in progress_bar(jobs, desc="colorize", unit="img", disable=len(jobs) < 2):
        try:
            rgb = read_rgb(job.path, round(args.max_megapixels * 1e6))
            images = colorizer.colorize(
                rgb,
                seed=args.seed,
                samples=args.samples,
                steps=args.steps,
                draws=args.draws,
                vividness=chosen.vividness,
                saturation=chosen.saturation,
                scale=args.scale,
            )
            for image, target in zip(images, outputs[job], strict=True):
                save_image(image, target, overwrite=args.overwrite)
                written += 1
        except (OSError, ValueError, MemoryError, Image.DecompressionBombError) as exc:
            failed.append(f"{job.path}: {first_line(exc)}")
    log.info("colorize: wrote %d image(s) to %s", written, out_dir)
    raise_for_skipped(failed, len(jobs), "colorized")


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "colorize",
        help="colorize grayscale photos with a trained colorizer",
        description=__doc__.split("\n\n")[0].replace("``", "").rstrip(".")
        + ". The output keeps the input's size and lightness; see docs/colorization.md.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument(
        "--model",
        help="an exported colorizer (e.g. colorize/models) or an MLflow model URI "
        "(models:/NAME/VERSION, models:/NAME@ALIAS; a photo model's brings its guide); default: "
        "the one that ships with the project (pipeline/colorizer, trained by "
        "colorize/shipped/dvc.yaml)",
    )
    parser.add_argument(
        "--guide",
        help=f"a one-step colorizer ({', '.join(GUIDE_FAMILIES)}; e.g. colorize/models_regression) "
        "whose hue and chroma each "
        "output starts from, the draws adding --vividness of theirs; default: the shipped "
        "colorizer's guide without --model, none with it",
    )
    parser.add_argument("--out", required=True, help="folder for the colorized PNGs")
    add_colour_options(parser)
    add_max_megapixels(
        parser, "peak memory grows about 7 MB per megapixel, see docs/colorization.md"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add_precision(parser, cpu_bf16=True)
    add_overwrite(parser)
    parser.set_defaults(func=run)


def add_colour_options(parser: argparse.ArgumentParser) -> None:
    """What decides the colours: the draws, their steps and vividness, saturation, seed, scale."""
    parser.add_argument(
        "--steps",
        type=int_in(1, MAX_STEPS),
        help="sampler steps (default: the model's eval.steps); more is slower",
    )
    parser.add_argument(
        "--samples",
        type=int_in(1, MAX_SAMPLES),
        default=1,
        help="K colorizations per input: NAME.png, NAME_2.png, ...",
    )
    parser.add_argument(
        "--draws",
        type=int_in(1, MAX_DRAWS),
        default=DEFAULT_DRAWS,
        help="diffusion samples per output: they add chroma to the guide's colours, or without "
        "a guide their consensus is the output (default %(default)s; fewer is faster)",
    )
    parser.add_argument(
        "--vividness",
        type=float_in(0.0, 1.0),
        help="share of the draws' chroma beyond the guide's (without a guide: beyond their mean's) "
        f"that each output takes: 0 the guide alone (nothing drawn: fast), 1 as vivid as one "
        f"draw (default {GUIDED.vividness:g} with a guide, {UNGUIDED.vividness:g} without)",
    )
    parser.add_argument(
        "--saturation",
        type=float_in(*SATURATIONS),
        help="the output's chroma times this, its hue kept: 0 gray, 1 as decoded (default "
        f"{GUIDED.saturation:g} with a guide, {UNGUIDED.saturation:g} without; "
        "benchmarks/README.md, 'saturation')",
    )
    parser.add_argument("--seed", type=seed, default=0, help="the same seed gives the same colours")
    parser.add_argument(
        "--scale",
        type=float_in(*SCALES),
        help="shorter side the model sees, in its image sizes (default: as in training, "
        f"{WHOLE_SCALE:g} for a model trained on whole-photo views, {TILED_SCALE:g} on crops; "
        f"the model sees at most {WORK_PIXELS:,} pixels)",
    )
