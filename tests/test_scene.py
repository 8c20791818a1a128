"""A colorizer's crops told of their scene (data.scene, pipeline.scene): the planes, the data, the
network, the command's tiles, and a colour that only the scene can tell."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.color import lab_to_rgb, rgb_to_lab
from pipeline.config import ConfigError, DataConfig, Params, from_dict
from pipeline.data.preprocess import tile_image
from pipeline.models.tiled import TiledNet
from pipeline.pixels import to_unit
from pipeline.registry import method_class
from pipeline.scene import PLANES, box_plane, colour, scene_of, thumbnail

from .test_colorize import TINY


def scene_params(scene="photo", family="regression_color"):
    data = {**TINY["data"], "scene": scene, "tile_scales": [4]}
    return from_dict(Params, {**TINY, "data": data, "model": {**TINY["model"], "family": family}})


def test_the_box_plane_is_the_share_of_each_pixel_the_crop_covers():
    plane = box_plane((0.25, 0.0, 0.5, 1 / 3), 8)  # rows 2-3, columns 0 to 2 2/3
    assert plane.dtype == np.uint8 and plane.shape == (8, 8)
    assert (plane[2:4, :2] == 255).all() and (plane[2:4, 2] == 170).all()
    assert plane[:2].sum() == 0 and plane[4:].sum() == 0 and plane[:, 3:].sum() == 0
    assert box_plane((0, 0, 1, 1), 4).min() == 255


def test_crops_carry_the_photo_thumbnail_and_their_box():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    plain = tile_image(photo, 10, 3, (1.0, 2.0))
    tiles = tile_image(photo, 10, 3, (1.0, 2.0), scene="photo")
    boxed = tile_image(photo, 10, 3, (1.0, 2.0), scene="box")
    assert len(tiles) == len(boxed) == len(plain) == 1 + 6
    assert tiles[0].shape == (5, 10, 10) and boxed[0].shape == (4, 10, 10)
    np.testing.assert_array_equal(colour(np.stack(tiles)), np.stack(plain))  # colours unchanged
    np.testing.assert_array_equal(np.stack(boxed), np.stack(tiles)[:, :4])  # the same boxes
    thumb = thumbnail(photo, 10)
    small = np.asarray(Image.fromarray(photo).resize((10, 10), Image.Resampling.BICUBIC))
    L = rgb_to_lab(torch.from_numpy(small.copy()).permute(2, 0, 1)[None].double() / 255)[0, 0]
    np.testing.assert_array_equal(thumb, (L * 2.55).round().numpy().astype(np.uint8))
    for tile in tiles:
        np.testing.assert_array_equal(tile[4], thumb)
    # scale 1: 10 x 15, one centred tile (columns 2 to 12 of 15); scale 2: 20 x 30, 2 x 3 tiles
    np.testing.assert_array_equal(tiles[0][3], box_plane((0, 2 / 15, 1, 12 / 15), 10))
    np.testing.assert_array_equal(tiles[6][3], box_plane((0.5, 2 / 3, 1, 1), 10))


def test_scene_is_for_colorizers_of_tiles():
    assert DataConfig(channels=3, fit="tiles", scene="photo").image_shape == (5, 28, 28)
    assert DataConfig(channels=3, fit="tiles", scene="box").image_shape == (4, 28, 28)
    with pytest.raises(ValueError, match="scene box needs fit 'tiles' and channels 3"):
        DataConfig(channels=3, fit="views", scene="box")
    with pytest.raises(ValueError, match="scene must be one of none, box, photo, got 'yes'"):
        DataConfig(channels=3, fit="tiles", scene="yes")
    with pytest.raises(ConfigError, match="data.scene photo tells a colorizer.*'ddpm' is not one"):
        scene_params(family="ddpm")


def test_the_unet_encodes_the_scene_into_every_block():
    net = method_class("regression_color").build_net(scene_params())
    x, t = torch.zeros(2, 2, 8, 8), torch.zeros(2, dtype=torch.long)
    cond = torch.rand(2, 1 + PLANES["photo"], 8, 8) * 2 - 1
    other = cond.clone()
    other[:, 1:] = -other[:, 1:]  # another scene, the same crop
    torch.manual_seed(0)
    for param in net.parameters():  # the zero-initialised layers too, so that a signal passes
        torch.nn.init.normal_(param, std=0.1)
    assert not torch.allclose(net(x, t, cond), net(x, t, other))
    torch.nn.init.zeros_(net.scene_enc.mlp[-1].weight)  # as built: the scene changes nothing
    torch.nn.init.zeros_(net.scene_enc.mlp[-1].bias)
    torch.testing.assert_close(net(x, t, cond), net(x, t, other))
    with pytest.raises(ValueError, match=r"cond_channels=1 \(\+ 2 scene planes\)"):
        net(x, t, None)


def test_the_command_tiles_a_photo_with_the_planes_its_crops_were_trained_on():
    seen = []

    def net(x, t, cond):
        seen.append(cond)
        return torch.zeros_like(x)

    photo = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    thumb = thumbnail(photo, 8)
    cond = torch.randn(1, 1, 12, 20)
    expected = to_unit(torch.from_numpy(box_plane((4 / 12, 4 / 20, 1, 12 / 20), 8)))
    for scene in ("box", "photo"):
        tiled = TiledNet(
            net, tile=8, stride=4, scene=scene, thumb=thumb if scene == "photo" else None
        )
        for _ in range(2):  # a second sampling step: the same planes (made once)
            tiled(torch.zeros(1, 2, 12, 20), torch.zeros(1), cond)
            tiles = seen.pop()  # spots (0, 0), (0, 4), ... (4, 12): 2 rows x 4 columns
            assert tiles.shape == (8, 1 + PLANES[scene], 8, 8)
            torch.testing.assert_close(tiles[5, :1], cond[..., 4:12, 4:12][0])
            torch.testing.assert_close(tiles[5, 1], expected)
        assert list(tiled.planes) == [(12, 20)]
    torch.testing.assert_close(
        tiles[0, 2], to_unit(torch.from_numpy(thumb))
    )  # photo: after the box
    whole = TiledNet(net, 8, 4, "box")  # narrower than a tile: one tile, the whole photo's box
    whole(torch.zeros(2, 2, 6, 20), torch.zeros(2), torch.randn(2, 1, 6, 20))
    torch.testing.assert_close(seen.pop()[:, 1], torch.ones(2, 6, 20))
    with pytest.raises(ValueError, match="a thumbnail is what scene photo adds, got scene 'box'"):
        TiledNet(net, 8, 4, "box", thumb)


def photo_of(top, bottom, size=32):
    """A uint8 photo whose top and bottom halves have the L*a*b* colours ``top`` and ``bottom``."""
    lab = torch.zeros(1, 3, size, size, dtype=torch.float64)
    lab[0, :, : size // 2] = torch.tensor(top, dtype=torch.float64)[:, None, None]
    lab[0, :, size // 2 :] = torch.tensor(bottom, dtype=torch.float64)[:, None, None]
    return (lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# Photos whose top halves are alike in lightness (L* 60) but blue above a dark ground (L* 20) and
# green above a bright one (L* 90): a crop of the top is told apart only by the whole photo.
TWO_GROUNDS = [photo_of((60, 0, -40), (20, 0, 0)), photo_of((60, -40, 30), (90, 0, 0))]
# A blue sky over green grass, both at L* 60: a crop is told apart only by where it sits.
SKY_OVER_GRASS = [photo_of((60, 0, -40), (60, -40, 30))]


def hue_and_chroma(out, photo):
    """Of the top half: the share of pixels within 45 degrees of the photo's hue, and the chroma
    relative to the photo's."""
    lab, truth = (rgb_to_lab(torch.from_numpy(p[: len(p) // 2]).permute(2, 0, 1)[None].double() / 255)
                  for p in (out, photo))  # fmt: skip
    error = torch.atan2(lab[:, 2], lab[:, 1]) - torch.atan2(truth[:, 2], truth[:, 1])
    error = torch.remainder(error + torch.pi, 2 * torch.pi) - torch.pi
    return float((error.abs() < torch.pi / 4).double().mean()), float(
        lab[:, 1:].norm(dim=1).mean() / truth[:, 1:].norm(dim=1).mean()
    )


@pytest.mark.parametrize(
    "scene, photos, learned",
    [("photo", TWO_GROUNDS, True), ("box", TWO_GROUNDS, False), ("none", TWO_GROUNDS, False),
     ("box", SKY_OVER_GRASS, True), ("none", SKY_OVER_GRASS, False)],
)  # fmt: skip
def test_a_colour_only_the_scene_tells_is_learned_with_the_scene_and_kept_by_the_command(
    scene, photos, learned
):
    from pipeline.photo import colorize_image

    p = scene_params(scene)
    crops = np.stack([t for photo in photos for t in tile_image(photo, 8, 3, (4.0,), scene)])
    batch = to_unit(crops)
    torch.manual_seed(0)
    method = method_class("regression_color")(p, torch.device("cpu"))
    method.prepare(lambda net: net)
    for step in range(60):
        method.train_step([batch], lr=2e-3, step=step)
    model = method.model(method.net)
    assert scene_of(crops).shape[1] == PLANES[scene]
    # the evaluate stage's path: crops (with their scene planes) as conditions, colours out
    out = model.sample(len(crops), generator=torch.Generator(), cond=model.cond(crops))
    assert out.shape == (len(crops), 3, 8, 8)
    error = (out - to_unit(colour(crops))).abs().mean()
    assert (error < 0.05) if learned else (error > 0.05), error
    for photo in photos:
        (out,) = colorize_image(model, photo, samples=1, draws=1, steps=1, scale=4.0,
                                generator=torch.Generator())  # fmt: skip
        right, chroma = hue_and_chroma(out, photo)
        if learned:
            assert right > 0.95 and chroma > 0.7, (right, chroma)
        else:  # the posterior mean of blue and green: the wrong hue or far too pale
            assert right < 0.5 or chroma < 0.5, (right, chroma)


def test_the_photos_outside_the_data_are_in_no_source_of_it():
    """benchmarks/colorize_photos.py's photos outside the data: no file of the shipped photo set
    comes from them (by name) or looks like them (16 x 16 gray thumbnails, mirrored too), the way
    four of scikit-image's photos once were counted as outside though they are training photos."""
    import csv
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench", root / "benchmarks/colorize_photos.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def thumb(path):
        gray = Image.open(path).convert("L").resize((16, 16), Image.Resampling.BICUBIC)
        return np.asarray(gray, dtype=np.float64)

    photos = root / "pipeline/data/photos"
    with open(photos / "index.csv", newline="") as f:
        sources = " ".join(" ".join(row) for row in csv.reader(f))
    shipped = [thumb(p) for p in sorted(photos.glob("*.jpg"))]
    assert len(shipped) > 400 and len(bench.OUTSIDE) >= 2
    for path in bench.OUTSIDE:
        assert path.name not in sources and path.stem not in {p.stem for p in photos.iterdir()}
        outside = thumb(path)
        nearest = min(min(np.abs(outside - s).mean(), np.abs(outside[:, ::-1] - s).mean())
                      for s in shipped)  # fmt: skip
        assert nearest > 10, (path, nearest)  # gray levels: a recompressed copy is within 2
