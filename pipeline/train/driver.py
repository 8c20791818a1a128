"""Launch training: a TorchTrainer over ``train_fn_per_worker``, tracked as one MLflow run.

The run name hashes what shapes the result: the params that shape the model, the dataset's manifest
and the training code (pipeline.provenance.code_digest). Re-running the same configuration resumes
it from its latest checkpoint (Ray resumes a RunConfig(name, storage_path) it has seen; MLflow finds
the run by its name tag), or reuses it when it finished; any change starts a new run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import ray
import ray.train
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from ray.train.torch import TorchTrainer

from pipeline.config import TRAIN_OPERATIONAL, Params, to_dict
from pipeline.data.manifest import manifest_digest, read_manifest, verify_processed
from pipeline.io import atomic_path
from pipeline.provenance import code_digest
from pipeline.reports.grid import save_image
from pipeline.tracking import (
    fluent_store,
    log_dataset,
    provenance_tags,
    start_run,
    tracking_uri,
)
from pipeline.train.checkpoint import CHECKPOINT_FILE, latest_checkpoint_dir, read_state
from pipeline.train.export import export_model
from pipeline.train.mlflow_model import log_model
from pipeline.train.worker import train_fn_per_worker

log = logging.getLogger(__name__)

DIVERGED_FILE = "diverged.json"  # in a run's storage directory, written by rank 0 on a NaN/inf loss

RUN_SECTIONS = ("data", "diffusion", "model", "train")  # what the trained weights depend on
# not logged as the training run's params: evaluate records eval settings as tags, tune has its own runs
UNLOGGED_SECTIONS = ("featurenet", "eval", "tune")


CODE = "pipeline.train.driver"  # the module whose source closure is the training code


def run_name(params: Params, processed_dir: Path) -> str:
    """train-<12 hex>: sha256 of the data/diffusion/model/train params (less TRAIN_OPERATIONAL
    ones), the data manifest and the training code. Runs with the same name resume each other's
    checkpoints."""
    sections = {k: v for k, v in to_dict(params).items() if k in RUN_SECTIONS}
    sections["train"] = {k: v for k, v in sections["train"].items() if k not in TRAIN_OPERATIONAL}
    identity = [sections, manifest_digest(processed_dir), code_digest(CODE)]
    return "train-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def logged_params(params: Params) -> dict[str, Any]:
    """The sections a training run records as MLflow params (what its weights depend on, and
    where it ran)."""
    return {k: v for k, v in to_dict(params).items() if k not in UNLOGGED_SECTIONS}


def resolve_use_gpu(setting: str | bool) -> bool:
    """``auto``: use GPUs when the Ray cluster has any."""
    if setting == "auto":
        return ray.cluster_resources().get("GPU", 0) > 0
    return bool(setting)


def check_batches(params: Params, manifest: Mapping[str, Any]) -> None:
    """Raise ValueError unless every worker gets at least one full batch per epoch (the loader drops
    incomplete batches, so otherwise the training loop would never take a step)."""
    count, tc = manifest["splits"]["train"]["count"], params.train
    per_worker = count // tc.num_workers  # DistributedSampler(drop_last=True) shard size
    if per_worker < tc.micro_batch_size:
        raise ValueError(
            f"train.batch_size {tc.batch_size} over {tc.num_workers} workers x "
            f"{tc.grad_accum_steps} micro-batches needs at least {tc.micro_batch_size} training "
            f"images per worker; the data has {count} in total"
        )


def check_data(
    params: Params, processed_dir: Path, min_counts: Mapping[str, tuple[int, str]] | None = None
) -> dict[str, Any]:
    """The stage's one check of ``processed_dir`` before any compute: the arrays against their
    manifest (pipeline.data.manifest), the image shape against the params, ``min_counts``, one
    batch per worker of ``params``. Returns the manifest."""
    manifest = verify_processed(
        processed_dir, image_shape=params.data.image_shape, min_counts=min_counts
    )
    check_batches(params, manifest)
    return manifest


def is_remote(address: str | None) -> bool:
    """Whether a Ray address names another machine: its host resolves, and to no address of this
    one (an IP of this machine can be bound here). ``auto``, ``local``, none, or an unresolvable
    name (ray.init reports it) are not remote."""
    host = (address or "").removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host in ("", "auto", "local"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    for family, _, _, _, sockaddr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((sockaddr[0], 0))
                return False
            except OSError:
                continue
    return True


def init_ray(params: Params, tracking: str | None = None) -> None:
    """Join ``$RAY_ADDRESS`` or ``ray.address``, else start a local cluster (once per process).
    With ``tracking`` (an MLflow URI), refuse a cluster whose workers may run on other machines
    (a non-local address, or more than one node) when the store is a local SQLite file: each
    machine would log into a file on its own disk. Connection errors name the address."""
    address = os.environ.get("RAY_ADDRESS") or params.ray.address
    where = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "ray.address"
    local_store = bool(tracking) and tracking.startswith("sqlite:")

    def refuse(why: str) -> None:
        raise ValueError(
            f"{why}, but MLflow tracks into {tracking}, a file on one machine's disk: workers on "
            "other nodes would log into their own copy and the metrics would be lost. Set "
            "MLFLOW_TRACKING_URI to a tracking server (mlflow server)"
        )

    if local_store and is_remote(address):
        refuse(f"{where} {address!r} is a remote Ray cluster")
    if not ray.is_initialized():
        try:  # with the dashboard: Ray Train's cleanup uses its state API
            ray.init(address=address)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(
                f"cannot connect to the Ray cluster at {where} {address!r}: {first}"
            ) from None
    if local_store:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if len(nodes) > 1:
            refuse(f"the Ray cluster has {len(nodes)} nodes")


class Diverged(ValueError):
    """The training loss became NaN or infinite (a bad learning rate or loss weighting)."""


def fit(
    params: Params,
    processed_dir: str | Path,
    storage_dir: str | Path,
    *,
    name: str | None = None,
    run_id: str | None = None,
    mlflow_uri: str | None = None,
    probe: Mapping[str, Any] | None = None,
    callbacks: list[ray.train.UserCallback] | None = None,
    fault: Mapping[str, Any] | None = None,
) -> ray.train.Result:
    """Train on ``processed_dir``; checkpoints live under ``storage_dir``/``name`` (absolute,
    outside DVC's outs; ``name`` defaults to ``run_name``). With ``run_id``, rank 0 logs metrics
    and sample grids to that MLflow run at ``mlflow_uri``. ``probe`` ({featurenet_dir, every,
    count, steps, seed}) adds the milestone FID (pipeline.evaluate.probe); ``callbacks`` go to
    the RunConfig (Tune's report callback); ``fault`` is the test-only hook of
    pipeline.train.worker.maybe_fail. Raises ``Diverged`` on a non-finite loss."""
    processed_dir, storage_dir = Path(processed_dir).resolve(), Path(storage_dir).resolve()
    check_batches(params, read_manifest(processed_dir))
    init_ray(params, mlflow_uri)
    tc = params.train
    name = name or run_name(params, processed_dir)
    resume_from = latest_checkpoint_dir(storage_dir / name)
    diverged_file = storage_dir / name / DIVERGED_FILE
    diverged_file.unlink(missing_ok=True)
    if resume_from:
        step = read_state(resume_from, check=False)["step"]
        if step == tc.steps:
            log.info(
                "reusing the finished run %s (same params, data and code): %s", name, resume_from
            )
        else:
            log.info("resuming %s from step %d (%s)", name, step, resume_from)
    loop_config = {
        "params": to_dict(params),
        "processed_dir": str(processed_dir),
        "resume_from": str(resume_from) if resume_from else None,
        "run_id": run_id,
        "tracking_uri": mlflow_uri,
        "probe": dict(probe) if probe else None,
        "diverged_file": str(diverged_file),
        "fault": dict(fault) if fault else None,
    }
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers, use_gpu=resolve_use_gpu(tc.use_gpu)
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage_dir),
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
            callbacks=callbacks,
        ),
    )
    log.info("training %s: %d steps on %d workers", name, tc.steps, tc.num_workers)
    result = trainer.fit()
    if diverged_file.is_file():
        last = json.loads(diverged_file.read_text())
        raise Diverged(
            f"training diverged: loss {last['loss']} in the steps up to {last['step']} "
            f"(train.lr {tc.lr}, diffusion.schedule {params.diffusion.schedule}); lower the "
            "learning rate or check the loss weights"
        )
    return result


def write_history(history: list[dict[str, float]], path: str | Path) -> None:
    """The logged metrics, one row per report (step, loss, lr, grad_norm, ...), as CSV."""
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def train(
    params: Params,
    processed_dir: str | Path,
    checkpoints_dir: str | Path,
    models_dir: str | Path,
    report_path: str | Path,
    history_csv: str | Path,
    samples_png: str | Path,
    *,
    project_dir: str | Path = ".",
    tags: Mapping[str, str] | None = None,
    fault: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The train stage: fit (resuming a matching run), export ``models_dir``, write the report,
    loss history and final sample grid, and record it all in one MLflow run. Returns the report."""
    processed_dir = Path(processed_dir).resolve()
    check_data(params, processed_dir)
    name = run_name(params, processed_dir)
    uri = tracking_uri(project_dir)
    init_ray(params, uri)  # connect before an MLflow run exists: a bad address leaves no run
    client = MlflowClient(uri)
    manifest_sha256 = manifest_digest(processed_dir)
    all_tags = {
        **provenance_tags(project_dir, "stages/train.py", manifest_sha256),
        **(tags or {}),
    }
    run_id = start_run(
        client, params.mlflow.experiment, name, logged_params(params), all_tags, project_dir
    )
    log_dataset(client, run_id, processed_dir, f"{params.data.source}-processed", manifest_sha256)
    started = time.perf_counter()
    try:
        result = fit(
            params, processed_dir, checkpoints_dir, run_id=run_id, mlflow_uri=uri, fault=fault
        )
        # Ray's snapshot can miss a checkpoint persisted just before a crash: fall back to the scan
        final = result.checkpoint.path if result.checkpoint else None
        final = final or latest_checkpoint_dir(Path(checkpoints_dir).resolve() / name)
        state = read_state(final) if final else None
        if state is None or state["step"] != params.train.steps:
            raise RuntimeError(f"training run {result.path} ended without its final checkpoint")
        wall_time = time.perf_counter() - started
        export_model(state, params, models_dir)
        write_history(state["history"], history_csv)
        save_image(state["samples"].numpy(), samples_png)
        with fluent_store(uri), mlflow.start_run(run_id=run_id):
            mlflow.log_artifacts(str(models_dir), "model_files")
            mlflow.log_artifact(str(Path(final) / CHECKPOINT_FILE), "checkpoint")
            info = log_model(Path(models_dir), params.mlflow.registered_model)
            mlflow.log_artifact(str(samples_png), "samples")
            mlflow.log_artifact(str(history_csv), "reports")
            last = state["history"][-1]
            report = {
                "steps": state["step"],
                "final_loss": last["loss"],
                "final_loss_simple": last["loss_simple"],
                "images_per_s": statistics.median(h["images_per_s"] for h in state["history"]),
                "wall_time_s": round(wall_time, 2),
                "num_workers": params.train.num_workers,
                "run_name": name,
                "mlflow_run_id": run_id,
                "mlflow_model_uri": info.model_uri,
                "registered_model": params.mlflow.registered_model,
                "registered_model_version": info.registered_model_version,
            }
            mlflow.log_metric("wall_time_s", report["wall_time_s"])
            with atomic_path(report_path) as tmp:
                tmp.write_text(json.dumps(report, indent=2) + "\n")
            mlflow.log_artifact(str(report_path), "reports")
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    return report
