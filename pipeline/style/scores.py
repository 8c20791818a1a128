"""How far a stylization went: toward the style in texture and colour, away from the content's
layout. All three are measured on the image at its working size against the style resized to the
same longer side.

- ``style_distance``: L_style (pipeline.style.gram: the relative Gram-matrix error summed over
  layers) in JUDGE features, random multi-scale features drawn with another seed and another
  filter size than the ones a stylization optimises (pipeline.style.features), so that a result
  cannot score well by fitting the particular filters it was optimised against: it has to take on
  the style's texture statistics. 0 is the style's own statistics; 1 is as far as features that
  are all zero.
- ``texture_distance``: the same in JUDGE's luminance features at every level (each image's luminance
  standardised first, pipeline.style.features): the texture alone, blind to colour and to the level
  and contrast of the light, so that colour transfer, which changes only those, hardly moves it.
- ``colour_distance``: the Frechet distance between Gaussian fits of the two images' L*a*b*
  pixels (squared Lab units; pipeline.evaluate.frechet), the colours alone.
- ``edge_agreement``: the correlation between the gradient magnitudes (Sobel) of the image's and
  the content's luminance at a quarter of the working size, where a painting's strokes have
  averaged out and a photo's shapes remain: 1 when the edges are where the photo's are (colour
  transfer keeps them, up to contrast), near 0 when they are unrelated.

``moved(before, after)`` = 1 - after / before: the share of the distance covered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.color import rgb_to_lab
from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.style.features import LUMA, RandomFeatures, pyramid
from pipeline.style.gram import gram, style_loss
from pipeline.style.transfer import resize_longer

JUDGE = {"seed": 1_000_003, "kernel": 7}  # held-out features: not the optimised seed and size
JUDGE_LEVELS = 4
EDGE_LEVEL = 2  # a quarter of the working size
SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def _judge_distance(image: torch.Tensor, style: torch.Tensor, layers: str) -> float:
    """L_style of image (1, 3, h, w) against style (1, 3, H, W) in JUDGE's ``layers``."""
    judge = RandomFeatures(**JUDGE, content_levels=tuple(range(JUDGE_LEVELS)), levels=JUDGE_LEVELS)
    with torch.no_grad():
        target = getattr(judge(resize_longer(style, max(image.shape[-2:]))), layers)
        return float(style_loss(getattr(judge(image), layers), [gram(f) for f in target]).sum())


def style_distance(image: torch.Tensor, style: torch.Tensor) -> float:
    """L_style of image against style in JUDGE's colour features."""
    return _judge_distance(image, style, "style")


def texture_distance(image: torch.Tensor, style: torch.Tensor) -> float:
    """L_style of image against style in JUDGE's standardised-luminance features."""
    return _judge_distance(image, style, "content")


def colour_distance(image: torch.Tensor, style: torch.Tensor) -> float:
    """Frechet distance between the L*a*b* pixel distributions of image and style."""

    def statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return feature_statistics(rgb_to_lab(x.double()).flatten(2)[0].T)  # (pixels, 3)

    return frechet_distance(*statistics(image), *statistics(style))


def edge_agreement(image: torch.Tensor, content: torch.Tensor) -> float:
    """Correlation of the Sobel gradient magnitudes of the two images' luminance at EDGE_LEVEL
    (content resized to the image's size first)."""
    content = F.interpolate(content, size=image.shape[-2:], mode="bilinear", antialias=True)
    luma = torch.tensor(LUMA, dtype=image.dtype).reshape(1, 3, 1, 1)

    def edges(x: torch.Tensor) -> torch.Tensor:
        gray = pyramid((x * luma).sum(1, keepdim=True), EDGE_LEVEL + 1)[-1]
        kernels = torch.stack([SOBEL, SOBEL.T])[:, None].to(x.dtype)  # (2, 1, 3, 3)
        return F.conv2d(F.pad(gray, (1,) * 4, mode="replicate"), kernels).norm(dim=1).flatten()

    a, b = edges(image), edges(content)
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def moved(before: float, after: float) -> float:
    """The share of a distance covered: 1 - after / before."""
    return 1 - after / before if before > 0 else 0.0
