"""Generate images from the exported EMA model, batches spread over Ray tasks (1 CPU or GPU each).
The model travels to the tasks through Ray's object store (put once, read by every task on any
node: no shared file system, no export re-read per batch). An image-conditioned family (a
colorizer) generates one image per reference image, from its condition; a class-conditioned one
one image per label, guided by ``eval.guided.guidance_scale``."""

from __future__ import annotations

import numpy as np
import ray
import torch

from pipeline.config import EvalConfig
from pipeline.console import progress_bar
from pipeline.methods.base import GenerativeModel, Sampling
from pipeline.methods.step import resolve_precision
from pipeline.pixels import to_uint8
from pipeline.seeding import derived_seed


def sample_batch(
    model: GenerativeModel,
    count: int,
    config: EvalConfig,
    batch: int,
    conditions: np.ndarray | None = None,
) -> np.ndarray:
    """``count`` images (uint8, (N, C, H, W)) of batch ``batch`` drawn by ``model`` (moved onto
    the GPU when there is one). A conditional model samples from ``conditions``
    (``GenerativeModel.conditions``: reference images of which a colorizer takes its condition,
    or a class-conditional model's labels)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    generator = torch.Generator(device).manual_seed(derived_seed("sample", config.seed, batch))
    x0 = model.sample(
        count,
        precision=resolve_precision(config.precision, model.device),
        generator=generator,
        how=Sampling.of(config),
        cond=model.cond(conditions),
    )
    return to_uint8(x0).numpy()


def generate(
    model: GenerativeModel | ray.ObjectRef,
    config: EvalConfig,
    use_gpu: bool = False,
    conditions: np.ndarray | None = None,
    desc: str = "sampling",
) -> np.ndarray:
    """``config.num_samples`` images as uint8 (N, C, H, W) (with ``conditions``: one per row, see
    ``sample_batch``), batch b seeded by (seed, b), at most ``config.num_workers`` Ray tasks at
    once; a progress bar (``desc``) counts finished images. ``model``: a loaded export, or its
    ``ray.put`` to share one copy between calls."""
    if not isinstance(model, ray.ObjectRef):
        model = ray.put(model)
    total = config.num_samples if conditions is None else len(conditions)
    counts = [min(config.batch_size, total - start) for start in range(0, total, config.batch_size)]
    task = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(sample_batch)
    results: dict[int, np.ndarray] = {}
    pending: dict[ray.ObjectRef, int] = {}
    queue = list(enumerate(counts))
    with progress_bar(total=total, desc=desc, unit="img") as bar:
        while queue or pending:
            while queue and len(pending) < config.num_workers:
                batch, count = queue.pop(0)
                start = batch * config.batch_size
                chunk = None if conditions is None else np.array(conditions[start : start + count])
                pending[task.remote(model, count, config, batch, chunk)] = batch
            (done,), _ = ray.wait(list(pending), num_returns=1)
            batch = pending.pop(done)
            results[batch] = ray.get(done)
            bar.update(counts[batch])
    return np.concatenate([results[b] for b in range(len(counts))])
