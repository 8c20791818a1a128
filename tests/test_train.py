"""Training on real Ray Train workers (local cluster, 2 CPU workers) with real MLflow (SQLite)."""

import contextlib
import dataclasses
import errno
import json
import logging
import shutil

import pandas as pd
import pytest
import ray
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, DistributedSampler

from pipeline.config import (
    Params,
    TrainConfig,
    flatten,
    from_dict,
    to_dict,
)
from pipeline.data.dataset import ProcessedImages
from pipeline.methods.ddpm import build_diffusion, build_unet
from pipeline.methods.export import load_model
from pipeline.methods.step import lr_at
from pipeline.reports.train import TrainReport
from pipeline.seeding import derived_seed
from pipeline.tracking import fluent_store
from pipeline.train.checkpoint import latest_checkpoint_dir, read_checkpoint, read_state
from pipeline.train.driver import fit, run_name
from pipeline.train.mlflow_model import load_logged_model
from tests.conftest import assert_same_tensors
from tests.factories import TINY, kill_worker, run_train, with_train

pytestmark = pytest.mark.slow  # real Ray training runs: `make test-fast` leaves them out


@pytest.fixture(scope="module")
def trained(ray_cluster, processed, tmp_path_factory, monkeypatch_module):
    """One uninterrupted TINY training, tracked in tmp/mlflow.db; shared by several tests."""
    root = tmp_path_factory.mktemp("trained")
    report = run_train(root, processed=processed, tags={"dvc_stage": "train"})
    return root, report


def final_state(storage, params, processed):
    """The state dict of the latest checkpoint of ``params``' run under ``storage``."""
    return read_state(latest_checkpoint_dir(storage / run_name(params, processed)))


def test_train_exports_a_loadable_model_and_reports(trained, processed):
    root, report = trained
    assert report.steps == 4 and report.num_workers == 2
    assert torch.isfinite(torch.tensor(report.final_loss)) and report.images_per_s > 0
    assert TrainReport.read(root / "reports/train.json") == report
    written = json.loads((root / "reports/train.json").read_text())
    assert written["final_loss"] == report.final_loss and "final_losses" not in written
    history = pd.read_csv(root / "reports/plots/train_loss.csv")
    assert list(history["step"]) == [1, 2, 3, 4]
    assert history["loss"].iloc[-1] == pytest.approx(report.final_loss)
    assert {"loss", "loss_simple", "lr", "grad_norm", "images_per_s"} <= set(history.columns)
    # lr logged for the step taken: warmup 5e-4, 1e-3, then constant
    assert list(history["lr"]) == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])
    config = json.loads((root / "models/config.json").read_text())
    assert config["step"] == 4 and from_dict(Params, config["params"]) == TINY
    model = load_model(root / "models")
    net, diffusion, params = model.net, model.diffusion, model.params
    assert params == TINY and diffusion.num_timesteps == 1000
    x = torch.randn(2, 1, 28, 28)
    out = net(x, torch.tensor([1, 500]))
    assert torch.isfinite(out).all() and out.abs().max() > 0  # moved off the zero-initialised head
    grid = (root / "reports/train_samples.png").read_bytes()
    assert grid.startswith(b"\x89PNG")


