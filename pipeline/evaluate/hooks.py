"""What the evaluate stage does for one family beyond FID/KID of its samples: the family's
``evaluation`` hook (pipeline.registry.Family), so that ``pipeline.evaluate.run`` never
branches on the family.

``Evaluation`` (an unconditional diffusion family): the sample grid and the denoising trajectory.
``LatentEvaluation`` (VAE, GAN): a latent interpolation GIF and grid instead of the trajectory.
``GuidedEvaluation`` (classifier-free guidance): class accuracy and the guidance sweep.
``ColorizerEvaluation``: fidelity to the true colours, diversity and the baselines' scores.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from pipeline.config import EvalConfig
from pipeline.console import progress_bar
from pipeline.data.dataset import spread
from pipeline.data.preprocess import split_images
from pipeline.evaluate.colour import ab_diversity, fidelity, gray_images, photo_scores
from pipeline.evaluate.featurenet import FeatureNet, classify, load_featurenet
from pipeline.evaluate.figures import guidance_strip, interpolation, trajectory_frames
from pipeline.evaluate.sampling import generate
from pipeline.imagefile import as_rgb
from pipeline.methods.base import GenerativeModel
from pipeline.methods.export import load_model
from pipeline.photo import decodings, guide_mismatch
from pipeline.pixels import to_unit
from pipeline.registry import evaluation_class
from pipeline.reports.grid import image_grid
from pipeline.scene import colour

log = logging.getLogger(__name__)

Score = Callable[[np.ndarray], dict[str, float]]  # uint8 images -> fid_/kid_<features>


@dataclass(frozen=True)
class Inputs:
    """The evaluate stage's optional inputs (None: not given)."""

    models_dir: str | Path
    featurenet_dir: str | Path | None = None
    figures_dir: str | Path | None = None
    baseline_dir: str | Path | None = None
    photos_dir: str | Path | None = None  # a colorizer's raw images, whose test photos it colours


@dataclass(frozen=True)
class Sampler:
    """How the family's extras draw more samples: ``models`` and ``baseline`` are the model and
    the baseline in Ray's object store (``ray.put``; the sampling tasks read them from there),
    ``score`` scores uint8 images."""

    config: EvalConfig
    models: ray.ObjectRef
    baseline: ray.ObjectRef | None
    use_gpu: bool
    score: Score

    def generate(
        self,
        models: ray.ObjectRef,
        conditions: np.ndarray | None,
        desc: str = "sampling",
        **changes: Any,
    ) -> np.ndarray:
        """``generate`` with the eval settings (``changes`` replace some)."""
        config = dataclasses.replace(self.config, **changes)
        return generate(models, config, self.use_gpu, conditions, desc=desc)


@dataclass(frozen=True)
class Drawn:
    """The scored samples: ``images`` (uint8) drawn from ``conditions``
    (``GenerativeModel.conditions``) and their FID/KID ``scores``."""

    conditions: np.ndarray | None
    images: np.ndarray
    scores: dict[str, float]


@dataclass
class Extras:
    """What a family adds to FID/KID: ``scores`` (metrics), ``settings`` (reported, not scored),
    the sample ``grid``, the GIF's frames, ``pictures`` for the figures folder (file name ->
    image) and a guidance sweep's table."""

    grid: np.ndarray
    trajectory: list[np.ndarray]
    scores: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    pictures: dict[str, np.ndarray] = field(default_factory=dict)
    guidance: pd.DataFrame | None = None


