"""FID and KID of generated images against real ones, in a named feature space.

Features are extracted once per image set by the backend's module (real-data features are cached,
keyed by the images' sha256 and the extractor's identity). The FID reported is our float64
``frechet_distance``; torchmetrics' FrechetInceptionDistance and KernelInceptionDistance are fed the
same features through a pass-through feature module, giving KID and a cross-check of FID.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from tqdm import tqdm

from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.io import atomic_path

log = logging.getLogger(__name__)


class ImageFeatures(nn.Module):
    """uint8 images (N, C, H, W) -> (N, d) features: ``net.image_features`` (each backend's network
    does its own input pipeline). ``identity`` names the extractor and its weights
    (``backend:sha256``) for caches and reports."""

    def __init__(self, net: nn.Module, identity: str) -> None:
        super().__init__()
        self.net, self.identity, self.num_features = net.eval(), identity, net.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.image_features(images)


class _Precomputed(nn.Module):
    """The torchmetrics feature module for features extracted already: the identity."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def extract(
    extractor: ImageFeatures,
    images: np.ndarray,
    batch_size: int = 250,
    desc: str | None = "features",
) -> torch.Tensor:
    """float64 (N, d) features of uint8 images (N, C, H, W), in batches with a progress bar
    (none when ``desc`` is None)."""
    out = []
    batches = range(0, len(images), batch_size)
    with torch.no_grad():
        for start in tqdm(batches, desc=desc, unit="batch", disable=desc is None):
            out.append(extractor(torch.from_numpy(np.asarray(images[start : start + batch_size]))))
    return torch.cat(out).double()


def cached_features(
    extractor: ImageFeatures, images: np.ndarray, images_sha256: str, cache_dir: str | Path
) -> torch.Tensor:
    """``extract`` for real data, cached in ``cache_dir`` by (images sha256, extractor identity)."""
    key = hashlib.sha256(f"{images_sha256}:{extractor.identity}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        log.info("real-data features from cache %s", path)
        return torch.load(path, weights_only=True)
    features = extract(extractor, images, desc="real features")
    with atomic_path(path) as tmp:
        torch.save(features, tmp)
    return features


def scores(real: torch.Tensor, fake: torch.Tensor, kid_subset_size: int = 100) -> dict[str, float]:
    """fid (ours, float64), fid_torchmetrics (the same statistic by torchmetrics), kid and kid_std
    (torchmetrics, 100 subsets of min(kid_subset_size, N_real, N_fake) images, seeded)."""
    d = real.shape[1]
    fid = frechet_distance(*feature_statistics(real), *feature_statistics(fake))
    reference = FrechetInceptionDistance(feature=_Precomputed(d))
    subset = min(kid_subset_size, len(real), len(fake))
    kid = KernelInceptionDistance(feature=_Precomputed(d), subset_size=subset)
    for metric in (reference, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # KID's random subsets: the same for the same features
        kid_mean, kid_std = kid.compute()
    return {
        "fid": fid,
        "fid_torchmetrics": float(reference.compute()),
        "kid": float(kid_mean),
        "kid_std": float(kid_std),
    }
