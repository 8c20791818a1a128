"""Command line: ``python -m pipeline <command>``; ``--help`` lists the commands.

``entry_point`` also wraps every DVC stage script: bad input (ValueError, including ConfigError) and
I/O failures (OSError: missing files, failed downloads) are logged as one clear line and exit with
status 2, without a traceback; an interruption (Ctrl-C, or a sweep that stopped before its trials
ended) logs its message and exits with 130.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence

import yaml

from pipeline import console
from pipeline.config import load_params, to_dict

log = logging.getLogger("pipeline")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def entry_point(
    main: Callable[[Sequence[str] | None], None],
) -> Callable[[Sequence[str] | None], int]:
    """Set up logging, run ``main(argv)`` and map bad input to exit status 2. A DVC stage run from
    the command line (``argv`` None) prints through ``pipeline.console``: progress and a summary
    on the terminal, the rest in ``logs/<stage>.log``."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        spec = getattr(sys.modules.get(main.__module__), "__spec__", None)
        module = spec.name if spec else main.__module__  # ``python -m stages.x`` runs __main__
        if argv is None and module.startswith("stages."):
            console.start(module.removeprefix("stages."))
        else:
            logging.basicConfig(level=logging.INFO, format=console.FORMAT)
        try:
            main(argv)
        except (ValueError, OSError) as exc:
            log.error("%s", exc)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            log.error("interrupted%s", f": {exc}" if str(exc) else "")
            return EXIT_INTERRUPTED
        return 0

    return run


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
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
