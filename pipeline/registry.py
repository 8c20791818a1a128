"""The registry of model families: ``model.family`` -> the module and class that implement it, its
own params section, and what it needs of the data and of the caller that samples it.

Entries are import paths and plain values, not classes, so that ``pipeline.config`` can validate
``model.family`` and its data needs without importing the families (which import the config): this
module imports nothing of ours. A family's own section (``vae:`` of params.yaml) is a frozen
dataclass in the family's module, with its checks; ``pipeline.config.Params`` resolves it by its
path here when params are built, so a new family with a section is its module and one line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Conditioning = Literal["image", "class"] | None
EVALUATION = "pipeline.evaluate.hooks"  # the families' evaluation hooks


@dataclass(frozen=True)
class Family:
    """``path``: "module:Class" of the family's Method. ``conditioning``: what ``sample`` needs
    besides noise: None (unconditional), "image" (an image per sample, of which the family takes
    its condition: a colorizer's lightness), "class" (a class label per sample). ``shared``: the
    params sections of other families its training reads (diffusion). ``section`` and ``config``:
    the name of its own params section and "module:Class" of that section's frozen dataclass,
    which checks its keys when built and, in ``check(params)``, the rules that tie them to other
    sections. ``evaluation``: "module:Class" of what the evaluate stage does for it beyond FID/KID
    (pipeline.evaluate.hooks). ``size_multiple``: data.image_size must be a multiple of it (a
    decoder that doubles the image twice: 4). ``tiny``: its own section's values in the tests'
    smallest params (dotted under ``section``). ``guides``: a one-step colorizer whose colours
    can guide a diffusion colorizer's draws (pipeline.photo)."""

    path: str
    conditioning: Conditioning = None
    shared: tuple[str, ...] = ()
    section: str | None = None
    config: str | None = None
    evaluation: str = f"{EVALUATION}:Evaluation"
    size_multiple: int = 1
    tiny: Mapping[str, Any] = field(default_factory=dict)
    guides: bool = False

    def __post_init__(self) -> None:
        if (self.section is None) != (self.config is None):
            raise ValueError(f"{self.path}: a family's own section needs both section and config")

    @property
    def sections(self) -> tuple[str, ...]:
        """The params sections (beyond data, model, train) its training reads: part of a run's
        identity."""
        return self.shared + ((self.section,) if self.section else ())

    @property
    def needs_rgb(self) -> bool:
        """Image-conditioned families colorize: they need RGB data (data.channels: 3)."""
        return self.conditioning == "image"

    @property
    def diffusion(self) -> bool:
        """A diffusion family: its network is the UNet of the ``model`` section."""
        return "diffusion" in self.shared

    @property
    def needs_labels(self) -> bool:
        """Class-conditioned families train on (image, label) pairs."""
        return self.conditioning == "class"


FAMILIES: dict[str, Family] = {
    # denoising diffusion (Ho et al. 2020) on a UNet
    "ddpm": Family("pipeline.methods.ddpm:DDPM", shared=("diffusion",)),
    # class-conditional DDPM with classifier-free guidance (Ho and Salimans 2022)
    "ddpm_cfg": Family(
        "pipeline.methods.guided:DDPMGuided",
        "class",
        ("diffusion",),
        section="guidance",
        config="pipeline.methods.guided:GuidanceConfig",
        evaluation=f"{EVALUATION}:GuidedEvaluation",
        tiny={"p_uncond": 0.2},
    ),
    # variational autoencoder (Kingma and Welling 2014)
    "vae": Family(
        "pipeline.methods.vae:VAE",
        section="vae",
        config="pipeline.methods.vae:VAEConfig",
        evaluation=f"{EVALUATION}:LatentEvaluation",
        size_multiple=4,
        tiny={"latent_dim": 4, "width": 8},
    ),
    # deep convolutional GAN (Radford et al. 2016)
    "dcgan": Family(
        "pipeline.methods.gan:DCGAN",
        section="gan",
        config="pipeline.methods.gan:GANConfig",
        evaluation=f"{EVALUATION}:LatentEvaluation",
        size_multiple=4,
        tiny={"latent_dim": 8, "width": 8},
    ),
    # colorization, P(ab | L*) (Palette) and its L2 regression baseline
    "ddpm_color": Family(
        "pipeline.methods.colorize:DDPMColor",
        "image",
        shared=("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
    ),
    "regression_color": Family(
        "pipeline.methods.colorize:RegressionColor",
        "image",
        shared=("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
        guides=True,
    ),
    # colour as classes over the ab bins, decoded by the annealed mean (Zhang et al. 2016)
    "classify_color": Family(
        "pipeline.methods.colorize:ClassifyColor",
        "image",
        shared=("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
        guides=True,
    ),
}


def check_family(name: str) -> None:
    """ValueError naming ``name`` and the registered families unless ``name`` is one."""
    if name not in FAMILIES:
        raise ValueError(f"family: unknown value {name!r}; allowed: {', '.join(FAMILIES)}")


def family(name: str) -> Family:
    """The registry entry of family ``name``."""
    check_family(name)
    return FAMILIES[name]


def method_module(name: str) -> str:
    """The module implementing family ``name`` (its source is part of a run's code identity)."""
    return family(name).path.partition(":")[0]


def resolve(path: str) -> Any:
    """The object a "module:Name" import path names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def method_class(name: str) -> Any:
    """The ``Method`` class of family ``name`` (a subclass of pipeline.methods.base.Method)."""
    return resolve(family(name).path)


def evaluation_class(name: str) -> Any:
    """The evaluate stage's hook class of family ``name`` (pipeline.evaluate.hooks.Evaluation)."""
    return resolve(family(name).evaluation)


def section_configs() -> dict[str, Any]:
    """Every family's own params section -> its dataclass, in registry order; ValueError if two
    families give one section different dataclasses."""
    paths: dict[str, str] = {}
    for name, entry in FAMILIES.items():
        if entry.section is None or entry.config is None:
            continue
        if paths.setdefault(entry.section, entry.config) != entry.config:
            raise ValueError(
                f"family {name!r}: section {entry.section!r} is already {paths[entry.section]}"
            )
    return {section: resolve(path) for section, path in paths.items()}
