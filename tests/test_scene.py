"""A colorizer's crops told of their scene (data.scene, pipeline.scene): the planes, the data, the
network, the command's tiles, and a colour that only the scene can tell."""

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
from pipeline.scene import SCENE_PLANES, box_plane, colour, scene_of, thumbnail

from .test_colorize import TINY


def scene_params(scene=True, family="regression_color"):
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
    tiles = tile_image(photo, 10, 3, (1.0, 2.0), scene=True)
    assert len(tiles) == len(plain) == 1 + 6 and tiles[0].shape == (3 + SCENE_PLANES, 10, 10)
    np.testing.assert_array_equal(colour(np.stack(tiles)), np.stack(plain))  # colours unchanged
    thumb = thumbnail(photo, 10)
    small = np.asarray(Image.fromarray(photo).resize((10, 10), Image.Resampling.BICUBIC))
    L = rgb_to_lab(torch.from_numpy(small.copy()).permute(2, 0, 1)[None].double() / 255)[0, 0]
    np.testing.assert_array_equal(thumb, (L * 2.55).round().numpy().astype(np.uint8))
    for tile in tiles:
        np.testing.assert_array_equal(tile[3], thumb)
    # scale 1: 10 x 15, one centred tile (columns 2 to 12 of 15); scale 2: 20 x 30, 2 x 3 tiles
    np.testing.assert_array_equal(tiles[0][4], box_plane((0, 2 / 15, 1, 12 / 15), 10))
    np.testing.assert_array_equal(tiles[6][4], box_plane((0.5, 2 / 3, 1, 1), 10))


def test_scene_is_for_colorizers_of_tiles():
    assert DataConfig(channels=3, fit="tiles", scene=True).image_shape == (5, 28, 28)
    with pytest.raises(ValueError, match="scene: true needs fit 'tiles' and channels 3"):
        DataConfig(channels=3, fit="views", scene=True)
    with pytest.raises(ConfigError, match="data.scene conditions a colorizer.*'ddpm' is not one"):
        scene_params(family="ddpm")


def test_the_unet_encodes_the_scene_into_every_block():
    net = method_class("regression_color").build_net(scene_params())
    x, t = torch.zeros(2, 2, 8, 8), torch.zeros(2, dtype=torch.long)
    cond = torch.rand(2, 1 + SCENE_PLANES, 8, 8) * 2 - 1
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
    thumb = to_unit(torch.from_numpy(thumbnail(photo, 8))[None, None])
    tiled = TiledNet(net, tile=8, stride=4, thumb=thumb)
    cond = torch.randn(1, 1, 12, 20)
    tiled(torch.zeros(1, 2, 12, 20), torch.zeros(1), cond)
    (tiles,) = seen  # spots (0, 0), (0, 4), ... (4, 12): 2 rows x 4 columns
    assert tiles.shape == (8, 3, 8, 8)
    torch.testing.assert_close(tiles[5, :1], cond[..., 4:12, 4:12][0])
    torch.testing.assert_close(tiles[:, 1:2], thumb.expand(8, 1, 8, 8))
    expected = to_unit(torch.from_numpy(box_plane((4 / 12, 4 / 20, 1, 12 / 20), 8)))
    torch.testing.assert_close(tiles[5, 2], expected)


def two_scenes(size=32):
    """Photos whose top halves are alike in lightness (L* 60) but blue above a dark ground (L* 20)
    and green above a bright one (L* 90): a crop of the top is told apart only by its scene."""
    photos = []
    for a, b, ground in ((0.0, -40.0, 20.0), (-40.0, 30.0, 90.0)):
        lab = torch.zeros(1, 3, size, size, dtype=torch.float64)
        lab[:, 0, : size // 2], lab[:, 1, : size // 2], lab[:, 2, : size // 2] = 60, a, b
        lab[:, 0, size // 2 :] = ground
        photos.append((lab_to_rgb(lab)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return photos


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


@pytest.mark.parametrize("scene", [True, False])
def test_a_colour_only_the_scene_tells_is_learned_with_the_scene_and_kept_by_the_command(scene):
    from pipeline.photo import colorize_image

    p = scene_params(scene)
    photos = two_scenes()
    crops = np.stack([t for photo in photos for t in tile_image(photo, 8, 3, (4.0,), scene)])
    batch = to_unit(crops)
    torch.manual_seed(0)
    method = method_class("regression_color")(p, torch.device("cpu"))
    method.prepare(lambda net: net)
    for step in range(150):
        method.train_step([batch], lr=2e-3, step=step)
    model = method.model(method.net)
    assert scene_of(crops).shape[1] == (SCENE_PLANES if scene else 0)
    # the evaluate stage's path: crops (with their scene planes) as conditions, colours out
    out = model.sample(len(crops), generator=torch.Generator(), cond=model.cond(crops))
    assert out.shape == (len(crops), 3, 8, 8)
    error = (out - to_unit(colour(crops))).abs().mean()
    assert (error < 0.05) if scene else (error > 0.05), error
    for photo in photos:
        (out,) = colorize_image(model, photo, samples=1, draws=1, steps=1, scale=4.0,
                                generator=torch.Generator())  # fmt: skip
        right, chroma = hue_and_chroma(out, photo)
        if scene:
            assert right > 0.95 and chroma > 0.7, (right, chroma)
        else:  # the posterior mean of blue and green: the wrong hue or far too pale
            assert right < 0.5 or chroma < 0.5, (right, chroma)
