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
    if "class_accuracy" in metrics:
        say(
            f"  class accuracy {metrics['class_accuracy']:.3f} at guidance w "
            f"{metrics['guidance_scale']:g} (FeatureNet's classifier on the samples)"
        )
    if args.figures and any(Path(args.figures).iterdir()):
        say(f"  figures: {args.figures}/")
    if "psnr" in metrics:  # a colorizer, next to its baselines
        for prefix, label in (("", "model"), ("regression_", "regression"), ("gray_", "gray")):
            if f"{prefix}psnr" in metrics:
                say(
                    f"  {label:<10} fid_{name} {metrics[f'{prefix}fid_{name}']:7.3f}  psnr "
                    f"{metrics[f'{prefix}psnr']:5.2f}  ssim {metrics[f'{prefix}ssim']:.3f}  "
                    f"ciede2000 {metrics[f'{prefix}ciede2000']:5.2f} "
                    f"({metrics[f'{prefix}ciede2000_relative']:.2f} of gray's)  right hue "
                    f"{100 * metrics[f'{prefix}hue_accuracy']:3.0f}%  colourfulness "
                    f"{metrics[f'{prefix}colourfulness']:5.1f} (truth "
                    f"{metrics['colourfulness_truth']:.1f})"
                )
        say(f"  diversity_ab {metrics['diversity_ab']:.2f} (mean pairwise ab distance of samples)")
    if "photo_hue_accuracy" in metrics:  # whole test photos, as the colorize command colours them
        say(
            f"  whole test photos ({params.eval.colorizer.photos} at most), as the colorize command does:"
        )
        for prefix, label in (
            ("photo_", "command"),
            ("photo_draws_", "draws"),
            ("photo_regression_", "regression"),
        ):
            if f"{prefix}hue_accuracy" in metrics:
                say(
                    f"  {label:<10} fid_colour {metrics[f'{prefix}fid_colour']:7.3f}  ciede2000 "
                    f"{metrics[f'{prefix}ciede2000_relative']:.2f} of gray's  right hue "
                    f"{100 * metrics[f'{prefix}hue_accuracy']:3.0f}%  chroma "
                    f"{metrics[f'{prefix}chroma_ratio']:.2f} of the truth's"
                )
        say(f"  gray       fid_colour {metrics['photo_gray_fid_colour']:7.3f}")
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):  # a server: its URI may carry a password
        say(f"compare runs: open {redact(uri)} in a browser")
    else:
        say(f"compare runs: mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    sys.exit(main())
