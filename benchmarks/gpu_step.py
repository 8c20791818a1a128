"""The per-GPU training step and sampler (issue 26): the project's own against diffusers'
UNet2DModel at the same configuration and batch, side by side in one run.

Training step: what a Ray Train worker runs each step (pipeline.train.worker): the DDPM method's
``train_step`` (forward, loss, backward, clipping, AdamW) and the EMA update; the peer runs the
same work with diffusers' UNet2DModel (epsilon MSE at a random t, AdamW, the same EMA). Random data,
the precision the worker would use (``train.precision: auto``: bf16 autocast on CUDA, fp32 on
CPU). Printed: ms per step, img/s and MFU, the share of the device's peak (``--peak-tflops``)
that the step's FLOPs (torch.utils.flop_counter, one forward and backward) reach.

Sampling: DDIM with ``--sample-steps`` steps of ``--samples`` images, fp32 and bf16, the project's
sampler as evaluate, sample and colorize run it (the model's ``sample`` with ``precision``: the
network under bf16 autocast, x_t in fp32) against diffusers' DDIMScheduler loop on its UNet under
the same autocast. benchmarks/bf16_fid.py checks that bf16 draws images as good as fp32's.

Profiles: ``default`` (params.yaml's UNet on 28 x 28 gray images, batch 64) and ``gpu`` (the
README's GPU profile: 128 channels, [1, 2, 2, 2], attention at 16, CIFAR-10-sized, batch 128);
``--modes`` picks the rows: ``eager``, ``compiled`` (torch.compile, what ``train.compile: auto``
does on CUDA) and ``graphs`` (torch.compile's reduce-overhead mode: CUDA graphs replay the step's
kernels without launching each from Python; CUDA only; each step is marked with
``torch.compiler.cudagraph_mark_step_begin``). On a CUDA machine:

    python benchmarks/gpu_step.py --profiles default,gpu --batches 128,512 --modes eager,compiled,graphs
    python benchmarks/gpu_step.py --smoke     # tiny, on CPU, in seconds: CI keeps it working

``--ops N`` adds, per profile and batch, torch.profiler's N most expensive operators of the
project's eager step and of its bf16 sampling: where the time goes, from the same run.

It needs torch, diffusers and this package only (no Ray, MLflow or DVC: the per-GPU code imports
without them).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import DataConfig, ModelConfig, Params, TrainConfig  # noqa: E402
from pipeline.methods.base import Sampling  # noqa: E402
from pipeline.methods.step import AUTOCAST_DTYPES, adamw, resolve_precision  # noqa: E402
from pipeline.models import make_ema  # noqa: E402
from pipeline.registry import method_class  # noqa: E402

PROFILES = {
    "default": (DataConfig(image_size=28, channels=1), ModelConfig(), 64),
    "gpu": (
        DataConfig(source="cifar10", image_size=32, channels=3),
        ModelConfig(
            base_channels=128,
            channel_mult=(1, 2, 2, 2),
            attention_resolutions=(16,),
            dropout=0.1,
        ),
        128,
    ),
    "smoke": (
        DataConfig(image_size=8, channels=1),
        ModelConfig(
            base_channels=8,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(4,),
            mid_attention=True,
            num_heads=1,
        ),
        4,
    ),
}


def params_of(profile: str, batch: int, device: torch.device) -> Params:
    data, model, _ = PROFILES[profile]
    train = TrainConfig(batch_size=batch, num_workers=1, use_gpu=device.type == "cuda")
    return Params(data=data, model=model, train=train)


def peer_unet(params: Params):
    """diffusers' UNet2DModel in the project UNet's configuration: the same widths, blocks per
    level, attention resolutions and heads, dropout, mid-block attention."""
    from diffusers import UNet2DModel

    model, size = params.model, params.data.image_size
    widths = tuple(model.base_channels * m for m in model.channel_mult)
    sizes = [size >> i for i in range(len(widths))]
    attention = [s in model.attention_resolutions for s in sizes]
    return UNet2DModel(
        sample_size=size,
        in_channels=params.data.channels,
        out_channels=params.data.channels,
        block_out_channels=widths,
        layers_per_block=model.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        attention_head_dim=max(1, widths[-1] // model.num_heads),
        norm_num_groups=min(32, model.base_channels // 4 or 1),
        dropout=model.dropout,
        add_attention=model.mid_attention,
    )


def timed(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls (the GPU drained at both ends)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def step_flops(net: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one forward and backward of ``net`` (torch.utils.flop_counter)."""
    with FlopCounterMode(display=False) as counter:
        forward().float().square().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


