"""The Tune search on real Ray Tune + Ray Train (local cluster, 2 CPUs) and real MLflow (SQLite)."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.config import (
    ConfigError,
    DataConfig,
    DownloadConfig,
    FeatureNetConfig,
    Params,
    SearchConfig,
    to_dict,
)
from pipeline.config.keys import nest
from pipeline.data import download_source, preprocess
from pipeline.evaluate.featurenet import save_featurenet, train_featurenet
from pipeline.methods.export import load_model
from pipeline.tracking import experiment_id, start_run
from pipeline.tune.best import apply_best_params, read_best_params
from pipeline.tune.search import winner
from pipeline.tune.sweep import run_sweep
from pipeline.tune.trial import SweepConfig, ended, trial_params
from tests.conftest import ROOT
from tests.factories import TINY
from tests.test_reliability import write_checkpoint

pytestmark = pytest.mark.slow  # real Ray training runs: `make test-fast` leaves them out

METRIC = "fid_featurenet"  # the default pipeline's milestone metric (probe_metric of eval.features)

SCHEDULES = ("linear", "cosine")
BASE = dataclasses.replace(
    TINY,
    data=DataConfig(limit=400),  # mnist-5k: 320 train, 40 val, 40 test images
    train=dataclasses.replace(TINY.train, batch_size=8, log_every=2, warmup_steps=1),
    tune=SearchConfig(
        space=nest(
            {
                "diffusion.schedule": {"grid": list(SCHEDULES)},
                # 1e-2 learns, 1e-7 barely moves (ASHA stops it), 1e30 diverges at its first step
                "train.lr": {"grid": [1e-2, 1e-7, 1e30]},
                "diffusion.loss.min_snr_gamma": {"choice": [None, 5.0]},
            }
        ),
        steps=8,
        eval_every=4,
        batch_size=None,
        max_concurrent_trials=1,  # in order: ASHA's decisions are deterministic
        eval_samples=16,
        eval_steps=3,
    ),
)


def with_tune(params: Params, **changes) -> Params:
    return dataclasses.replace(params, tune=dataclasses.replace(params.tune, **changes))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Processed data and a trained FeatureNet, shared by the module's sweeps."""
    root = tmp_path_factory.mktemp("tune-inputs")
    download_source(BASE.data, DownloadConfig(cache_dir=str(root / "cache")), root / "raw")
    preprocess(BASE.data, root / "raw", root / "processed", progress=False)
    config = FeatureNetConfig(epochs=1)
    net, result = train_featurenet(root / "processed", config, progress=False)
    save_featurenet(net, config, result, root / "featurenet")
    return root / "processed", root / "featurenet"


def sweep_outputs(project):
    return {
        "best_params_path": project / "reports/best_params.yaml",
        "results_csv": project / "reports/tune_results.csv",
        "plot_png": project / "reports/tune_fid.png",
    }


def children(client, parent_id):
    experiment = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return {run.data.tags["tune.trial_id"]: run for run in runs}


@pytest.fixture(scope="module")
def searched(ray_cluster, inputs, tmp_path_factory):
    """6 trials, one at a time: 2 schedules x lr (good, too small, divergent), ASHA."""
    project = tmp_path_factory.mktemp("tune-project")
    processed, featurenet = inputs
    best = run_sweep(
        BASE,
        processed_dir=processed,
        featurenet_dir=featurenet,
        storage_dir=project / "checkpoints",
        **sweep_outputs(project),
        project_dir=project,
    )
    return project, best


def test_sweep_ranks_stops_and_fails_trials(searched):
    project, best = searched
    table = pd.read_csv(project / "reports/tune_results.csv")
    assert len(table) == 6 and set(table["diffusion.schedule"]) == set(SCHEDULES)
    by_lr = {lr: rows for lr, rows in table.groupby("train.lr")}
    # the divergent trials fail alone, with the reason; the sweep still finishes
    assert list(by_lr[1e30]["status"]) == ["failed", "failed"]
    assert all(
        "Diverged: training diverged: loss inf in the steps up to 2" in e
        for e in by_lr[1e30]["error"]
    )
    # the learning trials run to the end; ASHA stops the one that barely moves at the 1st milestone
    assert list(by_lr[1e-2]["status"]) == ["completed", "completed"]
    assert list(by_lr[1e-7]["status"]) == ["stopped_early", "stopped_early"]
    assert list(by_lr[1e-7]["step"]) == [4, 4]
    fid4, fid8 = f"{METRIC}@4", f"{METRIC}@8"
    assert by_lr[1e-7][fid4].min() > by_lr[1e-2][fid4].max()
    # ranked best first: the winner is the completed trial with the lowest final FID
    completed = table[table["status"] == "completed"]
    assert table.iloc[0]["trial_id"] == best["trial_id"]
    assert table.iloc[0][fid8] == completed[fid8].min()
    assert best[METRIC] == pytest.approx(table.iloc[0][fid8])
    assert (project / "reports/tune_fid.png").stat().st_size > 10_000


