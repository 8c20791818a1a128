"""Training throughput of the pipeline on Ray Train vs a bare PyTorch loop, measured side by side.

Same default UNet, same data (the default mnist-5k), same global batch, same step function
(``pipeline.methods.ddpm.train_step``, with data loading and the EMA update inside the timed step):

1. bare loop, 1 process, 1 thread            vs  pipeline, 1 Ray worker (1 CPU, 1 thread): ratio
2. pipeline, 2 workers x 1 thread            vs  pipeline, 1 worker x 1 thread: speed-up
3. achieved model FLOP/s of the training step (FLOPs counted by torch's FlopCounterMode) as a
   fraction of a large float32 matmul's FLOP/s on the same threads, measured in the same run.

Throughput is images per second of time spent in optimiser steps, after WARMUP steps (Ray's
start-up, checkpointing and sampling are not counted). Run from the repository root:
    python benchmarks/train_throughput.py [--steps 25] [--batch 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from pipeline.config import DataConfig, DownloadConfig, Params, TrainConfig
from pipeline.data import download_source, preprocess
from pipeline.data.dataset import ProcessedImages
from pipeline.methods.ddpm import build_diffusion, build_unet, train_step
from pipeline.models import make_ema
from pipeline.train.checkpoint import read_checkpoint
from pipeline.train.driver import fit

WINDOW = 5  # steps per throughput measurement (the pipeline's log_every)


def matmul_flops(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n float32 matmul (2 n^3 FLOPs) on ``threads`` threads, best of ``repeats``."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(params: Params, batch: int) -> int:
    """FLOPs of one training step's forward + backward at ``batch`` (matmuls and convolutions)."""
    net, diffusion = build_unet(params), build_diffusion(params.diffusion)
    x0 = torch.rand(batch, params.data.channels, params.data.image_size, params.data.image_size)
    with FlopCounterMode(display=False) as counter:
        diffusion.training_loss(net, x0).backward()
    return counter.get_total_flops()


def bare_loop(params: Params, processed: Path, steps: int) -> list[float]:
    """img/s per WINDOW steps of a plain single-process loop (1 thread), warm-up window excluded."""
    torch.set_num_threads(1)
    tc = params.train
    torch.manual_seed(tc.seed)
    net, diffusion = build_unet(params), build_diffusion(params.diffusion)
    ema = make_ema(net, tc.ema_decay)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loader = DataLoader(
        ProcessedImages(processed, "train"), batch_size=tc.batch_size, shuffle=True, drop_last=True
    )
    batches, rates, seconds = iter(loader), [], 0.0
    for step in range(steps):
        start = time.perf_counter()
        x0 = next(batches)
        train_step(net, diffusion, [x0], optimizer, scaler, lr=tc.lr, grad_clip=tc.grad_clip)
        ema.update_parameters(net)
        seconds += time.perf_counter() - start
        if (step + 1) % WINDOW == 0:
            rates.append(WINDOW * tc.batch_size / seconds)
            seconds = 0.0
    return rates[1:]


def pipeline_run(params: Params, processed: Path, workers: int, steps: int) -> list[float]:
    """img/s per WINDOW steps reported by the Ray Train pipeline, warm-up window excluded."""
    run = dataclasses.replace(
        params,
        train=dataclasses.replace(
            params.train,
            num_workers=workers,
            steps=steps,
            log_every=WINDOW,
            checkpoint_every=steps,
            sample_every=0,
            sample_count=1,
            sample_steps=1,
        ),
    )
    with tempfile.TemporaryDirectory() as storage:
        result = fit(run, processed_dir=processed, storage_dir=storage)
        history = read_checkpoint(result.checkpoint)["history"]
    return [h["images_per_s"] for h in history][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="steps per configuration")
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    args = parser.parse_args()
    params = Params(train=TrainConfig(batch_size=args.batch))
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        download_source(DataConfig(), DownloadConfig(), root / "raw")
        preprocess(DataConfig(), root / "raw", root / "processed", progress=False)

        flops = step_flops(params, args.batch)
        peak = {t: matmul_flops(t) for t in (1, 2)}
        bare = bare_loop(params, root / "processed", args.steps)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        one = pipeline_run(params, root / "processed", 1, args.steps)
        two = pipeline_run(params, root / "processed", 2, args.steps)
        ray.shutdown()

    med = {name: statistics.median(r) for name, r in (("bare", bare), ("1w", one), ("2w", two))}
    print(f"torch {torch.__version__}; default UNet; global batch {args.batch}; {args.steps} steps")
    print(f"model FLOPs per training step (fwd+bwd): {flops / 1e9:.1f} GFLOP")
    print(
        f"matmul 2048^2 float32: 1 thread {peak[1] / 1e9:.1f} GFLOP/s, 2 threads {peak[2] / 1e9:.1f}"
    )
    for name, rates in (("bare loop, 1 thread", bare), ("Ray, 1 worker x 1 thread", one),
                        ("Ray, 2 workers x 1 thread", two)):  # fmt: skip
        print(f"{name:28s} img/s per {WINDOW}-step window: " + ", ".join(f"{r:.1f}" for r in rates))
    print(f"1 Ray worker / bare loop:         {med['1w'] / med['bare']:.3f}  (target >= 0.9)")
    print(f"2 workers / 1 worker (1 thread):  {med['2w'] / med['1w']:.3f}  (target >= 1.6)")
    for name, key, threads in (
        ("bare loop", "bare", 1),
        ("1 worker", "1w", 1),
        ("2 workers", "2w", 2),
    ):
        achieved = flops * med[key] / args.batch
        print(
            f"{name:10s} achieved {achieved / 1e9:6.1f} GFLOP/s = {achieved / peak[threads]:.2f} "
            f"of the {threads}-thread matmul"
        )


if __name__ == "__main__":
    main()
