"""Style transfer at the command's defaults against colour-statistics transfer, on photos and
paintings in none of the project's data (issue 28's "done when").

For each content x style pair: the command's own path (pipeline.apps.stylize: the working size,
L-BFGS coarse to fine, the default weights and steps) and the baseline (Reinhard colour transfer,
pipeline.style.baseline), scored by pipeline.style.scores at the working size: the share of the
style (Gram) distance in held-out features and of the colour distance covered ("moved", 1 - after
/ before), and the edge agreement with the photo (1: its edges where they were). Seconds are the
wall time of the stylization on 2 CPU threads.

Contents: docs/kite.jpg (kept out of the photo set on purpose), scikit-image's motorcycle_left.png
and coffee.png. Styles: any paintings given with --styles; the default pair is not shipped with the
project and comes from the same package as the shipped ones (Hiroshige's Benzaiten Shrine in Snow
and Duerer's Lion):

    python scripts/make_paintings.py gcompris-qt-data_3.1-2_all.deb --boards 8,16 --out held_out
    .venv/bin/python benchmarks/stylize_scores.py --styles held_out/board8.jpg,held_out/board16.jpg
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import skimage
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.apps.stylize import DEFAULTS, to_tensor  # noqa: E402
from pipeline.imagefile import read_rgb  # noqa: E402
from pipeline.style.baseline import colour_transfer  # noqa: E402
from pipeline.style.features import RandomFeatures  # noqa: E402
from pipeline.style.scores import (  # noqa: E402
    colour_distance,
    edge_agreement,
    moved,
    style_distance,
)
from pipeline.style.transfer import resize_longer, stylize  # noqa: E402

DATA = Path(skimage.__file__).parent / "data"
CONTENTS = [ROOT / "docs/kite.jpg", DATA / "motorcycle_left.png", DATA / "coffee.png"]


def scores(image: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> tuple[float, ...]:
    """(style moved, colour moved, edge agreement) of ``image`` at the working size."""
    return (
        moved(style_distance(content, style), style_distance(image, style)),
        moved(colour_distance(content, style), colour_distance(image, style)),
        edge_agreement(image, content),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", required=True, help="comma-separated painting files")
    args = parser.parse_args()
    torch.set_num_threads(2)
    features = RandomFeatures(seed=0)
    print(f"defaults: {DEFAULTS}")
    print(f"{'content':<20} {'style':<14} {'s':>5} | {'style moved':>11} {'colour':>6} "
          f"{'edges':>5} | baseline {'style':>5} {'colour':>6} {'edges':>5}")  # fmt: skip
    rows = []
    for style_path in args.styles.split(","):
        style = to_tensor(read_rgb(Path(style_path), 10**8), "cpu")
        for content_path in CONTENTS:
            content = to_tensor(read_rgb(content_path, 10**8), "cpu")
            start = time.perf_counter()
            out, _ = stylize(content, style, features, DEFAULTS)
            seconds = time.perf_counter() - start
            small = resize_longer(content, max(out.shape[-2:]))  # the working size
            ours = scores(out, small, style)
            base = scores(colour_transfer(small, style), small, style)
            rows.append((seconds, ours, base))
            print(f"{content_path.name:<20} {Path(style_path).name:<14} {seconds:5.0f} | "
                  f"{ours[0]:11.2f} {ours[1]:6.2f} {ours[2]:5.2f} | "
                  f"{'':8} {base[0]:5.2f} {base[1]:6.2f} {base[2]:5.2f}")  # fmt: skip
    mean = [sum(r[i][k] for r in rows) / len(rows) for i in (1, 2) for k in range(3)]
    print(f"{'mean':<35} {max(r[0] for r in rows):5.0f} max | {mean[0]:11.2f} {mean[1]:6.2f} "
          f"{mean[2]:5.2f} | {'':8} {mean[3]:5.2f} {mean[4]:6.2f} {mean[5]:5.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
