"""A colorizer as an MLflow model that colours photos: ``mlflow models serve -m
models:/diffusion-pipeline-photo-colorizer@shipped`` answers a photo with the colorized photo.

Input: a table with one column ``image`` (binary: the photo file's bytes, any format the colorize
command reads; base64 in a JSON request); output: one column ``png`` (the colorized photo as PNG
bytes, base64 in the JSON answer), one row per photo. ``params`` (MLflow's inference params,
checked against the signature): ``vividness``, ``saturation``, ``seed``, ``steps``, as the colorize
command's options. A photo that cannot be read, or above MAX_MEGAPIXELS, is refused with the
command's message.

The logged model is of the *loader-module* kind, as the train stage's (pipeline.train.mlflow_model):
its data is the colorizer's folder (pipeline/colorizer: the diffusion model, its guide in
``guide/``, the sha256 sidecars), nothing is pickled, and this module is imported from the installed
package; loading verifies the folders as ``colorize --model`` does. The ship stage logs and
registers it (colorize/shipped/dvc.yaml).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image

from pipeline.imagefile import DEFAULT_MEGAPIXELS, read_rgb
from pipeline.photo import decoding
from pipeline.photo_colorizer import SATURATIONS, Colorizer
from pipeline.shipped import GUIDE_DIR

DATA_DIR = "colorizer"  # the colorizer's folder inside the logged model's files
INPUT, OUTPUT = "image", "png"
MAX_MEGAPIXELS = DEFAULT_MEGAPIXELS


class PhotoColorizer:
    """``predict(table of photo bytes, params)`` -> table of PNG bytes (module docstring)."""

    def __init__(self, colorizer: Colorizer) -> None:
        self.colorizer = colorizer

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        chosen = decoding(
            self.colorizer.guide is not None, params.get("vividness"), params.get("saturation")
        )
        if (
            not 0 <= chosen.vividness <= 1
            or not SATURATIONS[0] <= chosen.saturation <= SATURATIONS[1]
        ):
            raise ValueError(
                f"vividness must be in [0, 1] and saturation in [{SATURATIONS[0]:g}, "
                f"{SATURATIONS[1]:g}], got {chosen.vividness} and {chosen.saturation}"
            )
        steps = self.colorizer.steps(int(params["steps"]) if params.get("steps") else None)
        out = []
        for k, data in enumerate(model_input[INPUT]):
            with tempfile.NamedTemporaryFile(suffix=".img") as f:  # read as the command reads
                f.write(bytes(data))
                f.flush()
                try:
                    rgb = read_rgb(Path(f.name), round(MAX_MEGAPIXELS * 1e6))
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    raise ValueError(f"photo {k}: {exc}") from None
            image = next(self.colorizer.colorize(
                rgb, seed=int(params.get("seed", 0)), steps=steps,
                vividness=chosen.vividness, saturation=chosen.saturation))  # fmt: skip
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return pd.DataFrame({OUTPUT: out})


def _load_pyfunc(data_path: str) -> PhotoColorizer:
    """MLflow's loader-module hook: the colorizer in the logged folder and its guide, verified."""
    folder = Path(data_path)
    return PhotoColorizer(Colorizer.load(str(folder), str(folder / GUIDE_DIR), device=None))


def signature(colorizer: Colorizer) -> ModelSignature:
    """Photo bytes in, PNG bytes out, the decoding's settings as params with their defaults."""
    chosen = decoding(colorizer.guide is not None, None, None)
    return ModelSignature(
        inputs=Schema([ColSpec("binary", INPUT)]),
        outputs=Schema([ColSpec("binary", OUTPUT)]),
        params=ParamSchema(
            [
                ParamSpec("vividness", "double", chosen.vividness),
                ParamSpec("saturation", "double", chosen.saturation),
                ParamSpec("seed", "long", 0),
                ParamSpec("steps", "long", colorizer.steps(None)),
            ]
        ),  # fmt: skip
    )


def log_photo_model(folder: Path, registered_model: str | None) -> mlflow.models.model.ModelInfo:
    """Log the colorizer ``folder`` (with its guide) as a photo model of the active run,
    registered as a new version of ``registered_model`` when given."""
    colorizer = Colorizer.load(str(folder), str(folder / GUIDE_DIR), device="cpu")
    example = io.BytesIO()
    Image.new("L", (64, 48), 128).save(example, format="PNG")
    with tempfile.TemporaryDirectory() as tmp:  # the data directory keeps a stable name
        data = Path(tmp) / DATA_DIR
        shutil.copytree(folder, data, ignore=shutil.ignore_patterns("__pycache__"))
        return mlflow.pyfunc.log_model(
            name="photo_model",
            loader_module=__name__,
            data_path=str(data),
            signature=signature(colorizer),
            input_example=pd.DataFrame({INPUT: [example.getvalue()]}),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "diffusion-pipeline",  # this project, installed: it provides the loader module
            ],
            registered_model_name=registered_model,
        )
