"""Launch training: a TorchTrainer over ``train_fn_per_worker``, then export the EMA model.

The run name hashes the params and the dataset's manifest, so re-running the same configuration
resumes it from its latest checkpoint (Ray resumes a RunConfig(name, storage_path) it has seen)
while any change starts a new run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import ray
import ray.train
import torch
from ray.train.torch import TorchTrainer

from pipeline.config import Params, to_dict
from pipeline.io import atomic_dir
from pipeline.train.worker import CHECKPOINT_FILE, train_fn_per_worker

log = logging.getLogger(__name__)


def run_name(params: Params, processed_dir: Path) -> str:
    """train-<12 hex>: sha256 of the params and of the processed data's manifest."""
    manifest = (processed_dir / "manifest.json").read_bytes()
    payload = json.dumps(to_dict(params), sort_keys=True).encode() + manifest
    return "train-" + hashlib.sha256(payload).hexdigest()[:12]


def resolve_use_gpu(setting: str | bool) -> bool:
    """``auto``: use GPUs when the Ray cluster has any."""
    if setting == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(setting)


def check_batches(params: Params, processed_dir: Path) -> None:
    """Raise ValueError unless every worker gets at least one full batch per epoch (the loader drops
    incomplete batches, so otherwise the training loop would never take a step)."""
    manifest = json.loads((processed_dir / "manifest.json").read_text())
    count, tc = manifest["splits"]["train"]["count"], params.train
    per_worker = -(
        -count // tc.num_workers
    )  # DistributedSampler pads each shard to ceil(N / world)
    if per_worker < tc.batch_size // tc.num_workers:
        raise ValueError(
            f"train.batch_size {tc.batch_size} over {tc.num_workers} workers needs at least "
            f"{tc.batch_size // tc.num_workers} training images per worker; the data has {count} in total"
        )


def fit(params: Params, processed_dir: str | Path, storage_dir: str | Path) -> ray.train.Result:
    """Train on ``processed_dir``; checkpoints live under ``storage_dir`` (absolute, outside DVC's outs)."""
    processed_dir, storage_dir = Path(processed_dir).resolve(), Path(storage_dir).resolve()
    check_batches(params, processed_dir)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    tc = params.train
    name = run_name(params, processed_dir)
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config={"params": to_dict(params), "processed_dir": str(processed_dir)},
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers, use_gpu=resolve_use_gpu(tc.use_gpu)
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage_dir),
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
        ),
    )
    log.info("training %s: %d steps on %d workers", name, tc.steps, tc.num_workers)
    return trainer.fit()


def export_model(result: ray.train.Result, params: Params, out_dir: str | Path) -> Path:
    """Write ``ema.pt`` (the EMA weights, a UNet state_dict) and ``config.json`` (the params needed
    to rebuild model and diffusion: pipeline.build) from the run's latest checkpoint."""
    if result.checkpoint is None:
        raise ValueError(f"training run {result.path} produced no checkpoint")
    with result.checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    with atomic_dir(out_dir) as tmp:
        torch.save(ema, tmp / "ema.pt")
        config = {"step": state["step"], "params": to_dict(params)}
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)
