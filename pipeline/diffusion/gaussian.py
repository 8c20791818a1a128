"""Gaussian diffusion: forward process, posterior, training loss and samplers.

Notation follows DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239) with 0-based timesteps
t in [0, T-1], as in the seed's pseudo-code:

    q(x_t | x_0)          = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)                  (eq. 4)
    q(x_{t-1} | x_t, x_0) = N(mu~_t(x_t, x_0), beta~_t I)                                  (eq. 6, 7)
        mu~_t   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t,   alpha_bar_{-1} := 1

The network predicts one of (``prediction_type``):
    ``epsilon``       the noise eps                          (DDPM)
    ``sample``        x_0 itself
    ``v_prediction``  v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0    (Salimans & Ho 2022)

and the reverse variance Sigma_t is (``variance_type``):
    ``fixed_small``   beta~_t                                (DDPM, sigma^2 = beta~)
    ``fixed_large``   beta_t                                 (DDPM, sigma^2 = beta)
    ``learned_range`` exp(v log beta_t + (1 - v) log beta~_t), v in [0, 1] from the network's second
                      half of output channels (improved DDPM eq. 15, https://arxiv.org/abs/2102.09672)

Training loss: ``w_simple * L_simple + w_vlb * L_vlb`` (improved DDPM eq. 16). L_simple is the MSE
between the network's (mean) output and its target, optionally min-SNR-gamma weighted (Hang et al.
2023). L_vlb = sum_t L_t in bits/dim, estimated as T * L_t at the sampled t, with the mean detached
so that it trains the learned variance only; the paper's lambda = 0.001 is ``w_vlb = 0.001``.

Samplers (pipeline.diffusion.samplers, one object each, the loop written once): ``ddpm`` ancestral
sampling (with ``steps < T`` on a respaced schedule, improved DDPM section 4), ``ddim`` (Song et
al. 2021, eq. 12, https://arxiv.org/abs/2010.02502) and ``dpmpp_2m`` (DPM-Solver++(2M), Lu et al.
2022); the reverse steps they use (``p_step``, ``ddim_step``) are this class's.

One argument order throughout, as diffusers' ``scheduler.step(model_output, timestep, sample)``:
the timestep t is always second. A reverse step or the reading of a prediction takes
``(model_output, t, x_t)``; a conversion or the posterior takes ``(x_t, t, known)``
(``x0_from_eps(x_t, t, eps)``, ``q_posterior(x_t, t, x0)``); the forward process takes
``(x0, t, noise)`` (``q_sample``, ``training_target``, ``v_from_x0_eps``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.diffusion import samplers
from pipeline.diffusion.losses import (
    discretized_gaussian_log_likelihood,
    mean_flat,
    min_snr_weight,
    normal_kl,
)
from pipeline.diffusion.samplers import SampleStep, StepOutput, call_model

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned_range")


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ValueError naming ``name``, the bad value and the allowed ones."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def extract(a: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gather a[t] per batch element and shape it to broadcast against x: (B,) -> (B, 1, ..., 1)."""
    out = a.to(t.device)[t].to(x.dtype)
    return out.reshape(t.shape[0], *((1,) * (x.ndim - 1)))


@dataclass(frozen=True)
class PMeanVariance:
    """p_theta(x_{t-1} | x_t) = N(mean, exp(log_variance)) and the x_0 / eps it was derived from."""

    mean: torch.Tensor
    log_variance: torch.Tensor
    pred_x0: torch.Tensor
    pred_eps: torch.Tensor


@dataclass(frozen=True)
class LossTerms:
    """The training loss and its parts (``vlb`` is None unless variance_type is learned_range)."""

    loss: torch.Tensor
    simple: torch.Tensor
    vlb: torch.Tensor | None


