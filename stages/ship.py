"""DVC stage `ship` (colorize/shipped/dvc.yaml): the trained and scored colorizer and its guide,
checked, with their provenance, into pipeline/colorizer/, where `python -m pipeline colorize` finds
it when no --model is given (pipeline.shipped); then logged to the colorizer's MLflow run as a
model that colours photos (pipeline.photo_model), registered as --register with the alias
``shipped``, for `mlflow models serve -m models:/NAME@shipped`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import mlflow

from pipeline.cli import entry_point
from pipeline.console import say
from pipeline.photo_model import log_photo_model
from pipeline.reports.train import TrainReport
from pipeline.shipped import SHIPPED_DIR, Trained, ship
from pipeline.tracking import connect, fluent_store, tracking_uri

ALIAS = "shipped"  # the registered version that pipeline/colorizer holds


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="the params file the model trained with")
    parser.add_argument("--models", required=True, help="the train stage's exported model")
    parser.add_argument("--train-report", required=True, help="holds the MLflow run id")
    parser.add_argument("--guide-params", required=True, help="the params file of the guide")
    parser.add_argument("--guide", required=True, help="the guide's exported model")
    parser.add_argument("--guide-report", required=True, help="the guide's train report")
    parser.add_argument("--metrics", required=True, help="the evaluate stage's scores")
    parser.add_argument("--out", default=str(SHIPPED_DIR), help="default: %(default)s")
    parser.add_argument("--register", required=True, help="registered model of the photo model")
    args = parser.parse_args(argv)
    client = connect(tracking_uri())

    def trained(models: str, params: str, report_file: str) -> Trained:
        report = TrainReport.read(report_file)
        tags = client.get_run(report.mlflow_run_id).data.tags
        return Trained(Path(models), Path(params), report, tags)

    provenance = ship(
        trained(args.models, args.params, args.train_report),
        trained(args.guide, args.guide_params, args.guide_report),
        args.out,
        metrics=args.metrics,
    )
    run_id = TrainReport.read(args.train_report).mlflow_run_id
    with fluent_store(tracking_uri()), mlflow.start_run(run_id=run_id):
        info = log_photo_model(Path(args.out), args.register)
    client.set_registered_model_alias(args.register, ALIAS, info.registered_model_version)
    scores = provenance["metrics"]
    say(
        f"shipped {args.models} (step {provenance['step']}) with the guide {args.guide} (step "
        f"{provenance['guide']['step']}), commit {str(provenance['git_commit'])[:10]}, to "
        f"{args.out}: fid_colour {scores.get('fid_colour', float('nan')):.2f}, right hue "
        f"{100 * scores.get('hue_accuracy', float('nan')):.0f}%; serve it with `mlflow models "
        f"serve -m models:/{args.register}@{ALIAS} --env-manager local`"
    )


if __name__ == "__main__":
    main()
