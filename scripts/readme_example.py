"""The README's before/after pictures: a photo the model never saw (``docs/kite.jpg``; scikit-image's
``motorcycle_left.png`` and ``coffee.png``) as the gray input the colorizer receives, colorized by
``python -m pipeline colorize``'s own code with the colorizer that ships (or ``--model`` and
``--guide``) at its defaults, at ``--vividness 1`` and (with a guide) by the draws alone at
``--vividness 1``, and the original, side by side in ``docs/kite_colorized.png``. A real
black-and-white photograph (R = G = B everywhere, such as scikit-image's ``camera.png``) has no
original: its row ends with the colorized panels.

    python scripts/readme_example.py
    python scripts/readme_example.py --photo .venv/lib/python3.11/site-packages/skimage/data/motorcycle_left.png \
        --out docs/motorcycle_colorized.jpg
    python scripts/readme_example.py --photo .venv/lib/python3.11/site-packages/skimage/data/coffee.png \
        --out docs/coffee_colorized.jpg
    python scripts/readme_example.py --photo .venv/lib/python3.11/site-packages/skimage/data/camera.png \
        --out docs/camera_colorized.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.color import grayed
from pipeline.imagefile import DEFAULT_MEGAPIXELS, read_rgb
from pipeline.photo import DEFAULT_DRAWS, colorize_image, default_scale
from pipeline.photo_colorizer import colorizer_dirs, load_colorizer, load_guide
from pipeline.pixels import to_uint8, to_unit
from pipeline.reports.grid import save_image

GAP = 6  # white pixels between the panels


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """The input as the colorizer sees it: its own L* with a* = b* = 0, uint8 (H, W, 3)."""
    return (
        to_uint8(grayed(to_unit(rgb.transpose(2, 0, 1)[None].copy())))[0].permute(1, 2, 0).numpy()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="default: the colorizer that ships (pipeline/colorizer)")
    parser.add_argument("--guide", help="default: the shipped guide without --model")
    parser.add_argument("--photo", default="docs/kite.jpg")
    parser.add_argument("--out", default="docs/kite_colorized.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:  # a --model URI is downloaded there
        models_dir, guide_dir = colorizer_dirs(args.model, args.guide, workdir)
        model = load_colorizer(models_dir, "cpu")
        guide = load_guide(guide_dir, model) if guide_dir else None
    rgb = read_rgb(Path(args.photo), round(DEFAULT_MEGAPIXELS * 1e6))
    columns = [(guide, None), (guide, 1.0)] + ([(None, 1.0)] if guide else [])  # None: default
    colours = [
        next(
            colorize_image(
                model,
                rgb,
                samples=1,
                steps=model.params.eval.steps,
                scale=default_scale(model),
                generator=torch.Generator().manual_seed(args.seed),
                draws=DEFAULT_DRAWS,
                vividness=vividness,
                guide=around,
            )
        )
        for around, vividness in columns
    ]
    black_and_white = bool((rgb == rgb[..., :1]).all())  # no colour to compare with
    panels = [gray_of(rgb), *colours, *([] if black_and_white else [rgb])]
    gap = np.full((rgb.shape[0], GAP, 3), 255, np.uint8)
    row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
    save_image(row, args.out)


if __name__ == "__main__":
    main()
