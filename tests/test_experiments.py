"""Many experiments at once, tracked (issue 42): queued and temporary DVC experiments keep their
MLflow runs and checkpoints in the workspace (pipeline.workspace; the layout is DVC's own: a copy
under .dvc/tmp/exps/, DVC_ROOT the workspace it was queued from; the real `dvc queue start` is in
tests/test_dvc_pipeline.py), runs carry their experiment and their nodes' system metrics, and the
registry's @champion follows the best score."""

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


def test_system_metrics_are_logged_per_node_and_a_short_run_gets_one_sample(tmp_path):
    """Issue 42: each node's CPU, memory, disk and network in the run (MLflow's monitor on a real
    SQLite store), under system/<node>/, sampled every second and once more when the block ends."""
    import time

    from mlflow.tracking import MlflowClient

    from pipeline.tracking import system_metrics

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    with system_metrics(uri, run_id, "node_0", every_s=1):
        time.sleep(2.5)
    short = client.create_run(client.get_experiment_by_name("e").experiment_id).info.run_id
    with system_metrics(uri, short, "node_1", every_s=10):
        pass
    with system_metrics(uri, None, "node_2", every_s=1):  # no run (a trial without MLflow): none
        pass
    cpu = client.get_metric_history(run_id, "system/node_0/cpu_utilization_percentage")
    assert len(cpu) >= 3 and [m.step for m in cpu] == list(range(len(cpu)))
    assert 0 <= max(m.value for m in cpu) <= 100
    assert client.get_run(run_id).data.metrics["system/node_0/system_memory_usage_megabytes"] > 0
    logged = client.get_run(short).data.metrics
    assert "system/node_1/cpu_utilization_percentage" in logged
    assert not any(key.startswith("system/node_0") for key in logged)


def test_the_champion_alias_moves_only_to_a_better_score_under_the_same_protocol(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import CHAMPION, PROTOCOL_TAG, promote_champion

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    client.create_registered_model("m")

    def scored(fid: float, protocol: str = "p1") -> str:
        version = client.create_model_version("m", tmp_path.as_uri(), run_id).version
        client.set_model_version_tag("m", version, "fid_featurenet", str(fid))
        client.set_model_version_tag("m", version, PROTOCOL_TAG, protocol)
        return version

    def champion() -> str:
        return client.get_model_version_by_alias("m", CHAMPION).version

    first = scored(8.8)
    assert "is version 1" in promote_champion(client, "m", first, "fid_featurenet", "p1")
    better = scored(3.7)
    promote_champion(client, "m", better, "fid_featurenet", "p1")
    assert champion() == better
    tie = scored(3.7)
    assert "stays version 2" in promote_champion(client, "m", tie, "fid_featurenet", "p1")
    worse = scored(5.0)
    promote_champion(client, "m", worse, "fid_featurenet", "p1")
    other = scored(1.0, protocol="p2")  # fewer samples, another FeatureNet: not comparable
    line = promote_champion(client, "m", other, "fid_featurenet", "p2")
    assert champion() == better and "not comparable" in line
