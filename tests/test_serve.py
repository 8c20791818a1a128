"""``python -m pipeline serve``: the work queue (pages served in turn, bounded), output names, and
the real page in headless Chromium against the real server with the shipped colorizer."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.apps.web import jobs
from pipeline.apps.web.app import output_stem, write_new
from pipeline.color import rgb_to_lab

PHOTOS = Path(__file__).parents[1] / "pipeline" / "data" / "photos"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (make test installs it)


def job(client: str, name: str, done: list, tmp_path: Path, gate=None) -> jobs.Job:
    def run(job: jobs.Job) -> Path:
        if gate is not None:
            gate.wait()
        if name == "bad":
            raise ValueError("cannot identify image file")
        done.append(f"{client}{name}")
        return tmp_path / name

    upload = tmp_path / f"upload-{client}{name}"
    upload.write_bytes(b"x")
    return jobs.Job(f"{client}{name}", client, name, run, upload)


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_queue_serves_each_page_in_turn_and_bounds_the_waiting(tmp_path, monkeypatch):
    queue, done, gate = jobs.JobQueue(), [], threading.Event()
    try:
        first = job("a", "0", done, tmp_path, gate)  # holds the worker while the others queue
        queue.submit(first)
        wait_for(lambda: first.state == "working")
        a = [job("a", str(k), done, tmp_path) for k in (1, 2, 3)]
        b = [job("b", str(k), done, tmp_path) for k in (1, 2)]
        positions = [queue.submit(j) for j in (*a, *b)]
        assert positions == [0, 1, 2, 1, 3]  # b's first goes after a's first, before a's second
        assert [queue.position(j) for j in a] == [0, 2, 4]
        monkeypatch.setattr(jobs, "MAX_WAITING", 5)
        with pytest.raises(jobs.QueueFull, match="5 photos are waiting already"):
            queue.submit(job("c", "1", done, tmp_path))
        bad = job("b", "bad", done, tmp_path)
        monkeypatch.setattr(jobs, "MAX_WAITING", 6)
        queue.submit(bad)
        gate.set()
        wait_for(lambda: bad.state == "failed")
        assert done == ["a0", "a1", "b1", "a2", "b2", "a3"]
        assert bad.error == "cannot identify image file" and bad.output is None
        assert all(j.state == "done" and j.progress == 1 for j in (*a, *b))
        assert not any(j.upload.exists() for j in (first, *a, *b, bad))  # uploads removed
    finally:
        gate.set()
        queue.stop()


def test_outputs_get_a_safe_new_name_and_never_replace_a_file(tmp_path):
    assert output_stem("holiday.jpg") == "holiday"
    assert output_stem("../../etc/passwd") == "passwd"
    assert output_stem("C:\\photos\\street 1905.png") == "street 1905"
    assert output_stem("a<b>|c?.png") == "a_b__c_"
    assert output_stem("...") == "photo" and output_stem("x" * 300 + ".jpg") == "x" * 100
    (tmp_path / "street.png").write_bytes(b"the user's file")
    image = np.zeros((4, 6, 3), np.uint8)
    assert write_new(image, tmp_path, "street").name == "street_2.png"
    assert write_new(image, tmp_path, "street").name == "street_3.png"
    assert (tmp_path / "street.png").read_bytes() == b"the user's file"


def lab(rgb: np.ndarray) -> torch.Tensor:
    return rgb_to_lab(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].double() / 255)[0]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_the_page_colorizes_and_stylizes_in_a_real_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    photos = [PHOTOS / "aitzgorri.jpg", PHOTOS / "aqua.jpg"]
    broken = tmp_path / "in" / "broken.jpg"
    broken.parent.mkdir()
    broken.write_bytes(b"not a photo")
    huge = tmp_path / "in" / "huge.png"  # 1.2 megapixels: above --max-megapixels 1
    Image.new("RGB", (1200, 1000), (90, 90, 90)).save(huge)
    out = tmp_path / "colorized"
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--out", str(out), "--max-megapixels", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line
        url = line.split()[1]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1100, "height": 760}, accept_downloads=True)
            page.goto(url)
            page.set_input_files("#photos", [*map(str, photos), str(broken), str(huge)])
            page.wait_for_function(
                "document.querySelectorAll('#results .card.done, #results .card.failed')"
                ".length === 4",
                timeout=120_000,
            )
            failures = page.locator("#results .card.failed .status").all_inner_texts()
            assert len(failures) == 2
            assert "failed: cannot identify image file 'broken.jpg'" in failures, failures
            assert any("above --max-megapixels 1" in f for f in failures), failures
            assert page.inner_text("#summary") == "2 of 4 colorized, 2 failed"
            page.screenshot(path=str(tmp_path / "serve.png"))
            if shot := os.environ.get("SERVE_SCREENSHOT"):  # the README's picture
                shutil.copy(tmp_path / "serve.png", shot)
            with page.expect_download() as download:
                page.click("#zip")
            archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
            assert sorted(archive.namelist()) == ["aitzgorri.png", "aqua.png"]
            for photo in photos:
                given = np.asarray(Image.open(photo).convert("RGB"))
                made = np.asarray(Image.open(archive.open(f"{photo.stem}.png")).convert("RGB"))
                assert made.shape == given.shape  # full size
                truth, colour = lab(given), lab(made)
                assert (colour[0] - truth[0]).abs().mean() < 0.5  # the photo's own lightness
                assert colour[1:].norm(dim=0).mean() > 3  # and colours, not gray

            page.click("button[data-tab=stylize]")
            page.set_input_files("#content", str(photos[0]))
            page.select_option("#painting", "hokusai_great_wave.jpg")
            page.click("#stylize summary")  # the advanced settings
            page.fill("#style-steps", "3")
            page.select_option("#style-size", "256")
            page.click("#paint")
            page.wait_for_selector("#paintings .card.done", timeout=120_000)
            page.set_input_files("#own", str(photos[1]))  # a painting of one's own
            page.click("#paint")
            page.wait_for_selector("#paintings .card.done >> nth=1", timeout=120_000)
            browser.close()
        for name in ("aitzgorri_hokusai_great_wave.png", "aitzgorri_aqua.png"):
            painted = np.asarray(Image.open(out / name))
            assert painted.shape == np.asarray(Image.open(photos[0])).shape
    finally:
        server.terminate()
        server.wait(timeout=30)
    # nothing but the outputs in the folder the user chose; the uploads are gone with the server
    assert sorted(p.name for p in out.iterdir()) == [
        "aitzgorri.png", "aitzgorri_aqua.png", "aitzgorri_hokusai_great_wave.png", "aqua.png"
    ]  # fmt: skip


def test_positions_can_be_read_while_the_worker_takes_jobs(tmp_path):
    """The page polls positions from request threads while the worker changes the lines."""
    queue, done, errors = jobs.JobQueue(), [], []
    submitted = [job(f"c{k % 5}", str(k), done, tmp_path) for k in range(300)]

    def poll():
        while len(done) < len(submitted):
            try:
                for j in submitted:
                    queue.position(j)
                queue.waiting()
            except Exception as exc:  # a line changed while it was read
                errors.append(exc)
                return

    try:
        for j in submitted[:60]:
            queue.submit(j)
        poller = threading.Thread(target=poll)
        poller.start()
        for j in submitted[60:]:
            wait_for(lambda: queue.waiting() < jobs.MAX_WAITING)
            queue.submit(j)
        poller.join(timeout=60)
    finally:
        queue.stop()
    assert errors == [] and len(done) == len(submitted)