def test_mlflow_run_has_params_metric_histories_artifacts_and_a_loadable_model(trained):
    import mlflow.pyfunc

    root, report = trained
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(report.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == report.run_name
    flat = run.data.params
    assert flat["train.lr"] == "0.001" and flat["model.channel_mult"] == "[1, 2]"
    assert flat["diffusion.loss.w_simple"] == "1.0" and flat["ray.address"] == "None"
    trained_with = {
        k: v for k, v in to_dict(TINY).items() if k not in ("eval", "featurenet", "tune")
    }
    assert flat == flatten(trained_with)  # the run's sections, nested keys joined with dots
    assert run.data.tags["dvc_stage"] == "train"
    assert len(run.data.tags["data_manifest_sha256"]) == 64
    assert "git_commit" in run.data.tags
    for key in ("loss", "loss_simple", "lr", "grad_norm", "images_per_s"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [1, 2, 3, 4], key
    # the node's use of the machine (issue 42): one worker of the node logs it, at least at the end
    assert run.data.metrics["system/node_0/system_memory_usage_megabytes"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "model_files", "samples", "reports", "images"} <= artifacts
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    assert sum(p.endswith(".png") and "+step+2+" in p for p in images) == 1
    assert sum(p.endswith(".png") and "+step+4+" in p for p in images) == 1

    # the model files hold no pickle: our loader reads weights_only, pyfunc goes through our module
    net = load_model(root / "models").net
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 10, 999])
    with fluent_store(client.tracking_uri):
        logged_model = load_logged_model(report.mlflow_model_uri)
        logged, params = logged_model.net, logged_model.params
        pyfunc = mlflow.pyfunc.load_model(report.mlflow_model_uri)
        registered = load_logged_model("models:/diffusion-pipeline-ddpm/1").net
    assert params == TINY
    with torch.no_grad():
        torch.testing.assert_close(logged(x, t), net(x, t), rtol=0, atol=0)
        torch.testing.assert_close(registered(x, t), net(x, t), rtol=0, atol=0)
    out = pyfunc.predict({"x_t": x.numpy(), "t": t.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), net(x, t).detach(), rtol=0, atol=0)
    # the MLflow conventions the UI shows: source, dataset input, registered version
    assert run.data.tags["mlflow.source.name"] == "stages/train.py"
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_commit"]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "mnist-5k-processed"
    assert run.data.tags["data_manifest_sha256"].startswith(dataset.dataset.digest)
    assert report.registered_model == "diffusion-pipeline-ddpm"
    assert report.registered_model_version == 1
    version = client.get_model_version("diffusion-pipeline-ddpm", "1")
    assert version.run_id == run.info.run_id
    model_files = client.list_artifacts(run.info.run_id, "model_files")
    assert not any(f.path.endswith((".pkl", ".pickle")) for f in model_files)


def reference_weights(params: Params, processed, steps: int) -> dict[str, torch.Tensor]:
    """One process, no Ray: each step on the concatenation of both ranks' batches, with the timesteps
    and noise each rank draws from its step seed (in training_losses' order: t, then eps)."""
    tc = params.train
    torch.manual_seed(tc.seed)
    net = build_unet(params)
    diffusion = build_diffusion(params.diffusion)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dataset = ProcessedImages(processed, "train")
    shards = [
        iter(
            DataLoader(
                dataset,
                batch_size=tc.micro_batch_size,
                sampler=DistributedSampler(dataset, 2, rank, seed=tc.seed, drop_last=True),
                drop_last=True,
            )
        )
        for rank in (0, 1)
    ]
    for step in range(steps):
        xs, ts, noises = [], [], []
        for rank, shard in enumerate(shards):
            x = next(shard)
            torch.manual_seed(derived_seed(tc.seed, rank, step))
            ts.append(torch.randint(0, diffusion.num_timesteps, (x.shape[0],)))
            noises.append(torch.randn_like(x))
            xs.append(x)
        loss = diffusion.training_losses(
            net, torch.cat(xs), t=torch.cat(ts), noise=torch.cat(noises)
        ).loss  # (2B,) batch: the mean over both shards = the mean of the two ranks' losses
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, tc)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
        optimizer.step()
    return net.state_dict()


def test_two_ranks_equal_one_process_on_the_concatenated_batch(trained, processed):
    root, _ = trained
    state = final_state(root / "checkpoints", TINY, processed)
    expected = reference_weights(TINY, processed, steps=4)
    assert state["method"]["model"].keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(
            state["method"]["model"][name], value, rtol=1e-4, atol=1e-5, msg=name
        )


def test_killed_worker_restarts_from_the_last_checkpoint_and_finishes(
    ray_cluster, processed, trained, tmp_path, monkeypatch
):
    marker = tmp_path / "fault-fired"
    kill_worker(monkeypatch, rank=1, step=3, marker=marker)  # the 4th step; checkpoint at 2
    result = fit(TINY, processed_dir=processed, storage_dir=tmp_path / "checkpoints")
    assert marker.exists()  # the worker really died once
    assert result.error is None and result.metrics["step"] == 4
    state = read_checkpoint(result.checkpoint)
    assert state["step"] == 4 and [h["step"] for h in state["history"]] == [1, 2, 3, 4]
    # exact resume: steps 3-4 redone from the checkpoint equal the uninterrupted run's
    clean = final_state(trained[0] / "checkpoints", TINY, processed)
    for name, value in clean["method"]["model"].items():
        torch.testing.assert_close(
            state["method"]["model"][name], value, rtol=0, atol=1e-6, msg=name
        )


