"""``train_fn_per_worker``: the loop every Ray Train worker runs (one data-parallel rank each).

Every rank: builds the same model (seeded), wraps it for DDP (``prepare_model``), reads its shard of
the training split (``prepare_data_loader`` adds a DistributedSampler), and steps AdamW with LR
warmup, gradient clipping and an EMA of the weights. Every rank calls ``ray.train.report`` (a
barrier) at the same steps; rank 0 alone writes checkpoints. A checkpoint holds the model, EMA and
optimiser state and the step; a restarted or re-run training resumes from the latest one.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader

from pipeline.build import build_diffusion, build_unet
from pipeline.config import Params, TrainConfig, from_dict
from pipeline.models import make_ema
from pipeline.train.data import ProcessedImages

CHECKPOINT_FILE = "state.pt"


def lr_at(step: int, config: TrainConfig) -> float:
    """1) linear warmup over warmup_steps, 2) then constant at lr."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    params: Params = from_dict(Params, loop_config["params"])
    tc = params.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    net = build_unet(params)
    ema = make_ema(net, tc.ema_decay)
    diffusion = build_diffusion(params.diffusion).to(device)
    model = ray.train.torch.prepare_model(net)  # DDP; moves to device
    ema.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = torch.load(
                Path(directory) / CHECKPOINT_FILE, map_location=device, weights_only=True
            )
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    torch.manual_seed(
        tc.seed + 1 + rank + world * step
    )  # timesteps and noise: per rank, per resume point

    loader = DataLoader(
        ProcessedImages(loop_config["processed_dir"], "train"),
        batch_size=tc.batch_size // world,
        shuffle=True,
        drop_last=True,
    )
    loader = ray.train.torch.prepare_data_loader(loader)
    epoch, window_start, window_images = step // max(1, len(loader)), time.perf_counter(), 0
    while step < tc.steps:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for x0 in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, tc)
            terms = diffusion.training_losses(model, x0)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or math.inf)
            optimizer.step()
            ema.update_parameters(net)
            step += 1
            window_images += x0.shape[0] * world
            save = step % tc.checkpoint_every == 0 or step == tc.steps
            if step % tc.log_every == 0 or save:
                elapsed = time.perf_counter() - window_start
                metrics = {
                    "step": step,
                    "loss": terms.loss.item(),
                    "loss_simple": terms.simple.item(),
                    "lr": lr_at(step - 1, tc),
                    "grad_norm": grad_norm.item(),
                    "images_per_s": window_images / elapsed,
                }
                if terms.vlb is not None:
                    metrics["loss_vlb"] = terms.vlb.item()
                report(metrics, step, net, ema, optimizer, save and rank == 0)
                window_start, window_images = time.perf_counter(), 0
            if step >= tc.steps:
                break
        epoch += 1


def report(metrics: dict, step: int, net, ema, optimizer, save: bool) -> None:
    """ray.train.report on every rank; rank 0 attaches a checkpoint when ``save``."""
    if not save:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        state = {
            "model": net.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
        }
        torch.save(state, Path(directory) / CHECKPOINT_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
