"""DVC stage `stylize` (stylize/dvc.yaml): every content photo of stylize/params.yaml painted in
every style, each pair an MLflow run (pipeline.style.runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.console import redact, say
from pipeline.style.params import load_style_params
from pipeline.style.runs import stylize_pairs
from pipeline.style.sweep import apply_best
from pipeline.tracking import tracking_uri


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="stylize/params.yaml")
    parser.add_argument("--best", help="the tune stage's values (applied when tune.enabled), YAML")
    parser.add_argument("--out", required=True, help="folder of <content>__<style>.png")
    parser.add_argument("--metrics", required=True, help="scores, JSON (DVC metrics)")
    parser.add_argument(
        "--panels", required=True, help="content | style | stylized | baseline, PNG"
    )
    args = parser.parse_args(argv)
    params = load_style_params(args.params)
    if params.tune.enabled and args.best is None:
        raise ValueError("tune.enabled is true: give --best (the tune stage's best_params.yaml)")
    if args.best is not None:
        params = apply_best(params, args.best)
    metrics = stylize_pairs(
        params,
        params_file=args.params,
        out_dir=args.out,
        metrics_path=args.metrics,
        panels_png=args.panels,
    )
    share = {k: f"{100 * metrics[k]:.0f}% ({100 * metrics[f'baseline_{k}']:.0f}%)"
             for k in ("style_moved", "texture_moved", "colour_moved")}  # fmt: skip
    tuned = f" (tuned: {args.best})" if params.tune.enabled else ""
    say(
        f"stylize: {len(metrics['pairs'])} pair(s) at content_weight "
        f"{params.stylize.content_weight:g}, style_weight {params.stylize.style_weight:.4g}{tuned}, "
        f"{metrics['seconds']:.0f} s each; distance to "
        f"the painting covered (colour transfer's): style {share['style_moved']}, texture "
        f"{share['texture_moved']}, colour {share['colour_moved']}; edge agreement with the "
        f"photo {metrics['edge_agreement']:.2f} ({metrics['baseline_edge_agreement']:.2f})"
    )
    say(f"  pictures: {args.panels} (content | style | stylized | colour transfer), {args.out}/")
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        say(f"compare runs: open {redact(uri)} in a browser")
    else:
        say(f"compare runs: mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    sys.exit(main())
