"""``train_fn_per_worker``: the loop every Ray Train worker runs (one data-parallel rank each).

Every rank builds the same model (seeded), wraps it for DDP (``prepare_model``; optionally
``torch.compile`` first), reads its shard of the training split through a seeded DistributedSampler,
and runs ``pipeline.train.step.train_step`` with a per-(seed, rank, step) seed. Every rank calls
``ray.train.report`` (a barrier) at the same steps. Rank 0 alone writes checkpoints, draws the
progress bar on the driver, and logs metrics and sample grids to the MLflow run.

A non-finite loss (averaged over the log window and the ranks, so every rank sees the same value)
ends the loop on every rank after a last report; rank 0 writes the metrics to
``loop_config['diverged_file']``, from which the driver raises ``Diverged`` (no retry). With a
``probe`` (tuning), rank 0 also measures ``fid_featurenet`` of a fixed sample set every
``probe['every']`` steps and reports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from ray.experimental import tqdm_ray
from torch.utils.data import DataLoader, DistributedSampler

from pipeline.build import build_diffusion, build_unet
from pipeline.config import Params, TrainConfig, from_dict
from pipeline.data.dataset import ProcessedImages
from pipeline.diffusion import GaussianDiffusion
from pipeline.evaluate.probe import METRIC, FIDProbe
from pipeline.evaluate.sampling import to_uint8
from pipeline.io import CorruptFileError, atomic_path
from pipeline.models import make_ema
from pipeline.reports.grid import image_grid
from pipeline.seeding import derived_seed
from pipeline.train.checkpoint import checkpoint_of, read_checkpoint, read_state
from pipeline.train.step import StepResult, lr_at, resolve_precision, train_step

log = logging.getLogger(__name__)


def make_loader(
    processed_dir: str | Path, tc: TrainConfig, rank: int, world: int
) -> tuple[DataLoader, DistributedSampler]:
    """Rank ``rank``'s shard of the training split: micro-batches of ``tc.micro_batch_size``, in an
    order fixed by (tc.seed, epoch), dropping the incomplete last batch."""
    dataset = ProcessedImages(processed_dir, "train")
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=tc.seed, drop_last=True
    )
    loader = DataLoader(dataset, batch_size=tc.micro_batch_size, sampler=sampler, drop_last=True)
    return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False), sampler


def micro_batch_stream(
    loader: DataLoader, sampler: DistributedSampler, start: int
) -> Iterator[torch.Tensor]:
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
    """Step results between two reports, averaged over steps and (all-reduced) over ranks.

    ``images_per_s`` counts the time spent in optimiser steps only (not sampling, checkpointing or
    logging), for all ranks together: images per step / this rank's mean step time.
    """

    def __init__(self) -> None:
        self.results: list[StepResult] = []
        self.seconds = 0.0

    def add(self, result: StepResult, seconds: float) -> None:
        self.results.append(result)
        self.seconds += seconds

    def metrics(self, step: int, lr: float, images: int) -> dict[str, float]:
        """``images``: images per optimiser step over all ranks (the global batch)."""
        stacked = {
            "loss": torch.stack([r.loss for r in self.results]).mean(),
            "loss_simple": torch.stack([r.simple for r in self.results]).mean(),
            "grad_norm": torch.stack([r.grad_norm for r in self.results]).mean(),
        }
        if self.results[0].vlb is not None:
            stacked["loss_vlb"] = torch.stack([r.vlb for r in self.results]).mean()
        values = torch.stack(list(stacked.values())).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        throughput = images * len(self.results) / self.seconds
        metrics = {"step": step, "lr": lr, "images_per_s": throughput}
        metrics.update(zip(stacked, values.tolist(), strict=True))
        self.results, self.seconds = [], 0.0
        return metrics


class Rank0Tracker:
    """Rank 0's side jobs: the driver's progress bar, MLflow metrics, sample grids and (tuning)
    the milestone FID probe."""

    def __init__(
        self, loop_config: dict[str, Any], params: Params, start_step: int, device: torch.device
    ) -> None:
        self.params, self.tc, self.device = params, params.train, device
        self.run_id = loop_config.get("run_id")
        self.client = MlflowClient(loop_config["tracking_uri"]) if self.run_id else None
        probe = loop_config.get("probe")
        self.probe_config = probe
        self.probe = (
            FIDProbe(probe["featurenet_dir"], loop_config["processed_dir"]) if probe else None
        )
        self.bar = tqdm_ray.tqdm(desc="train", total=self.tc.steps, unit="step")
        self.bar.update(start_step)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.bar.set_description(
            f"train loss {metrics['loss']:.4f} | {metrics['images_per_s']:.0f} img/s"
        )
        if self.client:
            now = int(time.time() * 1000)
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(k, v, now, step) for k, v in metrics.items() if k != "step"],
            )

    def sample(
        self,
        model: torch.nn.Module,
        diffusion: GaussianDiffusion,
        count: int,
        steps: int,
        seed: int,
    ) -> torch.Tensor:
        """``count`` DDIM (eta 0) samples in [-1, 1] from the x_T that ``seed`` fixes."""
        size, channels = self.params.data.image_size, self.params.data.channels
        generator = torch.Generator(self.device).manual_seed(seed)
        model.eval()
        with torch.no_grad():
            x0 = diffusion.sample(
                model,
                (count, channels, size, size),
                steps=steps,
                sampler="ddim",
                generator=generator,
            )
        model.train()
        return x0

    def grid(self, x0: torch.Tensor, step: int) -> np.ndarray:
        """The first ``sample_count`` images as a grid, logged to MLflow as ``samples``."""
        grid = image_grid(x0[: self.tc.sample_count])
        if self.client:
            self.client.log_image(self.run_id, grid, key="samples", step=step)
        return grid

    def probe_due(self, step: int) -> bool:
        return self.probe is not None and step % self.probe_config["every"] == 0

    def milestone(
        self, model: torch.nn.Module, diffusion: GaussianDiffusion, step: int
    ) -> tuple[float, np.ndarray]:
        """fid_featurenet of the probe's fixed sample set, and a grid of its first images."""
        config = self.probe_config
        x0 = self.sample(model, diffusion, config["count"], config["steps"], config["seed"])
        return self.probe(to_uint8(x0)), self.grid(x0, step)


