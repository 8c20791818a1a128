"""Command-line option types that refuse a bad value with one line naming the option (argparse
prints ``argument --scale: must be a finite number in [0.5, 8], got inf`` and exits 2): NaN,
infinities, numbers beyond a float and integers beyond 64 bits never reach the model."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed and numpy take 64-bit seeds


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer in [{low:,}, {high:,}], got {_short(text)}"
            )
        return value

    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(
                f"must be a finite number in [{low:g}, {high:g}], got {_short(text)}"
            )
        return value

    return parse


seed = int_in(0, MAX_SEED)


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: the one way to let a command replace files (pipeline.apps.outputs)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that exist (never folders, never inputs); default: refuse",
    )


def add_precision(parser: argparse.ArgumentParser, *, cpu_bf16: bool = False) -> None:
    """``--precision``: the network's arithmetic while sampling (GenerativeModel.sample); auto as
    pipeline.methods.step.resolve_precision resolves it (``cpu_bf16``: bf16 on CPUs that have it
    in hardware)."""
    on_cpu = (
        "on CPUs with bf16 in hardware (AVX512-BF16, AMX), else fp32" if cpu_bf16 else "fp32 on CPU"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help=f"the network while sampling: bf16 autocast or fp32 (default auto: bf16 on CUDA and "
        f"{on_cpu})",
    )
