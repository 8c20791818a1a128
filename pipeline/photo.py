"""A trained colorizer on a whole photograph, as ``python -m pipeline colorize`` and the evaluate
stage run it.

Per photo (uint8 RGB, decoded by the caller): take its CIE L* at full resolution, and make the
condition the way training made it: the image resized (bicubic, as preprocessing resizes) so its
shorter side is ``scale`` times the model's image size, then ``pipeline.color.lightness``. A model
trained on views of whole photos (``data.fit: views``) sees the whole photo at once, at the scale
of its views (default scale 1), so every decision it makes has the whole scene in view; a model
trained on crops (``fit: tiles``, the shipped colorizer) is run on overlapping tiles of its crop
size (half a crop apart, blended: pipeline.models.tiled) of the photo at the middle of its crops'
scales (default scale 4), so that its attention sees the context it was trained on; one trained
with ``data.scene`` is also told, tile by tile, the tile's place in the photo (and with ``photo``
the photo's thumbnail), as its crops were. ab is
upsampled (bilinear) to the input's size and joined with the input's own full-resolution L*, with
the chroma of out-of-gamut pixels reduced at constant L* (``pipeline.color.join_lab``). So the
output has the input's exact size and lightness (within uint8 rounding).

Each output combines ``--draws`` N samples of ab (``consensus``) around a centre: per pixel the
centre's hue, at the centre's chroma plus ``--vividness`` times what the draws' mean chroma has
beyond it. The centre is the guide's ab where there is a guide (``--guide``; by default, without
``--model``, the shipped colorizer's: a ``regression_color`` model, one forward pass trained with
L2 to estimate the posterior mean E[ab | L*]), else the draws' mean. Measured on whole photos
(benchmarks/README.md, "guide"): the guide's hue is right more often than the draws' (62% of the
coloured pixels of the validation photos against 40-56%) and its colours are closer to the truth
than the gray image's; the draws add the vividness the L2 estimate averages away. ``--vividness 0``
is the guide alone (nothing is drawn: 0.3 s a photo), 1 as vivid as one draw. ``--saturation``
then scales the output's chroma at its hue: an L2 estimate is paler than the truth wherever the
hue is uncertain, and 1.15 times the guide's chroma alone scores as well as a quarter of four
draws' (CIEDE2000 within 0.01 of it, lower colour FID) at 1/60 of the time, so that is the default
with a guide (GUIDED; benchmarks/README.md, "saturation"). Without a guide,
where the draws agree on a hue it is kept at their vividness; where they disagree, their mean's hue
is the one most of their chroma points to: on 500 validation crops (benchmarks/colorize_draws.py) 4
draws raise the share of pixels with the right hue from 37% to 48% and lower CIEDE2000 by 6% at the
same colourfulness.

Bounded work, whatever the input: the model sees at most WORK_PIXELS pixels (larger working sizes
shrink to fit), one sample at a time; the full-resolution join runs in strips of STRIP_PIXELS.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import astuple, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.color import AB_SCALE, join_lab, lightness, rgb_to_lab, split_lab
from pipeline.methods.base import GenerativeModel, Sampling
from pipeline.pixels import to_uint8, to_unit
from pipeline.registry import FAMILIES
from pipeline.scene import thumbnail

GUIDE_FAMILIES = tuple(name for name, entry in FAMILIES.items() if entry.guides)  # a guide's
WHOLE_SCALE = 1.0  # shorter side / image size for a model trained on views: a whole view's scale
TILED_SCALE = 4.0  # for a model trained on crops: the middle of the photos' tile_scales (2 ... 8)
DEFAULT_DRAWS = 4  # --draws: benchmarks/colorize_draws.py (right hue 37% -> 48% for 4x the time)
WORK_PIXELS = 256 * 256  # the most the model sees per sample
STRIP_PIXELS = 1 << 19  # full-resolution pixels joined at a time (about 100 MB of float64)


@dataclass(frozen=True)
class Decoding:
    """How an output is decoded (``consensus``, then ``join_full_size``): ``vividness``, the share
    of the draws' chroma beyond the centre's; ``saturation``, the output's chroma times this."""

    vividness: float
    saturation: float