MODES = {
    "eager": lambda net: net,
    "compiled": torch.compile,
    "graphs": lambda net: torch.compile(net, mode="reduce-overhead"),
}


def begin_step(mode: str) -> None:
    """Tell CUDA graph trees that a new step starts (its outputs of the last one may be reused)."""
    if mode == "graphs":
        torch.compiler.cudagraph_mark_step_begin()


def project_step(params: Params, device: torch.device, mode: str):
    """The worker's step: the method's train_step and the EMA update, the network wrapped as
    ``mode`` says (the worker's ``prepare`` wraps it in DDP around that)."""
    method = method_class("ddpm")(params, device)
    method.prepare(MODES[mode])
    ema = make_ema(method.net, params.train.ema_decay)
    shape = (params.train.batch_size, *params.data.image_shape)
    batch = torch.rand(shape, device=device) * 2 - 1
    counter = iter(range(10**9))

    def step() -> None:
        begin_step(mode)
        method.train_step([batch], lr=params.train.lr, step=next(counter))
        ema.update_parameters(method.net)

    t = torch.randint(0, params.diffusion.timesteps, (shape[0],), device=device)
    flops = step_flops(method.net, lambda: method.net(batch, t))
    return step, flops, method


def peer_step(params: Params, device: torch.device, mode: str):
    """The same work with diffusers' UNet2DModel: epsilon MSE at a random t, AdamW, the EMA."""
    unet = peer_unet(params).to(device)
    trained = MODES[mode](unet)
    optimizer = adamw(unet.parameters(), device, lr=params.train.lr)
    ema = make_ema(unet, params.train.ema_decay)
    precision = resolve_precision(params.train.precision, device)
    dtype = AUTOCAST_DTYPES[precision]
    shape = (params.train.batch_size, *params.data.image_shape)
    x0 = torch.rand(shape, device=device) * 2 - 1
    betas = torch.linspace(1e-4, 0.02, params.diffusion.timesteps, device=device)
    alpha_bar = torch.cumprod(1 - betas, 0)

    def step() -> None:
        begin_step(mode)
        t = torch.randint(0, len(alpha_bar), (shape[0],), device=device)
        noise = torch.randn_like(x0)
        a = alpha_bar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.mse_loss(trained(x_t, t).sample.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), params.train.grad_clip or float("inf"))
        optimizer.step()
        ema.update_parameters(unet)

    t = torch.randint(0, params.diffusion.timesteps, (shape[0],), device=device)
    flops = step_flops(unet, lambda: unet(x0, t).sample)
    return step, flops, unet


