"""What every family's optimiser step shares, independent of Ray: the LR schedule, precision,
gradient accumulation over micro-batches, clipping. A family's ``Method.train_step`` calls
``optimizer_step`` once per optimiser (a GAN twice); ``OneNetwork`` is the Method of the families
that train one network with one optimiser."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.config import Params, TrainConfig
from pipeline.methods.base import Method

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (from 0): 1) a linear warmup to lr over warmup_steps;
    2) then lr (``lr_decay: constant``) or the half cosine from lr to 0 at ``steps``
    (``cosine``: SGDR's eta_t, Loshchilov and Hutter 2017 eq. 5, with one cycle and eta_min 0):
    lr * (1 + cos(pi * (step - warmup) / (steps - warmup))) / 2."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_decay == "cosine":
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.lr * (1 + math.cos(math.pi * min(progress, 1.0))) / 2
    return config.lr


def adamw(params, device: torch.device, **options: Any) -> torch.optim.AdamW:
    """AdamW over ``params``: PyTorch's fused kernel on CUDA (one launch for every tensor, no host
    sync), its default implementation elsewhere (so CPU results stay as they were)."""
    return torch.optim.AdamW(params, fused=True if device.type == "cuda" else None, **options)


def resolve_compile(setting: str | bool, device: torch.device) -> bool:
    """``train.compile``: ``auto`` -> torch.compile on CUDA only; explicit choices are kept."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPUs with bf16 arithmetic in hardware


def native_bf16_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU does bf16 arithmetic in hardware: one of CPU_BF16_FLAGS among
    the flags Linux lists in ``cpuinfo`` (False where there is no such file). There bf16 autocast
    runs the colorizer's network 2.3x faster than fp32 with the same colours (benchmarks/README.md,
    "whole photos under bf16"); elsewhere oneDNN emulates bf16, slower than fp32."""
    try:
        lines = Path(cpuinfo).read_text(errors="replace").splitlines()
    except OSError:
        return False
    flags = next((line.split(":", 1)[-1].split() for line in lines if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, *, cpu_bf16: bool = False) -> str:
    """``auto`` -> bf16 on CUDA; on a CPU fp32, or with ``cpu_bf16`` (the colorize command, whose
    colours bf16 leaves unchanged) bf16 where the CPU has it in hardware (``native_bf16_cpu``).
    Explicit choices are kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (cpu_bf16 and device.type == "cpu" and native_bf16_cpu()):
        return "bf16"
    return "fp32"


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
    loss_terms: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]],
    micro_batches: Sequence[Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    lr: float,
    grad_clip: float,
    precision: str = "fp32",
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> StepResult:
    """Accumulate gradients of ``loss_terms(model, batch)["loss"]`` over ``micro_batches`` (what
    the loader yields: pipeline.methods.base.Batch), then step.

    1) set the LR; 2) per micro-batch: loss / k under autocast (``precision``), backward, with
    gradient all-reduce (``no_sync`` off) only on the last one; 3) unscale, clip the global gradient
    norm to ``grad_clip`` (0: no clipping, the norm is still measured); 4) optimiser and scaler step.
    ``loss_terms`` returns the loss (with its graph) and any detached parts to report.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    dtype = AUTOCAST_DTYPES[precision]
    device_type = next(model.parameters()).device.type
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


def network_step(
    trained: nn.Module,
    loss_terms: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]],
    micro_batches: Sequence[Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    lr: float,
    grad_clip: float,
    precision: str,
) -> dict[str, torch.Tensor]:
    """``optimizer_step`` of a network as a family trains it (DDP-wrapped when world > 1, whose
    ``no_sync`` pauses the all-reduce on all micro-batches but the last): the loss terms and
    ``grad_norm``, what ``Method.train_step`` reports."""
    result = optimizer_step(
        trained,
        loss_terms,
        micro_batches,
        optimizer,
        scaler,
        lr=lr,
        grad_clip=grad_clip,
        precision=precision,
        no_sync=getattr(trained, "no_sync", contextlib.nullcontext),
    )
    return {**result.terms, "grad_norm": result.grad_norm}


class OneNetwork(Method):
    """A family that trains one network (``build_net``) with AdamW and a grad scaler (fp16):
    the DDPM, the colorizers, the VAE. Subclasses define ``build_net``, ``train_step`` (with
    ``optimize``) and the model class."""

    def __init__(self, params: Params, device: torch.device) -> None:
        super().__init__(params, device)
        train = params.train
        self.net = self.build_net(params).to(device)
        self.precision = resolve_precision(train.precision, device)
        self.optimizer = adamw(
            self.net.parameters(), device, lr=train.lr, weight_decay=train.weight_decay
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.wrapped: nn.Module = self.net  # DDP-wrapped (and compiled) once prepared

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        compiled = resolve_compile(self.params.train.compile, self.device)
        self.wrapped = wrap(torch.compile(self.net) if compiled else self.net)

    def optimize(
        self,
        loss_terms: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]],
        micro_batches: Sequence[Any],
        lr: float,
    ) -> dict[str, torch.Tensor]:
        """``network_step`` of the wrapped network with its optimiser and scaler."""
        return network_step(
            self.wrapped, loss_terms, micro_batches, self.optimizer, self.scaler, lr=lr,
            grad_clip=self.params.train.grad_clip, precision=self.precision,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
