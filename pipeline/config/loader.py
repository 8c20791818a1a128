"""The generic typed loader: params.yaml -> frozen dataclasses, and back.

``from_dict(cls, raw)`` builds a dataclass from a mapping, checking each value against the field's
type hint (int, float, bool, str, Literal, tuple[int, ...], X | None, nested dataclasses) and
rejecting unknown keys; ``load_yaml`` reads YAML strictly (no duplicate or non-string keys) and
within bounds: a file of at most MAX_YAML_BYTES whose nodes, counted with every alias expanded,
number at most MAX_YAML_NODES (a 300-byte "billion laughs" of nested aliases expands to billions).
Errors are ``ConfigError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A params value is missing, unknown, of the wrong type or out of range."""


MAX_INT = 2**63 - 1  # any integer param: torch and numpy hold 64-bit signed integers
MAX_YAML_BYTES = 1 << 20  # a params file (params.yaml is about 12 kB)
MAX_YAML_NODES = 100_000  # scalars, lists and mappings with aliases expanded (params.yaml: ~500)


@contextlib.contextmanager
def section(name: str) -> Iterator[None]:
    """Re-raise a ValueError from a check as a ConfigError prefixed by the params section."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def check_positive(name: str, value: int, maximum: int | None = None) -> None:
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,}, got {value:,}")


def check_seed(name: str, value: int) -> None:
    if not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be an integer in [0, 2^63 - 1], got {shown(value)}")


def optional_inner(hint: Any) -> Any:
    """``X | None`` -> X; other hints unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner
    return hint


def convert(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint (int, float, bool, str, Literal, tuple[int, ...],
    X | None, a nested dataclass) and return it converted (lists -> tuples, ints -> floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of {fields_of(hint)}, got {shown(value)}")
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(map(str, args))
            raise ConfigError(f"{key}: unknown value {shown(value)}; allowed: {allowed}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping, got {shown(value)}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {shown(value)}")
        return tuple(convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {shown(value)}{_string_hint(value)}")
        if abs(value) > MAX_INT:
            raise ConfigError(f"{key} must be an integer of at most 2^63 - 1, got {shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise ConfigError(
                f"{key} must be a finite number, got {shown(value)}{_string_hint(value)}"
            )
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {shown(value)}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for {key}")  # a bug in this module


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def shown(value: Any) -> str:
    """repr of a value, shortened (a 400-digit number is not worth printing whole)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _string_hint(value: Any) -> str:
    """For a number that YAML read as a string (``1e-4``: PyYAML follows YAML 1.1, where a float
    needs a dot), say how to write it."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    mantissa, _, exponent = value.lower().partition("e")
    fixed = f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else value
    return f" (YAML reads {value} as text: write {fixed})"


def leaf_hints(cls: type, prefix: str) -> dict[str, Any]:
    """The dotted keys of a config dataclass's leaf fields and their type hints:
    {"diffusion.loss.w_vlb": float, ...}."""
    hints = typing.get_type_hints(cls)
    leaves: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            leaves.update(leaf_hints(hints[f.name], key))
        else:
            leaves[key] = hints[f.name]
    return leaves


def fields_of(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type, raw: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys; missing keys take defaults.
    A class that builds itself (``from_raw``: pipeline.config.Params, whose families' sections are
    not fields) is asked to."""
    if hasattr(cls, "from_raw"):
        return cls.from_raw(raw)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; allowed: {fields_of(cls)}"
        )
    kwargs = {k: convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**kwargs)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would otherwise accept silently: a key given twice
    (last wins) and keys that are not strings (``on:`` is the boolean true in YAML 1.1, ``1:`` a
    number), which no params key is."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError(
                    f"line {line}: key {key_node.value!r} is read as {type(key).__name__} "
                    f"{key!r}, not a name; quote it or fix the indentation"
                )
            if key in seen:
                raise ConfigError(
                    f"line {line}: duplicate key {key!r} (first at line {seen[key]}); "
                    "YAML would silently keep the last one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep)

    def construct_document(self, node: yaml.Node) -> Any:
        """Refuse a document that is too large once its aliases are expanded, before building it."""
        count = expanded_size(node)
        if count > MAX_YAML_NODES:
            raise ConfigError(
                f"{count:,} values with aliases expanded (more than {MAX_YAML_NODES:,}); params "
                "are small, so this is an alias bomb or not a params file"
            )
        return super().construct_document(node)


def expanded_size(root: yaml.Node) -> int:
    """The number of nodes of a composed YAML document with every alias expanded, counted without
    expanding (an alias is the same node object again: its size is computed once); ConfigError
    for an alias that contains itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in children), MAX_INT)
            continue
        if id(node) in open_nodes:
            line = node.start_mark.line + 1
            raise ConfigError(f"line {line}: an alias that contains itself (a recursive structure)")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (None when empty); ConfigError naming the file and the line
    for a syntax error, a duplicate key or a key that is not a string, and naming the file for one
    too large (MAX_YAML_BYTES, MAX_YAML_NODES)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(
                f"{size:,} bytes, more than the {MAX_YAML_BYTES:,} a params file may have"
            )
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path} is not valid YAML: {exc.problem or exc.context}{where}"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a params file") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-ready data (tuples become lists); a config that says
    how (``as_raw``: pipeline.config.Params) is asked to."""
    if hasattr(config, "as_raw"):
        return config.as_raw()

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))
