"""One-step colorizers side by side on whole photos (issue 40): the shipped guide's recipe
(colorize/shipped/guide.yaml: 32 px crops of the photo set at 5 scales, the box scene, the shipped
UNet, batch 64) trained for --steps as each family in --families (regression_color: the L2
estimate; classify_color: colour as classes, Zhang et al. 2016), by the real train stage on the
colorize pipeline's processed data (`dvc repro colorize/dvc.yaml:preprocess` first), then each
scored alone on whole photos as the colorize command colours them, by colorize_photos.py (one
draw, --vividness 1: the model's own colours): CIEDE2000 relative to gray, chroma relative to the
truth, right hue, colourfulness gap, colour FID, on the validation and test photos and the photos
outside the data.

    .venv/bin/python benchmarks/colorize_guides.py [--families regression_color,classify_color] [--steps 2500]

The trained models stay in ``--work`` (default: a new folder under /tmp, printed first); given a
folder that holds a family's models already, it scores them without training again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.colorize_levers import train  # noqa: E402
from pipeline.config.keys import override  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="regression_color,classify_color")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--work", type=Path, help="folder of the trained models (kept)")
    args = parser.parse_args()
    recipe = yaml.safe_load((ROOT / "colorize/shipped/guide.yaml").read_text())
    work = args.work or Path(tempfile.mkdtemp(prefix="colorize-guides-"))
    print(f"models in {work}", flush=True)
    models = []
    for family in args.families.split(","):
        if (work / family / "models").is_dir():
            print(f"{family}: trained already ({work / family})", flush=True)
        else:
            params = override(recipe, {"model.family": family, "train.steps": args.steps})
            _, seconds = train(family, params, work)
            print(f"{family}: trained {args.steps} steps in {seconds:.0f} s", flush=True)
        models.append(str(work / family / "models"))
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/colorize_photos.py"), "--models",
         ",".join(models), "--draws", "1", "--vividness", "1", "--splits", args.splits],
        cwd=ROOT, check=True,
    )  # fmt: skip


if __name__ == "__main__":
    main()
