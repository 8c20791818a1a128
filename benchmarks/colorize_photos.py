"""The colorize command on whole photos, as a user runs it (issues 25 and 40): the held-out test
photos of the shipped set (or the splits --splits names) and photos outside all of the project's
data, at the command's defaults (`python -m pipeline colorize PHOTO --out DIR`: the model's own
--scale, its eval.steps, seed 0), with one draw per output and with the default --draws, side by
side; with --vividness several values, each from the same draws. A shipped colorizer (``shipped``,
or a folder in its layout, with its guide in guide/, such as a copy of an earlier one) is scored
twice from the same draws: decoded by the draws alone (``draws``) and around its guide's ab
(``guided``, what the command does without --model).

Per model: seconds per photo, CIEDE2000 relative to the gray image's (below 1: better than no
colour), mean chroma C*ab relative to the truth's, and the share of truly coloured pixels with the
right hue, colourfulness gap and colour FID over the photos (pipeline.evaluate.colour.photo_scores,
the evaluate stage's photo_* scores). Photos outside the data: docs/kite.jpg (Plasma's
"Kite", kept out of the set on purpose) and scikit-image's motorcycle_left.png (Middlebury 2014
stereo), the only scene photographs on this machine in no source. (Until 2026-12-07 four more were
counted as outside: scikit-image's astronaut, chelsea, coffee and rocket, which are training photos
of the shipped set; the "6 outside" rows in benchmarks/README.md include them.)

With ``--prints none,archive``, each photo is also given to the models as an archive's print of
it (``archive_print``: its lightness blurred, faded, put through a tone curve and grained by
pipeline.data.degrade, every photo its own draw, then toned sepia) and their colours are joined
onto the clean photo's L*, so that the scores measure the colour decisions alone against the same
truth: what an old print costs a model.

    .venv/bin/python benchmarks/colorize_photos.py [--models shipped,colorize/models,OLD] [--draws 1,4]
        [--splits val,test] [--vividness 0,0.5,1] [--saturation 1,1.3] [--precision fp32,bf16]
        [--steps 10,20] [--prints none,archive]
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

from pipeline.color import lab_to_rgb, rgb_to_lab  # noqa: E402
from pipeline.data.degrade import degrade  # noqa: E402
from pipeline.evaluate.colour import photo_scores  # noqa: E402
from pipeline.imagefile import DEFAULT_MEGAPIXELS, read_rgb  # noqa: E402
from pipeline.photo import (  # noqa: E402
    DEFAULT_DRAWS,
    GUIDED,
    ab_draws,
    consensus,
    default_scale,
    guide_ab,
    join_full_size,
)
from pipeline.photo_colorizer import load_colorizer, load_guide  # noqa: E402
from pipeline.shipped import GUIDE_DIR, shipped_colorizer, shipped_guide  # noqa: E402

PHOTOS = ROOT / "pipeline/data/photos"
SKIMAGE = Path(skimage.__file__).parent / "data"
# Photos in no source of the project's data (tests/test_scene.py checks them against
# pipeline/data/photos/index.csv): scikit-image's astronaut, chelsea, coffee and rocket are not
# among them, they are training photos of the shipped set.
OUTSIDE = [ROOT / "docs/kite.jpg", SKIMAGE / "motorcycle_left.png"]


# An archive's print at the scale a model sees (pipeline.data.degrade's maxima; blur in pixels of
# the model's working size, so a 3000 px scan is blurred as much as a 500 px one, relative to
# the scene) and its tint: sepia, a* 6 and b* 18 at every pixel.
ARCHIVE = {"p": 1.0, "blur": 1.0, "fade": 0.15, "gamma": 0.4, "grain": 6.0}
SEPIA_AB = (6.0, 18.0)


def archive_print(rgb: np.ndarray, working_short: float, seed: int) -> np.ndarray:
    """A uint8 RGB photo (H, W, 3) as an old sepia print of it: its L* degraded by ``ARCHIVE``
    (blur scaled from ``working_short``, the shorter side the model sees, to the photo's), drawn
    from ``seed``, with the sepia ``SEPIA_AB`` as its colour."""
    lab = rgb_to_lab(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].double() / 255)
    torch.manual_seed(seed)
    factor = min(rgb.shape[:2]) / working_short
    L = degrade(lab[:, :1], **ARCHIVE | {"blur": ARCHIVE["blur"] * factor})
    ab = torch.tensor(SEPIA_AB, dtype=L.dtype).reshape(1, 2, 1, 1).expand(1, 2, *L.shape[2:])
    toned = lab_to_rgb(torch.cat([L, ab], dim=1))[0].permute(1, 2, 0)
    return (toned * 255).round().to(torch.uint8).numpy()


def split_photos(split: str) -> list[Path]:
    with open(PHOTOS / "index.csv", newline="") as f:
        return [PHOTOS / row["file"] for row in csv.DictReader(f) if row["split"] == split]


def colour(
    model,
    guide,
    rgb: np.ndarray,
    draws: int,
    vividness: list[float],
    precision: str = "fp32",
    seen: np.ndarray | None = None,
    steps: int | None = None,
    saturation: tuple[float, ...] = (1.0,),
) -> dict[str, list[tuple[np.ndarray, float]]]:
    """Per decoding (the draws alone; with a ``guide``, also around the guide's ab), per
    ``vividness`` and per ``saturation`` (in that order), from the same draws: the command's
    output and the seconds the command takes for it (the guide, the draws it needs and one
    join), the networks run at ``precision`` (the command's --precision) for ``steps`` sampler
    steps (default: the model's eval.steps) on ``seen`` (default: ``rgb``), the colours joined
    onto ``rgb``."""
    seen = rgb if seen is None else seen
    scale = default_scale(model)
    start = time.perf_counter()
    centre = None if guide is None else guide_ab(guide, seen, scale=scale, precision=precision)
    guided = time.perf_counter() - start
    stream = ab_draws(model, seen, steps=steps or model.params.eval.steps, scale=scale,
                      generator=torch.Generator(model.device).manual_seed(0),
                      precision=precision)  # fmt: skip
    ab = torch.cat(list(itertools.islice(stream, draws)))
    drawn = time.perf_counter() - start - guided
    decodes = {"draws": (None, 0.0)} | ({} if guide is None else {"guided": (centre, guided)})
    rows: dict[str, list[tuple[np.ndarray, float]]] = {}
    for name, (around, setup) in decodes.items():
        for v, gain in itertools.product(vividness, saturation):
            start = time.perf_counter()
            nothing_drawn = around is not None and v == 0  # the command draws nothing
            decoded = around if nothing_drawn else consensus(ab, v, around)
            out = join_full_size(rgb, decoded, gain)
            seconds = setup + (0 if nothing_drawn else drawn) + time.perf_counter() - start
            rows.setdefault(name, []).append((out, seconds))
    return rows


def summary(rows: list[tuple[np.ndarray, float]], truths: list[np.ndarray]) -> str:
    """Pooled over the photos as the evaluate stage pools them (``photo_scores``)."""
    s = photo_scores([out for out, _ in rows], truths)
    fid = f"  fid_colour {s['fid_colour']:6.2f}" if len(rows) > 1 else ""
    return (
        f"{np.mean([t for _, t in rows]):6.1f} s/photo  CIEDE2000 {s['ciede2000']:5.2f} "
        f"({s['ciede2000_relative']:.2f} of gray's)  chroma {s['chroma_ratio']:.2f} of the "
        f"truth's  right hue {100 * s['hue_accuracy']:4.1f}%  colourfulness gap "
        f"{s['colourfulness_gap']:5.1f}{fid}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="shipped,colorize/models")
    parser.add_argument("--draws", default=f"1,{DEFAULT_DRAWS}", help="--draws values to compare")
    parser.add_argument("--vividness", default=str(GUIDED.vividness),
                        help="--vividness values to compare, from the same draws")  # fmt: skip
    parser.add_argument("--splits", default="test", help="of the set: train, val, test")
    parser.add_argument("--per-photo", action="store_true", help="also a line per photo")
    parser.add_argument("--precision", default="fp32", help="--precision values to compare")
    parser.add_argument("--steps", default="0",
                        help="--steps values to compare (0: the model's eval.steps)")  # fmt: skip
    parser.add_argument("--saturation", default=str(GUIDED.saturation),
                        help="--saturation values to compare")  # fmt: skip
    parser.add_argument("--prints", default="none",
                        help="what the models see: none (the photo), archive (an old print of it)")  # fmt: skip
    args = parser.parse_args()
    if unknown := set(args.prints.split(",")) - {"none", "archive"}:
        parser.error(f"--prints: unknown {', '.join(sorted(unknown))}; allowed: none, archive")
    torch.set_num_threads(2)
    vividness = [float(v) for v in args.vividness.split(",")]
    saturation = tuple(float(v) for v in args.saturation.split(","))
    settings = list(itertools.product(vividness, saturation))
    groups = [(f"{split} photos", split_photos(split)) for split in args.splits.split(",")]
    for name in args.models.split(","):
        folder = shipped_colorizer() if name == "shipped" else Path(name)
        model = load_colorizer(str(folder), "cpu")
        shipped = (folder / GUIDE_DIR).is_dir()  # a shipped colorizer's layout: with its guide
        guide = load_guide(str(shipped_guide(folder)), model) if shipped else None
        print(f"{name} ({model.params.model.family}, {model.params.train.steps} steps)")
        for group, photos in (*groups, ("outside the data", OUTSIDE)):
            truths = [read_rgb(photo, round(DEFAULT_MEGAPIXELS * 1e6)) for photo in photos]
            short = default_scale(model) * model.params.data.image_size
            for draws, precision, prints, steps in itertools.product(
                map(int, args.draws.split(",")),
                args.precision.split(","),
                args.prints.split(","),
                map(int, args.steps.split(",")),
            ):
                seen = [rgb if prints == "none" else archive_print(rgb, short, seed)
                        for seed, rgb in enumerate(truths)]  # fmt: skip
                rows = [colour(model, guide, rgb, draws, vividness, precision, shown, steps,
                               saturation) for rgb, shown in zip(truths, seen, strict=True)]  # fmt: skip
                for decode, k in itertools.product(rows[0], range(len(settings))):
                    scored = [row[decode][k] for row in rows]
                    if args.per_photo:
                        for photo, row, truth in zip(photos, scored, truths, strict=True):
                            print(f"    {photo.name:<40} {summary([row], [truth])}")
                    v, gain = settings[k]
                    flag = f"{decode:<6} --draws {draws:<2} --vividness {v:<4}"
                    flag += f" --saturation {gain:<4}" if "," in args.saturation else ""
                    flag += f" --precision {precision}" if "," in args.precision else ""
                    flag += f" {prints} prints" if "," in args.prints else ""
                    flag += (
                        f" --steps {steps or model.params.eval.steps}" if "," in args.steps else ""
                    )
                    print(
                        f"  {group:<17} ({len(photos):>2}) {flag} {summary(scored, truths)}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
