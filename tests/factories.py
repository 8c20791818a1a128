"""What several test modules build their runs from: the tiny training params, the train and
evaluate stages with every output under one folder, a train report, and a worker that dies on
cue."""

import dataclasses
import os
from pathlib import Path

import ray.train

from pipeline.config import DataConfig, ModelConfig, Params, TrainConfig
from pipeline.config.keys import nest
from pipeline.evaluate.run import evaluate
from pipeline.registry import FAMILIES
from pipeline.reports.train import TrainReport
from pipeline.train.driver import train

TINY = Params(
    data=DataConfig(limit=64),
    model=ModelConfig(
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        mid_attention=False,
        num_heads=1,
    ),
    train=TrainConfig(
        steps=4,
        batch_size=8,
        num_workers=2,
        lr=1e-3,
        warmup_steps=2,
        checkpoint_every=2,
        log_every=1,
        sample_every=2,
        sample_count=4,
        sample_steps=3,
    ),
)


def family_tiny() -> dict[str, dict]:
    """Every family's own section at its tests' smallest values (pipeline.registry.Family.tiny)."""
    return {e.section: nest(dict(e.tiny)) for e in FAMILIES.values() if e.section}


def with_train(params: Params, **changes) -> Params:
    return dataclasses.replace(params, train=dataclasses.replace(params.train, **changes))


def run_train(tmp_path, params=TINY, processed=None, **kwargs):
    """pipeline.train.driver.train with every output under tmp_path; returns the report."""
    return train(
        params,
        processed_dir=processed,
        checkpoints_dir=tmp_path / "checkpoints",
        models_dir=tmp_path / "models",
        report_path=tmp_path / "reports/train.json",
        history_csv=tmp_path / "reports/plots/train_loss.csv",
        samples_png=tmp_path / "reports/train_samples.png",
        project_dir=tmp_path,
        **kwargs,
    )


def run_evaluate(folder, params, processed, featurenet_dir, project_dir=None, **kwargs):
    """pipeline.evaluate.run.evaluate of the run that ``run_train`` left in ``folder`` (its models
    and train report), every output under folder/reports; returns the metrics."""
    return evaluate(
        params,
        models_dir=folder / "models",
        featurenet_dir=featurenet_dir,
        processed_dir=processed,
        train_report=folder / "reports/train.json",
        metrics_path=folder / "reports/metrics.json",
        grid_png=folder / "reports/samples.png",
        trajectory_gif=folder / "reports/trajectory.gif",
        project_dir=folder if project_dir is None else project_dir,
        **kwargs,
    )


def train_report(**changes) -> TrainReport:
    """A train stage's report of a run that never happened (for stages that only read it)."""
    fields = dict(
        steps=4,
        final_losses={"loss": 0.5},
        images_per_s=10.0,
        wall_time_s=9.0,
        num_workers=2,
        worker_nodes=["node"],
        run_name="train-1",
        mlflow_run_id="0" * 32,
        mlflow_model_uri="models:/m-0",
        registered_model=None,
        registered_model_version=None,
    )
    return TrainReport(**(fields | changes))


def kill_worker(
    monkeypatch, *, rank: int, step: int, marker: Path, error: Exception | None = None
) -> None:
    """Rank ``rank`` of the trainings started from now on dies (``os._exit``; with ``error``,
    raises it) the first time it takes optimiser step ``step`` (from 0), once: ``marker``
    records that it did. The driver's
    family class becomes a subclass that does this, which Ray ships to the workers by value; the
    run's identity (its name, from the family's module) stays the same."""
    from pipeline.train import driver

    method_class, where = driver.method_class, (rank, step)

    def dying(name: str):
        class Dying(method_class(name)):
            def train_step(self, micro_batches, *, lr, step: int):
                here = ray.train.get_context().get_world_rank()
                if (here, step) == where and not Path(marker).exists():
                    Path(marker).touch()
                    if error is not None:
                        raise error
                    os._exit(1)
                return super().train_step(micro_batches, lr=lr, step=step)

        return Dying

    monkeypatch.setattr(driver, "method_class", dying)
