"""DVC stage `ship` (colorize/shipped/dvc.yaml): the trained and scored colorizer, checked, with its
provenance, into pipeline/colorizer/, where `python -m pipeline colorize` finds it when no --model
is given (pipeline.shipped)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.console import say
from pipeline.reports.train import TrainReport
from pipeline.shipped import SHIPPED_DIR, ship
from pipeline.tracking import connect, tracking_uri


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", required=True, help="the params file the model trained with")
    parser.add_argument("--models", required=True, help="the train stage's exported model")
    parser.add_argument("--train-report", required=True, help="holds the MLflow run id")
    parser.add_argument("--metrics", required=True, help="the evaluate stage's scores")
    parser.add_argument("--out", default=str(SHIPPED_DIR), help="default: %(default)s")
    args = parser.parse_args(argv)
    report = TrainReport.read(args.train_report)
    run = connect(tracking_uri()).get_run(report.mlflow_run_id)
    provenance = ship(
        args.models,
        args.out,
        params_file=args.params,
        train_report=report,
        run_tags=run.data.tags,
        metrics=args.metrics,
    )
    scores = provenance["metrics"]
    say(
        f"shipped {args.models} (step {provenance['step']}, commit "
        f"{str(provenance['git_commit'])[:10]}) to {args.out}: fid_colour "
        f"{scores.get('fid_colour', float('nan')):.2f}, right hue "
        f"{100 * scores.get('hue_accuracy', float('nan')):.0f}%"
    )


if __name__ == "__main__":
    main()
