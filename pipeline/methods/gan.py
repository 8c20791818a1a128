"""The deep convolutional GAN (Radford et al. 2016): family ``dcgan``.

A generator G: z ~ N(0, I) -> tanh(decoder(z)) and a discriminator D: x -> logit, both with batch
norm, initialised from N(0, 0.02), trained alternately with AdamW (betas (gan.beta1, 0.999)) on the
non-saturating losses (Goodfellow et al. 2014, section 3), with sigma the logistic function:

    L_D = -log sigma(D(x)) - log(1 - sigma(D(G(z))))      (binary cross-entropy, real 1, fake 0)
    L_G = -log sigma(D(G(z)))                              (BCE of the fakes against "real")

Each step updates D once on a batch of real images and fresh fakes, then G once on fresh fakes; under
DDP both networks are wrapped. Reported: both losses, the mean D(x) and D(G(z)) (probabilities) and
the spread (``pairwise_distance``) of the fakes and of the real batch: the fakes' falls towards 0
when G collapses onto few modes (``warnings`` flags it below ``gan.collapse_ratio`` of the data's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import Params, check_positive, check_unit_interval, check_width, section
from pipeline.methods.base import Batch, LatentModel, Method
from pipeline.methods.step import adamw, network_step, resolve_compile, resolve_precision
from pipeline.models.convnets import ConvDecoder, ConvEncoder, dcgan_init


@dataclass(frozen=True)
class GANConfig:
    """params.yaml ``gan``: a transposed-conv generator and a conv discriminator with batch norm,
    the non-saturating losses, AdamW with betas (beta1, 0.999)."""

    latent_dim: int = 64  # dimension of z
    width: int = 32  # channels of the discriminator's first stage (then 2x); a multiple of 8
    lr_d: float | None = None  # discriminator learning rate; None: train.lr
    beta1: float = 0.5  # Adam's beta1 for both networks (DCGAN: 0.5)
    collapse_ratio: float = 0.3  # warn of mode collapse when the samples' spread (mean pairwise
    # distance in a batch) falls below this fraction of the real images'

    def __post_init__(self) -> None:
        with section("gan"):
            check_positive("latent_dim", self.latent_dim, 4096)
            check_width(self.width)
            if self.lr_d is not None and not (math.isfinite(self.lr_d) and self.lr_d > 0):
                raise ValueError(f"lr_d must be a finite number > 0 or null, got {self.lr_d!r}")
            check_unit_interval("beta1", self.beta1)
            check_unit_interval("collapse_ratio", self.collapse_ratio, closed=True)


class Generator(nn.Module):
    """z (B, d) -> images (B, C, s, s) in [-1, 1]."""

    def __init__(self, params: Params) -> None:
        super().__init__()
        gan, data = params.gan, params.data
        self.latent_dim = gan.latent_dim
        self.decoder = ConvDecoder(
            gan.latent_dim, data.channels, data.image_size, gan.width, "batch"
        )
        dcgan_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(z))


def discriminator(params: Params) -> nn.Module:
    """x (B, C, s, s) -> logit (B, 1)."""
    data, gan = params.data, params.gan
    return dcgan_init(ConvEncoder(data.channels, data.image_size, gan.width, 1, "batch"))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D (module docstring), averaged over the batch."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """L_G, the non-saturating loss (module docstring), averaged over the batch."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def pairwise_distance(images: torch.Tensor) -> torch.Tensor:
    """Mean pairwise distance of a batch, per pixel: mean_{i<j} ||x_i - x_j|| / sqrt(C H W)."""
    flat = images.detach().float().flatten(1)
    return torch.pdist(flat).mean() / flat.shape[1] ** 0.5


