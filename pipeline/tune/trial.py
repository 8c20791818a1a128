"""One Tune trial: a short Ray Train run of the base params with the trial's values.

The trial function is the Train V2 driver pattern: it builds and fits a ``TorchTrainer``
(``pipeline.train.driver.fit``) whose rank 0 measures ``fid_<eval.features>`` at every milestone
(the probe, pipeline.evaluate.probe); ``MilestoneReport`` forwards those reports (and only those) to
Tune, where ASHA compares trials. Each trial records itself as an MLflow child run of the sweep's
parent run.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.tune
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.tune.integration.ray_train import TuneReportCallback

from pipeline.config import Params
from pipeline.evaluate.probe import FIDProbe, probe_metric
from pipeline.tracking import (
    experiment_id,
    find_run,
    log_dataset,
    logged_params,
    patient_sqlite,
    recorded,
    start_run,
)
from pipeline.train.checkpoint import latest_checkpoint_dir, read_state
from pipeline.train.driver import fit
from pipeline.train.worker import ProbeConfig
from pipeline.tune.search import TRIAL_TAG


@dataclass(frozen=True)
class SweepConfig:
    """What every trial of a sweep shares: the base ``params``, the sweep's ``name``, its MLflow
    parent run, the absolute paths of the data (and its manifest's sha256), the FeatureNet (None
    when eval.features needs none) and the trials' storage."""

    params: Params
    name: str
    parent_run_id: str
    tracking_uri: str
    processed_dir: str
    data_manifest_sha256: str
    featurenet_dir: str | None
    storage_dir: str


class MilestoneReport(TuneReportCallback):
    """Forward rank 0's milestone reports (those carrying ``metric``) to Tune: the scheduler decides
    there, and Tune's results hold one row per milestone."""

    def __init__(self, metric: str) -> None:
        super().__init__()
        self.metric = metric

    def after_report(self, run_context, metrics, checkpoint):
        if self.metric in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def trial_params(base: Params, values: Mapping[str, Any]) -> Params:
    """The params one trial trains with: ``base`` with the trial budget (tune.steps, ...) and the
    trial's sampled ``values`` (dotted keys) applied; ConfigError for an invalid combination."""
    return base.with_values({**base.tune.budget, **values})


def milestone_probe(sweep: SweepConfig) -> ProbeConfig:
    """fid_<eval.features> of ``tune.eval_samples`` DDIM samples against the validation split,
    every ``tune.eval_every`` steps."""
    search, evaluation = sweep.params.tune, sweep.params.eval
    return ProbeConfig(
        every=search.eval_every,
        count=search.eval_samples,
        steps=search.eval_steps,
        seed=search.seed,
        metric=probe_metric(evaluation),
        make_score=functools.partial(
            FIDProbe, evaluation, sweep.featurenet_dir, sweep.processed_dir
        ),
    )


def ended(client: MlflowClient, sweep: SweepConfig, params: Params, trial_id: str) -> bool:
    """Whether the trial's training ended already: its child run FINISHED and its final checkpoint
    on the sweep's storage. Tune re-runs such a trial when the sweep stopped between the trial's
    end and Tune's record of it."""
    run = find_run(
        client, experiment_id(client, params.mlflow.experiment), f"{sweep.name}-{trial_id}"
    )
    if run is None or run.info.status != RunStatus.to_string(RunStatus.FINISHED):
        return False
    final = latest_checkpoint_dir(Path(sweep.storage_dir) / trial_id)
    return final is not None and read_state(final, check=False)["step"] == params.train.steps


def run_trial(config: dict[str, Any], *, sweep: SweepConfig) -> None:
    """Tune's trainable. Re-running a trial (Tuner.restore) resumes its training from its last
    milestone checkpoint and logs into the same child run; a trial that had ended reports its
    final result to Tune again and leaves its run as it ended."""
    trial_id = ray.tune.get_context().get_trial_id()
    params = trial_params(sweep.params, config)
    patient_sqlite()
    client = MlflowClient(sweep.tracking_uri)
    train = functools.partial(
        fit,
        params,
        processed_dir=sweep.processed_dir,
        storage_dir=sweep.storage_dir,
        name=trial_id,
        mlflow_uri=sweep.tracking_uri,
        probe=milestone_probe(sweep),
        callbacks=[MilestoneReport(probe_metric(params.eval))],
    )
    if ended(client, sweep, params, trial_id):
        train()  # resumes at the final checkpoint: trains nothing, logs nothing
        return
    tags = {MLFLOW_PARENT_RUN_ID: sweep.parent_run_id, TRIAL_TAG: trial_id}
    tags.update({f"tune.value.{key}": str(value) for key, value in config.items()})
    run_id = start_run(
        client, params.mlflow.experiment, f"{sweep.name}-{trial_id}", logged_params(params), tags
    )
    dataset = f"{params.data.source}-processed"
    log_dataset(client, run_id, sweep.processed_dir, dataset, sweep.data_manifest_sha256)
    with recorded(client, run_id):
        train(run_id=run_id)
