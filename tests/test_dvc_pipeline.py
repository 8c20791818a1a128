"""The DVC pipeline run for real (`dvc repro`) in a temporary git repository."""

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


def test_schedules_stage_runs_skips_and_reruns_only_on_its_params(dvc_repo):
    repo = dvc_repo.repo
    first = dvc_repo("dvc", "repro")
    assert "Running stage 'schedules'" in first.stdout
    table = pd.read_csv(repo / "reports/schedules.csv")
    assert list(table.columns) == ["t", *BETA_SCHEDULES] and len(table) == 1000
    for name in BETA_SCHEDULES:
        alpha_bar_0 = 1 - make_betas(name, 1000)[0].item()
        assert table[name][0] == pytest.approx(math.log(alpha_bar_0 / (1 - alpha_bar_0)), rel=1e-9)
    assert (repo / "reports/schedules.png").stat().st_size > 10_000

    again = dvc_repo("dvc", "repro")
    assert "Running stage" not in again.stdout and "up to date" in again.stdout

    set_param(repo, "model.dropout", 0.1)  # not a dependency of the stage
    assert "Running stage" not in dvc_repo("dvc", "repro").stdout

    set_param(repo, "diffusion.timesteps", 200)
    assert "Running stage 'schedules'" in dvc_repo("dvc", "repro").stdout
    assert len(pd.read_csv(repo / "reports/schedules.csv")) == 200


def test_bad_params_fail_the_stage_and_leave_no_outputs(dvc_repo):
    set_param(dvc_repo.repo, "diffusion.schedule", "quadratic")
    result = dvc_repo("dvc", "repro", check=False)
    assert result.returncode != 0
    assert "unknown beta schedule 'quadratic'" in result.stdout + result.stderr
    assert not (dvc_repo.repo / "reports/schedules.csv").exists()
