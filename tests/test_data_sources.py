"""Every source format fetched from a local server (or the installed package) and preprocessed:
exact pixels and labels, splits, the manifest, determinism and the documented bad cases."""

import csv
import dataclasses
import json
import re

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ConfigError, DataConfig, DownloadConfig
from pipeline.data import SOURCES, download_source, preprocess
from pipeline.data.download import RemoteFile
from pipeline.data.preprocess import fit_image, fitted, tile_image
from pipeline.data.sources import idx_files
from tests.data_fixtures import make_cifar_tarball, make_idx_dataset, md5


def quick_download(tmp_path) -> DownloadConfig:
    return DownloadConfig(cache_dir=str(tmp_path / "cache"), retries=0, backoff_s=0.0, timeout_s=5)


def load_split(out, split):
    return np.load(out / f"{split}_images.npy"), np.load(out / f"{split}_labels.npy")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_sources_download_and_decode_exactly(http_server, tmp_path, name):
    written = make_idx_dataset(http_server.root)
    md5s = {p.name: md5(p) for p in http_server.root.iterdir()}
    source = dataclasses.replace(SOURCES[name], files=idx_files((f"{http_server.url}/",), md5s))
    raw, out = tmp_path / "raw", tmp_path / "processed"
    raw.mkdir()
    config = DataConfig(source=name, val_fraction=0.2)
    source.fetch(raw, config, quick_download(tmp_path))
    manifest = preprocess(config, raw, out, progress=False)

    test_images, test_labels = load_split(out, "test")  # the official test split is kept whole
    np.testing.assert_array_equal(test_images[:, 0], written["test"][0])
    np.testing.assert_array_equal(test_labels, written["test"][1])
    train = np.concatenate([load_split(out, "train")[0], load_split(out, "val")[0]])[:, 0]
    assert sorted(map(bytes, train)) == sorted(
        map(bytes, written["train"][0])
    )  # train + val = official train
    assert manifest["splits"]["val"]["count"] > 0 and manifest["splits"]["train"]["count"] > 0
    assert manifest["classes"] == list(SOURCES[name].classes)


def test_cifar10_tarball_downloads_extracts_and_decodes_exactly(http_server, tmp_path):
    written = make_cifar_tarball(http_server.root / "cifar-10-python.tar.gz")
    tarball = http_server.root / "cifar-10-python.tar.gz"
    archive = RemoteFile(
        tarball.name, (f"{http_server.url}/{tarball.name}",), f"md5:{md5(tarball)}"
    )
    source = dataclasses.replace(SOURCES["cifar10"], archive=archive)
    raw, out = tmp_path / "raw", tmp_path / "processed"
    raw.mkdir()
    config = DataConfig(source="cifar10", image_size=32, channels=3, val_fraction=0.25)
    source.fetch(raw, config, quick_download(tmp_path))
    assert sorted(p.name for p in (raw / "cifar-10-batches-py").iterdir())[:2] == [
        "batches.meta",
        "data_batch_1",
    ]
    preprocess(config, raw, out, progress=False)
    test_images, test_labels = load_split(out, "test")
    rows, labels = written["test"][0]
    np.testing.assert_array_equal(
        test_images.reshape(len(rows), -1), rows
    )  # (N, 3, 32, 32) = CIFAR's plane order
    assert test_labels.tolist() == labels
    n_train = sum(len(r) for r, _ in written["train"])
    assert len(load_split(out, "train")[0]) + len(load_split(out, "val")[0]) == n_train


def test_cifar_to_grayscale_28(http_server, tmp_path):
    tarball = http_server.root / "cifar-10-python.tar.gz"
    make_cifar_tarball(tarball, per_batch=2)
    archive = RemoteFile(
        tarball.name, (f"{http_server.url}/{tarball.name}",), f"md5:{md5(tarball)}"
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    dataclasses.replace(SOURCES["cifar10"], archive=archive).fetch(
        raw, DataConfig(), quick_download(tmp_path)
    )
    manifest = preprocess(DataConfig(source="cifar10"), raw, tmp_path / "out", progress=False)
    assert manifest["splits"]["test"]["images"]["shape"] == [2, 1, 28, 28]


def test_mnist_5k_offline_default_is_real_and_byte_identical_on_rerun(tmp_path):
    config = DataConfig()  # the default: mnist-5k from the installed package, no network
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    first = preprocess(config, tmp_path / "raw", tmp_path / "a", progress=False)
    second = preprocess(config, tmp_path / "raw", tmp_path / "b", progress=False)
    assert first == second
    for name in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    counts = {s: first["splits"][s]["count"] for s in ("train", "val", "test")}
    assert sum(counts.values()) == 5000
    assert 400 < counts["val"] < 600 and 400 < counts["test"] < 600  # 10% each, +-4.5 sigma
    images, labels = load_split(tmp_path / "a", "train")
    assert images.shape[1:] == (1, 28, 28) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))
    assert 20 < images.mean() < 45 and images.max() == 255  # MNIST: mostly black, white strokes
    assert json.loads((tmp_path / "a/manifest.json").read_text()) == first


