"""``python -m pipeline colorize``: colorize a user's grayscale (or colour) photos with a trained
colorizer (model.family ddpm_color or regression_color).

Per input file: decode it (any size and mode, as the photos source does, turned upright by its EXIF
orientation), take its CIE L* at full resolution, and make the condition the way training made it:
the image resized (bicubic, as preprocessing resizes) so its shorter side is ``scale`` times the
model's crop size, then ``pipeline.color.lightness``. The model samples ab at that size, its
network run on overlapping tiles of its training crop size (half a crop apart, blended:
pipeline.models.tiled), so that its attention sees the context it was trained on; ab is upsampled
(bilinear) to the input's size and joined with the input's own full-resolution L*, with the chroma
of out-of-gamut pixels reduced at constant L* (``pipeline.color.join_lab``). So the output has the
input's exact size and lightness (within uint8 rounding).

Each output combines ``--draws`` N samples of ab (``consensus``) around a centre: per pixel the
centre's hue, at the centre's chroma plus ``--vividness`` times what the draws' mean chroma has
beyond it. The centre is the guide's ab where there is a guide (``--guide``; by default, without
``--model``, the shipped colorizer's: a ``regression_color`` model, one forward pass trained with
L2 to estimate the posterior mean E[ab | L*]), else the draws' mean. Measured on whole photos
(benchmarks/README.md, "guide"): the guide's hue is right more often than the draws' (62% of the
coloured pixels of the validation photos against 40-56%) and its colours are closer to the truth
than the gray image's; the draws add the vividness the L2 estimate averages away. ``--vividness 0``
is the guide alone (nothing is drawn: 0.3 s a photo), 1 as vivid as one draw. Without a guide,
where the draws agree on a hue it is kept at their vividness; where they disagree, their mean's hue
is the one most of their chroma points to: on 500 validation crops (benchmarks/colorize_draws.py) 4
draws raise the share of pixels with the right hue from 37% to 48% and lower CIEDE2000 by 6% at the
same colourfulness.

Bounded work, whatever the input (docs/colorization.md, benchmarks/README.md for the measured
peak): inputs above ``--max-megapixels`` (default 50) or longer than MAX_ASPECT times their width
are refused; the model sees at most WORK_PIXELS pixels (larger working sizes shrink to fit), one
sample at a time; the full-resolution join runs in strips of STRIP_PIXELS.

Outputs: ``OUT/<name>.png`` per input (the first sample) and, with ``--samples K``, also
``OUT/<name>_2.png`` ... ``OUT/<name>_K.png``; files found in a folder keep their path relative to
it. Outputs follow pipeline.apps.outputs: checked before any work, they never replace an input, a
file inside an input folder, each other, or (without ``--overwrite``) any file that exists. An input
that cannot be read or is too large is skipped and listed at the end with one line each, the others
are colorized, and the command exits 2.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.apps.args import add_overwrite, add_precision, float_in, int_in, seed
from pipeline.apps.inputs import Job, add_max_megapixels, find_inputs, raise_for_skipped
from pipeline.apps.outputs import check_outputs
from pipeline.color import AB_SCALE, join_lab, lightness, rgb_to_lab, split_lab
from pipeline.console import progress_bar
from pipeline.imagefile import read_rgb
from pipeline.io import first_line
from pipeline.methods.base import GenerativeModel, Sampling
from pipeline.methods.export import load_on
from pipeline.methods.step import resolve_precision
from pipeline.models.tiled import TiledNet
from pipeline.pixels import to_uint8, to_unit
from pipeline.registry import METHODS
from pipeline.reports.grid import save_image
from pipeline.shipped import GUIDE_FAMILY, guide_mismatch, shipped_colorizer, shipped_guide

log = logging.getLogger(__name__)

DEFAULT_SCALE = 4.0  # shorter side / crop size: the middle of the photos' tile_scales (2 ... 8)
SCALES = (0.5, 8.0)  # --scale's range: the photos' tile_scales are 2 ... 8
MAX_SAMPLES = 16  # --samples: colorizations per input
DEFAULT_DRAWS = 4  # --draws: benchmarks/colorize_draws.py (right hue 37% -> 48% for 4x the time)
MAX_DRAWS = 16
DEFAULT_VIVIDNESS = 0.25  # --vividness: the most vivid step of 0.25 within 0.95 of gray's
# CIEDE2000 on the validation photos with the shipped guide (benchmarks/README.md, "guide")
MAX_STEPS = 100_000  # --steps before the model's own bound (diffusion.timesteps) is known
WORK_PIXELS = 256 * 256  # the most the model sees per sample (as tiles of its crop size)
STRIP_PIXELS = 1 << 19  # full-resolution pixels joined at a time (about 100 MB of float64)


def output_names(job: Job, samples: int) -> list[Path]:
    """The outputs of one input, relative to --out: NAME.png, NAME_2.png ... NAME_K.png."""
    name = job.name
    return [
        name.parent / f"{name.name}{'' if k == 1 else f'_{k}'}.png" for k in range(1, samples + 1)
    ]


def working_size(h: int, w: int, crop: int, scale: float) -> tuple[int, int]:
    """(height, width) the model sees: shorter side ``scale`` x ``crop``, aspect kept, shrunk to
    at most WORK_PIXELS pixels."""
    short = max(8, round(scale * crop))
    ratio = short / min(h, w)
    ratio *= min(1.0, math.sqrt(WORK_PIXELS / (h * ratio * w * ratio)))
    return max(1, min(round(h * ratio), WORK_PIXELS)), max(1, min(round(w * ratio), WORK_PIXELS))


def bilinear_rows(small: torch.Tensor, size: tuple[int, int], rows: range) -> torch.Tensor:
    """Rows ``rows`` of ``F.interpolate(small, size, mode="bilinear", align_corners=False)``,
    from the rows of ``small`` they need: (N, C, h, w) -> (N, C, len(rows), W). Source row
    y = (row + 0.5) h / H - 0.5, clamped at 0, as torch computes it."""
    h, (H, W) = small.shape[-2], size
    y = ((torch.arange(rows.start, rows.stop, dtype=torch.float64) + 0.5) * (h / H) - 0.5).clamp(
        min=0
    )
    y0 = y.floor().long().clamp(max=h - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    weight = (y - y0).to(small.dtype)[:, None]  # (S, 1)
    mixed = small[..., y0, :] * (1 - weight) + small[..., y1, :] * weight  # (N, C, S, w)
    return F.interpolate(mixed, size=(len(rows), W), mode="bilinear", align_corners=False)


def consensus(
    ab: torch.Tensor, vividness: float = DEFAULT_VIVIDNESS, guide: torch.Tensor | None = None
) -> torch.Tensor:
    """N draws of ab (N, 2, H, W) -> one (1, 2, H, W): per pixel the hue of a centre c, the draws'
    mean m = (1/N) sum_k ab_k or a ``guide``'s ab (1, 2, H, W), at a chroma between the centre's
    and the draws', |c| + vividness max(0, (1/N) sum_k |ab_k| - |c|) (0 where c = 0). Without a
    guide the hue is the chroma-weighted circular mean of the draws' hues; at vividness 1 the
    chroma is that of one draw on average; at 0 the output is the plain mean (an estimate of the
    posterior mean, which a per-pixel error rewards), desaturated wherever the draws disagree.
    (Zhang, Isola and Efros 2016, eq. 5, interpolate between the mean and the mode of a predicted
    distribution for the same reason: the mean is desaturated, a mode can be a wrong, isolated
    guess.) One draw without a guide is returned unchanged."""
    if len(ab) == 1 and guide is None:
        return ab
    centre = ab.mean(0, keepdim=True) if guide is None else guide
    norm = centre.norm(dim=1, keepdim=True)
    extra = (ab.norm(dim=1, keepdim=True).mean(0, keepdim=True) - norm).clamp(min=0)
    chroma = norm + vividness * extra
    return torch.where(norm > 0, centre * chroma / norm.clamp(min=torch.finfo(ab.dtype).tiny), 0.0)


def ab_draws(
    model: GenerativeModel,
    rgb: np.ndarray,
    *,
    steps: int,
    scale: float,
    generator: torch.Generator,
    precision: str = "fp32",
) -> Iterator[torch.Tensor]:
    """Samples of a*b* for a uint8 RGB image (H, W, 3), one (1, 2, h, w) in CIELAB units at a time
    and as many as are taken, at the working size (module docstring: condition at ``scale`` x the
    crop size, the network run on overlapping tiles of its crop size). The condition and the tiled
    network are made once, before the first draw."""
    crop = model.params.data.image_size
    size = working_size(*rgb.shape[:2], crop, scale)
    small = np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.Resampling.BICUBIC))
    cond = lightness(to_unit(small.transpose(2, 0, 1)[None].copy())).to(model.device)
    tiled = type(model)(TiledNet(model.net, tile=crop, stride=crop // 2), model.params)
    how = Sampling(steps=steps)
    while True:
        out = tiled.sample(1, precision=precision, generator=generator, how=how, cond=cond)
        yield split_lab(out.cpu())[1].double() * AB_SCALE


def guide_ab(
    guide: GenerativeModel, rgb: np.ndarray, *, scale: float, precision: str = "fp32"
) -> torch.Tensor:
    """A guide's ab (1, 2, h, w) in CIELAB units for a uint8 RGB image (H, W, 3), at the working
    size ``ab_draws`` uses: one network pass, no noise."""
    unused = torch.Generator(guide.device)  # a regression draws no noise
    return next(ab_draws(guide, rgb, steps=1, scale=scale, generator=unused, precision=precision))


def join_full_size(rgb: np.ndarray, ab: torch.Tensor) -> np.ndarray:
    """ab (1, 2, h, w) in CIELAB units upsampled (bilinear) onto the full-resolution L* of a uint8
    RGB image (H, W, 3), strip by strip: the colorized image, uint8 (H, W, 3)."""
    h, w = rgb.shape[:2]
    rows_per_strip = max(1, STRIP_PIXELS // w)
    colour = np.empty_like(rgb)
    for top in range(0, h, rows_per_strip):
        rows = range(top, min(h, top + rows_per_strip))
        strip = torch.from_numpy(rgb[rows.start : rows.stop].transpose(2, 0, 1)[None].copy())
        L = rgb_to_lab(strip.double() / 255)[:, :1]  # (1, 1, S, W)
        joined = join_lab(L, bilinear_rows(ab, (h, w), rows))  # (1, 3, S, W) in [0, 1]
        colour[rows.start : rows.stop] = to_uint8(joined * 2 - 1)[0].permute(1, 2, 0).numpy()
    return colour


def colorize_image(
    model: GenerativeModel,
    rgb: np.ndarray,
    *,
    samples: int,
    draws: int,
    steps: int,
    scale: float,
    generator: torch.Generator,
    vividness: float = DEFAULT_VIVIDNESS,
    guide: GenerativeModel | None = None,
    precision: str = "fp32",
) -> Iterator[np.ndarray]:
    """``samples`` colorizations (each uint8 (H, W, 3)) of a uint8 RGB image (H, W, 3), one at a
    time, each the ``consensus`` at ``vividness`` of ``draws`` samples (``ab_draws``), around the
    ``guide``'s ab if one is given, joined onto the full-size L* (``join_full_size``). A guide at
    vividness 0 is the guide's ab alone: nothing is drawn."""
    centre = None
    if guide is not None:
        centre = guide_ab(guide, rgb, scale=scale, precision=precision)
        if vividness == 0:
            yield from itertools.repeat(join_full_size(rgb, centre), samples)
            return
    stream = ab_draws(
        model, rgb, steps=steps, scale=scale, generator=generator, precision=precision
    )
    for _ in range(samples):
        ab = torch.cat(list(itertools.islice(stream, draws)))  # (draws, 2, h, w)
        yield join_full_size(rgb, consensus(ab, vividness, centre))


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