def sampling_rates(method, unet, params, device, args) -> dict[str, float]:
    """img/s of DDIM sampling, fp32 and bf16 autocast, project and peer."""
    from diffusers import DDIMScheduler

    model = method.model(method.net.eval())
    scheduler = DDIMScheduler(num_train_timesteps=params.diffusion.timesteps)
    scheduler.set_timesteps(args.sample_steps)
    shape = (args.samples, *params.data.image_shape)
    rates = {}
    for precision in ("fp32", "bf16"):
        enabled = precision == "bf16"

        def ours(precision=precision) -> None:
            model.sample(args.samples, precision=precision, how=Sampling(steps=args.sample_steps),
                         generator=torch.Generator(device).manual_seed(0))  # fmt: skip

        @torch.no_grad()
        def theirs(enabled=enabled) -> None:
            x = torch.randn(shape, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
                for t in scheduler.timesteps:
                    eps = unet(x, t.to(device)).sample
                    x = scheduler.step(eps.float(), t, x).prev_sample

        rates[f"project {precision}"] = args.samples / timed(ours, device, 1, args.sample_repeats)
        rates[f"diffusers {precision}"] = args.samples / timed(
            theirs, device, 1, args.sample_repeats
        )
    return rates


def top_ops(run: Callable[[], None], device: torch.device, count: int) -> str:
    """torch.profiler's table of the ``count`` operators that took the most device time (CPU time
    on a CPU) over one call of ``run``: where the time goes, in one run of the benchmark."""
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        run()
        if cuda:
            torch.cuda.synchronize(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=key, row_limit=count)


def mfu(flops: int, seconds: float, peak: float | None) -> str:
    """The share of the peak reached, or "-" without a peak (a CPU's depends on its kernels)."""
    return f"{flops / seconds / (peak * 1e12):.1%}" if peak else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="default,gpu")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: the profile's)")
    parser.add_argument("--modes", default="eager", help=f"rows, of {', '.join(MODES)}")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after 5 warm-up)")
    parser.add_argument("--samples", type=int, default=1000, help="images sampled")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--sample-repeats", type=int, default=1)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's peak for MFU (default on CUDA: 790, an H200's bf16)",
    )
    parser.add_argument(
        "--ops",
        type=int,
        default=0,
        help="print the N operators that take the most time in the project's eager step and bf16 "
        "sampling (torch.profiler), per profile and batch",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.profiles, args.steps, args.samples, args.sample_steps = "smoke", 2, 4, 3
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    modes = args.modes.split(",")
    if unknown := [m for m in modes if m not in MODES or (m == "graphs" and device.type != "cuda")]:
        parser.error(
            f"--modes: {','.join(unknown)} not among {', '.join(MODES)} (graphs: CUDA only)"
        )
    peak = args.peak_tflops or (790.0 if device.type == "cuda" else None)  # CPU: no MFU
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, peak {peak or '-'} TFLOP/s")  # fmt: skip
    print(f"{'profile':<8} {'batch':>5} {'mode':<8} {'code':<9} {'params':>7} {'GFLOP/img':>9} "
          f"{'ms/step':>8} {'img/s':>8} {'MFU':>6}")  # fmt: skip
    for profile in args.profiles.split(","):
        batches = (
            [int(b) for b in args.batches.split(",")] if args.batches else [PROFILES[profile][2]]
        )
        for batch in batches:
            params = params_of(profile, batch, device)
            for mode in modes:
                rates, built = {}, {}
                for code, build in (("project", project_step), ("diffusers", peer_step)):
                    step, flops, net = build(params, device, mode)
                    seconds = timed(step, device, 5 if not args.smoke else 1, args.steps)
                    network = net.net if code == "project" else net
                    size = sum(p.numel() for p in network.parameters()) / 1e6
                    rates[code], built[code] = batch / seconds, net
                    print(f"{profile:<8} {batch:>5} {mode:<8} "
                          f"{code:<9} {size:6.1f}M {flops / batch / 1e9:9.2f} "
                          f"{1000 * seconds:8.1f} {batch / seconds:8.0f} "
                          f"{mfu(flops, seconds, peak):>6}")  # fmt: skip
                print(
                    f"{'':<8} {'':>5} project / diffusers: {rates['project'] / rates['diffusers']:.2f}"
                )
            method = method_class("ddpm")(dataclasses.replace(params), device)
            for name, rate in sampling_rates(
                method, built["diffusers"], params, device, args
            ).items():
                print(f"{profile:<8} DDIM-{args.sample_steps} sampling {name}: {rate:.0f} img/s")
            if args.ops:
                step, _, _ = project_step(params, device, "eager")
                step()  # warm-up
                print(f"{profile} batch {batch}: the project's eager step, top {args.ops} ops")
                print(top_ops(step, device, args.ops))
                model = method.model(method.net.eval())
                print(f"{profile}: the project's DDIM-{args.sample_steps} bf16 sampling of "
                      f"{args.samples}, top {args.ops} ops")  # fmt: skip
                sample = functools.partial(
                    model.sample, args.samples, precision="bf16",
                    how=Sampling(steps=args.sample_steps), generator=torch.Generator(device),
                )  # fmt: skip
                print(top_ops(sample, device, args.ops))


if __name__ == "__main__":
    main()
