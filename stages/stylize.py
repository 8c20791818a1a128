"""DVC stage `stylize` (stylize/dvc.yaml): every content photo of stylize/params.yaml painted in
every style, each pair an MLflow run (pipeline.style.runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.console import say
from pipeline.style.params import load_style_params
from pipeline.style.runs import stylize_pairs
from pipeline.tracking import redacted, tracking_uri


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="stylize/params.yaml")
    parser.add_argument("--out", required=True, help="folder of <content>__<style>.png")
    parser.add_argument("--metrics", required=True, help="scores, JSON (DVC metrics)")
    parser.add_argument(
        "--panels", required=True, help="content | style | stylized | baseline, PNG"
    )
    args = parser.parse_args(argv)
    params = load_style_params(args.params)
    metrics = stylize_pairs(
        params,
        params_file=args.params,
        out_dir=args.out,
        metrics_path=args.metrics,
        panels_png=args.panels,
    )
    say(
        f"stylize: {len(metrics['pairs'])} pair(s); style distance covered "
        f"{100 * metrics['style_moved']:.0f}% (colour transfer: "
        f"{100 * metrics['baseline_style_moved']:.0f}%), colour distance "
        f"{100 * metrics['colour_moved']:.0f}% ({100 * metrics['baseline_colour_moved']:.0f}%), "
        f"edge agreement {metrics['edge_agreement']:.2f}; {metrics['seconds']:.0f} s per pair"
    )
    say(f"  pictures: {args.panels} (content | style | stylized | colour transfer), {args.out}/")
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        say(f"compare runs: open {redacted(uri)} in a browser")
    else:
        say(f"compare runs: mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    sys.exit(main())
