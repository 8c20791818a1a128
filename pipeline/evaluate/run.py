"""The evaluate stage: sample from the trained EMA model, score FID/KID, draw the pictures, and log
everything into the training's MLflow run."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.cluster import init_ray, resolve_use_gpu
from pipeline.config import EvalConfig, Params, flatten, to_dict
from pipeline.console import redact
from pipeline.data.dataset import ProcessedImages, spread
from pipeline.data.manifest import verify_processed
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.figures import plot_guidance
from pipeline.evaluate.hooks import Drawn, Inputs, Sampler, evaluation_of
from pipeline.evaluate.scores import ImageFeatures, cached_features, extract, scores
from pipeline.io import atomic_dir, copy_into_place, first_line, write_json
from pipeline.methods.export import load_model
from pipeline.reports.grid import save_gif, save_image
from pipeline.reports.train import TrainReport
from pipeline.scene import colour
from pipeline.tracking import PROTOCOL_TAG, connect, promote_champion, tracking_uri

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
    photos_dir: str | Path | None = None,
    project_dir: str | Path = ".",
) -> dict[str, Any]:
    """Write metrics.json (fid_/kid_<features> of every family and the family's own scores,
    pipeline.evaluate.hooks; settings, wall time), the sample grid, the GIF (the denoising
    trajectory; a latent family: a latent interpolation) and the family's figures in
    ``figures_dir``, and log them to the training run recorded in ``train_report``. Returns the
    metrics. Every path is a keyword. The outputs are written once the store holds them: a store
    that fails leaves the previous outputs as they were (``dvc repro`` runs the stage again)."""
    ec = params.eval
    report = TrainReport.read(train_report)
    client = connect(tracking_uri(project_dir))  # an unreachable store fails before any compute
    model = load_model(models_dir)  # fails early on a missing or corrupted model
    hooks = evaluation_of(model, ec)
    hooks.prepare(Inputs(models_dir, featurenet_dir, figures_dir, baseline_dir, photos_dir))
    verify_processed(
        processed_dir,
        image_shape=model.params.data.image_shape,
        min_counts={"test": hooks.test_images()},
    )
    extractor, backend_report = load_extractor(ec, featurenet_dir)
    check_run(client, report, train_report)
    real_images = ProcessedImages(processed_dir, "test").images  # uint8 (N, C, H, W), memmap

    started = time.perf_counter()
    init_ray(params)
    drawn, extras, results = draw_and_score(params, model, hooks, extractor, real_images)
    metrics = {
        **results,
        "family": model.params.model.family,
        "num_samples": len(drawn.images),
        "num_real": len(real_images),
        "features": ec.features,
        **backend_report,
        **{key: getattr(ec, key) for key in ("sampler", "steps", "eta", "seed")},
        **extras.settings,
        "wall_time_s": round(time.perf_counter() - started, 2),
    }
    outputs = Outputs(Path(metrics_path), Path(grid_png), Path(trajectory_gif), figures_dir)
    outputs.publish(
        metrics,
        extras,
        f"fid_{ec.features}",
        log=lambda files: log_to_run(client, report, params, metrics, list(results), files),
    )
    return metrics


def draw_and_score(
    params: Params,
    model: Any,
    hooks: Any,
    extractor: Any,
    real_images: np.ndarray,
) -> tuple[Drawn, Any, dict[str, float]]:
    """The model's samples on Ray (a colorizer's from ``eval.num_samples`` test images spread over
    the split: every test photo), their FID/KID against ``real_images``, the family's extras
    (pipeline.evaluate.hooks), and every score (checked finite)."""
    ec = params.eval
    conditions = model.conditions(
        ec.num_samples, lambda n: np.array(real_images[spread(len(real_images), n)])
    )
    real = cached_features(  # of the colour planes (a colorizer's crops may carry the scene's)
        extractor, colour(real_images), params.download.resolved_cache_dir() / "fid-stats"
    )
    sampler = Sampler(
        ec,
        ray.put(model),  # what Ray's sampling tasks read
        hooks.baseline and ray.put(hooks.baseline),  # loaded once, by the hooks
        resolve_use_gpu(model.params.train.use_gpu),
        score=lambda images: fid_kid(extractor, real, images, ec),
    )
    fake_images = sampler.generate(sampler.models, conditions)
    drawn = Drawn(conditions, fake_images, sampler.score(fake_images))
    extras = hooks.extras(sampler, Drawn(conditions, fake_images, dict(drawn.scores)))
    results = {**drawn.scores, **extras.scores}
    check_finite(results, ec)
    return drawn, extras, results


@dataclass(frozen=True)
class Outputs:
    """Where the evaluate stage's files go: the metrics, the grid, the GIF, the figures folder."""

    metrics: Path
    grid: Path
    trajectory: Path
    figures: str | Path | None

    def publish(
        self,
        metrics: dict[str, Any],
        extras: Any,
        headline: str,
        log: Callable[[list[Path]], None],
    ) -> None:
        """Write every file into a staging folder, ``log`` them (to the MLflow run), then move
        them into place: a store that fails leaves the previous outputs as they were."""
        with tempfile.TemporaryDirectory(prefix="evaluate-") as folder:
            staging = Path(folder)
            staged = {p: staging / p.name for p in (self.metrics, self.grid, self.trajectory)}
            save_image(extras.grid, staged[self.grid])
            save_gif(extras.trajectory, staged[self.trajectory])
            write_json(staged[self.metrics], metrics)
            figures = write_figures(
                self.figures and staging / "figures", extras.pictures, extras.guidance, headline
            )
            log([*staged.values(), *figures])
            if self.figures:
                staged[Path(self.figures)] = staging / "figures"
            for path, source in staged.items():
                copy_into_place(source, path)


