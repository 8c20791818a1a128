"""Cost model of data-parallel training, fitted on this machine and projected to GPU clusters.

    step(N) = compute(B) / N + allreduce(bytes, N),   allreduce = 2 (N-1) alpha + 2 (N-1)/N bytes / bw

(strong scaling: the global batch B is split over N workers; a ring all-reduce of the float32
gradients, no overlap with the backward pass: DDP overlaps some, so this is the pessimistic side).

Measured here, side by side in one run:
1. compute: the real training step (pipeline fit, 1 Ray worker x 1 thread, data loading and EMA
   inside the step) of the default UNet at global batch B; FLOPs per image of the default UNet and
   of the GPU profile's UNet (README "A GPU cluster profile": 3x32x32, base 128, [1,2,2,2],
   attention at 16), counted by torch.utils.flop_counter;
2. all-reduce: gloo all-reduce of float32 buffers from 0.4 MB to the GPU profile's gradient size
   between 2 Ray Train workers (1 CPU each), fitted to the ring formula (alpha, bw);
3. the model's 2-worker prediction for the default UNet against the measured 2-worker step, with
   compute(B)/2 as the model says, and with the compute measured at the per-worker batch B/2.

Projected: img/s and efficiency of the GPU profile on 1-64 H100s at the profile's global batch 128
over NVLink (one 8-GPU node), over 100 GbE (one GPU per node), and 8-GPU nodes on 100 GbE
(NVLink inside, the NIC between nodes), and the per-GPU batch each needs for 80% efficiency.
Published figures (constants below): H100 SXM5 dense BF16 989 TFLOP/s and NVLink 900 GB/s total
(450 GB/s each way) per GPU, NVIDIA H100 datasheet
(https://www.nvidia.com/en-us/data-center/h100/); 100 GbE = 12.5 GB/s line rate each way
(IEEE 802.3ba); ring all-reduce traffic 2(N-1)/N x bytes per rank (NCCL tests,
https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md).
Run from the repository root:  python benchmarks/cost_model.py [--steps 25] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train.torch import TorchTrainer
from scipy.optimize import nnls
from train_throughput import pipeline_run, step_flops

from pipeline.config import DataConfig, DownloadConfig, ModelConfig, Params, TrainConfig
from pipeline.data import download_source, preprocess
from pipeline.methods.ddpm import build_unet

H100_BF16_FLOPS = 989e12  # dense, SXM5 (datasheet)
UTILISATION = 0.4  # assumed fraction of that peak a UNet step reaches (model FLOPs utilisation)
LINKS = {  # name: (bandwidth each way in B/s, per-hop latency in s; assumed latencies)
    "NVLink": (450e9, 5e-6),
    "100GbE": (12.5e9, 25e-6),
}
GPUS_PER_NODE = 8
PROFILE = Params(
    data=DataConfig(source="cifar10", channels=3, image_size=32),
    model=ModelConfig(
        base_channels=128, channel_mult=(1, 2, 2, 2), attention_resolutions=(16,), dropout=0.1
    ),
    train=TrainConfig(batch_size=128),
)
SIZES = (1e5, 1e6, 4e6, 16e6)  # float32 elements all-reduced; the GPU profile's gradient is added


def ring_allreduce(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` over ``n`` ranks (0 for one rank)."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) * latency + 2 * (n - 1) / n * nbytes / bandwidth


def allreduce_worker(config: dict) -> None:
    """Time gloo all-reduces of each size (median of 5 after 2 warm-ups); rank 0 reports them."""
    torch.set_num_threads(1)
    times = {}
    for count in config["sizes"]:
        buffer = torch.ones(int(count))
        for _ in range(2):
            dist.all_reduce(buffer)
        runs = []
        for _ in range(5):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            runs.append(time.perf_counter() - start)
        times[str(int(count) * 4)] = statistics.median(runs)
    if (
        ray.train.get_context().get_world_rank() == 0
    ):  # Train V2 keeps metrics with checkpoints only
        Path(config["out"]).write_text(json.dumps(times))


def measure_allreduce(sizes: list[float]) -> dict[int, float]:
    """bytes -> seconds of a gloo all-reduce between 2 Ray Train workers of 1 CPU."""
    with tempfile.TemporaryDirectory() as storage:
        out = Path(storage) / "times.json"
        TorchTrainer(
            allreduce_worker,
            train_loop_config={"sizes": sizes, "out": str(out)},
            scaling_config=ray.train.ScalingConfig(num_workers=2),
            run_config=ray.train.RunConfig(storage_path=storage),
        ).fit()
        return {int(k): v for k, v in json.loads(out.read_text()).items()}


def fit_ring(times: dict[int, float], n: int = 2) -> tuple[float, float]:
    """(bandwidth B/s, latency s) of the ring formula: non-negative least squares on the relative
    errors (the sizes span 3 orders of magnitude: absolute errors would ignore the small ones)."""
    nbytes = np.array(list(times), dtype=float)
    seconds = np.array(list(times.values()))
    design = np.stack([np.full(len(nbytes), 2.0 * (n - 1)), 2 * (n - 1) / n * nbytes], axis=1)
    (latency, inverse_bw), _ = nnls(design / seconds[:, None], np.ones(len(seconds)))
    return 1 / inverse_bw, latency


def projection(flops_per_image: float, nbytes: float, batch: int) -> None:
    """The GPU profile at global batch ``batch`` on 1-64 H100s, three networks."""
    per_image = flops_per_image / (H100_BF16_FLOPS * UTILISATION)
    one = batch * per_image
    print(
        f"\nGPU profile on H100 (assumed {UTILISATION:.0%} of {H100_BF16_FLOPS / 1e12:.0f} TFLOP/s): "
        f"{per_image * 1e6:.1f} us per image, global batch {batch}, {nbytes / 1e6:.0f} MB gradient"
    )
    print(f"{'GPUs':>5} {'per-GPU batch':>13} | " + " | ".join(
        f"{name:>22}" for name in ("NVLink (one node)", "100GbE (1 GPU/node)", "8/node, 100GbE")
    ))  # fmt: skip
    for n in (1, 2, 4, 8, 16, 32, 64):
        cells = []
        for scenario in ("NVLink", "100GbE", "hier"):
            if scenario == "NVLink" and n > GPUS_PER_NODE:
                cells.append("(not one node)".rjust(22))
                continue
            step = one / n + network_time(scenario, nbytes, n)
            cells.append(f"{batch / step:8.0f} img/s {one / (n * step):5.0%}".rjust(22))
        print(f"{n:>5} {batch / n:>13.1f} | " + " | ".join(cells))
    print("per-GPU batch for 80% efficiency (compute >= 4x all-reduce):")
    for scenario, n in (("NVLink", 8), ("100GbE", 8), ("hier", 64)):
        comm = network_time(scenario, nbytes, n)
        print(f"  {scenario:7s} N={n:2d}: all-reduce {comm * 1e3:6.2f} ms -> per-GPU batch "
              f">= {4 * comm / per_image:,.0f}")  # fmt: skip


def network_time(scenario: str, nbytes: float, n: int) -> float:
    """All-reduce seconds: a ring over NVLink or 100 GbE, or hierarchical (a reduce-scatter and an
    all-gather over NVLink inside each 8-GPU node, a ring of the nodes over their one NIC)."""
    if scenario != "hier":
        return ring_allreduce(nbytes, n, *LINKS[scenario])
    local = min(n, GPUS_PER_NODE)
    nodes = max(1, n // GPUS_PER_NODE)
    return ring_allreduce(nbytes, local, *LINKS["NVLink"]) + ring_allreduce(
        nbytes, nodes, *LINKS["100GbE"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="training steps per configuration")
    parser.add_argument("--batch", type=int, default=64, help="global batch of the default UNet")
    args = parser.parse_args()
    params = Params(train=TrainConfig(batch_size=args.batch))
    default_bytes = 4 * sum(p.numel() for p in build_unet(params).parameters())
    profile_bytes = 4 * sum(p.numel() for p in build_unet(PROFILE).parameters())
    default_flops = step_flops(params, 4) / 4
    profile_flops = step_flops(PROFILE, 2) / 2
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        download_source(DataConfig(), DownloadConfig(), root / "raw")
        preprocess(DataConfig(), root / "raw", root / "processed", progress=False)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        times = measure_allreduce([*SIZES, default_bytes / 4, profile_bytes / 4])
        one = statistics.median(pipeline_run(params, root / "processed", 1, args.steps))
        two = statistics.median(pipeline_run(params, root / "processed", 2, args.steps))
        half = Params(train=TrainConfig(batch_size=args.batch // 2))  # one worker's share
        one_half = statistics.median(pipeline_run(half, root / "processed", 1, args.steps))
        ray.shutdown()

    bandwidth, latency = fit_ring(times)
    print(f"torch {torch.__version__}, ray {ray.__version__}; 2 CPU cores; {args.steps} steps")
    print(f"default UNet: {default_bytes / 4e6:.2f}M params ({default_bytes / 1e6:.1f} MB "
          f"gradient), {default_flops / 1e9:.2f} GFLOP per image (fwd+bwd)")  # fmt: skip
    print(f"GPU profile UNet: {profile_bytes / 4e6:.1f}M params ({profile_bytes / 1e6:.0f} MB "
          f"gradient), {profile_flops / 1e9:.2f} GFLOP per image (fwd+bwd)")  # fmt: skip
    print("gloo all-reduce, 2 workers x 1 CPU (median of 5):")
    for nbytes, seconds in sorted(times.items()):
        model = ring_allreduce(nbytes, 2, bandwidth, latency)
        print(f"  {nbytes / 1e6:8.1f} MB  {seconds * 1e3:8.2f} ms  (fit {model * 1e3:8.2f} ms)")
    print(f"  fit: bandwidth {bandwidth / 1e9:.2f} GB/s each way, latency {latency * 1e6:.0f} us")

    compute = args.batch / one  # seconds per step of the whole batch on one worker
    comm = ring_allreduce(default_bytes, 2, bandwidth, latency)
    predicted = args.batch / (compute / 2 + comm)
    print(f"\ndefault UNet, global batch {args.batch}, measured: 1 worker {one:.1f} img/s "
          f"({compute:.3f} s/step), 2 workers {two:.1f} img/s ({two / one:.3f}x)")  # fmt: skip
    print(f"model, 2 workers: compute/2 {compute / 2:.3f} s + all-reduce {comm * 1e3:.1f} ms -> "
          f"{predicted:.1f} img/s ({predicted / one:.3f}x); measured / model = "
          f"{two / predicted:.3f}")  # fmt: skip
    at_half = (args.batch // 2) / one_half + comm  # compute measured at the per-worker batch
    print(f"model with compute measured at the per-worker batch {args.batch // 2} (1 worker: "
          f"{one_half:.1f} img/s): {args.batch / at_half:.1f} img/s; measured / model = "
          f"{two * at_half / args.batch:.3f} (the rest: two workers sharing 2 cores)")  # fmt: skip
    projection(profile_flops, profile_bytes, PROFILE.train.batch_size)


if __name__ == "__main__":
    main()
