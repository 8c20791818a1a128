"""``train_fn_per_worker``: the loop every Ray Train worker runs (one data-parallel rank each),
the same for every model family.

Every rank seeds torch, builds the family's Method (``LoopConfig.method``) and its EMA, lets it wrap
what it trains for DDP, reads its shard of the training split through a seeded DistributedSampler
and steps with a per-(seed, rank, step) seed. The loop body reads: step -> EMA -> every
``log_every`` steps the window's metrics, all-reduced -> rank 0's side jobs (``Rank0Jobs``: the probe, sample grids,
MLflow, progress for the driver) -> at checkpoints and probe milestones only, ``ray.train.report``
(a barrier every rank reaches at the same steps; rank 0 attaches the checkpoint). Metrics reach
MLflow from rank 0 directly: Ray Train V2 takes one report per worker per health-check poll (2 s),
so reporting every logged step would stall fast steps (measured: 100 reports made a 27 s run 225 s).

A non-finite loss (averaged over the log window and the ranks, so every rank sees the same value)
ends the loop on every rank after a last report; rank 0 writes the metrics to
``LoopConfig.diverged_file``, from which the driver raises ``Diverged`` (no retry).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, DistributedSampler, Subset

from pipeline.config import Params, TrainConfig
from pipeline.data.dataset import ProcessedImages, colourful, spread
from pipeline.io import CorruptFileError, write_json
from pipeline.methods.base import Batch, Method, Sampling
from pipeline.methods.step import lr_at
from pipeline.pixels import to_uint8
from pipeline.registry import Family
from pipeline.reports.grid import image_grid
from pipeline.scene import colour
from pipeline.seeding import derived_seed
from pipeline.tracking import BufferedMetrics, patient_sqlite, system_metrics
from pipeline.train.checkpoint import checkpoint_of, read_checkpoint, read_state
from pipeline.train.state import TrainState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeConfig:
    """A score of the EMA model measured on rank 0 every ``every`` steps and reported as
    ``metric`` (tuning's milestone FID): ``count`` samples, DDIM with ``steps`` steps, from the x_T
    that ``seed`` fixes. ``make_score()`` builds, once on rank 0, the callable that scores uint8
    images (N, C, H, W); the higher layer that ranks on it provides it."""

    every: int
    count: int
    steps: int
    seed: int
    metric: str
    make_score: Callable[[], Callable[[np.ndarray], float]]


@dataclass(frozen=True)
class LoopConfig:
    """What every worker trains: ``params`` with ``method`` (the class ``model.family`` names, and
    its registry entry ``family``: what its batches and samples are conditioned on) on
    ``processed_dir``. ``diverged_file``: where rank 0 records a divergence; ``resume_from``: a
    checkpoint directory; ``run_id``/``tracking_uri``: the MLflow run rank 0 logs into;
    ``progress_file``: where rank 0 keeps its step, loss and speed for the driver's progress bar."""

    params: Params
    method: type[Method]
    family: Family
    processed_dir: str
    diverged_file: str
    resume_from: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    probe: ProbeConfig | None = None
    progress_file: str | None = None


def train_split(
    processed_dir: str | Path, train: TrainConfig, labels: bool = False
) -> ProcessedImages | Subset:
    """The training split (with ``labels``: [image, label] items), without the crops less colourful
    than ``train.min_colourfulness`` when it is above 0."""
    dataset = ProcessedImages(processed_dir, "train", labels=labels)
    if labels and dataset.labels is None:
        raise ValueError(f"the train split of {processed_dir} has no labels")
    if train.min_colourfulness == 0:
        return dataset
    kept = colourful(colour(dataset.images), train.min_colourfulness)
    if len(kept) < train.batch_size:
        raise ValueError(
            f"train.min_colourfulness {train.min_colourfulness:g} leaves {len(kept)} of "
            f"{len(dataset)} train crops, fewer than train.batch_size {train.batch_size}"
        )
    return Subset(dataset, kept.tolist())


def make_loader(
    processed_dir: str | Path, train: TrainConfig, rank: int, world: int, labels: bool = False
) -> tuple[DataLoader, DistributedSampler]:
    """Rank ``rank``'s shard of the training split (``train_split``): micro-batches of
    ``train.micro_batch_size`` (with ``labels``: [images, labels]), in an order fixed by
    (train.seed, epoch), dropping the incomplete last batch."""
    dataset = train_split(processed_dir, train, labels)
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=train.seed, drop_last=True
    )
    loader = DataLoader(dataset, batch_size=train.micro_batch_size, sampler=sampler, drop_last=True)
    return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False), sampler


def micro_batch_stream(
    loader: DataLoader, sampler: DistributedSampler, start: int
) -> Iterator[Batch]:
    """Endless micro-batches from the ``start``-th on (epoch start // n, then skip start % n), so a
    resumed run sees the same data as the uninterrupted one."""
    epoch, skip = divmod(start, len(loader))
    while True:
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= skip:
                yield batch
        epoch, skip = epoch + 1, 0