class Evaluation:
    """An unconditional diffusion family's: the first ``grid_count`` samples and the denoising
    trajectory."""

    baseline: GenerativeModel | None = None  # a baseline model, loaded by ``prepare``

    def __init__(self, model: GenerativeModel, config: EvalConfig) -> None:
        self.model, self.config = model, config

    @property
    def name(self) -> str:
        return self.model.params.model.family

    def prepare(self, inputs: Inputs) -> None:
        """ValueError naming what is missing or not taken, before any compute; loads what the
        family's scores need."""
        if inputs.baseline_dir is not None:
            raise ValueError(
                f"evaluate: a baseline ({inputs.baseline_dir}) is compared with colorizers only; "
                f"{inputs.models_dir} holds model.family {self.name!r}"
            )

    def test_images(self) -> tuple[int, str]:
        """The test images it needs and what for (pipeline.data.manifest.verify_processed)."""
        return 2, "evaluate (FID of the test split)"

    def extras(self, sampler: Sampler, drawn: Drawn) -> Extras:
        """The family's scores and pictures of the ``drawn`` samples."""
        return Extras(self.grid(drawn), self.trajectory(drawn.conditions))

    def grid(self, drawn: Drawn) -> np.ndarray:
        """The sample grid: the model's panel of the first ``grid_count`` samples."""
        shown = slice(self.config.grid_count)
        part = None if drawn.conditions is None else drawn.conditions[shown]
        return image_grid(*self.model.panel(to_unit(drawn.images[shown]), part))

    def trajectory(self, conditions: np.ndarray | None) -> list[np.ndarray]:
        """The GIF's frames: the reverse process of ``trajectory_count`` samples, drawn from
        conditions spread over ``conditions``."""
        return trajectory_frames(
            self.model, self.config, lambda n: conditions[spread(len(conditions), n)]
        )

    @staticmethod
    def summary(metrics: dict[str, Any], config: EvalConfig) -> list[str]:
        """The console lines of the family's own scores in ``metrics`` (the evaluate stage prints
        them after FID/KID)."""
        return []


class LatentEvaluation(Evaluation):
    """A one-shot generator's (VAE, GAN): a latent interpolation (GIF and interpolation.png)."""

    def prepare(self, inputs: Inputs) -> None:
        super().prepare(inputs)
        if inputs.figures_dir is None:
            raise ValueError(f"evaluate: model.family {self.name!r} draws figures: pass --figures")

    def extras(self, sampler: Sampler, drawn: Drawn) -> Extras:
        frames, grid = interpolation(self.model, self.config)
        return Extras(self.grid(drawn), frames, pictures={"interpolation.png": grid})


class GuidedEvaluation(Evaluation):
    """A class-conditional model's: FeatureNet's class accuracy on the samples at
    ``eval.guided.guidance_scale`` and, with ``eval.guided.guidance_sweep``, FID and class accuracy at every w
    (guidance.csv, guidance.png) and a strip of one sample per class at each w."""

    classifier: FeatureNet

    def prepare(self, inputs: Inputs) -> None:
        super().prepare(inputs)
        if inputs.featurenet_dir is None:
            raise ValueError(
                f"evaluate: {inputs.models_dir} holds the class-conditional {self.name!r}, whose "
                "class accuracy FeatureNet's classifier measures: pass --featurenet"
            )
        if inputs.figures_dir is None and self.config.guided.guidance_sweep:
            raise ValueError(f"evaluate: model.family {self.name!r} draws figures: pass --figures")
        self.classifier = load_featurenet(inputs.featurenet_dir)[0]

    def extras(self, sampler: Sampler, drawn: Drawn) -> Extras:
        out = super().extras(sampler, drawn)
        conditions = drawn.conditions
        out.scores = class_accuracy(self.classifier, drawn.images, conditions)
        out.settings = {"guidance_scale": self.config.guided.guidance_scale}
        if self.config.guided.guidance_sweep:
            at_scale = {**drawn.scores, **out.scores}
            out.guidance = self.guidance_sweep(
                sampler, conditions, {self.config.guided.guidance_scale: at_scale}
            )
            out.pictures["guidance_strip.png"] = guidance_strip(self.model, self.config)
        return out

    @staticmethod
    def summary(metrics: dict[str, Any], config: EvalConfig) -> list[str]:
        return [
            f"  class accuracy {metrics['class_accuracy']:.3f} at guidance w "
            f"{metrics['guidance_scale']:g} (FeatureNet's classifier on the samples)"
        ]

    def guidance_sweep(
        self, sampler: Sampler, labels: np.ndarray, scored: dict[float, dict[str, float]]
    ) -> pd.DataFrame:
        """FID/KID and class accuracy of ``num_samples`` samples at every w of
        ``eval.guided.guidance_sweep`` (``scored``: the ones already measured, by w)."""
        rows = []
        for w in self.config.guided.guidance_sweep:
            if w not in scored:
                at_w = dataclasses.replace(self.config.guided, guidance_scale=w)
                images = sampler.generate(sampler.models, labels, f"sampling w={w:g}", guided=at_w)
                scored[w] = {
                    **sampler.score(images),
                    **class_accuracy(self.classifier, images, labels),
                }
            rows.append({"guidance_scale": w, **scored[w]})
        return pd.DataFrame(rows)


