"""The trained model on disk (``models/``): what evaluation, sampling and MLflow load.

``ema.pt``: the EMA weights as a UNet state_dict, with ``ema.pt.sha256``. ``config.json``:
``{"step": N, "weights_sha256": ..., "params": {...}}``, the full params the model was trained with,
from which ``pipeline.build`` rebuilds the UNet and the diffusion process. Loading checks the
weights' sha256 and reads them with ``weights_only=True``: no code is ever loaded from these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.build import build_diffusion, build_unet
from pipeline.config import ConfigError, Params, from_dict, to_dict
from pipeline.diffusion import GaussianDiffusion
from pipeline.io import CorruptFileError, atomic_dir, load_verified, read_json, save_verified
from pipeline.models import UNet
from pipeline.train.checkpoint import ema_weights

WEIGHTS_FILE, CONFIG_FILE = "ema.pt", "config.json"
MADE_BY = "the train stage (dvc repro train)"


def export_model(state: dict[str, Any], params: Params, out_dir: str | Path) -> Path:
    """Write ``ema.pt`` (+ sha256) and ``config.json`` from a training checkpoint's state,
    atomically."""
    with atomic_dir(out_dir) as tmp:
        digest = save_verified(ema_weights(state), tmp / WEIGHTS_FILE)
        config = {"step": state["step"], "weights_sha256": digest, "params": to_dict(params)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


def load_params_of(models_dir: str | Path) -> Params:
    """The params in ``models_dir/config.json``; errors name that file."""
    path = Path(models_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained model in {models_dir}: {CONFIG_FILE} is missing")
    config = read_json(path, ("params", "weights_sha256"), made_by=MADE_BY)
    try:
        return from_dict(Params, config["params"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: params: {exc}") from None


def load_model(
    models_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[UNet, GaussianDiffusion, Params]:
    """The exported EMA UNet (eval mode), its diffusion process and params. Raises ValueError
    naming the file for a bad config.json, or weights that are corrupted or do not fit."""
    models_dir = Path(models_dir)
    params = load_params_of(models_dir)
    weights = models_dir / WEIGHTS_FILE
    state = load_verified(weights, device)
    net = build_unet(params)
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CorruptFileError(
            f"{weights}: does not fit the UNet of {models_dir / CONFIG_FILE} ({first})"
        ) from None
    return net.to(device).eval(), build_diffusion(params.diffusion).to(device), params
