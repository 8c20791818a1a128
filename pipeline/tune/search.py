"""The Ray Tune pieces every sweep of the project uses, whatever its trials run (the training sweep,
pipeline.tune.sweep; the style-weight sweep, pipeline.style.sweep): Tune's param space from the
parsed ``space`` of a params file (pipeline.config.space), the Tuner, the trials' MLflow tag, the
sweep's progress bar, a failed trial's error line and the winner of the results table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import ray.tune
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from pipeline.config import Spec
from pipeline.console import progress_bar

TRIAL_TAG = "tune.trial_id"  # the MLflow tag of a trial's child run: Tune's trial id


def param_space(specs: dict[str, Spec]) -> dict[str, Any]:
    """Tune's param_space, keyed by the dotted params keys."""
    domains = {
        "fixed": lambda v: v[0],
        "choice": lambda v: ray.tune.choice(list(v)),
        "grid": lambda v: ray.tune.grid_search(list(v)),
        "uniform": lambda v: ray.tune.uniform(*v),
        "loguniform": lambda v: ray.tune.loguniform(*v),
        "randint": lambda v: ray.tune.randint(v[0], v[1] + 1),  # Tune's upper end is exclusive
    }
    return {key: domains[spec.kind](spec.values) for key, spec in specs.items()}


class SweepProgress(ray.tune.Callback):
    """The sweep's progress bar on the terminal (Tune's callbacks run in the driver): trials ended
    out of all, and the best (lowest) ``metric`` reported so far. Its bar is not part of the
    pickled state."""

    def __init__(self, metric: str, desc: str = "tune") -> None:
        self.bar, self.best, self.metric, self.desc = None, math.inf, metric, desc

    def __getstate__(self) -> dict[str, Any]:
        return {"bar": None, "best": self.best, "metric": self.metric, "desc": self.desc}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info) -> None:
        self.bar = progress_bar(total=total_num_samples, desc=self.desc, unit="trial")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.bar is not None and self.metric in result:
            self.best = min(self.best, result[self.metric])
            self.bar.set_description(f"{self.desc} best {self.metric} {self.best:.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if self.bar is not None:
            self.bar.update(1)

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials, **info) -> None:
        if self.bar is not None:
            self.bar.close()


def new_tuner(
    trainable: Any,
    specs: dict[str, Spec],
    tune_config: ray.tune.TuneConfig,
    name: str,
    progress: SweepProgress,
    storage_path: str | None = None,
) -> ray.tune.Tuner:
    """A Tuner of ``trainable`` over ``specs``' space: no retries (a failed trial fails alone and
    says why), the sweep's progress bar."""
    return ray.tune.Tuner(
        trainable,
        param_space=param_space(specs),
        tune_config=tune_config,
        run_config=ray.tune.RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=ray.tune.FailureConfig(max_failures=0),
            callbacks=[progress],
        ),
    )


def error_line(error: BaseException | None) -> str:
    """The root cause of a trial's error, one line (Ray wraps it in RayTaskError)."""
    if error is None:
        return ""
    cause = error
    while getattr(cause, "cause", None) is not None:  # RayTaskError.cause
        cause = cause.cause
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"


def winner(
    table: pd.DataFrame, keys: list[str], name: str, client: MlflowClient, parent_id: str
) -> tuple[pd.Series, dict[str, Any]]:
    """The best completed trial of ``table`` (sorted best first) and its values of ``keys``, as
    plain Python values for YAML; with none completed, the parent run FAILED and RuntimeError
    with the table."""
    completed = table[table["status"] == "completed"]
    if completed.empty:
        client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FAILED))
        raise RuntimeError(f"sweep {name}: no trial completed\n{table.to_string(index=False)}")
    best = completed.iloc[0]
    return best, {key: _plain(best[key]) for key in keys}


def _plain(value: Any) -> Any:
    """A numpy scalar (from the table) as a plain Python value; NaN as None: a column of numbers
    holds a searched null (``choice: [null, 5.0]``) as NaN, and no param takes NaN."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value
