"""How ``pipeline/data/photos/`` (the offline colour photo set, data source ``photos``) was made.

The photographs are openly licensed files from Debian packages (wallpapers, the GCompris and Tux
Paint educational suites, Palapeli's puzzles, Budgie's city and nature photographs) and the sample
images of pip wheels (scikit-image, scikit-learn, matplotlib). Each is downscaled so that its
shorter side is at most SHORT_SIDE pixels (Lanczos) and stored as JPEG quality QUALITY without
chroma subsampling (4:4:4: colour is what the set is for). ``index.csv`` lists every file with its
split, sha256 (checked when the source is read), author, licence, origin and near-duplicate group.

Reproduce (Debian bookworm, and trixie for ``budgie-backgrounds``; ``apt-get download`` needs no
root; the script checks each package's sha256 against PACKAGES and extracts it with ``dpkg-deb``)::

    mkdir /tmp/debs && cd /tmp/debs && apt-get download mate-backgrounds lomiri-wallpapers-16.04 \\
        plasma-workspace-wallpapers gcompris-qt-data tuxpaint-stamps-default tuxpaint-data palapeli-data
    keys=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb [signed-by=$keys] http://deb.debian.org/debian trixie main" > trixie.list
    apt-get -o Dir::Etc::SourceList=$PWD/trixie.list -o Dir::Etc::SourceParts=/nonexistent \\
        -o Dir::State::Lists=$PWD/lists update   # (mkdir -p lists/partial first)
    apt-get -o Dir::Etc::SourceList=$PWD/trixie.list -o Dir::Etc::SourceParts=/nonexistent \\
        -o Dir::State::Lists=$PWD/lists download budgie-backgrounds
    cd - && python scripts/make_photoset.py /tmp/debs --out pipeline/data/photos

What is in it and why:
- The 42 photographs of the first set keep their names, bytes and splits (the first 42 rows).
- GCompris keeps its images in Qt resource files (``read_rcc``); each image group has a README of
  Debian-copyright-like stanzas giving author, source and licence, so every row names its own.
  Drawings, diagrams, renders, paintings (the ``paintings``, ``details``, ``babyshapes`` and word
  picture activities), images with transparency and near-gray images are left out.
- Tux Paint's stamps are photo cut-outs on transparent backgrounds. The set keeps the largest
  fully opaque rectangle of each (``opaque_rectangle``) when its shorter side is at least
  MIN_CUTOUT_SIDE: only pixels the photographer took, no invented background, so no crop teaches a
  colour edge that photos do not have (whole cut-outs pasted onto photo backgrounds trained no
  better: benchmarks/colorize_cutouts.py). Drawings are told from photos by the share of distinct
  colours among opaque pixels (below MIN_PHOTO_COLOURS a stamp is a flat-shaded drawing), then by
  eye (CUTOUT_NOT_PHOTOS); mirrored copies are dropped.
- Budgie's wallpapers (``budgie-backgrounds``, CC0-1.0) are photographs of cities, landmarks and
  nature at 3840 px: the streets and buildings of an archive's kind (Beacon Street, Casa Mila,
  the Colosseum, Milan's Piazza Gae Aulenti, Singapore's skyline). Left out: BUDGIE_NOT_PHOTOS.
- Splits are drawn by group, not by file: files that share a source URL, a name or a near-identical
  8x8 average hash (``groups``) land in one split, so no view of a test photo is trained on. The
  groups each batch of sources (BATCHES) adds go val/test in the shares HELD_OUT_SHARE, drawn
  within the batch with a fixed seed, so a later batch leaves the earlier photos' splits as
  they were.

The licences come from each package's ``usr/share/doc/*/copyright``, GCompris's per-group READMEs
and each wheel's notes (the docstrings of ``skimage.data``, ``sklearn/datasets/images/README.txt``,
matplotlib's licence of its sample data). Plasma's "Kite" is kept out, as the README's example of a
photo the model never saw (``docs/kite.jpg``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import re
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import skimage
import sklearn.datasets
from PIL import Image, ImageOps

SHORT_SIDE = 256
QUALITY = 92
SEED = 0
HELD_OUT = {"val": 5, "test": 5}  # of the first 42 photographs
HELD_OUT_SHARE = {"val": 0.08, "test": 0.08}  # of the groups added since
MIN_SIDE = 200  # full photographs: shorter side in pixels
MIN_CUTOUT_SIDE = 48  # cut-outs: shorter side of the opaque rectangle (a 32 px crop at full size)
MIN_PHOTO_COLOURS = 0.35  # distinct colours / opaque pixels; Tux Paint's drawings stay below
MIN_CHROMA = 4.0  # mean CIE Lab chroma; below it a photo is (near) black and white
SAME_HASH_BITS = 8  # average hashes this close (of 256) are one photograph (the same photo
# in two GCompris activities: 0-1 bits; two photos of one mushroom: 17)

PACKAGES = {  # name: (version, sha256 of the .deb)
    "lomiri-wallpapers-16.04": ("20.04.0-2", "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab"),
    "mate-backgrounds": ("1.26.0-1", "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    "plasma-workspace-wallpapers": ("4:5.27.5-2", "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
    "gcompris-qt-data": ("3.1-2", "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f"),
    "tuxpaint-stamps-default": ("2022.06.04-1", "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"),
    "tuxpaint-data": ("1:0.9.28-sdl2-1", "f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5"),
    "palapeli-data": ("4:22.12.3-1", "69a15dce2ac25ed8708ac518cd0cee5f4eb0c70ed15da2fdb8899a19ac0ee058"),
    "budgie-backgrounds": ("3.0-1", "b91c2d5209558bc11d8d3a161f22a608857e3f8c735980cfab0d6650b03014ca"),  # trixie
}  # fmt: skip

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

GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
# activities whose pictures are drawings, paintings, renders or crops of other activities' photos
GCOMPRIS_SKIP = {"lang", "paintings", "details", "babyshapes"}
GCOMPRIS_NOT_PHOTOS = {  # drawings, renders and black-and-white photographs
    "chart", "night_printing", "texture01", "texture02", "braille_ball", "braille", "castleClinton",
}  # fmt: skip
STAMPS = "usr/share/tuxpaint/stamps"
CUTOUT_NOT_PHOTOS = {
    "bluebird", "bunny-egg", "button", "bunny", "toolbox", "eddieCopter", "towTruck", "dumper",
    "cementMixer", "butterfly", "lion", "fireworks", "fireworks2", "xing_school", "give_way_sign",
    "dead_end_sign", "toilets", "school_sign", "1_mercury", "2_venus", "3_earth", "4_mars",
    "5_jupiter", "6_saturn", "7_uranus", "8_neptune", "0_sun", "apollo_lander", "no_uturn",
}  # fmt: skip
TEMPLATES = "usr/share/tuxpaint/templates"
PALAPELI = "usr/share/palapeli/collection"
BUDGIE = "usr/share/backgrounds/budgie"
BUDGIE_NOT_PHOTOS = {  # a black-and-white photograph, a woodblock-style painting, two drawings,
    # Saturn on black (no scene)
    "abstract-spiral", "ocean-waves", "valley-midnight", "waves-midnight", "saturnian-profile",
}  # fmt: skip

# GCompris READMEs' spellings -> the names the first 42 rows use (SPDX where one exists)
LICENCE_NAMES = {
    "Public Domain": "public domain", "Public domain": "public domain", "CC-BY-SA 4.0": "CC-BY-SA-4.0",
    "CC-BY 2.0": "CC-BY-2.0", "GPLv3": "GPL-3", "GPLv3 or later": "GPL-3+", "GPLv2+": "GPL-2+",
}  # fmt: skip

WHEELS = {
    "skimage": Path(skimage.__file__).parent,
    "sklearn": Path(sklearn.datasets.__file__).parents[1],
    "matplotlib": Path(matplotlib.__file__).parent,
}


@dataclass
class Photo:
    """One photograph of the set: its image and the index row that credits it."""

    name: str
    image: Image.Image  # RGB, full size
    author: str
    licence: str
    origin: str
    stem: str  # the name it has in its package: the same stem in two places is one subject
    source_url: str = ""
    batch: int = 0  # the index in BATCHES of the sources that added it


# ------------------------------------------------------------------------------ packages
def extract(debs: Path, into: Path, packages: Iterable[str] = PACKAGES) -> None:
    """Each of ``packages`` (names in PACKAGES, all by default) from ``debs``, checked against its
    sha256, extracted into ``into``."""
    for package in packages:
        version, digest = PACKAGES[package]
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            raise SystemExit(f"{debs}: no {package}_*.deb (apt-get download {package})")
        actual = hashlib.sha256(found[-1].read_bytes()).hexdigest()
        if actual != digest:
            raise SystemExit(
                f"{found[-1]}: sha256 {actual}, expected {digest} ({package} {version})"
            )
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(into)], check=True)


def read_rcc(data: bytes) -> dict[str, bytes]:
    """The files of a Qt resource file (``rcc``), by path. Layout: b"qres", then big-endian uint32
    version, tree, data and names offsets; tree nodes of 14 (version 1) or 22 bytes hold a name
    offset, flags (2: directory, 1: zlib with a 4-byte length prefix, 4: zstd) and either a child
    count and first child index or, at bytes 10-14, a data offset; names are a uint16 length, a
    uint32 hash and UTF-16-BE; data entries are a uint32 length and the bytes."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    node_size = 22 if version >= 2 else 14
    files: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        node = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[node : node + 6])
        path = prefix + (name(name_offset) if index else "")
        if flags & 2:
            count, first = struct.unpack(">II", data[node + 6 : node + 14])
            for child in range(first, first + count):
                walk(child, f"{path}/" if index else "")
            return
        (offset,) = struct.unpack(">I", data[node + 10 : node + 14])
        (length,) = struct.unpack(">I", data[blobs + offset : blobs + offset + 4])
        blob = data[blobs + offset + 4 : blobs + offset + 4 + length]
        if flags & 4:
            raise ValueError(f"{path}: zstd-compressed resources are not supported")
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob

    walk(0, "")
    return files


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """The ``Key: value`` blocks of a Debian-copyright-like README (continuation lines joined)."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                key = match.group(1).lower()
                fields[key] = match.group(2).strip()
            elif key:
                fields[key] = f"{fields[key]} {line.strip()}".strip()
        if "files" in fields:
            yield fields


# -------------------------------------------------------------------------------- tests
def chroma(img: Image.Image) -> float:
    """Mean CIE Lab chroma of an RGB image (0: gray)."""
    lab = np.asarray(ImageOps.exif_transpose(img).convert("RGB").convert("LAB"), np.float64)
    return float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128).mean())


def distinct_colours(rgba: np.ndarray) -> float:
    """Distinct colours / opaque pixels: photos ~0.4-1, flat-shaded drawings ~0-0.3."""
    pixels = rgba[..., :3][rgba[..., 3] == 255].astype(np.int64)
    if not len(pixels):
        return 0.0
    return len(np.unique(pixels @ np.array([65536, 256, 1]))) / len(pixels)


def opaque_rectangle(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest rectangle of fully opaque pixels: the largest
    rectangle under each row's histogram of opaque run heights, with a monotone stack."""
    heights = np.zeros(alpha.shape[1] + 1, dtype=np.int64)
    best = (0, 0, 0, 0, 0)  # area, left, top, right, bottom
    for row, opaque in enumerate(alpha == 255):
        heights[:-1] = np.where(opaque, heights[:-1] + 1, 0)
        stack: list[int] = []
        for col, height in enumerate(heights):
            while stack and heights[stack[-1]] >= height:
                top_height = heights[stack.pop()]
                left = stack[-1] + 1 if stack else 0
                area = top_height * (col - left)
                if area > best[0]:
                    best = (area, left, row - top_height + 1, col, row + 1)
            stack.append(col)
    return best[1:]


