"""Style transfer at the command's defaults against colour-statistics transfer, on photos and
paintings in none of the project's data (issue 28's "done when").

For each content x style pair: the command's own path (pipeline.apps.stylize: the working size,
L-BFGS coarse to fine, the default weights and steps) and the baseline (Reinhard colour transfer,
pipeline.style.baseline), scored at the working size (pipeline.style.runs.pair_scores, the scores
of pipeline.style.scores): the share of the style (Gram) distance in held-out features, of the
texture distance (luminance alone) and of the colour distance covered ("moved", 1 - after /
before), and the edge agreement with the photo (1: its edges where they were). Seconds are the
wall time of the stylization on 2 CPU threads.

Contents: scikit-image's motorcycle_left.png (Middlebury 2014 stereo) and coffee.png (Rachel
Michetti, CC0), in none of the project's data. Styles: any paintings given with --styles; the pair
measured is not shipped with the project and comes from the same package as the shipped ones
(Hiroshige's Benzaiten Shrine in Snow and Duerer's Lion):

    python scripts/make_paintings.py gcompris-qt-data_3.1-2_all.deb --boards 8,16 --out held_out
    .venv/bin/python benchmarks/stylize_scores.py --styles held_out/board8.jpg,held_out/board16.jpg

How the default lambda_style was chosen, on the pairs of stylize/params.yaml (shipped test photos and
paintings, not the pairs above), at a working size of 256 px:

    .venv/bin/python benchmarks/stylize_scores.py --pairs stylize/params.yaml --size 256 \
        --style-weights 10,100,1000
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import skimage
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.apps.stylize import DEFAULTS  # noqa: E402
from pipeline.imagefile import read_rgb  # noqa: E402
from pipeline.reports.grid import save_image  # noqa: E402
from pipeline.style.baseline import colour_transfer  # noqa: E402
from pipeline.style.features import RandomFeatures  # noqa: E402
from pipeline.style.params import load_style_params  # noqa: E402
from pipeline.style.runs import pair_scores, panel, stack  # noqa: E402
from pipeline.style.transfer import (  # noqa: E402
    StyleOptions,
    resize_longer,
    stylize,
    to_tensor,
)

DATA = Path(skimage.__file__).parent / "data"
CONTENTS = [DATA / "motorcycle_left.png", DATA / "coffee.png"]


def scores(image: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> tuple[float, ...]:
    """(style, texture and colour distance covered, edge agreement, score) of ``image``."""
    s = pair_scores(image, content, style)
    return s["style_moved"], s["texture_moved"], s["colour_moved"], s["edge_agreement"], s["score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", help="comma-separated painting files")
    parser.add_argument("--pairs", help="a params file whose pairs (contents, styles) to use")
    parser.add_argument("--style-weights", help="comma-separated lambda_style values to compare")
    parser.add_argument("--size", type=int, default=DEFAULTS.size)
    parser.add_argument(
        "--panels", help="write photo | painting | stylized | colour transfer, one row per pair"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    features = RandomFeatures(seed=0)
    if args.pairs:
        pairs = load_style_params(args.pairs).pairs
        contents, styles = [Path(c) for c in pairs.contents], [Path(s) for s in pairs.styles]
    elif args.styles:
        contents, styles = CONTENTS, [Path(s) for s in args.styles.split(",")]
    else:
        parser.error("give --styles or --pairs")
    weights = [float(w) for w in args.style_weights.split(",")] if args.style_weights else [None]
    print(f"{'content':<24} {'style':<16} {'weight':>6} {'s':>4} | moved: {'style':>5} "
          f"{'texture':>7} {'colour':>6} edges  score | baseline: {'style':>5} {'texture':>7} "
          f"{'colour':>6} edges")  # fmt: skip
    for weight in weights:
        options = replace(DEFAULTS, size=args.size, style_weight=weight or DEFAULTS.style_weight)
        rows, panels = [], []
        for style_path in styles:
            style = to_tensor(read_rgb(style_path, 10**8), "cpu")
            for content_path in contents:
                content = to_tensor(read_rgb(content_path, 10**8), "cpu")
                start = time.perf_counter()
                out, _ = stylize(content, style, features, options)
                seconds = time.perf_counter() - start
                small = resize_longer(content, max(out.shape[-2:]))  # the working size
                base = colour_transfer(small, style)
                rows.append((seconds, scores(out, small, style), scores(base, small, style)))
                panels.append(panel([small, style, out, base]))
                print(line(content_path.name, style_path.name, options, *rows[-1]))
        mean = [[sum(r[i][k] for r in rows) / len(rows) for k in range(5)] for i in (1, 2)]
        print(line("mean (s: the longest)", "", options, max(r[0] for r in rows), *mean))
        if args.panels:
            save_image(stack(panels), args.panels)


def line(content: str, style: str, options: StyleOptions, seconds: float, ours, base) -> str:
    return (
        f"{content:<24} {style:<16} {options.style_weight:6g} {seconds:4.0f} | {'':6} "
        f"{ours[0]:5.2f} {ours[1]:7.2f} {ours[2]:6.2f} {ours[3]:5.2f} {ours[4]:6.3f} | {'':9} "
        f"{base[0]:5.2f} {base[1]:7.2f} {base[2]:6.2f} {base[3]:5.2f}"
    )


if __name__ == "__main__":
    main()
