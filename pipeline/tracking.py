"""MLflow tracking: where runs are stored, one run per training, flattened params.

The store is ``$MLFLOW_TRACKING_URI`` when set (a tracking server at scale), else a SQLite database
``<project>/mlflow.db`` with artifacts in ``<project>/mlartifacts`` (absolute paths, so Ray workers
running in other directories write to the same place). A training run is found again by its
``pipeline.run_name`` tag, so a resumed training keeps logging into the run it started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
import sqlalchemy
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)
from sqlalchemy.exc import SQLAlchemyError

from pipeline.config import Params, flatten, to_dict
from pipeline.console import redact, say
from pipeline.io import CorruptFileError, first_line
from pipeline.workspace import experiment_tags, lasting

RUN_NAME_TAG = "pipeline.run_name"
# not logged as a run's params: evaluate records eval settings as tags, tune has its own runs
UNLOGGED_SECTIONS = ("featurenet", "eval", "tune")


PROBE_TIMEOUT_S = 10  # seconds: how long a tracking server may take to answer the first request
# seconds a write to a SQLite store waits while another process holds its lock (SQLite's busy
# timeout; Python's default, 5 s, failed a training's metric logging while an `mlflow ui` or a
# second pipeline wrote for ~30 s)
BUSY_TIMEOUT_S = 300


BUSY_NOTICE_S = 10  # seconds a statement waits before the wait is said


class _LockWatch:
    """The SQLite statements this process has in flight; a daemon thread says, once per wait,
    when one has waited BUSY_NOTICE_S for a lock (SQLite's busy handler cannot call Python)."""

    def __init__(self) -> None:
        self.inflight: dict[int, tuple[float, str]] = {}  # thread id -> (start, database)
        self.said: set[int] = set()
        threading.Thread(target=self.watch, name="sqlite-lock-watch", daemon=True).start()

    def before(self, conn: Any, *_args: Any) -> None:
        if conn.engine.dialect.name == "sqlite":
            self.inflight[threading.get_ident()] = (time.monotonic(), conn.engine.url.database)

    def after(self, *_args: Any) -> None:
        self.inflight.pop(threading.get_ident(), None)
        self.said.discard(threading.get_ident())

    def watch(self) -> None:
        while True:
            time.sleep(1)
            now = time.monotonic()
            for thread, (start, database) in list(self.inflight.items()):
                if now - start >= BUSY_NOTICE_S and thread not in self.said:
                    self.said.add(thread)
                    say(
                        f"{database}: waiting for the MLflow database, which another process "
                        f"holds locked (up to {BUSY_TIMEOUT_S} s)"
                    )


def _busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")


def patient_sqlite() -> None:
    """Every SQLite connection this process opens (MLflow's SQLAlchemy engines included) waits up
    to BUSY_TIMEOUT_S for a lock another process holds, instead of failing after 5 s with
    "database is locked": a busy store delays a write, it does not end a run. A wait longer than
    BUSY_NOTICE_S is said. Call before the first MlflowClient of a process; idempotent."""
    engine = sqlalchemy.engine.Engine
    if not sqlalchemy.event.contains(engine, "connect", _busy_timeout):
        watch = _LockWatch()
        sqlalchemy.event.listen(engine, "connect", _busy_timeout)
        sqlalchemy.event.listen(engine, "before_cursor_execute", watch.before)
        sqlalchemy.event.listen(engine, "after_cursor_execute", watch.after)
        sqlalchemy.event.listen(engine, "handle_error", watch.after)


@contextlib.contextmanager
def _patient_once(timeout_s: int) -> Iterator[None]:
    """MLflow's HTTP requests in the block: no retries, ``timeout_s`` each (its defaults retry
    with backoff for minutes before saying anything)."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(uri: str, timeout_s: int = PROBE_TIMEOUT_S) -> MlflowClient:
    """A client of the tracking store ``uri`` once it has answered one request: ConnectionError
    naming a server that does not answer within ``timeout_s``, CorruptFileError naming a SQLite
    file that is not a readable MLflow database (instead of a SQLAlchemy traceback)."""
    shown = redact(uri)
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
        except OSError as exc:
            raise ConnectionError(
                f"MLflow tracking server {shown} does not answer ({first_line(exc)}); check "
                "MLFLOW_TRACKING_URI and that the server runs"
            ) from None
    patient_sqlite()
    try:
        with _patient_once(timeout_s):
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
    except (MlflowException, SQLAlchemyError) as exc:
        database = "/" + parts.path.lstrip("/")  # sqlite:////abs/mlflow.db -> /abs/mlflow.db
        if parts.scheme == "sqlite" and "database is locked" in str(exc):
            raise ConnectionError(
                f"{database}: the MLflow database stayed locked by another process for "
                f"{BUSY_TIMEOUT_S} s (busy, not damaged); re-run when that process is done"
            ) from None
        if parts.scheme == "sqlite":
            raise CorruptFileError(
                f"{database}: not a readable MLflow database ({first_line(exc)}); move it "
                "aside and re-run, or set MLFLOW_TRACKING_URI"
            ) from None
        raise ConnectionError(f"MLflow tracking store {shown}: {first_line(exc)}") from None
    return client


class BufferedMetrics:
    """A run's metrics logged off the caller's thread (MLflow's asynchronous logging): a busy
    store delays the records, not the training steps. ``flush`` waits for every batch logged so
    far and raises ConnectionError naming the store and the first failure, so a run whose
    metrics did not all land is not reported finished."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.pending: list[Any] = []  # mlflow RunOperations, one per log()

    def log(self, metrics: list[Metric]) -> None:
        self.pending.append(self.client.log_batch(self.run_id, metrics=metrics, synchronous=False))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        try:
            for operations in pending:
                operations.wait()
        except MlflowException as exc:
            raise ConnectionError(
                f"MLflow tracking store {redact(self.client.tracking_uri)}: the run's metrics "
                f"were not all recorded ({first_line(exc)})"
            ) from None


@contextlib.contextmanager
def system_metrics(uri: str, run_id: str | None, node: str, every_s: float) -> Iterator[None]:
    """The machine's CPU, memory, disk and network use (and GPUs' where pynvml is installed)
    logged to run ``run_id`` as ``system/<node>/...`` every ``every_s`` seconds while the block
    runs (MLflow's SystemMetricsMonitor, on psutil, which Ray brings): whether a cluster run was
    starved. The block's last moments are logged when it ends, so a run shorter than ``every_s``
    has one sample too. Nothing without a run or with ``every_s`` 0."""
    if not run_id or not every_s:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=every_s, resume_logging=True, node_id=node, tracking_uri=uri
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()  # stops sampling without logging what it sampled since the last log
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()


CHAMPION = "champion"  # the registry alias of the best version (MLflow's aliases replace stages)
PROTOCOL_TAG = "eval_protocol"  # a version's scoring settings, digested: scores compare within one


def promote_champion(
    client: MlflowClient, name: str, version: str, metric: str, protocol: str
) -> str:
    """Move alias CHAMPION of registered model ``name`` to ``version`` when its ``metric`` tag
    (lower is better) beats the champion's, scored under the same ``protocol`` (its
    PROTOCOL_TAG; a tie keeps the champion); the first scored version is champion. Returns the
    decision as a line for the log."""
    scored = client.get_model_version(name, version)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    if champion is not None and champion.version != scored.version:
        if champion.tags.get(PROTOCOL_TAG) != protocol or metric not in champion.tags:
            return (
                f"{name}@{CHAMPION} stays version {champion.version}: scored with other "
                f"evaluation settings, not comparable with version {version}'s {metric}"
            )
        if not float(scored.tags[metric]) < float(champion.tags[metric]):
            return (
                f"{name}@{CHAMPION} stays version {champion.version} ({metric} "
                f"{float(champion.tags[metric]):.4g} against {float(scored.tags[metric]):.4g})"
            )
    client.set_registered_model_alias(name, CHAMPION, version)
    return f"{name}@{CHAMPION} is version {version} ({metric} {float(scored.tags[metric]):.4g})"


def tracking_uri(project_dir: str | Path = ".") -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<absolute project_dir>/mlflow.db``, in the
    workspace when DVC runs the stage in a temporary copy (pipeline.workspace.lasting)."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{lasting(project_dir) / 'mlflow.db'}"
    )


@contextlib.contextmanager
def fluent_store(uri: str) -> Iterator[None]:
    """Point mlflow's fluent API (``mlflow.start_run``, ``mlflow.pytorch.log_model``) at ``uri``
    for the block only. ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``: left set,
    it would redirect the caller's later runs and every subprocess it starts."""
    before = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri keeps both equal
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None: unset both again


def git_commit(directory: str | Path = ".") -> str | None:
    """The checked-out commit of the repository holding ``directory``, None outside git."""
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def provenance_tags(project_dir: str | Path, entry_point: str, manifest_sha256: str) -> dict:
    """What a run was made from, as MLflow's own tags (the UI's Source column: the entry point
    and its git commit) and ours (``git_commit``, ``data_manifest_sha256``, and under ``dvc exp
    run`` the experiment's name and baseline commit: pipeline.workspace.experiment_tags)."""
    commit = git_commit(project_dir) or "unknown"
    return {
        MLFLOW_SOURCE_NAME: entry_point,
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_GIT_COMMIT: commit,
        "git_commit": commit,
        "data_manifest_sha256": manifest_sha256,
        **experiment_tags(),
    }


def log_dataset(
    client: MlflowClient, run_id: str, processed_dir: str | Path, name: str, digest: str
) -> None:
    """Record the processed data as the run's dataset input (the UI's Dataset column): its name,
    its digest (the manifest's sha256, which covers every array) and where it lies."""
    dataset = MetaDataset(
        LocalArtifactDatasetSource(str(Path(processed_dir).resolve())),
        name=name,
        digest=digest[:12],
    )
    context = InputTag(MLFLOW_DATASET_CONTEXT, "train")
    client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(), tags=[context])])