def write_diverged(path: str, metrics: dict[str, float]) -> None:
    """Record a divergence for the driver (pipeline.train.driver.fit raises ``Diverged``): Ray
    Train's Result only carries the metrics of the last checkpoint."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics))


def maybe_fail(fault: dict[str, Any] | None, rank: int, step: int) -> None:
    """Test-only fault hook: the first time rank ``fault['rank']`` reaches ``fault['step']`` (no
    ``fault['marker']`` file yet), create the marker and kill this worker process."""
    if fault and rank == fault["rank"] and step == fault["step"]:
        marker = Path(fault["marker"])
        if not marker.exists():
            marker.touch()
            os._exit(1)


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


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """Train ``loop_config['params']`` on ``loop_config['processed_dir']``; resume from Ray's latest
    checkpoint when there is one. ``diverged_file``: where rank 0 records a divergence. Optional
    keys: ``resume_from`` (a checkpoint directory), ``run_id`` and ``tracking_uri`` (MLflow),
    ``probe`` (the milestone FID: featurenet_dir, every, count, steps, seed), ``fault``."""
    quiet_ray_train_logs()
    params: Params = from_dict(Params, loop_config["params"])
    tc = params.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    precision = resolve_precision(tc.precision, device)

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    net = build_unet(params)
    ema = make_ema(net, tc.ema_decay)
    diffusion = build_diffusion(params.diffusion).to(device)
    model = ray.train.torch.prepare_model(torch.compile(net) if tc.compile else net)
    ema.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    step, history, grid = 0, [], None
    state = resume_state(loop_config.get("resume_from"), device)
    if state:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, history, grid = state["step"], state["history"], state["samples"]

    start_step = step
    loader, sampler = make_loader(loop_config["processed_dir"], tc, rank, world)
    batches = micro_batch_stream(loader, sampler, start=step * tc.grad_accum_steps)
    tracker = Rank0Tracker(loop_config, params, step, device) if rank == 0 else None
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP only when world > 1
    window = Window()
    while step < tc.steps:
        maybe_fail(loop_config.get("fault"), rank, step)
        started = time.perf_counter()
        micro_batches = [next(batches) for _ in range(tc.grad_accum_steps)]
        torch.manual_seed(derived_seed(tc.seed, rank, step))  # after loading: DataLoader draws too
        result = train_step(
            model,
            diffusion,
            micro_batches,
            optimizer,
            scaler,
            lr=lr_at(step, tc),
            grad_clip=tc.grad_clip,
            precision=precision,
            no_sync=no_sync,
        )
        ema.update_parameters(net)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time the step, not just its kernel launches
        window.add(result, time.perf_counter() - started)
        step += 1
        save = step % tc.checkpoint_every == 0 or step == tc.steps
        metrics = None
        if step % tc.log_every == 0 or save:
            metrics = window.metrics(step, lr_at(step - 1, tc), tc.batch_size)
            if not math.isfinite(metrics["loss"]):  # the same all-reduced value on every rank
                if rank == 0:
                    write_diverged(loop_config["diverged_file"], metrics)
                ray.train.report(metrics)
                break
        if tracker:
            tracker.bar.update(1)
            if metrics and tracker.probe_due(step):
                metrics[METRIC], grid = tracker.milestone(ema.module, diffusion, step)
                grid = torch.from_numpy(grid)
            elif (tc.sample_every and step % tc.sample_every == 0) or step == tc.steps:
                x0 = tracker.sample(
                    ema.module, diffusion, tc.sample_count, tc.sample_steps, tc.seed
                )
                grid = torch.from_numpy(tracker.grid(x0, step))
            if metrics:
                tracker.log(metrics, step)
                history.append(metrics)
        if not metrics:
            continue
        if save and rank == 0:
            state = {
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "history": history,
                "samples": grid,
            }
            with checkpoint_of(state) as ckpt:
                ray.train.report(metrics, checkpoint=ckpt)
        else:
            ray.train.report(metrics)
    if start_step == tc.steps:  # resumed a finished run: report its last result again (Tune)
        ray.train.report(history[-1] if rank == 0 else {"step": step})
    if tracker:
        tracker.bar.close()