def schedule_buffers(betas: torch.Tensor) -> dict[str, torch.Tensor]:
    """The per-timestep quantities of a beta schedule (float64, T each): alpha_t = 1 - beta_t,
    alpha_bar_t = prod_{s<=t} alpha_s, the SNR alpha_bar / (1 - alpha_bar), the posterior
    q(x_{t-1} | x_t, x_0)'s variance beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) and
    mean coefficients (Ho et al. 2020, eq. 7), and the log variances of the fixed and learned
    variance types (beta~_0 = 0: its log is clipped to beta~_1 as in improved DDPM; beta_0 when
    T = 1)."""
    alphas = 1.0 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    beta_tilde = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    beta_tilde_floor = beta_tilde[1] if betas.numel() > 1 else betas[0]
    return {
        "betas": betas,
        "alphas": alphas,
        "alpha_bar": alpha_bar,
        "alpha_bar_prev": alpha_bar_prev,
        "sqrt_alpha_bar": alpha_bar.sqrt(),
        "sqrt_one_minus_alpha_bar": (1.0 - alpha_bar).sqrt(),
        "snr": alpha_bar / (1.0 - alpha_bar),
        "beta_tilde": beta_tilde,
        "log_beta_tilde_clipped": torch.log(
            torch.cat([beta_tilde_floor.reshape(1), beta_tilde[1:]])
        ),
        # fixed_large: beta_t, with beta~_1 at t = 0 (improved DDPM)
        "log_beta_large": torch.log(torch.cat([beta_tilde_floor.reshape(1), betas[1:]])),
        "log_betas": torch.log(betas),
        "posterior_mean_coef_x0": alpha_bar_prev.sqrt() * betas / (1.0 - alpha_bar),
        "posterior_mean_coef_xt": alphas.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar),
    }


