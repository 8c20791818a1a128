"""The two interfaces a model family implements.

``Method``: training on one data-parallel rank. It owns its networks, optimisers and grad scalers;
the loop (pipeline.train.worker) seeds torch, builds it, lets it wrap what it trains for DDP, calls
``train_step`` on each step's micro-batches, keeps an EMA of ``net`` and checkpoints
``state_dict()``. A GAN steps two optimisers inside ``train_step``.

``GenerativeModel``: a trained ``net`` that samples images in [-1, 1] (the live EMA network during
training, or the exported one in evaluation, MLflow and the CLI).
"""

from __future__ import annotations

import collections
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from mlflow.models.signature import ModelSignature
from torch import nn

from pipeline.config import Params


class GenerativeModel(ABC):
    """A trained network and the params it was trained with, ready to sample."""

    conditional: ClassVar[bool] = False  # whether ``sample`` needs ``cond`` (see ``condition``)

    def __init__(self, net: nn.Module, params: Params) -> None:
        self.net, self.params = net, params

    def condition(self, images: torch.Tensor) -> torch.Tensor | None:
        """The ``cond`` a conditional family samples from, derived from real images (N, C, H, W)
        in [-1, 1] (a colorizer: their lightness); None for unconditional families."""
        return None

    def panel(
        self, samples: torch.Tensor, references: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        """The picture people look at for ``samples`` (drawn from ``condition(references)`` by a
        conditional family): the images to tile and how many per row (``image_grid``)."""
        return samples, math.ceil(math.sqrt(len(samples)))

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters()), torch.empty(0)).device

    @abstractmethod
    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        steps: int | None = None,
        sampler: str = "ddim",
        eta: float = 0.0,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """The states (n, C, H, W) from the start (noise) to the sample, one per network call; the
        last one is the sample. ``steps``, ``sampler``, ``eta``: how an iterative family samples
        (one-shot families yield their sample once and ignore them). ``generator`` (on the
        model's device) fixes every draw; ``cond``: the conditioning of a conditional family."""

    def sample(self, n: int, **kwargs: Any) -> torch.Tensor:
        """``n`` samples in [-1, 1], (n, C, H, W): the last state of ``sample_progressive``."""
        with torch.no_grad():
            (last,) = collections.deque(self.sample_progressive(n, **kwargs), maxlen=1)
        return last.clamp(-1.0, 1.0)

    @abstractmethod
    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        """The network's output for named numpy inputs: what ``mlflow.pyfunc`` serves."""

    @abstractmethod
    def signature(self) -> ModelSignature:
        """The tensor signature of ``predict``, logged with the MLflow model."""

    @abstractmethod
    def input_example(self) -> dict[str, np.ndarray]:
        """A small valid input of ``predict``: MLflow stores it with the model and checks, when
        logging, that the logged model serves it."""


class Method(ABC):
    """One model family's training on one rank (see the module docstring)."""

    family: ClassVar[str]
    model_class: ClassVar[type[GenerativeModel]]

    def __init__(self, params: Params, device: torch.device) -> None:
        """Build the networks on ``device`` and their optimisers; the caller seeds torch first, so
        every rank starts from the same weights."""
        self.params, self.device = params, device

    @property
    @abstractmethod
    def net(self) -> nn.Module:
        """The network that is EMA-averaged, sampled and exported (unwrapped)."""

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
        self, micro_batches: Sequence[torch.Tensor], *, lr: float
    ) -> dict[str, torch.Tensor]:
        """One optimiser step on ``micro_batches`` (each (B, C, H, W) in [-1, 1]; the gradient
        all-reduce only on the last, with DDP's ``no_sync``); returns detached, rank-local metrics
        (scalar tensors), ``loss`` among them."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers and scalers: what a resumed run needs (EMA, step: the loop's)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def model(self, net: nn.Module) -> GenerativeModel:
        """``net`` (the EMA copy of ``self.net``) as a model that samples."""
        return self.model_class(net, self.params)
