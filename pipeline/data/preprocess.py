"""Decode a raw source into the on-disk format the trainer loads: uint8 .npy arrays + manifest.

Output directory (written to a temporary sibling, then renamed into place):

    {split}_images.npy   uint8, (N, C, H, W), C = data.channels (+ data.scene's planes),
                         H = W = data.image_size
    {split}_labels.npy   int64, (N,)            (only when the source has labels)
    manifest.json        counts, shapes, dtypes, sha256 of every array, the params, skipped files

Splits (``train``, ``val``, ``test``) are deterministic: an official test split stays ``test``, and a
source with fixed splits (``photos``) keeps all three; every other image draws u in [0, 1) from
sha256(seed, its origin) and goes to ``test`` if u < test_fraction (sources without an official test
split), to ``val`` if u >= 1 - val_fraction, else to ``train``. Keying on the origin keeps an image's
split when a folder gains or loses other images. With ``fit: tiles`` or ``fit: views`` every crop of
an image lands in the image's split, so splits are disjoint by photo.

Memory: images are decoded one at a time and appended to per-split files; nothing holds the
dataset in Python lists (peak memory is recorded in benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipeline.console import progress_bar
from pipeline.data.download import file_digest
from pipeline.data.sources import DataSettings, Example, get_source
from pipeline.io import atomic_dir, write_json
from pipeline.scene import scene_planes, thumbnail


class FitSettings(DataSettings, Protocol):
    """What preprocessing reads of params.yaml's ``data`` section (pipeline.config.DataConfig)
    beyond a source's settings: the size, planes and fit of the images, the split seed, the limit.
    A Protocol, as ``DataSettings``: the config imports this package."""

    @property
    def image_size(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def image_shape(self) -> tuple[int, int, int]: ...
    @property
    def fit(self) -> str: ...
    @property
    def tile_scales(self) -> tuple[float, ...]: ...
    @property
    def views(self) -> int: ...
    @property
    def view_scale(self) -> tuple[float, float]: ...
    @property
    def scene(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def strict(self) -> bool: ...


log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MAX_LISTED_SKIPS = 20  # skipped files named in the manifest (all are counted)


def split_of(example: Example, config: FitSettings, fixed: bool = False) -> str:
    """The example's split: official test (or any split when ``fixed``), else by u = sha256(seed,
    origin) in [0, 1)."""
    if example.split == "test" or fixed:
        return example.split
    digest = hashlib.sha256(f"{config.seed}:{example.origin}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if example.split == "" and u < config.test_fraction:
        return "test"
    return "val" if u >= 1 - config.val_fraction else "train"


def fit_image(image: np.ndarray, size: int, channels: int, fit: str) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> (channels, size, size) uint8.

    Channels: RGB -> gray by ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B, as PIL), gray -> RGB
    by repetition. Size: ``resize`` scales the shorter side to ``size`` (bicubic, antialiased) and
    center-crops; ``pad_crop`` keeps the scale and center-pads with black or center-crops.
    """
    img = Image.fromarray(image)
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    w, h = img.size
    if (w, h) != (size, size):
        if fit == "resize":
            scale = size / min(w, h)
            w, h = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC)
        canvas = Image.new(mode, (size, size))
        canvas.paste(img, ((size - w) // 2, (size - h) // 2))
        img = canvas
    array = np.asarray(img)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)  # (C, H, W)


def tile_image(
    image: np.ndarray, size: int, channels: int, scales: tuple[float, ...], scene: str = "none"
) -> list:
    """Crops (channels, size, size) uint8 of one photo at several scales: for each s in ``scales``
    the shorter side is resized to round(s * size) (bicubic, antialiased; never above the photo's
    own size) and cut into the centred grid of non-overlapping size x size tiles. With a ``scene``
    each crop is followed by its scene planes (pipeline.scene: the crop's box on the photo, with
    ``photo`` also the photo's thumbnail): (channels + PLANES[scene], size, size)."""
    img = Image.fromarray(image).convert("L" if channels == 1 else "RGB")
    thumb = thumbnail(np.asarray(img), size) if scene == "photo" else None
    tiles, seen = [], set()
    for scale in scales:
        short = min(round(scale * size), *img.size)
        w, h = (round(d * short / min(img.size)) for d in img.size)
        if (w, h) in seen or short < size:
            continue
        seen.add((w, h))
        resized = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC))
        (rows, top), (cols, left) = ((n // size, (n % size) // 2) for n in (h, w))
        for r in range(rows):
            for c in range(cols):
                y, x = top + r * size, left + c * size
                tile = resized[y : y + size, x : x + size]
                tile = tile[None] if channels == 1 else tile.transpose(2, 0, 1)
                if scene != "none":
                    window = (y, x, y + size, x + size)
                    tile = np.concatenate([tile, scene_planes(window, (h, w), size, thumb)])
                tiles.append(tile)
    return tiles


def view_image(
    image: np.ndarray,
    size: int,
    channels: int,
    count: int,
    scale: tuple[float, float],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """``count`` views (channels, size, size) uint8 of most of one photo, the augmentation of
    whole-image colorizers (Zhang et al. 2016, Iizuka et al. 2016: random crops, flips): each a
    square of side U(scale) times the photo's shorter side at a uniform place, resized to ``size``
    (bicubic, antialiased, as the colorize command resizes a whole photo) and mirrored with
    probability 1/2. A view sees its scene as the command sees a whole photo whose shorter side
    is ``size``."""
    img = Image.fromarray(image).convert("L" if channels == 1 else "RGB")
    w, h = img.size
    views = []
    for _ in range(count):
        side = max(1, round(min(w, h) * rng.uniform(*scale)))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        view = img.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + side, y + side))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(view)
        views.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    return views


def image_rng(config: FitSettings, origin: str, purpose: str) -> np.random.Generator:
    """A generator seeded by sha256(data.seed, the image's origin, ``purpose``): an image's random
    choices do not depend on which other images are preprocessed, or in which order."""
    digest = hashlib.sha256(f"{config.seed}:{origin}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def fitted(image: np.ndarray, config: FitSettings, origin: str) -> list[np.ndarray]:
    """The preprocessed images (C, H, W) one decoded image (from ``origin``) gives: its tiles with
    ``fit: tiles``, its views with ``fit: views``, else the one image ``fit_image`` makes."""
    size, channels = config.image_size, config.channels
    if config.fit == "tiles":
        return tile_image(image, size, channels, config.tile_scales, config.scene)
    if config.fit == "views":
        rng = image_rng(config, origin, "views")
        return view_image(image, size, channels, config.views, config.view_scale, rng)
    return [fit_image(image, size, channels, config.fit)]


def within_limit(examples: Iterable[Example], limit: int | None) -> Iterator[Example]:
    """``examples`` in order, at most ``limit`` decodable ones per official split (data.limit;
    undecodable ones pass, uncounted, for the caller to skip or refuse)."""
    taken: Counter[str] = Counter()
    for example in examples:
        if limit is not None and taken[example.split] >= limit:
            continue
        taken[example.split] += example.image is not None
        yield example


def split_images(config: FitSettings, raw_dir: str | Path, split: str) -> Iterator[Example]:
    """The decodable images of ``raw_dir`` that ``preprocess`` puts in ``split``, whole (before
    ``fitted``), in order: the held-out photos the evaluate stage colours as the colorize command
    does."""
    source = get_source(config.source)
    for example in within_limit(source.examples(Path(raw_dir)), config.limit):
        if example.image is not None and split_of(example, config, source.fixed_splits) == split:
            yield example


class NpyAppender:
    """Appends equally shaped uint8 arrays to a file; ``finish`` writes the .npy (header + data)."""

    def __init__(self, path: Path, item_shape: tuple[int, ...]) -> None:
        self.path, self.item_shape, self.count = path, item_shape, 0
        self._data_path = path.with_suffix(".data")
        self._data = open(self._data_path, "wb")

    def append(self, item: np.ndarray) -> None:
        self._data.write(np.ascontiguousarray(item, dtype=np.uint8).tobytes())
        self.count += 1

    def finish(self) -> Path:
        self._data.close()
        header = {"descr": "|u1", "fortran_order": False, "shape": (self.count, *self.item_shape)}
        with open(self.path, "wb") as out, open(self._data_path, "rb") as data:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(data, out, 1 << 20)
        self._data_path.unlink()
        return self.path


def array_entry(path: Path) -> dict[str, Any]:
    """Manifest entry of a .npy file: its name, shape, dtype and sha256 (read from the file)."""
    array = np.load(path, mmap_mode="r")
    return {
        "file": path.name,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "sha256": file_digest(path, "sha256"),
    }


def finish_splits(
    folder: Path, writers: dict[str, NpyAppender], labels: dict[str, list[int]] | None
) -> dict[str, Any]:
    """Each split's images (and labels, unless None) closed into ``folder``: its manifest entry
    (count, file digests); an empty split is logged."""
    splits: dict[str, Any] = {}
    for s in SPLITS:
        entry = {"count": writers[s].count, "images": array_entry(writers[s].finish())}
        if labels is not None:
            np.save(folder / f"{s}_labels.npy", np.asarray(labels[s], dtype=np.int64))
            entry["labels"] = array_entry(folder / f"{s}_labels.npy")
        splits[s] = entry
        if entry["count"] == 0:
            log.warning("split %s is empty", s)
    return splits


def manifest_params(config: FitSettings) -> dict[str, Any]:
    """The data params the processed arrays depend on, as the manifest records them (a fit's own
    keys only with that fit)."""
    return {
        "image_size": config.image_size,
        "channels": config.channels,
        "fit": config.fit,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "limit": config.limit,
        **({"tile_scales": list(config.tile_scales)} if config.fit == "tiles" else {}),
        **({"scene": config.scene} if config.scene != "none" else {}),
        **(
            {"views": config.views, "view_scale": list(config.view_scale)}
            if config.fit == "views"
            else {}
        ),
    }


def preprocess(
    config: FitSettings, raw_dir: str | Path, out_dir: str | Path, *, progress: bool = True
) -> dict:
    """Decode ``raw_dir`` (written by the download stage) into ``out_dir``; return the manifest.

    Raises ValueError on an empty result (no training images), and on the first undecodable image
    when ``config.strict``; otherwise undecodable images are skipped, counted and listed.
    """
    raw_dir = Path(raw_dir)
    source = get_source(config.source)
    item_shape = config.image_shape
    skipped: list[str] = []
    with atomic_dir(out_dir) as tmp:
        writers = {s: NpyAppender(tmp / f"{s}_images.npy", item_shape) for s in SPLITS}
        labels: dict[str, list[int]] = {s: [] for s in SPLITS}
        for example in progress_bar(
            within_limit(source.examples(raw_dir), config.limit),
            desc=f"preprocess {source.name}",
            unit="img",
            disable=not progress,
        ):
            if example.image is None:
                if config.strict:
                    raise ValueError(
                        f"cannot decode {example.origin}: {example.error} (data.strict: true)"
                    )
                skipped.append(f"{example.origin}: {example.error}")
                continue
            split = split_of(example, config, source.fixed_splits)
            for image in fitted(example.image, config, example.origin):
                writers[split].append(image)
                labels[split].append(example.label)
        if writers["train"].count == 0:
            raise ValueError(
                f"preprocessing {source.name} gave no training images "
                f"({len(skipped)} undecodable; val_fraction={config.val_fraction}, "
                f"test_fraction={config.test_fraction})"
            )
        has_labels = any(label >= 0 for split in SPLITS for label in labels[split])
        splits = finish_splits(tmp, writers, labels if has_labels else None)
        classes = source.class_names(raw_dir)
        manifest = {
            "source": source.name,
            "params": manifest_params(config),
            "classes": list(classes) if classes and has_labels else None,
            "splits": splits,
            "skipped": {"count": len(skipped), "examples": skipped[:MAX_LISTED_SKIPS]},
        }
        write_json(tmp / "manifest.json", manifest)
    counts = ", ".join(f"{s} {splits[s]['count']}" for s in SPLITS)
    log.info("%s: %s images; %d skipped", source.name, counts, len(skipped))
    for line in skipped[:MAX_LISTED_SKIPS]:
        log.warning("skipped %s", line)
    return manifest
