"""Samplers as objects, one per method, and the reverse loop written once (``sample_progressive``).

A sampler is made for one sampling run of a process with a number of steps; it chooses its
timesteps (``spacing``: descending, from T-1 to 0, as diffusers' ``scheduler.set_timesteps``), then
turns each network output into the next, less noisy x: ``step(model_output, i, x_t, noise)`` at
its i-th timestep, as diffusers' ``scheduler.step(model_output, timestep, sample)``. Adding one is
a class here and its name in SAMPLERS.

    ddpm      ancestral sampling (DDPM Algorithm 2, Ho et al. 2020), on the process respaced to
              the timesteps when there are fewer than T (improved DDPM section 4)
    ddim      DDIM eq. 12 (Song et al. 2021, https://arxiv.org/abs/2010.02502), ``eta`` from 0
              (deterministic) to 1 (the DDPM posterior's variance)
    dpmpp_2m  DPM-Solver++(2M) (Lu et al. 2022, https://arxiv.org/abs/2211.01095, Algorithm 2):
              deterministic, second order in the data prediction x0 over the half log-SNR
              lambda_t = log(alpha_t / sigma_t), alpha_t = sqrt(alpha_bar_t),
              sigma_t = sqrt(1 - alpha_bar_t); first order on its first step and onto x_0; its
              timesteps evenly spaced in lambda (DPM-Solver's "logSNR" spacing), where a
              multistep method keeps consecutive step sizes alike
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass(frozen=True)
class StepOutput:
    """What one reverse step returns, as diffusers' scheduler outputs do: ``prev_sample`` is
    x_{t_prev} and ``pred_x0`` the (clipped) x_0 estimate the step was computed from."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


@dataclass(frozen=True)
class SampleStep:
    """One reverse step: ``t`` was just denoised, ``x`` is x_{t_prev}, ``pred_x0`` the x_0 estimate."""

    t: int
    x: torch.Tensor
    pred_x0: torch.Tensor


