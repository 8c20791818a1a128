"""Beta schedules: the variances beta_t of the forward process q(x_t | x_{t-1}).

Every schedule returns float64 betas of shape [T] with 0 < beta_t <= 1 (beta_t == 1 only at the
last step of a zero-terminal-SNR schedule). Derived quantities, as in DDPM (Ho et al. 2020, eq. 4):

    alphas    = 1 - betas
    alpha_bar = cumprod(alphas)          # q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)

Schedules (``BETA_SCHEDULES``):

- ``linear``: DDPM, betas = linspace(beta_start, beta_end, T).
  https://arxiv.org/abs/2006.11239 (section 4)
- ``scaled_linear``: betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2 (Stable Diffusion).
- ``cosine``: improved DDPM, alpha_bar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2) with s = 0.008,
  beta_t = min(1 - alpha_bar(t + 1) / alpha_bar(t), 0.999). Ignores beta_start / beta_end.
  https://arxiv.org/abs/2102.09672 (eq. 17)
- ``sigmoid``: GeoDiff (Xu et al. 2022), betas = sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start)
  + beta_start: close to beta_start early and beta_end late, with a smooth ramp in between.
  https://arxiv.org/abs/2203.02923 (appendix, as in its reference code and diffusers' ``sigmoid``)

``zero_terminal_snr=True`` rescales any of them so that alpha_bar_{T-1} = 0 (the last step is pure
noise) while keeping alpha_bar_0 (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps
are Flawed", Algorithm 1). https://arxiv.org/abs/2305.08891
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

COSINE_S = 0.008  # improved DDPM offset s: keeps beta_0 from being vanishingly small
COSINE_MAX_BETA = 0.999  # improved DDPM clip: avoids the singularity of beta_t near t = T
SIGMOID_RANGE = 6.0  # GeoDiff evaluates the sigmoid on linspace(-6, 6, T)


def check_beta_range(beta_start: float, beta_end: float) -> None:
    """Raise ValueError unless 0 < beta_start <= beta_end < 1 (all finite)."""
    if not (math.isfinite(beta_start) and beta_start > 0):
        raise ValueError(f"beta_start must be a finite number > 0, got {beta_start!r}")
    if not (math.isfinite(beta_end) and beta_end < 1):
        raise ValueError(f"beta_end must be a finite number < 1, got {beta_end!r}")
    if beta_start > beta_end:
        raise ValueError(
            f"beta_start must be <= beta_end, got beta_start={beta_start!r} > beta_end={beta_end!r}"
        )


def check_timesteps(timesteps: int) -> None:
    """Raise ValueError unless timesteps is an integer >= 1."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")


def _linear(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)


def _scaled_linear(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2


def cosine_alpha_bar(u: torch.Tensor, s: float = COSINE_S) -> torch.Tensor:
    """Improved-DDPM eq. 17 before normalisation: cos^2(((u + s) / (1 + s)) * pi / 2), u = t / T."""
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def _cosine(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    del beta_start, beta_end  # the cosine schedule is defined by T and s alone
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps  # (T + 1,)
    alpha_bar = cosine_alpha_bar(u)
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=COSINE_MAX_BETA)


def _sigmoid(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    z = torch.linspace(-SIGMOID_RANGE, SIGMOID_RANGE, timesteps, dtype=torch.float64)
    return torch.sigmoid(z) * (beta_end - beta_start) + beta_start


BETA_SCHEDULES: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "linear": _linear,
    "scaled_linear": _scaled_linear,
    "cosine": _cosine,
    "sigmoid": _sigmoid,
}


def check_schedule(schedule: str) -> None:
    """Raise ValueError unless ``schedule`` names an entry of BETA_SCHEDULES."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(
            f"unknown beta schedule {schedule!r}; allowed: {', '.join(sorted(BETA_SCHEDULES))}"
        )


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: shift and scale sqrt(alpha_bar) so that its last value is 0.

    1) sqrt_alpha_bar <- sqrt_alpha_bar - sqrt_alpha_bar[-1]      (last value becomes 0)
    2) sqrt_alpha_bar <- sqrt_alpha_bar * s0 / (s0 - sT)           (first value is restored)
    3) betas <- 1 - alpha_bar[t] / alpha_bar[t-1]                  (beta_{T-1} becomes 1)
    """
    if betas.numel() < 2:
        raise ValueError(f"zero_terminal_snr needs timesteps >= 2, got {betas.numel()}")
    sqrt_alpha_bar = torch.cumprod(1 - betas.double(), dim=0).sqrt()
    s0, s_last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    sqrt_alpha_bar = (sqrt_alpha_bar - s_last) * s0 / (s0 - s_last)
    alpha_bar = sqrt_alpha_bar**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


def make_betas(
    schedule: str,
    timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    *,
    zero_terminal_snr: bool = False,
) -> torch.Tensor:
    """Betas of a named schedule: float64, shape [timesteps].

    Args:
        schedule: one of ``BETA_SCHEDULES`` (linear, scaled_linear, cosine, sigmoid).
        timesteps: T >= 1, the number of diffusion steps.
        beta_start, beta_end: 0 < beta_start <= beta_end < 1 (DDPM: 1e-4 and 0.02 for T = 1000).
            Checked for every schedule; ``cosine`` does not use them.
        zero_terminal_snr: rescale so that alpha_bar_{T-1} = 0 (Lin et al. 2023); needs T >= 2.
    Raises:
        ValueError: naming the bad value and what is allowed.
    """
    check_schedule(schedule)
    check_timesteps(timesteps)
    check_beta_range(beta_start, beta_end)
    betas = BETA_SCHEDULES[schedule](timesteps, float(beta_start), float(beta_end))
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas
