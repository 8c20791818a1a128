"""DVC stage `evaluate`: FID/KID of the trained EMA model, sample grid and denoising GIF."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.console import say
from pipeline.evaluate.run import evaluate
from pipeline.tracking import tracking_uri


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", required=True, help="the train stage's exported model")
    parser.add_argument("--featurenet", required=True, help="the featurenet stage's output")
    parser.add_argument("--data", required=True, help="the preprocess stage's output")
    parser.add_argument("--train-report", required=True, help="holds the MLflow run id")
    parser.add_argument("--metrics", required=True, help="scores, JSON (DVC metrics)")
    parser.add_argument("--grid", required=True, help="sample grid, PNG")
    parser.add_argument("--trajectory", required=True, help="denoising trajectory, GIF")
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
    )
    name = metrics["features"]
    say(
        f"evaluate: fid_{name} {metrics[f'fid_{name}']:.3f}, kid_{name} "
        f"{metrics[f'kid_{name}']:.4f} ({metrics['num_samples']} samples, {metrics['sampler']} "
        f"{metrics['steps']} steps); pictures: {args.grid}, {args.trajectory}"
    )
    say(f"compare runs: mlflow ui --backend-store-uri {tracking_uri()}")


if __name__ == "__main__":
    sys.exit(main())
