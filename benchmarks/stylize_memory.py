"""Peak memory of `python -m pipeline stylize` by photo size: what `--max-megapixels` bounds.

Runs the real command in a subprocess per case on generated photos (benchmarks/colorize_memory.py's
gradients), painted after a shipped painting with the default random features and `--steps 1`
(memory does not depend on the steps), and reads the child's peak RSS from the kernel. Prints each
case's peak, wall time and peak / BOUND, the figure docs/stylize.md documents.

    .venv/bin/python benchmarks/stylize_memory.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.colorize_memory import peak_mib, photo  # noqa: E402

BOUND_MIB = 2048  # docs/stylize.md: peak memory of stylize at its defaults, any photo
PAINTING = ROOT / "pipeline/style/paintings/hokusai_great_wave.jpg"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [
            ("imports only", ["-c", "import pipeline.apps.stylize"]),
            ("0.3 MP (640x480)", photo(tmp / "vga.jpg", 640, 480)),
            ("12 MP (4000x3000)", photo(tmp / "12mp.jpg", 4000, 3000)),
            ("50 MP (8660x5773), the default limit", photo(tmp / "50mp.jpg", 8660, 5773)),
            ("60 MP (refused: above the limit)", photo(tmp / "60mp.jpg", 9487, 6325)),
        ]
        print(f"{'case':<45} {'peak MiB':>9} {'wall s':>7} {'exit':>5} {'peak / bound':>13}")
        for name, source in cases:
            args = source
            if isinstance(source, Path):
                args = ["-m", "pipeline", "stylize", str(source), "--style", str(PAINTING),
                        "--out", str(tmp / f"out-{source.stem}.png"), "--steps", "1"]  # fmt: skip
            peak, wall, code = peak_mib(args)
            print(f"{name:<45} {peak:>9.0f} {wall:>7.1f} {code:>5} {peak / BOUND_MIB:>13.2f}")


if __name__ == "__main__":
    main()
