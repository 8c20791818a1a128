"""The train stage's report (``reports/train.json``, DVC metrics): what a training run gave and
where MLflow keeps it. The evaluate and ship stages read it back to log to the same run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.io import read_json, write_json

FINAL = "final_"  # the JSON key prefix of the final loss terms


@dataclass(frozen=True)
class TrainReport:
    """``steps`` trained; ``final_losses``: each loss term of the last report (``loss``, and the
    family's parts: ``loss_simple``, ``loss_d`` ...); ``images_per_s``: the median over the
    reports; ``worker_nodes``: the Ray node of each rank (a multi-node run shows several);
    ``warnings``: the family's (pipeline.methods.base.Method.warnings)."""

    steps: int
    final_losses: dict[str, float]
    images_per_s: float
    wall_time_s: float
    num_workers: int
    worker_nodes: list[str]
    run_name: str
    mlflow_run_id: str
    mlflow_model_uri: str
    registered_model: str | None
    registered_model_version: int | None
    warnings: list[str] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """The minimised loss at the last report."""
        return self.final_losses["loss"]

    def as_json(self) -> dict[str, Any]:
        """The JSON object: the final losses as ``final_<term>`` keys (what DVC shows)."""
        data = dataclasses.asdict(self)
        losses = data.pop("final_losses")
        return data | {f"{FINAL}{k}": v for k, v in losses.items()}

    def write(self, path: str | Path) -> None:
        write_json(path, self.as_json())

    @classmethod
    def read(cls, path: str | Path) -> TrainReport:
        """The report in ``path``; CorruptFileError naming the file and a missing key."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "final_losses"]
        data = read_json(path, names, made_by="the train stage (dvc repro train)")
        losses = {k[len(FINAL) :]: v for k, v in data.items() if k.startswith(FINAL)}
        return cls(final_losses=losses, **{k: data[k] for k in names})
