"""``python -m pipeline sample``: draw images from any family's exported model into a PNG grid.

A class-conditional model (``ddpm_cfg``) draws class ``--class C`` or, without it, every class in
turn (one class per column), guided by ``--guidance W`` (default: its ``eval.guided.guidance_scale``).
``--steps`` and ``--sampler`` set a diffusion family's reverse process; ``--each`` also writes one
PNG per image into the folder OUT without ``.png`` (created if missing; never emptied or replaced).
The same ``--seed`` gives the same images. Outputs follow pipeline.apps.outputs: none replaces a
file that exists unless ``--overwrite``, none lands in the model's folder.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.apps.args import add_overwrite, add_precision, float_in, int_in, seed
from pipeline.apps.outputs import check_outputs
from pipeline.config import MAX_SAMPLES
from pipeline.console import progress_bar
from pipeline.diffusion.samplers import SAMPLERS
from pipeline.methods.base import GenerativeModel, Sampling
from pipeline.methods.export import load_on
from pipeline.methods.step import resolve_precision
from pipeline.model_uri import is_uri, model_folder
from pipeline.reports.grid import image_grid, save_image

log = logging.getLogger(__name__)

BATCH = 100  # images per network call batch (fixed: the images depend on it through the RNG)
MAX_GUIDANCE = 100.0  # classifier-free guidance w; papers use 0-10, beyond 100 images saturate
MAX_STEPS = 100_000  # --steps before the model's own bound (diffusion.timesteps) is known


def output_paths(args: argparse.Namespace) -> list[Path]:
    """The grid, then with ``--each`` one PNG per image in OUT without .png; ValueError naming
    --out unless it is a .png file name."""
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.stem.strip(".") == "":
        raise ValueError(f"--out must name a .png file such as grid.png, got {args.out}")
    each = [out.with_suffix("") / f"{i:05d}.png" for i in range(args.count)] if args.each else []
    return [out, *each]


def check_args(args: argparse.Namespace, model: GenerativeModel) -> None:
    """ValueError naming the option for a bad value or one the model's family does not take."""
    family = model.params.model.family
    if not model.num_classes:
        for option, value in (("--class", args.cls), ("--guidance", args.guidance)):
            if value is not None:
                raise ValueError(
                    f"{option} applies to class-conditional models (ddpm_cfg); --model "
                    f"{args.model} holds {family!r}, which has no classes"
                )
    elif args.cls is not None and not 0 <= args.cls < model.num_classes:
        raise ValueError(
            f"--class must be in [0, {model.num_classes - 1}] (the model's classes), got {args.cls}"
        )
    for option, value in (("--steps", args.steps), ("--sampler", args.sampler)):
        if value is not None and option[2:] not in model.sampler_options:
            raise ValueError(
                f"{option} applies to diffusion families; {family!r} samples in one decoder call"
            )
    if args.steps is not None and not 1 <= args.steps <= model.params.diffusion.timesteps:
        raise ValueError(
            f"--steps must be in [1, {model.params.diffusion.timesteps}] (diffusion.timesteps), "
            f"got {args.steps}"
        )


def draw(model: GenerativeModel, args: argparse.Namespace) -> tuple[torch.Tensor, int]:
    """``args.count`` images in [-1, 1] (CPU) and the grid's images per row. A family that
    samples from given images (a colorizer) is refused: ``python -m pipeline colorize``."""

    def no_references(count: int) -> np.ndarray:
        raise ValueError(
            f"--model {args.model} holds the colorizer {model.params.model.family!r}, which "
            "colours given photos: use `python -m pipeline colorize`"
        )

    conditions = model.conditions(args.count, no_references)
    if args.cls is not None:  # checked: a class-conditional model
        conditions = np.full(args.count, args.cls, dtype=np.int64)
    how = Sampling(
        args.steps or model.params.eval.steps,
        args.sampler or model.params.eval.sampler,
        args.eta,
        args.guidance,
    )
    generator = torch.Generator(model.device).manual_seed(args.seed)
    batches = []
    for start in progress_bar(range(0, args.count, BATCH), desc="sample", unit="batch"):
        n = min(BATCH, args.count - start)
        part = None if conditions is None else conditions[start : start + n]
        batches.append(
            model.sample(
                n,
                precision=resolve_precision(args.precision, model.device),
                generator=generator,
                how=how,
                cond=model.cond(part),
            ).cpu()
        )
    images = torch.cat(batches)
    if not torch.isfinite(images).all():
        raise ValueError(
            f"--model {args.model} produced non-finite pixels (a diverged model?); nothing written"
        )
    if args.cls is not None:  # one class: a square grid
        return images, math.ceil(math.sqrt(args.count))
    return model.panel(images, conditions)


def run(args: argparse.Namespace) -> None:
    local = [] if is_uri(args.model) else [args.model]  # outputs never land in its folder
    targets = check_outputs(output_paths(args), local, overwrite=args.overwrite)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as workdir:  # a model named by URI is downloaded here
        model = load_on(str(model_folder(args.model, workdir)), device)
    check_args(args, model)
    images, nrow = draw(model, args)
    out, each = targets[0], targets[1:]
    for image, path in zip(images, each, strict=False):  # each: none, or one per image
        save_image(image_grid(image[None], nrow=1, padding=0), path, overwrite=args.overwrite)
    save_image(image_grid(images, nrow=nrow), out, overwrite=args.overwrite)
    each = f" and one PNG per image in {out.with_suffix('')}/" if args.each else ""
    log.info("sample: %d image(s) of %s in %s%s", len(images), model.params.model.family, out, each)


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sample",
        help="draw images from a trained model (any family) into a PNG grid",
        description=__doc__.split("\n\n")[0].replace("``", "").rstrip(".") + ".",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="an exported model (e.g. models) or an MLflow model URI (models:/NAME/VERSION, "
        "models:/NAME@ALIAS)",
    )
    parser.add_argument(
        "--count", type=int_in(1, MAX_SAMPLES), required=True, help="how many images"
    )
    parser.add_argument("--out", required=True, help="the grid, a .png file")
    parser.add_argument(
        "--class",
        dest="cls",
        type=int,
        help="class-conditional models: draw this class (default: every class in turn)",
    )
    parser.add_argument(
        "--guidance",
        type=float_in(0, MAX_GUIDANCE),
        help="class-conditional models: classifier-free guidance w (default: eval.guided.guidance_scale)",
    )
    parser.add_argument(
        "--steps", type=int_in(1, MAX_STEPS), help="diffusion: sampler steps (default: eval.steps)"
    )
    parser.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        help="diffusion: reverse process (default: eval.sampler)",
    )
    parser.add_argument(
        "--eta", type=float_in(0, 1), default=0.0, help="diffusion, ddim: noise (0: deterministic)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="the same seed gives the same images")
    parser.add_argument(
        "--each", action="store_true", help="also write one PNG per image into OUT without .png/"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add_precision(parser)
    add_overwrite(parser)
    parser.set_defaults(func=run)
