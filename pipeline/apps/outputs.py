"""Where a command may write: the one rule every command's outputs pass before any work (DESIGN:
the user's files are theirs; a command writes only what it creates in this run).

``check_outputs(targets, inputs, overwrite=...)`` refuses, with one line naming the file:

1. a target whose name is not a file name (empty, ``.``, ``..``, or ending in a separator);
2. two targets that are one file: the same path after resolving links and ``..``, compared
   case-folded, so that a case-insensitive file system (macOS, Windows) cannot merge them either;
3. a target that is an input, the same file as an input (a hard or symbolic link), or inside an
   input folder (the next run would read it back as an input);
4. a target that exists, unless ``overwrite``; even then only a regular file is replaced, never a
   folder, a link or anything else;
5. a target below something that is not a folder;
6. a target below a link inside the output folder ``root`` (a subfolder of --out that links
   elsewhere would carry the output out of it; ``root`` itself may be a link the user made).

A command then writes each target through a temporary file beside it
(``pipeline.io.atomic_path(target, overwrite=...)``): a failure leaves no partial file, and without
``overwrite`` a file that took the name meanwhile is kept (OutputExistsError). Nothing deletes: a
command never removes a folder, or a file it did not write in this run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.io import OutputExistsError


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, None otherwise: links to one file share it."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(
    targets: Iterable[str | Path],
    inputs: Iterable[str | Path] = (),
    *,
    overwrite: bool = False,
    root: str | Path | None = None,
) -> list[Path]:
    """The targets as absolute paths with links and ``..`` resolved (what the file system would
    write), when every one may be written (module docstring, rules 1-6; ``root``: the output
    folder the targets lie in, if any); else ValueError, or OutputExistsError (a
    FileExistsError) for rule 4, naming the first offending target."""
    given = [Path(t) for t in targets]
    sources = [(Path(i), Path(i).resolve()) for i in inputs]
    input_files = {_identity(path) for path, _ in sources if path.is_file()} - {None}
    resolved = [target.resolve() for target in given]
    keys = {str(path).casefold(): target for path, target in zip(resolved, given, strict=True)}
    seen: dict[str, Path] = {}
    for target, path in zip(given, resolved, strict=True):
        text = str(target)
        if target.name in ("", ".", "..") or text.endswith((os.sep, "/")):
            raise ValueError(f"{text}: not a file name")
        key = str(path).casefold()
        if key in seen:
            raise ValueError(
                f"{target} would be written twice (as {seen[key]} too); give the outputs other "
                "names or other --out folders"
            )
        seen[key] = target
        for parent in path.parents:
            if str(parent).casefold() in keys:
                raise ValueError(
                    f"{target} would be written inside the output {keys[str(parent).casefold()]}"
                )
            if parent.exists() and not parent.is_dir():
                raise ValueError(f"{target}: {parent} is a file, not a folder")
        if root is not None:
            inside = [p for p in target.parents if p.is_relative_to(root) and p != Path(root)]
            if link := next((p for p in inside if p.is_symlink()), None):
                raise ValueError(
                    f"{target}: {link} is a link, which would carry the output out of {root}; "
                    "outputs are written only inside it"
                )
        if _identity(path) in input_files or any(path == source for _, source in sources):
            raise ValueError(f"{target} is an input of this command; it would be overwritten")
        for source_given, source in sources:
            if path.is_relative_to(source) and source_given.is_dir():
                raise ValueError(
                    f"{target} lies inside the input folder {source_given}: write outputs "
                    "elsewhere (a later run would read them as inputs)"
                )
        if target.is_symlink() or path.exists():
            if not overwrite:
                raise OutputExistsError(
                    f"{target} exists; pass --overwrite to replace it, or choose another output"
                )
            if target.is_symlink() or not path.is_file():
                raise ValueError(f"{target} exists and is not a regular file; it is never replaced")
    return resolved
