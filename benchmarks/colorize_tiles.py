"""The colorize command's network on tiles against the whole working image, on the test photos
(issue 25, step 1: why full photos came out blue-gray).

For each test photo of the shipped set (pipeline/data/photos, split test) and a trained colorizer
(`make colorize`, or `dvc repro colorize/dvc.yaml:train`), three ways to colour the photo at
`--scale 4` (its shorter side 4 crops, the middle of training's tile_scales), 20 DDIM steps, seed 0:

- whole: the network on the whole working image (the command before tiling), its attention over
  every position at once;
- tiled: the command as it is (pipeline.models.tiled: overlapping 32 px tiles, blended each step);
- tiles alone: each 32 px tile coloured on its own, as the evaluate stage sees crops.

Prints mean chroma (C*ab) against the truth's and the share of truly coloured pixels (C* > 15)
whose hue is within 45 degrees and chroma > 10.

    .venv/bin/python benchmarks/colorize_tiles.py [--model colorize/models]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.color import AB_SCALE, join_lab, lightness, rgb_to_lab, split_lab  # noqa: E402
from pipeline.evaluate.colour import hue_accuracy  # noqa: E402
from pipeline.imagefile import read_rgb  # noqa: E402
from pipeline.methods.base import Sampling  # noqa: E402
from pipeline.methods.export import load_model  # noqa: E402
from pipeline.photo import colorize_image, working_size  # noqa: E402
from pipeline.pixels import to_uint8, to_unit  # noqa: E402

SCALE, STEPS, SEED = 4.0, 20, 0
HOW = Sampling(steps=STEPS)
SCALE, STEPS, SEED = 4.0, 20, 0


def scores(out: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(mean chroma, the truth's, right-hue share of coloured pixels: the evaluate stage's
    hue_accuracy)."""
    lab_o, lab_t = (rgb_to_lab(torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() / 255)
                    for a in (out, truth))  # fmt: skip
    chroma, truth_chroma = lab_o[:, 1:].norm(dim=1), lab_t[:, 1:].norm(dim=1)
    return float(chroma.mean()), float(truth_chroma.mean()), hue_accuracy(lab_o, lab_t)


def onto_photo(small_rgb: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
    """A working-size colour image (1, 3, h, w) in [-1, 1]: its ab upsampled onto the photo's L*."""
    h, w = rgb.shape[:2]
    ab = split_lab(small_rgb.cpu())[1].double() * AB_SCALE
    ab = torch.nn.functional.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
    L = rgb_to_lab(torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy()).double() / 255)[:, :1]
    return to_uint8(join_lab(L, ab) * 2 - 1)[0].permute(1, 2, 0).numpy()


def whole(model, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = working_size(h, w, model.params.data.image_size, SCALE)
    small = np.asarray(Image.fromarray(rgb).resize(size[::-1], Image.Resampling.BICUBIC))
    cond = lightness(to_unit(small.transpose(2, 0, 1)[None].copy()))
    out = model.sample(1, generator=torch.Generator().manual_seed(SEED), how=HOW, cond=cond)
    return onto_photo(out, rgb)


def tiles_alone(model, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    crop = model.params.data.image_size
    size = working_size(h, w, crop, SCALE)
    H, W = (size[0] // crop) * crop, (size[1] // crop) * crop  # whole tiles only
    small = np.asarray(Image.fromarray(rgb).resize((W, H), Image.Resampling.BICUBIC))
    x = to_unit(small.transpose(2, 0, 1)[None].copy())
    tiles = x.unfold(2, crop, crop).unfold(3, crop, crop)  # (1, 3, nh, nw, crop, crop)
    nh, nw = tiles.shape[2:4]
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, crop, crop)
    generator = torch.Generator().manual_seed(SEED)
    out = model.sample(len(tiles), generator=generator, how=HOW, cond=lightness(tiles))
    out = out.reshape(nh, nw, 3, crop, crop).permute(2, 0, 3, 1, 4).reshape(1, 3, H, W)
    return onto_photo(out, rgb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "colorize/models"))
    args = parser.parse_args()
    model = load_model(args.model)
    photos = ROOT / "pipeline/data/photos"
    rows = [r for r in csv.DictReader((photos / "index.csv").open()) if r["split"] == "test"]
    print(f"{'photo':<18} {'truth C*':>8} | {'whole C*':>8} {'hue':>5} | {'tiled C*':>8} {'hue':>5} "
          f"| {'alone C*':>8} {'hue':>5}")  # fmt: skip
    with torch.no_grad():
        for row in rows:
            rgb = read_rgb(photos / row["file"], 10**9)
            generator = torch.Generator().manual_seed(SEED)
            (tiled,) = colorize_image(model, rgb, samples=1, steps=STEPS, scale=SCALE,
                                      generator=generator, draws=1)  # fmt: skip
            results = [scores(out, rgb) for out in (whole(model, rgb), tiled,
                                                    tiles_alone(model, rgb))]  # fmt: skip
            cells = " | ".join(f"{c:>8.1f} {100 * hue:>4.0f}%" for c, _, hue in results)
            print(f"{row['file']:<18} {results[0][1]:>8.1f} | {cells}", flush=True)


if __name__ == "__main__":
    main()
