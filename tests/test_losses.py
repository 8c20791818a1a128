"""The variational-bound terms and the min-SNR weighting against independent references."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence
from torch.testing import assert_close

from pipeline.diffusion.losses import discretized_gaussian_log_likelihood, min_snr_weight, normal_kl


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(100, generator=g, dtype=torch.float64),
        torch.randn(100, generator=g, dtype=torch.float64),
    )
    lv1, lv2 = (
        torch.randn(100, generator=g, dtype=torch.float64),
        torch.randn(100, generator=g, dtype=torch.float64),
    )
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    assert_close(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)
    assert_close(normal_kl(m1, lv1, m1, lv1), torch.zeros(100, dtype=torch.float64))


@pytest.mark.parametrize(
    "mean, log_scale", [(0.0, math.log(0.1)), (0.7, math.log(0.5)), (-0.99, math.log(0.01))]
)
def test_discretized_likelihood_is_a_distribution_over_the_256_bins(mean, log_scale):
    bins = torch.linspace(-1, 1, 256, dtype=torch.float64)  # pixel values 0..255 scaled to [-1, 1]
    logp = discretized_gaussian_log_likelihood(
        bins, torch.full_like(bins, mean), torch.full_like(bins, log_scale)
    )
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # Among the inner (finite-width) bins, the one nearest the mean carries the most mass.
    assert bins[1:-1][logp[1:-1].argmax()].item() == pytest.approx(mean, abs=1 / 255 + 1e-9)


def test_discretized_likelihood_inner_bin_is_cdf_difference():
    x, mean, scale = (
        torch.tensor([0.2], dtype=torch.float64),
        torch.tensor([0.25], dtype=torch.float64),
        0.05,
    )
    dist = Normal(mean, scale)
    expected = torch.log(dist.cdf(x + 1 / 255) - dist.cdf(x - 1 / 255))
    got = discretized_gaussian_log_likelihood(x, mean, torch.full_like(x, math.log(scale)))
    assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_min_snr_weights_equal_clipped_snr_in_x0_units():
    snr = torch.tensor([0.01, 1.0, 5.0, 100.0], dtype=torch.float64)
    gamma = 5.0
    clipped = torch.tensor([0.01, 1.0, 5.0, 5.0], dtype=torch.float64)
    # An eps MSE is SNR x an x0 MSE; a v MSE is (SNR + 1) x an x0 MSE.
    assert_close(min_snr_weight(snr, gamma, "epsilon") * snr, clipped)
    assert_close(min_snr_weight(snr, gamma, "v_prediction") * (snr + 1), clipped)
    assert_close(min_snr_weight(snr, gamma, "sample"), clipped)
    with pytest.raises(
        ValueError, match="unknown prediction_type 'noise'; allowed: epsilon, sample, v_prediction"
    ):
        min_snr_weight(snr, gamma, "noise")
