"""DVC stage `schedules`: plot alpha_bar and log SNR of every beta schedule at the params' T."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.reports.schedules import write_schedule_report


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--csv", required=True, help="table for `dvc plots`")
    parser.add_argument("--png", required=True, help="the plot")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    write_schedule_report(params.diffusion, args.csv, args.png)


if __name__ == "__main__":
    sys.exit(main())
