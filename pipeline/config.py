"""Typed, frozen params: one dataclass per params.yaml section, validated when loaded.

``load_params("params.yaml")`` returns a ``Params``; unknown keys, wrong types and bad values raise
``ConfigError`` naming the key (``diffusion.beta_end``), the value and what is allowed, before any
compute starts. Defaults live here and in params.yaml (which documents each one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.data.sources import get_source
from pipeline.diffusion.gaussian import check_loss_weights
from pipeline.diffusion.schedules import check_beta_range, check_schedule, check_timesteps
from pipeline.models.unet import check_attention_resolutions
from pipeline.tune.space import Spec, override, parse_space


class ConfigError(ValueError):
    """A params value is missing, unknown, of the wrong type or out of range."""


# Upper bounds: values past them fail late (out of memory, integer overflow in torch), not here.
MAX_INT = 2**63 - 1  # any integer param: torch and numpy hold 64-bit signed integers
MAX_TIMESTEPS = 100_000  # T; betas and every per-timestep buffer are T long
MAX_IMAGE_SIZE = 1024  # pixels per side
MAX_SAMPLES = 200_000  # generated images scored (4x the usual 50k of FID), held in memory as uint8
MAX_GRID = 1024  # images in one sample grid or GIF


@dataclass(frozen=True)
class LossConfig:
    """Loss weights: w_simple * L_simple + w_vlb * L_vlb, min-SNR-gamma weighting when gamma is set."""

    w_simple: float = 1.0  # weight of the MSE on the network's target
    w_vlb: float = 0.0  # weight of L_vlb (bits/dim); > 0 only with variance_type learned_range
    min_snr_gamma: float | None = None  # None: off; Hang et al. 2023 use 5.0


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process and what the network predicts (see pipeline.diffusion)."""

    schedule: str = "linear"  # one of BETA_SCHEDULES
    timesteps: int = 1000  # T
    beta_start: float = 1e-4  # beta_0 (linear, scaled_linear, sigmoid)
    beta_end: float = 0.02  # beta_{T-1} (linear, scaled_linear, sigmoid)
    zero_terminal_snr: bool = False  # rescale so alpha_bar_{T-1} = 0 (Lin et al. 2023)
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"
    variance_type: Literal["fixed_small", "fixed_large", "learned_range"] = "fixed_small"
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        with _section("diffusion"):
            check_schedule(self.schedule)
            check_timesteps(self.timesteps)
            _check_positive("timesteps", self.timesteps, MAX_TIMESTEPS)
            check_beta_range(self.beta_start, self.beta_end)
            if self.zero_terminal_snr and self.timesteps < 2:
                raise ValueError(f"zero_terminal_snr needs timesteps >= 2, got {self.timesteps}")
            if self.zero_terminal_snr and self.prediction_type == "epsilon":
                raise ValueError(
                    "zero_terminal_snr: true needs prediction_type 'v_prediction' or 'sample' "
                    "(epsilon cannot recover x_0 where alpha_bar = 0)"
                )
            check_loss_weights(
                self.variance_type, self.loss.w_simple, self.loss.w_vlb, self.loss.min_snr_gamma
            )


