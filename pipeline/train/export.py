"""The trained model on disk (``models/``): what evaluation and sampling load.

``ema.pt``: the EMA weights as a UNet state_dict. ``config.json``: ``{"step": N, "params": {...}}``,
the full params the model was trained with, from which ``pipeline.build`` rebuilds the UNet and the
diffusion process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pipeline.build import build_diffusion, build_unet
from pipeline.config import Params, from_dict, to_dict
from pipeline.diffusion import GaussianDiffusion
from pipeline.io import atomic_dir
from pipeline.models import UNet
from pipeline.train.checkpoint import ema_weights

WEIGHTS_FILE, CONFIG_FILE = "ema.pt", "config.json"


def export_model(state: dict[str, Any], params: Params, out_dir: str | Path) -> Path:
    """Write ``ema.pt`` and ``config.json`` from a training checkpoint's state, atomically."""
    with atomic_dir(out_dir) as tmp:
        torch.save(ema_weights(state), tmp / WEIGHTS_FILE)
        config = {"step": state["step"], "params": to_dict(params)}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return Path(out_dir)


def load_model(
    models_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[UNet, GaussianDiffusion, Params]:
    """The exported EMA UNet (eval mode), its diffusion process and params."""
    models_dir = Path(models_dir)
    if not (models_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no trained model in {models_dir}: {CONFIG_FILE} is missing")
    config = json.loads((models_dir / CONFIG_FILE).read_text())
    params = from_dict(Params, config["params"])
    net = build_unet(params)
    net.load_state_dict(
        torch.load(models_dir / WEIGHTS_FILE, map_location=device, weights_only=True)
    )
    return net.to(device).eval(), build_diffusion(params.diffusion).to(device), params
