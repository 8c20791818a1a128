"""Loss terms of the variational bound and the simple loss's timestep weighting.

- ``normal_kl``: KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.
- ``discretized_gaussian_log_likelihood``: the DDPM decoder L_0 (Ho et al. 2020, eq. 13): the
  Gaussian mass of the 8-bit bin of each pixel, data scaled to [-1, 1].
- ``min_snr_weight``: Min-SNR-gamma weighting (Hang et al. 2023, https://arxiv.org/abs/2303.09556).
"""

from __future__ import annotations

import math

import torch

PIXEL_BIN_HALF_WIDTH = 1.0 / 255.0  # half of one 8-bit bin (2 / 255 wide) on the [-1, 1] scale
EDGE = 0.999  # pixels beyond +-EDGE are in the outermost bins, which extend to +-infinity


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension: (B, ...) -> (B,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL divergence between two diagonal Gaussians, elementwise, in nats.

    KL = 0.5 * (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2))
    """
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log p(x) of 8-bit data in [-1, 1] under N(means, exp(log_scales)^2) integrated over x's bin.

    DDPM eq. 13: the mass of [x - 1/255, x + 1/255]; the first and last bins extend to -inf / +inf,
    so the 256 bin masses sum to 1. Returns elementwise log-likelihoods in nats, shape of x.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = standard_normal_cdf(inv_std * (centered + PIXEL_BIN_HALF_WIDTH))
    cdf_min = standard_normal_cdf(inv_std * (centered - PIXEL_BIN_HALF_WIDTH))
    tiny = 1e-12
    log_cdf_plus = torch.log(cdf_plus.clamp(min=tiny))  # mass of (-inf, x + 1/255]
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=tiny))  # mass of [x - 1/255, inf)
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=tiny))
    return torch.where(
        x < -EDGE, log_cdf_plus, torch.where(x > EDGE, log_one_minus_cdf_min, log_cdf_delta)
    )


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample weight of the simple loss so that it equals min(SNR_t, gamma) * ||x0 - x0_hat||^2.

    Hang et al. 2023, eq. 7 and section 3.4: an MSE on eps is SNR times an MSE on x0, and an MSE on
    v is (SNR + 1) times one on x0, hence the weights min(SNR, gamma) / SNR (epsilon),
    min(SNR, gamma) / (SNR + 1) (v_prediction) and min(SNR, gamma) (sample).
    """
    clipped = torch.clamp(snr, max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    if prediction_type == "sample":
        return clipped
    raise ValueError(
        f"unknown prediction_type {prediction_type!r}; allowed: epsilon, sample, v_prediction"
    )
