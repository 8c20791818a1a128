"""The MLflow UI's view of the default run, for docs/experiments.md: the registered model's page with
its ``@champion`` alias (``docs/mlflow_champion.png``) and the training run's system metrics, one
chart per node and quantity (``docs/mlflow_system_metrics.png``). It serves the project's own store
(``mlflow.db``, read after ``dvc repro``) with ``mlflow ui`` on a free port of 127.0.0.1, opens both
pages in headless Chromium, fails unless each shows what it is there to show, and stops the server
(its log: ``logs/mlflow_ui.log``).

    python scripts/mlflow_ui_shots.py [--store sqlite:///$PWD/mlflow.db] [--out docs]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlflow import MlflowClient

CHROMIUM = "/usr/bin/chromium"  # Debian's package (make test installs it)
ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(store: str, port: int, log: Path) -> subprocess.Popen:
    """``mlflow ui`` on 127.0.0.1:``port`` over ``store``, answering /health."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mlflow ui exited with {server.returncode}: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"mlflow ui did not answer on 127.0.0.1:{port} in 120 s: see {log}")


def shoot(url: str, champion_url: str, metrics_url: str, model: str, out: Path) -> None:
    """Both screenshots; SystemExit naming the page that lacks what it should show."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(champion_url)
        page.get_by_text("@ champion").or_(page.get_by_text("champion")).first.wait_for(
            timeout=WAIT_MS
        )
        page.wait_for_timeout(1500)  # the version table's last cells
        page.screenshot(path=str(out / "mlflow_champion.png"))
        page.goto(metrics_url)
        page.get_by_text("cpu_utilization_percentage").first.wait_for(timeout=WAIT_MS)
        page.wait_for_timeout(3000)  # the charts draw after their titles
        page.screenshot(path=str(out / "mlflow_system_metrics.png"))
        browser.close()
    print(f"{out / 'mlflow_champion.png'}: {model} and its @champion alias ({url})")
    print(f"{out / 'mlflow_system_metrics.png'}: the training run's system metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    parser.add_argument("--train-report", type=Path, default=ROOT / "reports/train.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    report = json.loads(args.train_report.read_text())
    client = MlflowClient(args.store)
    model, run_id = report["registered_model"], report["mlflow_run_id"]
    if "champion" not in client.get_registered_model(model).aliases:
        raise SystemExit(f"{model} in {args.store} has no @champion alias: run dvc repro first")
    experiment = client.get_run(run_id).info.experiment_id
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (ROOT / "logs").mkdir(exist_ok=True)
    server = serve(args.store, port, ROOT / "logs/mlflow_ui.log")
    try:
        shoot(
            url,
            f"{url}/#/models/{model}",
            f"{url}/#/experiments/{experiment}/runs/{run_id}/system-metrics",
            model,
            args.out,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