class Process(Protocol):
    """What a sampler uses of its process (pipeline.diffusion.gaussian.GaussianDiffusion, which
    imports this module: the protocol keeps the import one way)."""

    alpha_bar: torch.Tensor
    num_timesteps: int

    def sampling_timesteps(self, steps: int | None = None) -> torch.Tensor: ...

    def respaced(self, timesteps: torch.Tensor) -> Process: ...

    def denoised(
        self, model_output: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, clip: bool | None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def p_step(
        self, model_output: torch.Tensor, t: int, x_t: torch.Tensor, noise: torch.Tensor
    ) -> StepOutput: ...

    def ddim_step(
        self,
        model_output: torch.Tensor,
        t: int,
        t_prev: int,
        x_t: torch.Tensor,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
    ) -> StepOutput: ...


def call_model(
    model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None
) -> torch.Tensor:
    """model(x_t, t) for unconditional models, model(x_t, t, cond) for conditional ones."""
    return model(x_t, t) if cond is None else model(x_t, t, cond)


def half_log_snr(process: Process) -> torch.Tensor:
    """lambda_t = log(alpha_t / sigma_t) = log(alpha_bar_t / (1 - alpha_bar_t)) / 2, float64."""
    alpha_bar = process.alpha_bar.double()
    return 0.5 * (alpha_bar.log() - (1.0 - alpha_bar).log())


class Sampler:
    """One sampling run of ``process`` with ``steps`` network evaluations on ``self.timesteps``
    (``spacing``, descending); ``step`` is the method."""

    def __init__(self, process: Process, steps: int | None, eta: float) -> None:
        self.process, self.eta = process, eta
        self.timesteps = self.spacing(process, steps)

    @staticmethod
    def spacing(process: Process, steps: int | None) -> torch.Tensor:
        """Evenly spaced timesteps (GaussianDiffusion.sampling_timesteps)."""
        return process.sampling_timesteps(steps)

    def t_prev(self, i: int) -> int:
        """The timestep the i-th step lands on: the next one, -1 for x_0."""
        return int(self.timesteps[i + 1]) if i + 1 < len(self.timesteps) else -1

    def step(
        self, model_output: torch.Tensor, i: int, x_t: torch.Tensor, noise: torch.Tensor
    ) -> StepOutput:
        raise NotImplementedError


class DDPMSampler(Sampler):
    """Ancestral steps x_{t-1} = mu~ + sigma z on the respaced process (index i <-> timestep s_i),
    made on the device of the first x_t."""

    respaced: Process | None = None

    def step(self, model_output, i, x_t, noise):
        if self.respaced is None:
            self.respaced = self.process.respaced(self.timesteps).to(x_t.device)
        return self.respaced.p_step(model_output, len(self.timesteps) - 1 - i, x_t, noise)


class DDIMSampler(Sampler):
    """DDIM eq. 12 from timestep t to the next one (GaussianDiffusion.ddim_step)."""

    def step(self, model_output, i, x_t, noise):
        t = int(self.timesteps[i])
        return self.process.ddim_step(model_output, t, self.t_prev(i), x_t, self.eta, noise)


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M), Lu et al. 2022 Algorithm 2. With h_i = lambda_{t_i} - lambda_{t_{i-1}}:

        x_{t_i} = sigma_{t_i} / sigma_{t_{i-1}} x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i
        D_i     = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2},   r_i = h_{i-1} / h_i

    with D = x0_{i-1} on the first step (first order, DPM-Solver++(1) = DDIM); the last step,
    onto lambda = +inf, is x0 itself (first order, as diffusers' lower_order_final)."""

    def __init__(self, process: Process, steps: int | None, eta: float) -> None:
        super().__init__(process, steps, eta)
        self.log_snr_half = half_log_snr(process)  # lambda_t
        self.previous: tuple[torch.Tensor, float] | None = None  # (x0, h) of the step before

    @staticmethod
    def spacing(process: Process, steps: int | None) -> torch.Tensor:
        """``steps`` timesteps from T-1 to 0 evenly spaced in lambda (from the first finite one:
        a zero-terminal-SNR schedule has lambda_{T-1} = -inf), each rounded to the nearest
        timestep and kept below the one before, so that every step is a network evaluation of
        its own."""
        count = len(process.sampling_timesteps(steps))  # checks steps
        lam = half_log_snr(process)
        finite = lam[torch.isfinite(lam)]
        targets = torch.linspace(float(finite.min()), float(lam[0]), count, dtype=torch.float64)
        nearest = (lam[None, :] - targets[:, None]).abs().nan_to_num(math.inf).argmin(dim=1)
        ends = [process.num_timesteps - 1, 0][: min(count, 2)]
        nearest[[0, -1][: len(ends)]] = torch.tensor(ends)
        for i in range(count - 2, 0, -1):  # strictly descending: from t = 0 up, then from T-1
            nearest[i] = max(int(nearest[i]), int(nearest[i + 1]) + 1)
        for i in range(1, count):
            nearest[i] = min(int(nearest[i]), int(nearest[i - 1]) - 1)
        return nearest

    def step(self, model_output, i, x_t, noise):
        t, t_prev = int(self.timesteps[i]), self.t_prev(i)
        batch_t = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
        pred_x0, _ = self.process.denoised(model_output, batch_t, x_t, None)
        if t_prev < 0:
            return StepOutput(prev_sample=pred_x0, pred_x0=pred_x0)
        alpha_bar = self.process.alpha_bar.double()
        h = float(self.log_snr_half[t_prev] - self.log_snr_half[t])
        sigma_ratio = math.sqrt((1.0 - alpha_bar[t_prev]) / (1.0 - alpha_bar[t]))
        alpha_prev = math.sqrt(float(alpha_bar[t_prev]))
        derivative = pred_x0
        if self.previous is not None:
            earlier_x0, h_before = self.previous
            half_over_r = 0.5 * h / h_before  # 1 / (2 r)
            derivative = (1.0 + half_over_r) * pred_x0 - half_over_r * earlier_x0
        self.previous = (pred_x0, h)
        x_prev = sigma_ratio * x_t - alpha_prev * math.expm1(-h) * derivative
        return StepOutput(prev_sample=x_prev, pred_x0=pred_x0)


SAMPLERS: dict[str, type[Sampler]] = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpmpp_2m": DPMSolverPP2M,
}


def sample_progressive(
    process: Process,
    model: nn.Module,
    shape: tuple[int, ...],
    steps: int | None,
    sampler: str,
    eta: float,
    cond: torch.Tensor | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    progress: bool,
) -> Iterator[SampleStep]:
    """Every reverse step from x_T ~ N(0, I) to x_0 (GaussianDiffusion.sample_progressive): the
    network's output at each of ``steps`` timesteps handed to ``SAMPLERS[sampler]``. Each step
    draws its noise whether the sampler uses it or not, so a seed gives every sampler the same
    x_T and a stochastic one the same noise."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    method = SAMPLERS[sampler](process, steps, eta)
    timesteps = method.timesteps
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(
        tqdm(timesteps.tolist(), desc=f"{sampler} sampling", disable=not progress)
    ):
        model_output = call_model(
            model, x, torch.full((shape[0],), t, device=x.device), cond
        ).float()
        noise = torch.randn(shape, generator=generator, device=device)
        out = method.step(model_output, i, x, noise)
        x = out.prev_sample
        yield SampleStep(t=t, x=x, pred_x0=out.pred_x0)
