"""Exponential moving average of model weights, on torch.optim.swa_utils.AveragedModel.

theta_ema <- d_n theta_ema + (1 - d_n) theta after the n-th update (n = 1, 2, ...; the first update
copies theta), with the warmed-up decay d_n = min(decay, (1 + n) / (10 + n)) of TensorFlow's
ExponentialMovingAverage(num_updates): early weights, far from the optimum, fade out quickly, which
matters for the short runs a CPU budget allows.

The update never waits on the device: AveragedModel keeps the update count n as a tensor beside
the weights (``n_averaged``, saved with them) and reads it back for every update (``n_averaged ==
0``, and d_n needs n on the host), a host sync per training step on a GPU. ``EMA`` also counts on
the host, reading ``n_averaged`` once after it is built or loaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, num_updates: int, warmup: bool = True) -> float:
    """d_n = min(decay, (1 + n) / (10 + n)) with warmup, else the constant decay."""
    return min(decay, (1 + num_updates) / (10 + num_updates)) if warmup else decay


class EMA(AveragedModel):
    """An AveragedModel holding the EMA of a model's parameters and floating buffers (integer
    buffers, BatchNorm's batch counter, follow the model); call ``update_parameters(model)`` after
    each optimiser step and use ``.module`` to sample. ``n_averaged`` counts the updates, as in
    AveragedModel."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool) -> None:
        super().__init__(model, use_buffers=True)
        self.decay, self.warmup = decay, warmup
        self.host_updates: int | None = None  # n_averaged on the host; None: read it once

    def load_state_dict(self, *args, **kwargs):
        result = super().load_state_dict(*args, **kwargs)
        self.host_updates = None  # the loaded n_averaged
        return result

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self.host_updates is None:
            self.host_updates = int(self.n_averaged)  # once per build or load, not per update
        averaged = [t.detach() for t in (*self.module.parameters(), *self.module.buffers())]
        current = [
            t.detach().to(a.device)
            for t, a in zip((*model.parameters(), *model.buffers()), averaged, strict=True)
        ]
        if self.host_updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            pairs = list(zip(averaged, current, strict=True))
            floating = [(a, c) for a, c in pairs if a.is_floating_point()]
            counters = [(a, c) for a, c in pairs if not a.is_floating_point()]
            weight = 1.0 - ema_decay(self.decay, self.host_updates, self.warmup)
            if floating:
                torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
            if counters:
                torch._foreach_copy_([a for a, _ in counters], [c for _, c in counters])
        self.n_averaged += 1
        self.host_updates += 1


def make_ema(model: nn.Module, decay: float = 0.999, warmup: bool = True) -> EMA:
    """An ``EMA`` of ``model``; ValueError for a decay outside [0, 1)."""
    if not 0 <= decay < 1:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay!r}")
    return EMA(model, decay, warmup)
