"""The one conversion between stored pixels and model space: uint8 [0, 255] <-> float [-1, 1].

``to_unit(u) = u / 127.5 - 1`` (what every network trains and samples in; DDPM section 3.3 scales
images to [-1, 1]) and its inverse ``to_uint8(x) = round((clamp(x, -1, 1) + 1) * 127.5)``.
"""

from __future__ import annotations

import numpy as np
import torch


def to_unit(pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 pixels (any shape) -> float32 in [-1, 1]: pixels / 127.5 - 1."""
    return torch.as_tensor(pixels).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (any shape) -> uint8 on the CPU: round((clamp(x, -1, 1) + 1) * 127.5)."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
