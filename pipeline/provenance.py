"""What a result was made from: the code that produced it, as a digest of its source files.

A run's identity (its Ray run name, hence its resume point) covers the params, the data and the
code. ``code_digest("pipeline.train.worker")`` hashes the source of that module and of every
``pipeline`` module it imports, transitively (read from the files' import statements, not from
what happens to be loaded): editing the training loop, the UNet or the loss changes the digest and
starts a new run, while editing the evaluate stage or the CLI does not.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pipeline

PACKAGE = "pipeline"


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name``: ``pipeline.x.y`` under the package ``root``; another
    module (a model family registered from outside the package) where Python finds it."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        spec = importlib.util.find_spec(name)
        return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(file: Path, name: str) -> set[str]:
    """The ``pipeline.*`` names a module imports anywhere in its body (``from a import b`` gives
    both ``a`` and ``a.b``, as ``b`` may be a submodule), and its parent packages (importing
    ``a.b`` runs ``a/__init__.py``)."""
    found: set[str] = set()
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{anchor}.{module}" if module else anchor
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    mine = {n for n in found if n == PACKAGE or n.startswith(PACKAGE + ".")}
    parents = {".".join(n.split(".")[:i]) for n in mine for i in range(1, n.count(".") + 1)}
    return mine | parents


def source_closure(module: str, root: str | Path | None = None) -> dict[str, Path]:
    """Module name -> source file, for ``module`` and every package module it imports,
    transitively. ``root``: the package directory (default: the installed ``pipeline``)."""
    root = Path(root) if root is not None else Path(pipeline.__file__).parent
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        file = _module_file(name, root)
        if file is None:  # an attribute imported with ``from``, not a module
            continue
        seen[name] = file
        todo.extend(imports_of(file, name) - set(seen))
    return seen


def code_digest(module: str, root: str | Path | None = None) -> str:
    """sha256 over the (module name, source bytes) of ``source_closure(module, root)``."""
    digest = hashlib.sha256()
    for name, file in sorted(source_closure(module, root).items()):
        digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def identity_name(prefix: str, identity: Any) -> str:
    """``<prefix>-<12 hex>``: the sha256 of ``identity`` (JSON, sorted keys), what a run's or a
    sweep's results depend on. The same name resumes (or restores) the same work; any change
    starts a new one."""
    payload = json.dumps(identity, sort_keys=True).encode()
    return f"{prefix}-{hashlib.sha256(payload).hexdigest()[:12]}"
