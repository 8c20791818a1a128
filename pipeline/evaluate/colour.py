"""Colorization scores: a weight-free colour feature space for FID/KID (``eval.features: colour``),
per-image fidelity to the ground truth, and sample diversity.

``ColourStatistics`` maps an image to statistics of its CIE Lab colours (pipeline.color), so that
the Fréchet distance between two image sets measures how their colours differ and nothing else:

- a soft 2-D histogram of (a*, b*): Gaussian votes (sigma HIST_SIGMA) into a HIST_BINS x HIST_BINS
  grid of centres over [-HIST_RANGE, HIST_RANGE]^2, square-rooted (Hellinger), HIST_BINS^2 dims;
- mean a*, b* and chroma sqrt(a*^2 + b*^2) in each of LIGHTNESS_BANDS bands of L* (which colour
  goes with dark and with light regions), 3 x LIGHTNESS_BANDS dims;
- mean a*, b* in each cell of a GRID x GRID split of the image (where the colours are), 2 GRID^2
  dims; ab statistics are divided by AB_UNIT so that every group has a similar spread.

It needs no weights and is available offline; ``fid_inception`` remains the standard score when the
Inception weights are supplied. Its ordering on real photographs (real < slightly desaturated <
hue-rotated < gray) is a test.

Fidelity (per image against its ground truth, then averaged): PSNR of the RGB images (data range
255; the per-image MSE is floored at MSE_FLOOR = 1/12, the variance of uint8 rounding, so an exact
match scores 10 log10(12 * 255^2) = 58.9 dB instead of infinity), SSIM (torchmetrics, Gaussian
window), mean CIEDE2000 colour difference (Sharma et al. 2005, ``skimage.color.deltaE_ciede2000``),
and colourfulness (Hasler and Suesstrunk 2003) of outputs and
of the truth. Three read the colours as a user sees them: ``hue_accuracy``, the share of truly
coloured pixels (the truth's chroma C*ab > COLOURED_CHROMA) that the output colours with chroma
above MIN_HUE_CHROMA and a hue angle h_ab = atan2(b*, a*) within HUE_TOLERANCE degrees of the
truth's, pooled over all pixels; ``colourfulness_gap``, the truth's mean colourfulness minus the
output's (positive: duller than the truth); ``ciede2000_relative``, mean CIEDE2000 over the gray
image's (the truth's L* with a* = b* = 0): below 1, the colours are closer to the truth than no
colour at all. Diversity: the mean over inputs of the mean pairwise per-pixel ab distance between K
samples of one input (0 for a deterministic model).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from skimage.color import deltaE_ciede2000
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from pipeline.color import colourfulness, grayed, rgb_to_lab
from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.pixels import to_uint8, to_unit

HIST_BINS, HIST_RANGE, HIST_SIGMA = 7, 60.0, 10.0
LIGHTNESS_BANDS = 3
GRID = 2
AB_UNIT = 20.0
MSE_FLOOR = 1 / 12  # uint8 rounding noise: PSNR at most 58.9 dB
COLOURED_CHROMA, MIN_HUE_CHROMA, HUE_TOLERANCE = 15.0, 10.0, 45.0


def to_lab(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (N, 3, H, W) -> L*a*b* float64."""
    return rgb_to_lab(images.double() / 255)


class ColourStatistics(nn.Module):
    """uint8 RGB images (N, 3, H, W) -> (N, num_features) colour statistics (module docstring)."""

    num_features = HIST_BINS**2 + 3 * LIGHTNESS_BANDS + 2 * GRID**2

    def __init__(self) -> None:
        super().__init__()
        centres = torch.linspace(-HIST_RANGE, HIST_RANGE, HIST_BINS, dtype=torch.float64)
        self.register_buffer("centres", torch.cartesian_prod(centres, centres))  # (bins^2, 2)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"colour features need RGB images (N, 3, H, W), got {tuple(images.shape)}"
            )
        lab = to_lab(images)
        L, ab = lab[:, 0].flatten(1), lab[:, 1:].flatten(2).transpose(1, 2)  # (N, P), (N, P, 2)
        votes = torch.exp(-torch.cdist(ab, self.centres[None]).pow(2) / (2 * HIST_SIGMA**2))
        votes = votes / votes.sum(-1, keepdim=True).clamp(min=1e-12)  # (N, P, bins^2)
        histogram = votes.mean(1).sqrt()
        chroma = ab.norm(dim=-1, keepdim=True)
        per_pixel = torch.cat([ab, chroma], -1) / AB_UNIT  # (N, P, 3)
        bands = torch.stack(
            [
                (
                    (L >= 100 * k / LIGHTNESS_BANDS)
                    & (L < 100 * (k + 1) / LIGHTNESS_BANDS + (k + 1 == LIGHTNESS_BANDS))
                ).double()
                for k in range(LIGHTNESS_BANDS)
            ],
            -1,
        )  # (N, P, bands)
        band_means = torch.einsum("npb,npc->nbc", bands, per_pixel) / bands.sum(1)[..., None].clamp(
            min=1
        )
        cells = nn.functional.adaptive_avg_pool2d(lab[:, 1:], GRID) / AB_UNIT  # (N, 2, GRID, GRID)
        return torch.cat([histogram, band_means.flatten(1), cells.flatten(1)], 1)


def gray_images(images: np.ndarray) -> np.ndarray:
    """The "gray" baseline of uint8 RGB images (N, 3, H, W): their own L* with a* = b* = 0."""
    return to_uint8(grayed(to_unit(np.asarray(images)))).numpy()


