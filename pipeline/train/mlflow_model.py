"""The trained model in MLflow, with no code in its files.

The logged model is an ``mlflow.pyfunc`` model of the *loader-module* kind: its data is ``models/``
as exported (``ema.pt`` + sha256, ``config.json``) and its ``MLmodel`` names this module, which
MLflow imports from the installed ``pipeline`` package (nothing is pickled, no ``code_paths``).

Two ways to load it, and what each trusts:

- ``load_logged_model(uri)`` (recommended, and safe on a shared store): downloads the files and
  reads only ``config.json`` and ``ema.pt`` (sha256-checked, ``torch.load(weights_only=True)``),
  ignoring the ``MLmodel`` file. Returns the family's GenerativeModel (``.net``, ``.params``,
  ``.sample``; for ddpm ``.diffusion``).
- ``mlflow.pyfunc.load_model(uri).predict({"x_t": ..., "t": ...})``: MLflow follows the ``MLmodel``
  file, which says which module loads the model; whoever can write to the artifact store could
  point it at a loader that unpickles. Use it on stores only trusted people write to.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from pipeline.methods.base import GenerativeModel, Signature
from pipeline.methods.export import load_model

DATA_DIR = "models"  # the exported directory's name inside the logged model's files


def _load_pyfunc(data_path: str) -> GenerativeModel:
    """MLflow's loader-module hook: the model from the logged ``models/`` directory (its family's
    GenerativeModel, whose ``predict`` pyfunc serves)."""
    return load_model(data_path)


def mlflow_signature(signature: Signature) -> ModelSignature:
    """MLflow's tensor signature of a family's ``predict`` (pipeline.methods.base.Signature)."""

    def schema(tensors):
        return Schema([TensorSpec(np.dtype(t.dtype), t.shape, t.name) for t in tensors])

    return ModelSignature(inputs=schema(signature.inputs), outputs=schema(signature.outputs))


def log_model(models_dir: Path, registered_model: str | None) -> mlflow.models.model.ModelInfo:
    """Log ``models_dir`` as a pickle-free pyfunc model of the active run, registered as a new
    version of ``registered_model`` when it is set."""
    model = load_model(models_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the data directory keeps a stable name
        data = Path(tmp) / DATA_DIR
        shutil.copytree(models_dir, data)
        return mlflow.pyfunc.log_model(
            name="model",
            loader_module=__name__,
            data_path=str(data),
            signature=mlflow_signature(model.signature()),
            input_example=model.input_example(),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "diffusion-pipeline",  # this project, installed: it provides the loader module
            ],
            registered_model_name=registered_model,
        )


def load_logged_model(model_uri: str, device: torch.device | str = "cpu") -> GenerativeModel:
    """The logged EMA model (network in eval mode, ``.params``, ``.sample``), from any MLflow model
    URI (``runs:/<id>/model``, ``models:/<name>/<version>``, ``models:/<model id>``). Reads only
    the weights (sha256-checked, ``weights_only``) and ``config.json``: safe on a shared store."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return load_model(local / "data" / DATA_DIR, device)
