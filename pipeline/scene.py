"""The scene a crop comes from: what a colorizer trained on crops is told of the whole photo.

A crop of smooth mid-gray is sky, water, a wall or a road depending on where it sits and what
surrounds it. Iizuka, Simo-Serra and Ishikawa (2016, section 3) fuse a global feature vector of the
whole image into every position of the local features; here the crop's place in the photo and,
with ``data.scene: photo``, the whole photo are planes of the crop's size S, made the same way when
the crops are preprocessed and when the colorize command tiles a photo:

- the box (``scene: box`` and ``photo``): the share of each pixel of the photo squeezed to S x S
  that the crop covers, as uint8 (255: inside);
- the thumbnail (``scene: photo``): the whole photo resized to S x S (bicubic, antialiased; aspect
  not kept), its CIE L* quantised to uint8 as round(2.55 L*), so that plane / 127.5 - 1 =
  L* / 50 - 1, the condition's own units (``pipeline.color.lightness``).

A crop's stored image is then its RGB (3 planes) followed by these ``PLANES[scene]`` planes;
``colour`` gives back the RGB of such an image (and leaves images without scene planes as they
are), ``scene_of`` its scene planes. Measured (benchmarks/README.md, "crops told of their scene"): the box alone
helps on new photos; the thumbnail lets a model learn its 368 training scenes by heart.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipeline.color import lightness
from pipeline.pixels import to_unit

PLANES = {"none": 0, "box": 1, "photo": 2}  # data.scene -> its planes: box [, thumbnail L*]
SCENES = tuple(PLANES)  # data.scene
COLOUR_PLANES = 3  # RGB: the planes before the scene's


def colour(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The colour planes of (N, C, H, W) images: the first three of a crop with scene planes
    (C = 3 + PLANES[scene]), all of any other image (a view, not a copy)."""
    return images[:, :COLOUR_PLANES]


def scene_of(images: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The scene planes of (N, C, H, W) images ((N, 0, H, W) for images without)."""
    return images[:, COLOUR_PLANES:]


def thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """A uint8 RGB photo (H, W, 3) -> its L* at size x size, uint8 (size, size) = round(2.55 L*)."""
    small = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))
    L = (lightness(to_unit(small.transpose(2, 0, 1)[None].copy())).double() + 1) * 50
    return (L[0, 0] * 2.55).round().clamp(0, 255).to(torch.uint8).numpy()


def coverage(start: float, stop: float, size: int) -> np.ndarray:
    """The share of each of ``size`` unit cells of [0, size) inside [start, stop) x size, with
    start, stop in [0, 1]: (size,) in [0, 1]."""
    cells = np.arange(size, dtype=np.float64)
    return np.clip(np.minimum(cells + 1, stop * size) - np.maximum(cells, start * size), 0, 1)


def box_plane(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """The crop (top, left, bottom, right, each a share of the photo's height or width) on the
    size x size thumbnail: the share of each pixel it covers, uint8 (size, size) = round(255 x)."""
    top, left, bottom, right = box
    share = coverage(top, bottom, size)[:, None] * coverage(left, right, size)[None, :]
    return np.round(255 * share).astype(np.uint8)


def scene_planes(
    window: tuple[int, int, int, int],
    photo: tuple[int, int],
    size: int,
    thumb: np.ndarray | None = None,
) -> np.ndarray:
    """A crop's scene planes, uint8 (P, size, size): the ``box_plane`` of its ``window`` (top,
    left, bottom, right, in pixels) on a photo of ``photo`` (height, width) pixels, then the
    photo's ``thumbnail`` where one is given (``scene: photo``)."""
    (top, left, bottom, right), (height, width) = window, photo
    box = (top / height, left / width, bottom / height, right / width)
    return np.stack([box_plane(box, size), *([] if thumb is None else [thumb])])
