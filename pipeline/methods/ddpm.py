"""The DDPM family: a UNet trained on the diffusion loss, sampled by DDPM or DDIM.

Training minimises ``w_simple * L_simple + w_vlb * L_vlb`` (improved DDPM eq. 16, see
pipeline.diffusion.gaussian) with AdamW; sampling runs the reverse process from x_T ~ N(0, I).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.config import DiffusionConfig, Params
from pipeline.diffusion import GaussianDiffusion, make_betas
from pipeline.methods.base import (
    DEFAULT_SAMPLING,
    Batch,
    GenerativeModel,
    Sampling,
    Signature,
    TensorSpec,
)
from pipeline.methods.step import OneNetwork, StepResult, optimizer_step
from pipeline.models import UNet


def build_diffusion(config: DiffusionConfig) -> GaussianDiffusion:
    """The forward/reverse process of the ``diffusion`` section."""
    betas = make_betas(
        config.schedule,
        config.timesteps,
        config.beta_start,
        config.beta_end,
        zero_terminal_snr=config.zero_terminal_snr,
    )
    return GaussianDiffusion(
        betas,
        config.prediction_type,
        config.variance_type,
        w_simple=config.loss.w_simple,
        w_vlb=config.loss.w_vlb,
        min_snr_gamma=config.loss.min_snr_gamma,
    )


def build_unet(
    params: Params,
    in_channels: int | None = None,
    cond_channels: int = 0,
    num_classes: int = 0,
    scene_channels: int = 0,
    out_channels: int | None = None,
) -> UNet:
    """The denoiser of the ``model`` section: ``in_channels`` (default: the data's) noisy channels
    plus ``cond_channels`` of a conditioning image in, as many out (twice with a learned variance)
    unless ``out_channels`` says otherwise; ``num_classes``: a class-conditional one;
    ``scene_channels``: scene planes after the condition's."""
    return UNet(
        params.model,
        image_size=params.data.image_size,
        in_channels=params.data.channels if in_channels is None else in_channels,
        cond_channels=cond_channels,
        scene_channels=scene_channels,
        num_classes=num_classes,
        learned_variance=params.diffusion.variance_type == "learned_range",
        out_channels=out_channels,
    )


def unconditional(batch: torch.Tensor) -> tuple[torch.Tensor, None]:
    """A batch of images as (x0, no condition): what an unconditional model trains on."""
    return batch, None


def diffusion_terms(
    diffusion: GaussianDiffusion,
    split: Callable[[Batch], tuple[torch.Tensor, torch.Tensor | None]] = unconditional,
) -> Callable[[nn.Module, Batch], dict[str, torch.Tensor]]:
    """The loss terms of one micro-batch for ``optimizer_step``: ``loss``, ``loss_simple`` and,
    with a learned variance, ``loss_vlb``. ``split`` turns a batch into (x0, condition)."""

    def loss_terms(net: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        x0, cond = split(batch)
        terms = diffusion.training_losses(net, x0, cond)
        out = {"loss": terms.loss, "loss_simple": terms.simple}
        return out if terms.vlb is None else {**out, "loss_vlb": terms.vlb}

    return loss_terms


def train_step(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    micro_batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    lr: float,
    grad_clip: float,
    precision: str = "fp32",
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    split: Callable[[Batch], tuple[torch.Tensor, torch.Tensor | None]] = unconditional,
) -> StepResult:
    """One optimiser step of the diffusion loss (pipeline.methods.step.optimizer_step) on
    ``diffusion_terms``, for a bare network and optimiser (tests, benchmarks)."""
    return optimizer_step(
        model,
        diffusion_terms(diffusion, split),
        micro_batches,
        optimizer,
        scaler,
        lr=lr,
        grad_clip=grad_clip,
        precision=precision,
        no_sync=no_sync,
    )


class DDPMModel(GenerativeModel):
    """A trained UNet with its diffusion process. ``predict({"x_t": (B, C, H, W) float32, "t": (B,)
    int64})`` returns the network output (B, C', H, W): eps, x0 or v by
    ``diffusion.prediction_type``, C' = 2C with a learned variance."""

    def __init__(
        self, net: nn.Module, params: Params, diffusion: GaussianDiffusion | None = None
    ) -> None:
        super().__init__(net, params)
        if diffusion is None:
            diffusion = build_diffusion(params.diffusion).to(self.device)
        self.diffusion = diffusion

    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """x_t after each reverse step from x_T ~ N(0, I) (GaussianDiffusion.sample_progressive)."""
        shape = (n, *self.params.data.image_shape)
        for step in self.diffusion.sample_progressive(
            self.denoiser(how.guidance), shape, how.steps, how.sampler, how.eta, cond, generator
        ):
            yield step.x

    def to(self, device: torch.device | str) -> DDPMModel:
        self.diffusion.to(device)
        return super().to(device)

    def denoiser(self, guidance: float | None) -> nn.Module:
        """The network the reverse process calls (a guided family mixes two of its outputs)."""
        return self.net

    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        x_t = torch.as_tensor(np.asarray(inputs["x_t"], dtype=np.float32))
        t = torch.as_tensor(np.asarray(inputs["t"], dtype=np.int64))
        with torch.no_grad():
            return self.net(x_t, t).numpy()

    def signature(self) -> Signature:
        c, s, s = self.params.data.image_shape
        return Signature(
            [TensorSpec("float32", (-1, c, s, s), "x_t"), TensorSpec("int64", (-1,), "t")],
            [TensorSpec("float32", (-1, self.net.out_channels, s, s))],
        )

    def input_example(self) -> dict[str, np.ndarray]:
        """One pure-noise image at the last timestep."""
        x_t = np.random.default_rng(0).standard_normal((1, *self.params.data.image_shape))
        t = np.array([self.params.diffusion.timesteps - 1], dtype=np.int64)
        return {"x_t": x_t.astype(np.float32), "t": t}


class DDPM(OneNetwork):
    """A UNet and its AdamW optimiser (grad scaler for fp16) on the diffusion loss."""

    family = "ddpm"
    model_class = DDPMModel

    def __init__(self, params: Params, device: torch.device) -> None:
        super().__init__(params, device)
        self.diffusion = build_diffusion(params.diffusion).to(device)

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return build_unet(params)

    def train_step(
        self, micro_batches: Sequence[Batch], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        return self.optimize(diffusion_terms(self.diffusion, self.split), micro_batches, lr)

    split = staticmethod(unconditional)  # a training batch -> (x0, condition)

    def model(self, net: nn.Module) -> DDPMModel:
        return self.model_class(net, self.params, self.diffusion)
