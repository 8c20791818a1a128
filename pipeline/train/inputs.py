"""What the train and tune stages do before any compute and what names their runs: the checks of
the processed data against the params, the data's classes, the params sections a run's weights
depend on, and the preamble both stages share (connect Ray and MLflow, then start the tracked run
with its provenance and dataset input)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from pipeline.cluster import checkpoints_for_workers, init_ray
from pipeline.config import TRAIN_OPERATIONAL, Params, to_dict
from pipeline.data.manifest import verify_processed
from pipeline.registry import family
from pipeline.tracking import connect, log_dataset, provenance_tags, start_run, tracking_uri

RUN_SECTIONS = ("data", "model", "train")  # what every family's weights depend on


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


def with_data_classes(params: Params, manifest: Mapping[str, Any]) -> Params:
    """``params`` with ``guidance.num_classes`` set to the data's classes (the manifest's) when a
    class-conditioned family trains (``model.family``, or one a tune search may pick);
    ValueError when the data has no labels or other classes."""
    if not any(family(name).needs_labels for name in params.families):
        return params
    classes = manifest.get("classes")
    if not classes:
        raise ValueError(
            f"model.family {params.model.family!r} trains on class labels; the preprocessed data "
            f"(data.source {params.data.source!r}) has none"
        )
    if params.guidance.num_classes not in (None, len(classes)):
        raise ValueError(
            f"guidance.num_classes {params.guidance.num_classes} differs from the data's {len(classes)} "
            "classes; set it to null (the data's)"
        )
    # not with_values: that is one trial's params, without the search the sweep still runs
    return params.with_sections(
        guidance=dataclasses.replace(params.guidance, num_classes=len(classes))
    )


def run_sections(params: Params, omit_train: tuple[str, ...] = TRAIN_OPERATIONAL) -> dict[str, Any]:
    """The params sections the trained weights depend on: data, model, train (less ``omit_train``)
    and the family's (pipeline.registry.Family.sections: diffusion, its own)."""
    names = RUN_SECTIONS + family(params.model.family).sections
    sections = {k: v for k, v in to_dict(params).items() if k in names}
    sections["train"] = {k: v for k, v in sections["train"].items() if k not in omit_train}
    return sections


@dataclass(frozen=True)
class Connected:
    """A stage connected to Ray and MLflow: the tracking URI, its client, and where Ray keeps the
    stage's checkpoints (pipeline.cluster.checkpoints_for_workers)."""

    uri: str
    client: MlflowClient
    storage_dir: Path


def connect_stage(params: Params, storage_dir: str | Path, project_dir: str | Path) -> Connected:
    """Ray first, then MLflow: a bad Ray address fails before an MLflow run exists."""
    uri = tracking_uri(project_dir)
    init_ray(params, uri)
    return Connected(uri, connect(uri), checkpoints_for_workers(params, storage_dir))


def start_stage_run(
    stage: Connected,
    params: Params,
    *,
    name: str,
    logged: Mapping[str, Any],
    tags: Mapping[str, str],
    processed_dir: Path,
    manifest_sha256: str,
    entry_point: str,
    project_dir: str | Path,
) -> str:
    """The stage's running MLflow run ``name`` (pipeline.tracking.start_run) with ``logged``
    params, the provenance tags of ``entry_point`` and ``tags``, and the processed data as its
    dataset input; returns its id."""
    all_tags = {**provenance_tags(project_dir, entry_point, manifest_sha256), **tags}
    run_id = start_run(stage.client, params.mlflow.experiment, name, logged, all_tags, project_dir)
    dataset = f"{params.data.source}-processed"
    log_dataset(stage.client, run_id, processed_dir, dataset, manifest_sha256)
    return run_id
