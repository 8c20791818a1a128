"""The tune stage: a Ray Tune search whose trials are Ray Train runs, tracked as one MLflow sweep.

``run_sweep`` builds (or, when the same sweep was interrupted, restores with ``Tuner.restore``) a
Tuner over ``pipeline.tune.trial.run_trial``; trials report ``fid_<eval.features>`` at milestones, ASHA
(or fifo) stops weak ones, a diverged trial fails alone. The outcome is ``best_params.yaml`` (the
winning values in params.yaml's structure, applied by the train stage), a results table, a plot,
and an MLflow parent run with one child run per trial.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import ray.tune
from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipeline.cluster import for_workers, resolve_use_gpu
from pipeline.config import TRIAL_FIXED, Params, SearchConfig, to_dict
from pipeline.console import say
from pipeline.data.manifest import manifest_digest
from pipeline.evaluate.backends import load_extractor
from pipeline.evaluate.probe import probe_metric
from pipeline.io import atomic_path, write_json
from pipeline.provenance import code_digest, identity_name
from pipeline.registry import family, method_module
from pipeline.reports.tune import plot_trials
from pipeline.tracking import logged_params, recorded
from pipeline.train.inputs import (
    check_data,
    connect_stage,
    run_sections,
    start_stage_run,
    with_data_classes,
)
from pipeline.tune.best import write_best_params
from pipeline.tune.search import TRIAL_TAG, SweepProgress, error_line, new_tuner, winner
from pipeline.tune.trial import SweepConfig, run_trial

log = logging.getLogger(__name__)

# A trial function only drives its Train run (whose workers hold the CPUs/GPUs): it asks for a
# little memory instead of Tune's default 1 CPU, so trials do not starve their own workers.
TRIAL_DRIVER_RESOURCES = {"CPU": 0, "memory": 256 * 2**20}
STATUSES = ("completed", "stopped_early", "failed")


def trial_sections(params: Params) -> dict[str, Any]:
    """What trials depend on besides tune.*: the sections a training run depends on
    (pipeline.train.inputs.run_sections) less the train keys a trial takes from its budget
    (dvc.yaml's tune stage lists these)."""
    return run_sections(params, omit_train=TRIAL_FIXED)


CODE = "pipeline.tune.trial"  # the module whose source closure is the code a trial runs
IDENTITY_FILE = "sweep_identity.json"  # in the sweep's directory: what its name hashes


def sweep_identity(
    params: Params, processed_dir: Path, features_sha256: str | None
) -> dict[str, Any]:
    """What a sweep's results depend on: the trial sections, the tune section (less ``enabled``),
    the data manifest, the probe's feature space and its weights (None: weight-free), and the
    code a trial runs."""
    return {
        "trials": trial_sections(params),
        "tune": {k: v for k, v in to_dict(params.tune).items() if k != "enabled"},
        "data_manifest_sha256": manifest_digest(processed_dir),
        "probe_metric": probe_metric(params.eval),
        "features_sha256": features_sha256,
        "code_sha256": code_digest(CODE),
        "method_code_sha256": code_digest(method_module(params.model.family)),
    }


def sweep_name(identity: dict[str, Any]) -> str:
    """tune-<12 hex>: sha256 of the sweep's identity. The same name restores an interrupted sweep;
    any change starts a new one."""
    return identity_name("tune", identity)


def restorable(path: Path, identity: dict[str, Any]) -> bool:
    """Whether ``path`` holds a Tune experiment of this very sweep. ``Tuner.restore`` unpickles the
    experiment state (``tuner.pkl``, cloudpickle: code), so it is trusted state like a checkpoint
    directory, and only restored when the identity recorded beside it equals ``identity``."""
    if not ray.tune.Tuner.can_restore(path):
        return False
    try:
        recorded = json.loads((path / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded != json.loads(json.dumps(identity)):
        log.warning(
            "not restoring %s: its %s is missing or records another sweep; starting it afresh",
            path,
            IDENTITY_FILE,
        )
        return False
    return True


def max_concurrent_trials(params: Params) -> int:
    """``tune.max_concurrent_trials``, else how many trials' workers the cluster holds at once
    (1 CPU, or 1 GPU, per worker); at least 1."""
    if params.tune.max_concurrent_trials:
        return params.tune.max_concurrent_trials
    resources = ray.cluster_resources()
    unit = "GPU" if resolve_use_gpu(params.train.use_gpu) else "CPU"
    return max(1, int(resources.get(unit, 0) // params.tune.workers_per_trial))


def ray_tune_config(params: Params) -> ray.tune.TuneConfig:
    """Metric, scheduler, search algorithm and concurrency of the sweep."""
    search = params.tune
    if search.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="step",
            max_t=search.steps,
            grace_period=search.eval_every,
            reduction_factor=search.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    concurrency = max_concurrent_trials(params)
    if search.search == "optuna":
        algorithm = ConcurrencyLimiter(OptunaSearch(seed=search.seed), concurrency)
    else:  # Tune ignores TuneConfig.max_concurrent_trials for a variant generator
        algorithm = BasicVariantGenerator(random_state=search.seed, max_concurrent=concurrency)
    return ray.tune.TuneConfig(
        metric=probe_metric(params.eval),
        mode="min",
        scheduler=scheduler,
        search_alg=algorithm,
        num_samples=search.num_samples,
    )


def milestones(search: SearchConfig) -> list[int]:
    return list(range(search.eval_every, search.steps + 1, search.eval_every))


def results_table(
    grid: ray.tune.ResultGrid, path: Path, search: SearchConfig, keys: list[str], metric: str
) -> pd.DataFrame:
    """One row per trial: trial_id, status (completed | stopped_early | failed | unfinished),
    the last step, the space's values, ``metric`` at each milestone and the last one, error.
    Sorted best first: completed trials by their final FID, then the rest. ``path`` is the
    experiment's directory, whose saved state says which trials ended (a restored trial's last
    result does not)."""
    ended = {
        trial.trial_id: trial.status
        for trial in ray.tune.ExperimentAnalysis(str(path)).trials
        if trial.status in ("TERMINATED", "ERROR")
    }
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        at = {}  # milestone step -> metric
        if history is not None and metric in history:
            at = dict(zip(history["step"], history[metric], strict=True))
        if result.error is not None:
            status = "failed"
        elif metrics.get("trial_id") not in ended:
            status = "unfinished"
        else:
            status = "completed" if metrics.get("step") == search.steps else "stopped_early"
        row = {"trial_id": metrics.get("trial_id"), "status": status, "step": metrics.get("step")}
        row.update({key: (result.config or {}).get(key) for key in keys})  # none: never started
        row.update({f"{metric}@{m}": at.get(m, math.nan) for m in milestones(search)})
        row[metric] = metrics.get(metric, math.nan)
        row["error"] = error_line(result.error)
        rows.append(row)
    table = pd.DataFrame(rows).astype({"step": "Int64"})  # failed trials have none
    table["_rank"] = table["status"].map({"completed": 0}).fillna(1)
    return table.sort_values(["_rank", metric, "trial_id"]).drop(columns="_rank")


def run_sweep(
    params: Params,
    *,
    processed_dir: str | Path,
    featurenet_dir: str | Path | None,
    storage_dir: str | Path,
    best_params_path: str | Path,
    results_csv: str | Path,
    plot_png: str | Path,
    metrics_json: str | Path | None = None,
    project_dir: str | Path = ".",
) -> dict[str, Any]:
    """The tune stage. With ``tune.enabled`` false it only writes an empty best_params.yaml (and an
    empty table and plot, and no trials in ``metrics_json``). Otherwise it runs (or resumes) the
    sweep and writes the winning values, the table (CSV), the plot and, with ``metrics_json``, the
    best score and the trials per status (what ``dvc exp show`` lists); returns the best row.
    Raises KeyboardInterrupt when the sweep was interrupted before every trial ended (re-running
    resumes it)."""
    metric = probe_metric(params.eval)
    if not params.tune.enabled:
        write_disabled(best_params_path, results_csv, plot_png, metric, metrics_json)
        return {}
    processed_dir = Path(processed_dir).resolve()
    featurenet_dir = featurenet_dir and str(Path(featurenet_dir).resolve())
    params, identity = checked_inputs(params, processed_dir, featurenet_dir)
    name = sweep_name(identity)
    stage = connect_stage(params, storage_dir, project_dir)
    parent_id = start_stage_run(
        stage,
        params,
        name=name,
        logged={**logged_params(params), "tune": to_dict(params.tune)},
        tags={"features_sha256": str(identity["features_sha256"]), "dvc_stage": "tune"},
        processed_dir=processed_dir,
        manifest_sha256=identity["data_manifest_sha256"],
        entry_point="stages/tune.py",
        project_dir=project_dir,
    )
    sweep = SweepConfig(
        params=params,
        name=name,
        parent_run_id=parent_id,
        tracking_uri=stage.uri,
        processed_dir=str(for_workers(params, processed_dir)),
        data_manifest_sha256=identity["data_manifest_sha256"],
        featurenet_dir=featurenet_dir and str(for_workers(params, featurenet_dir)),
        storage_dir=str(stage.storage_dir / f"{name}-trials"),
    )
    path = stage.storage_dir / name
    with recorded(stage.client, parent_id, finish=False):  # a failed or interrupted sweep: FAILED
        tuner = restored_or_new(sweep, path, identity, stage.client)
        table = results_table(tuner.fit(), path, params.tune, list(params.tune.specs), metric)
    outputs = (best_params_path, results_csv, plot_png)
    return finish_sweep(params, table, stage.client, parent_id, name, outputs, metrics_json)


def write_disabled(best_params_path, results_csv, plot_png, metric: str, metrics_json) -> None:
    """What the stage writes with ``tune.enabled`` false: an empty best_params.yaml, table and
    plot, and no trials in ``metrics_json`` (when given)."""
    write_best_params({}, best_params_path, "tune.enabled is false: train uses params.yaml")
    with atomic_path(results_csv) as tmp:
        pd.DataFrame(columns=["trial_id", "status"]).to_csv(tmp, index=False)
    plot_trials(
        pd.DataFrame(), [], plot_png, metric=metric, title="tuning disabled (tune.enabled: false)"
    )
    if metrics_json:
        write_json(metrics_json, {"num_trials": 0})


def checked_inputs(
    params: Params, processed_dir: Path, featurenet_dir: str | None
) -> tuple[Params, dict[str, Any]]:
    """The sweep's checks before any compute (the data with a trial's params, enough validation
    images for the probe, the probe's features) and its identity; ``params`` with the data's
    classes."""
    search, metric = params.tune, probe_metric(params.eval)
    # a colorizer's probe colorizes tune.eval_samples validation images
    needed = search.eval_samples if family(params.model.family).needs_rgb else 2
    manifest = check_data(  # with a trial's params: its budget's batch must fit
        params.with_values(search.budget),
        processed_dir,
        min_counts={"val": (needed, f"tune (the milestone {metric} of the validation split)")},
    )
    params = with_data_classes(params, manifest)
    _, backend = load_extractor(params.eval, featurenet_dir)  # fails early when missing
    return params, sweep_identity(params, processed_dir, backend["weights_sha256"])


def restored_or_new(
    sweep: SweepConfig, path: Path, identity: dict[str, Any], client: MlflowClient
) -> ray.tune.Tuner:
    """The interrupted sweep at ``path`` restored when it is this very sweep (``restorable``) and
    its scheduler keeps no state (fifo), else a new one there (whatever was there removed, with
    its trials' checkpoints). An interrupted ASHA sweep starts over, saying so: Tune.restore does
    not restore ASHA's rungs, so restored trials that ASHA had stopped, or would have, ran to the
    end (seen: two trials due to stop at step 20 ran to 40) and the table and winner were not the
    sweep's. The interrupted attempt's trial runs are then deleted (MLflow's soft delete: the UI
    can restore them), so that the parent keeps one child per trial of the sweep."""
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(run_trial, sweep=sweep), TRIAL_DRIVER_RESOURCES
    )
    if restorable(path, identity):
        if sweep.params.tune.scheduler == "fifo":
            log.info("resuming sweep %s from %s", sweep.name, path)
            return ray.tune.Tuner.restore(
                str(path), trainable, resume_unfinished=True, resume_errored=False
            )
        say(
            f"sweep {sweep.name} was interrupted; starting it over: Ray Tune does not restore "
            "ASHA's stopping decisions, so a resumed sweep would not be this sweep "
            "(tune.scheduler: fifo resumes where it stopped)"
        )
        for run in trial_runs(client, sweep.parent_run_id):
            client.delete_run(run.info.run_id)
    specs = sweep.params.tune.specs
    log.info("sweep %s: %s", sweep.name, {k: s.values for k, s in specs.items()})
    for stale in (path, Path(sweep.storage_dir)):  # another sweep's, or unreadable
        shutil.rmtree(stale, ignore_errors=True)
    path.mkdir(parents=True)
    write_json(path / IDENTITY_FILE, identity)
    progress = SweepProgress(probe_metric(sweep.params.eval))
    config = ray_tune_config(sweep.params)
    return new_tuner(trainable, specs, config, sweep.name, progress, str(path.parent))


def finish_sweep(
    params: Params,
    table: pd.DataFrame,
    client: MlflowClient,
    parent_id: str,
    name: str,
    files: tuple[str | Path, str | Path, str | Path],
    metrics_json: str | Path | None = None,
) -> dict[str, Any]:
    """The sweep's end: KeyboardInterrupt (the parent run KILLED) when trials are unfinished;
    else the winner's best_params.yaml, the table and the plot (``files``), recorded on the
    parent run, and its summary (``sweep_summary``) in ``metrics_json``; returns the best row."""
    search, metric = params.tune, probe_metric(params.eval)
    unfinished = table[table["status"] == "unfinished"]
    if len(unfinished):
        client.set_terminated(parent_id, RunStatus.to_string(RunStatus.KILLED))
        raise KeyboardInterrupt(
            f"sweep {name} interrupted with {len(unfinished)} of {len(table)} trials unfinished; "
            "re-run the stage to resume it (ended trials are kept)"
        )
    specs = list(search.specs)
    best, winning = winner(table, specs, name, client, parent_id)
    best_params_path, results_csv, plot_png = files
    header = f"sweep {name}: trial {best['trial_id']}, {metric} {best[metric]:.4f} at step {search.steps}"
    write_best_params(winning, best_params_path, header)
    with atomic_path(results_csv) as tmp:
        table.to_csv(tmp, index=False)
    colour_by = "diffusion.schedule" if "diffusion.schedule" in specs else None
    plot_trials(table, milestones(search), plot_png, metric=metric, colour_by=colour_by)
    summary = sweep_summary(table, best, metric)
    if metrics_json:
        write_json(metrics_json, {**summary, "best_trial_id": str(best["trial_id"]),
                                  "mlflow_run_id": parent_id})  # fmt: skip
    record_sweep(client, parent_id, summary, best, table, files)
    log.info("%s\nbest: %s", table.to_string(index=False), winning)
    return {"sweep": name, "trial_id": best["trial_id"], metric: float(best[metric]), **winning}


def sweep_summary(table: pd.DataFrame, best: pd.Series, metric: str) -> dict[str, float]:
    """The best trial's ``metric`` (``best_<metric>``) and the number of trials, in all and per
    status (``num_<status>``)."""
    counts = table["status"].value_counts()
    summary = {f"best_{metric}": float(best[metric]), "num_trials": len(table)}
    summary.update({f"num_{status}": int(counts.get(status, 0)) for status in STATUSES})
    return summary


def record_sweep(
    client: MlflowClient,
    parent_id: str,
    metrics: dict[str, float],
    best: pd.Series,
    table: pd.DataFrame,
    files: tuple[str | Path, ...],
) -> None:
    """The parent run gets ``metrics`` (sweep_summary), the best trial and the files; every child
    run gets its final status (FINISHED, KILLED when ASHA stopped it, FAILED) and a tune.status
    tag."""
    client.log_batch(
        parent_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
        tags=[RunTag("tune.best_trial_id", str(best["trial_id"]))],
    )
    for path in files:
        client.log_artifact(parent_id, str(path), "tune")
    children = {run.data.tags.get(TRIAL_TAG): run for run in trial_runs(client, parent_id)}
    status_of = {"completed": RunStatus.FINISHED, "stopped_early": RunStatus.KILLED}
    for row in table.itertuples():
        run = children.get(row.trial_id)
        if run is None:  # failed before its run was created (an invalid combination)
            continue
        client.set_tag(run.info.run_id, "tune.status", row.status)
        if row.error:
            client.set_tag(run.info.run_id, "tune.error", row.error[:5000])
        status = RunStatus.to_string(status_of.get(row.status, RunStatus.FAILED))
        if run.info.status != status:  # keeps the end time of runs that ended themselves
            client.set_terminated(run.info.run_id, status)
    client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FINISHED))


def trial_runs(client: MlflowClient, parent_id: str) -> list[Run]:
    """The child runs (one per trial) of the sweep's parent run ``parent_id``."""
    return client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        max_results=10000,
    )
