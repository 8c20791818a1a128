"""Launch training: a TorchTrainer over ``train_fn_per_worker``, tracked as one MLflow run.

The run name hashes what shapes the result: the params that shape the model, the dataset's manifest
and the training code (pipeline.provenance.code_digest). Re-running the same configuration resumes
it from its latest checkpoint (Ray resumes a RunConfig(name, storage_path) it has seen; MLflow finds
the run by its name tag), or reuses it when it finished; any change starts a new run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow
import pandas as pd
import ray
import ray.train
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.train.torch import TorchTrainer

from pipeline.cluster import for_workers, init_ray, resolve_use_gpu
from pipeline.config import Params
from pipeline.console import progress_bar
from pipeline.data.manifest import manifest_digest, read_manifest
from pipeline.io import atomic_path, first_line
from pipeline.methods.export import export_model
from pipeline.provenance import code_digest, identity_name
from pipeline.registry import family, method_class, method_module
from pipeline.reports.grid import save_image
from pipeline.reports.train import TrainReport
from pipeline.tracking import finished_run, fluent_store, logged_params, recorded
from pipeline.train.checkpoint import CHECKPOINT_FILE, latest_checkpoint_dir, read_state
from pipeline.train.inputs import (
    Connected,
    check_batches,
    check_data,
    connect_stage,
    run_sections,
    start_stage_run,
    with_data_classes,
)
from pipeline.train.mlflow_model import log_model
from pipeline.train.state import TrainState
from pipeline.train.worker import (
    WORKER_NODES_TAG,
    LoopConfig,
    ProbeConfig,
    train_fn_per_worker,
)

log = logging.getLogger(__name__)

DIVERGED_FILE = "diverged.json"  # in a run's storage directory, written by rank 0 on a NaN/inf loss
PROGRESS_FILE = "progress.json"  # beside it: rank 0's step, loss and speed, for the driver's bar

CODE = "pipeline.train.driver"  # the module whose source closure is the training loop


def training_code(params: Params) -> str:
    """sha256 of the training code: the loop's source closure and the family's module's."""
    modules = (CODE, method_module(params.model.family))
    return hashlib.sha256("".join(code_digest(m) for m in modules).encode()).hexdigest()


def run_name(params: Params, processed_dir: Path) -> str:
    """train-<12 hex>: sha256 of ``run_sections``, the data manifest and the training code. Runs
    with the same name resume each other's checkpoints."""
    identity = [run_sections(params), manifest_digest(processed_dir), training_code(params)]
    return identity_name("train", identity)


@contextlib.contextmanager
def following(progress_file: Path, total: int) -> Iterator[None]:
    """A progress bar on the terminal that follows ``progress_file`` (rank 0 rewrites it after
    every step) while the block runs."""
    bar = progress_bar(total=total, desc="train", unit="step")
    stop = threading.Event()

    def update() -> None:
        try:
            seen = json.loads(progress_file.read_text())
        except (OSError, ValueError):  # not written yet
            return
        if "loss" in seen:
            loss, speed = seen["loss"], seen["images_per_s"]
            bar.set_description(f"train loss {loss:.4f} | {speed:.0f} img/s", refresh=False)
        bar.update(seen["step"] - bar.n)

    def poll() -> None:
        while not stop.wait(0.5):
            update()

    thread = threading.Thread(target=poll, name="train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        update()
        bar.close()


class Diverged(ValueError):
    """The training loss became NaN or infinite (a bad learning rate or loss weighting)."""


def fit(
    params: Params,
    *,
    processed_dir: str | Path,
    storage_dir: str | Path,
    name: str | None = None,
    run_id: str | None = None,
    mlflow_uri: str | None = None,
    probe: ProbeConfig | None = None,
    callbacks: list[ray.train.UserCallback] | None = None,
    progress: bool = False,
) -> ray.train.Result:
    """Train on ``processed_dir``; checkpoints live under ``storage_dir``/``name`` (absolute,
    outside DVC's outs; ``name`` defaults to ``run_name``). With ``run_id``, rank 0 logs metrics
    and sample grids to that MLflow run at ``mlflow_uri``. ``probe`` adds a milestone score
    (tuning's FID); ``callbacks`` go to the RunConfig (Tune's report callback); ``progress``
    shows a bar on the terminal (rank 0's step, loss and speed). Raises ``Diverged`` on a non-finite loss."""
    processed_dir, storage_dir = Path(processed_dir).resolve(), Path(storage_dir).resolve()
    check_batches(params, read_manifest(processed_dir))
    init_ray(params, mlflow_uri)
    train = params.train
    name = name or run_name(params, processed_dir)
    resume_from = resume_point(storage_dir / name, train.steps)
    diverged_file = storage_dir / name / DIVERGED_FILE
    diverged_file.unlink(missing_ok=True)
    progress_file = storage_dir / name / PROGRESS_FILE
    progress_file.unlink(missing_ok=True)
    loop = LoopConfig(
        params=params,
        method=method_class(params.model.family),
        family=family(params.model.family),
        processed_dir=str(processed_dir),
        diverged_file=str(diverged_file),
        resume_from=str(resume_from) if resume_from else None,
        run_id=run_id,
        tracking_uri=mlflow_uri,
        probe=probe,
        progress_file=str(progress_file) if progress else None,
    )
    trainer = TorchTrainer(
        train_fn_per_worker,
        train_loop_config=loop,
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.num_workers, use_gpu=resolve_use_gpu(train.use_gpu)
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage_dir),
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            callbacks=callbacks,
        ),
    )
    log.info("training %s: %d steps on %d workers", name, train.steps, train.num_workers)
    if progress:
        with following(progress_file, train.steps):
            result = fitted(trainer)
    else:
        result = fitted(trainer)
    check_converged(diverged_file, params)
    return result


