"""``reports/best_params.yaml``: the tune stage writes the winning values in params.yaml's
structure; the train stage applies them over params.yaml (unless ``tune.enabled`` is false)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import (
    ConfigError,
    Params,
    Spec,
    admits,
    dotted,
    from_dict,
    load_yaml,
    nest,
    override,
    to_dict,
)
from pipeline.io import atomic_path

log = logging.getLogger(__name__)


def write_best_params(values: Mapping[str, Any], path: str | Path, header: str) -> None:
    """``values`` (dotted keys) as nested YAML, under a ``# header`` comment line."""
    body = yaml.safe_dump(nest(values), sort_keys=False) if values else "{}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(f"# {header}\n{body}")


def read_best_params(path: str | Path) -> dict[str, Any]:
    """The dotted keys and values of a best_params.yaml (empty when it holds none)."""
    raw = load_yaml(path) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must hold a mapping of params sections, got {raw!r}")
    return dotted(raw)


def read_tuned(path: str | Path, specs: Mapping[str, Spec], tune_stage: str) -> dict[str, Any]:
    """The tuned values of ``path`` (dotted keys), checked against the sweep's ``specs``: an empty
    file is an error (tuning is on, so a sweep should have filled it), and so is a key outside
    ``tune.space`` or a value the space could not have drawn: the file can only set what the
    sweep searched. ``tune_stage`` is the command that re-runs the sweep, for the messages."""
    values = read_best_params(path)
    if not values:
        raise ConfigError(
            f"{path} holds no tuned values but tune.enabled is true: run the tune stage "
            f"({tune_stage}) or set tune.enabled: false"
        )
    for key, value in values.items():
        if key not in specs:
            raise ConfigError(
                f"{path}: key {key} is not in tune.space, so no sweep chose it; allowed: "
                f"{', '.join(specs)} (re-run {tune_stage})"
            )
        if not admits(specs[key], value):
            spec = specs[key]
            raise ConfigError(
                f"{path}: {key} value {value!r} is outside tune.space's {spec.kind} "
                f"{list(spec.values)} (re-run {tune_stage})"
            )
    return values


def apply_best_params(params: Params, path: str | Path) -> Params:
    """``params`` with the tuned values of ``path`` applied (validated, ``read_tuned``), when
    tune.enabled; ``params`` unchanged when it is false."""
    if not params.tune.enabled:
        return params
    values = read_tuned(path, params.tune.specs, "dvc repro tune")
    log.info("applying tuned values from %s: %s", path, values)
    try:
        return from_dict(Params, override(to_dict(params), values))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
