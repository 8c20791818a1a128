"""The small convolutional encoder and decoder of the VAE and the DCGAN (Radford et al. 2016).

``ConvEncoder``: image (B, C, s, s) -> two stride-2 4x4 convolutions (s -> s/2 -> s/4, widths w,
2w; LeakyReLU 0.2, no normalisation on the first as in DCGAN's discriminator) -> a linear map to
``out_dim`` (the VAE's (mu, logvar), the discriminator's logit). ``ConvDecoder``: latent (B, d) -> a
linear map to (2w, s/4, s/4) -> two stride-2 4x4 transposed convolutions (ReLU) -> (B, C, s, s),
unbounded (the VAE reads logits, the generator applies tanh). ``norm`` picks the normalisation:
batch norm for the GAN (DCGAN), group norm for the VAE (no batch statistics at sampling time).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pipeline.models.unet import group_norm

NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": nn.BatchNorm2d, "group": group_norm}


class ConvEncoder(nn.Module):
    def __init__(
        self, in_channels: int, image_size: int, width: int, out_dim: int, norm: str
    ) -> None:
        super().__init__()
        side = image_size // 4
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),  # s/2
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),  # s/4
            NORMS[norm](2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.out = nn.Linear(2 * width * side * side, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, s, s) -> (B, out_dim)."""
        return self.out(self.body(x))


class ConvDecoder(nn.Module):
    def __init__(
        self, latent_dim: int, out_channels: int, image_size: int, width: int, norm: str
    ) -> None:
        super().__init__()
        self.shape = (2 * width, image_size // 4, image_size // 4)
        self.project = nn.Linear(latent_dim, 2 * width * (image_size // 4) ** 2)
        self.body = nn.Sequential(
            NORMS[norm](2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),  # s/2
            NORMS[norm](width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, out_channels, 4, stride=2, padding=1),  # s
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, C, s, s), unbounded."""
        return self.body(self.project(z).view(-1, *self.shape))


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation (Radford et al. 2016, section 4): conv and linear weights from
    N(0, 0.02), batch-norm scales from N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module