def test_best_params_hold_the_winning_values_in_params_structure(searched):
    project, best = searched
    text = (project / "reports/best_params.yaml").read_text()
    assert text.startswith(f"# sweep {best['sweep']}: trial {best['trial_id']}")
    nested = yaml.safe_load(text)
    assert set(nested) == {"diffusion", "train"}
    assert read_best_params(project / "reports/best_params.yaml") == {
        "diffusion.schedule": best["diffusion.schedule"],
        "train.lr": 1e-2,
        "diffusion.loss.min_snr_gamma": best["diffusion.loss.min_snr_gamma"],
    }


def test_mlflow_parent_has_one_child_per_trial_with_its_params_and_metrics(searched):
    project, best = searched
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name(BASE.mlflow.experiment).experiment_id],
        filter_string=f"tags.`pipeline.run_name` = '{best['sweep']}'",
    )
    assert parent.info.status == "FINISHED" and parent.data.tags["dvc_stage"] == "tune"
    assert parent.data.params["tune.scheduler"] == "asha"
    assert parent.data.metrics[f"best_{METRIC}"] == pytest.approx(best[METRIC])
    assert parent.data.metrics["num_trials"] == 6 and parent.data.metrics["num_failed"] == 2
    assert parent.data.tags["tune.best_trial_id"] == best["trial_id"]
    assert parent.data.tags["mlflow.source.name"] == "stages/tune.py"
    (dataset,) = parent.inputs.dataset_inputs  # the UI's Dataset column
    assert parent.data.tags["data_manifest_sha256"].startswith(dataset.dataset.digest)
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "tune")}
    assert files == {"tune/best_params.yaml", "tune/tune_results.csv", "tune/tune_fid.png"}

    table = pd.read_csv(project / "reports/tune_results.csv").set_index("trial_id")
    runs = children(client, parent.info.run_id)
    assert set(runs) == set(table.index)
    expected_status = {"completed": "FINISHED", "stopped_early": "KILLED", "failed": "FAILED"}
    for trial_id, run in runs.items():
        row = table.loc[trial_id]
        params = run.data.params
        assert params["diffusion.schedule"] == row["diffusion.schedule"]
        assert float(params["train.lr"]) == row["train.lr"]
        assert params["train.steps"] == "8" and params["train.num_workers"] == "1"
        assert run.info.status == expected_status[row["status"]]
        assert run.data.tags["tune.status"] == row["status"]
        (trained_on,) = run.inputs.dataset_inputs  # each trial records the data it trained on
        assert trained_on.dataset.digest == dataset.dataset.digest
        history = client.get_metric_history(run.info.run_id, "loss")
        fids = client.get_metric_history(run.info.run_id, METRIC)
        if row["status"] == "failed":  # diverged before its first report: nothing logged
            assert fids == []
            continue
        step = int(row["step"])  # the last step Tune saw; a stopped trial may have gone on a bit
        steps = [m.step for m in history]
        assert steps[: step // 2] == list(range(2, step + 1, 2))
        assert steps == sorted(set(steps))  # each step logged once
        assert [m.step for m in fids][: step // 4] == list(range(4, step + 1, 4))
        assert {m.step: m.value for m in fids}[step] == pytest.approx(row[METRIC])
        images = client.list_artifacts(run.info.run_id, "images")
        assert images, "milestone sample grids are logged"


def test_best_params_round_trip_into_the_train_stage(
    searched, inputs, ray_cluster, tmp_path, monkeypatch
):
    from stages.train import main

    project, best = searched
    processed, _ = inputs
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(to_dict(BASE)))
    args = ["--params", str(params_file), "--data", str(processed)]
    for flag, path in (("--checkpoints", "ckpt"), ("--models", "models"), ("--report", "t.json"),
                       ("--history", "h.csv"), ("--samples", "s.png")):  # fmt: skip
        args += [flag, str(tmp_path / path)]
    best_file = project / "reports/best_params.yaml"
    monkeypatch.chdir(tmp_path)  # the train stage's MLflow store: ./mlflow.db
    assert main([*args, "--best", str(best_file)]) == 0
    trained = load_model(tmp_path / "models").params
    assert trained.diffusion.schedule == best["diffusion.schedule"]
    assert trained.train.lr == 1e-2 and trained.train.steps == BASE.train.steps  # not the budget
    assert trained.diffusion.loss.min_snr_gamma == best["diffusion.loss.min_snr_gamma"]
    # tune.enabled: false -> the file is ignored
    assert apply_best_params(with_tune(BASE, enabled=False), best_file) == with_tune(
        BASE, enabled=False
    )


def test_a_winning_null_reaches_best_params_as_null_not_nan():
    """``choice: [null, 5.0]``: the results table holds the null as NaN (a column of numbers);
    the winner's value is null again, which the train stage accepts (a NaN it refuses)."""
    table = pd.DataFrame({
        "status": ["completed", "completed"],
        "diffusion.loss.min_snr_gamma": [None, 5.0],
        "train.lr": [6.5e-4, 1e-4],
    })  # fmt: skip
    assert table["diffusion.loss.min_snr_gamma"].isna().iloc[0]  # as Ray's results come back
    _, values = winner(table, ["diffusion.loss.min_snr_gamma", "train.lr"], "s", None, "")
    assert values == {"diffusion.loss.min_snr_gamma": None, "train.lr": 6.5e-4}


def test_an_empty_best_params_file_while_tuning_is_enabled_is_an_error(tmp_path):
    path = tmp_path / "best_params.yaml"
    path.write_text("# tune.enabled is false\n{}\n")
    with pytest.raises(ConfigError, match="holds no tuned values but tune.enabled is true"):
        apply_best_params(BASE, path)
    path.write_text("train:\n  lr: -1.0\n")  # not a value the sweep could have chosen
    with pytest.raises(
        ConfigError, match=r"best_params.yaml: train.lr value -1.0 is outside tune.space's grid"
    ):
        apply_best_params(BASE, path)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def tune_stage(project, params, inputs, ray_cluster):
    """The tune stage's command line in ``project`` (its params.yaml written), the environment
    that joins ``ray_cluster``, and a client of the project's store (created first: polling a
    database while the stage creates it can race)."""
    processed, featurenet = inputs
    (project / "params.yaml").write_text(yaml.safe_dump(to_dict(params)))
    command = [sys.executable, "-m", "stages.tune", "--params", "params.yaml",
               "--data", str(processed), "--featurenet", str(featurenet),
               "--checkpoints", "checkpoints", "--best", "reports/best_params.yaml",
               "--results", "reports/tune_results.csv", "--plot", "reports/tune_fid.png"]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "PYTHONPATH": str(ROOT)}
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment_id(client, params.mlflow.experiment, project)
    return command, env, client


