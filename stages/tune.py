"""DVC stage `tune`: a Ray Tune search over tune.space; every trial is a short Ray Train run ranked
on fid_<eval.features> of a fixed sample set at milestones. Writes the winning values for the train stage.

Tune's experiment state and the trials' checkpoints go to --checkpoints (outside DVC's outs), so an
interrupted sweep resumes when the stage is re-run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import entry_point
from pipeline.config import load_params
from pipeline.tune.sweep import run_sweep


@entry_point
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", required=True, help="the preprocess stage's output")
    parser.add_argument(
        "--featurenet", help="the featurenet stage's output (eval.features featurenet)"
    )
    parser.add_argument("--checkpoints", required=True, help="Tune and Train storage (resume)")
    parser.add_argument("--best", required=True, help="winning values, YAML (read by train)")
    parser.add_argument("--results", required=True, help="one row per trial, CSV")
    parser.add_argument("--plot", required=True, help="the milestone FID per trial, PNG")
    parser.add_argument("--metrics", help="the best score and the trials per status, JSON")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    run_sweep(
        params,
        processed_dir=args.data,
        featurenet_dir=args.featurenet,
        storage_dir=args.checkpoints,
        best_params_path=args.best,
        results_csv=args.results,
        plot_png=args.plot,
        metrics_json=args.metrics,
    )


if __name__ == "__main__":
    sys.exit(main())
