"""bf16 sampling against fp32 (issue 26): does the network under bf16 autocast draw images as good
as fp32's? The exported model's ``sample`` as the evaluate stage calls it (the sampler, steps and
batch size of the model's own eval section, or of ``--params``'s; ``precision`` fp32 and bf16;
batch b seeded by (seed, b)), for several eval seeds, each draw scored as the evaluate stage scores
it (``eval.features`` FID against the test split; a colorizer colours the test images).

A seed gives both precisions the same x_T and step noise, so each seed's bf16 - fp32 difference is
paired. Sampling noise is the spread of fp32's FID over the seeds (the same model drawing other
images). Printed: per seed both FIDs and their difference; per precision the mean FID and img/s;
then the mean difference with its paired standard error (a consistent bias shows as a difference
of several standard errors, however small), in units of that spread ("within noise": at most 1),
and bf16's speed-up.

    python benchmarks/bf16_fid.py --models models --featurenet featurenet --data data/processed
    python benchmarks/bf16_fid.py --models pipeline/colorizer --data colorize/data/processed

On a CUDA machine it samples on the GPU (what ``eval.precision: auto`` picks there is bf16); on a
CPU it runs the same autocast on the CPU's kernels (bf16 on CPUs with AMX or AVX512-BF16). It needs
torch, torchmetrics and this package only (no Ray, MLflow or DVC), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import EvalConfig, load_params  # noqa: E402
from pipeline.data.dataset import ProcessedImages, spread  # noqa: E402
from pipeline.evaluate.backends import load_extractor  # noqa: E402
from pipeline.evaluate.frechet import feature_statistics, frechet_distance  # noqa: E402
from pipeline.evaluate.scores import extract  # noqa: E402
from pipeline.methods.base import GenerativeModel, Sampling  # noqa: E402
from pipeline.methods.export import load_model  # noqa: E402
from pipeline.pixels import to_uint8  # noqa: E402
from pipeline.seeding import derived_seed  # noqa: E402


def draw(
    model: GenerativeModel, config: EvalConfig, precision: str, conditions: np.ndarray | None
) -> np.ndarray:
    """``config.num_samples`` images (uint8), in batches of ``config.batch_size``, batch b seeded
    by (``config.seed``, b)."""
    total = config.num_samples if conditions is None else len(conditions)
    batches = []
    for b, start in enumerate(range(0, total, config.batch_size)):
        count = min(config.batch_size, total - start)
        chunk = None if conditions is None else conditions[start : start + count]
        generator = torch.Generator(model.device).manual_seed(
            derived_seed("sample", config.seed, b)
        )
        x0 = model.sample(count, precision=precision, generator=generator,
                          how=Sampling.of(config), cond=model.cond(chunk))  # fmt: skip
        batches.append(to_uint8(x0).numpy())
    return np.concatenate(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="the eval section to sample by (default: the model's)")
    parser.add_argument("--models", required=True, help="an exported model folder")
    parser.add_argument("--featurenet", help="the featurenet stage's folder (eval.features)")
    parser.add_argument("--data", required=True, help="processed data with a test split")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="eval seeds, comma-separated")
    parser.add_argument("--samples", type=int, help="images per draw (default: eval.num_samples)")
    args = parser.parse_args()
    model = load_model(args.models, "cuda" if torch.cuda.is_available() else "cpu")
    config = load_params(args.params).eval if args.params else model.params.eval
    if args.samples:
        config = dataclasses.replace(config, num_samples=args.samples)
    seeds = [int(s) for s in args.seeds.split(",")]
    extractor, _ = load_extractor(config, args.featurenet)
    real_images = ProcessedImages(args.data, "test").images
    real = feature_statistics(extract(extractor, real_images, desc=None))  # once, for every draw
    conditions = model.conditions(
        config.num_samples, lambda n: np.array(real_images[spread(len(real_images), n)])
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{model.params.model.family} from {args.models} on {device}, torch {torch.__version__}: "
          f"{config.num_samples} images, {config.sampler}-{config.steps}, "
          f"fid_{config.features} against {len(real_images)} test images")  # fmt: skip
    fid: dict[str, list[float]] = {"fp32": [], "bf16": []}
    seconds = dict.fromkeys(fid, 0.0)
    differences = []  # bf16 - fp32, per seed
    for seed in seeds:
        for precision in fid:
            started = time.perf_counter()
            images = draw(model, dataclasses.replace(config, seed=seed), precision, conditions)
            seconds[precision] += time.perf_counter() - started
            fake = feature_statistics(extract(extractor, images, desc=None))
            fid[precision].append(frechet_distance(*real, *fake))  # evaluate's fid_<features>
        differences.append(fid["bf16"][-1] - fid["fp32"][-1])
        print(f"seed {seed}: fp32 {fid['fp32'][-1]:.3f}, bf16 {fid['bf16'][-1]:.3f}, "
              f"bf16 - fp32 {differences[-1]:+.3f}")  # fmt: skip
    noise = statistics.stdev(fid["fp32"]) if len(seeds) > 1 else float("nan")
    shift = statistics.mean(differences)
    error = statistics.stdev(differences) / len(seeds) ** 0.5 if len(seeds) > 1 else float("nan")
    for precision, values in fid.items():
        print(f"{precision}: FID {statistics.mean(values):.3f} (over {len(seeds)} seeds), "
              f"{len(seeds) * config.num_samples / seconds[precision]:.1f} img/s")  # fmt: skip
    print(f"bf16 - fp32: {shift:+.3f} (paired over the seeds: standard error {error:.3f}); "
          f"fp32's spread over seeds (std) {noise:.3f}; "
          f"|shift| / spread {abs(shift) / noise:.2f} "
          f"({'within' if abs(shift) <= noise else 'beyond'} sampling noise); "
          f"bf16 / fp32 speed {seconds['fp32'] / seconds['bf16']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
