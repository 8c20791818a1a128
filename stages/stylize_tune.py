"""DVC stage `tune` of stylize/dvc.yaml: a Ray Tune search of the stylization's weights over
stylize/params.yaml's tune.space, every trial painting every pair at a smaller budget, ranked by the
stylize stage's score (pipeline.style.sweep). Writes the winning values for the stylize stage."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.console import say
from pipeline.style.params import load_style_params
from pipeline.style.sweep import run_style_sweep


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="stylize/params.yaml")
    parser.add_argument("--best", required=True, help="winning values, YAML (read by stylize)")
    parser.add_argument("--results", required=True, help="one row per trial, CSV")
    parser.add_argument("--plot", required=True, help="score against the weights' ratio, PNG")
    args = parser.parse_args(argv)
    params = load_style_params(args.params)
    best = run_style_sweep(
        params, best_params_path=args.best, results_csv=args.results, plot_png=args.plot
    )
    if not best:
        say(f"tune: disabled (tune.enabled: false); {args.best} is empty")
        return
    values = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in best.items() if k.startswith("stylize."))  # fmt: skip
    say(
        f"tune: best of {params.tune.num_samples} trial(s) at {params.tune.size} px: {values}; "
        f"score {best['score']:.3f} (style left {best['style_left']:.2f}, edge agreement "
        f"{best['edge_agreement']:.2f})"
    )
    say(f"  table: {args.results}, plot: {args.plot}, values for stylize: {args.best}")


if __name__ == "__main__":
    sys.exit(main())
