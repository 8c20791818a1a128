"""Peak memory of the data stages on a CIFAR-10-sized tarball (target: preprocess < 1 GiB).

Generates a tarball in CIFAR-10's python format with the full 50,000 + 10,000 images (random
pixels, tests/data_fixtures.py), then measures each phase in its own process with /usr/bin/time -v:
safe extraction (the download stage's work after the transfer) and preprocessing to 32x32 RGB.
Run from the repository root:  python benchmarks/preprocess_memory.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.data_fixtures import make_cifar_tarball  # noqa: E402

GIB = 1 << 30


def peak_rss(code: str) -> tuple[int, float]:
    """Run python -c code under /usr/bin/time -v; return (max RSS bytes, wall seconds)."""
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return kib * 1024, time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tarball = tmp / "cifar-10-python.tar.gz"
        make_cifar_tarball(tarball, per_batch=10_000)
        print(f"tarball: {tarball.stat().st_size / 2**20:.0f} MiB, 60,000 images of 3x32x32")
        extract, t_extract = peak_rss(
            "from pipeline.data.archive import extract_tar; "
            f"extract_tar({str(tarball)!r}, {str(tmp / 'raw')!r}, progress=False)"
        )
        pre, t_pre = peak_rss(
            "from pipeline.config import DataConfig; from pipeline.data import preprocess; "
            f"preprocess(DataConfig(source='cifar10', image_size=32, channels=3), {str(tmp / 'raw')!r}, "
            f"{str(tmp / 'out')!r}, progress=False)"
        )
        baseline, _ = peak_rss("import pipeline.data, pipeline.config")
        arrays = sum(p.stat().st_size for p in (tmp / "out").glob("*_images.npy"))
        print(f"dataset as uint8 arrays: {arrays / 2**20:.0f} MiB")
        print(f"python + imports alone:  peak RSS {baseline / 2**20:.0f} MiB")
        print(
            f"extract:    peak RSS {extract / 2**20:.0f} MiB ({extract / GIB:.2f} of 1 GiB), {t_extract:.1f} s"
        )
        print(
            f"preprocess: peak RSS {pre / 2**20:.0f} MiB ({pre / GIB:.2f} of 1 GiB), {t_pre:.1f} s"
        )
        print(f"preprocess peak / dataset size: {pre / arrays:.2f}")


if __name__ == "__main__":
    main()
