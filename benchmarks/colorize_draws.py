"""How to turn a colorizer's draws into one output (the colorize command's --draws), on validation
crops: one draw; the plain mean of k draws (an estimate of the posterior mean, which a per-pixel
error rewards); their ``consensus`` (the hue of the mean at the draws' mean chroma, what the
command does); and the minimum-Bayes-risk choice under CIEDE2000 itself (per pixel, of gray, the
mean scaled by 0, 1/4 ... 1 and the consensus, the candidate whose mean CIEDE2000 to the k draws
is least). The last is the best the draws allow on CIEDE2000 if the model's distribution were
right, so it bounds what decoding alone can do for that score.

The shipped colorizer draws DRAWS colorizations (DDIM 20 steps, seeds 0 ... DRAWS-1) of the same
VAL_CROPS validation crops as benchmarks/colorize_levers.py; every row is scored as the evaluate
stage scores (pipeline.evaluate.colour: fid_colour against the same crops, CIEDE2000 relative to the
gray image's, right hue, colourfulness).

    .venv/bin/python benchmarks/colorize_draws.py [--model pipeline/colorizer]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.color import deltaE_ciede2000

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.colorize_levers import VAL_CROPS  # noqa: E402
from pipeline.color import join_lab  # noqa: E402
from pipeline.config import EvalConfig  # noqa: E402
from pipeline.data.dataset import spread  # noqa: E402
from pipeline.evaluate.colour import ColourStatistics, fidelity, to_lab  # noqa: E402
from pipeline.evaluate.frechet import feature_statistics, frechet_distance  # noqa: E402
from pipeline.evaluate.sampling import sample_batch  # noqa: E402
from pipeline.methods.export import load_model  # noqa: E402
from pipeline.photo import consensus  # noqa: E402
from pipeline.pixels import to_uint8  # noqa: E402
from pipeline.shipped import shipped_colorizer  # noqa: E402

DRAWS = 8


def ciede(L: torch.Tensor, ab: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIEDE2000 (N, H, W) between (L, ab) and (L, other); L (N, 1, H, W)."""
    x, y = (torch.cat([L, v], 1).movedim(1, -1).numpy() for v in (ab, other))
    return torch.from_numpy(deltaE_ciede2000(x, y, channel_axis=-1))


def bayes_choice(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Per pixel, the candidate of least mean CIEDE2000 to the draws ab (N, k, 2, H, W)."""
    mean = ab.mean(1)
    candidates = torch.stack(
        [mean * s for s in (0.0, 0.25, 0.5, 0.75, 1.0)] + [torch.cat([consensus(a) for a in ab])]
    )  # (C, N, 2, H, W)
    risk = torch.stack(
        [
            torch.stack([ciede(L, c, ab[:, j]) for j in range(ab.shape[1])]).mean(0)
            for c in candidates
        ]
    )  # (C, N, H, W)
    pick = risk.argmin(0)[None, :, None].expand(1, -1, 2, -1, -1)
    return candidates.gather(0, pick)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(shipped_colorizer()))
    args = parser.parse_args()
    torch.set_num_threads(2)
    val = np.load(ROOT / "colorize/data/processed/val_images.npy", mmap_mode="r")
    crops = np.ascontiguousarray(val[spread(len(val), VAL_CROPS)])
    model = load_model(args.model)
    start = time.perf_counter()
    draws = np.stack(
        [
            sample_batch(model, len(crops), EvalConfig(steps=20, seed=k), 0, crops)
            for k in range(DRAWS)
        ],
        1,
    )  # (N, DRAWS, 3, H, W)
    seconds = (time.perf_counter() - start) / DRAWS
    lab = to_lab(torch.from_numpy(draws).flatten(0, 1)).unflatten(0, draws.shape[:2])
    L, ab = to_lab(torch.from_numpy(crops))[:, :1], lab[:, :, 1:]
    features = ColourStatistics()
    real = feature_statistics(features.image_features(torch.from_numpy(crops)))

    def row(name: str, combined: torch.Tensor) -> None:
        images = to_uint8(join_lab(L, combined) * 2 - 1).numpy()
        fake = feature_statistics(features.image_features(torch.from_numpy(images)))
        s = fidelity(images, crops)
        print(f"{name:<24} {frechet_distance(*real, *fake):10.2f} {s['ciede2000']:8.2f} "
              f"{s['ciede2000_relative']:10.3f} {100 * s['hue_accuracy']:8.1f}% "
              f"{s['colourfulness']:9.1f}")  # fmt: skip

    print(
        f"\n{VAL_CROPS} validation crops, {args.model}; {seconds:.0f} s per draw of them "
        f"(2 cores); the truth's colourfulness {fidelity(crops, crops)['colourfulness']:.1f}"
    )
    print(f"{'output':<24} {'fid_colour':>10} {'CIEDE':>8} {'CIEDE/gray':>10} {'right hue':>9} "
          f"{'colourful':>9}")  # fmt: skip
    for k in sorted({1, 2, 4, DRAWS}):
        if k == 1:
            row("1 draw", ab[:, 0])
            continue
        row(f"mean of {k}", ab[:, :k].mean(1))
        row(f"consensus of {k}", torch.cat([consensus(a) for a in ab[:, :k]]))
    row(f"least CIEDE risk, {DRAWS}", bayes_choice(L, ab))


if __name__ == "__main__":
    main()
