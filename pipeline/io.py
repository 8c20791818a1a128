"""Files the pipeline writes and reads back: never half-written, never silently corrupt.

- ``atomic_path`` / ``atomic_dir``: write to a temporary sibling, fsync, then rename into place;
  one complete version of the target exists at every moment. ``atomic_path(overwrite=False)``
  publishes only if nothing has taken the name (a hard link, which fails on an existing name).
- ``save_verified`` / ``load_verified``: torch files with a ``<name>.sha256`` sidecar recorded when
  written (``sha256sum -c`` format) and checked when read. torch does not check its zip CRCs, so
  flipped tensor bytes would otherwise load as wrong numbers. Loading is ``weights_only=True``:
  tensors and plain containers, never code.
- ``write_json`` / ``read_json``: a JSON object written atomically (with ``verified=True``, with a
  sha256 sidecar like the torch files) and read back with its required keys (and, when
  ``verified``, its sidecar checked first), or one error line naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

CHUNK = 1 << 20  # bytes read per iteration when hashing (1 MiB)


class CorruptFileError(ValueError):
    """A file is unreadable, or its bytes differ from the sha256 recorded when it was written."""


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its first), or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (constant memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError of the block that names no file (a write that hit a full disk or a quota),
    raised again naming ``path``: "[Errno 28] No space left on device: '<path>'"."""
    try:
        yield
    except OSError as exc:
        if exc.errno and exc.filename is None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from exc
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` (and the directories), so a rename publishes durable data."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        _fsync_dir(directory)


class OutputExistsError(FileExistsError):
    """A command would replace a file it was not told to replace."""


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: a rename, or without ``overwrite`` a hard link, which
    fails when the name exists (no check-then-write race), then the temporary name removed."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(
            f"{path} exists (it appeared while this command ran); it was left as it was"
        ) from None
    except OSError:  # a file system without hard links: the check and the rename are two steps
        if path.exists() or path.is_symlink():
            raise OutputExistsError(f"{path} exists; it was left as it was") from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The suffix is kept
    so that writers which infer the format from it (matplotlib, PIL) still work. The result has the
    usual mode (0666 less the umask), not mkstemp's 0600. ``overwrite=False``: OutputExistsError,
    and ``path`` untouched, when ``path`` exists by the time the file is published. Folders it
    made for ``path`` are removed again when nothing was published (a full disk left empty
    subfolders behind), unless something else was written into them meanwhile.
    """
    path = Path(path)
    made = [folder for folder in path.parents if not folder.exists()]  # innermost first
    tmp = None
    with _naming(path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
            )
            os.close(fd)
            tmp = Path(name)
            yield tmp
            tmp.chmod(0o666 & ~_umask())
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            _publish(tmp, path, overwrite)
            _fsync_dir(path.parent)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            for folder in made:
                with contextlib.suppress(OSError):  # not empty: someone else's file keeps it
                    folder.rmdir()
            raise
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path``.

    The swap is by rename: the old directory is renamed aside, the new one renamed in, then the old
    one deleted, so a crash at any point leaves a complete version (the new one, or the old one
    under ``.<name>.old-*`` beside it). On an exception ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    # mkdtemp makes 0700: the result should look like any other directory
    tmp.chmod(0o777 & ~_umask())
    try:
        with _naming(path):
            yield tmp
        _fsync_tree(tmp)
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            old.rmdir()
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the previous version back
                os.replace(old, path)
            raise
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_into_place(source: str | Path, path: str | Path) -> None:
    """Copy the file ``source`` to ``path``, or the files of the folder ``source`` into a folder
    that replaces ``path``, atomically (atomic_path, atomic_dir)."""
    source = Path(source)
    if source.is_dir():
        with atomic_dir(path) as tmp:
            for file in source.iterdir():
                shutil.copyfile(file, tmp / file.name)
    else:
        with atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)


# --------------------------------------------------------------------------- checksums
def sidecar(path: str | Path) -> Path:
    """``<path>.sha256``: the digest recorded when ``path`` was written."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_checksum(path: str | Path, name: str | None = None) -> str:
    """Record ``path``'s sha256 in its sidecar as ``<hex>  <name>`` (``sha256sum -c`` reads it);
    ``name`` is the file name the data will have (default: ``path``'s). Returns the digest."""
    path = Path(path)
    name = name or path.name
    digest = file_digest(path)
    with atomic_path(path.with_name(name + ".sha256")) as tmp:
        tmp.write_text(f"{digest}  {name}\n")
    return digest


def recorded_digest(path: str | Path) -> str:
    """The sha256 recorded in ``path``'s sidecar (after ``verify_checksum``, the file's own)."""
    path, record = Path(path), sidecar(path)
    try:
        return record.read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        raise CorruptFileError(
            f"{path}: no readable {record.name} beside it, so its integrity cannot be checked "
            "(written by an older version or copied without it); re-create it"
        ) from None


def verify_checksum(path: str | Path) -> str:
    """The sha256 of ``path`` when it equals the one in its sidecar; CorruptFileError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    expected = recorded_digest(path)
    got = file_digest(path)
    if got != expected:
        raise CorruptFileError(
            f"{path}: sha256 {got} differs from {expected} recorded when it was written "
            "(the file is corrupted or was modified)"
        )
    return got


def save_verified(obj: Any, path: str | Path) -> str:
    """``torch.save(obj)`` to ``path`` atomically, with its sha256 sidecar; returns the digest.
    The same tensors give the same bytes: torch names a zip archive's root after the file it is
    given by name (here a random temporary name), but "archive" when given an open file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        digest = write_checksum(tmp, name=path.name)
    return digest


def load_verified(
    path: str | Path, map_location: torch.device | str = "cpu", *, check: bool = True
) -> Any:
    """A file written by ``save_verified``: its sha256 checked against the sidecar, then loaded
    with ``weights_only=True`` (tensors and plain containers only). ``check=False`` skips the hash
    and memory-maps the tensors: a cheap peek at the structure, never a result to use.
    CorruptFileError names the file on any failure."""
    path = Path(path)
    if check:
        verify_checksum(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=not check)
    except (
        RuntimeError,
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
    ) as exc:
        raise CorruptFileError(
            f"{path}: cannot be loaded as a tensor file ({first_line(exc)})"
        ) from None


# --------------------------------------------------------------------------------- JSON
def write_json(path: str | Path, data: dict, *, verified: bool = False) -> Path:
    """``data`` as indented JSON with sorted keys, atomically; ``verified``: with its sha256
    sidecar, for a file that is later read back as a trusted input (``read_json(verified=True)``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if verified:
            write_checksum(tmp, name=path.name)
    return path


def read_json(
    path: str | Path, required: Iterable[str] = (), *, made_by: str = "", verified: bool = False
) -> dict:
    """The JSON object in ``path``, holding every key of ``required``; else ValueError naming the
    file (and ``made_by``, the stage that writes it, so the message says what to re-run).
    ``verified``: the file's sha256 is first checked against its sidecar (``write_json``)."""
    path = Path(path)
    hint = f"; re-run {made_by}" if made_by else ""
    if verified:
        try:
            verify_checksum(path)
        except CorruptFileError as exc:
            raise CorruptFileError(f"{exc}{hint}") from None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist{hint}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path} is not valid JSON ({exc}){hint}") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} must hold a JSON object, got {type(data).__name__}{hint}")
    missing = [key for key in required if key not in data]
    if missing:
        raise CorruptFileError(f"{path} lacks key(s) {', '.join(missing)}{hint}")
    return data
