"""DVC stage `train`: data-parallel training of `model.family` on Ray Train, tracked in MLflow.

Checkpoints go to --checkpoints (outside DVC's outs, so an interrupted `dvc repro` resumes). With
tune.enabled, the tune stage's winning values (--best) are applied over params.yaml first.
--family trains another model family with the same params (the colorization pipeline's regression
baseline, at equal training steps); such a run is not added to the model registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.console import say
from pipeline.train.driver import train
from pipeline.tune.best import apply_best_params


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="the preprocess stage's output")
    parser.add_argument("--checkpoints", required=True, help="Ray Train storage (resume points)")
    parser.add_argument("--models", required=True, help="exported EMA weights + config.json")
    parser.add_argument("--report", required=True, help="JSON summary (DVC metrics)")
    parser.add_argument("--history", required=True, help="loss per step, CSV (DVC plots)")
    parser.add_argument("--samples", required=True, help="final sample grid, PNG")
    parser.add_argument("--best", help="the tune stage's best_params.yaml (with tune.enabled)")
    parser.add_argument(
        "--family",
        help="train this model family instead of model.family (a baseline; not registered)",
    )
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if args.best:
        params = apply_best_params(params, args.best)
    if args.family:
        params = params.with_values({"model.family": args.family, "mlflow.registered_model": None})
    report = train(
        params,
        processed_dir=args.data,
        checkpoints_dir=args.checkpoints,
        models_dir=args.models,
        report_path=args.report,
        history_csv=args.history,
        samples_png=args.samples,
        tags={"dvc_stage": "train" if args.family is None else f"train --family {args.family}"},
    )
    say(
        f"train: {report.steps} steps, final loss {report.final_loss:.4f}, "
        f"{report.images_per_s:.0f} img/s on {len(set(report.worker_nodes))} node(s), "
        f"{report.wall_time_s:.0f} s; model in "
        f"{args.models}/, samples in {args.samples}"
    )
    for line in report.warnings:
        say(f"train: warning: {line}")


if __name__ == "__main__":
    sys.exit(main())
