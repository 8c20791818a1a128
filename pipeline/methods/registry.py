"""The registry of model families: ``model.family`` -> the module and class that implement it.

Entries are import paths, not classes, so that ``pipeline.config`` can validate ``model.family``
without importing the families (which import the config): this module imports nothing of ours.
"""

from __future__ import annotations

import importlib
from typing import Any

METHODS: dict[str, str] = {
    "ddpm": "pipeline.methods.ddpm:DDPM",  # denoising diffusion (Ho et al. 2020) on a UNet
    "ddpm_color": "pipeline.methods.colorize:DDPMColor",  # colorization, P(ab | L*) (Palette)
    "regression_color": "pipeline.methods.colorize:RegressionColor",  # its L2 regression baseline
}
COLORIZERS = frozenset({"ddpm_color", "regression_color"})  # need RGB data (data.channels: 3)


def check_family(name: str) -> None:
    """ValueError naming ``name`` and the registered families unless ``name`` is one."""
    if name not in METHODS:
        raise ValueError(f"family: unknown value {name!r}; allowed: {', '.join(METHODS)}")


def method_module(name: str) -> str:
    """The module implementing family ``name`` (its source is part of a run's code identity)."""
    check_family(name)
    return METHODS[name].partition(":")[0]


def method_class(name: str) -> Any:
    """The ``Method`` class of family ``name`` (a subclass of pipeline.methods.base.Method)."""
    check_family(name)
    module, _, cls = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
