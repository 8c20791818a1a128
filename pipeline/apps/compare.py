"""``python -m pipeline compare``: one table and one picture across model families and runs: FID
against training compute from the MLflow experiment (pipeline.reports.compare)."""

from __future__ import annotations

import argparse
import logging

from mlflow.tracking import MlflowClient

from pipeline.config import load_params
from pipeline.reports.compare import compare_table, write_compare
from pipeline.tracking import tracking_uri

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> None:
    experiment = args.experiment or load_params(args.params).mlflow.experiment
    table = compare_table(MlflowClient(tracking_uri()), experiment, args.features)
    write_compare(table, args.out, args.plot)
    best = table.iloc[0]
    log.info(
        "compare: %d run(s) scored in fid_%s; best %s (%s) fid %.3f after %.0f %s-seconds; "
        "table %s, plot %s",
        len(table),
        best["features"],
        best["run_name"],
        best["family"],
        best["fid"],
        best["compute_s"],
        best["accelerator"].upper(),
        args.out,
        args.plot,
    )


def add_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare the evaluated training runs of an MLflow experiment: FID vs compute",
        description=__doc__.split("\n\n")[0].replace("``", "") + ".",
    )
    parser.add_argument("--params", default="params.yaml", help="its mlflow.experiment")
    parser.add_argument("--experiment", help="default: mlflow.experiment of --params")
    parser.add_argument(
        "--features", help="the feature space to compare in (default: the newest run's)"
    )
    parser.add_argument("--out", default="reports/compare.csv", help="the table, CSV")
    parser.add_argument("--plot", default="reports/plots/compare.png", help="the picture, PNG")
    parser.set_defaults(func=run)
