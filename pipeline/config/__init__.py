"""Typed, frozen params: one dataclass per params.yaml section, validated when loaded.

``load_params("params.yaml")`` returns a ``Params``; unknown keys, wrong types and bad values raise
``ConfigError`` naming the key (``diffusion.beta_end``), the value and what is allowed, before any
compute starts. The package's modules, lowest first: ``loader`` (the generic typed loader),
``keys`` (dotted keys), ``space`` (tune.space specs), ``sections`` (one dataclass per section),
``search`` (the tune section and the trial policy), ``params`` (the whole file). Each model
family's own section is the family's (pipeline.registry).
"""

from pipeline.config.keys import dotted, flatten, nest, override
from pipeline.config.loader import (
    ConfigError,
    check_positive,
    from_dict,
    load_yaml,
    section,
    to_dict,
)
from pipeline.config.params import Params, load_params
from pipeline.config.search import DEFAULT_SPACE, TRIAL_FIXED, SearchConfig, tune_sections
from pipeline.config.sections import (
    MAX_GRID,
    MAX_IMAGE_SIZE,
    MAX_SAMPLES,
    MAX_TIMESTEPS,
    TRAIN_OPERATIONAL,
    ColorizerEvalConfig,
    DataConfig,
    DiffusionConfig,
    DownloadConfig,
    EvalConfig,
    FeatureNetConfig,
    GuidedEvalConfig,
    LatentEvalConfig,
    LossConfig,
    MlflowConfig,
    ModelConfig,
    RayConfig,
    TrainConfig,
    check_unit_interval,
    check_width,
)
from pipeline.config.space import Spec, admits, parse_space

__all__ = [
    "DEFAULT_SPACE",
    "MAX_GRID",
    "MAX_IMAGE_SIZE",
    "MAX_SAMPLES",
    "MAX_TIMESTEPS",
    "TRAIN_OPERATIONAL",
    "TRIAL_FIXED",
    "ColorizerEvalConfig",
    "ConfigError",
    "DataConfig",
    "DiffusionConfig",
    "DownloadConfig",
    "EvalConfig",
    "FeatureNetConfig",
    "GuidedEvalConfig",
    "LatentEvalConfig",
    "LossConfig",
    "MlflowConfig",
    "ModelConfig",
    "Params",
    "RayConfig",
    "SearchConfig",
    "Spec",
    "TrainConfig",
    "admits",
    "check_positive",
    "check_unit_interval",
    "check_width",
    "dotted",
    "flatten",
    "from_dict",
    "load_params",
    "load_yaml",
    "nest",
    "override",
    "parse_space",
    "section",
    "to_dict",
    "tune_sections",
]
