"""The cost of the integrity checks (issue 11), measured side by side with the work they guard.

1) ``verify_processed`` (every array's sha256, dtype and shape, once per stage) on the default
   mnist-5k data and on CIFAR-10-sized arrays (60,000 x 3 x 32 x 32 uint8, random pixels), against
   reading the same arrays once.
2) A default-UNet training checkpoint (model, EMA, AdamW state): ``save_verified`` /
   ``load_verified`` against plain ``torch.save`` / ``torch.load``.
3) ``code_digest`` of the training code, once per run.
Run from the repository root:  python benchmarks/integrity_cost.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import DataConfig, DownloadConfig, Params  # noqa: E402
from pipeline.data import download_source, preprocess  # noqa: E402
from pipeline.data.manifest import verify_processed  # noqa: E402
from pipeline.data.preprocess import array_entry  # noqa: E402
from pipeline.io import load_verified, save_verified  # noqa: E402
from pipeline.methods.ddpm import build_unet  # noqa: E402
from pipeline.models import make_ema  # noqa: E402
from pipeline.provenance import code_digest  # noqa: E402


def best_of(fn, repeat: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_all(directory: Path) -> None:
    for path in directory.glob("*.npy"):
        np.asarray(np.load(path, mmap_mode="r")).sum()


def cifar_sized(directory: Path) -> Path:
    """A processed directory with CIFAR-10's split sizes and a manifest, random pixels."""
    import json

    rng = np.random.default_rng(0)
    splits = {}
    for split, count in (("train", 45_000), ("val", 5_000), ("test", 10_000)):
        np.save(
            directory / f"{split}_images.npy", rng.integers(0, 256, (count, 3, 32, 32), np.uint8)
        )
        np.save(directory / f"{split}_labels.npy", rng.integers(0, 10, count).astype(np.int64))
        splits[split] = {
            "count": count,
            "images": array_entry(directory / f"{split}_images.npy"),
            "labels": array_entry(directory / f"{split}_labels.npy"),
        }
    (directory / "manifest.json").write_text(json.dumps({"splits": splits}))
    return directory


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = DataConfig()
        download_source(data, DownloadConfig(cache_dir=str(tmp / "cache")), tmp / "raw")
        preprocess(data, tmp / "raw", tmp / "mnist", progress=False)
        (tmp / "cifar").mkdir()
        cifar_sized(tmp / "cifar")
        print("| data | verify_processed | read every array once | ratio |")
        print("|---|---|---|---|")
        for name, directory in (
            ("mnist-5k (default)", tmp / "mnist"),
            ("CIFAR-10 size", tmp / "cifar"),
        ):
            verify = best_of(lambda d=directory: verify_processed(d))
            read = best_of(lambda d=directory: read_all(d))
            print(f"| {name} | {verify:.3f} s | {read:.3f} s | {verify / read:.2f} |")

        net = build_unet(Params())
        optimizer = torch.optim.AdamW(net.parameters())
        net(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)).sum().backward()
        optimizer.step()
        state = {"model": net.state_dict(), "ema": make_ema(net).state_dict(),
                 "optimizer": optimizer.state_dict()}  # fmt: skip
        plain, checked = tmp / "plain.pt", tmp / "checked.pt"
        rows = [
            ("save", lambda: torch.save(state, plain), lambda: save_verified(state, checked)),
            ("load", lambda: torch.load(plain, weights_only=True), lambda: load_verified(checked)),
        ]
        size = None
        print("\n| checkpoint (default UNet) | torch | verified (sha256 sidecar) | ratio |")
        print("|---|---|---|---|")
        for name, bare, verified in rows:
            a, b = best_of(bare), best_of(verified)
            size = plain.stat().st_size
            print(f"| {name} | {a:.3f} s | {b:.3f} s | {b / a:.2f} |")
        print(f"\ncheckpoint size: {size / 2**20:.1f} MiB")
        digest = best_of(lambda: code_digest("pipeline.train.driver"))
        print(f"code_digest('pipeline.train.driver'): {digest:.3f} s")


if __name__ == "__main__":
    main()
