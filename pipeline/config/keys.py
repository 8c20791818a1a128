"""Dotted params keys (``diffusion.loss.w_vlb``) and the nested mappings they address: set them
(``override``), build (``nest``), list (``dotted``) and flatten to MLflow's string params."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def override(tree: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the nested ``tree`` with each dotted key of ``values`` set."""
    out = copy.deepcopy(dict(tree))
    for key, value in values.items():
        *sections, name = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return out


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"train.lr": 1e-3} -> {"train": {"lr": 1e-3}}: params.yaml's structure."""
    return override({}, values)


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}: the inverse of ``nest`` (values kept)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flatten(tree: Mapping[str, Any]) -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: nested params as MLflow's flat string params."""
    return {key: str(value) for key, value in dotted(tree).items()}
