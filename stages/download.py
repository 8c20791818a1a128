"""DVC stage `download`: fetch the raw files of data.source into the output directory, verified."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.data import download_source


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="raw data directory (replaced on success)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    download_source(params.data, params.download, args.out)


if __name__ == "__main__":
    sys.exit(main())
