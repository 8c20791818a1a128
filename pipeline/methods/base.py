"""The two interfaces a model family implements.

``Method``: training on one data-parallel rank. It owns its networks, optimisers and grad scalers;
the loop (pipeline.train.worker) seeds torch, builds it, lets it wrap what it trains for DDP, calls
``train_step`` on each step's micro-batches, keeps an EMA of ``net`` and checkpoints
``state_dict()``. A GAN steps two optimisers inside ``train_step``.

``GenerativeModel``: a trained ``net`` that samples images in [-1, 1] (the live EMA network during
training, or the exported one in evaluation, MLflow and the CLI). ``LatentModel``: one that decodes
z ~ N(0, I) in one call (the VAE's decoder, the GAN's generator).

A training batch is what the loader yields: images (B, C, H, W) in [-1, 1], or for a family that
needs labels (pipeline.registry) the pair [images, labels (B,)].
"""

from __future__ import annotations

import collections
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.config import EvalConfig, Params
from pipeline.registry import Conditioning, family

Batch = torch.Tensor | Sequence[torch.Tensor]  # images, or [images, labels]
References = Callable[[int], np.ndarray]  # count -> real images, uint8 (count, C, H, W)


def balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    """Labels (count,) int64 cycling 0, 1, .., num_classes - 1: every class equally often (to one),
    so a grid of ``num_classes`` per row shows one class per column."""
    return torch.arange(count) % num_classes


@dataclass(frozen=True)
class Sampling:
    """How an iterative family samples (``sample_progressive``'s ``how``); a one-shot family
    ignores it. ``steps``: reverse steps (None: every timestep), ``sampler``: a name of
    pipeline.diffusion.samplers.SAMPLERS, ``eta``: DDIM's noise (0: deterministic),
    ``guidance``: the classifier-free guidance scale w of a class-conditional family (None: its
    ``eval.guided.guidance_scale``)."""

    steps: int | None = None
    sampler: str = "ddim"
    eta: float = 0.0
    guidance: float | None = None

    @classmethod
    def of(cls, config: EvalConfig) -> Sampling:
        """The evaluation's sampler (``eval.steps``, ``sampler``, ``eta``, ``guided.guidance_scale``)."""
        return cls(config.steps, config.sampler, config.eta, config.guided.guidance_scale)


DEFAULT_SAMPLING = Sampling()  # DDIM over every timestep, deterministic, the model's guidance


