"""GaussianDiffusion against the seed formulas (shared/seeds: forward process, posterior, sampling)
and against independent derivations: Gaussian conditioning for the posterior, large-sample
statistics for the forward process."""

import math

import pytest
import torch
from scipy import stats
from torch import nn
from torch.testing import assert_close

from pipeline.diffusion import SAMPLERS, GaussianDiffusion, make_betas

T = 1000


def diffusion(**kwargs) -> GaussianDiffusion:
    schedule = kwargs.pop("schedule", "linear")
    zero = kwargs.pop("zero_terminal_snr", False)
    return GaussianDiffusion(
        make_betas(schedule, kwargs.pop("timesteps", T), zero_terminal_snr=zero), **kwargs
    )


def seed_coefficients(betas: torch.Tensor):
    """The seed's definitions, written out independently of the library (float64)."""
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, 0)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return alphas, alpha_bar, alpha_bar_prev


class Constant(nn.Module):
    """A 'network' that returns a fixed output, to test steps in isolation."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, x, t, cond=None):
        return self.output.expand_as(x) if self.output.shape[1] == x.shape[1] else self.output


# ---------------------------------------------------------------- forward process
@pytest.mark.parametrize("t", [0, 10, 250, 999])
def test_q_sample_statistics_match_closed_form(t):
    d = diffusion()
    g = torch.Generator().manual_seed(t)
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.6, dtype=torch.float64)
    xt = d.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64)).flatten()
    _, alpha_bar, _ = seed_coefficients(d.betas)
    mean, var = math.sqrt(alpha_bar[t]) * 0.6, 1 - alpha_bar[t].item()
    assert xt.mean().item() == pytest.approx(mean, abs=5 * math.sqrt(var / n))
    assert xt.var().item() == pytest.approx(var, rel=5 * math.sqrt(2 / n))


def test_q_sample_composed_step_by_step_matches_closed_form_in_distribution():
    """x_t built from x_{t-1} = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps (seed step 1) has the
    law of the closed form (seed step 2)."""
    d = diffusion(schedule="cosine", timesteps=200)
    g = torch.Generator().manual_seed(1)
    n, t_end = 50_000, 120
    x0 = torch.linspace(-1, 1, n, dtype=torch.float64).reshape(n, 1, 1, 1)
    x = x0.clone()
    for t in range(t_end + 1):
        x = (1 - d.betas[t]).sqrt() * x + d.betas[t].sqrt() * torch.randn(
            x.shape, generator=g, dtype=torch.float64
        )
    closed = d.q_sample(x0, t_end, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    # Same conditional law given x0: the standardised residuals are both N(0, 1).
    mean = d.sqrt_alpha_bar[t_end] * x0
    std = d.sqrt_one_minus_alpha_bar[t_end]
    z_steps, z_closed = ((x - mean) / std).flatten(), ((closed - mean) / std).flatten()
    assert stats.ks_2samp(z_steps.numpy(), z_closed.numpy()).pvalue > 1e-3
    assert stats.kstest(z_steps.numpy(), "norm").pvalue > 1e-3
    assert z_steps.mean().abs().item() < 5 / math.sqrt(n)


# ---------------------------------------------------------------- posterior
def test_q_posterior_equals_seed_formulas():
    d = diffusion(schedule="scaled_linear")
    alphas, alpha_bar, alpha_bar_prev = seed_coefficients(d.betas)
    g = torch.Generator().manual_seed(2)
    t = torch.tensor([0, 1, 37, 500, 999])
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    mean, var = d.q_posterior(xt, t, x0)
    c0 = (alpha_bar_prev.sqrt() * d.betas / (1 - alpha_bar))[t].reshape(-1, 1, 1, 1)
    ct = (alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar))[t].reshape(-1, 1, 1, 1)
    assert_close(mean, c0 * x0 + ct * xt, rtol=1e-12, atol=1e-12)
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * d.betas
    assert_close(var.flatten(), beta_tilde[t], rtol=1e-12, atol=0)
    assert var[0].item() == 0.0  # beta~_0 = 0: x_{-1} = x_0 is known given x_0


@pytest.mark.parametrize("t", [1, 100, 998])
def test_q_posterior_is_gaussian_conditioning_of_the_joint(t):
    """Independent derivation: (x_{t-1}, x_t) | x_0 is jointly Gaussian; condition on x_t."""
    d = diffusion()
    _, alpha_bar, _ = seed_coefficients(d.betas)
    x0 = torch.tensor([0.3], dtype=torch.float64).reshape(1, 1, 1, 1)
    xt = torch.tensor([-0.8], dtype=torch.float64).reshape(1, 1, 1, 1)
    var_prev, var_t = 1 - alpha_bar[t - 1], 1 - alpha_bar[t]
    cov = (1 - d.betas[t]).sqrt() * var_prev  # Cov(x_{t-1}, x_t | x0)
    mean_expected = alpha_bar[t - 1].sqrt() * x0 + cov / var_t * (xt - alpha_bar[t].sqrt() * x0)
    var_expected = var_prev - cov**2 / var_t
    mean, var = d.q_posterior(xt, t, x0)
    assert_close(mean, mean_expected, rtol=1e-10, atol=1e-12)
    assert var.item() == pytest.approx(var_expected.item(), rel=1e-10)


def test_eps_parameterised_mean_equals_x0_parameterised_mean():
    """Seed: mu = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) = mu~(x_t, x0(eps))."""
    d = diffusion(schedule="sigmoid")
    g = torch.Generator().manual_seed(3)
    t = torch.tensor([1, 5, 300, 999])
    xt = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    a = (1 - d.betas[t]).reshape(-1, 1, 1, 1)
    ab = d.alpha_bar[t].reshape(-1, 1, 1, 1)
    eps_mean = (xt - d.betas[t].reshape(-1, 1, 1, 1) / (1 - ab).sqrt() * eps) / a.sqrt()
    x0_mean, _ = d.q_posterior(xt, t, d.x0_from_eps(xt, t, eps))
    assert_close(x0_mean, eps_mean, rtol=1e-9, atol=1e-10)
    # And p_mean_variance (no clipping) is that mean for an epsilon network.
    out = d.p_mean_variance(eps, t, xt, clip_denoised=False)
    assert_close(out.mean, eps_mean, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- parameterisations
@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_eps_x0_v_conversions_round_trip(zero_terminal_snr):
    d = diffusion(
        schedule="cosine", zero_terminal_snr=zero_terminal_snr, prediction_type="v_prediction"
    )
    g = torch.Generator().manual_seed(4)
    t = torch.tensor([0, 1, 500, 998, 999])
    x0 = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64).clamp(-1, 1)
    eps = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    xt = d.q_sample(x0, t, eps)
    v = d.v_from_x0_eps(x0, t, eps)
    x0_v, eps_v = d.x0_eps_from_v(xt, t, v)
    assert_close(x0_v, x0, rtol=1e-9, atol=1e-9)
    assert_close(eps_v, eps, rtol=1e-9, atol=1e-9)
    assert_close(d.eps_from_x0(xt, t, x0), eps, rtol=1e-7, atol=1e-7)
    if not zero_terminal_snr:  # eps -> x0 divides by sqrt(alpha_bar), 0 at T-1 with zero SNR
        assert_close(d.x0_from_eps(xt, t, eps), x0, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_pred_x0_eps_inverts_the_training_target(prediction_type):
    d = diffusion(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([3, 400, 900])
    x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    xt = d.q_sample(x0, t, eps)
    pred_x0, pred_eps = d.pred_x0_eps(d.training_target(x0, t, eps), t, xt)
    assert_close(pred_x0, x0, rtol=1e-6, atol=1e-6)
    assert_close(pred_eps, eps, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- reverse steps
def test_p_step_is_deterministic_given_noise_and_adds_no_noise_at_t0():
    d = diffusion()
    g = torch.Generator().manual_seed(6)
    xt, out = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    z1, z2 = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    assert torch.equal(d.p_step(out, 5, xt, z1).prev_sample, d.p_step(out, 5, xt, z1).prev_sample)
    assert not torch.allclose(
        d.p_step(out, 5, xt, z1).prev_sample, d.p_step(out, 5, xt, z2).prev_sample
    )
    assert torch.equal(d.p_step(out, 0, xt, z1).prev_sample, d.p_step(out, 0, xt, z2).prev_sample)
    # Mixed batch: only the element at t = 0 ignores the noise.
    t = torch.tensor([0, 7])
    diff = d.p_step(out, t, xt, z1).prev_sample - d.p_step(out, t, xt, z2).prev_sample
    assert diff[0].abs().max() == 0 and diff[1].abs().max() > 0


@pytest.mark.parametrize(
    "variance_type, expected", [("fixed_small", "beta_tilde"), ("fixed_large", "betas")]
)
def test_p_step_noise_scale_is_the_fixed_variance(variance_type, expected):
    d = diffusion(variance_type=variance_type)
    xt, out, z = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    t = 500
    sigma = (
        d.p_step(out, t, xt, z, clip_denoised=False).prev_sample
        - d.p_step(out, t, xt, 0 * z, clip_denoised=False).prev_sample
    )
    assert sigma.flatten()[0].item() == pytest.approx(
        getattr(d, expected)[t].sqrt().item(), rel=1e-6
    )


def test_learned_range_interpolates_log_variance_between_beta_tilde_and_beta():
    d = diffusion(variance_type="learned_range", w_vlb=0.001)
    xt = torch.zeros(1, 1, 2, 2)
    t = 300
    for v, expected in (
        (-1.0, d.beta_tilde[t]),
        (1.0, d.betas[t]),
        (0.0, (d.beta_tilde[t] * d.betas[t]).sqrt()),
    ):
        out = torch.cat([torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), v)], dim=1)
        log_var = d.p_mean_variance(out, t, xt).log_variance
        assert log_var.exp().flatten()[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_ddim_eta1_full_steps_has_ddpm_posterior_variance_and_mean():
    d = diffusion(schedule="cosine")
    g = torch.Generator().manual_seed(7)
    t = torch.tensor([1, 10, 500, 999])
    xt, out = torch.randn(4, 1, 4, 4, generator=g), torch.randn(4, 1, 4, 4, generator=g)
    z = torch.randn(4, 1, 4, 4, generator=g)
    sigma = d.ddim_sigma(t, t - 1, 1.0, xt.double()).flatten()
    assert_close(sigma**2, d.beta_tilde[t], rtol=1e-10, atol=1e-14)
    with_noise = d.ddim_step(out, t, t - 1, xt, eta=1.0, noise=z, clip_denoised=False).prev_sample
    without = d.ddim_step(
        out, t, t - 1, xt, eta=1.0, noise=torch.zeros_like(z), clip_denoised=False
    ).prev_sample
    assert_close(
        with_noise - without,
        d.beta_tilde[t].sqrt().float().reshape(-1, 1, 1, 1) * z,
        rtol=1e-4,
        atol=1e-5,
    )
    ddpm_mean = d.p_mean_variance(out, t, xt, clip_denoised=False).mean
    assert_close(without, ddpm_mean, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_is_deterministic_and_last_step_returns_pred_x0():
    d = diffusion()
    g = torch.Generator().manual_seed(8)
    xt, out = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    a = d.ddim_step(
        out, 600, 400, xt, eta=0.0, noise=torch.randn(2, 1, 4, 4, generator=g)
    ).prev_sample
    b = d.ddim_step(
        out, 600, 400, xt, eta=0.0, noise=torch.randn(2, 1, 4, 4, generator=g)
    ).prev_sample
    assert torch.equal(a, b)
    last = d.ddim_step(out, 20, -1, xt, eta=1.0, noise=torch.randn(2, 1, 4, 4, generator=g))
    assert_close(last.prev_sample, d.pred_x0_eps(out, 20, xt)[0].clamp(-1, 1), rtol=1e-5, atol=1e-5)
    assert torch.equal(last.pred_x0, d.pred_x0_eps(out, 20, xt)[0].clamp(-1, 1))


# ---------------------------------------------------------------- sampling
def test_sampling_timesteps_are_descending_and_cover_the_range():
    d = diffusion()
    ts = d.sampling_timesteps(50)
    assert ts[0] == T - 1 and ts[-1] == 0 and len(ts) == 50
    assert (ts[1:] < ts[:-1]).all()
    assert d.sampling_timesteps(1).tolist() == [T - 1]
    assert torch.equal(d.sampling_timesteps(), torch.arange(T - 1, -1, -1))
    for bad in (0, T + 1, 2.5):
        with pytest.raises(
            ValueError, match=f"steps must be an integer in \\[1, {T}\\], got {bad}"
        ):
            d.sampling_timesteps(bad)


def test_respacing_all_timesteps_is_the_identity_and_keeps_alpha_bar():
    d = diffusion(schedule="cosine")
    assert_close(d.respaced(d.sampling_timesteps()).betas, d.betas, rtol=1e-12, atol=1e-15)
    ts = d.sampling_timesteps(25)
    sub = d.respaced(ts)
    assert_close(sub.alpha_bar, d.alpha_bar[ts.flip(0)], rtol=1e-9, atol=0)  # cumprod round-off


@pytest.mark.parametrize(
    "sampler, eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0), ("dpmpp_2m", 0.0)]
)
def test_sample_is_seeded_and_uses_the_requested_steps(sampler, eta):
    d = diffusion(timesteps=100)
    calls = []

    class Recorder(nn.Module):
        def forward(self, x, t):
            calls.append(t[0].item())
            return torch.zeros_like(x)

    gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = d.sample(Recorder(), (2, 1, 4, 4), steps=10, sampler=sampler, eta=eta, generator=gen(0))
    assert calls == SAMPLERS[sampler].spacing(d, 10).tolist()  # each sampler's timesteps
    assert calls == d.sampling_timesteps(10).tolist() or sampler == "dpmpp_2m"
    b = d.sample(Recorder(), (2, 1, 4, 4), steps=10, sampler=sampler, eta=eta, generator=gen(0))
    c = d.sample(Recorder(), (2, 1, 4, 4), steps=10, sampler=sampler, eta=eta, generator=gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 1, 4, 4) and a.abs().max() <= 1


class GaussianOracle(nn.Module):
    """The exact epsilon predictor for data x_0 ~ N(0, s^2 I): E[x_0 | x_t] = sqrt(a) s^2 /
    (a s^2 + 1 - a) x_t (Gaussian conditioning, a = alpha_bar_t), eps from eq. 4."""

    def __init__(self, d: GaussianDiffusion, s: float):
        super().__init__()
        self.alpha_bar, self.s2 = d.alpha_bar, s * s

    def forward(self, x, t):
        a = self.alpha_bar[t].reshape(-1, 1, 1, 1).float()
        x0 = a.sqrt() * self.s2 / (a * self.s2 + 1 - a) * x
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


def test_dpm_solver_pp_2m_follows_the_probability_flow_ode_closer_than_ddim_in_few_steps():
    """With the exact x_0 predictor of Gaussian data N(0, s^2 I), DDIM (eta 0) and
    DPM-Solver++(2M) solve the same probability-flow ODE, whose exact solution is known: the flow
    keeps x_t / sqrt(alpha_bar_t s^2 + 1 - alpha_bar_t) constant, so x_0 = s x_T / sqrt(alpha_bar_T
    s^2 + 1 - alpha_bar_T). At 10 and 20 steps the second-order solver on its lambda-spaced
    timesteps lands several times closer (Lu et al. 2022: its point)."""
    d = diffusion(clip_denoised=False)
    s = 0.5
    oracle, shape = GaussianOracle(d, s), (256, 1, 4, 4)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    a_T = d.alpha_bar[-1].item()
    exact = s * x_T / math.sqrt(a_T * s * s + 1 - a_T)

    def error(sampler: str, steps: int) -> float:
        generator = torch.Generator().manual_seed(0)  # the same x_T
        x_0 = d.sample(oracle, shape, steps=steps, sampler=sampler, generator=generator)
        return (x_0 - exact).pow(2).mean().sqrt().item()

    for steps in (10, 20):
        assert error("dpmpp_2m", steps) < 0.25 * error("ddim", steps), steps
    assert error("dpmpp_2m", 1000) < 1e-3 < error("ddim", 1000)  # second order against first


def test_dpm_solver_pp_2m_spaces_its_steps_evenly_in_log_snr():
    from pipeline.diffusion.samplers import DPMSolverPP2M, half_log_snr

    d = diffusion()
    for steps in (1, 2, 10, 20, 999, 1000):
        ts = DPMSolverPP2M.spacing(d, steps)
        assert len(ts) == steps and ts[0] == T - 1 and bool((ts[:-1] > ts[1:]).all())
        assert steps == 1 or ts[-1] == 0
    lam = half_log_snr(d)[DPMSolverPP2M.spacing(d, 10)]
    gaps = lam[1:] - lam[:-1]
    assert gaps.std() < 0.1 * gaps.mean()  # even in lambda (up to rounding to timesteps)


def test_sample_passes_cond_to_the_model():
    d = diffusion(timesteps=20)
    seen = []

    class Conditional(nn.Module):
        def forward(self, x, t, cond):
            seen.append(cond)
            return torch.zeros_like(x)

    cond = torch.ones(1, 1, 4, 4)
    d.sample(Conditional(), (1, 3, 4, 4), steps=3, sampler="ddim", cond=cond)
    assert len(seen) == 3 and all(c is cond for c in seen)


# ---------------------------------------------------------------- training loss
class Oracle(nn.Module):
    """Returns the exact training target for a known (x0, noise): the loss must be 0."""

    def __init__(self, d, x0, noise):
        super().__init__()
        self.d, self.x0, self.noise = d, x0, noise

    def forward(self, x, t):
        return self.d.training_target(self.x0, t, self.noise)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_training_loss_is_zero_for_the_oracle_and_positive_otherwise(prediction_type):
    d = diffusion(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(9)
    x0, noise = torch.rand(4, 1, 4, 4, generator=g) * 2 - 1, torch.randn(4, 1, 4, 4, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    assert d.training_loss(Oracle(d, x0, noise), x0, t=t, noise=noise).item() == pytest.approx(
        0, abs=1e-10
    )
    zero = Constant(torch.zeros(1, 1, 1, 1))
    expected = ((d.training_target(x0, t, noise)) ** 2).mean()
    assert d.training_loss(zero, x0, t=t, noise=noise).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_min_snr_loss_is_clipped_snr_times_x0_error(prediction_type):
    gamma = 5.0
    d = diffusion(prediction_type=prediction_type, min_snr_gamma=gamma)
    g = torch.Generator().manual_seed(10)
    x0, noise = torch.rand(4, 1, 4, 4, generator=g) * 2 - 1, torch.randn(4, 1, 4, 4, generator=g)
    output = torch.randn(4, 1, 4, 4, generator=g)
    t = torch.tensor([2, 50, 300, 900])
    loss = d.training_loss(Constant(output), x0, t=t, noise=noise)
    pred_x0, _ = d.pred_x0_eps(output, t, d.q_sample(x0, t, noise))
    x0_err = ((pred_x0 - x0) ** 2).mean(dim=(1, 2, 3))
    expected = (d.snr[t].clamp(max=gamma).float() * x0_err).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_vlb_is_zero_for_the_true_posterior_and_trains_only_the_variance():
    d = diffusion(variance_type="learned_range", w_vlb=0.001, timesteps=100)
    g = torch.Generator().manual_seed(11)
    x0, noise = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([1, 40, 99])
    xt = d.q_sample(x0, t, noise)
    # eps output = true noise and v = -1 (variance beta~): p equals the posterior, KL = 0.
    out = torch.cat([noise, -torch.ones_like(noise)], dim=1)
    assert_close(d.vlb_terms(out, x0, xt, t), torch.zeros(3), rtol=0, atol=1e-5)
    assert (
        d.vlb_terms(torch.cat([noise + 0.3, -torch.ones_like(noise)], 1), x0, xt, t) > 1e-3
    ).all()

    # Gradients of L_vlb reach the variance channels only (the mean half is detached).
    d_vlb_only = GaussianDiffusion(d.betas, variance_type="learned_range", w_simple=0.0, w_vlb=1.0)
    output = nn.Parameter(torch.randn(3, 2, 4, 4, generator=g))
    d_vlb_only.training_loss(Constant(output), x0, t=t, noise=noise).backward()
    assert output.grad[:, :1].abs().max() == 0
    assert output.grad[:, 1:].abs().max() > 0


def test_training_losses_reports_the_parts():
    d = diffusion(variance_type="learned_range", w_vlb=0.5, timesteps=50)
    x0 = torch.zeros(2, 1, 4, 4)
    terms = d.training_losses(
        Constant(torch.zeros(2, 2, 4, 4)), x0, t=torch.tensor([3, 9]), noise=torch.ones_like(x0)
    )
    assert terms.loss.item() == pytest.approx(
        terms.simple.item() + 0.5 * terms.vlb.item(), rel=1e-6
    )
    plain = diffusion().training_losses(Constant(torch.zeros(1, 1, 1, 1)), x0)
    assert plain.vlb is None and plain.loss.item() == pytest.approx(plain.simple.item())


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(prediction_type="noise"),
            "unknown prediction_type 'noise'; allowed: epsilon, sample, v_prediction",
        ),
        (
            dict(variance_type="learned"),
            "unknown variance_type 'learned'; allowed: fixed_small, fixed_large, learned_range",
        ),
        (dict(w_vlb=0.001), "w_vlb=0.001 > 0 needs variance_type 'learned_range'"),
        (dict(variance_type="learned_range"), "variance_type 'learned_range' needs w_vlb > 0"),
        (dict(w_simple=-1.0), "w_simple must be a finite number >= 0, got -1.0"),
        (dict(w_simple=0.0), "w_simple and w_vlb are both 0"),
        (dict(min_snr_gamma=0.0), "min_snr_gamma must be None (off) or a number > 0, got 0.0"),
        (
            dict(zero_terminal_snr=True),
            "prediction_type 'epsilon' cannot recover x_0 where alpha_bar = 0",
        ),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        diffusion(**kwargs)
    assert message in str(info.value)


def test_sampler_and_batch_errors():
    d = diffusion(timesteps=10)
    with pytest.raises(ValueError, match="unknown sampler 'euler'; allowed: ddpm, ddim, dpmpp_2m"):
        d.sample(Constant(torch.zeros(1, 1, 1, 1)), (1, 1, 2, 2), sampler="euler")
    with pytest.raises(ValueError, match="t has 3 entries for a batch of 2"):
        d.q_sample(torch.zeros(2, 1, 2, 2), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="betas must lie in \\(0, 1\\]"):
        GaussianDiffusion(torch.tensor([0.1, 0.0, 0.2]))
