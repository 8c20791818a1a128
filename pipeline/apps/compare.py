"""``python -m pipeline compare``: one table and one picture across model families and runs: FID
against training compute from the MLflow experiment (pipeline.reports.compare)."""

from __future__ import annotations

import argparse
import logging
from urllib.parse import urlsplit

from pipeline.apps.args import add_overwrite
from pipeline.apps.outputs import check_outputs
from pipeline.config import load_params
from pipeline.reports.compare import compare_table, write_compare
from pipeline.tracking import connect, tracking_uri

log = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> None:
    uri = tracking_uri()
    store = [urlsplit(uri).path] if uri.startswith("sqlite:") else []
    check_outputs([args.out, args.plot], [args.params, *store], overwrite=args.overwrite)
    experiment = args.experiment or load_params(args.params).mlflow.experiment
    table = compare_table(connect(uri), experiment, args.features)
    write_compare(table, args.out, args.plot, overwrite=args.overwrite)
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
    add_overwrite(parser)
    parser.set_defaults(func=run)
