"""Coarse-to-fine style transfer by optimising the image (Gatys, Ecker and Bethge 2016, sec. 2 and
eq. 7): minimise

    L(x) = lambda_content L_content(x, c) + lambda_style L_style(x, s)      (pipeline.style.gram)

over the pixels of x with L-BFGS, first at a quarter of the working size from the content photo
itself, then twice as large from the previous result upsampled, up to ``size`` (the longer side).
The coarse passes settle colours and large strokes cheaply; the last one adds fine texture. At
each pass the style image is resized to the same longer side, so its strokes keep their size
relative to the output. Pixels are kept in [0, 1] by a penalty, RANGE_WEIGHT times the mean
squared distance of the pixels outside it (a smooth term L-BFGS can follow: clamping between steps,
as PyTorch's neural style tutorial does, breaks its curvature pairs and its line search returned
NaN), and clamped once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.loader import check_positive, check_seed, section
from pipeline.style.gram import content_loss, gram, style_loss

LBFGS_HISTORY = 50  # pairs of past gradients L-BFGS keeps (100 in the reference implementations)
EVALS_PER_STEP = 10  # loss evaluations in one L-BFGS step at most (a progress bar update)
RANGE_WEIGHT = 10.0  # the [0, 1] penalty: pixels end within about 0.01 of the range


MAX_WEIGHT = 1e9  # content_weight, style_weight
MAX_STEPS = 100_000  # steps
SIZES = (64, 4096)  # size: the coarsest pass (size / 2^(passes - 1)) must hold the pyramid
MAX_PASSES = 5
MIN_SIDE = 8  # px: the smallest pass, and the smallest photo the command paints (longer side)


@dataclass(frozen=True)
class StyleOptions:
    """The knobs of one stylization: the command's defaults and stylize/params.yaml's ``stylize``
    section (validated on construction; a ValueError names the key)."""

    content_weight: float = 1.0  # lambda_content
    style_weight: float = 100.0  # lambda_style (stylize_scores: 100 beats 10 and 1000 on score)
    steps: int = 200  # loss evaluations per pass
    size: int = 512  # longer side of the working image, px
    passes: int = 3  # coarse to fine: size / 4, size / 2, size
    seed: int = 0  # the random features' filters

    def __post_init__(self) -> None:
        with section("stylize"):
            for name in ("content_weight", "style_weight"):
                value = getattr(self, name)
                if not (math.isfinite(value) and 0 <= value <= MAX_WEIGHT):
                    raise ValueError(
                        f"{name} must be a number in [0, {MAX_WEIGHT:g}], got {value!r}"
                    )
            if self.content_weight == 0 and self.style_weight == 0:
                raise ValueError("content_weight and style_weight are both 0: nothing to optimise")
            check_positive("steps", self.steps, MAX_STEPS)
            check_positive("passes", self.passes, MAX_PASSES)
            if not SIZES[0] <= self.size <= SIZES[1]:
                raise ValueError(
                    f"size must be an integer in [{SIZES[0]}, {SIZES[1]}], got {self.size!r}"
                )
            if self.size >> (self.passes - 1) < 16:
                raise ValueError(
                    f"size {self.size} with {self.passes} passes starts at "
                    f"{self.size >> (self.passes - 1)} px; the first pass needs at least 16"
                )
            check_seed("seed", self.seed)


@dataclass
class History:
    """The losses of every evaluation, in order, and the working size of each pass."""

    total: list[float] = field(default_factory=list)
    content: list[float] = field(default_factory=list)
    style: list[float] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)


def resize_longer(image: torch.Tensor, longer: int) -> torch.Tensor:
    """(B, C, H, W) resized (bicubic, antialiased, clamped to [0, 1]) so its longer side is
    ``longer`` px, aspect kept."""
    h, w = image.shape[-2:]
    scale = longer / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0, 1)


def to_tensor(rgb: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, H, W) float32 in [0, 1] on ``device``."""
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    return pixels.to(device, torch.float32, memory_format=torch.contiguous_format).div_(255)