def test_splits_depend_on_the_seed_and_limit_caps_images(tmp_path):
    download_source(DataConfig(), quick_download(tmp_path), tmp_path / "raw")
    other_seed = preprocess(DataConfig(seed=1), tmp_path / "raw", tmp_path / "s1", progress=False)
    default = preprocess(DataConfig(), tmp_path / "raw", tmp_path / "s0", progress=False)
    assert (
        other_seed["splits"]["train"]["images"]["sha256"]
        != default["splits"]["train"]["images"]["sha256"]
    )
    limited = preprocess(DataConfig(limit=100), tmp_path / "raw", tmp_path / "lim", progress=False)
    assert sum(limited["splits"][s]["count"] for s in ("train", "val", "test")) == 100


def make_folder(root, bad: bool = True):
    rng = np.random.default_rng(0)
    for cls, size in (("cats", (40, 30)), ("dogs", (20, 20))):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png"
            )
    if bad:
        (root / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "dogs" / "notes.txt").write_text("ignored: not an image")


def test_folder_source_labels_subfolders_and_skips_corrupt_images(tmp_path):
    make_folder(tmp_path / "photos")
    config = DataConfig(
        source="folder",
        folder=str(tmp_path / "photos"),
        image_size=16,
        channels=3,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    manifest = preprocess(config, tmp_path / "raw", tmp_path / "out", progress=False)
    assert manifest["classes"] == ["cats", "dogs"]
    assert manifest["skipped"]["count"] == 1 and manifest["skipped"]["examples"][0].startswith(
        "dogs/broken.jpg: "
    )
    images, labels = load_split(tmp_path / "out", "train")
    assert images.shape == (12, 3, 16, 16) and sorted(labels.tolist()) == [0] * 6 + [1] * 6

    with pytest.raises(ValueError, match="cannot decode dogs/broken.jpg: .*data.strict: true"):
        preprocess(
            dataclasses.replace(config, strict=True),
            tmp_path / "raw",
            tmp_path / "strict",
            progress=False,
        )
    assert not (tmp_path / "strict").exists()


def test_folder_without_class_subfolders_has_no_labels(tmp_path):
    (tmp_path / "flat").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(
            tmp_path / "flat" / f"{i}.PNG"
        )
    config = DataConfig(
        source="folder",
        folder=str(tmp_path / "flat"),
        image_size=8,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    manifest = preprocess(config, tmp_path / "raw", tmp_path / "out", progress=False)
    assert manifest["classes"] is None and "labels" not in manifest["splits"]["train"]
    assert not (tmp_path / "out/train_labels.npy").exists()


def test_empty_results_and_missing_folders_are_errors(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"garbage")
    config = DataConfig(source="folder", folder=str(tmp_path / "junk"))
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    with pytest.raises(
        ValueError, match="preprocessing folder gave no training images \\(1 undecodable"
    ):
        preprocess(config, tmp_path / "raw", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .png/.jpg/.jpeg files"):
        download_source(
            DataConfig(source="folder", folder=str(tmp_path / "empty")),
            quick_download(tmp_path),
            tmp_path / "raw2",
        )
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        download_source(
            DataConfig(source="folder", folder=str(tmp_path / "nope")),
            quick_download(tmp_path),
            tmp_path / "raw3",
        )
    assert not (tmp_path / "raw2").exists() and not (tmp_path / "raw3").exists()


def test_fit_image_channels_and_sizes():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red -> luma 0.299 * 200 = 59.8
    assert fit_image(rgb, 2, 1, "resize").tolist() == [[[60, 60], [60, 60]]]
    gray = np.full((4, 4), 7, dtype=np.uint8)
    assert (fit_image(gray, 4, 3, "resize") == 7).all() and fit_image(
        gray, 4, 3, "resize"
    ).shape == (3, 4, 4)
    padded = fit_image(np.full((28, 28), 255, dtype=np.uint8), 32, 1, "pad_crop")[0]
    assert padded[2:30, 2:30].min() == 255 and padded[:2].max() == 0 and padded[:, 30:].max() == 0
    cropped = fit_image(np.arange(36, dtype=np.uint8).reshape(6, 6), 2, 1, "pad_crop")[0]
    assert cropped.tolist() == [[14, 15], [20, 21]]  # the center 2x2
    wide = np.zeros((32, 64), dtype=np.uint8)
    wide[:, 16:48] = 255  # the center square is white
    resized = fit_image(wide, 16, 1, "resize")[0]  # shorter side 32 -> 16, then center crop 16x16
    assert resized.shape == (16, 16) and resized[:, 2:14].min() > 240


def test_registry_pins_real_urls_and_checksums():
    assert list(SOURCES) == [
        "mnist-5k", "mnist", "fashion-mnist", "cifar10", "photos", "folder", "kaggle-colorization"
    ]  # fmt: skip
    for name in ("mnist", "fashion-mnist"):
        for images, labels in SOURCES[name].files.values():
            for remote in (images, labels):
                assert all(
                    u.startswith(("https://", "http://")) and u.endswith(remote.filename)
                    for u in remote.urls
                )
                assert remote.checksum.startswith("md5:") and len(remote.checksum) == 4 + 32
    assert SOURCES["cifar10"].archive.urls == (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(source="imagenet"),
            "data: unknown data source 'imagenet'; allowed: mnist-5k, mnist, fashion-mnist, cifar10, photos, folder, kaggle-colorization",
        ),
        (
            dict(source="folder"),
            "data: folder must be set exactly when source reads one (folder, kaggle-colorization)",
        ),
        (
            dict(folder="/photos"),
            "data: folder must be set exactly when source reads one (folder, kaggle-colorization)",
        ),
        (dict(val_fraction=0.6, test_fraction=0.4), "val_fraction + test_fraction must be < 1"),
        (dict(val_fraction=-0.1), "val_fraction must be in [0, 1), got -0.1"),
        (dict(limit=0), "limit must be an integer >= 1, got 0"),
        (dict(tile_scales=[0.5]), "tile_scales must be a non-empty list of numbers >= 1"),
        (dict(views=0), "data: views must be an integer >= 1, got 0"),
        (dict(view_scale=[0.8, 0.5]), "view_scale must be [low, high] with 0 < low <= high <= 1"),
        (dict(view_scale=[0.5, 1.2]), "a view's side as a share of the photo's shorter side), got"),
        (dict(view_scale=[0.5]), "view_scale must be [low, high]"),
    ],
)
def test_data_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        DataConfig(**kwargs)
    assert message in str(info.value)


def test_cifar_batches_cannot_run_code(tmp_path):
    import os
    import pickle

    from pipeline.data.sources import load_pickled_batch

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        load_pickled_batch(tmp_path / "data_batch_1")
    assert not (tmp_path / "pwned").exists()


def test_photos_ship_offline_ten_times_the_first_set_split_by_group(tmp_path):
    config = DataConfig(source="photos", image_size=32, channels=3, fit="tiles")
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    manifest = preprocess(config, tmp_path / "raw", tmp_path / "processed", progress=False)
    counts = {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")}
    assert counts["train"] >= 40_000 and counts["val"] > 3000 and counts["test"] > 3000
    assert manifest["params"]["tile_scales"] == [2.0, 3.0, 4.0, 6.0, 8.0]
    with open(tmp_path / "raw" / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    assert len(index) >= 420 and all(row["licence"] and row["author"] for row in index)
    photos = {s: [row["file"] for row in index if row["split"] == s] for s in counts}
    assert len(photos["test"]) >= 30 and len(photos["val"]) >= 30 and len(photos["train"]) >= 350
    # near-duplicates (one group) never straddle splits, and the first 42 keep their splits
    split_of_group = {}
    for row in index:
        assert split_of_group.setdefault(row["group"], row["split"]) == row["split"], row["file"]
    assert {"fig.jpg", "freshflower.jpg", "coldripple.jpg"} <= set(photos["test"])
    # every crop comes from its split's photos: re-tile each test photo and find the test crops
    test = np.load(tmp_path / "processed" / "test_images.npy")
    retiled = [
        tile
        for name in photos["test"]
        for tile in tile_image(
            np.asarray(Image.open(tmp_path / "raw" / name).convert("RGB")),
            32,
            3,
            config.tile_scales,
        )
    ]
    np.testing.assert_array_equal(test, np.stack(retiled))
    rgb = test.astype(np.int16)
    assert np.abs(rgb[:, 0] - rgb[:, 1]).mean() > 5  # colour photographs, not gray


def test_a_corrupted_packaged_photo_is_refused(tmp_path, monkeypatch):
    import shutil

    from pipeline.data.download import ChecksumError

    copy = tmp_path / "pkg" / "photos"
    shutil.copytree(SOURCES["photos"].package_dir(), copy)
    (copy / "fig.jpg").write_bytes((copy / "fig.jpg").read_bytes()[:-100])
    monkeypatch.setattr(type(SOURCES["photos"]), "package_dir", lambda self: copy)
    with pytest.raises(ChecksumError, match="fig.jpg"):
        download_source(DataConfig(source="photos"), quick_download(tmp_path), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_tile_image_cuts_a_centred_grid_at_each_scale():
    image = np.arange(40 * 60, dtype=np.uint8).reshape(40, 60)  # 40 x 60 gray
    tiles = tile_image(image, 10, 1, (1.0, 2.0, 4.0, 9.0))
    # shorter side 10 -> 10x15: 1x1; 20 -> 20x30: 2x3; 40 (own size): 4x6; 90 capped at 40: a repeat
    assert len(tiles) == 1 + 6 + 24 and all(t.shape == (1, 10, 10) for t in tiles)
    np.testing.assert_array_equal(tiles[-1][0], image[30:40, 50:60])  # unscaled: exact pixels
    np.testing.assert_array_equal(tiles[7][0], image[:10, :10])


def test_views_are_squares_of_most_of_the_photo_fixed_by_the_photo():
    x = np.arange(90, dtype=np.float64)
    image = np.stack(np.broadcast_arrays(x[None] * 2, x[:60, None] * 4, 128 + 0 * x), -1)
    image = image.astype(np.uint8)  # (60, 90, 3): red grows to the right, green downwards
    config = DataConfig(image_size=16, channels=3, fit="views", views=64, view_scale=(0.5, 1.0))
    views = fitted(image, config, "street.jpg")
    assert len(views) == 64 and all(v.shape == (3, 16, 16) and v.dtype == np.uint8 for v in views)
    # the same photo gives the same views, another photo (origin) or data.seed others
    np.testing.assert_array_equal(np.stack(views), np.stack(fitted(image, config, "street.jpg")))
    assert not np.array_equal(np.stack(views), np.stack(fitted(image, config, "house.jpg")))
    reseeded = dataclasses.replace(config, seed=1)
    assert not np.array_equal(np.stack(views), np.stack(fitted(image, reseeded, "street.jpg")))
    # each view spans 30 to 60 of the 60 rows: green (4 per row) spans 120 to 240 within a view
    span = np.array([int(v[1, -1].mean()) - int(v[1, 0].mean()) for v in views])
    assert span.min() >= 100 and span.max() <= 240 and span.max() - span.min() > 60
    # about half are mirrored: red falls from left to right
    mirrored = np.mean([v[0, :, 0].mean() > v[0, :, -1].mean() for v in views])
    assert 0.3 < mirrored < 0.7
    # a square photo seen whole (view_scale [1, 1]) is the photo resized, or its mirror image
    square = image[:, :60]
    whole = DataConfig(image_size=16, channels=3, fit="views", views=4, view_scale=(1.0, 1.0))
    resized = np.asarray(Image.fromarray(square).resize((16, 16), Image.Resampling.BICUBIC))
    for view in fitted(square, whole, "square.jpg"):
        assert any(np.array_equal(view.transpose(1, 2, 0), r) for r in (resized, resized[:, ::-1]))


def write_kaggle_layout(root, rgb_images):
    """The Kaggle "Image Colorization" layout of uint8 RGB images (N, H, W, 3): L in
    l/gray_scale.npy and ab split over ab/ab/ab1.npy, ab2.npy (OpenCV 8-bit Lab)."""
    import torch

    from pipeline.color import rgb_to_lab

    lab = rgb_to_lab(torch.from_numpy(rgb_images).permute(0, 3, 1, 2).double() / 255)
    lab = lab.permute(0, 2, 3, 1).numpy()
    L = np.round(lab[..., 0] * 255 / 100).astype(np.uint8)
    ab = np.round(lab[..., 1:] + 128).astype(np.uint8)
    (root / "l").mkdir(parents=True)
    (root / "ab" / "ab").mkdir(parents=True)
    np.save(root / "l" / "gray_scale.npy", L)
    half = len(ab) // 2
    np.save(root / "ab" / "ab" / "ab1.npy", ab[:half])
    np.save(root / "ab" / "ab" / "ab2.npy", ab[half:])


def test_kaggle_colorization_layout_decodes_to_the_original_colours(tmp_path):
    rng = np.random.default_rng(0)
    smooth = rng.integers(40, 216, (6, 1, 1, 3)) + rng.integers(-20, 20, (6, 12, 12, 3))
    images = np.clip(smooth, 0, 255).astype(np.uint8)
    write_kaggle_layout(tmp_path / "kaggle", images)
    config = DataConfig(
        source="kaggle-colorization", folder=str(tmp_path / "kaggle"), image_size=12, channels=3,
        val_fraction=0.0, test_fraction=0.0,
    )  # fmt: skip
    download_source(config, quick_download(tmp_path), tmp_path / "raw")
    preprocess(config, tmp_path / "raw", tmp_path / "processed", progress=False)
    decoded = np.load(tmp_path / "processed" / "train_images.npy").transpose(0, 2, 3, 1)
    assert decoded.shape == images.shape
    # 8-bit Lab quantises L* to 0.4 and ab to 1 unit: a few RGB levels at most
    assert np.abs(decoded.astype(int) - images).max() <= 6
    assert np.abs(decoded.astype(int) - images).mean() < 1.5


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda r: (r / "l" / "gray_scale.npy").unlink(),
            "l/gray_scale.npy is missing (expected l/gray_scale.npy uint8 (N, H, W)",
        ),
        (
            lambda r: np.save(r / "ab" / "ab" / "ab2.npy", np.zeros((3, 12, 10, 2), np.uint8)),
            "ab2.npy: uint8 (3, 12, 10, 2), expected uint8 (N_i, 12, 12, 2)",
        ),
        (
            lambda r: np.save(r / "ab" / "ab" / "ab2.npy", np.zeros((1, 12, 12, 2), np.uint8)),
            "the ab files hold 4 images, l/gray_scale.npy holds 6",
        ),
        (
            lambda r: np.save(r / "l" / "gray_scale.npy", np.zeros((6, 12, 12), np.float32)),
            "float32 (6, 12, 12), expected l/gray_scale.npy uint8",
        ),
    ],
)
def test_kaggle_colorization_layout_errors_name_the_file_and_the_expected_layout(
    tmp_path, damage, message
):
    write_kaggle_layout(tmp_path / "kaggle", np.zeros((6, 12, 12, 3), np.uint8))
    damage(tmp_path / "kaggle")
    config = DataConfig(source="kaggle-colorization", folder=str(tmp_path / "kaggle"), channels=3)
    with pytest.raises((ValueError, OSError), match=re.escape(message)):
        download_source(config, quick_download(tmp_path), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_folder_of_colour_photos_feeds_the_colorizer_with_tiles_split_by_photo(tmp_path):
    from pipeline.config import Params, from_dict

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(
            folder / f"p{i}.png"
        )
    data = {"source": "folder", "folder": str(folder), "image_size": 10, "channels": 3,
            "fit": "tiles", "tile_scales": [1, 2], "val_fraction": 0.25, "test_fraction": 0.25}  # fmt: skip
    params = from_dict(Params, {"data": data, "model": {"family": "ddpm_color", "attention_resolutions": [],
                                                        "channel_mult": [1, 2]}})  # fmt: skip
    download_source(params.data, quick_download(tmp_path), tmp_path / "raw")
    manifest = preprocess(params.data, tmp_path / "raw", tmp_path / "processed", progress=False)
    per_photo = 1 * 1 + 2 * 3  # 10x15 -> 1 tile, 20x30 -> 6 tiles
    counts = [manifest["splits"][s]["count"] for s in ("train", "val", "test")]
    assert sum(counts) == 12 * per_photo and all(c % per_photo == 0 and c > 0 for c in counts)
