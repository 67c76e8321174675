"""Writes for model training: solutions, runs (start, run, cancel, retry) and versions.

A run's files live in ``ARTIFACT_DIR/<project>/runs/<run>/``: ``progress.json`` (fraction,
phase and a heartbeat), ``log.txt`` and the ``cancel`` flag. The web server reads them while
the worker trains. A successful run moves its artefacts to ``ARTIFACT_DIR/<project>/<version>/``
and creates the ModelVersion in one transaction at the very end, so a failed, cancelled or
killed run never creates or replaces a version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from datasets.models import Project
from models_app import selectors, training
from models_app.models import ModelVersion, Solution, TrainingRun
from models_app.recipes import Recipe
from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
RECIPE_FILE = "recipe.npz"
IDS_FILE = "ids.npz"


# --- folders ------------------------------------------------------------------------------


def run_dir(run: TrainingRun) -> Path:
    return Path(settings.ARTIFACT_DIR) / str(run.project_id) / "runs" / str(run.pk)


def run_files(run: TrainingRun) -> JobFiles:
    return JobFiles(run_dir(run))


def write_progress(run: TrainingRun, *, phase: str, fraction: float) -> None:
    run_files(run).write_progress(phase=phase, fraction=fraction)


def read_progress(run: TrainingRun) -> dict:
    return run_files(run).read_progress()


def _log_path(run: TrainingRun) -> Path:
    return run_dir(run) / "log.txt"


def read_log(run: TrainingRun) -> str:
    """The live log while the run is going, the stored one once it has finished."""
    if run.is_finished and run.log:
        return run.log
    try:
        return _log_path(run).read_text(encoding="utf-8")
    except OSError:
        return run.log


# --- solutions and starting runs ------------------------------------------------------------


def create_solution(
    *,
    project: Project,
    recipe: str,
    params: dict | None = None,
    event_types: list[str] | None = None,
    name: str = "",
) -> Solution:
    """A validated solution; ``ValueError`` with a clear message for a bad recipe or params."""
    params = params or {}
    training.make_recipe(recipe, params)
    event_types = [str(t).strip() for t in (event_types or []) if str(t).strip()]
    return Solution.objects.create(
        project=project,
        name=(name or recipe)[:100],
        recipe=recipe,
        params=params,
        event_types=event_types,
    )


def check_data(project: Project, event_types: list[str] | None) -> None:
    total, repeat = selectors.data_volume(project, event_types)
    which = f" of type {', '.join(event_types)}" if event_types else ""
    if total < training.MIN_INTERACTIONS:
        raise ValueError(
            f"Not enough data to train: the project has {total:,} interactions{which}; at "
            f"least {training.MIN_INTERACTIONS:,} are needed. Import more interactions first."
        )
    if repeat < training.MIN_USERS_WITH_TWO:
        raise ValueError(
            f"Not enough data to train: {repeat} users have two or more interactions{which}; "
            f"at least {training.MIN_USERS_WITH_TWO} are needed to hold some out for evaluation."
        )


def start_training(*, solution: Solution, user=None, enqueue: bool = True) -> TrainingRun:
    """Validate, create a queued run and (by default) enqueue it after commit.

    Raises ``ValueError`` before creating anything when the parameters are invalid or the
    project has too little data. With ``enqueue=False`` the caller runs it (``run_training``).
    """
    training.make_recipe(solution.recipe, solution.params)
    check_data(solution.project, solution.event_types)
    with transaction.atomic():
        run = TrainingRun.objects.create(
            solution=solution, project=solution.project, created_by=user
        )
        _prepare_folder(run)
        if enqueue:
            _enqueue(run)
    return run


def _prepare_folder(run: TrainingRun) -> None:
    run_files(run).reset("log.txt")
    shutil.rmtree(run_dir(run) / "model", ignore_errors=True)
    write_progress(run, phase="queued", fraction=0)


def _enqueue(run: TrainingRun) -> None:
    from django_q.tasks import async_task

    def send():
        task_id = async_task(
            "models_app.tasks.run_training", run.pk, task_name=f"train-{run.pk}", group="training"
        )
        TrainingRun.objects.filter(pk=run.pk).update(task_id=task_id or "")

    transaction.on_commit(send)


def request_cancel(run: TrainingRun) -> None:
    """Stop a queued or running run; nothing it computed is kept."""
    if run.is_finished:
        return
    run_files(run).request_cancel()
    cancelled = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED,
        error="Cancelled before it started.",
        finished_at=timezone.now(),
    )
    if cancelled:
        run.refresh_from_db()


def retry(run: TrainingRun, user=None) -> TrainingRun:
    """A new queued run of the same solution."""
    if not run.is_finished:
        raise ValueError("Only a finished training run can be retried.")
    return start_training(solution=run.solution, user=user)


def fail_stale_runs(
    project: Project | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Mark running runs whose worker stopped its heartbeat as failed."""
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    if project is not None:
        running = running.filter(project=project)
    failed = 0
    for run in running:
        if run_files(run).is_stale(stale_after):
            _finish(
                run,
                TrainingRun.Status.FAILED,
                error="The worker stopped during training (it was killed or crashed). No model "
                "version was created; retry the run.",
            )
            failed += 1
    return failed


# --- running ------------------------------------------------------------------------------


