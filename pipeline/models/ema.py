"""Exponential moving average of model weights, on torch.optim.swa_utils.AveragedModel.

theta_ema <- d_n theta_ema + (1 - d_n) theta after the n-th update (n = 1, 2, ...; the first update
copies theta), with the warmed-up decay d_n = min(decay, (1 + n) / (10 + n)) of TensorFlow's
ExponentialMovingAverage(num_updates): early weights, far from the optimum, fade out quickly, which
matters for the short runs a CPU budget allows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, num_updates: int, warmup: bool = True) -> float:
    """d_n = min(decay, (1 + n) / (10 + n)) with warmup, else the constant decay."""
    return min(decay, (1 + num_updates) / (10 + num_updates)) if warmup else decay


def make_ema(model: nn.Module, decay: float = 0.999, warmup: bool = True) -> AveragedModel:
    """An AveragedModel holding the EMA of ``model`` (buffers averaged too); call
    ``ema.update_parameters(model)`` after each optimiser step and use ``ema.module`` to sample."""
    if not 0 <= decay < 1:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")

    @torch.no_grad()
    def lerp_towards(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor):
        # AveragedModel groups tensors by dtype and passes the number of updates already averaged
        # (1 on the second update). Integer buffers (BatchNorm's batch counter) follow the model.
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - ema_decay(decay, int(n), warmup))

    return AveragedModel(model, multi_avg_fn=lerp_towards, use_buffers=True)
