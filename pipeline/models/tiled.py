"""A convolutional network run on overlapping tiles of the size it was trained on, its outputs
blended where tiles overlap (MultiDiffusion, Bar-Tal et al. 2023, eq. 3-5: at every denoising step
the predictions on overlapping crops are averaged, so one global x_t stays consistent).

Why: a UNet with self-attention trained on 32 px crops attends over 8 x 8 positions; run on a
whole photo it attends over hundreds, a context it never saw. On the colorizer's test photos the
whole-photo output was nearly gray with no right hue, while the same model run crop by crop gave
twice the chroma and 13-33% right hue (docs/colorization.md).

A network whose condition ends in scene planes (``data.scene``, pipeline.scene) is told, tile by
tile, where the tile sits in the photo (and with ``photo`` the photo's thumbnail), as each
training crop was.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.pixels import to_unit
from pipeline.scene import scene_planes

TILE_BATCH = 64  # tiles per network call: bounds activation memory whatever the image size


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Offsets of tiles of ``tile`` every ``stride`` along a side of ``size`` >= ``tile``, the last
    one flush with the end."""
    starts = list(range(0, size - tile + 1, stride))
    return starts if starts[-1] == size - tile else [*starts, size - tile]


def blend_window(tile: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(tile, tile) weights, highest in the middle and positive at the border (a tent), so that
    overlapping tiles fade into each other without seams."""
    ramp = torch.minimum(torch.arange(1, tile + 1), torch.arange(tile, 0, -1)).to(dtype)
    return (ramp[:, None] * ramp[None, :]).to(device)


def crops(z: torch.Tensor, spots: list[tuple[int, int]], tile: int) -> torch.Tensor:
    """(B, C, H, W) -> (len(spots) * B, C, tile, tile): the tiles at ``spots``, spot-major."""
    return torch.cat([z[..., i : i + tile, j : j + tile] for i, j in spots])


def with_scene(tiles: torch.Tensor | None, planes: torch.Tensor | None) -> torch.Tensor | None:
    """Tiles' conditions (S * B, C, h, w), spot-major (``crops``), each followed by its spot's
    scene planes (S, P, k, k) in condition units, resized to h x w where the tiles are not k x k
    (a photo smaller than one tile); the conditions alone without ``planes``."""
    if tiles is None or planes is None:
        return tiles
    planes = planes.to(tiles)
    if planes.shape[-2:] != tiles.shape[-2:]:
        planes = F.interpolate(planes, size=tiles.shape[-2:], mode="bilinear", antialias=True)
    return torch.cat([tiles, planes.repeat_interleave(len(tiles) // len(planes), dim=0)], dim=1)


class TiledNet(nn.Module):
    """``net(x, t, cond)`` on (B, C, H, W) inputs as tiles of ``tile`` px every ``stride`` px,
    outputs blended by ``blend_window``; an input smaller than one tile goes through whole. With a
    ``scene`` (``data.scene``) each tile's condition is followed by its scene planes
    (``pipeline.scene.scene_planes``; ``thumb``, the uint8 thumbnail of the photo the input shows,
    for ``photo``), made once per input size."""

    def __init__(
        self,
        net: nn.Module,
        tile: int,
        stride: int,
        scene: str = "none",
        thumb: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if (thumb is not None) != (scene == "photo"):
            raise ValueError(f"a thumbnail is what scene photo adds, got scene {scene!r}")
        self.net, self.tile, self.stride, self.scene, self.thumb = net, tile, stride, scene, thumb
        self.planes: dict[tuple[int, int], torch.Tensor] = {}  # per input size (H, W)

    def scene_of(
        self, size: tuple[int, int], windows: list[tuple[int, int, int, int]]
    ) -> torch.Tensor | None:
        """The scene planes (S, P, tile, tile) in condition units of the tiles at ``windows``
        (top, left, bottom, right) of an input of ``size`` (H, W); None without a scene. The
        windows are a function of the size, so the planes are made at the first sampling step
        and reused at every later one."""
        if self.scene == "none":
            return None
        if size not in self.planes:
            planes = [scene_planes(window, size, self.tile, self.thumb) for window in windows]
            self.planes[size] = to_unit(torch.from_numpy(np.stack(planes)))
        return self.planes[size]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        h, w, tile = x.shape[-2], x.shape[-1], self.tile
        if h < tile or w < tile:  # the whole input is the one tile
            return self.net(x, t, with_scene(cond, self.scene_of((h, w), [(0, 0, h, w)])))
        spots = [(i, j) for i in tile_starts(h, tile, self.stride)
                 for j in tile_starts(w, tile, self.stride)]  # fmt: skip
        scene = self.scene_of((h, w), [(i, j, i + tile, j + tile) for i, j in spots])
        window = blend_window(tile, x.dtype, x.device)
        out, total = None, torch.zeros(h, w, dtype=x.dtype, device=x.device)
        for first in range(0, len(spots), TILE_BATCH):
            chunk, last = spots[first : first + TILE_BATCH], first + TILE_BATCH
            tiles = None if cond is None else crops(cond, chunk, tile)
            y = self.net(crops(x, chunk, tile), t.repeat(len(chunk)),
                         with_scene(tiles, None if scene is None else scene[first:last]))  # fmt: skip
            if out is None:
                out = x.new_zeros(x.shape[0], y.shape[1], h, w)
            for k, (i, j) in enumerate(chunk):  # y: (len(chunk) * B, C', tile, tile)
                out[..., i : i + tile, j : j + tile] += (
                    y[k * x.shape[0] : (k + 1) * x.shape[0]] * window
                )
                total[i : i + tile, j : j + tile] += window
        return out / total