def experiment_id(client: MlflowClient, name: str, project_dir: str | Path = ".") -> str:
    """The id of experiment ``name``, created when missing (artifacts beside a SQLite store, in
    the workspace: pipeline.workspace.lasting)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if client.tracking_uri.startswith("sqlite:"):
        location = (lasting(project_dir) / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def find_run(client: MlflowClient, exp_id: str, run_name: str) -> Run | None:
    """The newest run of experiment ``exp_id`` tagged ``run_name``, None when there is none."""
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RUN_NAME_TAG}` = '{run_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def start_run(
    client: MlflowClient,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    project_dir: str | Path = ".",
) -> str:
    """The id of the RUNNING run named ``run_name``: the existing unfinished one (a resumed
    training) or a new one with ``params`` (flattened) and ``tags``. A FINISHED run is never
    reopened: it stays as it finished (status, end time, tags), and whatever runs again under its
    name is recorded as a new run."""
    exp_id = experiment_id(client, experiment, project_dir)
    found = find_run(client, exp_id, run_name)
    if found and found.info.status != RunStatus.to_string(RunStatus.FINISHED):
        run_id = found.info.run_id
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    else:
        run = client.create_run(exp_id, run_name=run_name, tags={RUN_NAME_TAG: run_name})
        run_id = run.info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in flatten(params).items()])
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return run_id


def finished_run(client: MlflowClient, experiment: str, run_name: str) -> Run | None:
    """The newest run named ``run_name`` in ``experiment`` when it FINISHED, else None."""
    found = client.get_experiment_by_name(experiment)
    run = found and find_run(client, found.experiment_id, run_name)
    return run if run and run.info.status == RunStatus.to_string(RunStatus.FINISHED) else None


def logged_params(params: Params) -> dict[str, Any]:
    """The sections a training run (or trial) records as MLflow params: what its weights depend on,
    and where it ran."""
    return {k: v for k, v in to_dict(params).items() if k not in UNLOGGED_SECTIONS}


@contextlib.contextmanager
def recorded(client: MlflowClient, run_id: str, *, finish: bool = True) -> Iterator[str]:
    """The block's outcome as the run's status: FAILED when it raises (an interruption included),
    FINISHED when it ends normally and ``finish`` (else the caller ends the run)."""
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    if finish:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
