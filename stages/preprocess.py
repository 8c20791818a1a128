"""DVC stage `preprocess`: decode the raw data into uint8 .npy splits and a manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.data import preprocess


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", required=True, help="the download stage's output")
    parser.add_argument(
        "--out", required=True, help="processed data directory (replaced on success)"
    )
    args = parser.parse_args(argv)
    params = load_params(args.params)
    preprocess(params.data, args.raw, args.out)


if __name__ == "__main__":
    sys.exit(main())
