"""Peak memory of `python -m pipeline colorize` by input size: bounded whatever the input (issue 29).

Runs the real command in a subprocess per case on generated photos (smooth colour gradients, as
JPEG) with an untrained colorizer of colorize/params.yaml and an untrained guide of the same params
(``regression_color``), as the command runs by default (memory does not depend on the weights),
`--steps 2` (nor on the steps), and reads the child's peak RSS from the kernel (os.wait4). Prints
each case's peak, wall time and peak / BOUND, the figure the README documents.

    .venv/bin/python benchmarks/colorize_memory.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_params  # noqa: E402
from pipeline.methods.export import export_model  # noqa: E402
from pipeline.registry import method_class  # noqa: E402

BOUND_MIB = 1536  # README "Colorization": peak memory of colorize at its defaults, any input


def photo(path: Path, width: int, height: int) -> Path:
    """A smooth colour gradient of ``width`` x ``height`` as JPEG, built row strip by row strip."""
    with Image.new("RGB", (width, height)) as img:
        x = np.linspace(0, 255, width, dtype=np.float32)
        for top in range(0, height, 512):
            rows = np.arange(top, min(height, top + 512), dtype=np.float32)[:, None]
            y = rows / height * 255
            strip = np.stack([np.broadcast_to(x, (len(rows), width)),
                              np.broadcast_to(y, (len(rows), width)),
                              (x[None] + y) / 2], axis=-1).astype(np.uint8)  # fmt: skip
            img.paste(Image.fromarray(strip), (0, top))
        img.save(path, quality=90)
    return path


def peak_mib(args: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit status) of ``python args``."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    return usage.ru_maxrss / 1024, time.perf_counter() - started, os.waitstatus_to_exitcode(status)


def main() -> None:
    params = load_params(ROOT / "colorize/params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, guide = (
            export_model(method_class(family).build_net(params).state_dict(), step=0,
                         params=params.with_values({"model.family": family}), out_dir=tmp / family)
            for family in (params.model.family, "regression_color")
        )  # fmt: skip
        cases = [
            ("imports only", ["-c", "import pipeline.apps.colorize"], None),
            ("0.3 MP (640x480)", None, photo(tmp / "vga.jpg", 640, 480)),
            ("12 MP (4000x3000)", None, photo(tmp / "12mp.jpg", 4000, 3000)),
            ("50 MP (8660x5773), the default limit", None, photo(tmp / "50mp.jpg", 8660, 5773)),
            ("50 MP, --scale 8 (the most the model sees)", ["--scale", "8"], tmp / "50mp.jpg"),
            ("60 MP (refused: above the limit)", None, photo(tmp / "60mp.jpg", 9487, 6325)),
        ]
        print(f"{'case':<45} {'peak MiB':>9} {'wall s':>7} {'exit':>5} {'peak / bound':>13}")
        for name, extra, source in cases:
            if source is None:
                args = extra
            else:
                out = tmp / f"out-{source.stem}-{len(extra or [])}"
                args = ["-m", "pipeline", "colorize", str(source), "--model", str(model),
                        "--guide", str(guide), "--out", str(out), "--steps", "2",
                        *(extra or [])]  # fmt: skip
            peak, wall, code = peak_mib(args)
            print(f"{name:<45} {peak:>9.0f} {wall:>7.1f} {code:>5} {peak / BOUND_MIB:>13.2f}")


if __name__ == "__main__":
    main()
