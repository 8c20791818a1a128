"""Beta schedules against their closed forms, their monotonicity, the zero-terminal-SNR rescale and
every documented error of make_betas."""

import math

import pytest
import torch
from torch.testing import assert_close

from pipeline.diffusion import BETA_SCHEDULES, make_betas

T = 1000


def test_linear_is_ddpm_linspace():
    betas = make_betas("linear", T, 1e-4, 0.02)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    t = torch.arange(T, dtype=torch.float64)
    assert_close(betas, 1e-4 + t * (0.02 - 1e-4) / (T - 1), rtol=0, atol=1e-15)


def test_scaled_linear_is_square_of_linspace_of_roots():
    betas = make_betas("scaled_linear", T, 1e-4, 0.02)
    t = torch.arange(T, dtype=torch.float64)
    roots = 0.01 + t * (math.sqrt(0.02) - 0.01) / (T - 1)
    assert_close(betas, roots**2, rtol=1e-12, atol=0)
    # Between linear's betas at the ends, below them in the middle (square of a linear ramp).
    assert betas[T // 2] < make_betas("linear", T)[T // 2]


def test_cosine_alpha_bar_matches_improved_ddpm_eq17():
    betas = make_betas("cosine", T)
    alpha_bar = torch.cumprod(1 - betas, 0)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 1, 10, 500, 900):
        # alpha_bar_t = f((t + 1) / T) / f(0): the product of ratios telescopes (no clipping here)
        assert alpha_bar[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-12)
    assert betas.max().item() == pytest.approx(0.999)  # clipped at the end
    assert betas[-1].item() == pytest.approx(0.999)


def test_cosine_ignores_beta_range():
    assert torch.equal(make_betas("cosine", 50, 1e-4, 0.02), make_betas("cosine", 50, 1e-3, 0.5))


def test_sigmoid_is_geodiff_definition():
    betas = make_betas("sigmoid", 1001, 1e-4, 0.02)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert betas[0].item() == pytest.approx(sig(-6) * (0.02 - 1e-4) + 1e-4, rel=1e-12)
    assert betas[500].item() == pytest.approx((1e-4 + 0.02) / 2, rel=1e-12)  # sigmoid(0) = 1/2
    assert betas[-1].item() == pytest.approx(sig(6) * (0.02 - 1e-4) + 1e-4, rel=1e-12)


@pytest.mark.parametrize("schedule", sorted(BETA_SCHEDULES))
@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_alpha_bar_strictly_decreasing_and_betas_in_range(schedule, zero_terminal_snr):
    betas = make_betas(schedule, T, zero_terminal_snr=zero_terminal_snr)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()
    assert (betas > 0).all() and (betas <= 1).all()


@pytest.mark.parametrize("schedule", sorted(BETA_SCHEDULES))
def test_zero_terminal_snr_zeroes_last_alpha_bar_and_keeps_first(schedule):
    plain = torch.cumprod(1 - make_betas(schedule, T), 0)
    rescaled = torch.cumprod(1 - make_betas(schedule, T, zero_terminal_snr=True), 0)
    assert rescaled[-1].item() == 0.0
    assert rescaled[0].item() == pytest.approx(plain[0].item(), rel=1e-12)
    assert plain[-1].item() > 0  # the plain schedules do leave signal at T-1 (the flaw fixed here)
    # Lin et al. Algorithm 1: sqrt(alpha_bar) is an affine map of the original sqrt(alpha_bar).
    a, b = plain.sqrt(), rescaled.sqrt()
    expected = (a - a[-1]) * a[0] / (a[0] - a[-1])
    assert_close(b, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(schedule="quadratic", timesteps=10),
            "unknown beta schedule 'quadratic'; allowed: cosine, linear, scaled_linear, sigmoid",
        ),
        (dict(schedule="linear", timesteps=0), "timesteps must be an integer >= 1, got 0"),
        (dict(schedule="linear", timesteps=10.0), "timesteps must be an integer >= 1, got 10.0"),
        (
            dict(schedule="linear", timesteps=10, beta_start=0.0),
            "beta_start must be a finite number > 0, got 0.0",
        ),
        (
            dict(schedule="linear", timesteps=10, beta_start=-1e-4),
            "beta_start must be a finite number > 0, got -0.0001",
        ),
        (
            dict(schedule="linear", timesteps=10, beta_end=1.0),
            "beta_end must be a finite number < 1, got 1.0",
        ),
        (
            dict(schedule="linear", timesteps=10, beta_start=0.1, beta_end=0.01),
            "beta_start must be <= beta_end, got beta_start=0.1 > beta_end=0.01",
        ),
        (
            dict(schedule="cosine", timesteps=10, beta_end=2.0),
            "beta_end must be a finite number < 1, got 2.0",
        ),
        (
            dict(schedule="linear", timesteps=1, zero_terminal_snr=True),
            "zero_terminal_snr needs timesteps >= 2, got 1",
        ),
    ],
)
def test_make_betas_errors_name_value_and_allowed(kwargs, message):
    with pytest.raises(ValueError) as info:
        make_betas(**kwargs)
    assert str(info.value) == message


def test_single_timestep_is_allowed():
    for schedule in BETA_SCHEDULES:
        assert make_betas(schedule, 1).shape == (1,)