class Window:
    """Step metrics between two reports, averaged over steps and (all-reduced) over ranks.

    ``images_per_s`` counts the time spent in optimiser steps only (not sampling, checkpointing or
    logging), for all ranks together: images per step / this rank's mean step time.
    """

    def __init__(self) -> None:
        self.results: list[dict[str, torch.Tensor]] = []
        self.seconds = 0.0

    def add(self, metrics: dict[str, torch.Tensor], seconds: float) -> None:
        self.results.append(metrics)
        self.seconds += seconds

    def metrics(self, step: int, lr: float, images: int) -> dict[str, float]:
        """``images``: images per optimiser step over all ranks (the global batch)."""
        stacked = {
            name: torch.stack([r[name] for r in self.results]).mean() for name in self.results[0]
        }
        values = torch.stack(list(stacked.values())).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        throughput = images * len(self.results) / self.seconds
        metrics = {"step": step, "lr": lr, "images_per_s": throughput}
        metrics.update(zip(stacked, values.tolist(), strict=True))
        self.results, self.seconds = [], 0.0
        return metrics


SHOW_EVERY_S = 0.25  # the progress file's refresh: the driver's bar polls it
WORKER_NODES_TAG = "worker_nodes"  # the MLflow tag: the Ray node id of each rank


class Rank0Jobs:
    """Rank 0's side jobs after a step: the probe, sample grids, MLflow metrics, the history the
    checkpoint carries, and the progress the driver shows."""

    def __init__(self, config: LoopConfig, device: torch.device) -> None:
        self.train, self.probe, self.device = config.params.train, config.probe, device
        self.run_id = config.run_id
        patient_sqlite()  # a busy store delays the metrics, it does not stop the workers
        self.client = MlflowClient(config.tracking_uri) if config.run_id else None
        self.metrics = self.client and BufferedMetrics(self.client, self.run_id)
        self.score = config.probe.make_score() if config.probe else None
        self.progress_file = config.progress_file
        self.validation = ProcessedImages(config.processed_dir, "val")  # conditional families
        self.last: dict[str, float] = {}
        self.shown = -math.inf  # when show last wrote the progress file (time.monotonic)

    def after_step(self, state: TrainState, metrics: dict[str, float] | None) -> None:
        """``metrics``: the step's report, when one is due (None otherwise)."""
        step, train = state.step, self.train
        if metrics and self.probe and step % self.probe.every == 0:
            x0 = self.sample(state, self.probe.count, self.probe.steps, self.probe.seed, step)
            metrics[self.probe.metric] = self.score(to_uint8(x0).numpy())
        elif (train.sample_every and step % train.sample_every == 0) or step == train.steps:
            self.sample(state, train.sample_count, train.sample_steps, train.seed, step)
        if metrics:
            self.log(metrics, step)
            state.history.append(metrics)
        self.show(step)

    def sample(
        self, state: TrainState, count: int, steps: int, seed: int, step: int
    ) -> torch.Tensor:
        """``count`` samples in [-1, 1] of the EMA network (DDIM eta 0 for diffusion families),
        from the draws that ``seed`` fixes; an image-conditioned family samples from the
        conditions of ``count`` validation images (``references``), a class-conditioned one the
        classes in turn. The first ``sample_count`` become the run's sample grid
        (``state.samples``; logged to MLflow as ``samples``)."""
        net = state.ema.module
        model = state.method.model(net)
        conditions = model.conditions(count, self.references)
        generator = torch.Generator(self.device).manual_seed(seed)
        net.eval()
        x0 = model.sample(
            count, generator=generator, how=Sampling(steps=steps), cond=model.cond(conditions)
        )
        net.train()
        shown = min(count, self.train.sample_count)
        grid = image_grid(
            *model.panel(x0[:shown], None if conditions is None else conditions[:shown])
        )
        if self.client:
            self.client.log_image(self.run_id, grid, key="samples", step=step)
        state.samples = torch.from_numpy(grid)
        return x0

    def references(self, count: int) -> np.ndarray:
        """``count`` validation images spread evenly over the split (``spread``: the crops of
        every validation photo), uint8 (count, C, H, W)."""
        if count > len(self.validation):
            raise ValueError(
                f"a conditional family samples from validation images: {count} wanted "
                f"(train.sample_count or tune.eval_samples), the val split has {len(self.validation)}"
            )
        return np.array(self.validation.images[spread(len(self.validation), count)])

    def show(self, step: int) -> None:
        """The step and the last report's metrics, for the driver's bar (replaced whole), at most
        every SHOW_EVERY_S seconds and at the last step: a GPU step takes milliseconds, a file
        write with its fsync about as long."""
        now = time.monotonic()
        if self.progress_file and (now >= self.shown + SHOW_EVERY_S or step == self.train.steps):
            write_json(self.progress_file, {**self.last, "step": step})
            self.shown = now

    def record_nodes(self, nodes: list[str]) -> None:
        """The Ray node each rank runs on, as the run's ``worker_nodes`` tag (rank order)."""
        if self.client:
            self.client.set_tag(self.run_id, WORKER_NODES_TAG, ",".join(nodes))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.last = {k: v for k, v in metrics.items() if isinstance(v, float)}
        if self.metrics:
            now = int(time.time() * 1000)
            self.metrics.log([Metric(k, v, now, step) for k, v in metrics.items() if k != "step"])

    def flush(self) -> None:
        """Wait until the store holds every metric logged (BufferedMetrics.flush)."""
        if self.metrics:
            self.metrics.flush()


