"""frechet_distance against a scipy sqrtm float64 reference and closed forms."""

import numpy as np
import pytest
import scipy.linalg
import torch

from pipeline.evaluate.frechet import feature_statistics, frechet_distance


def random_covariance(rng, d, rank=None):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def scipy_reference(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(
        ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)
    )


@pytest.mark.parametrize("d", [64, 512])
def test_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
    expected = scipy_reference(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_commuting_covariances_closed_form():
    # diagonal covariances commute: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 32), rng.uniform(0.1, 3, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_symmetric_and_zero_for_identical_sets():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16)) * 1.5 + 0.3
    (mx, sx), (my, sy) = feature_statistics(x), feature_statistics(y)
    assert frechet_distance(mx, sx, my, sy) == pytest.approx(
        frechet_distance(my, sy, mx, sx), rel=1e-10
    )
    assert frechet_distance(mx, sx, mx, sx) == pytest.approx(0, abs=1e-9)
    singular = random_covariance(rng, 16, rank=4)  # rank-deficient, as with few samples
    assert frechet_distance(mx, singular, mx, singular) == pytest.approx(0, abs=1e-7)


def test_statistics_are_float64_mean_and_unbiased_covariance():
    x = torch.randn(50, 3)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == torch.float64
    torch.testing.assert_close(sigma, torch.from_numpy(np.cov(x.double().numpy().T)))
    with pytest.raises(ValueError, match=r"need \(N, d\) features with N >= 2, got shape \(1, 3\)"):
        feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
