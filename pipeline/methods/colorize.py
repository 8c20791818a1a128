"""Colorization families: P(ab | L*) of a colour image in CIE Lab (pipeline.color).

``ddpm_color``: a conditional DDPM (Palette, Saharia et al. 2022; SR3's concatenation): the UNet
sees the noisy ab target x_t (2 channels) concatenated with the condition L* / 50 - 1 and predicts
what ``diffusion.prediction_type`` says; every schedule, prediction type and loss weight of the
unconditional model applies. ``regression_color``: Palette's regression baseline, the same UNet
trained with L2 to predict ab in one step (its noisy input held at zero, t = 0).
``classify_color``: the same one-step UNet predicting a distribution over the ab bins, trained
with cross-entropy and decoded by the annealed mean (Zhang et al. 2016; pipeline.ab_bins).

With ``data.scene`` each training crop also carries its box on the photo (and with ``photo`` the
photo's thumbnail; pipeline.scene): the condition is L* followed by these planes, which the UNet
encodes into one global feature (pipeline.models.unet.SceneEncoder), and the colorize command
tiles a photo with the same planes made from it (``ColorizerModel.on_tiles``).

Both sample images in [-1, 1] RGB: the condition's own L* with the predicted ab, chroma reduced
into the sRGB gamut at constant L* (``pipeline.color.colorized``), so outputs keep their input's
lightness exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.ab_bins import ab_bins, annealed_mean, soft_encode
from pipeline.color import AB_SCALE, colorized, grayed, lightness, split_lab
from pipeline.config import Params
from pipeline.data.degrade import degrade
from pipeline.diffusion import GaussianDiffusion
from pipeline.methods.base import DEFAULT_SAMPLING, References, Sampling, Signature, TensorSpec
from pipeline.methods.ddpm import DDPM, DDPMModel, build_unet
from pipeline.models.tiled import TiledNet
from pipeline.pixels import to_unit
from pipeline.scene import PLANES, colour, scene_of

AB_CHANNELS, L_CHANNELS = 2, 1


def cond_planes(params: Params) -> int:
    """Planes of a colorizer's condition: L*, then the scene's with ``data.scene``."""
    return L_CHANNELS + PLANES[params.data.scene]


class ColorizerModel(DDPMModel):
    """A trained colorizer: ``sample(n, cond=L)`` colorizes n conditions (n, P, H, W) =
    ``condition(rgb)`` (P = ``cond_width``: ``cond_planes``, or L* alone for the model
    ``on_tiles`` gives). ``predict({"x_t": (B, 2, H, W), "t": (B,), "cond": (B, P, H, W)})`` is
    the network's output."""

    def __init__(
        self,
        net: nn.Module,
        params: Params,
        diffusion: GaussianDiffusion | None = None,
        cond_width: int | None = None,
    ) -> None:
        super().__init__(net, params, diffusion)
        self.cond_width = cond_planes(params) if cond_width is None else cond_width

    def on_tiles(self, stride: int, thumb: np.ndarray | None = None) -> ColorizerModel:
        """This colorizer on any H, W as overlapping tiles of its crop size every ``stride`` px
        (pipeline.models.tiled), each tile told of its scene (``data.scene``; ``thumb``, the
        photo's ``pipeline.scene.thumbnail``, for ``photo``) as each training crop was: its
        condition is L* alone, the tiles add the scene planes."""
        scene, crop = self.params.data.scene, self.params.data.image_size
        tiled = TiledNet(self.net, tile=crop, stride=stride, scene=scene, thumb=thumb)
        return type(self)(tiled, self.params, self.diffusion, cond_width=L_CHANNELS)

    def conditions(self, n: int, references: References) -> np.ndarray:
        """``n`` real images (uint8), to colorize from their lightness."""
        return references(n)

    def cond(self, conditions: np.ndarray) -> torch.Tensor:
        return self.condition(to_unit(conditions).to(self.device))

    def condition(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N, 3 [+ scene planes], H, W) -> L* / 50 - 1 of the colour planes,
        with ``data.scene`` followed by the scene planes."""
        planes = [lightness(colour(images))]
        if self.params.data.scene != "none":
            planes.append(scene_of(images).float())
        return torch.cat(planes, dim=1)

    def panel(self, samples: torch.Tensor, conditions: np.ndarray) -> tuple[torch.Tensor, int]:
        """Triptychs gray | colorized | truth, one per reference image (``conditions``), two to a
        row; with K samples per reference (``samples`` of K n images, reference-major),
        gray | K colorized | truth."""
        references = colour(to_unit(conditions)).to(samples)
        n = len(references)
        k = len(samples) // n
        gray = grayed(references)
        rows = torch.cat([gray[:, None], samples.reshape(n, k, *samples.shape[1:]),
                          references[:, None]], dim=1)  # fmt: skip
        return rows.flatten(0, 1), (k + 2) * (2 if n > 1 else 1)

    def _check(self, n: int, cond: torch.Tensor | None) -> torch.Tensor:
        """``cond`` (n, ``cond_width``, H, W) on the model's device; any H, W (the UNet is
        convolutional: the colorize command runs it on whole photos or, ``on_tiles``, on their
        tiles)."""
        planes = self.cond_width
        if cond is None or cond.ndim != 4 or tuple(cond.shape[:2]) != (n, planes):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(
                f"a colorizer samples from cond of shape ({n}, {planes}, H, W) (lightness"
                f"{', scene' if planes > L_CHANNELS else ''}), got {got}"
            )
        return cond.to(self.device)

    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """The colour image after each reverse step: cond's L* with the current ab state x_t."""
        cond = self._check(n, cond)
        shape = (n, AB_CHANNELS, *cond.shape[2:])
        for step in self.diffusion.sample_progressive(
            self.net, shape, how.steps, how.sampler, how.eta, cond, generator
        ):
            yield colorized(cond[:, :L_CHANNELS], step.x)

    def predict(self, inputs: Mapping[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        x_t, t, cond = (torch.as_tensor(np.asarray(inputs[k])) for k in ("x_t", "t", "cond"))
        with torch.no_grad():
            return self.net(x_t.float(), t.long(), cond.float()).numpy()

    def signature(self) -> Signature:
        s = self.params.data.image_size
        return Signature(
            [
                TensorSpec("float32", (-1, AB_CHANNELS, s, s), "x_t"),
                TensorSpec("int64", (-1,), "t"),
                TensorSpec("float32", (-1, cond_planes(self.params), s, s), "cond"),
            ],
            [TensorSpec("float32", (-1, self.net.out_channels, s, s))],
        )

    def input_example(self) -> dict[str, np.ndarray]:
        """Pure-noise ab at the last timestep on a mid-gray condition."""
        s = self.params.data.image_size
        rng = np.random.default_rng(0)
        return {
            "x_t": rng.standard_normal((1, AB_CHANNELS, s, s)).astype(np.float32),
            "t": np.array([self.params.diffusion.timesteps - 1], dtype=np.int64),
            "cond": np.zeros((1, cond_planes(self.params), s, s), dtype=np.float32),
        }


class RegressionModel(ColorizerModel):
    """The regression baseline: ab = net(0, 0, cond) in one network call (no sampling noise)."""

    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        cond = self._check(n, cond)
        yield colorized(cond[:, :L_CHANNELS], regress(self.net, cond))


def regress(net: nn.Module, cond: torch.Tensor) -> torch.Tensor:
    """The regression baseline's ab (first AB_CHANNELS outputs) for conditions (B, 1, H, W)."""
    return one_pass(net, cond)[:, :AB_CHANNELS]


class ClassifyModel(ColorizerModel):
    """The classification colorizer: ab = the annealed mean of the network's logits over the ab
    bins (pipeline.ab_bins), in one network call."""

    def sample_progressive(
        self,
        n: int,
        *,
        generator: torch.Generator,
        how: Sampling = DEFAULT_SAMPLING,
        cond: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        cond = self._check(n, cond)
        ab = annealed_mean(one_pass(self.net, cond), ab_bins()) / AB_SCALE
        yield colorized(cond[:, :L_CHANNELS], ab)


def one_pass(net: nn.Module, cond: torch.Tensor) -> torch.Tensor:
    """The network's output for conditions (B, P, H, W) with its noisy input held at zero, t = 0:
    a one-step colorizer's call."""
    zeros = cond.new_zeros(cond.shape[0], AB_CHANNELS, *cond.shape[2:])
    return net(zeros, cond.new_zeros(cond.shape[0], dtype=torch.long), cond)


class DDPMColor(DDPM):
    """The conditional DDPM colorizer: DDPM's training on (x0 = ab, cond = L*) pairs."""

    family = "ddpm_color"
    model_class = ColorizerModel

    @classmethod
    def build_net(cls, params: Params) -> nn.Module:
        return build_unet(
            params,
            in_channels=AB_CHANNELS,
            cond_channels=L_CHANNELS,
            scene_channels=PLANES[params.data.scene],
            out_channels=cls.output_channels(),
        )

    @staticmethod
    def output_channels() -> int | None:
        """The network's output width: None for the UNet's own (the ab it denoises)."""
        return None

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB images in [-1, 1] (with ``data.scene`` followed by their scene planes) ->
        (ab / AB_SCALE, the condition: L* / 50 - 1 [, scene planes]), L* degraded as an old
        print's by ``train.degrade`` (pipeline.data.degrade; the target ab stays the clean
        photo's)."""
        condition, ab = split_lab(colour(batch))
        config = self.params.train.degrade
        if config.active:
            condition = degrade((condition + 1) * 50, **dataclasses.asdict(config)) / 50 - 1
        return ab, torch.cat([condition, scene_of(batch)], dim=1)


class RegressionColor(DDPMColor):
    """The regression baseline's training: mean squared error of ``regress`` against the true ab
    (Palette's L2 regression baseline), with DDPM's optimiser, precision and clipping."""

    family = "regression_color"
    model_class = RegressionModel

    def train_step(
        self, micro_batches: Sequence[torch.Tensor], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        def loss_terms(net: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
            ab, condition = self.split(batch)
            return {"loss": F.mse_loss(regress(net, condition).float(), ab)}

        return self.optimize(loss_terms, micro_batches, lr)


class ClassifyColor(DDPMColor):
    """The classification colorizer's training (Zhang et al. 2016): cross-entropy of the network's
    logits over the ab bins against the soft encoding of the true ab (pipeline.ab_bins; logged as
    the KL divergence, which differs by the targets' entropy and is 0 at a perfect fit), on the
    same UNet, data, optimiser and precision as the regression baseline; it predicts the
    distribution of colours, so that its annealed mean keeps a likely hue where an L2 estimate
    averages rival hues to brown."""

    family = "classify_color"
    model_class = ClassifyModel

    @staticmethod
    def output_channels() -> int:
        """One logit per ab bin."""
        return len(ab_bins())

    def train_step(
        self, micro_batches: Sequence[torch.Tensor], *, lr: float, step: int
    ) -> dict[str, torch.Tensor]:
        def loss_terms(net: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
            ab, condition = self.split(batch)
            target = soft_encode(ab * AB_SCALE, ab_bins().to(ab.device))
            log_p = torch.log_softmax(one_pass(net, condition).float(), dim=1)
            # KL(Z || p): the cross-entropy less Z's own entropy (same gradient), 0 at a perfect fit
            return {"loss": (torch.xlogy(target, target) - target * log_p).sum(1).mean()}

        return self.optimize(loss_terms, micro_batches, lr)
