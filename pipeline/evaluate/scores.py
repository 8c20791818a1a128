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

from pipeline.console import progress_bar
from pipeline.evaluate.frechet import feature_statistics, frechet_distance
from pipeline.io import CorruptFileError, load_verified, save_verified

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
        for start in progress_bar(batches, desc=desc, unit="batch", disable=desc is None):
            batch = np.array(
                images[start : start + batch_size]
            )  # a writable copy of a memmap slice
            out.append(extractor(torch.from_numpy(batch)))
    return torch.cat(out).double()


def array_digest(images: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes: the identity of the pixels actually read."""
    digest = hashlib.sha256(f"{images.dtype}:{images.shape}:".encode())
    for start in range(0, len(images), 1024):  # a memmap is hashed in slices, not copied whole
        digest.update(np.ascontiguousarray(images[start : start + 1024]).data)
    return digest.hexdigest()


def cached_features(
    extractor: ImageFeatures, images: np.ndarray, cache_dir: str | Path
) -> torch.Tensor:
    """``extract`` for real data, cached in ``cache_dir`` by the images' actual bytes and the
    extractor's identity. A cache entry that fails its sha256 or does not hold (N, d) float64
    features of these images is recomputed and replaced, with a warning naming it."""
    key = hashlib.sha256(f"{array_digest(images)}:{extractor.identity}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            features = load_verified(path)
            expected = (len(images), extractor.num_features)
            if not isinstance(features, torch.Tensor) or tuple(features.shape) != expected:
                raise CorruptFileError(f"{path}: does not hold {expected} features")
            if features.dtype != torch.float64 or not torch.isfinite(features).all():
                raise CorruptFileError(f"{path}: features are not finite float64")
            log.info("real-data features from cache %s", path)
            return features
        except CorruptFileError as exc:
            log.warning("recomputing a bad feature cache entry: %s", exc)
    features = extract(extractor, images, desc="real features")
    save_verified(features, path)
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
