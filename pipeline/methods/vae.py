"""The variational autoencoder (Kingma and Welling 2014): family ``vae``.

The encoder maps x to q(z | x) = N(mu, diag(exp(logvar))); z = mu + exp(logvar / 2) * eps,
eps ~ N(0, I) (the reparameterisation trick); the decoder maps z to the logits of p(x | z). Training
minimises the negative ELBO per image, in nats, with the KL weight beta_t (beta-VAE, warmed up):

    L = -log p(x | z) + beta_t * KL(q(z | x) || N(0, I)),
    KL = -1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))       (Kingma and Welling, appendix B)

with -log p(x | z) the binary cross-entropy of the pixels in [0, 1] against sigmoid(logits)
(``vae.reconstruction: bce``, Bernoulli) or the summed squared error in [-1, 1] units (``mse``, a
Gaussian of variance 1/2 up to a constant). Samples: decoder(z), z ~ N(0, I).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import Params, check_positive, check_width, section
from pipeline.methods.base import Batch, LatentModel
from pipeline.methods.step import OneNetwork
from pipeline.models.convnets import ConvDecoder, ConvEncoder


@dataclass(frozen=True)
class VAEConfig:
    """params.yaml ``vae``: a conv encoder to (mu, logvar), z = mu + sigma * eps, a transposed-conv
    decoder; loss reconstruction + beta * KL."""

    latent_dim: int = 16  # dimension of z
    width: int = 32  # channels of the first conv stage (then 2x); a multiple of 8
    reconstruction: Literal["bce", "mse"] = "bce"  # -log p(x|z): Bernoulli (BCE) or Gaussian (MSE)
    beta: float = 1.0  # weight of the KL term (beta-VAE, Higgins et al. 2017; 1: the ELBO)
    kl_warmup_steps: int = 100  # the KL weight ramps linearly from 0 to beta over these steps

    def __post_init__(self) -> None:
        with section("vae"):
            check_positive("latent_dim", self.latent_dim, 4096)
            check_width(self.width)
            if not (math.isfinite(self.beta) and self.beta >= 0):
                raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
            if self.kl_warmup_steps < 0:
                raise ValueError(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")


class VAENet(nn.Module):
    """Encoder (C, s, s) -> (mu, logvar) in R^d each; decoder R^d -> logits (C, s, s)."""

    def __init__(self, channels: int, image_size: int, config: VAEConfig) -> None:
        super().__init__()
        self.latent_dim = config.latent_dim
        self.encoder = ConvEncoder(
            channels, image_size, config.width, 2 * config.latent_dim, "group"
        )
        self.decoder = ConvDecoder(config.latent_dim, channels, image_size, config.width, "group")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, s, s) in [-1, 1] -> mu, logvar (B, d)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of p(x | z) for z drawn from q(z | x) with torch's RNG, mu and logvar."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row (B,): the module docstring's closed form."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x | z) per image (B,) up to a constant, for x in [-1, 1] (module docstring)."""
    if kind == "bce":
        bce = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none")
        return bce.flatten(1).sum(1)
    return (decoded(logits) - x).pow(2).flatten(1).sum(1)


def decoded(logits: torch.Tensor) -> torch.Tensor:
    """The decoder's image in [-1, 1]: the mean of p(x | z), 2 sigmoid(logits) - 1."""
    return 2 * torch.sigmoid(logits) - 1


def kl_weight(config: VAEConfig, step: int) -> float:
    """beta_t = beta * min(1, (step + 1) / kl_warmup_steps) (beta from the start without warm-up)."""
    if config.kl_warmup_steps == 0:
        return config.beta
    return config.beta * min(1.0, (step + 1) / config.kl_warmup_steps)


class VAEModel(LatentModel):
    """A trained VAE: samples are the decoder's mean image of z ~ N(0, I)."""

    @property
    def latent_dim(self) -> int:
        return self.net.latent_dim

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return decoded(self.net.decoder(z))


class VAE(OneNetwork):
    """The VAE and its AdamW optimiser on the negative ELBO (module docstring)."""

    family = "vae"
    model_class = VAEModel

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return VAENet(params.data.channels, params.data.image_size, params.vae)

    def train_step(
        self, micro_batches: Sequence[Batch], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        config = self.params.vae
        weight = kl_weight(config, step)

        def loss_terms(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
            logits, mu, logvar = net(x)
            nll = reconstruction_nll(logits.float(), x, config.reconstruction).mean()
            kl = kl_divergence(mu.float(), logvar.float()).mean()
            return {"loss": nll + weight * kl, "reconstruction": nll, "kl": kl}

        return {**self.optimize(loss_terms, micro_batches, lr), "kl_weight": torch.tensor(weight)}
