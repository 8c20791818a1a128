"""Style features learned on the project's own photo set: the first two levels of the shipped
colorizer's UNet (pipeline/colorizer, trained by colorize/shipped/dvc.yaml on ~4,000 photo crops),
the alternative to random filters that issue 28 asks to measure (benchmarks/stylize_features.py).

A denoising UNet's encoder learns the local structure of its training images (Baranchuk et al.,
ICLR 2022, use such features for segmentation). Here the image, split as the colorizer sees it
(lightness L* / 50 - 1 as the condition, ab / AB_SCALE as a clean x_0 at t = 0), goes through the
UNet's ``conv_in`` and its first two levels' residual blocks (no attention: its levels' attention
over a whole photo would cost H^2 W^2); each block's output is a style layer, at every level of the
same image pyramid as RandomFeatures, so the receptive fields grow the same way. The content layers
are RandomFeatures' own (standardised luminance at 1/4 and 1/8 size): only the style features
differ between the two, which is what the comparison is about.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.color import split_lab
from pipeline.models.unet import timestep_embedding
from pipeline.style.features import Layers, RandomFeatures, pyramid

LEVELS = 2  # the UNet levels used: full and half size (the third has attention)


class ColorizerFeatures(nn.Module):
    """Style layers from a colorizer's UNet ``net`` (module docstring), content layers from
    ``RandomFeatures(seed=seed)``; weights frozen."""

    def __init__(self, net: nn.Module, *, seed: int = 0, levels: int = 4) -> None:
        super().__init__()
        if getattr(net, "cond_channels", 0) != 1 or net.in_channels != 2:
            raise ValueError("ColorizerFeatures needs a colorizer's UNet (ab from L)")
        self.net = net.eval().requires_grad_(False)
        self.random = RandomFeatures(seed=seed, levels=levels)
        self.levels = levels

    def forward(self, rgb: torch.Tensor) -> Layers:
        """rgb in [0, 1], (B, 3, H, W)."""
        net = self.net
        t = torch.zeros(rgb.shape[0], device=rgb.device)
        emb = net.time_mlp(timestep_embedding(t, net.config.base_channels))
        style = []
        # Lab of a pixel outside [0, 1] is undefined (sRGB's power law of a negative number); the
        # optimiser's range penalty pulls such pixels back, so the features see them clamped
        for image in pyramid(rgb.clamp(0, 1) * 2 - 1, self.levels):
            L, ab = split_lab(image)
            h = net.conv_in(torch.cat([ab, L], dim=1))
            for i in range(LEVELS):
                for res in net.down[i].res:
                    h = res(h, emb)
                    style.append(h)
                if i < LEVELS - 1:
                    h = net.downsample[i](h)
        return Layers(style, self.random(rgb).content)
