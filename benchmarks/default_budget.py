"""Where the default run's 20 minutes buy quality (issue 45): fid_featurenet against wall time per
lever, side by side in one run.

Each variant is params.yaml with the tuned values of reports/best_params.yaml (what the train stage
trains with after the sweep) and a few keys changed. It is trained by the real train stage (Ray
Train, 2 workers, MLflow in a throwaway SQLite store) on the default run's data/processed, and
scored by the real evaluate stage with the default run's FeatureNet (featurenet/): the same
protocol as reports/metrics.json (500 samples against the test split), with each of
``--samplers`` (pipeline.diffusion.samplers) at each ``--eval-steps`` (the default run's DDIM-40;
fewer steps free evaluation time for training). ``--trained`` scores the default run's own models/
instead of training variants (the sampler comparison of issue 44; its DDIM-40 row reproduces
reports/metrics.json). Run `dvc repro` first. Prints each variant's train and evaluate wall time,
their sum, and fid_featurenet; the tune stage (about 200 s) and the rest (about 60 s) come on top
of the sum in a `dvc repro`.

    .venv/bin/python benchmarks/default_budget.py [--variants base,steps1000] [--eval-steps 40,20]
    .venv/bin/python benchmarks/default_budget.py --trained --samplers ddim,dpmpp_2m --eval-steps 10,20,40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.colorize_levers import train  # noqa: E402
from pipeline.config.keys import dotted, override  # noqa: E402

VARIANTS = {  # name: the keys changed from params.yaml with the tuned values
    "base": {},
    # the sweep's winner before issue 42 nested tune.space (2026-12-05 to 12-07: fid 8.826...)
    "sweep_1205": {
        "diffusion.schedule": "linear",
        "train.lr": 0.00043347263652391595,
        "diffusion.loss.min_snr_gamma": 5.0,
    },
    "steps1000": {"train.steps": 1000},
    "steps1000_lr1e-3": {"train.steps": 1000, "train.lr": 0.001},
    "steps1000_ema0.995": {"train.steps": 1000, "train.ema_decay": 0.995},
    "steps1500": {"train.steps": 1500},
    "steps1500_cosine": {"train.steps": 1500, "train.lr_decay": "cosine"},
    "steps2000": {"train.steps": 2000},
    "steps2000_cosine": {"train.steps": 2000, "train.lr_decay": "cosine"},
}


def variant_params(overrides: dict) -> dict:
    """params.yaml, then reports/best_params.yaml's tuned values, then ``overrides``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    best = yaml.safe_load((ROOT / "reports/best_params.yaml").read_text())
    return override(params, {**dotted(best), **overrides})


def trained(work: Path) -> Path:
    """The default run's models/ set up as a variant's folder: its params and models, and a copy
    of its train report naming a run of the throwaway store (the evaluate stage logs there, never
    into the project's store) and no registered model."""
    folder = work / "trained"
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(variant_params({})))
    (folder / "models").symlink_to(ROOT / "models")
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("trained", (work / "artifacts").as_uri()))
    report = json.loads((ROOT / "reports/train.json").read_text())
    report.update(
        mlflow_run_id=run.info.run_id, registered_model=None, registered_model_version=None
    )
    (folder / "train.json").write_text(json.dumps(report))
    return folder / "models"


def evaluate(folder: Path, work: Path, sampler: str, steps: int) -> tuple[dict, float]:
    """The evaluate stage on the variant's model with ``sampler`` at ``steps``: its metrics and
    wall time."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["eval"].update(sampler=sampler, steps=steps)
    name = f"eval_{sampler}{steps}"
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    out = folder / name
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "stages.evaluate", "--params", str(folder / f"{name}.yaml"),
         "--models", str(folder / "models"), "--featurenet", str(ROOT / "featurenet"),
         "--data", str(ROOT / "data/processed"), "--train-report", str(folder / "train.json"),
         "--metrics", str(out / "metrics.json"), "--grid", str(out / "samples.png"),
         "--trajectory", str(out / "trajectory.gif"), "--figures", str(out / "figures")],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--eval-steps", default="40,20", help="sampler steps to score each at")
    parser.add_argument("--samplers", default="ddim", help="eval.sampler values, comma-separated")
    parser.add_argument("--trained", action="store_true", help="score models/, train nothing")
    parser.add_argument("--keep", help="copy each variant's samples.png into this folder")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ["trained"] if args.trained else args.variants.split(","):
            if args.trained:
                models, train_s = trained(work), 0.0
            else:
                params = variant_params(VARIANTS[name])
                models, train_s = train(name, params, work, data=ROOT / "data/processed")
            for sampler in args.samplers.split(","):
                for steps in map(int, args.eval_steps.split(",")):
                    metrics, eval_s = evaluate(models.parent, work, sampler, steps)
                    fid = metrics["fid_featurenet"]
                    rows.append((name, f"{sampler}-{steps}", train_s, eval_s, fid))
                    print(f"{name}, {sampler}-{steps}: train {train_s:.0f} s, evaluate "
                          f"{eval_s:.0f} s, fid_featurenet {fid:.2f}", flush=True)  # fmt: skip
                    if args.keep:
                        keep = Path(args.keep)
                        keep.mkdir(parents=True, exist_ok=True)
                        grid = models.parent / f"eval_{sampler}{steps}" / "samples.png"
                        (keep / f"{name}_{sampler}{steps}.png").write_bytes(grid.read_bytes())
    print(f"\n{'variant':<22} {'sampler':>12} {'train s':>7} {'eval s':>7} {'sum s':>7} "
          f"{'fid_featurenet':>14}")  # fmt: skip
    for name, how, train_s, eval_s, fid in rows:
        print(f"{name:<22} {how:>12} {train_s:7.0f} {eval_s:7.0f} {train_s + eval_s:7.0f} "
              f"{fid:14.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
