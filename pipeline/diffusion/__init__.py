"""The DDPM core: beta schedules, the Gaussian forward/reverse process, losses and samplers.

Public API (documented in docs/api.md):
    make_betas, BETA_SCHEDULES, GaussianDiffusion, PREDICTION_TYPES, VARIANCE_TYPES, SAMPLERS
"""

from pipeline.diffusion.gaussian import (
    PREDICTION_TYPES,
    VARIANCE_TYPES,
    GaussianDiffusion,
    LossTerms,
    PMeanVariance,
)
from pipeline.diffusion.samplers import SAMPLERS, SampleStep, StepOutput
from pipeline.diffusion.schedules import BETA_SCHEDULES, make_betas

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "SAMPLERS",
    "VARIANCE_TYPES",
    "GaussianDiffusion",
    "LossTerms",
    "PMeanVariance",
    "SampleStep",
    "StepOutput",
    "make_betas",
]