class GaussianDiffusion(nn.Module):
    """DDPM forward/reverse process over fixed betas; coefficients are float64 buffers.

    Args:
        betas: float tensor of shape [T], 0 < beta_t <= 1 (see ``make_betas``).
        prediction_type: ``epsilon`` (default), ``sample`` or ``v_prediction``.
        variance_type: ``fixed_small`` (default), ``fixed_large`` or ``learned_range``; the latter
            needs a network with twice the image channels as output and ``w_vlb > 0``.
        w_simple: weight of L_simple, >= 0 (default 1).
        w_vlb: weight of L_vlb, >= 0 (default 0); > 0 only with ``learned_range``.
        min_snr_gamma: None (default, off) or gamma > 0 for min-SNR-gamma weighting (5 in the paper).
        clip_denoised: clip predicted x_0 to [-1, 1] when sampling (default True).
    """

    def __init__(
        self,
        betas: torch.Tensor,
        prediction_type: str = "epsilon",
        variance_type: str = "fixed_small",
        *,
        w_simple: float = 1.0,
        w_vlb: float = 0.0,
        min_snr_gamma: float | None = None,
        clip_denoised: bool = True,
    ) -> None:
        super().__init__()
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        check_loss_weights(variance_type, w_simple, w_vlb, min_snr_gamma)
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a 1-D tensor with T >= 1 entries, got {betas.shape}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError(f"betas must lie in (0, 1], got min {betas.min()} max {betas.max()}")
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self.w_simple, self.w_vlb, self.min_snr_gamma = w_simple, w_vlb, min_snr_gamma
        self.clip_denoised = clip_denoised
        self.num_timesteps = int(betas.numel())

        buffers = schedule_buffers(betas)
        if prediction_type == "epsilon" and buffers["alpha_bar"][-1] == 0:
            raise ValueError(
                "prediction_type 'epsilon' cannot recover x_0 where alpha_bar = 0 (zero terminal "
                "SNR); use 'v_prediction' or 'sample' (Lin et al. 2023, section 3.2)"
            )
        for name, buffer in buffers.items():
            self.register_buffer(name, buffer, persistent=False)

    # ---------------------------------------------------------------- helpers
    def _timesteps(self, t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """t as a LongTensor of shape (B,) on x's device; ints are broadcast to the batch."""
        if isinstance(t, torch.Tensor) and t.ndim == 1:
            if t.shape[0] != x.shape[0]:
                raise ValueError(f"t has {t.shape[0]} entries for a batch of {x.shape[0]}")
            return t.to(device=x.device, dtype=torch.long)
        return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)

    def _split_output(self, model_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C or 2C, H, W) -> mean part (B, C, H, W) and variance part (B, C, H, W) or None."""
        if self.variance_type != "learned_range":
            return model_output, None
        mean_out, var_out = model_output.chunk(2, dim=1)
        return mean_out, var_out

    # ------------------------------------------------------- forward process
    def q_sample(
        self, x0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps  (DDPM eq. 4)."""
        t = self._timesteps(t, x0)
        noise = torch.randn_like(x0) if noise is None else noise
        return (
            extract(self.sqrt_alpha_bar, t, x0) * x0
            + extract(self.sqrt_one_minus_alpha_bar, t, x0) * noise
        )

    def q_posterior(
        self, x_t: torch.Tensor, t: int | torch.Tensor, x0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean mu~_t(x_t, x_0) and variance beta~_t of q(x_{t-1} | x_t, x_0) (DDPM eq. 6, 7).

        The variance is shaped (B, 1, ..., 1) to broadcast against x_t.
        """
        t = self._timesteps(t, x_t)
        mean = (
            extract(self.posterior_mean_coef_x0, t, x_t) * x0
            + extract(self.posterior_mean_coef_xt, t, x_t) * x_t
        )
        return mean, extract(self.beta_tilde, t, x_t)

    # ------------------------------------------------- parameterisations
    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)  (eq. 4 solved for x_0)."""
        return (x_t - extract(self.sqrt_one_minus_alpha_bar, t, x_t) * eps) / extract(
            self.sqrt_alpha_bar, t, x_t
        )

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar)  (eq. 4 solved for eps)."""
        return (x_t - extract(self.sqrt_alpha_bar, t, x_t) * x0) / extract(
            self.sqrt_one_minus_alpha_bar, t, x_t
        )

    def v_from_x0_eps(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0  (Salimans & Ho 2022, section 4)."""
        return (
            extract(self.sqrt_alpha_bar, t, x0) * eps
            - extract(self.sqrt_one_minus_alpha_bar, t, x0) * x0
        )

    def x0_eps_from_v(
        self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v,  eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v."""
        a, s = extract(self.sqrt_alpha_bar, t, x_t), extract(self.sqrt_one_minus_alpha_bar, t, x_t)
        return a * x_t - s * v, s * x_t + a * v

    def pred_x0_eps(
        self, model_output: torch.Tensor, t: int | torch.Tensor, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's (mean) output turned into (x_0, eps) according to ``prediction_type``."""
        t = self._timesteps(t, x_t)
        out, _ = self._split_output(model_output)
        if self.prediction_type == "epsilon":
            return self.x0_from_eps(x_t, t, out), out
        if self.prediction_type == "sample":
            return out, self.eps_from_x0(x_t, t, out)
        return self.x0_eps_from_v(x_t, t, out)

    def denoised(
        self, model_output: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, clip: bool | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat, eps_hat) of ``pred_x0_eps``; with ``clip`` (default ``clip_denoised``) x0_hat is
        clipped to [-1, 1] and eps_hat re-derived from it (eq. 4 solved for eps), so that the step
        moves towards an image in range."""
        pred_x0, pred_eps = self.pred_x0_eps(model_output, t, x_t)
        if self.clip_denoised if clip is None else clip:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
            pred_eps = self.eps_from_x0(x_t, t, pred_x0)
        return pred_x0, pred_eps

    def training_target(
        self, x0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """What the network regresses: eps, x_0 or v."""
        t = self._timesteps(t, x0)
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        return self.v_from_x0_eps(x0, t, noise)

    # ------------------------------------------------------- reverse process
    def p_mean_variance(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x_t: torch.Tensor,
        clip_denoised: bool | None = None,
    ) -> PMeanVariance:
        """p_theta(x_{t-1} | x_t): mean mu~_t(x_t, x0_hat) (DDPM eq. 6 with x_0 predicted) and variance.

        1) the output gives x0_hat (clipped to [-1, 1] if ``clip_denoised``) and eps_hat
        2) mean = posterior mean with x0_hat in place of x_0
        3) log variance from ``variance_type`` (improved DDPM eq. 15 for learned_range)
        """
        t = self._timesteps(t, x_t)
        pred_x0, pred_eps = self.denoised(model_output, t, x_t, clip_denoised)
        mean, _ = self.q_posterior(x_t, t, pred_x0)
        _, var_out = self._split_output(model_output)
        if self.variance_type == "fixed_small":
            log_variance = extract(self.log_beta_tilde_clipped, t, x_t)
        elif self.variance_type == "fixed_large":
            log_variance = extract(self.log_beta_large, t, x_t)
        else:  # learned_range: interpolate between log beta~_t and log beta_t
            frac = (var_out + 1.0) / 2.0
            log_variance = frac * extract(self.log_betas, t, x_t) + (1.0 - frac) * extract(
                self.log_beta_tilde_clipped, t, x_t
            )
        return PMeanVariance(mean, log_variance, pred_x0, pred_eps)

    def p_step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x_t: torch.Tensor,
        noise: torch.Tensor,
        clip_denoised: bool | None = None,
    ) -> StepOutput:
        """Ancestral step x_{t-1} = mean + sigma_t z (DDPM Algorithm 2); no noise is added at t = 0."""
        t = self._timesteps(t, x_t)
        out = self.p_mean_variance(model_output, t, x_t, clip_denoised)
        nonzero = (t != 0).to(x_t.dtype).reshape(-1, *((1,) * (x_t.ndim - 1)))
        x_prev = out.mean + nonzero * torch.exp(0.5 * out.log_variance) * noise
        return StepOutput(prev_sample=x_prev, pred_x0=out.pred_x0)

    def ddim_sigma(
        self, t: torch.Tensor, t_prev: torch.Tensor, eta: float, x: torch.Tensor
    ) -> torch.Tensor:
        """DDIM eq. 16: sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev), a = alpha_bar.

        With t_prev = t - 1 and eta = 1 this is sqrt(beta~_t), the DDPM posterior standard deviation.
        """
        a_t, a_prev = extract(self.alpha_bar, t, x), self._alpha_bar_prev(t_prev, x)
        return eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)).sqrt()

    def _alpha_bar_prev(self, t_prev: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """alpha_bar at t_prev, with alpha_bar_{-1} = 1 (the step that lands on x_0)."""
        a = extract(self.alpha_bar, t_prev.clamp(min=0), x)
        return torch.where(t_prev.reshape(a.shape) < 0, torch.ones_like(a), a)

    def ddim_step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        t_prev: int | torch.Tensor,
        x_t: torch.Tensor,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clip_denoised: bool | None = None,
    ) -> StepOutput:
        """DDIM eq. 12: x_{t_prev} = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat + sigma z.

        ``t_prev = -1`` is the last step (a_prev = 1). ``eta = 0`` is deterministic; ``noise`` is
        drawn with randn when None and eta > 0. A learned variance output is ignored.
        """
        t, t_prev = self._timesteps(t, x_t), self._timesteps(t_prev, x_t)
        pred_x0, pred_eps = self.denoised(model_output, t, x_t, clip_denoised)
        a_prev = self._alpha_bar_prev(t_prev, x_t)
        sigma = self.ddim_sigma(t, t_prev, eta, x_t)
        x_prev = a_prev.sqrt() * pred_x0 + (1.0 - a_prev - sigma**2).clamp(min=0).sqrt() * pred_eps
        if eta > 0:
            noise = torch.randn_like(x_t) if noise is None else noise
            x_prev = x_prev + sigma * noise
        return StepOutput(prev_sample=x_prev, pred_x0=pred_x0)

    # -------------------------------------------------------------- sampling
    def sampling_timesteps(self, steps: int | None = None) -> torch.Tensor:
        """``steps`` timesteps from T-1 down to 0, evenly spaced ("linspace" spacing), descending."""
        steps = self.num_timesteps if steps is None else steps
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= self.num_timesteps
        ):
            raise ValueError(
                f"steps must be an integer in [1, {self.num_timesteps}], got {steps!r}"
            )
        return torch.linspace(self.num_timesteps - 1, 0, steps, dtype=torch.float64).round().long()

    def respaced(self, timesteps: torch.Tensor) -> GaussianDiffusion:
        """The process restricted to ``timesteps`` (improved DDPM section 4): same alpha_bar there,
        betas_i = 1 - alpha_bar_{s_i} / alpha_bar_{s_{i-1}}. Index i of the result is timestep s_i."""
        ascending = timesteps.sort().values
        alpha_bar = self.alpha_bar[ascending]
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        return GaussianDiffusion(
            1.0 - alpha_bar / alpha_bar_prev,
            self.prediction_type,
            self.variance_type,
            w_simple=self.w_simple,
            w_vlb=self.w_vlb,
            min_snr_gamma=self.min_snr_gamma,
            clip_denoised=self.clip_denoised,
        )

    @torch.no_grad()
    def sample_progressive(
        self,
        model: nn.Module,
        shape: tuple[int, ...],
        steps: int | None = None,
        sampler: str = "ddpm",
        eta: float = 0.0,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Iterator[SampleStep]:
        """Yield every reverse step from x_T ~ N(0, I) to x_0; see ``sample`` (the loop:
        pipeline.diffusion.samplers.sample_progressive)."""
        yield from samplers.sample_progressive(
            self, model, shape, steps, sampler, eta, cond, generator, device, progress
        )

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        shape: tuple[int, ...],
        steps: int | None = None,
        sampler: str = "ddpm",
        eta: float = 0.0,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Generate x_0 of ``shape`` (B, C, H, W) from x_T ~ N(0, I).

        Args:
            steps: number of network evaluations, in [1, T] (default T), on evenly spaced timesteps.
            sampler: a name of pipeline.diffusion.samplers.SAMPLERS: ``ddpm`` (ancestral; respaced
                when steps < T), ``ddim`` (with ``eta``) or ``dpmpp_2m`` (DPM-Solver++(2M)).
            eta: DDIM stochasticity: 0 deterministic, 1 the DDPM posterior variance.
            cond: conditioning image passed to the model as model(x_t, t, cond).
            generator: seeds x_T and all step noise (must live on ``device``).
            device: where to sample (default: the model's device).
        Returns:
            x_0, clipped to [-1, 1] when ``clip_denoised`` (the default).
        """
        x = None
        for step in self.sample_progressive(
            model, shape, steps, sampler, eta, cond, generator, device=device, progress=progress
        ):
            x = step.x
        return x.clamp(-1.0, 1.0) if self.clip_denoised else x

    # ------------------------------------------------------------------ loss
    def vlb_terms(
        self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """L_t in bits/dim, shape (B,): KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0 and the
        discretised decoder NLL -log p(x_0 | x_1) at t = 0 (DDPM eq. 5 and 13)."""
        true_mean, _ = self.q_posterior(x_t, t, x0)
        true_log_variance = extract(self.log_beta_tilde_clipped, t, x_t)
        p = self.p_mean_variance(model_output, t, x_t, clip_denoised=False)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, p.mean, p.log_variance))
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, p.mean, 0.5 * p.log_variance))
        return torch.where(t == 0, nll, kl) / math.log(2.0)

    def training_losses(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> LossTerms:
        """w_simple * L_simple + w_vlb * L_vlb for a batch x0 in [-1, 1] (improved DDPM eq. 16).

        1) t ~ U{0, T-1} and eps ~ N(0, I) unless given; x_t = q_sample(x0, t, eps)
        2) L_simple = mean ||target - output||^2, per sample times the min-SNR weight when enabled
        3) with learned_range: L_vlb = T * L_t on the output with its mean half detached
        """
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x0.shape[0],), device=x0.device)
        t = self._timesteps(t, x0)
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, t, noise)
        model_output = call_model(model, x_t, t, cond).float()
        mean_out, var_out = self._split_output(model_output)
        mse = mean_flat((self.training_target(x0, t, noise) - mean_out) ** 2)  # (B,)
        if self.min_snr_gamma is not None:
            weight = min_snr_weight(
                self.snr.to(t.device)[t], self.min_snr_gamma, self.prediction_type
            )
            mse = mse * weight.to(mse.dtype)
        simple = mse.mean()
        loss = self.w_simple * simple
        vlb = None
        if var_out is not None:
            frozen = torch.cat([mean_out.detach(), var_out], dim=1)
            vlb = self.vlb_terms(frozen, x0, x_t, t).mean() * self.num_timesteps
            loss = loss + self.w_vlb * vlb
        return LossTerms(
            loss=loss, simple=simple.detach(), vlb=None if vlb is None else vlb.detach()
        )

    def training_loss(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        cond: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The scalar training loss of ``training_losses``."""
        return self.training_losses(model, x0, cond, t, noise).loss


def check_loss_weights(
    variance_type: str, w_simple: float, w_vlb: float, min_snr_gamma: float | None
) -> None:
    """Raise ValueError for weights that cannot train: negative, all zero, or L_vlb without a learned
    variance (its mean is detached, so it would train nothing) and a learned variance without L_vlb."""
    for name, value in (("w_simple", w_simple), ("w_vlb", w_vlb)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if w_simple == 0 and w_vlb == 0:
        raise ValueError("w_simple and w_vlb are both 0: the loss would train nothing")
    if w_vlb > 0 and variance_type != "learned_range":
        raise ValueError(
            f"w_vlb={w_vlb!r} > 0 needs variance_type 'learned_range' (L_vlb trains only the "
            f"learned variance), got variance_type {variance_type!r}"
        )
    if variance_type == "learned_range" and w_vlb == 0:
        raise ValueError("variance_type 'learned_range' needs w_vlb > 0 (improved DDPM: 0.001)")
    if min_snr_gamma is not None and not (math.isfinite(min_snr_gamma) and min_snr_gamma > 0):
        raise ValueError(f"min_snr_gamma must be None (off) or a number > 0, got {min_snr_gamma!r}")
