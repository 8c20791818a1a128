"""The search space of ``tune.space``, parsed and checked before any trial starts.

The space is nested as the params are (``diffusion: {schedule: ..., loss: {min_snr_gamma: ...}}``,
``train: {lr: ...}``), so that ``dvc exp run -S tune.space.train.lr.loguniform=[1e-4,1e-2]`` can set
a key (DVC splits ``-S`` keys on dots: a dotted key such as ``train.lr`` cannot be addressed, and is
refused). Parsed, each key is its dotted params path (``diffusion.loss.min_snr_gamma``). Each leaf
is one of:

- a plain value (``0.02``, ``cosine``, ``null``): fixed for every trial;
- ``{choice: [a, b, ...]}``: drawn uniformly from the list;
- ``{grid: [a, b, ...]}``: every value, in trials of its own (search ``random`` only);
- ``{uniform: [low, high]}`` / ``{loguniform: [low, high]}``: a float in the range;
- ``{randint: [low, high]}``: an integer in the range, both ends included.

This module is pure data handling (no Ray): ``pipeline.config`` validates with it, and
``pipeline.tune.sweep`` turns the parsed specs into Ray Tune domains. Dotted keys are handled by
``pipeline.config.keys``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LISTS = ("choice", "grid")  # kinds that take a list of values
RANGES = ("uniform", "loguniform", "randint")  # kinds that take [low, high]
KINDS = LISTS + RANGES


@dataclass(frozen=True)
class Spec:
    """One key's search domain: ``kind`` is ``fixed`` or one of KINDS; ``values`` the fixed value
    (1-tuple), the listed values, or (low, high)."""

    kind: str
    values: tuple[Any, ...]


def parse_spec(key: str, raw: Any) -> Spec:
    """The Spec of ``raw``; ValueError naming the key, the value and what is allowed."""
    if not isinstance(raw, Mapping):
        return Spec("fixed", (raw,))
    if len(raw) != 1 or next(iter(raw)) not in KINDS:
        raise ValueError(
            f"{key}: a search spec is a mapping with one of {', '.join(KINDS)}, got {dict(raw)!r}"
        )
    ((kind, values),) = raw.items()
    if not isinstance(values, list | tuple):
        raise ValueError(f"{key}: {kind} needs a list, got {values!r}")
    if kind in LISTS:
        if not values:
            raise ValueError(f"{key}: {kind} needs at least one value, got []")
        return Spec(kind, tuple(values))
    if len(values) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ValueError(f"{key}: {kind} needs [low, high] (two finite numbers), got {values!r}")
    low, high = values
    if not low < high:
        raise ValueError(f"{key}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{key}: loguniform needs low > 0, got [{low}, {high}]")
    if kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise ValueError(f"{key}: randint needs integer bounds, got [{low}, {high}]")
    return Spec(kind, (low, high))


def admits(spec: Spec, value: Any) -> bool:
    """Whether ``spec`` could have produced ``value`` (a listed value, or a number in the range)."""
    if spec.kind in RANGES:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (spec.kind == "randint" and not isinstance(value, int)):
            return False
        low, high = spec.values
        return low <= value <= high
    return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in spec.values)


def flat_space(
    space: Mapping[str, Any], leaves: Iterable[str] = (), prefix: str = ""
) -> dict[str, Any]:
    """The nested space as dotted params path -> its leaf: a spec or a fixed value (a mapping is
    a section to descend into unless it names a kind or its path is one of ``leaves``, the
    searchable keys). ValueError for a dotted key (naming the nested form that replaces it) or an
    empty section."""
    leaves = set(leaves)
    flat: dict[str, Any] = {}
    for key, raw in space.items():
        path = f"{prefix}{key}"
        if "." in str(key):
            head, *rest = str(key).split(".")
            nested = "".join(f"{part}: {{" for part in rest) + "..." + "}" * len(rest)
            raise ValueError(
                f"{path}: a dotted key cannot be set with dvc exp run -S; nest it as the params "
                f"are ({prefix}{head}: {{{nested}}})"
            )
        section = isinstance(raw, Mapping) and path not in leaves
        if section and not any(kind in raw for kind in KINDS):
            if not raw:
                raise ValueError(f"{path}: an empty section; give it keys or leave it out")
            flat.update(flat_space(raw, leaves, f"{path}."))
        else:
            flat[path] = raw
    return flat


def parse_space(space: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Spec]:
    """Every key's Spec, by dotted path (``flat_space``); ValueError for a key outside
    ``allowed`` (listing them) or a bad spec."""
    allowed = sorted(allowed)
    space = flat_space(space, allowed)
    unknown = sorted(set(space) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown or untunable key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return {key: parse_spec(key, raw) for key, raw in space.items()}
