"""What "features" means for style transfer: a network whose layers' Gram matrices describe a style
and whose deeper layers describe a photo's layout.

``RandomFeatures`` (the default; no weights to fetch): fixed random convolutional filters, applied
to an image pyramid. Ustyuzhaninov, Brendel, Gatys and Bethge (ICLR 2017, "What does it take to
generate natural textures?") found that one layer of random filters at several scales, with a
ReLU, makes textures about as natural as VGG-19's Gram matrices; here the scales come from the
pyramid (the same 5 x 5 filters see 5, 10, 20 and 40 px of the image at levels 0-3), which costs a
fraction of the 55 px filters it stands for. The style layers filter the colour image; the content
layers filter its luminance alone at the coarser levels, so a stylization keeps where the photo's
edges and shapes are but is free to take the painting's colours and fine texture (Gatys take
content from a deep VGG layer for the same freedom; a pixel MSE, the seed's literal reading, would
pull every pixel back to the photo and leave no room for texture).

``VGG19Features``: the network of Gatys et al. (conv1_1 ... conv5_1 for style, conv4_2 for content)
with weights from a file the user supplies (``load_vgg19``: sha256-checked, read without pickle).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights: the content layers' gray image
LUMA_STD_FLOOR = 1e-3  # a flat image's luma is divided by this, not by zero


@dataclass(frozen=True)
class Layers:
    """A network's layers for one image batch: ``style`` for Gram matrices, ``content`` for the
    layout."""

    style: list[torch.Tensor]  # each (B, C_l, H_l, W_l)
    content: list[torch.Tensor]


def pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x (B, C, H, W) and its copies halved ``levels - 1`` times, each by bilinear interpolation
    with antialiasing (a triangle filter: a box filter's 2 x 2 blocks would come back as blocks in
    the gradient)."""
    out = [x]
    for _ in range(levels - 1):
        h, w = out[-1].shape[-2:]
        size = (max(1, (h + 1) // 2), max(1, (w + 1) // 2))
        out.append(F.interpolate(out[-1], size=size, mode="bilinear", antialias=True))
    return out


class RandomFeatures(nn.Module):
    """Fixed random multi-scale features (module docstring). ``channels`` filters of ``kernel`` px
    per level, drawn from N(0, 1) with ``seed`` and scaled to unit norm; ReLU. Style layers: all
    ``levels`` levels of the colour image (centred: 2 x - 1); content layers: ``content_levels``
    of its luminance."""

    def __init__(
        self,
        *,
        seed: int = 0,
        channels: int = 128,
        kernel: int = 5,
        levels: int = 4,
        content_levels: tuple[int, ...] = (2, 3),
    ) -> None:
        super().__init__()
        if not content_levels or not all(0 <= k < levels for k in content_levels):
            raise ValueError(f"content_levels must be in [0, {levels}), got {content_levels}")
        generator = torch.Generator().manual_seed(seed)

        def filters(inputs: int) -> torch.Tensor:
            w = torch.randn(levels, channels, inputs, kernel, kernel, generator=generator)
            return w / w.flatten(2).norm(dim=2)[..., None, None, None]

        self.register_buffer("style_filters", filters(3))  # (levels, C, 3, k, k)
        self.register_buffer("content_filters", filters(1))  # (levels, C, 1, k, k)
        self.register_buffer("luma", torch.tensor(LUMA).reshape(1, 3, 1, 1))
        self.levels, self.content_levels = levels, content_levels

    def forward(self, rgb: torch.Tensor) -> Layers:
        """rgb in [0, 1], (B, 3, H, W)."""
        x = rgb * 2 - 1
        colour = pyramid(x, self.levels)
        luma = (x * self.luma).sum(1, keepdim=True)  # (B, 1, H, W)
        # one pixel has no sample variance (NaN: a black output): its population variance, 0;
        # floored before the square root, whose gradient at 0 is infinite
        variance = luma.var((2, 3), keepdim=True, correction=int(luma[0, 0].numel() > 1))
        luma = (
            (luma - luma.mean((2, 3), keepdim=True)) / variance.clamp(min=LUMA_STD_FLOOR**2).sqrt()
        )  # the pattern of light and dark, not its level or contrast: those the style may set
        gray = pyramid(luma, self.levels)
        pad = self.style_filters.shape[-1] // 2
        style = [
            F.relu(F.conv2d(F.pad(c, (pad,) * 4, mode="replicate"), w))
            for c, w in zip(colour, self.style_filters, strict=True)
        ]
        content = [
            F.relu(F.conv2d(F.pad(gray[k], (pad,) * 4, mode="replicate"), self.content_filters[k]))
            for k in self.content_levels
        ]
        return Layers(style, content)