def load_guide(guide_dir: str, model: GenerativeModel) -> GenerativeModel:
    """The exported guide in ``guide_dir`` on ``model``'s device; ValueError unless it is a
    GUIDE_FAMILY model of ``model``'s crop size and ``model`` is a diffusion colorizer."""
    if model.params.model.family == GUIDE_FAMILY:
        raise ValueError(f"--guide needs a diffusion --model, not a {GUIDE_FAMILY}")
    guide = load_on(guide_dir, str(model.device))
    if problem := guide_mismatch(model, guide):
        raise ValueError(f"--guide {guide_dir} {problem}")
    return guide


def colorizer_dirs(model: str | None, guide: str | None) -> tuple[str, str | None]:
    """--model and --guide as given, or their defaults: the shipped colorizer and its guide
    without --model; no guide with it."""
    if model:
        return model, guide
    return str(shipped_colorizer()), guide or str(shipped_guide())


def run(args: argparse.Namespace) -> None:
    """The command: check every output, colorize every input, then report the inputs that were
    skipped (UnreadableImages)."""
    jobs = find_inputs(args.inputs)
    out_dir = Path(args.out)
    models_dir, guide_dir = colorizer_dirs(args.model, args.guide)
    targets = iter(
        check_outputs(
            [out_dir / name for job in jobs for name in output_names(job, args.samples)],
            [*args.inputs, models_dir, *([guide_dir] if guide_dir else [])],
            overwrite=args.overwrite,
        )
    )
    outputs = {job: [next(targets) for _ in range(args.samples)] for job in jobs}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_colorizer(models_dir, device)
    guide = load_guide(guide_dir, model) if guide_dir else None
    steps = args.steps or model.params.eval.steps
    if steps > model.params.diffusion.timesteps:
        raise ValueError(
            f"--steps must be at most {model.params.diffusion.timesteps} (the model's "
            f"diffusion.timesteps), got {steps}"
        )
    failed: list[str] = []
    written = 0
    for job in progress_bar(jobs, desc="colorize", unit="img", disable=len(jobs) < 2):
        generator = torch.Generator(model.device).manual_seed(args.seed)
        try:
            rgb = read_rgb(job.path, round(args.max_megapixels * 1e6))
            images = colorize_image(
                model,
                rgb,
                samples=args.samples,
                steps=steps,
                scale=args.scale,
                generator=generator,
                draws=args.draws,
                vividness=args.vividness,
                guide=guide,
                precision=resolve_precision(args.precision, model.device),
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
        help="an exported colorizer (e.g. colorize/models); default: the one that ships with the "
        "project (pipeline/colorizer, trained by colorize/shipped/dvc.yaml)",
    )
    parser.add_argument(
        "--guide",
        help=f"a {GUIDE_FAMILY} model (e.g. colorize/models_regression) whose hue and chroma each "
        "output starts from, the draws adding --vividness of theirs; default: the shipped "
        "colorizer's guide without --model, none with it",
    )
    parser.add_argument("--out", required=True, help="folder for the colorized PNGs")
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
        default=DEFAULT_VIVIDNESS,
        help="share of the draws' chroma beyond the guide's (without a guide: beyond their mean's) "
        "that each output takes: 0 the guide alone (fast, closest to the true colours on "
        "average), 1 as vivid as one draw (default %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="the same seed gives the same colours")
    parser.add_argument(
        "--scale",
        type=float_in(*SCALES),
        default=DEFAULT_SCALE,
        help="shorter side the model sees, in crop sizes (default %(default)s: as in training; "
        f"the model sees at most {WORK_PIXELS:,} pixels)",
    )
    add_max_megapixels(
        parser, "peak memory grows about 7 MB per megapixel, see docs/colorization.md"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    add_precision(parser)
    add_overwrite(parser)
    parser.set_defaults(func=run)
