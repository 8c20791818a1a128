"""Levers for plausible, vivid colours (issue 25, step 4), side by side on the validation photos.

Each variant is colorize/params.yaml with a few keys changed, trained by the real train stage
(`python -m stages.train`: Ray Train, 2 workers, MLflow in a throwaway SQLite store) on the
colorize pipeline's processed data (`dvc repro colorize/dvc.yaml:preprocess` first), then scored on
VAL_CROPS validation crops spread over all validation photos (DDIM 20 steps, seed 0, the same
crops for every variant): fid_colour against the same real crops, hue accuracy, colourfulness gap
and CIEDE2000 relative to the gray image (pipeline.evaluate.colour). The test photos stay unseen.

    .venv/bin/python benchmarks/colorize_levers.py [--variants base,colourful] [--steps 350]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import EvalConfig  # noqa: E402
from pipeline.data.dataset import spread  # noqa: E402
from pipeline.evaluate.colour import ColourStatistics, fidelity  # noqa: E402
from pipeline.evaluate.frechet import feature_statistics, frechet_distance  # noqa: E402
from pipeline.evaluate.sampling import sample_batch  # noqa: E402
from pipeline.methods.export import load_model  # noqa: E402

VAL_CROPS = 500
VARIANTS = {  # name: the keys changed from colorize/params.yaml
    "base": {},
    "colourful": {"train.min_colourfulness": 15},
    "colourful_wider": {"train.min_colourfulness": 15, "model.base_channels": 48},
    "regression": {"model.family": "regression_color"},  # the one-step L2 baseline's estimator
}


def variant_params(overrides: dict, steps: int) -> dict:
    params = yaml.safe_load((ROOT / "colorize/params.yaml").read_text())
    for key, value in {**overrides, "train.steps": steps}.items():
        section, name = key.split(".")
        params[section][name] = value
    return params


def train(
    name: str, params: dict, work: Path, data: Path = ROOT / "colorize/data/processed"
) -> tuple[Path, float]:
    """The train stage on the variant and the processed ``data``; its exported model and wall
    time."""
    folder = work / name
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "stages.train", "--params", str(folder / "params.yaml"),
         "--data", str(data), "--checkpoints", str(folder / "ck"),
         "--models", str(folder / "models"), "--report", str(folder / "train.json"),
         "--history", str(folder / "loss.csv"), "--samples", str(folder / "triptychs.png")],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return folder / "models", time.perf_counter() - start


def score(models: Path, crops: np.ndarray) -> dict[str, float]:
    config = EvalConfig(num_samples=len(crops), steps=20, batch_size=len(crops))
    colorized = sample_batch(load_model(models), len(crops), config, 0, crops)
    features = ColourStatistics()
    real, fake = (
        feature_statistics(features.image_features(torch.from_numpy(x))) for x in (crops, colorized)
    )
    return {"fid_colour": frechet_distance(*real, *fake), **fidelity(colorized, crops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=350)
    args = parser.parse_args()
    val = np.load(ROOT / "colorize/data/processed/val_images.npy", mmap_mode="r")
    crops = np.ascontiguousarray(val[spread(len(val), VAL_CROPS)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            models, seconds = train(name, variant_params(VARIANTS[name], args.steps), Path(tmp))
            rows.append((name, seconds, score(models, crops)))
    truth = rows[0][2]["colourfulness_truth"]
    print(
        f"\n{VAL_CROPS} validation crops, {args.steps} steps; the truth's colourfulness {truth:.1f}"
    )
    print(f"{'variant':<16} {'train s':>7} {'fid_colour':>10} {'right hue':>9} {'colourful':>9} "
          f"{'gap':>6} {'CIEDE/gray':>10}")  # fmt: skip
    for name, seconds, s in rows:
        print(f"{name:<16} {seconds:7.0f} {s['fid_colour']:10.2f} {100 * s['hue_accuracy']:8.1f}% "
              f"{s['colourfulness']:9.1f} {s['colourfulness_gap']:6.1f} "
              f"{s['ciede2000_relative']:10.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
