"""The pictures of a trained model beyond its sample grid: the denoising trajectory of a diffusion
family, latent interpolations of a one-shot generator (VAE, GAN), and the classifier-free guidance
strip and trade-off plot of a class-conditional model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import EvalConfig
from pipeline.io import atomic_path
from pipeline.methods.base import (
    GenerativeModel,
    LatentModel,
    References,
    Sampling,
    balanced_labels,
)
from pipeline.methods.step import resolve_precision
from pipeline.reports.grid import image_grid

GIF_FRAMES = 25  # frames of a GIF (evenly spaced over the trajectory or the interpolation)
GRID_STEPS = 8  # interpolation points per row of the interpolation grid


def trajectory_frames(
    model: GenerativeModel, config: EvalConfig, references: References
) -> list[np.ndarray]:
    """Grids of ``trajectory_count`` samples at GIF_FRAMES points from the start (x_T) to the
    sample (same sampler), drawn from the model's ``conditions`` (a colorizer: of
    ``references``, its colours settling onto each image's fixed lightness; a class-conditional
    model: the classes in turn)."""
    conditions = model.conditions(config.trajectory_count, references)
    n = config.trajectory_count if conditions is None else len(conditions)
    generator = torch.Generator(model.device).manual_seed(config.seed)
    with torch.no_grad():
        states = list(
            model.sample_progressive(
                n,
                generator=generator,
                how=Sampling.of(config),
                cond=model.cond(conditions),
            )
        )
    keep = np.unique(
        np.linspace(0, len(states) - 1, min(GIF_FRAMES, len(states))).round().astype(int)
    )
    return [image_grid(states[i].clamp(-1, 1), nrow=n) for i in keep]


def slerp(a: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (lam = 0) to ``b`` (lam = 1), row-wise (Shoemake 1985;
    for latents, White 2016). The seed's linear w* = lam a + (1 - lam) b cuts through the inside of
    the sphere of radius sqrt(d) on which Gaussian draws concentrate: its midpoint between two
    independent draws has norm about sqrt(d / 2), a latent the generator almost never saw. slerp
    follows the great circle, so every point has a typical norm; at the ends the two agree."""
    a_unit, b_unit = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_unit * b_unit).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    sin = torch.sin(omega)
    return (torch.sin((1 - lam) * omega) * a + torch.sin(lam * omega) * b) / sin


def interpolation(model: LatentModel, config: EvalConfig) -> tuple[list[np.ndarray], np.ndarray]:
    """``interpolation_pairs`` pairs of latents (seeded by eval.seed) slerped from one to the
    other: GIF frames (each a row of every pair at one lam) and a grid (a row per pair,
    GRID_STEPS points from a to b)."""
    generator = torch.Generator(model.device).manual_seed(config.seed)
    pairs = config.latent.interpolation_pairs
    a, b = model.latents(pairs, generator), model.latents(pairs, generator)

    def decoded(lams: Sequence[float]) -> torch.Tensor:  # (len(lams), pairs, C, H, W)
        with torch.no_grad():
            return torch.stack([model.decode(slerp(a, b, lam)).clamp(-1, 1) for lam in lams])

    frames = [image_grid(row, nrow=pairs) for row in decoded(np.linspace(0, 1, GIF_FRAMES))]
    grid = decoded(np.linspace(0, 1, GRID_STEPS)).transpose(0, 1).flatten(0, 1)
    return frames, image_grid(grid, nrow=GRID_STEPS)


def guidance_strip(model: GenerativeModel, config: EvalConfig) -> np.ndarray:
    """One sample per class (columns) at every w of ``eval.guided.guidance_sweep`` (rows), from the
    same noise in every row: how guidance trades variety for class fidelity."""
    labels = balanced_labels(model.num_classes, model.num_classes).to(model.device)
    rows = []
    for w in config.guided.guidance_sweep:
        generator = torch.Generator(model.device).manual_seed(config.seed)
        rows.append(
            model.sample(
                len(labels),
                precision=resolve_precision(config.precision, model.device),
                generator=generator,
                how=dataclasses.replace(Sampling.of(config), guidance=w),
                cond=labels,
            )
        )
    return image_grid(torch.cat(rows), nrow=model.num_classes)


def plot_guidance(table: pd.DataFrame, metric: str, path: str | Path) -> None:
    """FID against class accuracy, one point per guidance scale w (``table``: columns
    guidance_scale, ``metric``, class_accuracy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(table["class_accuracy"], table[metric], "-o", color="C0")
    for row in table.to_dict("records"):
        ax.annotate(f"w={row['guidance_scale']:g}", (row["class_accuracy"], row[metric]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)  # fmt: skip
    ax.set_xlabel("class accuracy of the samples (FeatureNet, higher is better)")
    ax.set_ylabel(f"{metric} (lower is better)")
    ax.set_title("classifier-free guidance: quality vs class fidelity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
