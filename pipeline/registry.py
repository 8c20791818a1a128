"""The registry of model families: ``model.family`` -> the module and class that implement it, and
what each family needs of the data and of the caller that samples it.

Entries are import paths and plain values, not classes, so that ``pipeline.config`` can validate
``model.family`` and its data needs without importing the families (which import the config): this
module imports nothing of ours.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Conditioning = Literal["image", "class"] | None
EVALUATION = "pipeline.evaluate.hooks"  # the families' evaluation hooks


@dataclass(frozen=True)
class Family:
    """``path``: "module:Class" of the family's Method. ``conditioning``: what ``sample`` needs
    besides noise: None (unconditional), "image" (an image per sample, of which the family takes
    its condition: a colorizer's lightness), "class" (a class label per sample). ``sections``: the
    params sections (beyond data, model, train) its training reads: part of a run's identity.
    ``evaluation``: "module:Class" of what the evaluate stage does for it beyond FID/KID
    (pipeline.evaluate.hooks). ``size_multiple``: data.image_size must be a multiple of it (a
    decoder that doubles the image twice: 4)."""

    path: str
    conditioning: Conditioning = None
    sections: tuple[str, ...] = ()
    evaluation: str = f"{EVALUATION}:Evaluation"
    size_multiple: int = 1

    @property
    def needs_rgb(self) -> bool:
        """Image-conditioned families colorize: they need RGB data (data.channels: 3)."""
        return self.conditioning == "image"

    @property
    def diffusion(self) -> bool:
        """A diffusion family: its network is the UNet of the ``model`` section."""
        return "diffusion" in self.sections

    @property
    def needs_labels(self) -> bool:
        """Class-conditioned families train on (image, label) pairs."""
        return self.conditioning == "class"


METHODS: dict[str, Family] = {
    # denoising diffusion (Ho et al. 2020) on a UNet
    "ddpm": Family("pipeline.methods.ddpm:DDPM", sections=("diffusion",)),
    # class-conditional DDPM with classifier-free guidance (Ho and Salimans 2022)
    "ddpm_cfg": Family(
        "pipeline.methods.guided:DDPMGuided",
        "class",
        ("diffusion", "guidance"),
        evaluation=f"{EVALUATION}:GuidedEvaluation",
    ),
    # variational autoencoder (Kingma and Welling 2014)
    "vae": Family(
        "pipeline.methods.vae:VAE",
        sections=("vae",),
        evaluation=f"{EVALUATION}:LatentEvaluation",
        size_multiple=4,
    ),
    # deep convolutional GAN (Radford et al. 2016)
    "dcgan": Family(
        "pipeline.methods.gan:DCGAN",
        sections=("gan",),
        evaluation=f"{EVALUATION}:LatentEvaluation",
        size_multiple=4,
    ),
    # colorization, P(ab | L*) (Palette) and its L2 regression baseline
    "ddpm_color": Family(
        "pipeline.methods.colorize:DDPMColor",
        "image",
        ("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
    ),
    "regression_color": Family(
        "pipeline.methods.colorize:RegressionColor",
        "image",
        ("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
    ),
    # colour as classes over the ab bins, decoded by the annealed mean (Zhang et al. 2016)
    "classify_color": Family(
        "pipeline.methods.colorize:ClassifyColor",
        "image",
        ("diffusion",),
        evaluation=f"{EVALUATION}:ColorizerEvaluation",
    ),
}


def check_family(name: str) -> None:
    """ValueError naming ``name`` and the registered families unless ``name`` is one."""
    if name not in METHODS:
        raise ValueError(f"family: unknown value {name!r}; allowed: {', '.join(METHODS)}")


def family(name: str) -> Family:
    """The registry entry of family ``name``."""
    check_family(name)
    return METHODS[name]


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
