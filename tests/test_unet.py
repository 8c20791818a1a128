"""UNet shapes at 28x28 and 32x32, conditioning, learned variance, attention placement and errors."""

import pytest
import torch

from pipeline.config import ModelConfig
from pipeline.models import UNet
from pipeline.models.unet import SelfAttention, feature_sizes, timestep_embedding

TINY = ModelConfig(
    base_channels=16,
    channel_mult=(1, 2, 2),
    num_res_blocks=1,
    attention_resolutions=(7,),
    num_heads=2,
)


@pytest.mark.parametrize(
    "image_size, mult, attention",
    [
        (28, (1, 2, 2), (7,)),
        (32, (1, 2, 2), (16, 8)),
        (28, (1, 2, 2, 2), (4,)),
        (32, (1, 2, 2, 2), (4,)),
    ],
)
def test_output_shape_matches_input(image_size, mult, attention):
    config = ModelConfig(
        base_channels=16,
        channel_mult=mult,
        num_res_blocks=1,
        attention_resolutions=attention,
        num_heads=2,
    )
    net = UNet(config, image_size=image_size, in_channels=3)
    x = torch.randn(2, 3, image_size, image_size)
    assert net(x, torch.tensor([0, 999])).shape == x.shape
    n_attn = sum(isinstance(m, SelfAttention) for m in net.modules())
    per_level = config.num_res_blocks + (config.num_res_blocks + 1)  # down + up blocks
    assert n_attn == per_level * len(attention) + 1  # + the bottleneck


def test_feature_sizes_halve_with_ceiling():
    assert feature_sizes(28, 4) == [28, 14, 7, 4]
    assert feature_sizes(32, 3) == [32, 16, 8]


def test_conditioning_and_learned_variance_channels():
    net = UNet(TINY, image_size=28, in_channels=3, cond_channels=1, learned_variance=True)
    x, cond = torch.randn(2, 3, 28, 28), torch.randn(2, 1, 28, 28)
    assert net(x, torch.tensor([1, 2]), cond).shape == (2, 6, 28, 28)
    assert net.conv_in.in_channels == 4
    with pytest.raises(
        ValueError, match=r"this UNet takes cond_channels=1, num_classes=0; got cond=None"
    ):
        net(x, torch.tensor([1, 2]))
    plain = UNet(TINY, image_size=28, in_channels=1)
    with pytest.raises(
        ValueError, match=r"cond_channels=0, num_classes=0; got cond=\(2, 1, 28, 28\)"
    ):
        plain(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), cond)


def test_a_class_conditional_unet_embeds_the_label_and_the_null_class():
    torch.manual_seed(0)
    net = UNet(TINY, image_size=28, in_channels=1, num_classes=10)
    for p in net.parameters():  # leave the zero-initialised layers' starting point
        p.data.add_(0.01 * torch.randn_like(p))
    assert net.class_emb.num_embeddings == 11  # ten classes and the null class
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 5])
    out = net(x, t, torch.tensor([3, 3]))
    assert not torch.allclose(out, net(x, t, torch.tensor([4, 4])))
    assert not torch.allclose(out, net(x, t, torch.tensor([10, 10])))  # the null class
    with pytest.raises(ValueError, match=r"num_classes=10; got cond=None"):
        net(x, t)
    with pytest.raises(ValueError, match="an image condition or a class label, not both"):
        UNet(TINY, image_size=28, in_channels=1, cond_channels=1, num_classes=10)


def test_output_depends_on_t_and_cond_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = UNet(TINY, image_size=28, in_channels=1, cond_channels=1)
    for p in net.parameters():  # leave the zero-initialised layers' starting point
        p.data.add_(0.01 * torch.randn_like(p))
    x, cond = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    out = net(x, torch.tensor([3, 3]), cond)
    assert not torch.allclose(out, net(x, torch.tensor([600, 600]), cond))
    assert not torch.allclose(out, net(x, torch.tensor([3, 3]), -cond))
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert missing == []


def test_scalar_t_broadcasts_to_the_batch():
    net = UNet(TINY, image_size=28, in_channels=1)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x, torch.tensor(5)), net(x, torch.tensor([5, 5, 5])))


def test_timestep_embedding_is_sinusoidal():
    emb = timestep_embedding(torch.tensor([0, 1]), 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0, sin 0
    assert emb[1, 0].item() == pytest.approx(torch.cos(torch.tensor(1.0)).item())  # w_0 = 1
    assert timestep_embedding(torch.tensor([2]), 7).shape == (1, 7)


@pytest.mark.parametrize(
    "config, message",
    [
        (
            ModelConfig(attention_resolutions=(16,)),
            "attention_resolutions contains 16, but at image_size 28 with channel_mult [1, 2, 2] the feature maps are [28, 14, 7]",
        ),
        (ModelConfig(base_channels=30, num_heads=8), "num_heads=8 does not divide 60 channels"),
    ],
)
def test_architecture_errors(config, message):
    with pytest.raises(ValueError) as info:
        UNet(config, image_size=28, in_channels=1)
    assert message in str(info.value)


def test_tiles_cover_a_side_and_the_tiled_net_blends_them_exactly():
    from pipeline.models.tiled import TiledNet, tile_starts

    assert tile_starts(10, 4, 2) == [0, 2, 4, 6]
    assert tile_starts(11, 4, 2) == [0, 2, 4, 6, 7]  # the last tile flush with the end
    assert tile_starts(4, 4, 2) == [0]
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(3, 2, 1)  # sees one pixel: tiles must not change its output
    net = lambda x, t, cond: pointwise(torch.cat([x, cond], 1)) * (1 + t[:, None, None, None])  # noqa: E731
    x, cond, t = torch.randn(2, 2, 13, 21), torch.randn(2, 1, 13, 21), torch.tensor([1.0, 2.0])
    tiled = TiledNet(net, tile=8, stride=4)
    torch.testing.assert_close(tiled(x, t, cond), net(x, t, cond), rtol=0, atol=1e-6)
    small, small_cond = torch.randn(1, 2, 6, 30), torch.randn(1, 1, 6, 30)  # narrower than a tile
    torch.testing.assert_close(tiled(small, t[:1], small_cond), net(small, t[:1], small_cond))
    # a network that looks at its whole input (x minus its mean) sees one tile's worth of context
    centred = TiledNet(lambda x, t, cond: x - x.mean((-2, -1), keepdim=True), tile=8, stride=8)
    blocks = torch.zeros(1, 1, 8, 16)
    blocks[..., 8:] = 1.0  # two tiles, each constant: each minus its own mean is zero
    assert centred(blocks, t[:1]).abs().max() == 0
