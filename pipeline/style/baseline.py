"""The baseline a stylization must beat: colour-statistics transfer (Reinhard, Ashikhmin, Gooch and
Shirley 2001, "Color Transfer between Images", eq. 10-11), here in CIE L*a*b*: each channel of the
content shifted and scaled to the style's mean and standard deviation,

    out_k = (c_k - mean(c_k)) std(s_k) / std(c_k) + mean(s_k),     k in {L*, a*, b*},

then back to sRGB with the chroma of out-of-gamut pixels reduced at constant L*
(pipeline.color.join_lab). It moves the colours all the way and the texture not at all: the
content's edges, strokes and grain stay where they were."""

from __future__ import annotations

import torch

from pipeline.color import join_lab, rgb_to_lab

STD_FLOOR = 1e-6  # a flat channel is scaled as if its deviation were this


def colour_transfer(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """content (1, 3, H, W) and style (1, 3, h, w), sRGB in [0, 1] -> (1, 3, H, W) in [0, 1]."""
    c, s = rgb_to_lab(content.double()), rgb_to_lab(style.double())
    c_mean, c_std = c.mean((2, 3), keepdim=True), c.std((2, 3), keepdim=True)
    s_mean, s_std = s.mean((2, 3), keepdim=True), s.std((2, 3), keepdim=True)
    lab = (c - c_mean) * s_std / c_std.clamp(min=STD_FLOOR) + s_mean
    return join_lab(lab[:, :1], lab[:, 1:]).to(content.dtype)
