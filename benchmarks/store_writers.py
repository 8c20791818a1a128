"""Several pipelines writing into one MLflow SQLite store at once (issue 42: `dvc queue start -j N`
on one machine): each writer is a process that logs a training's metrics as the train stage does
(pipeline.tracking.BufferedMetrics, a batch of 6 metrics every step, through patient_sqlite's busy
timeout), N of them at once against one alone. Prints, per N: batches per second over all writers,
the slowest batch's wait, failures, and whether the store passes SQLite's integrity check and holds
every metric.

    .venv/bin/python benchmarks/store_writers.py [--writers 1,2,4,8] [--batches 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYS = ("loss", "loss_simple", "lr", "grad_norm", "images_per_s", "fid_featurenet")


def write(uri: str, run_id: str, batches: int, results) -> None:
    """One writer: ``batches`` steps of KEYS logged as the train stage's rank 0 does."""
    from mlflow.entities import Metric

    from pipeline.tracking import BufferedMetrics, connect

    client = connect(uri)
    metrics = BufferedMetrics(client, run_id)
    slowest, failures, start = 0.0, 0, time.perf_counter()
    for step in range(batches):
        began = time.perf_counter()
        try:
            now = int(time.time() * 1000)
            metrics.log([Metric(k, float(step), now, step) for k in KEYS])
            metrics.flush()  # each step waits for its batch: the worst case of a busy store
        except ConnectionError:
            failures += 1
        slowest = max(slowest, time.perf_counter() - began)
    results.put((time.perf_counter() - start, slowest, failures))


def measure(writers: int, batches: int, folder: Path) -> dict:
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import patient_sqlite

    patient_sqlite()
    db = folder / f"mlflow-{writers}.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("writers", (folder / "artifacts").as_uri())
    runs = [client.create_run(experiment).info.run_id for _ in range(writers)]
    results = multiprocessing.get_context("spawn").Queue()
    processes = [
        multiprocessing.get_context("spawn").Process(target=write, args=(uri, r, batches, results))
        for r in runs
    ]
    for process in processes:
        process.start()
    done = [results.get() for _ in processes]  # (seconds writing, slowest batch, failures)
    for process in processes:
        process.join()
    wall = max(d[0] for d in done)  # from each writer's first batch, its start-up left out
    with sqlite3.connect(db) as con:
        intact = con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    return {
        "writers": writers,
        "batches_per_s": writers * batches / wall,
        "slowest_s": max(d[1] for d in done),
        "failures": sum(d[2] for d in done),
        "intact": intact,
        "complete": stored == writers * batches * len(KEYS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(int(n), args.batches, Path(tmp)) for n in args.writers.split(",")]
    print(f"{'writers':>7} {'batches/s':>9} {'slowest s':>9} {'failures':>8} {'intact':>6} "
          f"{'complete':>8}")  # fmt: skip
    for row in rows:
        print(f"{row['writers']:7d} {row['batches_per_s']:9.1f} {row['slowest_s']:9.2f} "
              f"{row['failures']:8d} {str(row['intact']):>6} {str(row['complete']):>8}")  # fmt: skip


if __name__ == "__main__":
    main()