class GANModel(LatentModel):
    """A trained generator: samples are G(z), z ~ N(0, I)."""

    @property
    def latent_dim(self) -> int:
        return self.net.latent_dim

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DCGAN(Method):
    """G and D, each with its AdamW optimiser and grad scaler; ``net`` (EMA-averaged, exported) is G."""

    family = "dcgan"
    model_class = GANModel

    def __init__(self, params: Params, device: torch.device) -> None:
        super().__init__(params, device)
        train, gan = params.train, params.gan
        self.generator = self.build_net(params).to(device)
        self.discriminator = discriminator(params).to(device)
        self.precision = resolve_precision(train.precision, device)
        self.optimizers = {
            name: adamw(
                module.parameters(),
                device,
                lr=train.lr,
                betas=(gan.beta1, 0.999),
                weight_decay=train.weight_decay,
            )
            for name, module in (
                ("generator", self.generator),
                ("discriminator", self.discriminator),
            )
        }
        self.scalers = {
            name: torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
            for name in self.optimizers
        }
        self.wrapped: dict[str, nn.Module] = {  # DDP-wrapped (and compiled) once prepared
            "generator": self.generator,
            "discriminator": self.discriminator,
        }

    @property
    def net(self) -> nn.Module:
        return self.generator

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return Generator(params)

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        compiled = resolve_compile(self.params.train.compile, self.device)
        compile = torch.compile if compiled else (lambda m: m)
        self.wrapped = {name: wrap(compile(module)) for name, module in self.wrapped.items()}

    def _step(
        self,
        name: str,
        loss_terms: Callable[[nn.Module, torch.Tensor], Mapping[str, torch.Tensor]],
        micro_batches: Sequence[torch.Tensor],
        lr: float,
    ) -> dict[str, torch.Tensor]:
        """``network_step`` of network ``name`` with its optimiser and scaler."""
        return network_step(
            self.wrapped[name], loss_terms, micro_batches, self.optimizers[name],
            self.scalers[name], lr=lr, grad_clip=self.params.train.grad_clip,
            precision=self.precision,
        )  # fmt: skip

    def train_step(
        self, micro_batches: Sequence[Batch], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        """D's step, then G's; z from the step's seeded RNG. ``lr`` (warmed up) is G's; D's is
        scaled by gan.lr_d / train.lr."""
        gan, latent = self.params.gan, self.params.gan.latent_dim
        lr_d = lr * (gan.lr_d / self.params.train.lr if gan.lr_d else 1.0)

        def d_terms(d: nn.Module, real: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                fake = self.generator(torch.randn(len(real), latent, device=real.device))
            real_logits, fake_logits = d(real), d(fake)
            return {
                "loss": discriminator_loss(real_logits, fake_logits),
                "d_real": torch.sigmoid(real_logits).mean(),
                "d_fake": torch.sigmoid(fake_logits).mean(),
            }

        def g_terms(g: nn.Module, real: torch.Tensor) -> dict[str, torch.Tensor]:
            fake = g(torch.randn(len(real), latent, device=real.device))
            return {
                "loss": generator_loss(self.discriminator(fake)),
                "spread_fake": pairwise_distance(fake),
                "spread_real": pairwise_distance(real),
            }

        d = self._step("discriminator", d_terms, micro_batches, lr_d)
        self.discriminator.requires_grad_(False)  # G's step: gradients through D, not into it
        try:
            g = self._step("generator", g_terms, micro_batches, lr)
        finally:
            self.discriminator.requires_grad_(True)
        return {
            "loss": d["loss"] + g["loss"],
            "loss_d": d["loss"],
            "loss_g": g["loss"],
            "d_real": d["d_real"],
            "d_fake": d["d_fake"],
            "spread_fake": g["spread_fake"],
            "spread_real": g["spread_real"],
            "grad_norm_d": d["grad_norm"],
            "grad_norm": g["grad_norm"],
        }

    @classmethod
    def warnings(cls, params: Params, history: Sequence[Mapping[str, float]]) -> list[str]:
        """Mode collapse: in the last report, the fakes' spread below gan.collapse_ratio times
        the real images' (each averaged over the report's steps)."""
        last = next((row for row in reversed(history) if "spread_fake" in row), None)
        if last is None or last["spread_fake"] >= params.gan.collapse_ratio * last["spread_real"]:
            return []
        ratio = last["spread_fake"] / max(last["spread_real"], 1e-12)
        return [
            f"mode collapse suspected: at step {last['step']} the generator's samples vary "
            f"{ratio:.2f}x as much as the data (below gan.collapse_ratio "
            f"{params.gan.collapse_ratio}); look at the sample grid, lower gan.lr_d or train.lr"
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scaler in self.scalers.items():
            scaler.load_state_dict(state["scalers"][name])
