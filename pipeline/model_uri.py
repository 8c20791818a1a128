"""A model named by folder or by MLflow model URI, as the commands take it (``--model``).

``models:/<name>/<version>``, ``models:/<name>@<alias>``, ``models:/<model id>`` and
``runs:/<run id>/<path>`` are downloaded from the tracking store (``pipeline.tracking.tracking_uri``:
$MLFLOW_TRACKING_URI, else the project's mlflow.db) into a folder the caller gives and removes;
the model's own files are then read from there exactly as a folder's are (sha256 sidecars checked,
weights only; the MLmodel file, which could name any loader, is never followed). Two kinds of
logged model carry files the commands read: the train stage's (pipeline.train.mlflow_model: its
``data/models``) and the ship stage's photo model (pipeline.photo_model: ``data/colorizer``, with
its guide in ``guide/``).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.console import redact
from pipeline.io import first_line

URI_SCHEMES = ("models:/", "runs:/")
LOGGED_FOLDERS = ("models", "colorizer")  # under data/: the train stage's, the photo model's


def is_uri(spec: str) -> bool:
    return spec.startswith(URI_SCHEMES)


def model_folder(spec: str, workdir: str | Path) -> Path:
    """``spec`` as a local model folder: a folder as given, an MLflow URI downloaded into
    ``workdir`` (module docstring). ValueError naming the URI when it names nothing the store
    holds, or a logged model without a model folder."""
    if not is_uri(spec):
        return Path(spec)
    import mlflow  # only for a URI: the commands start faster without it

    from pipeline.tracking import tracking_uri

    uri = tracking_uri()
    try:
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=spec, dst_path=str(workdir), tracking_uri=uri))  # fmt: skip
    except Exception as exc:  # MlflowException, OSError: one line naming what was asked
        raise ValueError(
            f"{spec}: not found in the tracking store {redact(uri)}: {first_line(exc)}"
        ) from None
    for name in LOGGED_FOLDERS:
        if (local / "data" / name).is_dir():
            return local / "data" / name
    raise ValueError(f"{spec}: not a model of this project (no data/models or data/colorizer)")