class _Monitor:
    """Samples RSS for the peak memory and keeps the heartbeat in progress.json fresh."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.phase, self.fraction = "running", 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_beat = 0.0

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()
            if time.monotonic() - self._last_beat > HEARTBEAT_SECONDS:
                self.beat()

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        with contextlib.suppress(OSError):  # the folder was removed under us
            write_progress(self.run, phase=self.phase, fraction=self.fraction)

    def update(self, phase: str, fraction: float) -> None:
        self.phase, self.fraction = phase, fraction
        self.beat()


def _finish(run: TrainingRun, status: str, *, error: str = "", **extra) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.log = _read_file_log(run)
    for key, value in extra.items():
        setattr(run, key, value)
    run.save(update_fields=["status", "error", "finished_at", "log", *extra])


def _read_file_log(run: TrainingRun) -> str:
    try:
        return _log_path(run).read_text(encoding="utf-8")
    except OSError:
        return ""


def run_training(run: TrainingRun) -> TrainingRun:
    """Train ``run`` (the task body). Never raises: the run ends succeeded/failed/cancelled."""
    claimed = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        run.refresh_from_db()
        logger.warning("Training run %s is %s; not running it again.", run.pk, run.status)
        return run
    run.refresh_from_db()
    run_dir(run).mkdir(parents=True, exist_ok=True)
    solution = run.solution
    started = time.perf_counter()
    monitor = _Monitor(run)

    def log(message: str, fraction: float | None = None) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        with contextlib.suppress(OSError), _log_path(run).open("a", encoding="utf-8") as handle:
            handle.write(f"[{stamp}] {message}\n")
        if fraction is not None:
            monitor.update("running", fraction)

    def check_cancel() -> None:
        if run_files(run).cancel_requested:
            raise training.TrainingCancelled

    def measured() -> dict:
        return {
            "duration_seconds": time.perf_counter() - started,
            "peak_memory_bytes": int(monitor.peak),
        }

    try:
        with monitor:
            log(f"Training {solution.recipe} with parameters {json.dumps(solution.params)}.", 0)
            check_cancel()
            data = selectors.interaction_arrays(run.project, solution.event_types)
            which = ", ".join(solution.event_types) if solution.event_types else "all"
            log(f"Read {len(data):,} interactions (event types: {which}).", 0.02)
            result = training.train(
                recipe=solution.recipe,
                params=solution.params,
                users=data.users,
                items=data.items,
                timestamps=data.timestamps,
                event_types=data.event_types,
                log=log,
                check_cancel=check_cancel,
            )
            staged = run_dir(run) / "model"
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
            result.recipe.save(staged / RECIPE_FILE)
            np.savez(staged / IDS_FILE, user_ids=result.user_ids, item_ids=result.item_ids)
            log("Saved the artefacts.", 0.95)
            check_cancel()
        version = _publish(run, result, staged, measured())
        log(f"Created model version #{version.pk}.", 1.0)
        TrainingRun.objects.filter(pk=run.pk).update(log=_read_file_log(run))
        run.refresh_from_db()
    except training.TrainingCancelled:
        log("Cancelled.")
        _finish(
            run,
            TrainingRun.Status.CANCELLED,
            error="Cancelled; no model version was created.",
            **measured(),
        )
    except Exception as exc:  # the run must never stay "running" after an error
        logger.exception("Training run %s failed", run.pk)
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        log(f"Failed: {message}")
        _finish(
            run,
            TrainingRun.Status.FAILED,
            error=f"{message} No model version was created.",
            **measured(),
        )
    finally:
        shutil.rmtree(run_dir(run) / "model", ignore_errors=True)
        progress = read_progress(run)
        write_progress(
            run,
            phase=run.status,
            fraction=1.0 if run.status == "succeeded" else progress.get("fraction", 0),
        )
    return run


def _publish(run: TrainingRun, result: training.TrainingResult, staged: Path, measured: dict):
    """Move the artefacts into place and create the version, all or nothing."""
    target = None
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                project=run.project,
                solution=run.solution,
                run=run,
                artefact_dir="",
                recipe=run.solution.recipe,
                params=result.recipe.get_params(),
                metrics={**result.metrics, **result.timings},
                n_users=len(result.user_ids),
                n_items=len(result.item_ids),
                n_interactions=result.n_interactions,
            )
            target = Path(settings.ARTIFACT_DIR) / str(run.project_id) / str(version.pk)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(str(staged), str(target))
            version.artefact_dir = str(target)
            version.save(update_fields=["artefact_dir"])
            run.status = TrainingRun.Status.SUCCEEDED
            run.progress = 1.0
            run.finished_at = timezone.now()
            run.error = ""
            for key, value in measured.items():
                setattr(run, key, value)
            run.save(update_fields=["status", "progress", "finished_at", "error", *measured])
    except Exception:
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return version


# --- serving -------------------------------------------------------------------------------


def load_version(version: ModelVersion) -> tuple[Recipe, np.ndarray, np.ndarray]:
    """``(recipe, user_ids, item_ids)``: the fitted recipe and its row/column -> database id."""
    folder = Path(version.artefact_dir)
    recipe = Recipe.load(folder / RECIPE_FILE)
    with np.load(folder / IDS_FILE, allow_pickle=False) as ids:
        return recipe, ids["user_ids"], ids["item_ids"]
