"""Build the shipped paintings (pipeline/style/paintings/) from Debian bookworm's
gcompris-qt-data package: the style images of ``python -m pipeline stylize`` and stylize/dvc.yaml.

GCompris's "paintings" activity is a jigsaw of public-domain paintings: each board's QML names the
painting and places its pieces (centres as fractions of a 702 x 515 canvas). This script checks the
package against the sha256 pinned in scripts/make_photoset.py, reads the activity's Qt resource
file, lays the pieces out, keeps the largest fully opaque rectangle without the white margin the
pieces carry (boards with missing pieces, such as Bruegel's Harvesters, leave only a strip and are
not shipped), and saves it with its longer side at most LONG_SIDE px, listed in index.csv with its
title, painter, year, board and sha256. All of them are public domain: painted before 1930 by
painters who died more than 70 years ago, reproduced faithfully (two-dimensional works).

    apt-get download gcompris-qt-data
    python scripts/make_paintings.py gcompris-qt-data_3.1-2_all.deb           # the shipped five
    python scripts/make_paintings.py gcompris-qt-data_3.1-2_all.deb --boards 8,16 --out held_out/
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_photoset import PACKAGES, opaque_rectangle, read_rcc  # noqa: E402

RCC = "usr/share/gcompris-qt/rcc/paintings.rcc"
ROOT = "gcompris/src/activities/paintings/resource/"
SHIPPED = {  # board: file name
    22: "van_gogh_village_street.jpg",  # Vincent van Gogh, Village Street in Auvers, 1890
    7: "hokusai_great_wave.jpg",  # Katsushika Hokusai, The Great Wave off Kanagawa, 1823-1829
    21: "cassatt_summertime.jpg",  # Mary Cassatt, Summertime, 1894
    19: "kandinsky_composition_viii.jpg",  # Wassily Kandinsky, Composition VIII, 1923
    1: "renoir_moulin_de_la_galette.jpg",  # Pierre-Auguste Renoir, Bal du moulin de la Galette
}
LONG_SIDE = 512
QUALITY = 92
WHITE = 235  # margin rows and columns whose pixels are all at least this bright are trimmed
PIECE = re.compile(r'"pixmapfile" : "(image/[^"]+)",\s*"x" : "([\d.]+)",\s*"y" : "([\d.]+)"')


def board(files: dict[str, bytes], number: int) -> tuple[str, Image.Image]:
    """The title and the laid-out RGBA canvas of one board."""
    qml = files[f"{ROOT}board/board{number}_0.qml"].decode()
    title = re.search(r'instruction: qsTr\("(.*?)"\)', qml).group(1)
    width = int(re.search(r'"width": (\d+)', qml).group(1))
    height = int(re.search(r'"height": (\d+)', qml).group(1))
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    for name, x, y in PIECE.findall(qml):
        with Image.open(io.BytesIO(files[ROOT + name])) as img:
            piece = img.convert("RGBA")
        left = round(float(x) * width - piece.width / 2)
        top = round(float(y) * height - piece.height / 2)
        canvas.alpha_composite(piece, (left, top))
    return title, canvas


def painting(canvas: Image.Image) -> Image.Image:
    """The largest fully opaque rectangle, its white margins trimmed, longer side LONG_SIDE."""
    left, top, right, bottom = opaque_rectangle(np.asarray(canvas.getchannel("A")))
    rgb = np.asarray(canvas.convert("RGB"))[top:bottom, left:right]
    dark = rgb.min(axis=2) < WHITE
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    rgb = rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    image = Image.fromarray(rgb)
    scale = min(1.0, LONG_SIDE / max(image.size))
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS) if scale < 1 else image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deb", type=Path, help="the downloaded gcompris-qt-data .deb")
    parser.add_argument("--boards", help="comma-separated board numbers (default: the shipped)")
    parser.add_argument("--out", type=Path, default=Path("pipeline/style/paintings"))
    args = parser.parse_args()
    version, digest = PACKAGES["gcompris-qt-data"]
    actual = hashlib.sha256(args.deb.read_bytes()).hexdigest()
    if actual != digest:
        raise SystemExit(
            f"{args.deb}: sha256 {actual}, expected {digest} (gcompris-qt-data {version})"
        )
    numbers = [int(b) for b in args.boards.split(",")] if args.boards else list(SHIPPED)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(args.deb), tmp], check=True)
        files = read_rcc((Path(tmp) / RCC).read_bytes())
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "sha256", "painter", "title", "year", "board", "source"])
        for number in numbers:
            title, canvas = board(files, number)
            painter, _, rest = title.partition(", ")
            name, _, year = rest.rpartition(" - ")
            file = SHIPPED.get(number, f"board{number}.jpg")
            painting(canvas).save(args.out / file, quality=QUALITY, subsampling=0)
            sha = hashlib.sha256((args.out / file).read_bytes()).hexdigest()
            source = f"gcompris-qt-data {version}: {RCC}, board {number}"
            writer.writerow([file, sha, painter, name or rest, year.rstrip("."), number, source])
            print(f"{file}: {title}")


if __name__ == "__main__":
    main()
