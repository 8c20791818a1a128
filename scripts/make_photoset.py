"""How ``pipeline/data/photos/`` (the offline colour photo set, data source ``photos``) was made.

The photographs are openly licensed files from Debian wallpaper packages and from the sample images
of pip wheels (scikit-image, scikit-learn, matplotlib). Each is downscaled so that its shorter side
is SHORT_SIDE pixels (Lanczos) and stored as JPEG quality QUALITY without chroma subsampling (4:4:4:
colour is what the set is for). ``index.csv`` lists every file with its split, sha256 (checked when
the source is read), author, licence and origin; the split is drawn by photo with a fixed seed, so
no crop of a test photo is trained on.

Reproduce (Debian bookworm; ``apt-get download`` needs no root)::

    mkdir /tmp/wp && cd /tmp/wp
    apt-get download mate-backgrounds lomiri-wallpapers-16.04 plasma-workspace-wallpapers
    for f in *.deb; do dpkg-deb -x "$f" x; done
    cd - && python scripts/make_photoset.py /tmp/wp/x --out pipeline/data/photos

The licences come from each package's ``usr/share/doc/*/copyright`` and each wheel's notes (the
docstrings of ``skimage.data``, ``sklearn/datasets/images/README.txt``, matplotlib's licence of its
sample data). Not photographs (renders, patterns, illustrations) are left out, and so is plasma's
"Kite", kept as the README's example of a photo the model never saw (``docs/kite.jpg``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
from pathlib import Path

import matplotlib
import skimage
import sklearn.datasets
from PIL import Image, ImageOps

SHORT_SIDE = 256
QUALITY = 92
SEED = 0
HELD_OUT = {"val": 5, "test": 5}

BACKGROUNDS = "usr/share/backgrounds"
PLASMA = "usr/share/wallpapers"
# (file name in the set, path under the extracted packages or "wheel:<package>/<path>", author, licence)
PHOTOS = [
    ("bridge.jpg", f"{BACKGROUNDS}/Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    ("dragonfly.jpg", f"{BACKGROUNDS}/Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
    ("fig.jpg", f"{BACKGROUNDS}/Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
    ("brushes.jpg", f"{BACKGROUNDS}/Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
    ("wine.jpg", f"{BACKGROUNDS}/Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    ("aitzgorri.jpg", f"{BACKGROUNDS}/aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("free.jpg", f"{BACKGROUNDS}/free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("friends.jpg", f"{BACKGROUNDS}/friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("greentock.jpg", f"{BACKGROUNDS}/greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    ("life.jpg", f"{BACKGROUNDS}/life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("picosdeeuropa.jpg", f"{BACKGROUNDS}/picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("seeding.jpg", f"{BACKGROUNDS}/seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    ("sunset.jpg", f"{BACKGROUNDS}/sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    ("aqua.jpg", f"{BACKGROUNDS}/mate/nature/Aqua.jpg", "Charles Barbin", "GPL-2+"),
    ("blinds.jpg", f"{BACKGROUNDS}/mate/nature/Blinds.jpg", "Lennart Poettering", "GPL-2+"),
    ("dune.jpg", f"{BACKGROUNDS}/mate/nature/Dune.jpg", "Marco Cogoni", "GPL-2+"),
    ("freshflower.jpg", f"{BACKGROUNDS}/mate/nature/FreshFlower.jpg", "Jens Ansorg", "GPL-2+"),
    ("garden.jpg", f"{BACKGROUNDS}/mate/nature/Garden.jpg", "MATE backgrounds", "GPL-2+"),
    ("greenmeadow.jpg", f"{BACKGROUNDS}/mate/nature/GreenMeadow.jpg", "Timothy Schellhase", "GPL-2+"),
    ("ladybird.jpg", f"{BACKGROUNDS}/mate/nature/LadyBird.jpg", "MATE backgrounds", "GPL-2+"),
    ("raindrops.jpg", f"{BACKGROUNDS}/mate/nature/RainDrops.jpg", "blackcombwhistler07", "GPL-2+"),
    ("storm.jpg", f"{BACKGROUNDS}/mate/nature/Storm.jpg", "Sergey Nazarov", "GPL-2+"),
    ("twowings.jpg", f"{BACKGROUNDS}/mate/nature/TwoWings.jpg", "Charles Barbin", "GPL-2+"),
    ("wood.jpg", f"{BACKGROUNDS}/mate/nature/Wood.jpg", "Jean-Francois Fortin Tam", "GPL-2+"),
    ("yellowflower.jpg", f"{BACKGROUNDS}/mate/nature/YellowFlower.jpg", "MATE backgrounds", "GPL-2+"),
    ("bythewater.jpg", f"{PLASMA}/BytheWater/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("coldripple.jpg", f"{PLASMA}/ColdRipple/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("colorfulcups.jpg", f"{PLASMA}/ColorfulCups/contents/images/2560x1600.jpg", "KDE Plasma", "GPL-2+"),
    ("darkesthour.jpg", f"{PLASMA}/DarkestHour/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("eveningglow.jpg", f"{PLASMA}/EveningGlow/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("fallenleaf.jpg", f"{PLASMA}/FallenLeaf/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("grey.jpg", f"{PLASMA}/Grey/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("onestandsout.jpg", f"{PLASMA}/OneStandsOut/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("path.jpg", f"{PLASMA}/Path/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("summer_1am.jpg", f"{PLASMA}/summer_1am/contents/images/2560x1440.jpg", "KDE Plasma", "GPL-2+"),
    ("astronaut.jpg", "wheel:skimage/data/astronaut.png", "NASA", "public domain"),
    ("chelsea.jpg", "wheel:skimage/data/chelsea.png", "Stefan van der Walt", "CC0-1.0"),
    ("coffee.jpg", "wheel:skimage/data/coffee.png", "Rachel Michetti", "CC0-1.0"),
    ("rocket.jpg", "wheel:skimage/data/rocket.jpg", "SpaceX", "public domain"),
    ("china.jpg", "wheel:sklearn/datasets/images/china.jpg", "danielbuechele (Flickr)", "CC-BY-2.0"),
    ("flower.jpg", "wheel:sklearn/datasets/images/flower.jpg", "vultilion (Flickr)", "CC-BY-2.0"),
    ("grace_hopper.jpg", "wheel:matplotlib/mpl-data/sample_data/grace_hopper.jpg", "US Navy", "public domain"),
]  # fmt: skip
EXAMPLE = (f"{PLASMA}/Kite/contents/images/2560x1440.jpg", (517, 389))  # odd size on purpose

WHEELS = {
    "skimage": Path(skimage.__file__).parent,
    "sklearn": Path(sklearn.datasets.__file__).parents[1],
    "matplotlib": Path(matplotlib.__file__).parent,
}


def locate(origin: str, extracted: Path) -> Path:
    if origin.startswith("wheel:"):
        package, _, rest = origin.removeprefix("wheel:").partition("/")
        return WHEELS[package] / rest
    return extracted / origin


def shrink(path: Path, short_side: int) -> Image.Image:
    with Image.open(path) as img:
        img = img.convert("RGB")
        scale = short_side / min(img.size)
        size = (round(img.width * scale), round(img.height * scale))
        return img.resize(size, Image.Resampling.LANCZOS) if scale < 1 else img.copy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "extracted", type=Path, help="directory the .deb packages were extracted to"
    )
    parser.add_argument("--out", type=Path, default=Path("pipeline/data/photos"))
    parser.add_argument("--example", type=Path, default=Path("docs/kite.jpg"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [name for name, *_ in PHOTOS]
    order = random.Random(SEED).sample(names, len(names))
    split = {name: "test" for name in order[: HELD_OUT["test"]]}
    split |= {name: "val" for name in order[HELD_OUT["test"] : sum(HELD_OUT.values())]}
    with open(args.out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "split", "sha256", "author", "licence", "origin"])
        for name, origin, author, licence in PHOTOS:
            shrink(locate(origin, args.extracted), SHORT_SIDE).save(
                args.out / name, quality=QUALITY, subsampling=0
            )
            digest = hashlib.sha256((args.out / name).read_bytes()).hexdigest()
            writer.writerow([name, split.get(name, "train"), digest, author, licence, origin])
    origin, size = EXAMPLE
    with Image.open(locate(origin, args.extracted)) as img:
        example = ImageOps.fit(img.convert("RGB"), size, Image.Resampling.LANCZOS)
    args.example.parent.mkdir(parents=True, exist_ok=True)
    example.save(args.example, quality=QUALITY, subsampling=0)


if __name__ == "__main__":
    main()