# The command's defaults, chosen on the 36 validation photos alone as the lowest fid_colour whose
# CIEDE2000 is no worse than the default before it (benchmarks/README.md, "saturation"): with a
# guide, the guide alone (nothing drawn: 0.3 s a photo instead of 18) at 1.15 times its chroma;
# without one, the earlier quarter of the draws' extra chroma beyond their mean, at saturation 1
# (every step above it raised CIEDE2000).
GUIDED = Decoding(vividness=0.0, saturation=1.15)
UNGUIDED = Decoding(vividness=0.25, saturation=1.0)


def decoding(guided: bool, vividness: float | None, saturation: float | None) -> Decoding:
    """``vividness`` and ``saturation``, each where not given the default of a decoding with or
    without a guide (GUIDED, UNGUIDED)."""
    default = GUIDED if guided else UNGUIDED
    return Decoding(
        default.vividness if vividness is None else vividness,
        default.saturation if saturation is None else saturation,
    )


def whole_photo(model: GenerativeModel) -> bool:
    """Whether ``model`` was trained on views of whole photos (``data.fit: views``): it sees a
    whole photo at once; other colorizers see tiles of their crop size."""
    return model.params.data.fit == "views"


def default_scale(model: GenerativeModel) -> float:
    """--scale's default for ``model``: its training images' scale (module docstring)."""
    return WHOLE_SCALE if whole_photo(model) else TILED_SCALE


