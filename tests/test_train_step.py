"""pipeline.train.step without Ray: accumulation, clipping, precision, seeds; the sample grid."""

import math

import numpy as np
import pytest
import torch

from pipeline.config import DiffusionConfig, ModelConfig, Params, TrainConfig
from pipeline.methods.ddpm import build_diffusion, build_unet, train_step
from pipeline.methods.step import lr_at, native_bf16_cpu, resolve_precision
from pipeline.reports.grid import image_grid
from pipeline.seeding import derived_seed

SMALL = Params(
    model=ModelConfig(
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_heads=1,
    ),
)


def setup(optimizer_cls=torch.optim.SGD, lr=1.0):
    torch.manual_seed(0)
    net = build_unet(SMALL)
    return net, build_diffusion(DiffusionConfig()), optimizer_cls(net.parameters(), lr=lr)


def scaler(enabled=False):
    return torch.amp.GradScaler("cpu", enabled=enabled)


def test_accumulated_micro_batches_average_their_gradients():
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    net, diffusion, sgd = setup()
    before = [p.detach().clone() for p in net.parameters()]
    torch.manual_seed(7)
    result = train_step(net, diffusion, [x[:4], x[4:]], sgd, scaler(), lr=0.5, grad_clip=0)
    # SGD: delta = -lr * grad, so the step reveals the gradient it used
    used = [(b - p.detach()) / 0.5 for b, p in zip(before, net.parameters(), strict=True)]

    reference, _, _ = setup()
    torch.manual_seed(7)  # the same draws, in the same order (micro-batch 1, then 2)
    first = diffusion.training_losses(reference, x[:4]).loss
    second = diffusion.training_losses(reference, x[4:]).loss
    ((first + second) / 2).backward()
    for got, p in zip(used, reference.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
    assert result.loss.item() == pytest.approx(((first + second) / 2).item(), rel=1e-6)
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in reference.parameters()))
    assert result.grad_norm.item() == pytest.approx(norm.item(), rel=1e-5)
    assert sgd.param_groups[0]["lr"] == 0.5


def test_gradient_clipping_bounds_the_update():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    net, diffusion, sgd = setup()
    before = [p.detach().clone() for p in net.parameters()]
    result = train_step(net, diffusion, [x], sgd, scaler(), lr=1.0, grad_clip=1e-3)
    update = torch.sqrt(
        sum((b - p.detach()).pow(2).sum() for b, p in zip(before, net.parameters(), strict=True))
    )
    assert result.grad_norm.item() > 1e-3  # the measured norm is before clipping
    assert update.item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_track_fp32(precision):
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    losses = {}
    for p in ("fp32", precision):
        net, diffusion, adam = setup(torch.optim.AdamW, lr=1e-3)
        grad_scaler = scaler(enabled=p == "fp16")
        torch.manual_seed(3)
        results = [
            train_step(net, diffusion, [x], adam, grad_scaler, lr=1e-3, grad_clip=1.0, precision=p)
            for _ in range(3)
        ]
        losses[p] = [r.loss.item() for r in results]
        assert all(r.loss.dtype == torch.float32 for r in results)
    assert losses[precision] == pytest.approx(losses["fp32"], rel=0.05)
    assert losses[precision] != losses["fp32"]  # autocast really ran in lower precision


@pytest.mark.slow  # inductor compiles forward and backward: about a minute on 2 cores
def test_compiled_model_trains_like_the_eager_one():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    out = {}
    for compiled in (False, True):
        net, diffusion, sgd = setup(lr=0.1)
        model = torch.compile(net) if compiled else net
        torch.manual_seed(5)
        out[compiled] = train_step(model, diffusion, [x], sgd, scaler(), lr=0.1, grad_clip=1.0)
        out[compiled] = (out[compiled].loss.item(), [p.detach().clone() for p in net.parameters()])
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-4)
    for a, b in zip(out[True][1], out[False][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_step_seeds_are_distinct_and_stable():
    seeds = {derived_seed(0, rank, step) for rank in range(4) for step in range(1000)}
    assert len(seeds) == 4000 and all(0 <= s < 2**63 for s in seeds)
    assert derived_seed(0, 1, 5) == derived_seed(0, 1, 5) != derived_seed(1, 1, 5)


def test_lr_warmup_then_constant_and_precision_auto():
    tc = TrainConfig(lr=1e-3, warmup_steps=4)
    assert [lr_at(s, tc) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert lr_at(0, TrainConfig(lr=1e-3, warmup_steps=0)) == 1e-3
    cosine = TrainConfig(lr=1e-3, warmup_steps=2, steps=6, lr_decay="cosine")
    assert [lr_at(s, cosine) for s in range(6)] == pytest.approx(
        [
            5e-4,
            1e-3,
            1e-3,
            0.5e-3 * (1 + math.cos(math.pi / 4)),
            0.5e-3,
            0.5e-3 * (1 - math.cos(math.pi / 4)),
        ]
    )  # the warmup, then down the half cosine: lr at its start, lr / 2 half way, 0 at steps
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"


def test_cpu_bf16_only_where_the_cpu_has_it(tmp_path):
    """The colorize command's auto (cpu_bf16): bf16 on a CPU whose flags list AVX512-BF16 or AMX,
    fp32 on one without, or where there is no /proc/cpuinfo; training and evaluation keep fp32."""
    with_bf16, without, missing = tmp_path / "a", tmp_path / "b", tmp_path / "none"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512bw\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert native_bf16_cpu(with_bf16) and not native_bf16_cpu(without)
    assert not native_bf16_cpu(missing)
    here = "bf16" if native_bf16_cpu() else "fp32"
    assert resolve_precision("auto", torch.device("cpu"), cpu_bf16=True) == here
    assert resolve_precision("fp32", torch.device("cpu"), cpu_bf16=True) == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0), cpu_bf16=True) == "bf16"


def test_image_grid_tiles_and_maps_pixels():
    images = torch.full((5, 3, 4, 6), -1.0)
    images[1] = 1.0
    images[4, 0] = 0.0
    grid = image_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 8:14] == 255).all()  # image 1: row 0, column 1
    assert (grid[6:10, 8:14, 0] == 128).all() and (grid[6:10, 8:14, 1:] == 0).all()  # image 4
    assert grid[0].max() == 0 and grid[:, 7].max() == 0  # black padding
    assert image_grid(torch.zeros(16, 1, 2, 2)).shape == (4 * 4 + 2, 4 * 4 + 2, 1)  # 4x4 default
    with pytest.raises(
        ValueError, match=r"expected a non-empty \(N, C, H, W\) batch, got shape \(3, 4, 4\)"
    ):
        image_grid(torch.zeros(3, 4, 4))


def test_latest_checkpoint_is_the_highest_step_that_loads(tmp_path):
    from pipeline.io import save_verified
    from pipeline.train.checkpoint import CHECKPOINT_FILE, STATE_KEYS, latest_checkpoint_dir

    assert latest_checkpoint_dir(tmp_path / "missing") is None
    for name, step in (("checkpoint_a", 2), ("checkpoint_b", 6), ("checkpoint_c", 4)):
        (tmp_path / name).mkdir()
        state = {key: {} for key in STATE_KEYS} | {"step": step, "model": {"w": torch.zeros(1000)}}
        save_verified(state, tmp_path / name / CHECKPOINT_FILE)
    file = tmp_path / "checkpoint_b" / CHECKPOINT_FILE
    file.write_bytes(file.read_bytes()[:-100])  # a copy cut short when the run died
    assert latest_checkpoint_dir(tmp_path) == tmp_path / "checkpoint_c"
