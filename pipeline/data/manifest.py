"""``data/processed/manifest.json``: read it once, and check the arrays against it.

The preprocess stage records every array's file, shape, dtype and sha256. ``verify_processed`` is
what each consuming stage (featurenet, tune, train, evaluate) runs once before any compute: the
arrays exist, parse as .npy, have the recorded dtype and shape, hash to the recorded sha256 (the
actual bytes, so a corrupted or replaced array is caught), and hold enough images for the splits the
stage uses. Hashing is the cost: ~0.005 s for the default 5,000 28x28 digits, ~0.18 s for
CIFAR-10's 185 MB (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import CorruptFileError, file_digest, read_json

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
DTYPES = {"images": "uint8", "labels": "int64"}
MADE_BY = "the preprocess stage (dvc repro preprocess)"
GROW = {  # how a user gets more images into a split
    "train": "use more images or lower data.val_fraction/test_fraction",
    "val": "raise data.val_fraction or data.limit",
    "test": "raise data.test_fraction or data.limit",
}


def read_manifest(processed_dir: str | Path) -> dict[str, Any]:
    """The manifest of ``processed_dir``, with its structure checked (each split has a count and an
    images entry with file, shape, dtype and sha256); ValueError naming the file otherwise."""
    path = Path(processed_dir) / MANIFEST
    manifest = read_json(path, ("splits",), made_by=MADE_BY)
    splits = manifest["splits"]
    for split in SPLITS:
        entry = splits.get(split) if isinstance(splits, Mapping) else None
        arrays = [entry.get(kind) for kind in DTYPES if kind in entry] if entry else []
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("count"), int)
            or "images" not in entry
            or not all(
                isinstance(a, Mapping) and {"file", "shape", "dtype", "sha256"} <= set(a)
                for a in arrays
            )
        ):
            raise CorruptFileError(
                f"{path}: splits.{split} must hold count and images (file, shape, dtype, sha256); "
                f"re-run {MADE_BY}"
            )
    return manifest


def load_array(processed_dir: str | Path, entry: Mapping[str, Any]) -> np.ndarray:
    """The memory-mapped array of a manifest entry; ValueError naming the file when it does not
    parse (a truncated file) or its dtype or shape differ from the manifest's."""
    path = Path(processed_dir) / entry["file"]
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing; re-run {MADE_BY}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFileError(
            f"{path} is not a readable .npy array ({exc}); re-run {MADE_BY}"
        ) from None
    if str(array.dtype) != entry["dtype"] or list(array.shape) != list(entry["shape"]):
        raise CorruptFileError(
            f"{path} holds {array.dtype} {list(array.shape)}; {MANIFEST} says {entry['dtype']} "
            f"{list(entry['shape'])}; re-run {MADE_BY}"
        )
    return array


def verify_processed(
    processed_dir: str | Path,
    *,
    image_shape: tuple[int, int, int] | None = None,
    min_counts: Mapping[str, tuple[int, str]] | None = None,
) -> dict[str, Any]:
    """Check every array of ``processed_dir`` against its manifest (see the module docstring) and
    return the manifest. ``image_shape``: the (C, H, W) the params expect. ``min_counts``: split ->
    (at least this many images, the stage that needs them), for the message."""
    processed_dir = Path(processed_dir)
    manifest = read_manifest(processed_dir)
    for split in SPLITS:
        for kind, dtype in DTYPES.items():
            entry = manifest["splits"][split].get(kind)
            if entry is None:
                continue
            path = processed_dir / entry["file"]
            if entry["dtype"] != dtype:
                raise CorruptFileError(f"{path}: dtype {entry['dtype']}, expected {dtype}")
            load_array(processed_dir, entry)
            got = file_digest(path)
            if got != entry["sha256"]:
                raise CorruptFileError(
                    f"{path}: sha256 {got} differs from {entry['sha256']} in {MANIFEST} "
                    f"(corrupted or replaced); re-run {MADE_BY}"
                )
        shape = manifest["splits"][split]["images"]["shape"]
        if image_shape is not None and list(shape[1:]) != list(image_shape):
            raise ValueError(
                f"{processed_dir / MANIFEST}: {split} images are {shape[1:]} (C, H, W) but "
                f"data.channels/data.image_size ask for {list(image_shape)}; re-run {MADE_BY}"
            )
    for split, (minimum, stage) in (min_counts or {}).items():
        count = manifest["splits"][split]["count"]
        if count < minimum:
            raise ValueError(
                f"{processed_dir}: the {split} split has {count} images; {stage} needs at least "
                f"{minimum} ({GROW[split]})"
            )
    return manifest


def manifest_digest(processed_dir: str | Path) -> str:
    """sha256 of the manifest file: the identity of the processed data (it holds every array's
    sha256), as runs and MLflow record it."""
    return file_digest(Path(processed_dir) / MANIFEST)
