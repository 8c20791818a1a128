"""The trained model on disk (``models/``): what evaluation, sampling, MLflow and the CLI load.

``ema.pt``: the EMA weights of the family's network as a state_dict, with ``ema.pt.sha256``.
``config.json``: ``{"step": N, "weights_sha256": ..., "params": {...}}``, the full params the model
was trained with, from which ``model.family``'s Method rebuilds the network, with
``config.json.sha256``. Loading checks both files against their sidecars before reading anything
from them (an edited config would silently change what the model does, or allocate a network of
any size), checks that ``weights_sha256`` names the weights beside it, and reads the weights with
``weights_only=True``: no code is ever loaded from these files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from pipeline.config import ConfigError, Params, from_dict, to_dict
from pipeline.config.params import upgraded
from pipeline.io import (
    CorruptFileError,
    atomic_dir,
    load_verified,
    read_json,
    recorded_digest,
    save_verified,
    write_json,
)
from pipeline.methods.base import GenerativeModel
from pipeline.registry import method_class

WEIGHTS_FILE, CONFIG_FILE = "ema.pt", "config.json"
MADE_BY = "the train stage (dvc repro train)"


def export_model(
    weights: dict[str, torch.Tensor], *, step: int, params: Params, out_dir: str | Path
) -> Path:
    """Write ``ema.pt`` (+ sha256) and ``config.json`` atomically."""
    with atomic_dir(out_dir) as tmp:
        digest = save_verified(weights, tmp / WEIGHTS_FILE)
        config = {"step": step, "weights_sha256": digest, "params": to_dict(params)}
        write_json(tmp / CONFIG_FILE, config, verified=True)
    return Path(out_dir)


def read_config(models_dir: str | Path) -> dict:
    """``models_dir/config.json``, checked against its sidecar; errors name the file."""
    path = Path(models_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained model in {models_dir}: {CONFIG_FILE} is missing")
    return read_json(path, ("params", "weights_sha256"), made_by=MADE_BY, verified=True)


def load_params_of(models_dir: str | Path, config: dict | None = None) -> Params:
    """The params in ``models_dir/config.json`` (``config``: that file, already read); errors
    name the file."""
    config = config or read_config(models_dir)
    try:
        return from_dict(Params, upgraded(config["params"]))
    except ConfigError as exc:
        raise ConfigError(f"{Path(models_dir) / CONFIG_FILE}: params: {exc}") from None


def load_model(models_dir: str | Path, device: torch.device | str = "cpu") -> GenerativeModel:
    """The exported EMA network (eval mode) as its family's GenerativeModel (``.net``,
    ``.params``, ``.sample``). Raises ValueError naming the file for a bad config.json, or
    weights that are corrupted or do not fit."""
    models_dir = Path(models_dir)
    config = read_config(models_dir)
    params = load_params_of(models_dir, config)
    weights = models_dir / WEIGHTS_FILE
    state = load_verified(weights, device)
    if config["weights_sha256"] != recorded_digest(weights):
        raise CorruptFileError(
            f"{models_dir / CONFIG_FILE}: weights_sha256 {config['weights_sha256']} is not the "
            f"sha256 of {weights} (files of two exports mixed); re-export the model"
        )
    method = method_class(params.model.family)
    fit_weights(state, method.build_net, params, weights, models_dir / CONFIG_FILE)
    net = method.build_net(params)
    net.load_state_dict(state)
    return method.model_class(net.to(device).eval(), params)


def fit_weights(
    state: object, build: Callable[[Params], torch.nn.Module], params: Params, weights: Path,
    config: Path,
) -> None:  # fmt: skip
    """CorruptFileError naming the file unless ``state`` is a state_dict of finite tensors that
    fits the network ``build(params)`` exactly, checked on a network built on the meta device
    (shapes without memory): an edited or crafted config.json asking for a huge network is
    refused before anything is allocated, and NaN weights never colour an image black."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build(params).state_dict().items()}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{weights}: not a state_dict of tensors")
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != shapes:
        wrong = sorted(k for k in shapes.keys() | found.keys() if shapes.get(k) != found.get(k))
        raise CorruptFileError(
            f"{weights}: does not fit the {params.model.family} network of {config} "
            f"({len(wrong)} tensor(s) missing, unexpected or of another shape, e.g. {wrong[0]!r}: "
            f"{found.get(wrong[0], 'missing')}, the network's {shapes.get(wrong[0], 'none')})"
        )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CorruptFileError(f"{weights}: {name} holds NaN or infinite values")


def load_on(models_dir: str | Path, device: str) -> GenerativeModel:
    """``load_model`` for a command's ``--model``/``--device``: ValueError for ``cuda`` without a
    CUDA device."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here (use --device cpu)")
    return load_model(models_dir, device)
