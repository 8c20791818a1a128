"""The command line: ``python -m pipeline <command>`` (``--help`` lists the commands): what people
do with the library and its trained models outside the DVC stages."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import yaml

from pipeline.apps import colorize, compare, sample, serve, stylize
from pipeline.cli import entry_point
from pipeline.config import load_params, to_dict

log = logging.getLogger("pipeline")


def _validate(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    sys.stdout.write(yaml.safe_dump(to_dict(params), sort_keys=False))
    log.info("%s is valid", args.params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Diffusion experiment pipeline. The DVC stages run the study (`dvc repro`); "
        "these commands use its library directly.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help="check a params file and print it with every default filled in",
        description="Load and validate a params file; exit 2 with the bad key and value if invalid.",
    )
    validate.add_argument("params", nargs="?", default="params.yaml", help="(default: params.yaml)")
    validate.set_defaults(func=_validate)
    colorize.add_command(commands)
    stylize.add_command(commands)
    sample.add_command(commands)
    compare.add_command(commands)
    serve.add_command(commands)
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
