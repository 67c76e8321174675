"""What every background job shares: claiming, the heartbeat, cancelling, failing stale jobs
and finishing.

Imports (``datasets/imports.py``), training runs (``models_app/services.py``), batch exports
(``models_app/exports.py``) and graph and clustering runs (``graphs/services.py``) are rows
with ``status``, ``error``, ``started_at`` and ``finished_at`` plus a folder of files
(``recsite/jobfiles.py``) through which the worker and the web pages talk. Each app keeps its
own public functions (``request_cancel``, ``retry``, ``fail_stale_*``) as thin wrappers over
these, with its own messages.

A job's status is one of ``queued``, ``running``, ``succeeded``, ``failed`` and ``cancelled``
(imports also start as ``uploaded`` or ``validated``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil
from django.db import transaction
from django.utils import timezone

from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles

logger = logging.getLogger(__name__)

QUEUED, RUNNING, FAILED, CANCELLED = "queued", "running", "failed", "cancelled"
# How often a running job rewrites progress.json even when it reports nothing new.
HEARTBEAT_SECONDS = 2.0
# How often the memory of a job that tracks it is sampled.
MEMORY_SAMPLE_SECONDS = 0.1


class JobHeartbeat:
    """Keeps a job's ``progress.json`` fresh from a thread while the job works.

    A slow step (one long numpy call, a big query) then never looks like a dead worker to
    ``fail_stale``. Use as a context manager around the work; ``update(phase=..., fraction=...,
    **extra)`` records what the pages show and writes it at once, and the thread writes it
    again every ``every`` seconds. With ``track_memory=True`` it also samples the process's
    resident memory ten times a second; ``peak`` is the largest seen, in bytes.
    """

    def __init__(
        self, files: JobFiles, *, every: float = HEARTBEAT_SECONDS, track_memory: bool = False
    ):
        self.files = files
        self.every = every
        self.state: dict[str, Any] = {"phase": "running", "fraction": 0.0}
        self._process = psutil.Process() if track_memory else None
        self.peak = self._process.memory_info().rss if self._process is not None else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_beat = 0.0

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def sample(self) -> None:
        if self._process is not None:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self._process.memory_info().rss)

    def _loop(self) -> None:
        tick = MEMORY_SAMPLE_SECONDS if self._process is not None else self.every
        while not self._stop.wait(tick):
            self.sample()
            if self._process is None or time.monotonic() - self._last_beat > self.every:
                self.beat()

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        with contextlib.suppress(OSError):  # a full disk, or the folder was removed under us
            self.files.write_progress(**self.state)

    def update(self, phase: str | None = None, fraction: float | None = None, **extra) -> None:
        state = dict(self.state, **extra)
        if phase is not None:
            state["phase"] = phase
        if fraction is not None:
            state["fraction"] = fraction
        self.state = state  # one assignment: the thread never sees a half-updated dict
        self.beat()

    def log(self, message: str, fraction: float | None = None) -> None:
        """Add a line to the job's log and, given a fraction, report it as progress."""
        self.files.append_log(message)
        if fraction is not None:
            self.update("running", fraction)


def enqueue(job, function: str, *, task_name: str, group: str) -> None:
    """Send ``function(job.pk)`` to the worker once the current transaction commits (the
    worker must see the job's row), and store the task id on the job."""
    from django_q.tasks import async_task

    def send():
        job.task_id = async_task(function, job.pk, task_name=task_name, group=group) or ""
        type(job).objects.filter(pk=job.pk).update(task_id=job.task_id)

    transaction.on_commit(send)


def claim(job, *, waiting: Iterable[str] = (QUEUED,)) -> bool:
    """Mark ``job`` running if it is still waiting; False when another worker took it or it
    was cancelled meanwhile (logged). ``job`` is re-read either way."""
    claimed = (
        type(job)
        .objects.filter(pk=job.pk, status__in=list(waiting))
        .update(status=RUNNING, started_at=timezone.now())
    )
    job.refresh_from_db()
    if not claimed:
        logger.warning("%s #%s is %s; not running it again.", type(job).__name__, job.pk,
                       job.status)  # fmt: skip
    return bool(claimed)


def finish(job, status: str, *, error: str = "", log: str | None = None, **extra) -> None:
    """Store how ``job`` ended: status, error, finish time, the final ``log`` (for models
    that keep it) and any ``extra`` fields."""
    job.status = status
    job.error = error
    job.finished_at = timezone.now()
    fields = ["status", "error", "finished_at"]
    if log is not None:
        job.log = log
        fields.append("log")
    for key, value in extra.items():
        setattr(job, key, value)
    job.save(update_fields=[*fields, *extra])


def ensure_finished(job, message: str, error: type[Exception] = ValueError) -> None:
    """Retrying is for finished jobs only: raise ``error(message)`` otherwise."""
    if not job.is_finished:
        raise error(message)


def request_cancel(job, files: JobFiles, *, waiting: Iterable[str] = (QUEUED,)) -> bool:
    """The shared part of cancelling a job.

    A finished job is left alone. Otherwise the cancel flag is set, which the worker checks
    between steps, and a job that has not started (status in ``waiting``) is cancelled at
    once; True then, and ``job`` is re-read.
    """
    if job.is_finished:
        return False
    files.request_cancel()
    cancelled = (
        type(job)
        .objects.filter(pk=job.pk, status__in=list(waiting))
        .update(status=CANCELLED, error="Cancelled before it started.", finished_at=timezone.now())
    )
    if cancelled:
        job.refresh_from_db()
    return bool(cancelled)


def fail_stale(
    model,
    *,
    files_for: Callable[[Any], JobFiles],
    finish: Callable[..., None],
    error: str,
    project=None,
    stale_after: float = STALE_AFTER_SECONDS,
    before_finish: Callable[[Any], None] | None = None,
) -> int:
    """Fail the running jobs of ``model`` (of ``project``, or all) whose worker stopped
    writing progress ``stale_after`` seconds ago: it was killed or crashed.

    ``finish(job, "failed", error=error)`` stores the outcome (each app's own, which may also
    keep the log); ``before_finish(job)`` removes what the job left half-written. Returns how
    many were failed.
    """
    running = model.objects.filter(status=RUNNING)
    if project is not None:
        running = running.filter(project=project)
    failed = 0
    for job in running:
        if files_for(job).is_stale(stale_after):
            if before_finish is not None:
                before_finish(job)
            finish(job, FAILED, error=error)
            failed += 1
    return failed
