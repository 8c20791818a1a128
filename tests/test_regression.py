"""Seeded regression values of a tiny 2-worker training and a tiny sweep, recorded before the
restructuring of issue 12 (methods as plug-ins) and required to hold unchanged after it.

Where the values came from: commit 38fa87e (the last commit before issue 12), `python -m pytest
tests/test_regression.py` with REGRESSION_PRINT=1, torch 2.13.0+cpu, CPU capability AVX512, on the
project's 2-core build machine (an Intel CPU: an AMD EPYC with AVX512 computes the same losses but
EMA weights and FIDs that differ in the ninth digit, from the same code, 2026-12-04). Each test
compares bit for bit on a machine with the recorded CPU capability and vendor; elsewhere (another instruction set sums floats in another order) losses and scores must
agree to 1e-4 relative and the sampled pixels within one grey level on average. The best trial's
identity and every step count are compared exactly everywhere.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.config import DataConfig, EvalConfig, FeatureNetConfig, SearchConfig
from pipeline.config.keys import nest
from pipeline.evaluate.featurenet import save_featurenet, train_featurenet
from pipeline.evaluate.sampling import generate
from pipeline.methods.export import load_model
from pipeline.tune.sweep import run_sweep
from tests.factories import TINY, run_train

pytestmark = pytest.mark.slow  # real Ray training runs: `make test-fast` leaves them out

RECORDED_ON = ("AVX512", "GenuineIntel")  # torch's CPU capability, /proc/cpuinfo's vendor_id


def cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(
                (line.split(":")[1].strip() for line in info if line.startswith("vendor_id")), ""
            )
    except OSError:
        return ""


SAME_MACHINE = (torch.backends.cpu.get_cpu_capability(), cpu_vendor()) == RECORDED_ON

# --- recorded at 38fa87e (see the module docstring) ---
TRAIN_LOSS = [0.9618509411811829, 1.0269434452056885, 1.0226504802703857, 0.9712740182876587]
TRAIN_GRAD_NORM = [1.8706812858581543, 2.205711841583252, 2.2884085178375244, 2.496107339859009]
TRAIN_GRID_SHA256 = "13055c2366c0ed14268a1aef397042d4a0776ea8a2ba9483bf875a3d2734552d"
TRAIN_GRID_MEAN = 101.52029136316337
EMA_SHA256 = "8ac55c0d7e1d7bac7a23522205bfb0acbaec4c29f616e1b0cbec872dace4f3b7"
DDPM_SAMPLES_SHA256 = "f9133a18bf4fdf68e662b33c10406436f650ee16c8ab5c87b97c360761231b82"
DDPM_SAMPLES_MEAN = 130.79878826530611
SWEEP_BEST = {
    "diffusion.schedule": "cosine",
    "train.lr": 0.01,
    "fid_featurenet": 0.21151388228022722,
}
SWEEP_FIDS = {
    "cosine": [0.24465396966130754, 0.21151388228022722],
    "linear": [0.24059269776175252, 0.22372770261119346],
}

SWEEP = dataclasses.replace(
    TINY,
    data=DataConfig(limit=400),  # 320 train, 40 val, 40 test images
    tune=SearchConfig(
        space=nest({"diffusion.schedule": {"grid": ["linear", "cosine"]}, "train.lr": 1e-2}),
        scheduler="fifo",
        steps=4,
        eval_every=2,
        batch_size=None,
        max_concurrent_trials=None,  # side by side (1 CPU each): fifo, each trial seeded alone
        eval_samples=16,
        eval_steps=3,
    ),
)


@pytest.fixture(scope="module")
def processed(processed_data):
    return processed_data(SWEEP.data)


def pixels_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes in name order (not torch.save's
    file bytes, which also hold pickle framing)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def report(name: str, value) -> None:
    if os.environ.get("REGRESSION_PRINT"):
        print(f"\n{name} = {value!r}")


def same(observed, recorded, *, rel: float = 1e-4) -> bool:
    return observed == recorded if SAME_MACHINE else observed == pytest.approx(recorded, rel=rel)


def test_tiny_two_worker_training_is_unchanged(
    ray_cluster, processed, tmp_path, monkeypatch_module
):
    run_train(tmp_path, TINY, processed)
    history = pd.read_csv(tmp_path / "reports/plots/train_loss.csv")
    grid = np.asarray(Image.open(tmp_path / "reports/train_samples.png"))
    ema = torch.load(tmp_path / "models/ema.pt", weights_only=True)
    samples = generate(
        load_model(tmp_path / "models"),
        EvalConfig(num_samples=4, batch_size=4, num_workers=1, sampler="ddpm", steps=5, seed=3),
    )
    observed = {
        "TRAIN_LOSS": history["loss"].tolist(),
        "TRAIN_GRAD_NORM": history["grad_norm"].tolist(),
        "TRAIN_GRID_SHA256": pixels_sha256(grid),
        "TRAIN_GRID_MEAN": float(grid.mean()),
        "EMA_SHA256": tensors_sha256(ema),
        "DDPM_SAMPLES_SHA256": pixels_sha256(samples),
        "DDPM_SAMPLES_MEAN": float(samples.mean()),
    }
    for name, value in observed.items():
        report(name, value)
    assert history["step"].tolist() == [1, 2, 3, 4]
    assert same(observed["TRAIN_LOSS"], TRAIN_LOSS)
    assert same(observed["TRAIN_GRAD_NORM"], TRAIN_GRAD_NORM)
    assert observed["TRAIN_GRID_MEAN"] == pytest.approx(
        TRAIN_GRID_MEAN, abs=0 if SAME_MACHINE else 1
    )
    assert observed["DDPM_SAMPLES_MEAN"] == pytest.approx(
        DDPM_SAMPLES_MEAN, abs=0 if SAME_MACHINE else 1
    )
    if SAME_MACHINE:
        assert observed["TRAIN_GRID_SHA256"] == TRAIN_GRID_SHA256
        assert observed["EMA_SHA256"] == EMA_SHA256
        assert observed["DDPM_SAMPLES_SHA256"] == DDPM_SAMPLES_SHA256


def test_tiny_sweep_best_trial_is_unchanged(ray_cluster, processed, tmp_path, monkeypatch_module):
    config = FeatureNetConfig(epochs=1)
    net, result = train_featurenet(processed, config, progress=False)
    save_featurenet(net, config, result, tmp_path / "featurenet")
    best = run_sweep(
        params=SWEEP,
        processed_dir=processed,
        featurenet_dir=tmp_path / "featurenet",
        storage_dir=tmp_path / "checkpoints",
        best_params_path=tmp_path / "best_params.yaml",
        results_csv=tmp_path / "tune_results.csv",
        plot_png=tmp_path / "tune_fid.png",
        project_dir=tmp_path,
    )
    table = pd.read_csv(tmp_path / "tune_results.csv")
    observed_best = {k: best[k] for k in ("diffusion.schedule", "train.lr", "fid_featurenet")}
    fids = {
        row["diffusion.schedule"]: [row["fid_featurenet@2"], row["fid_featurenet@4"]]
        for _, row in table.iterrows()
    }
    report("SWEEP_BEST", observed_best)
    report("SWEEP_FIDS", json.loads(json.dumps(fids)))
    assert list(table["status"]) == ["completed", "completed"]
    assert observed_best["diffusion.schedule"] == SWEEP_BEST["diffusion.schedule"]
    assert observed_best["train.lr"] == SWEEP_BEST["train.lr"]
    assert same(observed_best["fid_featurenet"], SWEEP_BEST["fid_featurenet"])
    assert set(fids) == set(SWEEP_FIDS)
    for schedule, values in SWEEP_FIDS.items():
        assert same(fids[schedule], values), schedule
