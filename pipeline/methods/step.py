"""What every family's optimiser step shares, independent of Ray: the LR schedule, precision,
gradient accumulation over micro-batches, clipping. A family's ``Method.train_step`` calls
``optimizer_step`` once per optimiser (a GAN twice)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import TrainConfig

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


@dataclass(frozen=True)
class StepResult:
    """Detached, rank-local values of one optimiser step: each loss term's mean over the
    micro-batches (``terms["loss"]`` is what was minimised) and the global gradient norm before
    clipping."""

    terms: Mapping[str, torch.Tensor]
    grad_norm: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.terms["loss"]


def optimizer_step(
    model: nn.Module,
    loss_terms: Callable[[nn.Module, torch.Tensor], Mapping[str, torch.Tensor]],
    micro_batches: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    lr: float,
    grad_clip: float,
    precision: str = "fp32",
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepResult:
    """Accumulate gradients of ``loss_terms(model, batch)["loss"]`` over ``micro_batches``, then step.

    1) set the LR; 2) per micro-batch: loss / k under autocast (``precision``), backward, with
    gradient all-reduce (``no_sync`` off) only on the last one; 3) unscale, clip the global gradient
    norm to ``grad_clip`` (0: no clipping, the norm is still measured); 4) optimiser and scaler step.
    ``loss_terms`` returns the loss (with its graph) and any detached parts to report.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    dtype, device_type = AUTOCAST_DTYPES[precision], micro_batches[0].device.type
    k = len(micro_batches)
    sums: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(micro_batches):
        sync = contextlib.nullcontext() if i == k - 1 else no_sync()
        with sync:
            with torch.autocast(
                device_type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                terms = loss_terms(model, batch)
            scaler.scale(terms["loss"] / k).backward()
        for name, value in terms.items():
            sums[name] = value.detach() / k + sums.get(name, 0)
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    scaler.step(optimizer)
    scaler.update()
    return StepResult(terms=sums, grad_norm=grad_norm.detach())
