"""Params -> objects: the diffusion process and the UNet (shared by training, sampling, evaluation)."""

from __future__ import annotations

from pipeline.config import DiffusionConfig, Params
from pipeline.diffusion import GaussianDiffusion, make_betas
from pipeline.models import UNet


def build_diffusion(config: DiffusionConfig) -> GaussianDiffusion:
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


def build_unet(params: Params) -> UNet:
    return UNet(
        params.model,
        image_size=params.data.image_size,
        in_channels=params.data.channels,
        learned_variance=params.diffusion.variance_type == "learned_range",
    )