def worker_nodes(world: int) -> list[str]:
    """The Ray node id of every rank, in rank order (gathered over the process group)."""
    node = ray.get_runtime_context().get_node_id()
    if world == 1 or not dist.is_initialized():
        return [node]
    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return nodes


def write_diverged(path: str, metrics: dict[str, float]) -> None:
    """Record a divergence for the driver (pipeline.train.driver.fit raises ``Diverged``): Ray
    Train's Result only carries the metrics of the last checkpoint."""
    write_json(path, metrics)


def resume_state(resume_from: str | None, device: torch.device) -> dict[str, Any] | None:
    """The newest of Ray's checkpoint for this run (the latest report before a worker-group restart,
    or from Ray's run snapshot) and the driver's ``resume_from`` directory; None to start fresh."""
    states = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        try:
            states.append(read_checkpoint(checkpoint, device))
        except CorruptFileError as exc:  # the driver's scan found the newest valid one
            log.warning("skipping Ray's latest checkpoint: %s", exc)
    if resume_from:
        states.append(read_state(resume_from, device))
    return max(states, key=lambda state: state["step"], default=None)


def quiet_ray_train_logs() -> None:
    """Ray Train logs every report and checkpoint at INFO, one line per log step from each rank,
    which buries the progress bar; keep its warnings."""
    from ray.train.v2._internal.execution import context, storage

    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # Ray names it by file path
    logging.getLogger(storage.__name__).setLevel(logging.WARNING)


def train_fn_per_worker(config: LoopConfig) -> None:
    """Train ``config.params`` on ``config.processed_dir``; resume from Ray's latest checkpoint or
    ``config.resume_from`` when there is one. The first worker of each node logs the node's
    system metrics to the run (pipeline.tracking.system_metrics)."""
    quiet_ray_train_logs()
    context = ray.train.get_context()
    node_run = config.run_id if context.get_local_rank() == 0 else None
    every = config.params.mlflow.system_metrics_every
    with system_metrics(config.tracking_uri, node_run, f"node_{context.get_node_rank()}", every):
        train_on_this_worker(config, context)


def train_on_this_worker(config: LoopConfig, context: Any) -> None:
    """The loop of ``train_fn_per_worker`` on the worker of ``context`` (Ray Train's)."""
    train = config.params.train
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    torch.manual_seed(train.seed)  # the same initial weights on every rank
    state = TrainState(config.method(config.params, device), train.ema_decay)
    state.method.prepare(ray.train.torch.prepare_model)
    resumed = resume_state(config.resume_from, device)
    if resumed:
        state.load_state_dict(resumed)

    start_step = state.step
    loader, sampler = make_loader(
        config.processed_dir, train, rank, world, config.family.needs_labels
    )
    batches = micro_batch_stream(loader, sampler, start=state.step * train.grad_accum_steps)
    jobs = Rank0Jobs(config, device) if rank == 0 else None
    nodes = worker_nodes(world)
    if jobs:
        jobs.record_nodes(nodes)
    window = Window()
    while state.step < train.steps:
        started = time.perf_counter()
        micro_batches = [next(batches) for _ in range(train.grad_accum_steps)]
        torch.manual_seed(derived_seed(train.seed, rank, state.step))  # after loading: it draws too
        metrics = state.method.train_step(
            micro_batches, lr=lr_at(state.step, train), step=state.step
        )
        state.ema.update_parameters(state.method.net)
        state.step += 1
        save = state.step % train.checkpoint_every == 0 or state.step == train.steps
        due = state.step % train.log_every == 0 or save
        if due and device.type == "cuda":  # the window's time is the steps', not their launches'
            torch.cuda.synchronize(device)  # only here: a sync every step stalls the GPU's queue
        window.add(metrics, time.perf_counter() - started)
        report = None
        if due:
            report = window.metrics(state.step, lr_at(state.step - 1, train), train.batch_size)
            if not math.isfinite(report["loss"]):  # the same all-reduced value on every rank
                if rank == 0:
                    write_diverged(config.diverged_file, report)
                ray.train.report(report)
                break
        if jobs:
            jobs.after_step(state, report)
        milestone = config.probe is not None and state.step % config.probe.every == 0
        if report is None or not (save or milestone):  # rank 0 logged it to MLflow
            continue
        if save and rank == 0:
            jobs.flush()  # the store holds every metric up to the checkpoint a resume starts from
            with checkpoint_of(state.state_dict()) as checkpoint:
                ray.train.report(report, checkpoint=checkpoint)
        else:
            ray.train.report(report)
    if start_step == train.steps:  # resumed a finished run: report its last result again (Tune)
        ray.train.report(state.history[-1] if rank == 0 else {"step": state.step})
    if jobs:
        jobs.flush()  # before the driver marks the run finished
