"""Tux Paint's cut-outs in the photo set: their opaque rectangle (the set today) against the whole
cut-out composited onto a photo background (issue 25, step 2), side by side on the validation photos.

The photo set keeps the largest fully opaque rectangle of each photographic stamp
(scripts/make_photoset.py): only pixels the photographer took, but often a small part of the
object. The alternative pastes the whole stamp, by its alpha, onto a background cut from a training
photograph that is not a cut-out (seeded), so crops show the whole object and its outline, against
colours the object never stood in front of. Only the training split changes: both variants are
preprocessed by the real preprocess stage (colorize/params.yaml), trained by the real train stage
with the shipped colorizer's settings (colorize/shipped/params.yaml's `train.min_colourfulness: 15`,
the "colourful" row of colorize_levers.py) for the same steps, and scored on the same validation
crops (colorize_levers.score: fid_colour, right hue, colourfulness gap, CIEDE2000 / gray's).

    mkdir -p /tmp/debs && (cd /tmp/debs && apt-get download tuxpaint-stamps-default)
    dvc repro colorize/dvc.yaml:preprocess
    .venv/bin/python benchmarks/colorize_cutouts.py /tmp/debs [--steps 1000]
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from colorize_levers import VARIANTS, score, train, variant_params  # noqa: E402
from make_photoset import QUALITY, SHORT_SIDE, extract, shrink  # noqa: E402

from pipeline.data.dataset import spread  # noqa: E402

STAMPS_PACKAGE = "tuxpaint-stamps-default"
MARGIN = 0.5  # background around the stamp: its bounding box grows by this share on each axis
SEED = 0


def composite(stamp: Image.Image, background: Image.Image, rng: random.Random) -> Image.Image:
    """The RGBA ``stamp`` (cropped to its visible pixels) pasted by its alpha at a random place
    of a random window of ``background``, MARGIN larger than the stamp on each axis."""
    stamp = stamp.crop(stamp.getbbox())
    size = (round(stamp.width * (1 + MARGIN)), round(stamp.height * (1 + MARGIN)))
    scale = max(size[0] / background.width, size[1] / background.height)
    if scale > 1:
        background = background.resize(
            (round(background.width * scale) + 1, round(background.height * scale) + 1),
            Image.Resampling.LANCZOS,
        )
    left = rng.randrange(background.width - size[0] + 1)
    top = rng.randrange(background.height - size[1] + 1)
    canvas = background.crop((left, top, left + size[0], top + size[1])).convert("RGB")
    at = (rng.randrange(size[0] - stamp.width + 1), rng.randrange(size[1] - stamp.height + 1))
    canvas.paste(stamp, at, stamp)
    return canvas


def composited_raw(raw: Path, stamps: Path, into: Path) -> int:
    """A copy of the raw photo set in which every training cut-out is its whole stamp composited
    onto a training photo's background (saved as the set saves photos); how many were replaced."""
    shutil.copytree(raw, into)
    with open(raw / "index.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["split"] == "train"]
    cutouts = [row for row in rows if row["origin"].startswith(STAMPS_PACKAGE)]
    backgrounds = [row["file"] for row in rows if row not in cutouts]
    rng = random.Random(SEED)
    for row in cutouts:
        path = row["origin"].split(": ", 1)[1].rsplit(" opaque crop", 1)[0]
        with Image.open(stamps / path) as img:
            stamp = img.convert("RGBA")
        with Image.open(raw / rng.choice(backgrounds)) as img:
            background = img.convert("RGB")
        image = shrink(composite(stamp, background, rng), SHORT_SIDE)
        image.save(into / row["file"], quality=QUALITY, subsampling=0)
    return len(cutouts)


def preprocess(raw: Path, out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "stages.preprocess", "--params", str(ROOT / "colorize/params.yaml"),
         "--raw", str(raw), "--out", str(out)],
        cwd=ROOT, check=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debs", type=Path, help=f"the folder holding {STAMPS_PACKAGE}'s .deb")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--crops", type=int, default=500, help="validation crops scored")
    parser.add_argument("--seed", type=int, default=0, help="train.seed of both trainings")
    parser.add_argument("--keep", type=Path, help="keep the composited photos in this folder")
    args = parser.parse_args()
    base = ROOT / "colorize/data/processed"
    params = variant_params({**VARIANTS["colourful"], "train.seed": args.seed}, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        extract(args.debs, work / "deb", [STAMPS_PACKAGE])
        replaced = composited_raw(ROOT / "colorize/data/raw", work / "deb", work / "raw")
        if args.keep:
            shutil.copytree(work / "raw", args.keep, dirs_exist_ok=True)
        preprocess(work / "raw", work / "processed")
        val = np.load(base / "val_images.npy", mmap_mode="r")
        if not np.array_equal(val, np.load(work / "processed/val_images.npy", mmap_mode="r")):
            raise SystemExit("the composited set's validation crops differ from the set's")
        crops = np.ascontiguousarray(val[spread(len(val), args.crops)])
        rows = []
        for name, data in (("opaque rectangle", base), ("composited", work / "processed")):
            train_crops = len(np.load(data / "train_images.npy", mmap_mode="r"))
            models, seconds = train(name.replace(" ", "_"), params, work, data)
            rows.append((name, train_crops, seconds, score(models, crops)))
    print(f"\n{replaced} training cut-outs; {args.crops} validation crops, {args.steps} steps, "
          f"{yaml.safe_dump(VARIANTS['colourful']).strip()}, train.seed {args.seed}")  # fmt: skip
    print(f"{'cut-outs':<17} {'train crops':>11} {'train s':>7} {'fid_colour':>10} "
          f"{'right hue':>9} {'colourful':>9} {'gap':>6} {'CIEDE/gray':>10}")  # fmt: skip
    for name, count, seconds, s in rows:
        print(f"{name:<17} {count:>11,} {seconds:7.0f} {s['fid_colour']:10.2f} "
              f"{100 * s['hue_accuracy']:8.1f}% {s['colourfulness']:9.1f} "
              f"{s['colourfulness_gap']:6.1f} {s['ciede2000_relative']:10.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
