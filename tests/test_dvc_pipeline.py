"""The DVC pipeline run for real (`dvc repro`) in a temporary git repository."""

import json
import math

import pandas as pd
import pytest
import yaml

from pipeline.diffusion import BETA_SCHEDULES, make_betas


def set_param(repo, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    section, name = key.split(".")
    params[section][name] = value
    path.write_text(yaml.safe_dump(params))


def ran(result) -> set[str]:
    """The stages a `dvc repro` ran."""
    return {
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage")
    }


def test_pipeline_runs_skips_and_reruns_only_what_params_affect(dvc_repo):
    repo = dvc_repo.repo
    first = dvc_repo("dvc", "repro")
    assert ran(first) == {"download", "preprocess", "schedules"}
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

    again = dvc_repo("dvc", "repro")
    assert ran(again) == set() and "up to date" in again.stdout

    set_param(repo, "model.dropout", 0.1)  # no stage depends on it yet
    set_param(repo, "download.retries", 5)  # how files are fetched, not what they are
    assert ran(dvc_repo("dvc", "repro")) == set()

    set_param(repo, "diffusion.timesteps", 200)
    assert ran(dvc_repo("dvc", "repro")) == {"schedules"}
    assert len(pd.read_csv(repo / "reports/schedules.csv")) == 200

    set_param(repo, "data.image_size", 32)  # re-preprocess, no re-download
    set_param(repo, "model.attention_resolutions", [8])  # 7x7 maps no longer exist at 32x32
    assert ran(dvc_repo("dvc", "repro")) == {"preprocess"}
    manifest = json.loads((repo / "data/processed/manifest.json").read_text())
    assert manifest["splits"]["test"]["images"]["shape"][1:] == [1, 32, 32]


def test_bad_params_fail_the_stage_and_leave_no_outputs(dvc_repo):
    set_param(dvc_repo.repo, "diffusion.schedule", "quadratic")
    result = dvc_repo("dvc", "repro", "schedules", check=False)
    assert result.returncode != 0
    assert "unknown beta schedule 'quadratic'" in result.stdout + result.stderr
    assert not (dvc_repo.repo / "reports/schedules.csv").exists()
