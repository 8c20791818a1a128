"""Which features transfer style better, offline: fixed random filters (the default,
pipeline.style.features.RandomFeatures) or features this pipeline learned on its own photo set (the
shipped colorizer's UNet, pipeline.style.learned.ColorizerFeatures)?

Both stylize the same pairs of photos and paintings in none of the project's data (those of
benchmarks/stylize_scores.py) at each lambda_style of --style-weights (the two feature sets' losses
have different scales, so each is compared at its own best weight), and every result is judged by
two referees that neither optimised: the held-out random features of pipeline.style.scores (style,
texture) and the colorizer's features (their relative Gram distance, "learned style"), beside the
colour distance and the edge agreement with the photo. ``score`` is pipeline.style.runs' (style
distance left + the edge penalty); the best weight per feature set is the one with the lowest mean
score.

    python scripts/make_paintings.py gcompris-qt-data_3.1-2_all.deb --boards 8,16 --out held_out
    .venv/bin/python benchmarks/stylize_features.py --styles held_out/board8.jpg,held_out/board16.jpg
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.stylize_scores import CONTENTS  # noqa: E402
from pipeline.apps.stylize import DEFAULTS  # noqa: E402
from pipeline.imagefile import read_rgb  # noqa: E402
from pipeline.style.choice import FeatureChoice, build_features  # noqa: E402
from pipeline.style.gram import gram, relative_error  # noqa: E402
from pipeline.style.learned import ColorizerFeatures  # noqa: E402
from pipeline.style.runs import pair_scores  # noqa: E402
from pipeline.style.transfer import resize_longer, stylize, to_tensor  # noqa: E402

KINDS = ("random", "colorizer")  # the offline choices (pipeline.style.choice)
COLUMNS = ("style_moved", "texture_moved", "learned_moved", "colour_moved", "edge_agreement",
           "score", "seconds")  # fmt: skip


def learned_distance(judge: ColorizerFeatures, image: torch.Tensor, style: torch.Tensor) -> float:
    """Sum over the colorizer's style layers of the relative Gram error (pipeline.style.gram)."""
    with torch.no_grad():
        a, b = judge(image).style, judge(style).style
    return float(sum(relative_error(gram(x), gram(y)) for x, y in zip(a, b, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", required=True, help="comma-separated painting files")
    parser.add_argument("--style-weights", default="10,100,1000", help="lambda_style values")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    candidates = {kind: build_features(FeatureChoice(kind), seed=0) for kind in KINDS}
    judge = candidates["colorizer"]  # frozen: judging does not change it
    styles = [Path(s) for s in args.styles.split(",")]
    images = {p: to_tensor(read_rgb(p, 10**8)) for p in [*CONTENTS, *styles]}
    print(f"{'features':<10} {'weight':>7} | " + " ".join(f"{c:>14}" for c in COLUMNS))
    best = {}
    for name, features in candidates.items():
        for weight in [float(w) for w in args.style_weights.split(",")]:
            options = replace(DEFAULTS, size=args.size, steps=args.steps, style_weight=weight)
            rows = []
            for style_path in styles:
                style = images[style_path]
                for content_path in CONTENTS:
                    content = images[content_path]
                    start = time.perf_counter()
                    out, _ = stylize(content, style, features, options)
                    seconds = time.perf_counter() - start
                    small = resize_longer(content, max(out.shape[-2:]))
                    row = pair_scores(out, small, style)
                    before = learned_distance(judge, small, style)
                    row["learned_moved"] = 1 - learned_distance(judge, out, style) / before
                    row["seconds"] = seconds
                    rows.append(row)
            mean = {c: sum(r[c] for r in rows) / len(rows) for c in COLUMNS}
            print(f"{name:<10} {weight:7g} | " + " ".join(f"{mean[c]:14.3f}" for c in COLUMNS))
            if name not in best or mean["score"] < best[name][1]["score"]:
                best[name] = (weight, mean)
    print("\nbest weight per features (lowest mean score):")
    for name, (weight, mean) in best.items():
        print(f"{name:<10} {weight:7g} | " + " ".join(f"{mean[c]:14.3f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
