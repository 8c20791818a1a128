"""The web page against the command on a 12-megapixel photo (issue 43): time and peak memory.

Side by side in one run, on one generated 4000 x 3000 photo (benchmarks/colorize_memory.photo) and
the shipped colorizer at the defaults:

- ``command``: `python -m pipeline colorize PHOTO --out DIR` in a subprocess, its wall time and
  peak RSS (os.wait4), and ``command work``: the same colorization in this process (decode,
  colorize, write the PNG) without the interpreter's start and the model's loading;
- ``page``: `python -m pipeline serve` started once; the time from sending the photo (the page's
  POST /api/colorize) until its full-size PNG is downloaded (GET /api/jobs/ID/file), as the page
  does it, then three photos sent at once and the server's peak RSS (VmHWM) after all three.

Prints the times, page - command work (the target: at most 2 s) and each peak against the bound
the colorize command documents (BOUND_MIB).

    .venv/bin/python benchmarks/serve_photo.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.colorize_memory import BOUND_MIB, peak_mib, photo  # noqa: E402
from pipeline.imagefile import read_rgb  # noqa: E402
from pipeline.photo_colorizer import Colorizer  # noqa: E402
from pipeline.reports.grid import save_image  # noqa: E402

WIDTH, HEIGHT = 4000, 3000  # 12 megapixels


def through_page(url: str, path: Path, client: str) -> float:
    """Seconds from sending ``path`` to the page's server until its output is downloaded."""
    started = time.perf_counter()
    request = urllib.request.Request(
        f"{url}api/colorize?client={client}&name={path.name}", path.read_bytes(), method="POST"
    )
    job = json.load(urllib.request.urlopen(request))["id"]
    while (state := json.load(urllib.request.urlopen(f"{url}api/jobs/{job}")))["state"] in (
        "queued",
        "working",
    ):
        time.sleep(0.05)
    assert state["state"] == "done", state
    urllib.request.urlopen(f"{url}api/jobs/{job}/file").read()
    return time.perf_counter() - started


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = photo(tmp / "big.jpg", WIDTH, HEIGHT)
        command_peak, command_s, status = peak_mib(
            ["-m", "pipeline", "colorize", str(big), "--out", str(tmp / "cli")]
        )
        assert status == 0
        colorizer = Colorizer.load(None, None, "cpu")
        started = time.perf_counter()
        image = next(colorizer.colorize(read_rgb(big, 50_000_000)))
        save_image(image, tmp / "work.png")
        work_s = time.perf_counter() - started
        del colorizer, image

        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "serve", "--out", str(tmp / "page")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            url = server.stdout.readline().split()[1]
            page_s = min(through_page(url, big, f"one{k}") for k in range(2))
            three: list[float] = []
            threads = [threading.Thread(target=lambda k=k: three.append(
                through_page(url, big, f"tab{k}"))) for k in range(3)]  # fmt: skip
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            page_peak = vm_hwm_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"photo: {WIDTH} x {HEIGHT} ({WIDTH * HEIGHT / 1e6:.0f} MP), shipped colorizer, defaults")
    print(f"command (whole process)      {command_s:6.2f} s   peak {command_peak:6.0f} MiB")
    print(f"command work (in process)    {work_s:6.2f} s")
    print(f"page: upload to download     {page_s:6.2f} s   page - command work = "
          f"{page_s - work_s:+.2f} s (target <= +2 s)")  # fmt: skip
    print(f"page: three at once, slowest {max(three):6.2f} s   server peak {page_peak:6.0f} MiB "
          f"= {page_peak / BOUND_MIB:.2f} of the command's bound {BOUND_MIB} MiB "
          f"(the command: {command_peak / BOUND_MIB:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