def test_interrupted_sweep_resumes_without_rerunning_ended_trials(ray_cluster, inputs, tmp_path):
    """Two trials side by side (fifo): SIGINT once one has finished, then re-run the stage."""
    params = with_tune(
        BASE,
        space=nest({"diffusion.schedule": {"grid": ["linear", "cosine", "sigmoid"]}}),
        scheduler="fifo",
        steps=16,
        max_concurrent_trials=None,  # as many as the cluster holds: 2 CPUs, 1 worker each
    )
    command, env, client = tune_stage(tmp_path, params, inputs, ray_cluster)

    def finished_children():
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string="tags.`tune.trial_id` != '' and attributes.status = 'FINISHED'",
        )
        return runs or None

    log = tmp_path / "first.log"  # a file, not a pipe: Tune's output would fill a pipe and block
    with log.open("w") as out:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            (done, *_) = wait_for(finished_children, 240, "a finished trial")
            first.send_signal(signal.SIGINT)
            first.wait(timeout=120)
        finally:
            first.kill()
    output = log.read_text()
    assert first.returncode == 130, output[-3000:]
    assert "re-run the stage to resume it" in output
    assert not (tmp_path / "reports/best_params.yaml").exists()  # nothing half-written
    before = {m.step for m in client.get_metric_history(done.info.run_id, "loss")}

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming sweep" in second.stdout + second.stderr
    table = pd.read_csv(tmp_path / "reports/tune_results.csv")
    assert len(table) == 3 and set(table["status"]) == {"completed"}
    parent_id = client.get_run(done.info.run_id).data.tags["mlflow.parentRunId"]
    runs = children(client, parent_id)
    assert set(runs) == set(table["trial_id"])  # one child per trial, none duplicated
    # the trial that had finished was not run again: same end time, each step logged once
    assert runs[done.data.tags["tune.trial_id"]].info.end_time == done.info.end_time
    # concurrent trials lost no metric points: every child has every step (resumed ones may
    # repeat the steps after their last milestone checkpoint, never miss one)
    for run in runs.values():
        losses = client.get_metric_history(run.info.run_id, "loss")
        assert {m.step for m in losses} == set(range(2, 17, 2))
        assert [m.step for m in client.get_metric_history(run.info.run_id, METRIC)][-1] == 16
    done_losses = client.get_metric_history(done.info.run_id, "loss")
    assert [m.step for m in done_losses] == sorted(before) == list(range(2, 17, 2))