class ColorizerEvaluation(Evaluation):
    """A colorizer's: its fidelity to the true colours and diversity (K = ``diversity_samples``
    samples of each of ``diversity_count`` test images), and FID/KID and fidelity of the
    baselines: ``gray_*`` (ab = 0) and, with a baseline model, ``regression_*``. The grid shows
    triptychs gray | K colorized | truth. With ``eval.colorizer.photos`` and the raw images, the
    first that many test photos are colorized whole, as the colorize command does (``photo_*``:
    the model with the baseline as its guide, the command's default; ``photo_draws_*``: the
    model's draws alone; ``photo_regression_*``: the baseline alone; ``photo_gray_fid_colour``),
    scored by ``pipeline.evaluate.colour.photo_scores``."""

    guide: GenerativeModel | None = None  # the baseline, when it can guide the model on photos
    photos: list[np.ndarray] | None = None

    def prepare(self, inputs: Inputs) -> None:
        if inputs.baseline_dir is not None:
            self.baseline = load_model(inputs.baseline_dir)  # fails early on a bad one
            if not isinstance(evaluation_of(self.baseline, self.config), ColorizerEvaluation):
                raise ValueError(
                    f"evaluate: a baseline ({inputs.baseline_dir}) is compared with colorizers "
                    f"only; it holds model.family {self.baseline.params.model.family!r}"
                )
            if problem := guide_mismatch(self.model, self.baseline):  # scored on crops only
                log.info("the baseline %s %s: no guided photo scores", inputs.baseline_dir, problem)
            else:
                self.guide = self.baseline
        wanted = self.config.colorizer.photos
        if wanted and inputs.photos_dir is None:
            raise ValueError(
                f"evaluate: eval.colorizer.photos is {wanted}: pass --photos (the raw images)"
            )
        if wanted:
            data = self.model.params.data
            examples = itertools.islice(split_images(data, inputs.photos_dir, "test"), wanted)
            self.photos = [as_rgb(example.image) for example in examples]
            if len(self.photos) < 2:
                raise ValueError(
                    f"evaluate: {inputs.photos_dir} holds {len(self.photos)} test photo(s) of "
                    f"data.source {data.source!r}; eval.colorizer.photos needs at least 2"
                )

    def test_images(self) -> tuple[int, str]:
        return self.config.num_samples, "evaluate (eval.num_samples test images to colorize)"

    def extras(self, sampler: Sampler, drawn: Drawn) -> Extras:
        config = self.config
        conditions = drawn.conditions
        truth = colour(conditions)  # the colour planes (crops may carry the scene's)
        scores = fidelity(drawn.images, truth)
        shown = conditions[spread(len(conditions), config.colorizer.diversity_count)]
        k = config.colorizer.diversity_samples
        samples = sampler.generate(sampler.models, np.repeat(shown, k, axis=0))
        samples = samples.reshape(len(shown), k, *samples.shape[1:])
        scores["diversity_ab"] = ab_diversity(samples)
        baselines = {"gray": gray_images(truth)}
        if sampler.baseline is not None:
            baselines["regression"] = sampler.generate(sampler.baseline, conditions)
        for name, baseline in baselines.items():
            scored = {**sampler.score(baseline), **fidelity(baseline, truth)}
            scores |= {f"{name}_{k}": v for k, v in scored.items() if k != "colourfulness_truth"}
        if self.photos:
            scores |= self.photo_scores()
        flat = torch.from_numpy(samples.reshape(-1, *samples.shape[2:]))
        grid = image_grid(*self.model.panel(to_unit(flat), shown))
        return Extras(grid, self.trajectory(conditions), scores)

    @staticmethod
    def summary(metrics: dict[str, Any], config: EvalConfig) -> list[str]:
        """The model beside its baselines on the test crops, then on whole test photos."""
        name, lines = config.features, []
        for prefix, label in (("", "model"), ("regression_", "regression"), ("gray_", "gray")):
            if f"{prefix}psnr" in metrics:
                lines.append(
                    f"  {label:<10} fid_{name} {metrics[f'{prefix}fid_{name}']:7.3f}  psnr "
                    f"{metrics[f'{prefix}psnr']:5.2f}  ssim {metrics[f'{prefix}ssim']:.3f}  "
                    f"ciede2000 {metrics[f'{prefix}ciede2000']:5.2f} "
                    f"({metrics[f'{prefix}ciede2000_relative']:.2f} of gray's)  right hue "
                    f"{100 * metrics[f'{prefix}hue_accuracy']:3.0f}%  colourfulness "
                    f"{metrics[f'{prefix}colourfulness']:5.1f} (truth "
                    f"{metrics['colourfulness_truth']:.1f})"
                )
        lines.append(
            f"  diversity_ab {metrics['diversity_ab']:.2f} (mean pairwise ab distance of samples)"
        )
        if "photo_hue_accuracy" not in metrics:  # eval.colorizer.photos 0
            return lines
        lines.append(
            f"  whole test photos ({config.colorizer.photos} at most), as the colorize command does:"
        )
        for prefix, label in (
            ("photo_", "command"),
            ("photo_draws_", "draws"),
            ("photo_regression_", "regression"),
        ):
            if f"{prefix}hue_accuracy" in metrics:
                lines.append(
                    f"  {label:<10} fid_colour {metrics[f'{prefix}fid_colour']:7.3f}  ciede2000 "
                    f"{metrics[f'{prefix}ciede2000_relative']:.2f} of gray's  right hue "
                    f"{100 * metrics[f'{prefix}hue_accuracy']:3.0f}%  chroma "
                    f"{metrics[f'{prefix}chroma_ratio']:.2f} of the truth's"
                )
        lines.append(f"  gray       fid_colour {metrics['photo_gray_fid_colour']:7.3f}")
        return lines

    def photo_scores(self) -> dict[str, float]:
        """The held-out photos colorized whole as the colorize command does at its defaults
        (pipeline.photo; the draws seeded by eval.seed), each decoding scored."""
        decoded: dict[str, list[np.ndarray]] = {}
        for rgb in progress_bar(self.photos, desc="colorize test photos", unit="photo"):
            generator = torch.Generator(self.model.device).manual_seed(self.config.seed)
            for name, image in decodings(
                self.model, rgb, self.guide, steps=self.config.steps, generator=generator
            ).items():
                decoded.setdefault(name, []).append(image)
        out = {}
        for name, images in decoded.items():
            prefix = "photo_" if name == "command" else f"photo_{name}_"
            out |= {f"{prefix}{k}": v for k, v in photo_scores(images, self.photos).items()}
        gray = [
            gray_images(rgb.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0) for rgb in self.photos
        ]
        out["photo_gray_fid_colour"] = photo_scores(gray, self.photos)["fid_colour"]
        return out


def class_accuracy(
    classifier: FeatureNet, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """How often FeatureNet's classifier head says c of samples drawn for class c:
    ``class_accuracy`` (the mean over the classes) and ``class_accuracy_<c>`` per class."""
    predicted = classify(classifier, images)
    per_class = {
        f"class_accuracy_{c}": float((predicted[labels == c] == c).mean())
        for c in np.unique(labels)
    }
    return {"class_accuracy": float(np.mean(list(per_class.values()))), **per_class}


def evaluation_of(model: GenerativeModel, config: EvalConfig) -> Evaluation:
    """The evaluation hook of ``model``'s family (its registry entry's ``evaluation``)."""
    return evaluation_class(model.params.model.family)(model, config)