def to_uint8(image: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """(1, 3, h, w) in [0, 1], resized (bicubic) to ``size`` when given -> uint8 (H, W, 3)."""
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="bicubic", align_corners=False)
    else:
        image = image.clone()  # the caller's tensor stays as it was
    # in place: at 50 MP every out-of-place step would hold another 600 MB copy
    pixels = image.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return pixels[0].permute(1, 2, 0).cpu().numpy()


def pass_sizes(options: StyleOptions, longest: int | None = None) -> list[int]:
    """The longer side of each pass, coarse to fine: up to ``options.size``, or to ``longest`` (the
    content's longer side) when that is smaller: a photo is not enlarged to be painted. No pass
    is below MIN_SIDE px (a photo smaller than that is painted at its size): on one or two pixels
    L-BFGS diverges, and a pass of NaN paints the whole image black."""
    size = min(options.size, longest or options.size)
    return [max(min(size, MIN_SIDE), size >> k) for k in reversed(range(options.passes))]


def loss(
    x: torch.Tensor,
    features: nn.Module,
    targets: list[torch.Tensor],
    grams: list[torch.Tensor],
    options: StyleOptions,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, L_content, L_style) of the image x (1, 3, h, w) (module docstring)."""
    layers = features(x)
    content_term = content_loss(layers.content, targets).sum()
    style_term = style_loss(layers.style, grams).sum()
    outside = (x - 1).relu().pow(2) + (-x).relu().pow(2)
    total = (
        options.content_weight * content_term
        + options.style_weight * style_term
        + RANGE_WEIGHT * outside.mean()
    )
    return total, content_term, style_term


def optimise(
    x: torch.Tensor,
    content: torch.Tensor,
    style: torch.Tensor,
    features: nn.Module,
    options: StyleOptions,
    history: History,
    on_step: Callable[[int], None] | None,
) -> torch.Tensor:
    """One pass: x (1, 3, h, w) optimised by L-BFGS for ``options.steps`` evaluations (fewer when
    it converges, a few more when a line search ends past them) against the content's layers and
    the style's Gram matrices at x's size. ``on_step`` receives ``options.steps`` in all."""
    with torch.no_grad():
        targets = features(content).content
        grams = [gram(f) for f in features(style).style]
    x = x.detach().clone().requires_grad_(True)  # a new leaf
    optimiser = torch.optim.LBFGS(
        [x], max_iter=EVALS_PER_STEP, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        total, content_term, style_term = loss(x, features, targets, grams, options)
        total.backward()
        history.total.append(total.item())
        history.content.append(content_term.item())
        history.style.append(style_term.item())
        return total

    start, reported = len(history.total), 0
    while len(history.total) - start < options.steps:
        before = len(history.total)
        left = min(EVALS_PER_STEP, options.steps - (before - start))
        optimiser.param_groups[0].update(max_iter=left, max_eval=left)
        optimiser.step(closure)  # its line search may take a few evaluations past max_eval
        if len(history.total) - before <= 1 and before > start:  # converged
            break
        if on_step is not None:
            done = min(len(history.total) - start, options.steps)
            on_step(done - reported)
            reported = done
    if on_step is not None and reported < options.steps:
        on_step(options.steps - reported)  # a pass that converged early counts as done
    return x.detach()


def stylize(
    content: torch.Tensor,
    style: torch.Tensor,
    features: nn.Module,
    options: StyleOptions,
    *,
    on_step: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, History]:
    """The stylized image at the working size (longer side ``options.size``, or the content's when
    that is smaller), (1, 3, h, w) in
    [0, 1], and its loss history. ``content`` and ``style`` (1, 3, H, W) in [0, 1]; ``features``
    returns ``Layers`` (pipeline.style.features); ``on_step(evaluations)`` after each L-BFGS step
    (a progress bar)."""
    history = History()
    x = None
    for longer in pass_sizes(options, max(content.shape[-2:])):
        c = resize_longer(content, longer)
        x = c if x is None else F.interpolate(x, size=c.shape[-2:], mode="bilinear")
        history.sizes.append(tuple(c.shape[-2:]))
        x = optimise(x, c, resize_longer(style, longer), features, options, history, on_step)
    return x.clamp(0, 1), history