def test_a_killed_asha_sweep_starts_over_and_gives_the_uninterrupted_table(
    ray_cluster, inputs, searched, tmp_path
):
    """Issue 47, class 5: SIGKILL during an ASHA sweep, then the stage again. Tune.restore does not
    restore ASHA's rungs (resumed trials that were due to stop ran on), so the sweep starts over,
    saying so, and its table and winner are the uninterrupted sweep's (``searched``: the same
    params, one trial at a time); the parent keeps one child per trial."""
    command, env, client = tune_stage(tmp_path, BASE, inputs, ray_cluster)

    def two_ended_trials():
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string="tags.`tune.trial_id` != '' and attributes.status != 'RUNNING'",
        )
        return runs if len(runs) >= 2 else None

    with (tmp_path / "first.log").open("w") as out:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            wait_for(two_ended_trials, 300, "two ended trials")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
        finally:
            first.kill()
    assert not (tmp_path / "reports/tune_results.csv").exists()
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert "was interrupted; starting it over" in output and "resuming sweep" not in output
    columns = [c for c in pd.read_csv(searched[0] / "reports/tune_results.csv").columns
               if c not in ("trial_id", "error")]  # fmt: skip
    table = pd.read_csv(tmp_path / "reports/tune_results.csv")
    expected = pd.read_csv(searched[0] / "reports/tune_results.csv")
    pd.testing.assert_frame_equal(table[columns], expected[columns])
    assert yaml.safe_load((tmp_path / "reports/best_params.yaml").read_text()) == (
        yaml.safe_load((searched[0] / "reports/best_params.yaml").read_text())
    )
    parent_id = client.get_run(
        client.search_runs([e.experiment_id for e in client.search_experiments()],
                           filter_string="tags.`tune.trial_id` != ''")[0].info.run_id
    ).data.tags["mlflow.parentRunId"]  # fmt: skip
    assert set(children(client, parent_id)) == set(table["trial_id"])


def test_a_trial_counts_as_ended_only_with_its_run_finished_and_its_final_checkpoint(tmp_path):
    """A sweep stopped between a trial's end and Tune's record of it re-runs that trial: it must
    then leave its child run as it ended (status, end time), and only then."""
    params = trial_params(BASE, {})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    storage = tmp_path / "storage"
    sweep = SweepConfig(BASE, "sweep", "", client.tracking_uri, "", "", None, str(storage))
    run_id = start_run(client, params.mlflow.experiment, "sweep-t1", {}, {}, tmp_path)
    write_checkpoint(storage / "t1", "final", params.train.steps)
    assert not ended(client, sweep, params, "t1")  # its run is still RUNNING
    client.set_terminated(run_id, "FINISHED")
    assert ended(client, sweep, params, "t1")
    assert not ended(client, sweep, params, "t2")  # no run
    shutil.rmtree(storage / "t1")
    write_checkpoint(storage / "t1", "milestone", params.train.steps - 1)
    assert not ended(client, sweep, params, "t1")  # no final checkpoint: it resumes training


def test_a_sweep_can_search_across_families_and_their_own_params(ray_cluster, inputs, tmp_path):
    """A VAE (its beta searched) against the class-conditional DDPM: the same probe FID ranks
    them, the class count comes from the data, and the winner's family reaches best_params."""
    processed, featurenet = inputs
    params = with_tune(
        BASE,
        space=nest({"model.family": {"grid": ["vae", "ddpm_cfg"]}, "vae.beta": {"choice": [0.5]}}),
        scheduler="fifo",
        max_concurrent_trials=None,  # side by side: without ASHA the order decides nothing
    )
    best = run_sweep(
        params,
        processed_dir=processed,
        featurenet_dir=featurenet,
        storage_dir=tmp_path / "checkpoints",
        **sweep_outputs(tmp_path),
        project_dir=tmp_path,
    )
    table = pd.read_csv(tmp_path / "reports/tune_results.csv")
    assert sorted(table["model.family"]) == ["ddpm_cfg", "vae"]
    assert set(table["status"]) == {"completed"} and table[METRIC].notna().all()
    assert best["model.family"] == table["model.family"].iloc[0]  # the lower FID
    assert best["model.family"] in ("vae", "ddpm_cfg") and best["vae.beta"] == 0.5


def test_the_data_classes_keep_the_search_that_names_the_sweep():
    """A class-conditional search resolves guidance.num_classes from the data and keeps its space,
    which the sweep's identity (its name) hashes: another space is another sweep."""
    from pipeline.train.inputs import with_data_classes

    space = nest({"model.family": {"grid": ["vae", "ddpm_cfg"]}, "vae.beta": {"choice": [0.5]}})
    params = with_tune(BASE, space=space, scheduler="fifo")
    resolved = with_data_classes(params, {"classes": [str(c) for c in range(10)]})
    assert resolved.guidance.num_classes == 10 and resolved.tune == params.tune
    assert resolved.tune.space == space and resolved.tune.enabled
