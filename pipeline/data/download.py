"""Verified downloads: mirrors, retries with backoff, resume, checksum, temp name then rename.

``fetch(remote, cache_dir)`` returns the path of a file whose checksum has been verified. It
downloads to ``<name>.part`` in the cache directory (outside DVC's outputs, which DVC deletes before a
stage runs), resumes a ``.part`` left by an interrupted run with an HTTP Range request, restarts when
the server ignores the range, and renames to the final name only after the checksum matches. A
mismatch deletes the partial file and tries the next mirror; when every mirror fails the error lists
each URL with its reason (for a mismatch: expected vs got).
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipeline.console import progress_bar
from pipeline.io import CHUNK, file_digest

log = logging.getLogger(__name__)

CHECKSUM_ALGORITHMS = ("md5", "sha256")
USER_AGENT = "diffusion-pipeline (https://github.com/; dataset download)"


class DownloadError(OSError):
    """Every mirror of a file failed; the message lists each URL and its reason."""


class ChecksumError(ValueError):
    """A file's digest differs from the pinned one."""


@dataclass(frozen=True)
class RemoteFile:
    """A file with its mirrors (tried in order) and pinned checksum ``"<md5|sha256>:<hex>"``."""

    filename: str
    urls: tuple[str, ...]
    checksum: str

    def __post_init__(self) -> None:
        algorithm, _, digest = self.checksum.partition(":")
        if algorithm not in CHECKSUM_ALGORITHMS or not digest:
            raise ValueError(
                f"checksum of {self.filename} must be '<algorithm>:<hex>' with algorithm in "
                f"{CHECKSUM_ALGORITHMS}, got {self.checksum!r}"
            )


def verify(path: Path, checksum: str, origin: str) -> None:
    """Raise ChecksumError (expected vs got, and where the file came from) on a mismatch."""
    algorithm, _, expected = checksum.partition(":")
    got = file_digest(path, algorithm)
    if got != expected:
        raise ChecksumError(
            f"{algorithm} mismatch for {path.name} from {origin}: expected {expected}, got {got} "
            f"({path.stat().st_size} bytes)"
        )


# what the network raises; any other OSError is the local disk (no space, a directory in the way)
NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)


def _is_transient(exc: Exception) -> bool:
    """Worth retrying: connection problems, timeouts, truncated bodies, HTTP 408/429/5xx."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 429) or exc.code >= 500
    return isinstance(exc, NETWORK_ERRORS)


def _download_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (Range request when part has bytes; restart on 200)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already complete (or longer than the file)
            return
        raise
    with response:
        if offset and response.status != 206:
            log.info("%s ignored the range request: restarting %s", url, part.name)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with (
            open(part, mode) as f,
            progress_bar(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.stem,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def fetch(
    remote: RemoteFile,
    cache_dir: str | Path,
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> Path:
    """Return ``cache_dir/remote.filename``, downloading and verifying it if needed.

    1) a complete file already in the cache is verified and returned (a bad one is deleted)
    2) each mirror in turn: up to ``retries`` attempts on transient errors, waiting
       backoff_s * 2^attempt between them and resuming the .part file
    3) the finished .part is verified: on success renamed into place, else deleted (next mirror)
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / remote.filename
    part = final.with_name(final.name + ".part")
    if final.exists():
        try:
            verify(final, remote.checksum, str(final))
            return final
        except ChecksumError as exc:
            log.warning("%s; downloading it again", exc)
            final.unlink()
    failures: list[str] = []
    for url in remote.urls:
        for attempt in range(retries + 1):
            try:
                _download_once(url, part, timeout_s, progress)
                verify(part, remote.checksum, url)
                part.replace(final)
                log.info("downloaded %s from %s", remote.filename, url)
                return final
            except ChecksumError as exc:
                part.unlink(missing_ok=True)
                failures.append(f"{url}: {exc}")
                break  # the mirror serves wrong bytes: retrying it will not help
            except Exception as exc:
                if isinstance(exc, OSError) and not isinstance(exc, NETWORK_ERRORS):
                    # the local disk (no space, a directory in the way): no retry, no other mirror
                    raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
                if not _is_transient(exc) or attempt == retries:
                    failures.append(f"{url}: {type(exc).__name__}: {exc}")
                    break
                wait = backoff_s * 2**attempt
                log.warning("%s: %s; retry %d/%d in %.1fs", url, exc, attempt + 1, retries, wait)
                time.sleep(wait)
    part.unlink(missing_ok=True)
    raise DownloadError(f"could not download {remote.filename}:\n  " + "\n  ".join(failures))
