"""The evaluate stage: sample from the trained EMA model, score FID/KID, draw the pictures, and log
everything into the training's MLflow run."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.cluster import init_ray, resolve_use_gpu
from pipeline.config import EvalConfig, Params, flatten, to_dict
from pipeline.data.dataset import ProcessedImages
from pipeline.data.manifest import verify_processed
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.sampling import generate
from pipeline.evaluate.scores import cached_features, extract, scores
from pipeline.io import atomic_path, read_json
from pipeline.methods.base import GenerativeModel
from pipeline.methods.export import load_model
from pipeline.pixels import to_unit
from pipeline.reports.grid import image_grid, save_gif, save_image
from pipeline.tracking import tracking_uri

log = logging.getLogger(__name__)

GIF_FRAMES = 25  # frames of the denoising trajectory (evenly spaced over the sampler's steps)


def trajectory_frames(model: GenerativeModel, config: EvalConfig) -> list[np.ndarray]:
    """Grids of ``trajectory_count`` samples at GIF_FRAMES points from the start (x_T) to the
    sample (same sampler)."""
    generator = torch.Generator(model.device).manual_seed(config.seed)
    with torch.no_grad():
        states = list(
            model.sample_progressive(
                config.trajectory_count,
                generator=generator,
                steps=config.steps,
                sampler=config.sampler,
                eta=config.eta,
            )
        )
    keep = np.unique(
        np.linspace(0, len(states) - 1, min(GIF_FRAMES, len(states))).round().astype(int)
    )
    return [image_grid(states[i].clamp(-1, 1), nrow=config.trajectory_count) for i in keep]


def evaluate(
    params: Params,
    *,
    models_dir: str | Path,
    featurenet_dir: str | Path,
    processed_dir: str | Path,
    train_report: str | Path,
    metrics_path: str | Path,
    grid_png: str | Path,
    trajectory_gif: str | Path,
    project_dir: str | Path = ".",
) -> dict[str, Any]:
    """Write metrics.json (fid_/kid_<features>, settings, wall time), the sample grid and the GIF,
    and log them to the training run recorded in ``train_report``. Returns the metrics. Every
    path is a keyword."""
    ec, processed_dir = params.eval, Path(processed_dir)
    report = read_json(
        train_report, ("mlflow_run_id",), made_by="the train stage (dvc repro train)"
    )
    model = load_model(models_dir)  # fails early on a missing or corrupted model
    verify_processed(
        processed_dir,
        image_shape=model.params.data.image_shape,
        min_counts={"test": (2, "evaluate (FID of the test split)")},
    )
    extractor, backend_report = load_extractor(ec, featurenet_dir)
    real_images = ProcessedImages(processed_dir, "test").images  # uint8 (N, C, H, W), memmap

    started = time.perf_counter()
    init_ray(params)
    fake_images = generate(models_dir, ec, use_gpu=resolve_use_gpu(model.params.train.use_gpu))
    cache = params.download.resolved_cache_dir() / "fid-stats"
    real = cached_features(extractor, real_images, cache)
    fake = extract(extractor, fake_images, desc="sample features")
    result = scores(real, fake, ec.kid_subset_size)
    name = ec.features
    bad = {k: v for k, v in result.items() if not math.isfinite(v)}
    if bad:  # never written as a score
        raise ValueError(
            f"evaluate: non-finite scores {bad} (eval.features {name}, eval.num_samples "
            f"{ec.num_samples}, eval.kid_subset_size {ec.kid_subset_size}); nothing was written"
        )
    metrics = {
        f"fid_{name}": result["fid"],
        f"kid_{name}": result["kid"],
        f"kid_{name}_std": result["kid_std"],
        "num_samples": len(fake_images),
        "num_real": len(real_images),
        "features": name,
        **backend_report,
        "sampler": ec.sampler,
        "steps": ec.steps,
        "eta": ec.eta,
        "seed": ec.seed,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    save_image(image_grid(to_unit(fake_images[: ec.grid_count])), grid_png)
    save_gif(trajectory_frames(model, ec), trajectory_gif)
    with atomic_path(metrics_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")

    log_to_run(report, params, metrics, (metrics_path, grid_png, trajectory_gif), project_dir)
    return metrics


def log_to_run(
    report: dict[str, Any], params: Params, metrics: dict[str, Any], files, project_dir: str | Path
) -> None:
    """Scores as metrics of the training run (``report``: reports/train.json); the eval settings
    as ``eval.*``/``featurenet.*`` tags (tags, not params: a later evaluation with other settings
    overwrites them, params cannot be changed); the files as artifacts under ``evaluation/``; the
    scores and their backend as tags of the registered model version, when there is one."""
    run_id = report["mlflow_run_id"]
    client = MlflowClient(tracking_uri(project_dir))
    now = int(time.time() * 1000)
    logged = {k: v for k, v in metrics.items() if k.startswith(("fid_", "kid_"))}
    if "featurenet_test_accuracy" in metrics:
        logged["featurenet_test_accuracy"] = metrics["featurenet_test_accuracy"]
    logged["eval_wall_time_s"] = metrics["wall_time_s"]
    settings = flatten({"eval": to_dict(params.eval), "featurenet": to_dict(params.featurenet)})
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in logged.items()],
        tags=[RunTag(k, v) for k, v in settings.items()],
    )
    for path in files:
        client.log_artifact(run_id, str(path), "evaluation")
    name, version = report.get("registered_model"), report.get("registered_model_version")
    if name and version:
        for key, value in {**logged, "features": metrics["features"]}.items():
            client.set_model_version_tag(name, str(version), key, str(value))