@dataclass(frozen=True)
class ModelConfig:
    """UNet architecture (pipeline.models.UNet); image size and channels come from the data."""

    base_channels: int = 32  # channels at full resolution
    channel_mult: tuple[int, ...] = (1, 2, 2)  # per level; each level after the first halves H, W
    num_res_blocks: int = 2  # residual blocks per level
    attention_resolutions: tuple[int, ...] = (7,)  # feature-map sizes with self-attention
    mid_attention: bool = True  # self-attention in the bottleneck
    num_heads: int = 4  # attention heads; must divide every attention level's channels
    dropout: float = 0.0  # in residual blocks, 0 <= p < 1

    def __post_init__(self) -> None:
        with _section("model"):
            _check_positive("base_channels", self.base_channels)
            _check_positive("num_res_blocks", self.num_res_blocks)
            _check_positive("num_heads", self.num_heads)
            if not self.channel_mult or any(m < 1 for m in self.channel_mult):
                raise ValueError(
                    f"channel_mult must be a non-empty list of integers >= 1, got {self.channel_mult}"
                )
            if not 0 <= self.dropout < 1:
                raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which images, and what they look like once preprocessed (pipeline.data)."""

    source: str = "mnist-5k"  # one of pipeline.data.SOURCES
    folder: str | None = None  # the directory of images for source 'folder'
    image_size: int = 28  # H = W in pixels
    channels: int = 1  # 1 grayscale, 3 RGB
    fit: Literal["resize", "pad_crop"] = "resize"  # how other sizes become image_size
    val_fraction: float = 0.1  # share of the training images held out for validation
    test_fraction: float = 0.1  # share held out for test when the source has no test split
    seed: int = 0  # split assignment
    limit: int | None = None  # at most this many images per official split (quick runs)
    strict: bool = False  # fail on an undecodable image instead of skipping it

    def __post_init__(self) -> None:
        with _section("data"):
            get_source(self.source)
            if (self.source == "folder") != (self.folder is not None):
                raise ValueError(
                    f"folder must be set exactly when source is 'folder', got source "
                    f"{self.source!r} and folder {self.folder!r}"
                )
            _check_positive("image_size", self.image_size, MAX_IMAGE_SIZE)
            _check_seed("seed", self.seed)
            if self.channels not in (1, 3):
                raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
            for name in ("val_fraction", "test_fraction"):
                if not 0 <= getattr(self, name) < 1:
                    raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
            if self.val_fraction + self.test_fraction >= 1:
                raise ValueError(
                    f"val_fraction + test_fraction must be < 1 (training needs images), got "
                    f"{self.val_fraction} + {self.test_fraction}"
                )
            if self.limit is not None:
                _check_positive("limit", self.limit)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of a preprocessed image."""
        return (self.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class DownloadConfig:
    """How files are fetched; none of this changes the data, so no stage depends on it."""

    cache_dir: str | None = (
        None  # verified downloads; None: $XDG_CACHE_HOME or ~/.cache, /diffusion-pipeline
    )
    retries: int = 3  # further attempts per mirror after a transient error
    backoff_s: float = 1.0  # wait before retry k: backoff_s * 2^k seconds
    timeout_s: float = 60.0  # socket timeout per request

    def __post_init__(self) -> None:
        with _section("download"):
            if self.retries < 0:
                raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
            if self.backoff_s < 0 or self.timeout_s <= 0:
                raise ValueError(
                    f"backoff_s must be >= 0 and timeout_s > 0, got {self.backoff_s!r} and {self.timeout_s!r}"
                )

    def resolved_cache_dir(self) -> Path:
        """The absolute download cache directory."""
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser().resolve()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "diffusion-pipeline" / "downloads"


# train params that change how a run is watched or restarted, not the weights it produces
TRAIN_OPERATIONAL = (
    "max_failures",
    "checkpoint_every",
    "log_every",
    "sample_every",
    "sample_count",
    "sample_steps",
)


@dataclass(frozen=True)
class TrainConfig:
    """Data-parallel training on Ray Train workers (pipeline.train)."""

    steps: int = 500  # optimiser steps
    batch_size: int = 64  # global batch, split evenly across workers
    num_workers: int = 2  # Ray Train workers (data-parallel ranks)
    use_gpu: Literal["auto", True, False] = "auto"  # auto: GPUs when the cluster has them
    lr: float = 2e-4  # AdamW peak learning rate
    warmup_steps: int = 50  # linear warmup from 0 to lr
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0: off
    ema_decay: float = 0.999  # EMA of weights (warmed up), used for sampling
    checkpoint_every: int = 200  # steps between checkpoints (resume points)
    log_every: int = 10  # steps between reported metrics
    seed: int = 0  # model init, data order, and (with rank and step) every step's noise
    max_failures: int = 1  # worker-group restarts from the last checkpoint
    grad_accum_steps: int = 1  # micro-batches per optimiser step on each worker
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    compile: bool = False  # torch.compile the UNet (first steps are slow while it compiles)
    sample_every: int = 200  # steps between sample grids logged to MLflow; 0: only at the end
    sample_count: int = 16  # images in each grid (EMA model, DDIM eta=0, seeded)
    sample_steps: int = 50  # DDIM steps for the grids

    def __post_init__(self) -> None:
        with _section("train"):
            for name in (
                "steps",
                "batch_size",
                "num_workers",
                "checkpoint_every",
                "log_every",
                "grad_accum_steps",
                "sample_steps",
            ):
                _check_positive(name, getattr(self, name))
            _check_positive("sample_count", self.sample_count, MAX_GRID)
            _check_seed("seed", self.seed)
            if self.batch_size % (self.num_workers * self.grad_accum_steps):
                raise ValueError(
                    f"batch_size {self.batch_size} is not divisible by num_workers "
                    f"{self.num_workers} x grad_accum_steps {self.grad_accum_steps}"
                )
            if self.sample_every < 0:
                raise ValueError(f"sample_every must be an integer >= 0, got {self.sample_every}")
            if not (math.isfinite(self.lr) and self.lr > 0):
                raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
            if self.warmup_steps < 0 or self.max_failures < 0:
                raise ValueError(
                    f"warmup_steps and max_failures must be >= 0, got {self.warmup_steps}, {self.max_failures}"
                )
            if self.weight_decay < 0 or self.grad_clip < 0:
                raise ValueError(
                    f"weight_decay and grad_clip must be >= 0, got {self.weight_decay}, {self.grad_clip}"
                )
            if not 0 <= self.ema_decay < 1:
                raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")

    @property
    def micro_batch_size(self) -> int:
        """Images per worker per forward pass: batch_size / (num_workers * grad_accum_steps)."""
        return self.batch_size // (self.num_workers * self.grad_accum_steps)


@dataclass(frozen=True)
class FeatureNetConfig:
    """The offline FID feature network: a small classifier trained on the dataset (pipeline.evaluate)."""

    epochs: int = 5  # passes over the train split
    batch_size: int = 32  # images per step
    lr: float = 2e-3  # AdamW learning rate
    width: int = 16  # channels of the first conv stage (then 2x, 4x); a multiple of 8
    feature_dim: int = 128  # size of the penultimate layer: the FID/KID feature space
    seed: int = 0  # initial weights and data order

    def __post_init__(self) -> None:
        with _section("featurenet"):
            for name in ("epochs", "batch_size", "feature_dim"):
                _check_positive(name, getattr(self, name))
            _check_seed("seed", self.seed)
            if self.width < 8 or self.width % 8:
                raise ValueError(f"width must be a positive multiple of 8, got {self.width!r}")
            if not (math.isfinite(self.lr) and self.lr > 0):
                raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Sample quality of the trained EMA model: FID and KID against the held-out test split."""

    num_samples: int = 500  # generated images scored
    sampler: Literal["ddpm", "ddim"] = "ddim"  # reverse process used to generate them
    steps: int = 40  # network evaluations per sample, <= diffusion.timesteps
    eta: float = 0.0  # DDIM stochasticity (0: deterministic; 1: DDPM-like); ddim only
    batch_size: int = 250  # images per Ray sampling task (num_samples / num_workers: none idle)
    num_workers: int = 2  # Ray tasks generating concurrently (1 CPU each)
    seed: int = 0  # batch b of batch_size images is seeded by (seed, b)
    features: Literal["featurenet", "inception"] = "featurenet"  # feature space of the scores
    inception_weights: str | None = None  # the FID Inception .pth file; never downloaded
    kid_subset_size: int = 100  # KID: images per subset (capped at the smaller set)
    grid_count: int = 64  # images in reports/samples.png
    trajectory_count: int = 8  # samples in the denoising GIF (x_T -> x_0)

    def __post_init__(self) -> None:
        with _section("eval"):
            for name in ("steps", "batch_size", "num_workers"):
                _check_positive(name, getattr(self, name))
            _check_positive("num_samples", self.num_samples, MAX_SAMPLES)
            for name in ("grid_count", "trajectory_count"):
                _check_positive(name, getattr(self, name), MAX_GRID)
            _check_seed("seed", self.seed)
            if self.num_samples < 2:
                raise ValueError(
                    f"num_samples must be >= 2 (FID needs a covariance), got {self.num_samples}"
                )
            if self.kid_subset_size < 2:
                raise ValueError(
                    f"kid_subset_size must be an integer >= 2 (KID's unbiased estimate divides "
                    f"by m - 1), got {self.kid_subset_size!r}"
                )
            if not 0 <= self.eta <= 1:
                raise ValueError(f"eta must be in [0, 1], got {self.eta!r}")


# The default search: every beta schedule once, each with its own draw of lr and min-SNR weighting.
DEFAULT_SPACE = {
    "diffusion.schedule": {"grid": ["linear", "scaled_linear", "cosine", "sigmoid"]},
    "train.lr": {"loguniform": [1.0e-4, 1.0e-3]},
    "diffusion.loss.min_snr_gamma": {"choice": [None, 5.0]},
}
TUNE_SECTIONS = ("diffusion", "model", "train")  # what tune.space may search
# train keys a trial's budget sets (tune.steps, tune.workers_per_trial, ...) or that only watch it
TRIAL_FIXED = ("steps", "num_workers", "use_gpu", *TRAIN_OPERATIONAL)


@dataclass(frozen=True)
class TuneConfig:
    """The hyperparameter search (pipeline.tune): trials are short trainings ranked on
    fid_featurenet of a fixed seeded sample set at milestones (see pipeline.tune.space)."""

    enabled: bool = True  # false: the train stage uses params.yaml alone
    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))
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
        with _section("tune"):
            for name in ("num_samples", "steps", "eval_every", "workers_per_trial", "eval_steps"):
                _check_positive(name, getattr(self, name))
            if self.steps % self.eval_every:
                raise ValueError(
                    f"steps {self.steps} must be a multiple of eval_every {self.eval_every} "
                    f"(a trial ends on a milestone)"
                )
            if self.reduction_factor < 2:
                raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")
            if self.eval_samples < 2:
                raise ValueError(f"eval_samples must be >= 2 (FID), got {self.eval_samples}")
            _check_positive("eval_samples", self.eval_samples, MAX_SAMPLES)
            _check_seed("seed", self.seed)
            if self.enabled and not self.space:
                raise ValueError(
                    "space is empty but enabled is true: list the keys to search, or set "
                    "tune.enabled: false"
                )
            for name in ("batch_size", "max_concurrent_trials"):
                if getattr(self, name) is not None:
                    _check_positive(name, getattr(self, name))
            specs = self.specs
            grids = sorted(k for k, spec in specs.items() if spec.kind == "grid")
            if grids and self.search != "random":
                raise ValueError(
                    f"grid ({', '.join(grids)}) needs search 'random'; "
                    f"{self.search} draws every value (use choice)"
                )

    @property
    def specs(self) -> dict[str, Spec]:
        """The parsed space (pipeline.tune.space); ValueError for a bad or untunable key, or a
        range whose draws the key's type cannot take (uniform on an integer key)."""
        fixed = TRIAL_FIXED + (("batch_size",) if self.batch_size is not None else ())
        sections = {"diffusion": DiffusionConfig, "model": ModelConfig, "train": TrainConfig}
        hints = {
            key: hint
            for section in TUNE_SECTIONS
            for key, hint in _leaf_hints(sections[section], section).items()
            if not (section == "train" and key.split(".", 1)[1] in fixed)
        }
        try:
            specs = parse_space(self.space, hints)
            for key, spec in specs.items():
                _check_range_type(key, spec, hints[key])
        except ValueError as exc:
            raise ValueError(f"space: {exc}") from None
        return specs

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


@dataclass(frozen=True)
class MlflowConfig:
    """Where runs are recorded; the tracking URI comes from MLFLOW_TRACKING_URI or the project."""

    experiment: str = "diffusion-pipeline"  # MLflow experiment name, created when missing
    registered_model: str | None = "diffusion-pipeline-ddpm"  # each training adds a version; null: off

    def __post_init__(self) -> None:
        with _section("mlflow"):
            if not self.experiment.strip():
                raise ValueError("experiment must be a non-empty name")
            if self.registered_model is not None and not self.registered_model.strip():
                raise ValueError("registered_model must be a non-empty name or null")


@dataclass(frozen=True)
class RayConfig:
    """Which Ray cluster runs the workers."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else a local cluster started on demand


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    featurenet: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        with _section("model"):
            check_attention_resolutions(self.model, self.data.image_size)
        T = self.diffusion.timesteps
        for key, steps in (
            ("train.sample_steps", self.train.sample_steps),
            ("eval.steps", self.eval.steps),
            ("tune.eval_steps", self.tune.eval_steps),
        ):
            if steps > T:
                raise ConfigError(f"{key} {steps} exceeds diffusion.timesteps {T}")
        # what later stages need of the data, checked before any stage runs
        if self.tune.enabled and self.data.val_fraction == 0:
            raise ConfigError(
                "data.val_fraction 0 leaves no validation images, on which the tune stage ranks "
                "its trials: set it > 0, or tune.enabled: false"
            )
        source = get_source(self.data.source)
        if self.data.test_fraction == 0 and not source.has_test_split:
            raise ConfigError(
                f"data.test_fraction 0 leaves no test images (source {source.name!r} has no "
                "official test split); the featurenet and evaluate stages score on them: set it > 0"
            )
        if self.tune.space:
            self._check_trials()

    def with_values(self, values: Mapping[str, Any]) -> Params:
        """These params with each dotted key of ``values`` set, validated: what one trial runs.
        The copy's search is off (``tune.enabled`` false, empty space)."""
        raw = override(to_dict(self), {**values, "tune.enabled": False, "tune.space": {}})
        return from_dict(Params, raw)

    def _check_trials(self) -> None:
        """Every listed value and range end of the space makes valid params with the trial budget
        and the first value of every other key; errors name the key and the value. A value that
        also fails with only the budget and the space's fixed values around it is at fault
        itself, and is reported first, so the message blames the right key (a bad range end of
        one key does not read as an error of another). Other combinations of searched values can
        still fail their own trial, with that error."""
        specs = self.tune.specs
        fixed = {k: spec.values[0] for k, spec in specs.items() if spec.kind == "fixed"}
        alone = {**self.tune.budget, **fixed}
        first = {**alone, **{k: spec.values[0] for k, spec in specs.items()}}

        def error(key: str, value: Any, others: Mapping[str, Any]) -> ConfigError | None:
            try:
                self.with_values({**others, key: value})
            except ConfigError as exc:
                return exc
            return None

        cases = [(key, value) for key, spec in specs.items() for value in spec.values]
        for key, value in cases:
            exc = error(key, value, alone)
            if exc is not None and error(key, value, first) is not None:
                raise ConfigError(f"tune: space.{key} value {value!r}: {exc}")
        for key, value in cases:
            exc = error(key, value, first)
            if exc is not None:
                raise ConfigError(
                    f"tune: space.{key} value {value!r} with the other keys' first values: {exc}"
                )


# --------------------------------------------------------------------------- loading
@contextlib.contextmanager
def _section(name: str) -> Iterator[None]:
    """Re-raise a ValueError from a check as a ConfigError prefixed by the params section."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _check_positive(name: str, value: int, maximum: int | None = None) -> None:
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}, got {value:,}")


def _check_seed(name: str, value: int) -> None:
    if not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be an integer in [0, 2^63 - 1], got {value!r}")


def _check_range_type(key: str, spec: Spec, hint: Any) -> None:
    """Ranges draw numbers: uniform/loguniform need a float key, randint an integer or float one."""
    if spec.kind not in ("uniform", "loguniform", "randint"):
        return
    scalar = _scalar(hint)
    if scalar is float or (spec.kind == "randint" and scalar is int):
        return
    instead = "randint or choice" if scalar is int else "choice"
    raise ValueError(
        f"{key}: {spec.kind} draws {'integers' if spec.kind == 'randint' else 'real numbers'} "
        f"but {key} takes {getattr(scalar, '__name__', str(scalar))} values; use {instead}"
    )


def _scalar(hint: Any) -> Any:
    """``X | None`` -> X; other hints unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner
    return hint


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint (int, float, bool, str, Literal, tuple[int, ...],
    X | None, a nested dataclass) and return it converted (lists -> tuples, ints -> floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of {_fields(hint)}, got {value!r}")
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(map(str, args))
            raise ConfigError(f"{key}: unknown value {value!r}; allowed: {allowed}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {_shown(value)}{_string_hint(value)}")
        if abs(value) > MAX_INT:
            raise ConfigError(f"{key} must be an integer of at most 2^63 - 1, got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise ConfigError(
                f"{key} must be a finite number, got {_shown(value)}{_string_hint(value)}"
            )
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for {key}")  # a bug in this module


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _shown(value: Any) -> str:
    """repr of a value, shortened (a 400-digit number is not worth printing whole)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _string_hint(value: Any) -> str:
    """For a number that YAML read as a string (``1e-4``: PyYAML follows YAML 1.1, where a float
    needs a dot), say how to write it."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    mantissa, _, exponent = value.lower().partition("e")
    fixed = f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else value
    return f" (YAML reads {value} as text: write {fixed})"


def _leaf_hints(cls: type, prefix: str) -> dict[str, Any]:
    """The dotted keys of a config dataclass's leaf fields and their type hints:
    {"diffusion.loss.w_vlb": float, ...}."""
    hints = typing.get_type_hints(cls)
    leaves: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.update(_leaf_hints(hints[f.name], key))
        else:
            leaves[key] = hints[f.name]
    return leaves


def _fields(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys; missing keys take defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; allowed: {_fields(cls)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**kwargs)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would otherwise accept silently: a key given twice
    (last wins) and keys that are not strings (``on:`` is the boolean true in YAML 1.1, ``1:`` a
    number), which no params key is."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(
                    f"line {line}: key {key_node.value!r} is read as {type(key).__name__} "
                    f"{key!r}, not a name; quote it or fix the indentation"
                )
            if key in seen:
                raise ConfigError(
                    f"line {line}: duplicate key {key!r} (first at line {seen[key]}); "
                    "YAML would silently keep the last one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (None when empty); ConfigError naming the file and the line
    for a syntax error, a duplicate key or a key that is not a string."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None


def load_params(path: str | Path) -> Params:
    """Read and validate a params.yaml file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    raw = load_yaml(path) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must hold a mapping of sections ({_fields(Params)})")
    return from_dict(Params, raw)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))
