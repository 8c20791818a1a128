"""The Frechet distance between two Gaussians, in float64: the number behind FID.

d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})   (Heusel et al. 2017)

Tr((sigma1 sigma2)^{1/2}) is computed without a general matrix square root: with S = sigma1^{1/2}
(symmetric, by eigendecomposition), sigma1 sigma2 is similar to S sigma2 S, which is symmetric
positive semi-definite, so the trace is the sum of the square roots of its (clipped) eigenvalues.
"""

from __future__ import annotations

import numpy as np
import torch


def _float64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double().cpu()


def feature_statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma) of (N, d) features in float64; sigma is the unbiased covariance (N - 1)."""
    x = _float64(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N, d) features with N >= 2, got shape {tuple(x.shape)}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(sigma: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped to 0)."""
    eigenvalues, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 between N(mu1, sigma1) and N(mu2, sigma2), computed in float64 (see module docstring)."""
    mu1, mu2, sigma1, sigma2 = map(_float64, (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu1 {tuple(mu1.shape)}, sigma1 {tuple(sigma1.shape)}, "
            f"mu2 {tuple(mu2.shape)}, sigma2 {tuple(sigma2.shape)}"
        )
    root = _sqrt_psd(sigma1)
    middle = root @ sigma2 @ root
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return float(distance.clamp(min=0))
