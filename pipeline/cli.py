"""``entry_point``: how every command line of the project runs (the DVC stage scripts and
``python -m pipeline``, see pipeline.apps): bad input (ValueError, including ConfigError) and
I/O failures (OSError: missing files, failed downloads) are logged as one clear line and exit with
status 2, without a traceback; an interruption (Ctrl-C, or a sweep that stopped before its trials
ended) logs its message and exits with 130.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence

from pipeline import console

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