@dataclass(frozen=True)
class TensorSpec:
    """One tensor ``predict`` takes (by ``name``) or returns: numpy dtype name and shape, -1 for a
    dimension of any size (the batch)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None


@dataclass(frozen=True)
class Signature:
    """``predict``'s inputs and outputs, without MLflow's types: the per-GPU code imports with
    torch alone."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class GenerativeModel(ABC):
    """A trained network and the params it was trained with, ready to sample."""

    def __init__(self, net: nn.Module, params: Params) -> None:
        self.net, self.params = net, params

    sampler_options: ClassVar[tuple[str, ...]] = ("steps", "sampler", "eta")
    """The fields of ``Sampling`` (``sample_progressive``'s ``how``) this family honours besides
    ``guidance`` (an iterative sampler's; a one-shot family ignores them)."""

    @property
    def conditioning(self) -> Conditioning:
        """What ``sample`` needs as ``cond`` (pipeline.registry.Family): None, "image"
        (``condition(images)``) or "class" (labels (n,) int64)."""
        return family(self.params.model.family).conditioning

    def conditions(self, n: int, references: References) -> np.ndarray | None:
        """What ``n`` samples are drawn from, as numpy (it travels to Ray tasks; ``cond`` turns it
        into ``sample``'s ``cond``): None for an unconditional family. ``references(count)``
        gives ``count`` real images (uint8 (count, C, H, W)); only a family that samples from
        images (a colorizer) calls it."""
        return None

    def cond(self, conditions: np.ndarray | None) -> torch.Tensor | None:
        """``sample``'s ``cond`` on the model's device, made of what ``conditions`` returned."""
        return None

    def condition(self, images: torch.Tensor) -> torch.Tensor | None:
        """The ``cond`` a conditional family samples from, derived from real images (N, C, H, W)
        in [-1, 1] (a colorizer: their lightness); None for unconditional families."""
        return None

    def panel(
        self, samples: torch.Tensor, conditions: np.ndarray | None
    ) -> tuple[torch.Tensor, int]:
        """The picture people look at for ``samples`` (drawn from ``conditions``, as
        ``conditions`` made them): the images to tile and how many per row (``image_grid``)."""
        return samples, math.ceil(math.sqrt(len(samples)))

    @property
    def num_classes(self) -> int:
        """Classes of a class-conditioned family (its labels are 0 .. num_classes - 1); else 0."""
        return 0

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters()), torch.empty(0)).device

    def to(self, device: torch.device | str) -> GenerativeModel:
        """This model on ``device`` (its tensors moved in place): a model that travelled to a Ray
        task on the CPU, moved to the task's GPU."""
        self.net.to(device)
        return self

    @abstractmethod
    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """The states (n, C, H, W) from the start (noise) to the sample, one per network call; the
        last one is the sample. ``how``: the sampler (one-shot families yield their sample once
        and ignore it). ``generator`` (on the model's device) fixes every draw; ``cond``: what a
        conditional family samples from (``cond(conditions)``)."""

    def sample(self, n: int, *, precision: str = "fp32", **kwargs: Any) -> torch.Tensor:
        """``n`` samples in [-1, 1], (n, C, H, W), float32: the last state of
        ``sample_progressive``. ``precision`` bf16 runs it under bf16 autocast: the network's
        convolutions and matmuls in bf16, the sampler's updates of x_t in fp32 (a bf16 output
        promotes to x_t's float32)."""
        bf16 = precision == "bf16"
        with (
            torch.no_grad(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            (last,) = collections.deque(self.sample_progressive(n, **kwargs), maxlen=1)
        return last.float().clamp(-1.0, 1.0)

    @abstractmethod
    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        """The network's output for named numpy inputs: what ``mlflow.pyfunc`` serves."""

    @abstractmethod
    def signature(self) -> Signature:
        """The tensors ``predict`` takes and returns, logged with the MLflow model
        (pipeline.train.mlflow_model turns them into MLflow's signature)."""

    @abstractmethod
    def input_example(self) -> dict[str, np.ndarray]:
        """A small valid input of ``predict``: MLflow stores it with the model and checks, when
        logging, that the logged model serves it."""


class LatentModel(GenerativeModel):
    """A one-shot generator x = decode(z), z ~ N(0, I) of ``latent_dim`` dimensions.
    ``predict({"z": (B, latent_dim) float32})`` returns the images (B, C, H, W) in [-1, 1]."""

    sampler_options = ()

    @property
    @abstractmethod
    def latent_dim(self) -> int: ...

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] of latents (B, latent_dim)."""

    def latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` draws of z ~ N(0, I) on the model's device."""
        return torch.randn(n, self.latent_dim, generator=generator, device=self.device)

    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        yield self.decode(self.latents(n, generator))

    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        z = torch.as_tensor(np.asarray(inputs["z"], dtype=np.float32))
        with torch.no_grad():
            return self.decode(z.to(self.device)).cpu().numpy()

    def signature(self) -> Signature:
        return Signature(
            [TensorSpec("float32", (-1, self.latent_dim), "z")],
            [TensorSpec("float32", (-1, *self.params.data.image_shape))],
        )

    def input_example(self) -> dict[str, np.ndarray]:
        """One latent draw."""
        z = np.random.default_rng(0).standard_normal((1, self.latent_dim))
        return {"z": z.astype(np.float32)}


class Method(ABC):
    """One model family's training on one rank (see the module docstring)."""

    family: ClassVar[str]
    model_class: ClassVar[type[GenerativeModel]]

    def __init__(self, params: Params, device: torch.device) -> None:
        """Build the networks on ``device`` and their optimisers; the caller seeds torch first, so
        every rank starts from the same weights."""
        self.params, self.device = params, device

    net: nn.Module
    """The network that is EMA-averaged, sampled and exported, as built (each family sets it in
    ``__init__``); what ``prepare`` makes of it for training is the family's ``wrapped``."""

    @classmethod
    @abstractmethod
    def build_net(cls, params: Params) -> nn.Module:
        """``net``'s architecture from params, on the CPU (to load exported weights into)."""

    @abstractmethod
    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap each trained network for data-parallel training (``ray.train.torch.prepare_model``);
        called once, before any step."""

    @abstractmethod
    def train_step(
        self, micro_batches: Sequence[Batch], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        """Optimiser step number ``step`` (from 0) on ``micro_batches`` (each a ``Batch``; the
        gradient all-reduce only on the last, with DDP's ``no_sync``); returns detached,
        rank-local metrics (scalar tensors), ``loss`` among them."""

    @classmethod
    def warnings(cls, params: Params, history: Sequence[Mapping[str, float]]) -> list[str]:
        """What the training's reported metrics (one row per report) say is wrong beyond a
        non-finite loss (a GAN's mode collapse): one line each, for the console and MLflow."""
        return []

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers and scalers: what a resumed run needs (EMA, step: the loop's)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def model(self, net: nn.Module) -> GenerativeModel:
        """``net`` (the EMA copy of ``self.net``) as a model that samples."""
        return self.model_class(net, self.params)
