"""Tar extraction that refuses members escaping the target directory.

Every member is checked before anything is written: absolute names, ``..`` components, symbolic or
hard links whose target resolves outside the directory, and device files make ``UnsafeArchiveError``
(naming the member) and nothing is extracted. Extraction then runs with the standard library's
``filter="data"`` as a second line of defence, into a temporary directory renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from pipeline.console import progress_bar


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction directory."""


def _inside(root: Path, path: Path) -> bool:
    return os.path.commonpath([root, path]) == str(root)


def check_members(archive: Path, members: list[tarfile.TarInfo], root: Path) -> None:
    """Raise UnsafeArchiveError for the first member that would escape ``root``."""
    root = root.resolve()
    for m in members:
        name = PurePosixPath(m.name)
        target = (root / m.name).resolve()
        if name.is_absolute() or ".." in name.parts or not _inside(root, target):
            raise UnsafeArchiveError(
                f"{archive.name}: member {m.name!r} would be written outside {root}"
            )
        if m.issym() or m.islnk():
            base = target.parent if m.issym() else root
            link = (base / m.linkname).resolve()
            if PurePosixPath(m.linkname).is_absolute() or not _inside(root, link):
                raise UnsafeArchiveError(
                    f"{archive.name}: link {m.name!r} -> {m.linkname!r} points outside {root}"
                )
        if m.isdev():
            raise UnsafeArchiveError(f"{archive.name}: member {m.name!r} is a device file")


def extract_tar(archive: str | Path, dest: str | Path, *, progress: bool = True) -> Path:
    """Safely extract a (possibly compressed) tar archive into ``dest``, replacing it."""
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(f".{dest.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(archive, members, tmp)
            for m in progress_bar(
                members, desc=f"extract {archive.name}", unit="file", disable=not progress
            ):
                tar.extract(m, tmp, filter="data")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