def average_hash(img: Image.Image) -> int:
    """256-bit average hash: the 16x16 gray thumbnail's pixels above its mean (8x8 joins unrelated
    photos with the same light layout, a sky over a dark field)."""
    small = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.LANCZOS), np.float64)
    return int("".join("1" if v else "0" for v in (small > small.mean()).ravel()), 2)


# ------------------------------------------------------------------------------ sources
def locate(origin: str, extracted: Path) -> Path:
    if origin.startswith("wheel:"):
        package, _, rest = origin.removeprefix("wheel:").partition("/")
        return WHEELS[package] / rest
    return extracted / origin


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def first_photos(extracted: Path) -> Iterator[Photo]:
    for name, origin, author, licence in PHOTOS:
        image = open_rgb(locate(origin, extracted))
        yield Photo(name, image, author, licence, origin, name.rsplit(".", 1)[0])


def gcompris(extracted: Path) -> Iterator[Photo]:
    """GCompris's photographs, each credited by the README stanza that lists it."""
    files: dict[str, bytes] = {}
    for rcc in sorted((extracted / GCOMPRIS_RCC).glob("*.rcc")):
        files |= read_rcc(rcc.read_bytes())
    credits: dict[str, dict[str, str]] = {}
    for path, blob in files.items():
        if path.rsplit("/", 1)[-1] == "README":
            folder = path.rsplit("/", 1)[0]
            for stanza in stanzas(blob.decode("utf-8", "replace")):
                for listed in stanza["files"].replace(",", " ").split():
                    credits[f"{folder}/{listed}"] = stanza
    version = PACKAGES["gcompris-qt-data"][0]
    for path in sorted(files):
        parts = path.split("/")
        stem = parts[-1].rsplit(".", 1)[0]
        if not path.endswith(".webp") or "license" not in credits.get(path, {}):
            continue
        if parts[3] in GCOMPRIS_SKIP or stem in GCOMPRIS_NOT_PHOTOS:
            continue
        with Image.open(io.BytesIO(files[path])) as img:
            if min(img.size) < MIN_SIDE:
                continue
            if img.mode in ("RGBA", "LA") and np.asarray(img.getchannel("A")).min() < 255:
                continue  # a cut-out or a render on transparency
            image = img.convert("RGB")
        stanza = credits[path]
        yield Photo(
            f"gcompris-{parts[3]}-{stem}.jpg".replace("_", "-"),
            image,
            stanza.get("copyright", "GCompris"),
            LICENCE_NAMES.get(stanza["license"], stanza["license"]),
            f"gcompris-qt-data {version}: {path}",
            stem,
            stanza.get("source", ""),
        )