def hue_accuracy(lab: torch.Tensor, truth: torch.Tensor) -> float:
    """The share of truly coloured pixels of ``truth`` whose hue ``lab`` gets right (module
    docstring); both L*a*b* (N, 3, H, W). NaN when the truth has no coloured pixel."""
    chroma, truth_chroma = lab[:, 1:].norm(dim=1), truth[:, 1:].norm(dim=1)
    error = torch.atan2(lab[:, 2], lab[:, 1]) - torch.atan2(truth[:, 2], truth[:, 1])
    error = torch.remainder(error + torch.pi, 2 * torch.pi) - torch.pi  # (-pi, pi]
    right = (error.abs() <= np.radians(HUE_TOLERANCE)) & (chroma > MIN_HUE_CHROMA)
    coloured = truth_chroma > COLOURED_CHROMA
    return float(right[coloured].double().mean()) if coloured.any() else float("nan")


def fidelity(outputs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean per-image PSNR (dB), SSIM, CIEDE2000 and colourfulness of ``outputs`` against ``truth``
    (both uint8 RGB (N, 3, H, W), image i against image i), the truth's colourfulness, and the
    scores read as a user sees them: hue accuracy, colourfulness gap, CIEDE2000 relative to the
    gray image's (module docstring)."""
    if outputs.shape != truth.shape:
        raise ValueError(f"outputs {outputs.shape} and truth {truth.shape} differ in shape")
    fake, real = torch.from_numpy(np.asarray(outputs)), torch.from_numpy(np.asarray(truth))
    mse = (fake.double() - real.double()).pow(2).flatten(1).mean(1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp(min=MSE_FLOOR))
    ssim = structural_similarity_index_measure(
        fake.double() / 255, real.double() / 255, data_range=1.0, reduction="none"
    )
    lab, truth_lab = to_lab(fake), to_lab(real)
    gray_lab = truth_lab * torch.tensor([1.0, 0.0, 0.0], dtype=truth_lab.dtype).reshape(1, 3, 1, 1)
    delta_e, gray_delta_e = (
        deltaE_ciede2000(
            x.movedim(1, -1).numpy(), truth_lab.movedim(1, -1).numpy(), channel_axis=-1
        )
        for x in (lab, gray_lab)
    )
    colourful = float(colourfulness(fake.double() / 255).mean())
    colourful_truth = float(colourfulness(real.double() / 255).mean())
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "ciede2000": float(delta_e.mean()),
        "ciede2000_relative": float(delta_e.mean() / max(gray_delta_e.mean(), 1e-12)),
        "hue_accuracy": hue_accuracy(lab, truth_lab),
        "colourfulness": colourful,
        "colourfulness_truth": colourful_truth,
        "colourfulness_gap": colourful_truth - colourful,
    }


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean C*ab = sqrt(a*^2 + b*^2) of a uint8 RGB image (H, W, 3)."""
    lab = to_lab(torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None])
    return float(lab[:, 1:].norm(dim=1).mean())


def photo_scores(outputs: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> dict[str, float]:
    """Whole photos colorized (uint8 RGB (H, W, 3), any sizes) against their truths, as a user sees
    them, pooled over the photos: ``ciede2000_relative`` (the sum of the photos' mean CIEDE2000
    over the sum of the gray images': a nearly gray photo, whose gray image is almost exact, does
    not dominate as in a mean of ratios), ``hue_accuracy`` (the mean over the photos that have
    truly coloured pixels), ``chroma_ratio`` (mean C*ab over the truth's, summed over photos),
    ``colourfulness_gap`` (mean), and ``fid_colour``: the Frechet distance of the photos'
    ColourStatistics to the truths' (Heusel et al. 2017, eq. 6; few photos make it noisy and
    biased upwards, so compare it only at the same photo count; NaN for one photo)."""
    if len(outputs) != len(truths) or not outputs:
        raise ValueError(
            f"photo scores need as many outputs as truths, got {len(outputs)}, {len(truths)}"
        )
    rows = [
        fidelity(out.transpose(2, 0, 1)[None], truth.transpose(2, 0, 1)[None])
        for out, truth in zip(outputs, truths, strict=True)
    ]
    ciede = sum(r["ciede2000"] for r in rows)
    gray = sum(r["ciede2000"] / max(r["ciede2000_relative"], 1e-12) for r in rows)
    hues = [r["hue_accuracy"] for r in rows if not np.isnan(r["hue_accuracy"])]
    fid = float("nan")  # one photo has no covariance
    if len(rows) > 1:
        statistics = ColourStatistics()
        real, fake = (
            torch.cat(
                [
                    statistics.image_features(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
                    for x in images
                ]
            )
            for images in (truths, outputs)
        )
        fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    return {
        "ciede2000": ciede / len(rows),
        "ciede2000_relative": ciede / max(gray, 1e-12),
        "hue_accuracy": float(np.mean(hues)) if hues else float("nan"),
        "chroma_ratio": sum(map(mean_chroma, outputs)) / max(sum(map(mean_chroma, truths)), 1e-12),
        "colourfulness_gap": float(np.mean([r["colourfulness_gap"] for r in rows])),
        "fid_colour": fid,
    }


def ab_diversity(samples: np.ndarray) -> float:
    """Mean pairwise per-pixel ab distance (Lab units) between the K samples of each input,
    averaged over inputs: ``samples`` uint8 (n, K, 3, H, W), K >= 2."""
    n, k = samples.shape[:2]
    if k < 2:
        raise ValueError(f"diversity needs at least 2 samples per input, got {k}")
    ab = to_lab(torch.from_numpy(np.asarray(samples)).flatten(0, 1))[:, 1:].reshape(n, k, 2, -1)
    pairs = [
        (ab[:, i] - ab[:, j]).norm(dim=1).mean(-1) for i, j in itertools.combinations(range(k), 2)
    ]
    return float(torch.stack(pairs).mean())
