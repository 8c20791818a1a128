"""The README's family comparison: every unconditional-or-class family trained for the same
wall-clock budget on the default data, scored by the evaluate stage's code, in one go.

For each family a short calibration run (the real Ray Train loop) measures its training speed;
``train.steps`` is then set so the training fits ``--budget-s`` (the table reports the actual wall
time), then it trains and is evaluated exactly as the train and evaluate stages do, into the MLflow
experiment ``--experiment``. At the end ``python -m pipeline compare``'s table and plot are written
from that experiment. Needs the default pipeline's data and FeatureNet (``dvc repro featurenet``).

    python scripts/compare_families.py --budget-s 240
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from pipeline.config import Params, load_params
from pipeline.evaluate.run import evaluate
from pipeline.reports.compare import compare_table, write_compare
from pipeline.tracking import connect, tracking_uri
from pipeline.train.driver import train

FAMILIES = ("ddpm", "ddpm_cfg", "vae", "dcgan")
CALIBRATION_STEPS = 60
OVERHEAD = 0.9  # share of the budget given to steps: the rest is start-up, grids and export


def run(params: Params, family: str, steps: int, out: Path, experiment: str) -> tuple[Params, dict]:
    """Train ``family`` for ``steps`` with the train stage's driver into ``out``."""
    params = params.with_values(
        {
            "model.family": family,
            "train.steps": steps,
            "train.checkpoint_every": steps,
            "train.sample_every": 0,
            "mlflow.experiment": experiment,
            "mlflow.registered_model": None,
        }
    )
    return params, train(
        params,
        processed_dir="data/processed",
        checkpoints_dir=out / "checkpoints",
        models_dir=out / "models",
        report_path=out / "train.json",
        history_csv=out / "train_loss.csv",
        samples_png=out / "train_samples.png",
        tags={"dvc_stage": "train", "comparison": "families"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget-s", type=float, default=300.0, help="training wall time per family"
    )
    parser.add_argument("--experiment", default="family-comparison")
    parser.add_argument("--work", default="families", help="models and reports of every family")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    args = parser.parse_args()
    base = load_params("params.yaml").with_values({"tune.enabled": False})
    work = Path(args.work)
    rows = []
    for family in args.families:
        calibration = work / family / "calibration"
        _, report = run(
            base, family, CALIBRATION_STEPS, calibration, f"{args.experiment}-calibration"
        )
        rate = report["images_per_s"] / base.train.batch_size  # optimiser steps per second
        steps = max(base.train.log_every, int(args.budget_s * OVERHEAD * rate) // 10 * 10)
        shutil.rmtree(calibration)
        out = work / family
        params, report = run(base, family, steps, out, args.experiment)
        started = time.perf_counter()
        metrics = evaluate(
            params,
            models_dir=out / "models",
            featurenet_dir="featurenet",
            processed_dir="data/processed",
            train_report=out / "train.json",
            metrics_path=out / "metrics.json",
            grid_png=out / "samples.png",
            trajectory_gif=out / "trajectory.gif",
            figures_dir=out / "figures",
        )
        rows.append(
            {
                "family": family,
                "steps": steps,
                "train_wall_s": report["wall_time_s"],
                "fid_featurenet": metrics["fid_featurenet"],
                "kid_featurenet": metrics["kid_featurenet"],
                "kid_std": metrics["kid_featurenet_std"],
                "class_accuracy": metrics.get("class_accuracy"),
                "eval_wall_s": round(time.perf_counter() - started, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    (work / "families.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = compare_table(connect(tracking_uri()), args.experiment)
    write_compare(table, work / "compare.csv", work / "compare.png")
    print(table.to_string())


if __name__ == "__main__":
    main()
