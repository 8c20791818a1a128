"""DVC stage `featurenet`: train the offline FID feature network on the train split."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.console import say
from pipeline.evaluate.featurenet import save_featurenet, train_featurenet
from pipeline.io import write_json


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="the preprocess stage's output")
    parser.add_argument("--out", required=True, help="weights.pt + config.json")
    parser.add_argument("--report", required=True, help="test accuracy, JSON (DVC metrics)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    net, result = train_featurenet(args.data, params.featurenet)
    save_featurenet(net, params.featurenet, result, args.out)
    write_json(args.report, dataclasses.asdict(result))
    say(
        f"featurenet: test accuracy {result.test_accuracy:.1%} after {result.epochs} epochs; "
        f"weights in {args.out}/"
    )


if __name__ == "__main__":
    sys.exit(main())
