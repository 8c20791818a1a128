"""The DVC pipeline run for real (`dvc repro`) in a temporary git repository."""

import json
import math

import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from pipeline.diffusion import BETA_SCHEDULES, make_betas
from pipeline.train.export import load_model


def set_param(repo, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    section, name = key.split(".")
    params.setdefault(section, {})[name] = value
    path.write_text(yaml.safe_dump(params))


def ran(result) -> set[str]:
    """The stages a `dvc repro` ran."""
    return {
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage")
    }


TINY_TRAINING = {
    "model.base_channels": 8,
    "model.channel_mult": [1, 2],
    "model.num_res_blocks": 1,
    "model.attention_resolutions": [],
    "model.mid_attention": False,
    "model.num_heads": 1,
    "train.steps": 4,
    "train.batch_size": 8,
    "train.warmup_steps": 2,
    "train.checkpoint_every": 2,
    "train.log_every": 2,
    "train.sample_every": 0,
    "train.sample_count": 4,
    "train.sample_steps": 2,
}


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_only_what_params_affect(dvc_repo):
    repo = dvc_repo.repo
    for key, value in TINY_TRAINING.items():
        set_param(repo, key, value)
    first = dvc_repo("dvc", "repro")
    assert ran(first) == {"download", "preprocess", "schedules", "train"}
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert manifest["source"] == "mnist-5k" and manifest["splits"]["train"]["images"]["shape"][
        1:
    ] == [1, 28, 28]
    assert sum(manifest["splits"][s]["count"] for s in ("train", "val", "test")) == 5000
    table = pd.read_csv(repo / "reports/schedules.csv")
    assert list(table.columns) == ["t", *BETA_SCHEDULES] and len(table) == 1000
    for name in BETA_SCHEDULES:
        alpha_bar_0 = 1 - make_betas(name, 1000)[0].item()
        assert table[name][0] == pytest.approx(math.log(alpha_bar_0 / (1 - alpha_bar_0)), rel=1e-9)
    assert (repo / "reports/schedules.png").stat().st_size > 10_000

    report = json.loads((repo / "reports/train.json").read_text())
    assert report["steps"] == 4 and (repo / "models/ema.pt").is_file()
    assert list(pd.read_csv(repo / "reports/plots/train_loss.csv")["step"]) == [2, 4]
    metrics = json.loads(dvc_repo("dvc", "metrics", "show", "--json").stdout)
    shown = metrics[""]["data"]["reports/train.json"]["data"]
    assert shown["final_loss"] == report["final_loss"]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")  # the default store, in the project
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["dvc_stage"] == "train" and run.info.status == "FINISHED"
    assert run.data.tags["git_commit"] == dvc_repo("git", "rev-parse", "HEAD").stdout.strip()

    again = dvc_repo("dvc", "repro")
    assert ran(again) == set() and "up to date" in again.stdout

    set_param(repo, "download.retries", 5)  # how files are fetched, not what they are
    set_param(repo, "mlflow.experiment", "elsewhere")  # where runs are recorded
    assert ran(dvc_repo("dvc", "repro")) == set()

    set_param(repo, "diffusion.timesteps", 200)
    assert ran(dvc_repo("dvc", "repro")) == {"schedules", "train"}
    assert len(pd.read_csv(repo / "reports/schedules.csv")) == 200
    assert (
        json.loads((repo / "models/config.json").read_text())["params"]["diffusion"]["timesteps"]
        == 200
    )

    set_param(repo, "data.image_size", 32)  # re-preprocess and retrain, no re-download
    assert ran(dvc_repo("dvc", "repro")) == {"preprocess", "train"}
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert manifest["splits"]["test"]["images"]["shape"][1:] == [1, 32, 32]
    net, _, params = load_model(repo / "models")
    assert params.data.image_size == 32
    assert net(torch.zeros(1, 1, 32, 32), torch.tensor([0])).shape == (1, 1, 32, 32)


def test_bad_params_fail_the_stage_and_leave_no_outputs(dvc_repo):
    set_param(dvc_repo.repo, "diffusion.schedule", "quadratic")
    result = dvc_repo("dvc", "repro", "schedules", check=False)
    assert result.returncode != 0
    assert "unknown beta schedule 'quadratic'" in result.stdout + result.stderr
    assert not (dvc_repo.repo / "reports/schedules.csv").exists()
