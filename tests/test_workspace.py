"""Queued and temporary DVC experiments keep their MLflow runs and checkpoints in the workspace
(pipeline.workspace; issue 42). The layout is DVC's own: a copy under .dvc/tmp/exps/, DVC_ROOT the
workspace it was queued from. The real `dvc queue start` is in tests/test_dvc_pipeline.py."""

from pathlib import Path

from pipeline.cluster import checkpoints_for_workers
from pipeline.config import Params
from pipeline.tracking import provenance_tags, tracking_uri
from pipeline.workspace import lasting


def repository(path: Path) -> Path:
    (path / ".dvc").mkdir(parents=True)
    return path


def test_a_temporary_copy_keeps_its_store_and_checkpoints_in_the_workspace(tmp_path, monkeypatch):
    workspace = repository(tmp_path / "project")
    copy = repository(workspace / ".dvc/tmp/exps/tmpab12cd")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    assert tracking_uri() == f"sqlite:///{workspace / 'mlflow.db'}"
    assert checkpoints_for_workers(Params(), "checkpoints") == workspace / "checkpoints"
    assert lasting(copy / "colorize/checkpoints") == workspace / "colorize/checkpoints"
    assert lasting("/srv/shared/checkpoints") == Path("/srv/shared/checkpoints")  # outside the copy
    (copy / "colorize").mkdir()
    monkeypatch.chdir(copy / "colorize")  # a stage whose wdir is a subfolder
    assert lasting("reports") == workspace / "colorize/reports"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"  # a tracking server is where it is


def test_a_plain_run_keeps_its_files_where_it_runs(tmp_path, monkeypatch):
    workspace = repository(tmp_path / "project")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(workspace)
    for root in (str(workspace), None):  # dvc repro sets DVC_ROOT to the repository; by hand: none
        if root:
            monkeypatch.setenv("DVC_ROOT", root)
        else:
            monkeypatch.delenv("DVC_ROOT", raising=False)
        assert tracking_uri() == f"sqlite:///{workspace / 'mlflow.db'}"
        assert lasting("checkpoints") == workspace / "checkpoints"


def test_a_run_of_a_dvc_experiment_is_tagged_with_its_name_and_baseline(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    plain = provenance_tags(tmp_path, "stages/train.py", "0" * 64)
    assert not any(tag.startswith("dvc.") for tag in plain)
    monkeypatch.setenv("DVC_EXP_NAME", "fuzzy-gull")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    tags = provenance_tags(tmp_path, "stages/train.py", "0" * 64)
    assert tags["dvc.exp_name"] == "fuzzy-gull" and tags["dvc.baseline_rev"] == "a" * 40
