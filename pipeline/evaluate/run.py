"""The evaluate stage: sample from the trained EMA model, score FID/KID, draw the pictures, and log
everything into the training's MLflow run."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from pipeline.cluster import init_ray, resolve_use_gpu
from pipeline.config import EvalConfig, Params, flatten, to_dict
from pipeline.data.dataset import ProcessedImages, spread
from pipeline.data.manifest import verify_processed
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.colour import ab_diversity, fidelity, gray_images
from pipeline.evaluate.sampling import generate
from pipeline.evaluate.scores import ImageFeatures, cached_features, extract, scores
from pipeline.io import atomic_path, read_json
from pipeline.methods.base import GenerativeModel
from pipeline.methods.export import load_model
from pipeline.pixels import to_unit
from pipeline.reports.grid import image_grid, save_gif, save_image
from pipeline.tracking import tracking_uri

log = logging.getLogger(__name__)

GIF_FRAMES = 25  # frames of the denoising trajectory (evenly spaced over the sampler's steps)


def trajectory_frames(
    model: GenerativeModel, config: EvalConfig, references: np.ndarray | None = None
) -> list[np.ndarray]:
    """Grids of ``trajectory_count`` samples at GIF_FRAMES points from the start (x_T) to the
    sample (same sampler); a conditional model samples from the first ``trajectory_count``
    ``references`` (a colorizer: the colours settle onto each image's fixed lightness)."""
    n = config.trajectory_count
    cond = None
    if model.conditional:
        n = min(n, len(references))
        cond = model.condition(to_unit(np.array(references[:n])).to(model.device))
    generator = torch.Generator(model.device).manual_seed(config.seed)
    with torch.no_grad():
        states = list(
            model.sample_progressive(
                n,
                generator=generator,
                steps=config.steps,
                sampler=config.sampler,
                eta=config.eta,
                cond=cond,
            )
        )
    keep = np.unique(
        np.linspace(0, len(states) - 1, min(GIF_FRAMES, len(states))).round().astype(int)
    )
    return [image_grid(states[i].clamp(-1, 1), nrow=n) for i in keep]


def fid_kid(
    extractor: ImageFeatures, real: torch.Tensor, images: np.ndarray, config: EvalConfig
) -> dict[str, float]:
    """``fid_<features>``, ``kid_<features>`` and its std of uint8 ``images`` against the real
    test features."""
    result = scores(
        real, extract(extractor, images, desc="sample features"), config.kid_subset_size
    )
    name = config.features
    return {
        f"fid_{name}": result["fid"],
        f"kid_{name}": result["kid"],
        f"kid_{name}_std": result["kid_std"],
    }


def colorization_scores(
    models_dir: str | Path,
    baseline_dir: str | Path | None,
    references: np.ndarray,
    colorized: np.ndarray,
    score: Callable[[np.ndarray], dict[str, float]],
    config: EvalConfig,
    use_gpu: bool,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """A colorizer's fidelity to the truth and its diversity (K = ``diversity_samples`` samples of
    each of the first ``diversity_count`` references), then FID/KID and fidelity of the baselines:
    ``gray_*`` (ab = 0) and, from ``baseline_dir``, ``regression_*``. Returns the scores, the K
    samples (n, K, C, H, W) and the n references they colorize (``spread`` over ``references``)."""
    out = fidelity(colorized, references)
    shown = references[spread(len(references), config.diversity_count)]
    k = config.diversity_samples
    repeated = np.repeat(shown, k, axis=0)
    samples = generate(models_dir, config, use_gpu, repeated).reshape(
        len(shown), k, *shown.shape[1:]
    )
    out["diversity_ab"] = ab_diversity(samples)
    baselines = {"gray": gray_images(references)}
    if baseline_dir is not None:
        baselines["regression"] = generate(baseline_dir, config, use_gpu, references)
    for name, images in baselines.items():
        scored = {**score(images), **fidelity(images, references)}
        out |= {f"{name}_{k}": v for k, v in scored.items() if k != "colourfulness_truth"}
    return out, samples, shown


def evaluate(
    params: Params,
    *,
    models_dir: str | Path,
    featurenet_dir: str | Path | None,
    processed_dir: str | Path,
    train_report: str | Path,
    metrics_path: str | Path,
    grid_png: str | Path,
    trajectory_gif: str | Path,
    baseline_dir: str | Path | None = None,
    project_dir: str | Path = ".",
) -> dict[str, Any]:
    """Write metrics.json (fid_/kid_<features>; for a colorizer also its fidelity, diversity and
    the gray and regression baselines' scores; settings, wall time), the sample grid (a colorizer:
    triptychs) and the GIF, and log them to the training run recorded in ``train_report``. Returns
    the metrics. Every path is a keyword."""
    ec, processed_dir = params.eval, Path(processed_dir)
    report = read_json(
        train_report, ("mlflow_run_id",), made_by="the train stage (dvc repro train)"
    )
    model = load_model(models_dir)  # fails early on a missing or corrupted model
    if baseline_dir is not None and not (
        model.conditional and load_model(baseline_dir).conditional
    ):
        raise ValueError(
            f"evaluate: a baseline ({baseline_dir}) is compared with colorizers only; "
            f"{models_dir} holds model.family {model.params.model.family!r}"
        )
    needed = ec.num_samples if model.conditional else 2
    verify_processed(
        processed_dir,
        image_shape=model.params.data.image_shape,
        min_counts={
            "test": (
                needed,
                "evaluate (eval.num_samples test images to colorize)"
                if model.conditional
                else "evaluate (FID of the test split)",
            )
        },
    )
    extractor, backend_report = load_extractor(ec, featurenet_dir)
    real_images = ProcessedImages(processed_dir, "test").images  # uint8 (N, C, H, W), memmap

    started = time.perf_counter()
    init_ray(params)
    use_gpu = resolve_use_gpu(model.params.train.use_gpu)
    # a colorizer colorizes num_samples test images spread over the split (every test photo)
    references = (
        np.array(real_images[spread(len(real_images), ec.num_samples)])
        if model.conditional
        else None
    )
    fake_images = generate(models_dir, ec, use_gpu, references)
    real = cached_features(
        extractor, real_images, params.download.resolved_cache_dir() / "fid-stats"
    )

    def score(images: np.ndarray) -> dict[str, float]:
        return fid_kid(extractor, real, images, ec)

    results = score(fake_images)
    if model.conditional:
        extra, samples, shown = colorization_scores(
            models_dir, baseline_dir, references, fake_images, score, ec, use_gpu
        )
        results |= extra
        flat = torch.from_numpy(samples.reshape(-1, *samples.shape[2:]))
        grid = image_grid(*model.panel(to_unit(flat), to_unit(shown)))
    else:
        grid = image_grid(to_unit(fake_images[: ec.grid_count]))
    bad = {k: v for k, v in results.items() if not math.isfinite(v)}
    if bad:  # never written as a score
        raise ValueError(
            f"evaluate: non-finite scores {bad} (eval.features {ec.features}, eval.num_samples "
            f"{ec.num_samples}, eval.kid_subset_size {ec.kid_subset_size}); nothing was written"
        )
    metrics = {
        **results,
        "num_samples": len(fake_images),
        "num_real": len(real_images),
        "features": ec.features,
        **backend_report,
        "sampler": ec.sampler,
        "steps": ec.steps,
        "eta": ec.eta,
        "seed": ec.seed,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    save_image(grid, grid_png)
    trajectory_references = (
        None if references is None else references[spread(len(references), ec.trajectory_count)]
    )
    save_gif(trajectory_frames(model, ec, trajectory_references), trajectory_gif)
    with atomic_path(metrics_path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")

    log_to_run(
        report,
        params,
        metrics,
        list(results),
        (metrics_path, grid_png, trajectory_gif),
        project_dir,
    )
    return metrics


def log_to_run(
    report: dict[str, Any],
    params: Params,
    metrics: dict[str, Any],
    scored: list[str],
    files,
    project_dir: str | Path,
) -> None:
    """The ``scored`` metrics as metrics of the training run (``report``: reports/train.json); the
    eval settings as ``eval.*``/``featurenet.*`` tags (tags, not params: a later evaluation with
    other settings overwrites them, params cannot be changed); the files as artifacts under
    ``evaluation/``; the scores and their backend as tags of the registered model version, when
    there is one."""
    run_id = report["mlflow_run_id"]
    client = MlflowClient(tracking_uri(project_dir))
    now = int(time.time() * 1000)
    logged = {k: metrics[k] for k in scored}
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