def resume_point(run_dir: Path, steps: int) -> Path | None:
    """The latest checkpoint of the run in ``run_dir`` (None: a fresh start), said in the log."""
    resume_from = latest_checkpoint_dir(run_dir)
    if resume_from:
        step = read_state(resume_from, check=False)["step"]
        if step == steps:
            done = "%s is at its final step already (%s): nothing to train"
            log.info(done, run_dir.name, resume_from)
        else:
            log.info("resuming %s from step %d (%s)", run_dir.name, step, resume_from)
    return resume_from


def check_converged(diverged_file: Path, params: Params) -> None:
    """``Diverged`` when a worker wrote ``diverged_file`` (a non-finite loss, its step)."""
    if diverged_file.is_file():
        last = json.loads(diverged_file.read_text())
        raise Diverged(
            f"training diverged: loss {last['loss']} in the steps up to {last['step']} "
            f"(train.lr {params.train.lr}, diffusion.schedule {params.diffusion.schedule}); "
            "lower the learning rate or check the loss weights"
        )


def fitted(trainer: TorchTrainer) -> ray.train.Result:
    """``trainer.fit()``; a worker's I/O error (a full disk, a missing file) as one OSError
    naming the rank and the path instead of Ray's multi-line worker-group report."""
    try:
        return trainer.fit()
    except ray.train.WorkerGroupError as exc:
        failures = sorted(
            (error.errno is None, rank, error)  # errors with an errno (ENOSPC, ...) first
            for rank, error in exc.worker_failures.items()
            if isinstance(error, OSError)
        )
        if not failures:
            raise
        _, rank, error = failures[0]
        raise OSError(f"training failed on worker rank {rank}: {first_line(error)}") from exc


def write_history(history: list[dict[str, float]], path: str | Path) -> None:
    """The logged metrics, one row per report (step, loss, lr, grad_norm, ...), as CSV."""
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def final_state(params: Params, checkpoint_dir: str | Path) -> TrainState:
    """The TrainState of a finished run's last checkpoint, on the CPU."""
    state = TrainState(method_class(params.model.family)(params, torch.device("cpu")), 0.0)
    state.load_state_dict(read_state(checkpoint_dir))
    return state


def finished_outputs(
    client: MlflowClient, params: Params, name: str, checkpoints_dir: Path, report_name: str
) -> tuple[TrainReport, TrainState] | None:
    """The report ``reports/<report_name>`` logged by the FINISHED MLflow run ``name`` and its
    final state, when both exist (the checkpoint at ``train.steps`` under ``checkpoints_dir``):
    what a re-run with nothing changed re-exports without training, or logging, again."""
    run = finished_run(client, params.mlflow.experiment, name)
    final = latest_checkpoint_dir(checkpoints_dir / name)
    if run is None or final is None or read_state(final, check=False)["step"] != params.train.steps:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            logged = client.download_artifacts(run.info.run_id, f"reports/{report_name}", tmp)
        except (MlflowException, OSError):  # finished without its report: train it anew
            return None
        report = TrainReport.read(logged)
    log.info("reusing the finished run %s (same params, data and code): %s", name, final)
    return report, final_state(params, final)


def write_outputs(
    params: Params, state: TrainState, *, models_dir: Path, history_csv: Path, samples_png: Path
) -> None:
    """The final state as the stage's outputs: the exported model, the loss history, the grid."""
    export_model(state.ema_weights(), step=state.step, params=params, out_dir=models_dir)
    write_history(state.history, history_csv)
    save_image(state.samples.numpy(), samples_png)