def test_a_full_disk_on_a_worker_is_one_line_naming_the_path(
    ray_cluster, processed, tmp_path, monkeypatch
):
    """Issue 47: a worker's write to a full disk ended the stage with Ray's multi-line worker
    report; now with one line naming the rank and the file, and the run FAILED."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = with_train(TINY, max_failures=0)
    where = tmp_path / "checkpoints/checkpoint.pt"
    full = OSError(errno.ENOSPC, "No space left on device", str(where))  # as pipeline.io names it
    kill_worker(monkeypatch, rank=1, step=1, marker=tmp_path / "fault-fired", error=full)
    with pytest.raises(OSError) as caught:
        run_train(tmp_path, params, processed)
    assert str(caught.value) == (
        f"training failed on worker rank 1: [Errno 28] No space left on device: '{where}'"
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (failed,) = client.search_runs(
        [client.get_experiment_by_name("diffusion-pipeline").experiment_id]
    )
    assert failed.info.status == "FAILED"


def test_interrupted_training_resumes_into_the_same_mlflow_run_and_then_is_reused(
    ray_cluster, processed, trained, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = with_train(TINY, max_failures=0)  # no restart: the first attempt fails for good
    # dies before its 4th step; the step-2 checkpoint is the resume point. (Dying right after a
    # checkpoint's report can lose it: the controller registers reports asynchronously.)
    with monkeypatch.context() as dying:
        kill_worker(dying, rank=0, step=3, marker=tmp_path / "fault-fired")
        with pytest.raises(ray.train.TrainingFailedError):
            run_train(tmp_path, params, processed)
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports/train.json").exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (failed,) = client.search_runs(
        [client.get_experiment_by_name("diffusion-pipeline").experiment_id]
    )
    assert failed.info.status == "FAILED"
    logged = [m.step for m in client.get_metric_history(failed.info.run_id, "loss")]
    assert logged in ([1, 2], [1, 2, 3])  # flushed at the step-2 checkpoint; 3 was buffered

    report = run_train(tmp_path, params, processed)  # `dvc repro` again: resumes at step 2
    assert report.mlflow_run_id == failed.info.run_id and report.steps == 4
    run = client.get_run(report.mlflow_run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == sorted(logged + [3, 4])  # resumed at 2: steps 3 and 4 trained again
    clean = final_state(trained[0] / "checkpoints", TINY, processed)
    state = final_state(tmp_path / "checkpoints", params, processed)
    for name, value in clean["method"]["model"].items():
        torch.testing.assert_close(
            state["method"]["model"][name], value, rtol=0, atol=1e-6, msg=name
        )

    # `dvc repro -f` with nothing changed: the finished run is reused, not trained again
    weights = torch.load(tmp_path / "models/ema.pt", weights_only=True)
    finished = client.get_run(report.mlflow_run_id)
    caplog.set_level(logging.INFO, logger="pipeline.train.driver")
    again = run_train(tmp_path, params, processed)
    assert f"reusing the finished run {report.run_name}" in caplog.text
    assert again == report  # the report the finished run logged, as it was
    reused = client.get_run(report.mlflow_run_id)  # the run stays as it finished
    assert reused.info.status == "FINISHED" and reused.info.end_time == finished.info.end_time
    assert reused.data.tags == finished.data.tags
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == sorted(
        steps
    )  # no step trained (or logged) again
    exported = torch.load(tmp_path / "models/ema.pt", weights_only=True)
    assert_same_tensors(exported, weights)  # the same final weights


def test_run_name_changes_with_what_shapes_the_weights_only(processed):
    assert run_name(TINY, processed) == run_name(TINY, processed)
    assert run_name(TINY, processed) != run_name(with_train(TINY, lr=2e-3), processed)
    assert run_name(TINY, processed) != run_name(with_train(TINY, steps=5), processed)
    watched = with_train(TINY, max_failures=3, log_every=2, sample_every=0, checkpoint_every=1)
    assert run_name(TINY, processed) == run_name(watched, processed)
    other_experiment = dataclasses.replace(
        TINY, mlflow=dataclasses.replace(TINY.mlflow, experiment="x")
    )
    assert run_name(TINY, processed) == run_name(other_experiment, processed)


def test_batch_must_split_across_workers_and_micro_batches():
    with pytest.raises(
        ValueError,
        match="batch_size 10 is not divisible by num_workers 4 x grad_accum_steps 1",
    ):
        TrainConfig(batch_size=10, num_workers=4)
    with pytest.raises(ValueError, match="num_workers 2 x grad_accum_steps 3"):
        TrainConfig(batch_size=8, num_workers=2, grad_accum_steps=3)
    assert TrainConfig(batch_size=24, num_workers=2, grad_accum_steps=3).micro_batch_size == 4


def test_too_few_images_for_one_batch_fails_before_ray_starts(processed, tmp_path):
    huge = with_train(TINY, batch_size=1024)
    with pytest.raises(
        ValueError,
        match="train.batch_size 1024 over 2 workers x 1 micro-batches needs at least 512 training images per worker; the data has 52 in total",
    ):
        run_train(tmp_path, huge, processed)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "mlflow.db").exists()


def test_mlflow_store_is_scoped_to_the_block(monkeypatch, tmp_path):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; train() must not leave it set (later
    # runs of the caller, and every subprocess it starts, would log to that store)
    import os

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with fluent_store(f"sqlite:///{tmp_path / 'a.db'}"):
        assert mlflow.get_tracking_uri() == os.environ["MLFLOW_TRACKING_URI"]
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with fluent_store(f"sqlite:///{tmp_path / 'a.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"


def test_a_corrupted_final_checkpoint_is_skipped_and_the_run_redone_from_the_previous_one(
    ray_cluster, processed, trained, tmp_path, caplog
):
    # the finished run's step-4 checkpoint with one flipped tensor byte (torch would load it:
    # NaN or wrong weights, then "Diverged"): skipped with a warning, resumed from step 2
    name = run_name(TINY, processed)
    shutil.copytree(trained[0] / "checkpoints" / name, tmp_path / name)
    final = next(
        d
        for d in (tmp_path / name).glob(
            "checkpoint_*"
        )  # not Ray's checkpoint_manager_snapshot.json
        if d.is_dir() and read_state(d, check=False)["step"] == 4
    )
    data = bytearray((final / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (final / "state.pt").write_bytes(bytes(data))
    result = fit(TINY, processed_dir=processed, storage_dir=tmp_path)
    assert any(
        str(final) in r.getMessage() and "sha256" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )
    state = read_checkpoint(result.checkpoint)
    assert state["step"] == 4 and [h["step"] for h in state["history"]] == [1, 2, 3, 4]
    clean = final_state(trained[0] / "checkpoints", TINY, processed)
    for key, value in clean["method"]["model"].items():
        torch.testing.assert_close(state["method"]["model"][key], value, rtol=0, atol=1e-6, msg=key)


def test_the_readme_model_loading_example_runs_on_the_logged_model(trained):
    import re

    import mlflow

    from tests.conftest import ROOT

    root, report = trained
    training = (
        (ROOT / "docs/pipeline.md").read_text().split("## Training", 1)[1].split("\n## ", 1)[0]
    )
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", training, re.S) if "load_logged" in b]
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 700])
    namespace = {"x_t": x_t, "t": t, "mlflow": mlflow}
    with (
        fluent_store(f"sqlite:///{root / 'mlflow.db'}"),
        torch.no_grad(),
        contextlib.chdir(root),
    ):
        exec(compile(block, "docs/pipeline.md", "exec"), namespace)
    net = load_model(root / "models").net
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(namespace["eps"]), net(x_t, t), rtol=0, atol=0)
    assert namespace["images"].shape == (16, 1, 28, 28)