def check_finite(results: dict[str, float], config: EvalConfig) -> None:
    """ValueError naming the non-finite scores: never written as a score."""
    bad = {k: v for k, v in results.items() if not math.isfinite(v)}
    if bad:
        raise ValueError(
            f"evaluate: non-finite scores {bad} (eval.features {config.features}, "
            f"eval.num_samples {config.num_samples}, eval.kid_subset_size "
            f"{config.kid_subset_size}); nothing was written"
        )


def check_run(client: MlflowClient, report: TrainReport, train_report: str | Path) -> None:
    """ValueError unless the store holds the training run ``train_report`` names, active (the
    scores are logged into it): said before any sampling, not after."""
    try:
        run = client.get_run(report.mlflow_run_id)
    except MlflowException as exc:
        raise ValueError(
            f"{train_report}: mlflow_run_id {report.mlflow_run_id} is not a run of the tracking "
            f"store {redact(client.tracking_uri)} ({first_line(exc)}); re-run the train stage "
            "or set MLFLOW_TRACKING_URI to the store it logged to"
        ) from None
    if run.info.lifecycle_stage != "active":
        raise ValueError(
            f"{train_report}: MLflow run {report.mlflow_run_id} is deleted; restore it "
            "(mlflow runs restore) or re-run the train stage"
        )


def log_to_run(
    client: MlflowClient,
    report: TrainReport,
    params: Params,
    metrics: dict[str, Any],
    scored: list[str],
    files: list[Path],
) -> None:
    """The ``scored`` metrics as metrics of the training run (``report``: reports/train.json); the
    eval settings as ``eval.*``/``featurenet.*`` tags (tags, not params: a later evaluation with
    other settings overwrites them, params cannot be changed); the files as artifacts under
    ``evaluation/``; the scores, their backend and their settings' digest as tags of the
    registered model version, when there is one, which becomes the model's ``@champion`` when
    it beats the current one (pipeline.tracking.promote_champion)."""
    run_id = report.mlflow_run_id
    now = int(time.time() * 1000)
    logged = {k: metrics[k] for k in scored}
    if "featurenet_test_accuracy" in metrics:
        logged["featurenet_test_accuracy"] = metrics["featurenet_test_accuracy"]
    logged["eval_wall_time_s"] = metrics["wall_time_s"]
    settings = flatten({"eval": to_dict(params.eval), "featurenet": to_dict(params.featurenet)})
    settings["features_sha256"] = str(metrics["weights_sha256"])  # None: a weight-free space
    name, version = report.registered_model, report.registered_model_version
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in logged.items()],
            tags=[RunTag(k, v) for k, v in settings.items()],
        )
        for path in files:
            client.log_artifact(run_id, str(path), "evaluation")
        if name and version:
            protocol = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
            tags = {**logged, "features": metrics["features"], PROTOCOL_TAG: protocol[:16]}
            for key, value in tags.items():
                client.set_model_version_tag(name, str(version), key, str(value))
            headline = f"fid_{params.eval.features}"
            log.info("%s", promote_champion(client, name, str(version), headline, protocol[:16]))
    except MlflowException as exc:
        raise ConnectionError(
            f"MLflow tracking store {redact(client.tracking_uri)}: the scores could not be "
            f"logged to run {run_id} ({first_line(exc)}); no output was written"
        ) from None
