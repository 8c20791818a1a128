"""The evaluate stage: sample from the trained EMA model, score FID/KID, draw the pictures, and log
everything into the training's MLflow run."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.entities import Metric, RunTag

from pipeline.cluster import for_workers, init_ray, resolve_use_gpu
from pipeline.config import EvalConfig, Params, flatten, to_dict
from pipeline.data.dataset import ProcessedImages, spread
from pipeline.data.manifest import verify_processed
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.colour import ab_diversity, fidelity, gray_images
from pipeline.evaluate.featurenet import FeatureNet, classify, load_featurenet
from pipeline.evaluate.figures import (
    guidance_strip,
    interpolation,
    plot_guidance,
    trajectory_frames,
)
from pipeline.evaluate.sampling import generate
from pipeline.evaluate.scores import ImageFeatures, cached_features, extract, scores
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.methods.base import LatentModel, balanced_labels
from pipeline.methods.export import load_model
from pipeline.pixels import to_unit
from pipeline.reports.grid import image_grid, save_gif, save_image
from pipeline.tracking import connect, tracking_uri

log = logging.getLogger(__name__)


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


def class_accuracy(
    classifier: FeatureNet, images: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """How often FeatureNet's classifier head says c of samples drawn for class c:
    ``class_accuracy`` (the mean over the classes) and ``class_accuracy_<c>`` per class."""
    predicted = classify(classifier, images)
    per_class = {
        f"class_accuracy_{c}": float((predicted[labels == c] == c).mean())
        for c in np.unique(labels)
    }
    return {"class_accuracy": float(np.mean(list(per_class.values()))), **per_class}


def guidance_sweep(
    models_dir: Path,
    config: EvalConfig,
    use_gpu: bool,
    labels: np.ndarray,
    score: Callable[[np.ndarray], dict[str, float]],
    classifier: FeatureNet,
    scored: dict[float, dict[str, float]],
) -> pd.DataFrame:
    """FID/KID and class accuracy of ``num_samples`` samples at every w of
    ``eval.guidance_sweep`` (``scored``: the ones already measured, by w)."""
    rows = []
    for w in config.guidance_sweep:
        if w not in scored:
            at_w = dataclasses.replace(config, guidance_scale=w)
            images = generate(models_dir, at_w, use_gpu, labels, desc=f"sampling w={w:g}")
            scored[w] = {**score(images), **class_accuracy(classifier, images, labels)}
        rows.append({"guidance_scale": w, **scored[w]})
    return pd.DataFrame(rows)


def write_figures(
    figures_dir: str | Path | None,
    pictures: dict[str, np.ndarray],
    guidance: pd.DataFrame | None,
    metric: str,
) -> list[Path]:
    """Replace ``figures_dir`` (atomically) with the family's ``pictures`` and, for a guided
    model, the guidance sweep's table (guidance.csv) and plot (guidance.png); returns the files.
    A family without figures leaves it empty."""
    if figures_dir is None:
        return []
    with atomic_dir(figures_dir) as tmp:
        for name, picture in pictures.items():
            save_image(picture, tmp / name)
        if guidance is not None:
            guidance.to_csv(tmp / "guidance.csv", index=False)
            plot_guidance(guidance, metric, tmp / "guidance.png")
        names = sorted(path.name for path in tmp.iterdir())
    return [Path(figures_dir) / name for name in names]


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
    figures_dir: str | Path | None = None,
    baseline_dir: str | Path | None = None,
    project_dir: str | Path = ".",
) -> dict[str, Any]:
    """Write metrics.json (fid_/kid_<features> of every family; for a colorizer also its fidelity,
    diversity and the gray and regression baselines' scores; for a class-conditional model its
    class accuracy; settings, wall time), the sample grid (a colorizer: triptychs), the GIF (the
    denoising trajectory; a latent family: a latent interpolation) and the family's figures in
    ``figures_dir`` (latent interpolation grid; guidance sweep table, plot and strip), and log them
    to the training run recorded in ``train_report``. Returns the metrics. Every path is a
    keyword."""
    ec, processed_dir = params.eval, Path(processed_dir)
    report = read_json(
        train_report, ("mlflow_run_id",), made_by="the train stage (dvc repro train)"
    )
    model = load_model(models_dir)  # fails early on a missing or corrupted model
    kind = model.conditioning
    if baseline_dir is not None and not (
        kind == "image" and load_model(baseline_dir).conditioning == "image"
    ):
        raise ValueError(
            f"evaluate: a baseline ({baseline_dir}) is compared with colorizers only; "
            f"{models_dir} holds model.family {model.params.model.family!r}"
        )
    if kind == "class" and featurenet_dir is None:
        raise ValueError(
            f"evaluate: {models_dir} holds the class-conditional {model.params.model.family!r}, "
            "whose class accuracy FeatureNet's classifier measures: pass --featurenet"
        )
    if figures_dir is None and (
        kind == "class" and ec.guidance_sweep or isinstance(model, LatentModel)
    ):
        raise ValueError(
            f"evaluate: model.family {model.params.model.family!r} draws figures: pass --figures"
        )
    colorizes = kind == "image"
    verify_processed(
        processed_dir,
        image_shape=model.params.data.image_shape,
        min_counts={
            "test": (
                ec.num_samples if colorizes else 2,
                "evaluate (eval.num_samples test images to colorize)"
                if colorizes
                else "evaluate (FID of the test split)",
            )
        },
    )
    extractor, backend_report = load_extractor(ec, featurenet_dir)
    classifier = load_featurenet(featurenet_dir)[0] if kind == "class" else None
    real_images = ProcessedImages(processed_dir, "test").images  # uint8 (N, C, H, W), memmap

    started = time.perf_counter()
    init_ray(params)
    use_gpu = resolve_use_gpu(model.params.train.use_gpu)
    sampled_from = for_workers(params, models_dir)  # what Ray's sampling tasks load
    baseline = baseline_dir and for_workers(params, baseline_dir)
    conditions = None
    if colorizes:  # num_samples test images spread over the split (every test photo)
        conditions = np.array(real_images[spread(len(real_images), ec.num_samples)])
    elif kind == "class":  # every class equally often
        conditions = balanced_labels(ec.num_samples, model.num_classes).numpy()
    fake_images = generate(sampled_from, ec, use_gpu, conditions)
    real = cached_features(
        extractor, real_images, params.download.resolved_cache_dir() / "fid-stats"
    )

    def score(images: np.ndarray) -> dict[str, float]:
        return fid_kid(extractor, real, images, ec)

    results = score(fake_images)
    pictures: dict[str, np.ndarray] = {}  # the family's figures: file name -> image
    guidance = None
    trajectory = None
    if colorizes:
        extra, samples, shown = colorization_scores(
            sampled_from, baseline, conditions, fake_images, score, ec, use_gpu
        )
        results |= extra
        flat = torch.from_numpy(samples.reshape(-1, *samples.shape[2:]))
        grid = image_grid(*model.panel(to_unit(flat), to_unit(shown)))
    else:
        grid = image_grid(*model.panel(to_unit(fake_images[: ec.grid_count]), None))
    if kind == "class":
        results |= class_accuracy(classifier, fake_images, conditions)
        if ec.guidance_sweep:
            guidance = guidance_sweep(
                sampled_from, ec, use_gpu, conditions, score, classifier,
                {ec.guidance_scale: results},
            )  # fmt: skip
            pictures["guidance_strip.png"] = guidance_strip(model, ec)
    if isinstance(model, LatentModel):
        trajectory, pictures["interpolation.png"] = interpolation(model, ec)
    bad = {k: v for k, v in results.items() if not math.isfinite(v)}
    if bad:  # never written as a score
        raise ValueError(
            f"evaluate: non-finite scores {bad} (eval.features {ec.features}, eval.num_samples "
            f"{ec.num_samples}, eval.kid_subset_size {ec.kid_subset_size}); nothing was written"
        )
    metrics = {
        **results,
        "family": model.params.model.family,
        "num_samples": len(fake_images),
        "num_real": len(real_images),
        "features": ec.features,
        **backend_report,
        "sampler": ec.sampler,
        "steps": ec.steps,
        "eta": ec.eta,
        "seed": ec.seed,
        **({"guidance_scale": ec.guidance_scale} if kind == "class" else {}),
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    save_image(grid, grid_png)
    if trajectory is None:
        trajectory_references = (
            None if conditions is None or not colorizes
            else conditions[spread(len(conditions), ec.trajectory_count)]
        )  # fmt: skip
        trajectory = trajectory_frames(model, ec, trajectory_references)
    save_gif(trajectory, trajectory_gif)
    figures = write_figures(figures_dir, pictures, guidance, f"fid_{ec.features}")
    write_json(metrics_path, metrics)

    log_to_run(
        report,
        params,
        metrics,
        list(results),
        (metrics_path, grid_png, trajectory_gif, *figures),
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
    client = connect(tracking_uri(project_dir))
    now = int(time.time() * 1000)
    logged = {k: metrics[k] for k in scored}
    if "featurenet_test_accuracy" in metrics:
        logged["featurenet_test_accuracy"] = metrics["featurenet_test_accuracy"]
    logged["eval_wall_time_s"] = metrics["wall_time_s"]
    settings = flatten({"eval": to_dict(params.eval), "featurenet": to_dict(params.featurenet)})
    settings["features_sha256"] = str(metrics["weights_sha256"])  # None: a weight-free space
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
