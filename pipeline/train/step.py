"""One optimiser step of DDPM training, independent of Ray: LR schedule, per-step seeds, precision,
gradient accumulation, clipping. The Ray worker (pipeline.train.worker) calls these on every rank.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import TrainConfig
from pipeline.diffusion import GaussianDiffusion

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def lr_at(step: int, config: TrainConfig) -> float:
    """1) linear warmup over warmup_steps, 2) then constant at lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; explicit choices are kept."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass
class StepResult:
    """Detached, rank-local values of one optimiser step (means over its micro-batches)."""

    loss: torch.Tensor
    simple: torch.Tensor
    vlb: torch.Tensor | None
    grad_norm: torch.Tensor


def train_step(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    micro_batches: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    lr: float,
    grad_clip: float,
    precision: str = "fp32",
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepResult:
    """Accumulate gradients over ``micro_batches`` (each (B, C, H, W) in [-1, 1]), then step.

    1) set the LR; 2) per micro-batch: loss / k under autocast (``precision``), backward, with
    gradient all-reduce (``no_sync`` off) only on the last one; 3) unscale, clip the global gradient
    norm to ``grad_clip`` (0: no clipping, the norm is still measured); 4) optimiser and scaler step.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    dtype, device_type = AUTOCAST_DTYPES[precision], micro_batches[0].device.type
    k = len(micro_batches)
    loss = simple = vlb = None
    for i, x0 in enumerate(micro_batches):
        sync = contextlib.nullcontext() if i == k - 1 else no_sync()
        with sync:
            with torch.autocast(
                device_type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                terms = diffusion.training_losses(model, x0)
            scaler.scale(terms.loss / k).backward()
        loss = terms.loss.detach() / k + (0 if loss is None else loss)
        simple = terms.simple / k + (0 if simple is None else simple)
        if terms.vlb is not None:
            vlb = terms.vlb / k + (0 if vlb is None else vlb)
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    scaler.step(optimizer)
    scaler.update()
    return StepResult(loss=loss, simple=simple, vlb=vlb, grad_norm=grad_norm.detach())
