"""Colour as a class: the a*b* plane in bins, for a colorizer that predicts a distribution over
them (Zhang, Isola and Efros 2016, "Colorful Image Colorization", https://arxiv.org/abs/1603.08511).

    bins        the centres of a GRID-unit grid on a*b* that some sRGB colour reaches (Zhang et al.:
                313 at grid 10); ``ab_bins()``
    Z           the soft encoding of a true colour: a Gaussian (sigma SIGMA) over its NEIGHBOURS
                nearest bins, normalised (their eq. 2's target); ``soft_encode``
    H(Z)        the annealed mean: E[ab] under softmax(logits / T), T = TEMPERATURE (their eq. 5):
                T = 1 is the mean (sepia, as an L2 regression), T -> 0 the mode (vivid, patchy);
                ``annealed_mean``

Units are CIELAB throughout (a*, b* in about [-110, 110], pipeline.color.AB_SCALE).
"""

from __future__ import annotations

import functools

import torch

from pipeline.color import rgb_to_lab

GRID = 10.0  # bin width, CIELAB units
NEIGHBOURS, SIGMA = 5, 5.0  # the soft encoding's support and width
TEMPERATURE = 0.38  # the annealed mean's T (Zhang et al.'s choice)


@functools.cache
def ab_bins() -> torch.Tensor:
    """The bin centres (Q, 2), float32: the multiples of GRID that the a*b* of some sRGB colour
    rounds to (every 8-bit value of R, G and B in steps of 3: 261 bins), in a fixed order (by a*,
    then b*)."""
    # on the CPU whatever the default device where it is first called (pipeline.methods.export
    # builds networks under torch.device("meta"), which holds no values)
    with torch.device("cpu"):
        levels = torch.arange(0, 256, 3, dtype=torch.float64) / 255
        r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
        rgb = torch.stack([r, g, b]).reshape(1, 3, -1, 1)
        ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (N, 2)
        reached = torch.unique(torch.round(ab / GRID), dim=0)  # sorted lexicographically
        return (reached * GRID).float()


def soft_encode(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Z: true colours ab (B, 2, H, W) as weights over ``bins`` (B, Q, H, W): a Gaussian of
    SIGMA on the distances to the NEIGHBOURS nearest centres, summing to 1 per pixel."""
    flat = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # (P, 2)
    distance = torch.cdist(flat.float(), bins)  # (P, Q)
    near, which = distance.topk(NEIGHBOURS, dim=1, largest=False)
    weights = torch.exp(-(near**2) / (2 * SIGMA**2))
    z = torch.zeros_like(distance).scatter_(1, which, weights / weights.sum(1, keepdim=True))
    b, _, h, w = ab.shape
    return z.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def annealed_mean(
    logits: torch.Tensor, bins: torch.Tensor, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """H(Z): the ab (B, 2, H, W) of logits (B, Q, H, W) over ``bins``, the mean under
    softmax(logits / temperature)."""
    p = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", p, bins.to(p.device))
