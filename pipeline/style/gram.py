"""The Gram matrix and the two losses of style transfer (seed 000; Gatys, Ecker and Bethge 2016,
eqs. 3-5).

    Gram(X) = flatten(X) flatten(X)^T / (H W)       X (B, C, H, W), flatten(X) (B, C, H W)

Dividing by the number of positions makes a Gram matrix the mean outer product of the features
over the image, so a 256 px and a 512 px crop of one texture have the same one and a style image
of any size can guide an output of any other (Gatys divide the loss by 4 N^2 M^2 for the same end).
Both losses are relative squared errors per layer, summed over layers:

    L_style   = sum_l ||Gram(F_l(x)) - Gram(F_l(s))||^2 / ||Gram(F_l(s))||^2
    L_content = sum_l ||F_l(x) - F_l(c)||^2 / ||F_l(c)||^2

so that each layer weighs the same whatever its scale and 1 means "as far as nothing at all": the
same numbers serve as the losses and as the distances reported before and after a stylization.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-12  # a style or content layer that is all zero compares as if its norm were this


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): flatten(X) flatten(X)^T / (H W)."""
    flat = features.flatten(2)  # (B, C, H W)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def relative_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||x - target||^2 / ||target||^2 per batch item, (B, ...) -> (B,)."""
    difference = (x - target).flatten(1).pow(2).sum(1)
    return difference / target.flatten(1).pow(2).sum(1).clamp(min=EPS)


def style_loss(layers: Sequence[torch.Tensor], style_grams: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_style of the output's feature layers against the style's Gram matrices, (B,)."""
    return sum(relative_error(gram(f), g) for f, g in zip(layers, style_grams, strict=True))


def content_loss(layers: Sequence[torch.Tensor], content: Sequence[torch.Tensor]) -> torch.Tensor:
    """L_content of the output's content layers against the content's, (B,)."""
    return sum(relative_error(f, c) for f, c in zip(layers, content, strict=True))
