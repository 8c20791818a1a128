"""What a stage prints: one progress view and a short summary on the terminal; everything else in a
per-stage log file.

``start(stage)`` (run by ``pipeline.cli.entry_point`` when a stage or command runs from the command
line) points file descriptors 1 and 2 at ``logs/<stage>.log``: Ray's tables and worker streams,
library warnings and our own INFO lines all land there, in full. The terminal, kept as ``terminal``,
gets the ``pipeline`` loggers' INFO lines, anyone's errors, and the bars of ``progress_bar``.
``PIPELINE_VERBOSE=1`` keeps the full stream on the terminal as before (and writes no log file).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

LOG_DIR = "logs"  # relative to the working directory (the project); git-ignored
# scheme://user:password@ in any text: a tracking URI's credentials (MLFLOW_TRACKING_URI)
CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
# MLflow prints "View run ... at: <tracking URI with its password>" when a run ends
QUIET_ENV = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
terminal: IO[str] | None = None  # the terminal once ``start`` redirected the process's output


def verbose() -> bool:
    return os.environ.get("PIPELINE_VERBOSE", "") not in ("", "0")


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar on the terminal (stderr when nothing was redirected)."""
    return tqdm(*args, file=terminal or sys.stderr, **kwargs)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``:
    what may be logged or printed."""
    return CREDENTIALS.sub(r"\1:***@", text)


class _Redacting(logging.Filter):
    """Every record's message with credentials redacted (``redact``): a library that logs a
    tracking URI, or an error that quotes one, writes no password to the terminal or the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if CREDENTIALS.search(message):
            record.msg, record.args = redact(message), None
        return True


class _ForTerminal(logging.Filter):
    """Our own INFO and up, and anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "pipeline" or record.name.startswith(("pipeline.", "stages."))
        return ours or record.levelno >= logging.ERROR


class _Terse(logging.Formatter):
    """INFO lines as plain sentences; warnings and errors with their level and source."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage() if record.levelno == logging.INFO else super().format(record)


def start(stage: str) -> Path | None:
    """Log to the terminal, and (unless verbose) send everything else to ``logs/<stage>.log``;
    returns the log file."""
    global terminal
    for key, value in QUIET_ENV.items():  # inherited by the Ray workers this process starts
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format=FORMAT, force=True)
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redacting())
    if verbose():
        return None
    path = Path(LOG_DIR) / f"{stage}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(log_fd, 0o600)  # a log from before this change kept its mode: only its owner reads
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setStream(sys.stderr)  # the file: every record, in full
    to_terminal = logging.StreamHandler(terminal)
    to_terminal.setFormatter(_Terse())
    to_terminal.addFilter(_ForTerminal())
    to_terminal.addFilter(_Redacting())
    root.addHandler(to_terminal)
    say(f"{stage}: full log in {path} (PIPELINE_VERBOSE=1 shows it here)")
    return path


def say(text: str) -> None:
    """A line for people on the terminal (and in the log file)."""
    logging.getLogger("pipeline").info("%s", text)
