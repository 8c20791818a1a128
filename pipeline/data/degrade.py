"""What an old print does to a photograph's lightness, drawn at random: the training augmentation
of a colorizer's condition (``train.degrade``) and the benchmark's archive prints.

An archive's photographs are film: soft focus, faded or crushed tones and grain (issue 40, part
3). A colorizer trained only on clean grayscaled photos meets them as inputs it never saw. Each
degradation acts on L* (CIELAB units, 0 to 100), in this order, each applied to an image with
probability ``p`` at a strength drawn uniformly between 0 and its maximum:

- blur: a Gaussian of standard deviation sigma pixels (soft focus, a copy of a copy);
- tone: L*/100 -> lo + (hi - lo) (L*/100)^gamma, with lo and 1 - hi each up to ``fade`` (lifted
  blacks and dimmed whites of a faded print) and |log gamma| up to ``gamma`` (crushed or washed
  out mid-tones);
- grain: independent Gaussian noise of standard deviation up to ``grain`` L* units per pixel.

The result is clamped to [0, 100]. Colour (a*b*) is never touched: the target stays the clean
photo's, so the model learns to see through the print to the scene. Draws come from torch's
global generator (the training loop seeds it per step and rank: a resumed run draws the same).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of x (B, C, H, W) blurred by a Gaussian of its own ``sigma`` (B,) pixels
    (separable, reflect-padded; sigma 0 leaves an image unchanged)."""
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.dtype)[:, None].clamp(min=1e-6)
    kernel = torch.exp(-0.5 * (offsets / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    b, c, h, w = x.shape
    k = kernel.repeat_interleave(c, dim=0)  # one kernel per image and channel
    rows = F.conv2d(
        F.pad(x.reshape(1, b * c, h, w), (radius, radius, 0, 0), mode="reflect"),
        k[:, None, None, :],
        groups=b * c,
    )
    out = F.conv2d(
        F.pad(rows, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c
    )
    return out.reshape(b, c, h, w)


def tone_curve(
    L: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """L* (B, 1, H, W) through lo + (hi - lo) (L*/100)^gamma, per image (each (B,)), in L* units."""
    shape = (-1, 1, 1, 1)
    unit = (L / 100).clamp(0, 1) ** gamma.reshape(shape)
    return 100 * (lo.reshape(shape) + (hi - lo).reshape(shape) * unit)


def degrade(
    L: torch.Tensor, *, p: float, blur: float, fade: float, gamma: float, grain: float
) -> torch.Tensor:
    """L* (B, 1, H, W) in CIELAB units as an old print's, one draw per image (module docstring:
    each degradation applied with probability ``p``, its strengths uniform up to ``blur`` px,
    ``fade``, ``gamma``, ``grain`` L* units; 0 turns one off): ``train.degrade``'s keys."""
    n, device = L.shape[0], L.device

    def draws(*maximums: float) -> tuple[torch.Tensor, ...]:
        """For one degradation: which images get it (n,) bool, each with probability p, and per
        maximum m a strength (n,) uniform in [0, m] for them, 0 for the others."""
        applied = torch.rand(n, device=device) < p
        strengths = (torch.where(applied, torch.rand(n, device=device) * m, 0.0).to(L.dtype)
                     for m in maximums)  # fmt: skip
        return applied, *strengths

    if blur > 0:
        _, sigma = draws(blur)
        L = gaussian_blur(L, sigma)  # sigma 0: the image unchanged
    if fade > 0 or gamma > 0:
        toned, lo, dim, log_gamma = draws(fade, fade, gamma)
        sign = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0).to(L.dtype)
        curve = tone_curve(L, lo, 1 - dim, torch.exp(sign * log_gamma))
        L = torch.where(toned.reshape(-1, 1, 1, 1), curve, L)
    if grain > 0:
        _, std = draws(grain)
        L = L + std.reshape(-1, 1, 1, 1) * torch.randn_like(L)
    return L.clamp(0, 100)