def tuxpaint_stamps(extracted: Path) -> Iterator[Photo]:
    """The largest opaque rectangle of each photographic Tux Paint stamp (GPL-2, the package's
    copyright file), mirrored copies and second copies left out."""
    version = PACKAGES["tuxpaint-stamps-default"][0]
    seen = set()  # a stamp filed under two categories is one photograph
    for path in sorted((extracted / STAMPS).rglob("*.png")):
        if path.stem in CUTOUT_NOT_PHOTOS | seen or re.search(r"[_-]mirror", path.stem):
            continue
        seen.add(path.stem)
        with Image.open(path) as img:
            rgba = np.asarray(img.convert("RGBA"))
        if distinct_colours(rgba) < MIN_PHOTO_COLOURS:
            continue
        left, top, right, bottom = opaque_rectangle(rgba[..., 3])
        if min(right - left, bottom - top) < MIN_CUTOUT_SIDE:
            continue
        crop = Image.fromarray(np.ascontiguousarray(rgba[top:bottom, left:right, :3]))
        category = path.relative_to(extracted / STAMPS).parts[0]
        yield Photo(
            f"tuxpaint-{category}-{path.stem}.jpg".replace("_", "-"),
            crop,
            "Tux Paint stamps contributors",
            "GPL-2",
            f"tuxpaint-stamps-default {version}: {path.relative_to(extracted)} "
            f"opaque crop {left},{top},{right},{bottom}",
            path.stem,
        )


