"""One Tune trial: a short Ray Train run of the base params with the trial's values.

The trial function is the Train V2 driver pattern: it builds and fits a ``TorchTrainer``
(``pipeline.train.driver.fit``) whose rank 0 measures ``fid_featurenet`` at every milestone;
``MilestoneReport`` forwards those reports (and only those) to Tune, where ASHA compares trials.
Each trial records itself as an MLflow child run of the sweep's parent run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ray.tune
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.tune.integration.ray_train import TuneReportCallback

from pipeline.config import Params, from_dict
from pipeline.evaluate.probe import METRIC
from pipeline.tracking import start_run
from pipeline.train.driver import fit, logged_params

TRIAL_TAG = "tune.trial_id"


class MilestoneReport(TuneReportCallback):
    """Forward rank 0's milestone reports (those carrying METRIC) to Tune: the scheduler decides
    there, and Tune's results hold one row per milestone."""

    def after_report(self, run_context, metrics, checkpoint):
        if METRIC in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def trial_params(base: Params, values: Mapping[str, Any]) -> Params:
    """The params one trial trains with: ``base`` with the trial budget (tune.steps, ...) and the
    trial's sampled ``values`` (dotted keys) applied; ConfigError for an invalid combination."""
    return base.with_values({**base.tune.budget, **values})


def run_trial(config: dict[str, Any], *, sweep: Mapping[str, Any]) -> None:
    """Tune's trainable. ``sweep`` holds what every trial shares: ``params`` (the base, as plain
    data), ``name``, ``parent_run_id``, ``tracking_uri``, ``processed_dir``, ``featurenet_dir`` and
    ``storage_dir`` (absolute paths). Re-running a trial (Tuner.restore) resumes its training from
    its last milestone checkpoint and logs into the same child run."""
    trial_id = ray.tune.get_context().get_trial_id()
    base: Params = from_dict(Params, sweep["params"])
    params = trial_params(base, config)
    client = MlflowClient(sweep["tracking_uri"])
    tags = {MLFLOW_PARENT_RUN_ID: sweep["parent_run_id"], TRIAL_TAG: trial_id}
    tags.update({f"tune.value.{key}": str(value) for key, value in config.items()})
    run_id = start_run(
        client, params.mlflow.experiment, f"{sweep['name']}-{trial_id}", logged_params(params), tags
    )
    tc = base.tune
    probe = {
        "featurenet_dir": sweep["featurenet_dir"],
        "every": tc.eval_every,
        "count": tc.eval_samples,
        "steps": tc.eval_steps,
        "seed": tc.seed,
    }
    try:
        fit(
            params,
            sweep["processed_dir"],
            sweep["storage_dir"],
            name=trial_id,
            run_id=run_id,
            mlflow_uri=sweep["tracking_uri"],
            probe=probe,
            callbacks=[MilestoneReport()],
        )
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
