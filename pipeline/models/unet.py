"""The denoising UNet eps_theta(x_t, t [, cond]) of DDPM (Ho et al. 2020, appendix B).

Sinusoidal time embedding -> MLP; residual blocks with GroupNorm whose second norm is modulated by
the time embedding (scale-shift, improved DDPM / Dhariwal & Nichol 2021); multi-head self-attention
at chosen feature-map sizes and in the bottleneck; strided-conv down- and nearest up-sampling.
Image conditioning (colorization: the grayscale image) is concatenated to x_t on the channel axis;
scene conditioning (a colorizer's crop: the whole photo and the crop's place in it,
pipeline.scene) is encoded to one vector added to the time embedding, so that every block is
modulated by it (Iizuka et al. 2016's fusion of global features into every position); class
conditioning adds a learned class embedding to the time embedding (classifier-free guidance,
Ho and Salimans 2022: one extra row, index ``num_classes``, is the null class). With a learned
variance the output has twice the image channels (improved DDPM section 3.1).
Any H = W works: up-sampling restores the exact size of the matching skip connection (28 -> 14 -> 7
-> 4 -> 7 -> 14 -> 28).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn


class Architecture(Protocol):
    """What the UNet reads of params.yaml's ``model`` section (pipeline.config.ModelConfig): a
    Protocol, so that the network does not import the config, which imports it (to check
    attention_resolutions against the image size)."""

    @property
    def base_channels(self) -> int: ...
    @property
    def channel_mult(self) -> tuple[int, ...]: ...
    @property
    def num_res_blocks(self) -> int: ...
    @property
    def attention_resolutions(self) -> tuple[int, ...]: ...
    @property
    def mid_attention(self) -> bool: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def dropout(self) -> float: ...


MAX_PERIOD = 10_000  # sinusoidal embedding's longest wavelength (Vaswani et al. 2017, section 3.5)
MAX_GROUPS = 32  # GroupNorm groups at most (DDPM)
MIN_CHANNELS_PER_GROUP = 4  # fewer groups at small widths so each normalises several channels
SCENE_GRID = 4  # the scene encoder's last feature map: SCENE_GRID x SCENE_GRID positions


def feature_sizes(image_size: int, levels: int) -> list[int]:
    """Feature-map size at each level: a stride-2 conv with padding 1 maps s to ceil(s / 2)."""
    sizes = [image_size]
    for _ in range(levels - 1):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def check_attention_resolutions(config: Architecture, image_size: int) -> None:
    """Raise ValueError if an attention resolution is not a feature-map size of the network, or
    num_heads does not divide the channels there."""
    sizes = feature_sizes(image_size, len(config.channel_mult))
    for res in config.attention_resolutions:
        if res not in sizes:
            raise ValueError(
                f"attention_resolutions contains {res}, but at image_size {image_size} with "
                f"channel_mult {list(config.channel_mult)} the feature maps are {sizes}"
            )
    attended = [
        m
        for s, m in zip(sizes, config.channel_mult, strict=True)
        if s in config.attention_resolutions
    ]
    if config.mid_attention:
        attended.append(config.channel_mult[-1])
    for mult in attended:
        if (config.base_channels * mult) % config.num_heads:
            raise ValueError(
                f"num_heads={config.num_heads} does not divide {config.base_channels * mult} "
                f"channels (base_channels {config.base_channels} x channel_mult {mult})"
            )


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels each (a divisor of ``channels``)."""
    groups = math.gcd(channels, max(1, min(MAX_GROUPS, channels // MIN_CHANNELS_PER_GROUP)))
    return nn.GroupNorm(groups, channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so that a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [cos(t w_i), sin(t w_i)], w_i = MAX_PERIOD^(-i / (dim/2)): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, device=t.device) / half)  # (half,)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    return F.pad(emb, (0, dim % 2))  # (B, dim)


class ResBlock(nn.Module):
    """x + conv(drop(act(norm(conv(act(norm(x)))) * (1 + scale) + shift))), scale/shift from emb."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        scale, shift = self.emb_proj(F.silu(emb))[:, :, None, None].chunk(
            2, dim=1
        )  # (B, out, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (B, nh, H*W, hs)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, H*W, hs)
        out = out.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(out)


class SceneEncoder(nn.Module):
    """Scene planes (B, P, S, S) -> a global feature (B, emb_dim): stride-2 convolutions down to
    at most SCENE_GRID px, average-pooled to SCENE_GRID x SCENE_GRID (any S works) and flattened,
    so that where things are in the photo is kept (Iizuka et al. 2016, section 3.2: convolutions,
    then fully connected layers), then an MLP whose last layer starts at zero (a new scene input
    changes nothing until trained)."""

    def __init__(self, planes: int, base: int, emb_dim: int, image_size: int) -> None:
        super().__init__()
        layers, ch = [], planes
        for _ in range(max(1, math.ceil(math.log2(max(1, image_size / SCENE_GRID))))):
            layers += [nn.Conv2d(ch, base, 3, stride=2, padding=1), nn.SiLU()]
            ch = base
        self.convs = nn.Sequential(*layers)
        self.mlp = nn.Sequential(
            nn.Linear(base * SCENE_GRID**2, emb_dim),
            nn.SiLU(),
            zero_init(nn.Linear(emb_dim, emb_dim)),
        )

    def forward(self, scene: torch.Tensor) -> torch.Tensor:
        h = F.adaptive_avg_pool2d(self.convs(scene), SCENE_GRID)  # (B, base, G, G)
        return self.mlp(h.flatten(1))


class Level(nn.Module):
    """The residual (+ attention) blocks of one resolution level."""

    def __init__(
        self, in_chs: list[int], out_ch: int, emb_dim: int, dropout: float, heads: int | None
    ):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, out_ch, emb_dim, dropout) for c in in_chs)
        self.attn = nn.ModuleList(
            SelfAttention(out_ch, heads) if heads else nn.Identity() for _ in in_chs
        )


class UNet(nn.Module):
    """eps_theta(x_t, t [, cond]) -> (B, out_channels, H, W).

    Args:
        config: the architecture (params.yaml ``model`` section).
        image_size: H = W of the images.
        in_channels: image channels C (1 grayscale, 3 RGB).
        cond_channels: channels of a conditioning image concatenated to x_t (0: none).
        scene_channels: planes after those of ``cond`` that describe the scene (``SceneEncoder``).
        num_classes: classes of a class-conditional UNet (0: none); ``cond`` is then the labels
            (B,) in [0, num_classes], num_classes being the null class.
        learned_variance: output 2C channels (mean part, variance interpolation part).
        out_channels: output channels other than these (a colorizer's logits over ab bins).
    """

    def __init__(
        self,
        config: Architecture,
        *,
        image_size: int,
        in_channels: int,
        cond_channels: int = 0,
        scene_channels: int = 0,
        num_classes: int = 0,
        learned_variance: bool = False,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_attention_resolutions(config, image_size)
        if cond_channels and num_classes:
            raise ValueError("a UNet takes an image condition or a class label, not both")
        self.config, self.image_size = config, image_size
        if scene_channels and not cond_channels:
            raise ValueError("a UNet's scene planes come after an image condition's")
        self.in_channels, self.cond_channels = in_channels, cond_channels
        self.scene_channels = scene_channels
        self.num_classes = num_classes
        self.out_channels = out_channels or in_channels * (2 if learned_variance else 1)
        base, emb_dim = config.base_channels, 4 * config.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.scene_enc = (
            SceneEncoder(scene_channels, base, emb_dim, image_size) if scene_channels else None
        )
        self.conv_in = nn.Conv2d(in_channels + cond_channels, base, 3, padding=1)
        # built in this order: the order the initialisation draws its random numbers in
        skip_chs = self._down_path(emb_dim)
        ch = skip_chs[-1]
        self.mid_res1 = ResBlock(ch, ch, emb_dim, config.dropout)
        self.mid_attn = (
            SelfAttention(ch, config.num_heads) if config.mid_attention else nn.Identity()
        )
        self.mid_res2 = ResBlock(ch, ch, emb_dim, config.dropout)
        ch = self._up_path(emb_dim, skip_chs)
        self.norm_out = group_norm(ch)
        self.conv_out = zero_init(nn.Conv2d(ch, self.out_channels, 3, padding=1))

    def _levels(self) -> list[tuple[int, int, int | None]]:
        """Each level's feature-map size, width and attention heads (None: no attention)."""
        config = self.config
        sizes = feature_sizes(self.image_size, len(config.channel_mult))
        return [
            (size, config.base_channels * m,
             config.num_heads if size in config.attention_resolutions else None)
            for size, m in zip(sizes, config.channel_mult, strict=True)
        ]  # fmt: skip

    def _down_path(self, emb_dim: int) -> list[int]:
        """Each level's blocks, then a stride-2 conv; every output is kept as a skip. Returns the
        skips' channels (the last: the bottleneck's)."""
        config = self.config
        skip_chs, ch = [config.base_channels], config.base_channels
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        levels = self._levels()
        for i, (_, width, heads) in enumerate(levels):
            in_chs = [ch] + [width] * (config.num_res_blocks - 1)
            self.down.append(Level(in_chs, width, emb_dim, config.dropout, heads))
            skip_chs += [width] * config.num_res_blocks
            ch = width
            if i < len(levels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_chs.append(ch)
        return skip_chs

    def _up_path(self, emb_dim: int, skip_chs: list[int]) -> int:
        """num_res_blocks + 1 blocks per level, each taking one skip (popped from ``skip_chs``);
        then up-sample. Returns the channels out."""
        config, ch = self.config, skip_chs[-1]
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        levels = self._levels()
        for i in reversed(range(len(levels))):
            _, width, heads = levels[i]
            in_chs = []
            for _ in range(config.num_res_blocks + 1):
                in_chs.append(ch + skip_chs.pop())
                ch = width
            self.up.append(Level(in_chs, width, emb_dim, config.dropout, heads))
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        return ch

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: (B, C, H, W) noisy images; t: (B,) or scalar timesteps; cond: (B, C_cond, H, W) of an
        image-conditioned UNet (its last ``scene_channels`` planes the scene's), (B,) labels of a
        class-conditional one."""
        scene = None
        if self.scene_enc is not None and cond is not None:
            cond, scene = cond[:, : -self.scene_channels], cond[:, -self.scene_channels :]
        if (cond is None) != (self.cond_channels == 0 and self.num_classes == 0):
            planes = f" (+ {self.scene_channels} scene planes)" if self.scene_channels else ""
            raise ValueError(
                f"this UNet takes cond_channels={self.cond_channels}{planes}, num_classes="
                f"{self.num_classes}; got cond={'None' if cond is None else tuple(cond.shape)}"
            )
        if self.cond_channels:
            x = torch.cat([x, cond], dim=1)  # (B, C + C_cond, H, W)
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))  # (B, 4 base)
        if self.class_emb is not None:
            emb = emb + self.class_emb(cond)  # (B, 4 base)
        if scene is not None:
            emb = emb + self.scene_enc(scene)  # (B, 4 base)

        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(h, emb))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)

        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn, strict=True):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))
            if i < len(self.upsample):
                size = skips[-1].shape[
                    -2:
                ]  # the next level's skip fixes the size (7 -> 14, 4 -> 7)
                h = self.upsample[i](F.interpolate(h, size=size, mode="nearest"))

        return self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)
