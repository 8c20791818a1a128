"""DVC stage `evaluate`: FID/KID of the trained EMA model, sample grid and denoising GIF."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.console import redact, say
from pipeline.evaluate.run import evaluate
from pipeline.registry import evaluation_class
from pipeline.tracking import tracking_uri


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", required=True, help="the train stage's exported model")
    parser.add_argument(
        "--featurenet", help="the featurenet stage's output (eval.features featurenet)"
    )
    parser.add_argument("--data", required=True, help="the preprocess stage's output")
    parser.add_argument("--train-report", required=True, help="holds the MLflow run id")
    parser.add_argument("--metrics", required=True, help="scores, JSON (DVC metrics)")
    parser.add_argument("--grid", required=True, help="sample grid, PNG")
    parser.add_argument(
        "--trajectory", required=True, help="denoising trajectory (vae, dcgan: interpolation), GIF"
    )
    parser.add_argument(
        "--figures",
        help="directory of the family's figures: interpolation grid (vae, dcgan), guidance sweep "
        "table, plot and strip (ddpm_cfg)",
    )
    parser.add_argument(
        "--baseline", help="colorizers: the regression baseline's exported model, scored alongside"
    )
    parser.add_argument(
        "--photos",
        help="colorizers: the download stage's raw images, whose test photos are colorized whole "
        "as the colorize command does (eval.colorizer.photos)",
    )
    args = parser.parse_args(argv)
    params = load_params(args.params)
    metrics = evaluate(
        params,
        models_dir=args.models,
        featurenet_dir=args.featurenet,
        processed_dir=args.data,
        train_report=args.train_report,
        metrics_path=args.metrics,
        grid_png=args.grid,
        trajectory_gif=args.trajectory,
        figures_dir=args.figures,
        baseline_dir=args.baseline,
        photos_dir=args.photos,
    )
    name = metrics["features"]
    say(
        f"evaluate: fid_{name} {metrics[f'fid_{name}']:.3f}, kid_{name} "
        f"{metrics[f'kid_{name}']:.4f} ({metrics['num_samples']} samples, {metrics['sampler']} "
        f"{metrics['steps']} steps); pictures: {args.grid}, {args.trajectory}"
    )
    for line in evaluation_class(metrics["family"]).summary(metrics, params.eval):
        say(line)
    if args.figures and any(Path(args.figures).iterdir()):
        say(f"  figures: {args.figures}/")
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a server: its URI may carry a password
        say(f"compare runs: open {redact(uri)} in a browser")
    else:
        say(f"compare runs: mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    sys.exit(main())
