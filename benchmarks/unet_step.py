"""Training-step and forward time of UNet variants at 28x28, batch 64, measured side by side.

Informs the default model size for the CPU budget (``dvc repro`` in minutes on 2 cores): each
variant's time is printed with its ratio to the default ``ModelConfig()``.
Run from the repository root:  python benchmarks/unet_step.py
"""

from __future__ import annotations

import time

import torch

from pipeline.config import ModelConfig
from pipeline.diffusion import GaussianDiffusion, make_betas
from pipeline.models import UNet

BATCH, SIZE, WARMUP, STEPS = 64, 28, 3, 5

VARIANTS = {
    "default: 32 ch, [1,2,2], 2 blocks, attn 7 + mid": ModelConfig(),
    "no attention": ModelConfig(attention_resolutions=(), mid_attention=False),
    "1 residual block per level": ModelConfig(num_res_blocks=1),
    "base_channels 48": ModelConfig(base_channels=48),
}


def measure(config: ModelConfig) -> tuple[int, float, float]:
    """(parameters, seconds per AdamW training step, seconds per forward pass) at batch 64."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(make_betas("linear", 1000))
    net = UNet(config, image_size=SIZE, in_channels=1)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    x0 = torch.rand(BATCH, 1, SIZE, SIZE) * 2 - 1
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            start = time.perf_counter()
        loss = diffusion.training_loss(net, x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = (time.perf_counter() - start) / STEPS
    with torch.no_grad():
        start = time.perf_counter()
        net(x0, torch.full((BATCH,), 500))
        forward = time.perf_counter() - start
    return sum(p.numel() for p in net.parameters()), step, forward


def main() -> None:
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {SIZE}x{SIZE}"
    )
    results = {name: measure(cfg) for name, cfg in VARIANTS.items()}
    _, base_step, _ = next(iter(results.values()))
    for name, (params, step, forward) in results.items():
        print(
            f"{name:48s} {params / 1e6:5.2f}M params  step {step:5.2f} s ({BATCH / step:4.0f} img/s, "
            f"x{step / base_step:.2f} of default)  forward {forward:.3f} s"
        )


if __name__ == "__main__":
    main()
