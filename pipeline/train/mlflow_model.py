"""The trained model in MLflow, with no code in its files.

The logged model is an ``mlflow.pyfunc`` model of the *loader-module* kind: its data is ``models/``
as exported (``ema.pt`` + sha256, ``config.json``) and its ``MLmodel`` names this module, which
MLflow imports from the installed ``pipeline`` package (nothing is pickled, no ``code_paths``).

Two ways to load it, and what each trusts:

- ``load_logged_model(uri)`` (recommended, and safe on a shared store): downloads the files and
  reads only ``config.json`` and ``ema.pt`` (sha256-checked, ``torch.load(weights_only=True)``),
  ignoring the ``MLmodel`` file. Returns the UNet, the diffusion process and the params.
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

from pipeline.config import Params
from pipeline.diffusion import GaussianDiffusion
from pipeline.models import UNet
from pipeline.train.export import load_model

DATA_DIR = "models"  # the exported directory's name inside the logged model's files


class DenoiserModel:
    """What ``mlflow.pyfunc`` wraps: ``predict({"x_t": (B, C, H, W) float32, "t": (B,) int64})``
    returns the network output (B, C', H, W) (eps, x0 or v by ``diffusion.prediction_type``;
    C' = 2C with learned variance)."""

    def __init__(self, net: UNet, params: Params) -> None:
        self.net, self.params = net, params

    def predict(self, model_input: dict[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        x_t = torch.as_tensor(np.asarray(model_input["x_t"], dtype=np.float32))
        t = torch.as_tensor(np.asarray(model_input["t"], dtype=np.int64))
        with torch.no_grad():
            return self.net(x_t, t).numpy()


def _load_pyfunc(data_path: str) -> DenoiserModel:
    """MLflow's loader-module hook: the model from the logged ``models/`` directory."""
    net, _, params = load_model(data_path)
    return DenoiserModel(net, params)


def signature(params: Params, out_channels: int) -> ModelSignature:
    """Tensor signature of ``predict``: x_t (-1, C, H, W) float32 and t (-1,) int64 in."""
    c, s = params.data.channels, params.data.image_size
    inputs = Schema(
        [TensorSpec(np.dtype("float32"), (-1, c, s, s), "x_t"), TensorSpec(np.dtype("int64"), (-1,), "t")]
    )
    outputs = Schema([TensorSpec(np.dtype("float32"), (-1, out_channels, s, s))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_model(models_dir: Path, registered_model: str | None) -> mlflow.models.model.ModelInfo:
    """Log ``models_dir`` as a pickle-free pyfunc model of the active run, registered as a new
    version of ``registered_model`` when it is set."""
    net, _, params = load_model(models_dir)
    with tempfile.TemporaryDirectory() as tmp:  # the data directory keeps a stable name
        data = Path(tmp) / DATA_DIR
        shutil.copytree(models_dir, data)
        return mlflow.pyfunc.log_model(
            name="model",
            loader_module=__name__,
            data_path=str(data),
            signature=signature(params, net.out_channels),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "diffusion-pipeline",  # this project, installed: it provides the loader module
            ],
            registered_model_name=registered_model,
        )


def load_logged_model(
    model_uri: str, device: torch.device | str = "cpu"
) -> tuple[UNet, GaussianDiffusion, Params]:
    """The logged EMA UNet (eval mode), its diffusion process and params, from any MLflow model
    URI (``runs:/<id>/model``, ``models:/<name>/<version>``, ``models:/<model id>``). Reads only the
    weights (sha256-checked, ``weights_only``) and ``config.json``: safe on a shared store."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return load_model(local / "data" / DATA_DIR, device)

