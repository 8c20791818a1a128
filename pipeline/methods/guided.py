"""The class-conditional DDPM with classifier-free guidance (Ho and Salimans 2022): family ``ddpm_cfg``.

Training: DDPM's loss on (image, label) pairs, the UNet told the class by an embedding added to its
time embedding (pipeline.models.UNet ``num_classes``); each label is replaced by the null class
(index ``num_classes``) with probability ``guidance.p_uncond``, so one network learns both eps(x_t, c)
and the unconditional eps(x_t, null).

Sampling mixes the two (Ho and Salimans eq. 6): eps~ = (1 + w) eps(x_t, c) - w eps(x_t, null), with
guidance scale w (w = 0: the conditional model). Mixing the network's output rather than eps is the
same for every prediction type: x0 and v are affine in eps with the same x_t term, and the weights
(1 + w) and -w sum to 1. With a learned variance only the mean part is mixed; the variance is the
conditional one's. Any schedule, prediction type and sampler applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from pipeline.config import ConfigError, Params, check_positive, check_unit_interval, section
from pipeline.data.sources import get_source
from pipeline.methods.base import Batch, References, Signature, TensorSpec, balanced_labels
from pipeline.methods.ddpm import DDPM, DDPMModel, build_unet


@dataclass(frozen=True)
class GuidanceConfig:
    """params.yaml ``guidance``: a class embedding added to the time embedding, the label replaced
    by a learned null class with probability ``p_uncond`` while training."""

    p_uncond: float = 0.1  # probability of training on the null class (the unconditional model)
    num_classes: int | None = None  # None: the data's classes (data/processed manifest)

    SET_BY_DATA: ClassVar[tuple[str, ...]] = ("num_classes",)  # not searchable

    def __post_init__(self) -> None:
        with section("guidance"):
            check_unit_interval("p_uncond", self.p_uncond)
            if self.p_uncond == 0:
                raise ValueError(
                    "p_uncond must be > 0: guidance mixes in the unconditional model, which only "
                    "the null-class training draws teach (Ho and Salimans use 0.1 to 0.2)"
                )
            if self.num_classes is not None:
                check_positive("num_classes", self.num_classes)

    def check(self, params: Params) -> None:
        """``num_classes``, when set, is the number of classes of a source that names them."""
        source = get_source(params.data.source)
        if self.num_classes is not None and source.classes:
            if self.num_classes != len(source.classes):
                raise ConfigError(
                    f"guidance.num_classes {self.num_classes} differs from the "
                    f"{len(source.classes)} classes of data.source {source.name!r}; set it to "
                    "null (the data's)"
                )


class Guided(nn.Module):
    """net(x_t, t, labels) with classifier-free guidance scale ``w`` on its first ``channels``
    output channels (the mean part); ``null``: the null class's label."""

    def __init__(self, net: nn.Module, w: float, null: int, channels: int) -> None:
        super().__init__()
        self.net, self.w, self.null, self.channels = net, w, null, channels

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.w == 0:  # exactly the conditional model, at half the cost
            return self.net(x, t, labels)
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        both = self.net(
            torch.cat([x, x]),
            torch.cat([t, t]),
            torch.cat([labels, torch.full_like(labels, self.null)]),
        )
        cond, uncond = both.chunk(2)
        c = self.channels
        mean = (1 + self.w) * cond[:, :c] - self.w * uncond[:, :c]
        return torch.cat([mean, cond[:, c:]], dim=1)


class GuidedModel(DDPMModel):
    """A trained class-conditional DDPM: ``sample(n, cond=labels)`` draws class ``labels[i]``
    (int64 in [0, num_classes)) for sample i, guided by w (``how.guidance``, default
    ``eval.guided.guidance_scale``). ``predict({"x_t", "t", "label"})`` is the network's output; label
    ``num_classes`` asks for the unconditional one."""

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    def conditions(self, n: int, references: References) -> np.ndarray:
        """Every class equally often (``balanced_labels``), int64 (n,)."""
        return balanced_labels(n, self.num_classes).numpy()

    def cond(self, conditions: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(conditions, dtype=torch.long, device=self.device)

    def panel(
        self, samples: torch.Tensor, conditions: np.ndarray | None
    ) -> tuple[torch.Tensor, int]:
        """One class per column (samples drawn from ``conditions``' balanced labels)."""
        return samples, min(len(samples), self.num_classes)

    def check_labels(self, n: int, cond: torch.Tensor | None) -> torch.Tensor:
        """``cond`` as n int64 labels in [0, num_classes) on the model's device; ValueError
        otherwise."""
        if cond is None or cond.shape != (n,) or cond.dtype.is_floating_point:
            got = None if cond is None else f"{tuple(cond.shape)} {cond.dtype}"
            raise ValueError(
                f"a class-conditional model samples from cond = {n} integer class labels, got {got}"
            )
        if len(cond) and not 0 <= int(cond.min()) <= int(cond.max()) < self.num_classes:
            raise ValueError(
                f"class labels must be in [0, {self.num_classes - 1}], got "
                f"{int(cond.min())}..{int(cond.max())}"
            )
        return cond.to(self.device, torch.long)

    def sample_progressive(self, n: int, *, cond: torch.Tensor | None = None, **kwargs):
        """DDPM's reverse process, guided by ``how.guidance``, for ``cond``'s class labels."""
        yield from super().sample_progressive(n, cond=self.check_labels(n, cond), **kwargs)

    def denoiser(self, guidance: float | None) -> nn.Module:
        w = self.params.eval.guided.guidance_scale if guidance is None else guidance
        return Guided(self.net, w, null=self.num_classes, channels=self.params.data.channels)

    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        x_t, t, label = (torch.as_tensor(np.asarray(inputs[k])) for k in ("x_t", "t", "label"))
        with torch.no_grad():
            return self.net(x_t.float(), t.long(), label.long()).numpy()

    def signature(self) -> Signature:
        base = super().signature()
        return Signature([*base.inputs, TensorSpec("int64", (-1,), "label")], base.outputs)

    def input_example(self) -> dict[str, np.ndarray]:
        """One pure-noise image at the last timestep, class 0."""
        return {**super().input_example(), "label": np.zeros(1, dtype=np.int64)}


class DDPMGuided(DDPM):
    """DDPM's training on (image, label) pairs with the label dropped to the null class with
    probability ``guidance.p_uncond`` (drawn from the step's seeded RNG)."""

    family = "ddpm_cfg"
    model_class = GuidedModel

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        if params.guidance.num_classes is None:
            raise ValueError(
                "guidance.num_classes is unresolved: the train stage sets it from the data's classes"
            )
        return build_unet(params, num_classes=params.guidance.num_classes)

    def split(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """[images, labels] -> (x0, labels with each replaced by the null class w.p. p_uncond)."""
        x0, labels = batch
        null = self.params.guidance.num_classes
        drop = torch.rand(labels.shape, device=labels.device) < self.params.guidance.p_uncond
        return x0, torch.where(drop, torch.full_like(labels, null), labels)
