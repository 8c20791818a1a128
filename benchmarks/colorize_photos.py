"""The colorize command on whole photos, as a user runs it (issue 25's "done when"): the held-out
test photos of the shipped set (or the splits --splits names) and photos outside all of the
project's data, at the command's defaults (`python -m pipeline colorize PHOTO --out DIR`: --scale 4,
the model's eval.steps, seed 0), with one draw per output and with the default --draws, side by
side; with --vividness several values, each from the same draws. The shipped colorizer is scored
twice from the same draws: decoded by the draws alone (``draws``) and around its guide's ab
(``guided``, what the command does without --model).

Per model: seconds per photo, CIEDE2000 relative to the gray image's (below 1: better than no
colour), mean chroma C*ab relative to the truth's, and the share of truly coloured pixels with the
right hue (pipeline.evaluate.colour.fidelity, the evaluate stage's scores, on each whole photo;
pooled over the photos as ``summary`` says). Photos outside the data: docs/kite.jpg (Plasma's
"Kite", kept out of the set on purpose) and the five colour photographs scikit-image installs with
itself, in no source: motorcycle_left.png (Middlebury 2014 stereo), astronaut.png (NASA),
chelsea.png (a cat), coffee.png (a cup), rocket.jpg (NASA).

    .venv/bin/python benchmarks/colorize_photos.py [--models shipped,colorize/models] [--draws 1,4]
        [--splits val,test] [--vividness 0,0.5,1] [--precision fp32,bf16]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import skimage
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.apps.colorize import (  # noqa: E402
    DEFAULT_DRAWS,
    DEFAULT_SCALE,
    DEFAULT_VIVIDNESS,
    ab_draws,
    consensus,
    guide_ab,
    join_full_size,
    load_colorizer,
    load_guide,
)
from pipeline.color import rgb_to_lab  # noqa: E402
from pipeline.evaluate.colour import fidelity  # noqa: E402
from pipeline.imagefile import DEFAULT_MEGAPIXELS, read_rgb  # noqa: E402
from pipeline.shipped import shipped_colorizer, shipped_guide  # noqa: E402

PHOTOS = ROOT / "pipeline/data/photos"
SKIMAGE = Path(skimage.__file__).parent / "data"
OUTSIDE = [
    ROOT / "docs/kite.jpg",
    *(SKIMAGE / name for name in ("motorcycle_left.png", "astronaut.png", "chelsea.png",
                                  "coffee.png", "rocket.jpg")),
]  # fmt: skip


def split_photos(split: str) -> list[Path]:
    with open(PHOTOS / "index.csv", newline="") as f:
        return [PHOTOS / row["file"] for row in csv.DictReader(f) if row["split"] == split]


def chroma(rgb: np.ndarray) -> float:
    lab = rgb_to_lab(torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).double() / 255)
    return float(lab[:, 1:].norm(dim=1).mean())


def colour(
    model, guide, photo: Path, draws: int, vividness: list[float], precision: str = "fp32"
) -> dict[str, list[tuple[dict, float]]]:
    """Per decoding (the draws alone; with a ``guide``, also around the guide's ab) and per
    ``vividness``, from the same draws: the scores of the command's output and the seconds the
    command takes for it (the guide, the draws it needs and one join), the networks run at
    ``precision`` (the command's --precision)."""
    rgb = read_rgb(photo, round(DEFAULT_MEGAPIXELS * 1e6))
    start = time.perf_counter()
    centre = (
        None if guide is None else guide_ab(guide, rgb, scale=DEFAULT_SCALE, precision=precision)
    )
    guided = time.perf_counter() - start
    stream = ab_draws(model, rgb, steps=model.params.eval.steps, scale=DEFAULT_SCALE,
                      generator=torch.Generator(model.device).manual_seed(0),
                      precision=precision)  # fmt: skip
    ab = torch.cat(list(itertools.islice(stream, draws)))
    drawn = time.perf_counter() - start - guided
    truth = {"chroma_truth": chroma(rgb)}
    decodes = {"draws": (None, 0.0)} | ({} if guide is None else {"guided": (centre, guided)})
    rows: dict[str, list[tuple[dict, float]]] = {}
    for name, (around, setup) in decodes.items():
        for v in vividness:
            start = time.perf_counter()
            nothing_drawn = around is not None and v == 0  # the command draws nothing
            out = join_full_size(rgb, around if nothing_drawn else consensus(ab, v, around))
            seconds = setup + (0 if nothing_drawn else drawn) + time.perf_counter() - start
            scores = fidelity(
                out.transpose(2, 0, 1)[None].copy(), rgb.transpose(2, 0, 1)[None].copy()
            )
            rows.setdefault(name, []).append(({**scores, "chroma": chroma(out), **truth}, seconds))
    return rows


def summary(rows: list[tuple[dict[str, float], float]]) -> str:
    """Pooled over the photos: CIEDE2000 and chroma as sums over the photos (so a nearly gray
    photo, whose gray image is almost exact, does not dominate a mean of ratios); right hue as
    the mean over the photos that have coloured pixels."""
    total = {k: sum(r[k] for r, _ in rows) for k in ("ciede2000", "chroma", "chroma_truth")}
    gray = sum(r["ciede2000"] / max(r["ciede2000_relative"], 1e-12) for r, _ in rows)
    hues = [r["hue_accuracy"] for r, _ in rows if not np.isnan(r["hue_accuracy"])]
    gap = np.mean([r["colourfulness_gap"] for r, _ in rows])
    return (
        f"{np.mean([s for _, s in rows]):6.1f} s/photo  CIEDE2000 "
        f"{total['ciede2000'] / len(rows):5.2f} ({total['ciede2000'] / gray:.2f} of gray's)  "
        f"chroma {total['chroma'] / len(rows):5.1f} (truth {total['chroma_truth'] / len(rows):.1f}, "
        f"{total['chroma'] / total['chroma_truth']:.2f})  "
        f"right hue {100 * np.mean(hues) if hues else float('nan'):4.1f}%  "
        f"colourfulness gap {gap:5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="shipped,colorize/models")
    parser.add_argument("--draws", default=f"1,{DEFAULT_DRAWS}", help="--draws values to compare")
    parser.add_argument("--vividness", default=str(DEFAULT_VIVIDNESS),
                        help="--vividness values to compare, from the same draws")  # fmt: skip
    parser.add_argument("--splits", default="test", help="of the set: train, val, test")
    parser.add_argument("--per-photo", action="store_true", help="also a line per photo")
    parser.add_argument("--precision", default="fp32", help="--precision values to compare")
    args = parser.parse_args()
    torch.set_num_threads(2)
    vividness = [float(v) for v in args.vividness.split(",")]
    groups = [(f"{split} photos", split_photos(split)) for split in args.splits.split(",")]
    for name in args.models.split(","):
        model = load_colorizer(str(shipped_colorizer() if name == "shipped" else name), "cpu")
        guide = load_guide(str(shipped_guide()), model) if name == "shipped" else None
        print(f"{name} ({model.params.model.family}, {model.params.train.steps} steps)")
        for group, photos in (*groups, ("outside the data", OUTSIDE)):
            for draws, precision in itertools.product(
                map(int, args.draws.split(",")), args.precision.split(",")
            ):
                rows = [
                    colour(model, guide, photo, draws, vividness, precision) for photo in photos
                ]
                for decode, k in itertools.product(rows[0], range(len(vividness))):
                    scored = [row[decode][k] for row in rows]
                    if args.per_photo:
                        for photo, row in zip(photos, scored, strict=True):
                            print(f"    {photo.name:<40} {summary([row])}")
                    flag = f"{decode:<6} --draws {draws:<2} --vividness {vividness[k]:<4}"
                    flag += f" --precision {precision}" if "," in args.precision else ""
                    print(f"  {group:<17} ({len(photos):>2}) {flag} {summary(scored)}", flush=True)


if __name__ == "__main__":
    main()
