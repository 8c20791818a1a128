"""The params sections a run is made of, one frozen dataclass each, validated when built.

Defaults live here and in params.yaml (which documents each one). The tune section is in
``pipeline.config.search``, the whole file in ``pipeline.config.params``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.config.loader import check_positive, check_seed, section
from pipeline.data.sources import SOURCES, get_source
from pipeline.diffusion.gaussian import check_loss_weights
from pipeline.diffusion.samplers import SAMPLERS
from pipeline.diffusion.schedules import check_beta_range, check_schedule, check_timesteps
from pipeline.registry import check_family
from pipeline.scene import PLANES, SCENES

# Upper bounds: values past them fail late (out of memory, integer overflow in torch), not here.
MAX_TIMESTEPS = 100_000  # T; betas and every per-timestep buffer are T long
MAX_IMAGE_SIZE = 1024  # pixels per side
MAX_VIEWS = 1024  # data.views per photo
MAX_PHOTOS = 10_000  # eval.colorizer.photos: whole photos colorized one at a time
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
        with section("diffusion"):
            check_schedule(self.schedule)
            check_timesteps(self.timesteps)
            check_positive("timesteps", self.timesteps, MAX_TIMESTEPS)
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
    """Which model family trains (pipeline.methods), and the UNet architecture
    (pipeline.models.UNet) of the diffusion families; image size and channels come from the data."""

    family: str = "ddpm"  # one of pipeline.registry.FAMILIES
    base_channels: int = 32  # channels at full resolution
    channel_mult: tuple[int, ...] = (1, 2, 2)  # per level; each level after the first halves H, W
    num_res_blocks: int = 2  # residual blocks per level
    attention_resolutions: tuple[int, ...] = (7,)  # feature-map sizes with self-attention
    mid_attention: bool = True  # self-attention in the bottleneck
    num_heads: int = 4  # attention heads; must divide every attention level's channels
    dropout: float = 0.0  # in residual blocks, 0 <= p < 1

    def __post_init__(self) -> None:
        with section("model"):
            check_family(self.family)
            check_positive("base_channels", self.base_channels)
            check_positive("num_res_blocks", self.num_res_blocks)
            check_positive("num_heads", self.num_heads)
            if not self.channel_mult or any(m < 1 for m in self.channel_mult):
                raise ValueError(
                    f"channel_mult must be a non-empty list of integers >= 1, got {self.channel_mult}"
                )
            if not 0 <= self.dropout < 1:
                raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


def check_unit_interval(name: str, value: float, *, closed: bool = False) -> None:
    """ValueError unless 0 <= value < 1 (``closed``: <= 1)."""
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")


def check_width(width: int) -> None:
    if width < 8 or width % 8:
        raise ValueError(f"width must be a positive multiple of 8, got {width!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which images, and what they look like once preprocessed (pipeline.data)."""

    source: str = "mnist-5k"  # one of pipeline.data.SOURCES
    folder: str | None = None  # the directory of images for source 'folder'
    image_size: int = 28  # H = W in pixels
    channels: int = 1  # 1 grayscale, 3 RGB
    fit: Literal["resize", "pad_crop", "tiles", "views"] = (
        "resize"  # how other sizes become image_size
    )
    tile_scales: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0)  # fit 'tiles': shorter side / size
    scene: str = "none"  # fit 'tiles': what a crop is told of its photo: none | box | photo
    views: int = 32  # fit 'views': square views of most of each photo, per photo
    view_scale: tuple[float, float] = (0.6, 1.0)  # fit 'views': a view's side / the shorter side
    val_fraction: float = 0.1  # share of the training images held out for validation
    test_fraction: float = 0.1  # share held out for test when the source has no test split
    seed: int = 0  # split assignment
    limit: int | None = None  # at most this many images per official split (quick runs)
    strict: bool = False  # fail on an undecodable image instead of skipping it

    def __post_init__(self) -> None:
        with section("data"):
            reads_folder = [name for name, source in SOURCES.items() if source.needs_folder]
            if get_source(self.source).needs_folder != (self.folder is not None):
                raise ValueError(
                    f"folder must be set exactly when source reads one ({', '.join(reads_folder)}), "
                    f"got source {self.source!r} and folder {self.folder!r}"
                )
            check_positive("image_size", self.image_size, MAX_IMAGE_SIZE)
            check_seed("seed", self.seed)
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
                check_positive("limit", self.limit)
            if not self.tile_scales or min(self.tile_scales) < 1:
                raise ValueError(
                    f"tile_scales must be a non-empty list of numbers >= 1 (the shorter side as a "
                    f"multiple of image_size), got {list(self.tile_scales)}"
                )
            if self.scene not in SCENES:
                raise ValueError(f"scene must be one of {', '.join(SCENES)}, got {self.scene!r}")
            if self.scene != "none" and (self.fit != "tiles" or self.channels != 3):
                raise ValueError(
                    f"scene {self.scene} needs fit 'tiles' and channels 3 (it tells each crop of "
                    f"an RGB photo where it sits), got fit {self.fit!r} and channels {self.channels}"
                )
            check_positive("views", self.views, MAX_VIEWS)
            if len(self.view_scale) != 2 or not 0 < self.view_scale[0] <= self.view_scale[1] <= 1:
                raise ValueError(
                    f"view_scale must be [low, high] with 0 < low <= high <= 1 (a view's side as a "
                    f"share of the photo's shorter side), got {list(self.view_scale)}"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of a preprocessed image: its colour planes, then with ``scene`` the scene's
        (pipeline.scene)."""
        planes = self.channels + PLANES[self.scene]
        return (planes, self.image_size, self.image_size)


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
        with section("download"):
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


# Bounds of train.degrade: past them a crop is no longer a photograph (a blur wider than the
# 32 px crop, grain as strong as L*'s whole range, a print faded to one gray).
DEGRADE_BOUNDS = {"blur": 4.0, "fade": 0.4, "gamma": 1.0, "grain": 25.0}


@dataclass(frozen=True)
class DegradeConfig:
    """A colorizer's condition L* degraded as an old print's while training
    (pipeline.data.degrade): each degradation applied to a crop with probability p, at a strength
    uniform in [0, its maximum]; the colour target stays the clean photo's. 0 turns one off."""

    p: float = 0.5  # probability that a crop gets each degradation
    blur: float = 0.0  # max Gaussian sigma, pixels of the crop (soft focus)
    fade: float = 0.0  # max share of L*'s range lost at each end (lifted blacks, dim whites)
    gamma: float = 0.0  # max |log gamma| of a tone curve (crushed or washed-out mid-tones)
    grain: float = 0.0  # max standard deviation of per-pixel grain, L* units (0-100)

    def __post_init__(self) -> None:
        with section("train.degrade"):
            check_unit_interval("p", self.p, closed=True)
            for name, maximum in DEGRADE_BOUNDS.items():
                value = getattr(self, name)
                if not 0 <= value <= maximum:
                    raise ValueError(f"{name} must be in [0, {maximum:g}], got {value!r}")

    @property
    def active(self) -> bool:
        """Whether any degradation can happen."""
        return self.p > 0 and any(getattr(self, name) > 0 for name in DEGRADE_BOUNDS)


@dataclass(frozen=True)
class TrainConfig:
    """Data-parallel training on Ray Train workers (pipeline.train)."""

    steps: int = 500  # optimiser steps
    batch_size: int = 64  # global batch, split evenly across workers
    num_workers: int = 2  # Ray Train workers (data-parallel ranks)
    use_gpu: Literal["auto", True, False] = "auto"  # auto: GPUs when the cluster has them
    lr: float = 2e-4  # AdamW peak learning rate
    warmup_steps: int = 50  # linear warmup from 0 to lr
    lr_decay: Literal["constant", "cosine"] = "constant"  # after warmup: lr, or a half cosine
    # from lr to 0 at train.steps (pipeline.methods.step.lr_at)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm; 0: off
    ema_decay: float = 0.999  # EMA of weights (warmed up), used for sampling
    checkpoint_every: int = 200  # steps between checkpoints (resume points)
    log_every: int = 10  # steps between reported metrics
    seed: int = 0  # model init, data order, and (with rank and step) every step's noise
    max_failures: int = 1  # worker-group restarts from the last checkpoint
    grad_accum_steps: int = 1  # micro-batches per optimiser step on each worker
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    # torch.compile the network; auto: on CUDA (where it pays: issue 26), not on CPU (minutes of
    # compiling for a short run)
    compile: Literal["auto", True, False] = "auto"
    sample_every: int = 200  # steps between sample grids logged to MLflow; 0: only at the end
    sample_count: int = 16  # images in each grid (EMA model, DDIM eta=0, seeded)
    sample_steps: int = 50  # DDIM steps for the grids
    min_colourfulness: float = 0.0  # RGB: train only on crops at least this colourful (0: all)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)  # colorizers: old-print inputs

    def __post_init__(self) -> None:
        with section("train"):
            for name in (
                "steps",
                "batch_size",
                "num_workers",
                "checkpoint_every",
                "log_every",
                "grad_accum_steps",
                "sample_steps",
            ):
                check_positive(name, getattr(self, name))
            check_positive("sample_count", self.sample_count, MAX_GRID)
            check_seed("seed", self.seed)
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
            if not (math.isfinite(self.min_colourfulness) and 0 <= self.min_colourfulness <= 100):
                raise ValueError(
                    f"min_colourfulness must be in [0, 100], got {self.min_colourfulness!r}"
                )

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
        with section("featurenet"):
            for name in ("epochs", "batch_size", "feature_dim"):
                check_positive(name, getattr(self, name))
            check_seed("seed", self.seed)
            check_width(self.width)
            if not (math.isfinite(self.lr) and self.lr > 0):
                raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


@dataclass(frozen=True)
class GuidedEvalConfig:
    """The evaluation of a class-conditional family (ddpm_cfg, pipeline.evaluate.hooks)."""

    guidance_scale: float = 1.0  # classifier-free guidance w of the scored samples (0: unguided)
    guidance_sweep: tuple[float, ...] = (0.0, 1.0, 3.0)  # w values of the FID-vs-accuracy
    # trade-off (num_samples each) and the guidance strip; empty: no sweep

    def __post_init__(self) -> None:
        with section("eval.guided"):
            for w in (self.guidance_scale, *self.guidance_sweep):
                if not (math.isfinite(w) and w >= 0):
                    raise ValueError(
                        f"guidance_scale and guidance_sweep take finite numbers >= 0 (0: the "
                        f"conditional model, unguided), got {w!r}"
                    )


@dataclass(frozen=True)
class LatentEvalConfig:
    """The evaluation of a one-shot latent family (vae, dcgan)."""

    interpolation_pairs: int = 6  # latent pairs in the interpolation grid and GIF

    def __post_init__(self) -> None:
        with section("eval.latent"):
            check_positive("interpolation_pairs", self.interpolation_pairs, MAX_GRID)


@dataclass(frozen=True)
class ColorizerEvalConfig:
    """The evaluation of a colorizer (ddpm_color, regression_color, classify_color)."""

    diversity_count: int = 8  # test images colorized diversity_samples times each
    diversity_samples: int = 3  # K samples per image for diversity and the triptychs
    photos: int = 0  # test photos colorized whole as the colorize command does (the evaluate
    # stage's --photos); 0: none, else at least 2 (their colour FID compares two sets)

    def __post_init__(self) -> None:
        with section("eval.colorizer"):
            if self.photos != 0:
                check_positive("photos", self.photos, MAX_PHOTOS)
            if self.photos == 1:
                raise ValueError(
                    "photos must be 0 (none) or at least 2 (their colour FID compares two sets), "
                    "got 1"
                )
            check_positive("diversity_count", self.diversity_count, MAX_GRID)
            check_positive("diversity_samples", self.diversity_samples, MAX_GRID)
            if self.diversity_samples < 2:
                raise ValueError(
                    f"diversity_samples must be >= 2 (diversity compares samples pairwise), got "
                    f"{self.diversity_samples}"
                )


@dataclass(frozen=True)
class EvalConfig:
    """Sample quality of the trained EMA model: FID and KID against the held-out test split."""

    num_samples: int = 500  # generated images scored
    sampler: str = "ddim"  # reverse process: a name of pipeline.diffusion.samplers.SAMPLERS
    steps: int = 40  # network evaluations per sample, <= diffusion.timesteps
    eta: float = 0.0  # DDIM stochasticity (0: deterministic; 1: DDPM-like); ddim only
    batch_size: int = 250  # images per Ray sampling task (num_samples / num_workers: none idle)
    num_workers: int = 2  # Ray tasks generating concurrently (1 CPU each)
    seed: int = 0  # batch b of batch_size images is seeded by (seed, b)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # the network under sampling; auto: bf16
    # autocast on CUDA (issue 26), fp32 on CPU
    features: Literal["featurenet", "inception", "colour"] = "featurenet"  # scores' feature space
    inception_weights: str | None = None  # the FID Inception .pth file; never downloaded
    kid_subset_size: int = 100  # KID: images per subset (capped at the smaller set)
    grid_count: int = 64  # images in reports/samples.png
    trajectory_count: int = 8  # samples in the denoising GIF (x_T -> x_0)
    guided: GuidedEvalConfig = field(default_factory=GuidedEvalConfig)  # ddpm_cfg
    latent: LatentEvalConfig = field(default_factory=LatentEvalConfig)  # vae, dcgan
    colorizer: ColorizerEvalConfig = field(default_factory=ColorizerEvalConfig)  # colorizers

    def __post_init__(self) -> None:
        with section("eval"):
            if self.sampler not in SAMPLERS:
                allowed = ", ".join(SAMPLERS)
                raise ValueError(f"sampler: unknown value {self.sampler!r}; allowed: {allowed}")
            for name in ("steps", "batch_size", "num_workers"):
                check_positive(name, getattr(self, name))
            check_positive("num_samples", self.num_samples, MAX_SAMPLES)
            for name in ("grid_count", "trajectory_count"):
                check_positive(name, getattr(self, name), MAX_GRID)
            check_seed("seed", self.seed)
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


@dataclass(frozen=True)
class MlflowConfig:
    """Where runs are recorded; the tracking URI comes from MLFLOW_TRACKING_URI or the project."""

    experiment: str = "diffusion-pipeline"  # MLflow experiment name, created when missing
    registered_model: str | None = (
        "diffusion-pipeline-ddpm"  # each training adds a version; null: off
    )
    # seconds between samples of each node's CPU, memory, disk and network use (GPU too with
    # pynvml), logged to train and tune runs as system/node_<rank>/...; 0: off
    system_metrics_every: float = 10.0

    def __post_init__(self) -> None:
        with section("mlflow"):
            if not self.experiment.strip():
                raise ValueError("experiment must be a non-empty name")
            every = self.system_metrics_every
            if not (every == 0 or (math.isfinite(every) and 1 <= every <= 3600)):
                raise ValueError(
                    f"system_metrics_every must be 0 (off) or seconds in [1, 3600], got {every!r}"
                )
            if self.registered_model is not None and not self.registered_model.strip():
                raise ValueError("registered_model must be a non-empty name or null")


@dataclass(frozen=True)
class RayConfig:
    """Which Ray cluster runs the workers, and the storage its nodes share."""

    address: str | None = None  # None: $RAY_ADDRESS if set, else a local cluster started on demand
    # a directory every node mounts (NFS, a PVC): inputs are copied there and checkpoints written
    # there, for workers on other nodes; None: $PIPELINE_SHARED_DIR if set, else this machine's disk
    shared_dir: str | None = None

    def __post_init__(self) -> None:
        with section("ray"):
            if self.address is not None and self.address.startswith("ray://"):
                raise ValueError(
                    f"address {self.address!r}: Ray Client (ray://) does not support Ray Train and "
                    "Tune; give the cluster's GCS address (head:6379) on the head node, or submit "
                    "the pipeline as a Ray job (infra/README.md)"
                )
            if self.shared_dir is not None:
                check_shared_dir("shared_dir", self.shared_dir)


def check_shared_dir(name: str, value: str) -> None:
    """A shared directory is an absolute filesystem path: every node must resolve it alike."""
    if "://" in value or not Path(value).is_absolute():
        raise ValueError(
            f"{name} must be an absolute path that every node of the cluster mounts "
            f"(NFS, a Kubernetes PVC), got {value!r}"
        )
