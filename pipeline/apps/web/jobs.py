"""The web page's work queue: photos wait in a bounded queue and one worker thread does them, off
the request threads, so the page stays responsive and the memory in use is one command's.

Fair between pages: each page (a browser tab, its ``client`` id) has its own line, and the worker
takes the next photo from each line in turn, so a tab that dropped a folder of 500 photos does not
hold back another tab's one photo. At most ``MAX_WAITING`` photos wait (uploaded, not yet started;
more are refused with QueueFull and the page tries again later), and the finished jobs kept for the
page to show are the last ``MAX_KEPT``; their outputs stay in the output folder.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io import first_line

MAX_WAITING = 64  # photos uploaded and not yet started, over all pages
MAX_KEPT = 1000  # finished jobs whose state and previews the page may still ask for

# what a job may raise for its photo alone (a bad file, a photo too large): the job fails with its
# first line; anything else is a bug and fails the job with the exception's type named
EXPECTED = (OSError, ValueError, MemoryError)


def message(exc: BaseException, upload: Path, name: str) -> str:
    """``exc``'s first line naming the file by the name it was sent with, not the upload's path."""
    return first_line(exc).replace(str(upload), name)


class QueueFull(RuntimeError):
    """MAX_WAITING photos wait already."""


@dataclass
class Job:
    """One photo's work: ``run(job)`` does it (off the request thread) and returns the output
    file, reporting ``progress`` (0-1) as it goes."""

    id: str
    client: str
    name: str  # the uploaded file's name, as the page shows it
    run: Callable[[Job], Path]
    upload: Path  # the uploaded bytes, removed when the job ends
    state: str = "queued"  # queued | working | done | failed
    progress: float = 0.0
    error: str | None = None
    output: Path | None = None
    previews: dict[str, bytes] = field(default_factory=dict)  # gray, result: JPEG bytes
    started: float | None = None
    seconds: float | None = None  # working time, once done or failed


class JobQueue:
    """Jobs per page served in turn by one worker thread (module docstring)."""

    def __init__(self) -> None:
        # client -> its waiting jobs, in the order the worker visits the clients (the one it
        # took from last moves to the end)
        self.lines: dict[str, collections.deque[Job]] = {}
        self.jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self.ready = threading.Condition()  # re-entrant: submit asks position under it
        self.stopped = False
        self.worker = threading.Thread(target=self._work, name="pipeline-serve-worker", daemon=True)
        self.worker.start()

    def submit(self, job: Job) -> int:
        """Queue ``job``; its place in the queue (0: next). QueueFull when MAX_WAITING wait."""
        with self.ready:
            if self.waiting() >= MAX_WAITING:
                raise QueueFull(
                    f"{MAX_WAITING} photos are waiting already; this one is sent again when "
                    "some are done"
                )
            self.lines.setdefault(job.client, collections.deque()).append(job)
            self.jobs[job.id] = job
            while len(self.jobs) > MAX_KEPT + MAX_WAITING:
                self._forget_oldest_finished()
            self.ready.notify()
            return self.position(job)

    def waiting(self) -> int:
        with self.ready:
            return sum(len(line) for line in self.lines.values())

    def position(self, job: Job) -> int:
        """How many waiting jobs the worker takes before ``job`` (each page's next in turn).
        Under the lock: the worker changes the lines meanwhile."""
        with self.ready:
            if job not in self.lines.get(job.client, ()):
                return 0
            order = list(self.lines)
            rank, turn = list(self.lines[job.client]).index(job), order.index(job.client)
            return rank + sum(
                min(len(self.lines[other]), rank + (k < turn)) for k, other in enumerate(order)
                if other != job.client
            )  # fmt: skip

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def stop(self) -> None:
        """Let the worker finish its photo and stop; the waiting jobs are dropped."""
        with self.ready:
            self.stopped = True
            for line in self.lines.values():
                for job in line:
                    job.upload.unlink(missing_ok=True)
            self.lines.clear()
            self.ready.notify()
        self.worker.join()

    def _forget_oldest_finished(self) -> None:
        for job_id, job in self.jobs.items():
            if job.state in ("done", "failed"):
                del self.jobs[job_id]
                return

    def _next(self) -> Job | None:
        """The first page's next job; that page then goes to the end of the round."""
        with self.ready:
            while not self.stopped and not self.lines:
                self.ready.wait()
            if self.stopped:
                return None
            client = next(iter(self.lines))
            line = self.lines.pop(client)
            job = line.popleft()
            if line:
                self.lines[client] = line  # at the end
            job.state, job.started = "working", time.monotonic()
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                job.output = job.run(job)
                job.progress, job.state = 1.0, "done"
            except EXPECTED as exc:  # named by the file's name, not the upload's path
                job.error = message(exc, job.upload, job.name)
                job.state = "failed"
            except Exception as exc:  # a bug: the page says so, the server goes on
                job.error, job.state = f"{type(exc).__name__}: {first_line(exc)}", "failed"
            finally:
                job.upload.unlink(missing_ok=True)
                job.seconds = time.monotonic() - job.started