def packaged_files(extracted: Path) -> Iterator[Photo]:
    """Tux Paint's photographic templates and Palapeli's puzzle photographs (GPL-2+)."""
    folders = [
        (TEMPLATES, "tuxpaint-template", "Tux Paint developers", "tuxpaint-data"),
        (PALAPELI, "palapeli", "Palapeli (KDE)", "palapeli-data"),
    ]
    for folder, prefix, author, package in folders:
        for path in sorted((extracted / folder).glob("*.jpg")):
            yield Photo(
                f"{prefix}-{path.stem}.jpg".replace("_", "-"),
                open_rgb(path),
                author,
                "GPL-2+",
                f"{package} {PACKAGES[package][0]}: {path.relative_to(extracted)}",
                path.stem,
            )


def budgie(extracted: Path) -> Iterator[Photo]:
    """Budgie's photographic wallpapers (CC0-1.0, the package's copyright file)."""
    version = PACKAGES["budgie-backgrounds"][0]
    for path in sorted((extracted / BUDGIE).glob("*.jpg")):
        if path.stem not in BUDGIE_NOT_PHOTOS:
            yield Photo(
                f"budgie-{path.stem}.jpg",
                open_rgb(path),
                "Budgie Desktop Developers",
                "CC0-1.0",
                f"budgie-backgrounds {version}: {path.relative_to(extracted)}",
                path.stem,
            )


# ------------------------------------------------------------------------------- the set
# the sources in the order they joined the set: each batch's new groups are split on their own
BATCHES = ((first_photos,), (gcompris, tuxpaint_stamps, packaged_files), (budgie,))


