"""A colorizer and its guide, loaded and checked once, as the colorize command, the web page
(pipeline.apps.web) and the photo model MLflow serves (pipeline.photo_model) colorize with them:
``Colorizer.load(model, guide, device).colorize(rgb)`` -> colorized photos (pipeline.photo)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.methods.base import GenerativeModel
from pipeline.methods.export import load_on
from pipeline.methods.step import resolve_precision
from pipeline.model_uri import is_uri, model_folder
from pipeline.photo import (
    DEFAULT_DRAWS,
    GUIDE_FAMILIES,
    colorize_image,
    default_scale,
    guide_mismatch,
)
from pipeline.registry import FAMILIES
from pipeline.shipped import GUIDE_DIR, shipped_colorizer, shipped_guide

SATURATIONS = (0.0, 3.0)  # --saturation's range: 0 gray, 3 beyond any photo's colours


def load_colorizer(models_dir: str, device: str) -> GenerativeModel:
    """The exported model in ``models_dir`` on ``device``; ValueError unless it is a colorizer."""
    model = load_on(models_dir, device)
    if model.conditioning != "image":
        colorizers = [name for name, family in FAMILIES.items() if family.conditioning == "image"]
        raise ValueError(
            f"--model {models_dir} holds model.family {model.params.model.family!r}, not a "
            f"colorizer ({', '.join(colorizers)}); train one with `make colorize`"
        )
    return model


def load_guide(guide_dir: str, model: GenerativeModel) -> GenerativeModel:
    """The exported guide in ``guide_dir`` on ``model``'s device; ValueError unless it is a
    one-step colorizer (GUIDE_FAMILIES) that fits ``model`` (pipeline.photo.guide_mismatch) and
    ``model`` is a diffusion colorizer."""
    if model.params.model.family in GUIDE_FAMILIES:
        raise ValueError(f"--guide needs a diffusion --model, not a {model.params.model.family}")
    guide = load_on(guide_dir, str(model.device))
    if problem := guide_mismatch(model, guide):
        raise ValueError(f"--guide {guide_dir} {problem}")
    return guide


def colorizer_dirs(
    model: str | None, guide: str | None, workdir: str | Path
) -> tuple[str, str | None]:
    """--model and --guide as local folders, or their defaults: the shipped colorizer and its
    guide without --model; with it, no guide unless --model is a photo model's URI, whose guide
    comes with it (pipeline.model_uri: URIs downloaded into ``workdir``)."""
    if not model:
        return str(shipped_colorizer()), guide or str(shipped_guide())
    folder = model_folder(model, Path(workdir) / "model")
    if guide is None and is_uri(model) and (folder / GUIDE_DIR).is_dir():
        return str(folder), str(folder / GUIDE_DIR)
    return str(folder), guide and str(model_folder(guide, Path(workdir) / "guide"))


@dataclass(frozen=True)
class Colorizer:
    """A colorizer and its guide, loaded once, as the command and the web page
    (pipeline.apps.web) colorize with them."""

    model: GenerativeModel
    guide: GenerativeModel | None
    precision: str  # --precision as resolved on the model's device

    @classmethod
    def load(
        cls, model: str | None, guide: str | None, device: str | None, precision: str = "auto"
    ) -> Colorizer:
        """--model, --guide (folders or MLflow model URIs; their defaults: ``colorizer_dirs``),
        --device (default: cuda when available) and --precision, checked and loaded."""
        with tempfile.TemporaryDirectory() as workdir:  # for models named by URI
            models_dir, guide_dir = colorizer_dirs(model, guide, workdir)
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            net = load_colorizer(models_dir, device)
            return cls(
                net,
                load_guide(guide_dir, net) if guide_dir else None,
                resolve_precision(precision, net.device, cpu_bf16=True),
            )

    def steps(self, steps: int | None) -> int:
        """--steps, or the model's eval.steps; ValueError beyond its diffusion.timesteps."""
        steps = steps or self.model.params.eval.steps
        if steps > self.model.params.diffusion.timesteps:
            raise ValueError(
                f"--steps must be at most {self.model.params.diffusion.timesteps} (the model's "
                f"diffusion.timesteps), got {steps}"
            )
        return steps

    def colorize(
        self,
        rgb: np.ndarray,
        *,
        seed: int = 0,
        samples: int = 1,
        steps: int | None = None,
        draws: int = DEFAULT_DRAWS,
        vividness: float | None = None,
        saturation: float | None = None,
        scale: float | None = None,
    ) -> Iterator[np.ndarray]:
        """``samples`` colorizations of a uint8 RGB photo (H, W, 3), each uint8 (H, W, 3), as
        pipeline.photo.colorize_image makes them (None: the defaults of ``decoding``,
        ``default_scale`` and ``steps``)."""
        return colorize_image(
            self.model,
            rgb,
            samples=samples,
            steps=self.steps(steps),
            scale=scale or default_scale(self.model),
            generator=torch.Generator(self.model.device).manual_seed(seed),
            draws=draws,
            vividness=vividness,
            saturation=saturation,
            guide=self.guide,
            precision=self.precision,
        )
