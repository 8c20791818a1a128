"""``TrainState``: everything a training run is at a step, checkpointed as one dict.

The method (networks, optimisers, scalers), the EMA of its network, the step, the metric history
(one row per report) and the latest sample grid. The worker checkpoints ``state_dict()`` and
resumes with ``load_state_dict``; ``driver.train`` reads the final checkpoint the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pipeline.methods.base import Method
from pipeline.models import make_ema


class TrainState:
    def __init__(self, method: Method, ema_decay: float) -> None:
        self.method = method
        self.ema = make_ema(method.net, ema_decay)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.samples: torch.Tensor | None = None  # (H, W, C) uint8 grid of the latest samples

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: keys pipeline.train.checkpoint.STATE_KEYS."""
        return {
            "method": self.method.state_dict(),
            "ema": self.ema.state_dict(),
            "step": self.step,
            "history": self.history,
            "samples": self.samples,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        self.ema.load_state_dict(state["ema"])
        self.step, self.history, self.samples = state["step"], state["history"], state["samples"]

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """The EMA copy of the method's network as a plain state_dict: what is exported."""
        return self.ema.module.state_dict()