def guide_mismatch(model: GenerativeModel, guide: GenerativeModel) -> str | None:
    """Why ``guide`` cannot guide ``model`` (it must be a one-step colorizer, GUIDE_FAMILIES, of
    the model's image size and data.fit, so that both see a photo alike), or None when it can."""
    family, crop, fit = (
        guide.params.model.family,
        guide.params.data.image_size,
        guide.params.data.fit,
    )
    wanted = (model.params.data.image_size, model.params.data.fit)
    if family in GUIDE_FAMILIES and (crop, fit) == wanted:
        return None
    return (
        f"holds a {family} of {crop} px images (data.fit {fit}); a guide is a one-step colorizer "
        f"({', '.join(GUIDE_FAMILIES)}) of the model's {wanted[0]} px images (data.fit {wanted[1]})"
    )


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
    ab: torch.Tensor, vividness: float = UNGUIDED.vividness, guide: torch.Tensor | None = None
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
    model's image size; the network on the whole photo, or on overlapping tiles of its crop size
    for a model trained on crops). The condition and the network are made once, before the first
    draw."""
    crop = model.params.data.image_size
    size = working_size(*rgb.shape[:2], crop, scale)
    small = np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.Resampling.BICUBIC))
    cond = lightness(to_unit(small.transpose(2, 0, 1)[None].copy())).to(model.device)
    if not whole_photo(model):
        thumb = thumbnail(rgb, crop) if model.params.data.scene == "photo" else None
        model = model.on_tiles(stride=crop // 2, thumb=thumb)
    how = Sampling(steps=steps)
    while True:
        out = model.sample(1, precision=precision, generator=generator, how=how, cond=cond)
        yield split_lab(out.cpu())[1].double() * AB_SCALE


def guide_ab(
    guide: GenerativeModel, rgb: np.ndarray, *, scale: float, precision: str = "fp32"
) -> torch.Tensor:
    """A guide's ab (1, 2, h, w) in CIELAB units for a uint8 RGB image (H, W, 3), at the working
    size ``ab_draws`` uses: one network pass, no noise."""
    unused = torch.Generator(guide.device)  # a regression draws no noise
    return next(ab_draws(guide, rgb, steps=1, scale=scale, generator=unused, precision=precision))


def join_full_size(rgb: np.ndarray, ab: torch.Tensor, saturation: float = 1.0) -> np.ndarray:
    """``saturation`` ab (1, 2, h, w) in CIELAB units (its chroma scaled, its hue kept) upsampled
    (bilinear) onto the full-resolution L* of a uint8 RGB image (H, W, 3), strip by strip: the
    colorized image, uint8 (H, W, 3). ValueError for non-finite ab (a diverged model), which
    would otherwise come out black."""
    if not torch.isfinite(ab).all():
        raise ValueError(
            "the colorizer gave non-finite colours (a diverged model?); nothing written"
        )
    h, w = rgb.shape[:2]
    rows_per_strip = max(1, STRIP_PIXELS // w)
    colour = np.empty_like(rgb)
    for top in range(0, h, rows_per_strip):
        rows = range(top, min(h, top + rows_per_strip))
        strip = torch.from_numpy(rgb[rows.start : rows.stop].transpose(2, 0, 1)[None].copy())
        L = rgb_to_lab(strip.double() / 255)[:, :1]  # (1, 1, S, W)
        ab_rows = saturation * bilinear_rows(ab, (h, w), rows)
        joined = join_lab(L, ab_rows)  # (1, 3, S, W) in [0, 1]
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
    vividness: float | None = None,
    guide: GenerativeModel | None = None,
    precision: str = "fp32",
    saturation: float | None = None,
) -> Iterator[np.ndarray]:
    """``samples`` colorizations (each uint8 (H, W, 3)) of a uint8 RGB image (H, W, 3), one at a
    time, each the ``consensus`` at ``vividness`` of ``draws`` samples (``ab_draws``), around the
    ``guide``'s ab if one is given, joined onto the full-size L* at ``saturation``
    (``join_full_size``; either, when None, the default ``decoding``). A guide at vividness 0 is
    the guide's ab alone: nothing is drawn."""
    vividness, saturation = astuple(decoding(guide is not None, vividness, saturation))
    centre = None
    if guide is not None:
        centre = guide_ab(guide, rgb, scale=scale, precision=precision)
        if vividness == 0:
            yield from itertools.repeat(join_full_size(rgb, centre, saturation), samples)
            return
    stream = ab_draws(
        model, rgb, steps=steps, scale=scale, generator=generator, precision=precision
    )
    for _ in range(samples):
        ab = torch.cat(list(itertools.islice(stream, draws)))  # (draws, 2, h, w)
        yield join_full_size(rgb, consensus(ab, vividness, centre), saturation)


def decodings(
    model: GenerativeModel,
    rgb: np.ndarray,
    guide: GenerativeModel | None,
    *,
    steps: int,
    generator: torch.Generator,
    draws: int = DEFAULT_DRAWS,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """One photo (uint8 (H, W, 3)) colorized from the same ``draws`` the ways the evaluate stage
    compares, at the command's defaults otherwise: ``command``, what ``colorize_image`` writes
    first at the default ``decoding`` (GUIDED around the ``guide`` when there is one, else
    UNGUIDED); with a guide also ``draws`` (their consensus alone at vividness 1, as vivid as one
    draw: the command's ``--model`` without a guide at ``--vividness 1``) and ``regression`` (the
    guide as it decodes, ``--vividness 0 --saturation 1``)."""
    scale = default_scale(model)
    stream = ab_draws(
        model, rgb, steps=steps, scale=scale, generator=generator, precision=precision
    )
    ab = torch.cat(list(itertools.islice(stream, draws)))  # (draws, 2, h, w)
    if guide is None:
        return {"command": join_full_size(rgb, consensus(ab, UNGUIDED.vividness))}
    centre = guide_ab(guide, rgb, scale=scale, precision=precision)
    return {
        "command": join_full_size(rgb, consensus(ab, GUIDED.vividness, centre), GUIDED.saturation),
        "draws": join_full_size(rgb, consensus(ab, 1.0)),
        "regression": join_full_size(rgb, centre),
    }