def groups(photos: list[Photo]) -> list[int]:
    """A group id per photo: photos that share a source URL or a stem (case aside: ``tajMahal`` in
    two GCompris activities) or whose average hashes differ in at most SAME_HASH_BITS bits
    are one group (union-find)."""
    parent = list(range(len(photos)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[str, int] = {}
    hashes = [average_hash(p.image) for p in photos]
    for i, photo in enumerate(photos):
        for key in (
            f"url:{photo.source_url}" if photo.source_url else "",
            f"stem:{photo.stem.lower()}",
        ):
            if key:
                parent[root(i)] = root(first_seen.setdefault(key, i))
        for j in range(i):
            if bin(hashes[i] ^ hashes[j]).count("1") <= SAME_HASH_BITS:
                parent[root(i)] = root(j)
    return [root(i) for i in range(len(photos))]


def splits(photos: list[Photo], group: list[int]) -> list[str]:
    """The first set's splits as they were; the groups each later batch adds (a group belongs to
    the first batch that has a photo of it) drawn val/test by HELD_OUT_SHARE."""
    first = [name for name, *_ in PHOTOS]
    order = random.Random(SEED).sample(first, len(first))
    split = {name: "test" for name in order[: HELD_OUT["test"]]}
    split |= {name: "val" for name in order[HELD_OUT["test"] : sum(HELD_OUT.values())]}
    split = {name: split.get(name, "train") for name in first}
    fixed: dict[int, str] = {}
    for i, photo in enumerate(photos):
        if (
            photo.name in split
            and fixed.setdefault(group[i], split[photo.name]) != split[photo.name]
        ):
            raise SystemExit(f"{photo.name}: grouped with a photograph of another split")
    first_batch: dict[int, int] = {}
    for photo, g in zip(photos, group, strict=True):
        first_batch.setdefault(g, photo.batch)
    drawn: dict[int, str] = {}
    for batch in range(1, len(BATCHES)):
        added = sorted(g for g, b in first_batch.items() if b == batch and g not in fixed)
        random.Random(SEED).shuffle(added)
        n_test, n_val = (round(HELD_OUT_SHARE[s] * len(added)) for s in ("test", "val"))
        drawn |= {g: "test" for g in added[:n_test]}
        drawn |= {g: "val" for g in added[n_test : n_test + n_val]}
    return [fixed.get(g, drawn.get(g, "train")) for g in group]


def shrink(img: Image.Image, short_side: int) -> Image.Image:
    scale = short_side / min(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    return img.resize(size, Image.Resampling.LANCZOS) if scale < 1 else img.copy()


def collect(extracted: Path) -> list[Photo]:
    """Every photograph of the set, the first 42 first, without near-gray images or name clashes."""
    photos, names = [], set()
    for batch, sources in enumerate(BATCHES):
        for photo in (photo for source in sources for photo in source(extracted)):
            if photo.name in names:
                raise SystemExit(f"two photographs named {photo.name}")
            if batch and chroma(photo.image) < MIN_CHROMA:
                continue
            names.add(photo.name)
            photo.batch = batch
            photos.append(photo)
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debs", type=Path, help="directory holding the downloaded .deb packages")
    parser.add_argument("--out", type=Path, default=Path("pipeline/data/photos"))
    parser.add_argument("--example", type=Path, default=Path("docs/kite.jpg"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        extracted = Path(tmp)
        extract(args.debs, extracted)
        photos = collect(extracted)
        group = groups(photos)
        split = splits(photos, group)
        with open(args.out / "index.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "split", "sha256", "author", "licence", "origin", "group"])
            for photo, g, s in zip(photos, group, split, strict=True):
                shrink(photo.image, SHORT_SIDE).save(
                    args.out / photo.name, quality=QUALITY, subsampling=0
                )
                digest = hashlib.sha256((args.out / photo.name).read_bytes()).hexdigest()
                credit = [photo.author, photo.licence, photo.origin]
                if photo.source_url:
                    credit[2] += f" ({photo.source_url})"
                writer.writerow([photo.name, s, digest, *credit, photos[g].name])
        origin, size = EXAMPLE
        example = ImageOps.fit(open_rgb(extracted / origin), size, Image.Resampling.LANCZOS)
    args.example.parent.mkdir(parents=True, exist_ok=True)
    example.save(args.example, quality=QUALITY, subsampling=0)
    counts = {s: split.count(s) for s in ("train", "val", "test")}
    print(f"{len(photos)} photographs in {len(set(group))} groups: {counts}")


if __name__ == "__main__":
    main()
