"""The tune section: which keys a sweep searches (``space``, see pipeline.config.space), with what
budget per trial, and the policy of what a trial may and may not change."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config.loader import check_positive, check_seed, leaf_hints, optional_inner, section
from pipeline.config.sections import (
    MAX_SAMPLES,
    TRAIN_OPERATIONAL,
    DiffusionConfig,
    ModelConfig,
    TrainConfig,
)
from pipeline.config.space import Spec, parse_space
from pipeline.registry import section_configs

# The default search: every beta schedule once, each with its own draw of lr and min-SNR weighting.
DEFAULT_SPACE = {
    "diffusion": {
        "schedule": {"grid": ["linear", "scaled_linear", "cosine", "sigmoid"]},
        "loss": {"min_snr_gamma": {"choice": [None, 5.0]}},
    },
    "train": {"lr": {"loguniform": [1.0e-4, 1.0e-3]}},
}
# train keys a trial's budget sets (tune.steps, tune.workers_per_trial, ...) or that only watch it
TRIAL_FIXED = ("steps", "num_workers", "use_gpu", *TRAIN_OPERATIONAL)


def tune_sections() -> dict[str, Any]:
    """What tune.space may search: the sections that shape a model (the diffusion process, the
    UNet, training, every family's own; pipeline.registry) -> their dataclasses."""
    return {
        "diffusion": DiffusionConfig,
        "model": ModelConfig,
        **section_configs(),
        "train": TrainConfig,
    }


@dataclass(frozen=True)
class SearchConfig:
    """The hyperparameter search (pipeline.tune): trials are short trainings ranked on
    fid_featurenet of a fixed seeded sample set at milestones (see pipeline.config.space)."""

    enabled: bool = True  # false: the train stage uses params.yaml alone
    space: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_SPACE))
    num_samples: int = 1  # trials per grid point (all grid combinations, num_samples times each)
    search: Literal["random", "optuna"] = "random"  # how non-grid values are drawn
    scheduler: Literal["asha", "fifo"] = "asha"  # asha stops weak trials at milestones
    steps: int = 120  # optimiser steps of a trial that is never stopped (ASHA max_t)
    eval_every: int = 40  # milestone interval: FID measured, reported and checkpointed
    reduction_factor: int = 2  # ASHA: a trial continues past a milestone if in the best 1/rf
    batch_size: int | None = 32  # global batch of a trial; null: train.batch_size
    workers_per_trial: int = 1  # Ray Train workers per trial
    max_concurrent_trials: int | None = None  # null: as many as the cluster's CPUs (GPUs) fit
    eval_samples: int = 100  # images in the fixed milestone sample set
    eval_steps: int = 10  # DDIM steps for them
    seed: int = 0  # search draws and the milestone samples' x_T

    def __post_init__(self) -> None:
        with section("tune"):
            for name in ("num_samples", "steps", "eval_every", "workers_per_trial", "eval_steps"):
                check_positive(name, getattr(self, name))
            if self.steps % self.eval_every:
                raise ValueError(
                    f"steps {self.steps} must be a multiple of eval_every {self.eval_every} "
                    f"(a trial ends on a milestone)"
                )
            if self.reduction_factor < 2:
                raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")
            if self.eval_samples < 2:
                raise ValueError(f"eval_samples must be >= 2 (FID), got {self.eval_samples}")
            check_positive("eval_samples", self.eval_samples, MAX_SAMPLES)
            check_seed("seed", self.seed)
            if self.enabled and not self.space:
                raise ValueError(
                    "space is empty but enabled is true: list the keys to search, or set "
                    "tune.enabled: false"
                )
            for name in ("batch_size", "max_concurrent_trials"):
                if getattr(self, name) is not None:
                    check_positive(name, getattr(self, name))
            specs = self.specs
            grids = sorted(k for k, spec in specs.items() if spec.kind == "grid")
            if grids and self.search != "random":
                raise ValueError(
                    f"grid ({', '.join(grids)}) needs search 'random'; "
                    f"{self.search} draws every value (use choice)"
                )

    @property
    def specs(self) -> dict[str, Spec]:
        """The parsed space (pipeline.config.space); ValueError for a bad or untunable key, or a
        range whose draws the key's type cannot take (uniform on an integer key)."""
        fixed = TRIAL_FIXED + (("batch_size",) if self.batch_size is not None else ())
        hints = {}
        for name, config in tune_sections().items():
            unsearchable = fixed if name == "train" else getattr(config, "SET_BY_DATA", ())
            hints.update(
                (key, hint)
                for key, hint in leaf_hints(config, name).items()
                if key.split(".", 1)[1] not in unsearchable
            )
        return parse_typed_space(self.space, hints)

    @property
    def budget(self) -> dict[str, Any]:
        """The train params every trial runs with, as dotted keys."""
        budget = {
            "train.steps": self.steps,
            "train.num_workers": self.workers_per_trial,
            "train.checkpoint_every": self.eval_every,  # milestones are resume points
            "train.sample_every": 0,  # the milestone samples are the trial's grids
        }
        if self.batch_size is not None:
            budget["train.batch_size"] = self.batch_size
        return budget


def parse_typed_space(space: dict[str, Any], hints: dict[str, Any]) -> dict[str, Spec]:
    """``space`` parsed (pipeline.config.space.parse_space) for the searchable keys of ``hints``
    (dotted key -> type hint), each range checked against its key's type (``check_range_type``);
    ValueError "space: ..." naming the key."""
    try:
        specs = parse_space(space, hints)
        for key, spec in specs.items():
            check_range_type(key, spec, hints[key])
    except ValueError as exc:
        raise ValueError(f"space: {exc}") from None
    return specs


def check_range_type(key: str, spec: Spec, hint: Any) -> None:
    """Ranges draw numbers: uniform/loguniform need a float key, randint an integer or float one."""
    if spec.kind not in ("uniform", "loguniform", "randint"):
        return
    inner = optional_inner(hint)
    if inner is float or (spec.kind == "randint" and inner is int):
        return
    instead = "randint or choice" if inner is int else "choice"
    raise ValueError(
        f"{key}: {spec.kind} draws {'integers' if spec.kind == 'randint' else 'real numbers'} "
        f"but {key} takes {getattr(inner, '__name__', str(inner))} values; use {instead}"
    )