def train(
    params: Params,
    *,
    processed_dir: str | Path,
    checkpoints_dir: str | Path,
    models_dir: str | Path,
    report_path: str | Path,
    history_csv: str | Path,
    samples_png: str | Path,
    project_dir: str | Path = ".",
    tags: Mapping[str, str] | None = None,
) -> TrainReport:
    """The train stage: fit (resuming a matching run), export ``models_dir``, write the report
    (DVC metrics), the loss history (DVC plots) and the final sample grid, and record it all in one
    MLflow run. Returns the report. Every path is a keyword: two swapped paths cannot silently
    write to the wrong file."""
    processed_dir = Path(processed_dir).resolve()
    params = with_data_classes(params, check_data(params, processed_dir))
    name = run_name(params, processed_dir)
    stage = connect_stage(params, checkpoints_dir, project_dir)
    outputs = {"models_dir": models_dir, "history_csv": history_csv, "samples_png": samples_png}
    reused = finished_outputs(stage.client, params, name, stage.storage_dir, Path(report_path).name)
    if reused:  # the finished run stays as it finished: nothing is logged to it again
        report, state = reused
        write_outputs(params, state, **outputs)
        report.write(report_path)
        return report
    accelerator = "gpu" if resolve_use_gpu(params.train.use_gpu) else "cpu"
    run_id = start_stage_run(
        stage,
        params,
        name=name,
        logged=logged_params(params),
        tags={"accelerator": accelerator, **(tags or {})},
        processed_dir=processed_dir,
        manifest_sha256=manifest_digest(processed_dir),
        entry_point="stages/train.py",
        project_dir=project_dir,
    )
    started = time.perf_counter()
    with recorded(stage.client, run_id):
        result = fit(
            params,
            processed_dir=for_workers(params, processed_dir),
            storage_dir=stage.storage_dir,
            name=name,  # computed above: the code and manifest digests are not redone
            run_id=run_id,
            mlflow_uri=stage.uri,
            progress=True,
        )
        state, final = finished(params, result, stage.storage_dir / name)
        wall_time = time.perf_counter() - started
        write_outputs(params, state, **outputs)
        report = record_training(
            stage, params, state, run_id, name, final, wall_time, report_path=report_path, **outputs
        )
    return report


def finished(
    params: Params, result: ray.train.Result, run_dir: Path
) -> tuple[TrainState, str | Path]:
    """The final state of a finished fit and its checkpoint folder; RuntimeError if the run ended
    without it. Ray's snapshot can miss a checkpoint persisted just before a crash: the run
    folder's scan is the fallback."""
    final = result.checkpoint.path if result.checkpoint else None
    final = final or latest_checkpoint_dir(run_dir)
    state = final_state(params, final) if final else None
    if state is None or state.step != params.train.steps:
        raise RuntimeError(f"training run {result.path} ended without its final checkpoint")
    return state, final


def record_training(
    stage: Connected,
    params: Params,
    state: TrainState,
    run_id: str,
    name: str,
    final: str | Path,
    wall_time: float,
    *,
    models_dir: str | Path,
    history_csv: str | Path,
    samples_png: str | Path,
    report_path: str | Path,
) -> TrainReport:
    """Log the finished training to its MLflow run: the model files, the final checkpoint, the
    MLflow model (registered when ``mlflow.registered_model``), the grid, the history, the
    family's warnings and the report, which it writes to ``report_path`` and returns."""
    with fluent_store(stage.uri), mlflow.start_run(run_id=run_id):
        mlflow.log_artifacts(str(models_dir), "model_files")
        mlflow.log_artifact(str(Path(final) / CHECKPOINT_FILE), "checkpoint")
        info = log_model(Path(models_dir), params.mlflow.registered_model)
        mlflow.log_artifact(str(samples_png), "samples")
        mlflow.log_artifact(str(history_csv), "reports")
        last = state.history[-1]
        warnings = method_class(params.model.family).warnings(params, state.history)
        for line in warnings:
            log.warning(line)
            mlflow.set_tag("warning", line)
        report = TrainReport(
            steps=state.step,
            final_losses={k: v for k, v in last.items() if k.startswith("loss")},
            images_per_s=statistics.median(h["images_per_s"] for h in state.history),
            wall_time_s=round(wall_time, 2),
            num_workers=params.train.num_workers,
            # the Ray node of each rank: a multi-node run shows more than one id
            worker_nodes=stage.client.get_run(run_id).data.tags[WORKER_NODES_TAG].split(","),
            run_name=name,
            mlflow_run_id=run_id,
            mlflow_model_uri=info.model_uri,
            registered_model=params.mlflow.registered_model,
            registered_model_version=info.registered_model_version,
            warnings=warnings,
        )
        mlflow.log_metric("wall_time_s", report.wall_time_s)
        report.write(report_path)
        mlflow.log_artifact(str(report_path), "reports")
    return report
