"""Writes for model training: solutions, runs (start, run, cancel, retry) and versions.

A run's files live in ``ARTIFACT_DIR/<project>/runs/<run>/``: ``progress.json`` (fraction,
phase and a heartbeat), ``log.txt`` and the ``cancel`` flag. The web server reads them while
the worker trains. A successful run moves its artefacts to ``ARTIFACT_DIR/<project>/<version>/``
and creates the ModelVersion in one transaction at the very end, so a failed, cancelled or
killed run never creates or replaces a version.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from datasets.models import Project
from models_app import selectors, training
from models_app.models import ModelVersion, Solution, TrainingRun
from models_app.recipes import Recipe
from recsite import jobs
from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles

logger = logging.getLogger(__name__)

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
    """A validated solution; ``ValueError`` with a clear message for a bad recipe or params.

    Training the same recipe, parameters and event types again reuses the existing solution,
    so its versions line up (scheduled retraining, auto-deploying campaigns) instead of each
    click on Train starting a new one.
    """
    params = params or {}
    training.check_recipe(recipe, params)
    event_types = list(dict.fromkeys(str(t).strip() for t in event_types or [] if str(t).strip()))
    for existing in Solution.objects.filter(project=project, recipe=recipe).order_by("pk"):
        if existing.params == params and sorted(existing.event_types) == sorted(event_types):
            return existing
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
    training.check_recipe(solution.recipe, solution.params)
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
    jobs.enqueue(
        run, "models_app.tasks.run_training", task_name=f"train-{run.pk}", group="training"
    )


def request_cancel(run: TrainingRun) -> None:
    """Stop a queued or running run; nothing it computed is kept."""
    jobs.request_cancel(run, run_files(run))


def retry(run: TrainingRun, user=None) -> TrainingRun:
    """A new queued run of the same solution."""
    jobs.ensure_finished(run, "Only a finished training run can be retried.")
    return start_training(solution=run.solution, user=user)


def fail_stale_runs(
    project: Project | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Mark running runs whose worker stopped its heartbeat as failed."""
    return jobs.fail_stale(
        TrainingRun,
        files_for=run_files,
        finish=_finish,
        error="The worker stopped during training (it was killed or crashed). No model "
        "version was created; retry the run.",
        project=project,
        stale_after=stale_after,
    )


# --- running ------------------------------------------------------------------------------


def _finish(run: TrainingRun, status: str, *, error: str = "", **extra) -> None:
    jobs.finish(run, status, error=error, log=_read_file_log(run), **extra)


def _read_file_log(run: TrainingRun) -> str:
    return run_files(run).read_text()


def run_training(run: TrainingRun) -> TrainingRun:
    """Train ``run`` (the task body). Never raises: the run ends succeeded/failed/cancelled."""
    if not jobs.claim(run):
        return run
    files = run_files(run)
    files.folder.mkdir(parents=True, exist_ok=True)
    solution = run.solution
    started = time.perf_counter()
    monitor = jobs.JobHeartbeat(files, track_memory=True)
    log = monitor.log

    def check_cancel() -> None:
        files.raise_if_cancelled(training.TrainingCancelled)

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
            catalog = selectors.item_catalog(run.project)
            shown = selectors.impression_log(run.project, catalog.external_ids)
            log(
                f"Read {int(catalog.in_catalog.sum()):,} catalogue items "
                f"({catalog.features.shape[1] - 1} attributes) and {len(shown):,} impressions.",
                0.03,
            )
            result = training.train(
                recipe=solution.recipe,
                params=solution.params,
                users=data.users,
                items=data.items,
                timestamps=data.timestamps,
                event_types=data.event_types,
                sessions=data.sessions,
                item_features=catalog.features,
                user_features=selectors.user_attributes(run.project),
                catalog_items=catalog.ids[catalog.in_catalog],
                impressions=training.Impressions(shown.users, shown.items, shown.shown),
                log=log,
                check_cancel=check_cancel,
            )
            staged = run_dir(run) / "model"
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
            result.recipe.save(staged / RECIPE_FILE)
            np.savez(staged / IDS_FILE, user_ids=result.user_ids, item_ids=result.item_ids)
            _save_ann_index(result.recipe, staged, log)
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
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            message = disk_full_message(exc, settings.ARTIFACT_DIR, "the model's files")
        log(f"Failed: {message}")
        _finish(
            run,
            TrainingRun.Status.FAILED,
            error=f"{message} No model version was created.",
            **measured(),
        )
    finally:
        shutil.rmtree(run_dir(run) / "model", ignore_errors=True)
        files.write_outcome(run.status)  # a full disk must not turn "failed" into a crash
    return run


def _save_ann_index(recipe: Recipe, folder: Path, log) -> None:
    """Build and save the approximate index (models_app.ann) for ALS-type recipes whose
    catalogue has at least ``settings.ANN_THRESHOLD_ITEMS`` items (default 200,000)."""
    from models_app import ann

    factors = getattr(recipe, "item_factors_", None)
    threshold = int(getattr(settings, "ANN_THRESHOLD_ITEMS", ann.THRESHOLD_ITEMS))
    if factors is None or not ann.should_build(len(factors), threshold):
        return
    started = time.perf_counter()
    index = ann.ItemIndex.build(factors, sample_queries=getattr(recipe, "user_factors_", None))
    index.save(folder)
    log(
        f"Built the approximate index over {len(factors):,} items in "
        f"{time.perf_counter() - started:.1f} s ({index.describe()})."
    )


def disk_full_message(exc: OSError, folder, what: str) -> str:
    """What to tell a user when writing ``what`` into ``folder`` ran out of space."""
    cause = "the file size limit was reached" if exc.errno == errno.EFBIG else "the disk is full"
    return (
        f"Could not write {what}: {cause} ({exc.strerror} while writing "
        f"{exc.filename or folder}). Nothing half-written was kept and the space it used was "
        f"freed. Free space on the disk holding {folder} (ARTIFACT_DIR), then retry."
    )


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
                recipe=result.recipe.name,
                params=result.recipe.get_params(),
                trials=result.trials,
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
            transaction.on_commit(lambda: auto_deploy_after_publish(version.pk), robust=True)
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


# --- scheduled retraining -------------------------------------------------------------------

# Intervals offered in the UI, in hours (168 = a week).
RETRAIN_EVERY_HOURS = (1, 2, 3, 6, 12, 24, 168)
RETRAIN_TASK = "models_app.tasks.retrain_solution"


def retrain_schedule_name(solution_id: int) -> str:
    return f"retrain-solution-{solution_id}"


def _parse_every_hours(every_hours) -> int | None:
    if every_hours is None or (isinstance(every_hours, str) and every_hours.strip() in ("", "off")):
        return None
    allowed = ", ".join(str(h) for h in RETRAIN_EVERY_HOURS)
    try:
        hours = int(str(every_hours).strip())
    except ValueError:
        raise ValueError(
            f"Retraining interval {every_hours!r} is not a number of hours; choose one of "
            f"{allowed} hours, or off."
        ) from None
    if hours not in RETRAIN_EVERY_HOURS:
        raise ValueError(
            f"Retraining every {hours} hours is not offered; choose one of {allowed} hours "
            "(168 = a week), or off."
        )
    return hours


def set_retraining(solution: Solution, every_hours: int | None):
    """Retrain ``solution`` every ``every_hours`` hours, or only by hand when ``None``.

    Creates, updates or deletes the django-q2 ``Schedule`` named ``retrain-solution-<pk>``
    that calls :func:`models_app.tasks.retrain_solution`. The first scheduled run is
    ``every_hours`` from now; setting the interval it already has keeps its next run time.
    Returns the Schedule (``None`` when retraining is off). ``ValueError`` for an interval
    that is not offered (see ``RETRAIN_EVERY_HOURS``).
    """
    from datetime import timedelta

    from django_q.models import Schedule

    hours = _parse_every_hours(every_hours)
    name = retrain_schedule_name(solution.pk)
    with transaction.atomic():
        Solution.objects.filter(pk=solution.pk).update(retrain_every_hours=hours)
        solution.retrain_every_hours = hours
        existing = list(Schedule.objects.select_for_update().filter(name=name).order_by("pk"))
        if hours is None:
            Schedule.objects.filter(name=name).delete()
            return None
        schedule = existing[0] if existing else Schedule(name=name)
        for duplicate in existing[1:]:
            duplicate.delete()
        unchanged = (
            schedule.pk is not None
            and schedule.minutes == 60 * hours
            and schedule.schedule_type == Schedule.MINUTES
            and schedule.repeats == -1
            and schedule.next_run is not None
        )
        schedule.func = RETRAIN_TASK
        schedule.args = str(solution.pk)
        schedule.kwargs = None
        schedule.schedule_type = Schedule.MINUTES
        schedule.minutes = 60 * hours
        schedule.repeats = -1
        if not unchanged:
            schedule.next_run = timezone.now() + timedelta(hours=hours)
        schedule.save()
    return schedule


def delete_solution(solution: Solution) -> None:
    """Delete a solution with its runs and versions, and stop its scheduled retraining."""
    from django_q.models import Schedule

    with transaction.atomic():
        Schedule.objects.filter(name=retrain_schedule_name(solution.pk)).delete()
        solution.delete()


def _append_log(run: TrainingRun, message: str) -> None:
    run_files(run).append_log(message)


def scheduled_retrain(solution_id: int) -> str:
    """What a retraining schedule runs: start a run of the solution unless it should not.

    Skips (and logs why) when the solution is gone or no longer scheduled (its schedule is
    then removed), when a run of it is still queued or running, or when the data check
    fails. Otherwise queues a run (``created_by`` empty) whose log starts with "Scheduled
    retraining". Returns a one-line account, kept by django-q2 as the task's result.
    """
    from django_q.models import Schedule

    solution = Solution.objects.select_related("project").filter(pk=solution_id).first()
    if solution is None or solution.retrain_every_hours is None:
        Schedule.objects.filter(name=retrain_schedule_name(solution_id)).delete()
        why = "no longer exists" if solution is None else "has retraining turned off"
        message = f"Scheduled retraining skipped: solution {solution_id} {why}; schedule removed."
        logger.info(message)
        return message
    fail_stale_runs(solution.project)
    busy = (
        TrainingRun.objects.filter(
            solution=solution, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    if busy is not None:
        message = (
            f"Scheduled retraining of solution {solution.pk} ({solution.name}) skipped: "
            f"training run #{busy.pk} is still {busy.status}."
        )
        logger.info(message)
        return message
    try:
        # One transaction: the run is enqueued on commit, after its log has the first line.
        with transaction.atomic():
            run = start_training(solution=solution, user=None)
            _append_log(
                run,
                f"Scheduled retraining (every {solution.retrain_every_hours} h) of solution "
                f"{solution.pk} ({solution.name}).",
            )
    except ValueError as exc:
        message = f"Scheduled retraining of solution {solution.pk} ({solution.name}) skipped: {exc}"
        logger.warning(message)
        return message
    message = f"Scheduled retraining of solution {solution.pk}: training run #{run.pk} queued."
    logger.info(message)
    return message


# --- campaigns ---------------------------------------------------------------------------
#
# A campaign serves one model version. Deploying checks that the version's artefacts load
# before anything changes; the version it replaces becomes ``previous_version`` (what "roll
# back" returns to). Every change is recorded as a CampaignDeployment.

# Auto-deploy compares this offline metric of the new version with the served one's ...
AUTO_DEPLOY_METRIC = "ndcg@10"
AUTO_DEPLOY_METRIC_LABEL = "NDCG@10"
# ... and skips the new version when it is more than this fraction below (0.10 = 10% lower).
AUTO_DEPLOY_MAX_DROP = 0.10


def _campaign_name(project: Project, name: str, *, exclude_pk: int | None = None) -> str:
    from django.core.validators import validate_slug

    from models_app.models import Campaign

    name = (name or "").strip()
    if not name:
        raise ValueError("A campaign needs a name, for example “home-page”.")
    max_length = Campaign._meta.get_field("name").max_length
    if len(name) > max_length:
        raise ValueError(
            f"The campaign name “{name[:20]}…” is {len(name)} characters long; "
            f"use at most {max_length}."
        )
    try:
        validate_slug(name)
    except Exception:
        raise ValueError(
            f"“{name}” is not a valid campaign name: apps ask for campaigns by name, so use "
            "only letters, digits, hyphens and underscores (no spaces), e.g. “home-page”."
        ) from None
    taken = Campaign.objects.filter(project=project, name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ValueError(
            f"The project already has a campaign named “{name}”; choose another name or "
            "deploy the new version to that campaign."
        )
    return name


def _check_solution(project: Project, solution: Solution | None, auto_deploy: bool) -> None:
    if solution is not None and solution.project_id != project.pk:
        raise ValueError(
            f"Solution #{solution.pk} belongs to another project; pick one of this project's "
            "solutions."
        )
    if auto_deploy and solution is None:
        raise ValueError(
            "Auto-deploy needs a solution: new versions of that solution are deployed "
            "automatically. Pick one, or turn auto-deploy off."
        )


def create_campaign(
    project: Project,
    name: str,
    description: str = "",
    solution: Solution | None = None,
    version: ModelVersion | None = None,
    auto_deploy: bool = False,
    user=None,
):
    """A new campaign, optionally serving ``version`` at once; ``ValueError`` when invalid.

    Nothing is created when the name is taken or invalid, or when ``version`` cannot be
    deployed (another project's, or its artefacts do not load).
    """
    from django.db import IntegrityError

    from models_app.models import Campaign

    name = _campaign_name(project, name)
    _check_solution(project, solution, auto_deploy)
    if version is not None:
        _check_deployable(project, version)
    try:
        with transaction.atomic():
            campaign = Campaign.objects.create(
                project=project,
                name=name,
                description=(description or "").strip()[:200],
                solution=solution,
                auto_deploy=auto_deploy,
            )
            if version is not None:
                deploy(campaign, version, user=user, checked=True)
    except IntegrityError:  # created by someone else between the check and the insert
        raise ValueError(
            f"The project already has a campaign named “{name}”; choose another name."
        ) from None
    return campaign


def _check_deployable(project: Project, version: ModelVersion) -> None:
    """``ValueError`` unless ``version`` is ``project``'s and its artefacts really load."""
    if version.project_id != project.pk:
        raise ValueError(
            f"Model version #{version.pk} belongs to another project; a campaign can only "
            "serve versions trained in its own project."
        )
    try:
        load_version(version)
    except Exception as exc:
        raise ValueError(
            f"Model version #{version.pk} cannot be served: its artefacts in "
            f"{version.artefact_dir or '(no folder)'} could not be loaded "
            f"({type(exc).__name__}: {exc}). Nothing was changed; deploy another version or "
            "retrain the solution."
        ) from None


def deploy(
    campaign,
    version: ModelVersion,
    user=None,
    action: str = "deploy",
    reason: str = "",
    checked: bool = False,
):
    """Serve ``version`` from ``campaign``; the version it served becomes the rollback target.

    Refuses (``ValueError``, nothing changed) a version of another project, one whose
    artefacts do not load, and the version the campaign already serves. ``checked=True``
    skips loading the artefacts when the caller has just done so.
    """
    from models_app.models import Campaign, CampaignDeployment

    if not checked or version.project_id != campaign.project_id:
        _check_deployable(campaign.project, version)
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.version_id == version.pk:
            raise ValueError(
                f"Campaign “{locked.name}” already serves version #{version.pk}; nothing changed."
            )
        old = locked.version_id
        locked.version = version
        if old is not None:
            locked.previous_version_id = old
        locked.save(update_fields=["version", "previous_version", "updated_at"])
        record = CampaignDeployment.objects.create(
            campaign=locked,
            action=action,
            version=version,
            previous_version_id=old,
            reason=reason,
            user=user if getattr(user, "is_authenticated", False) else None,
        )
    _copy_campaign_state(locked, campaign)
    return record


def rollback(campaign, user=None):
    """Serve the previous version again; the version it replaces becomes the new rollback target.

    ``ValueError`` (nothing changed) when there is no previous version or it no longer loads.
    """
    from models_app.models import Campaign, CampaignDeployment

    current = Campaign.objects.select_related("previous_version").get(pk=campaign.pk)
    target = current.previous_version
    if target is None:
        raise ValueError(
            f"Campaign “{current.name}” has nothing to roll back to: no earlier version was "
            "deployed (or it has been deleted). Deploy a version instead."
        )
    _check_deployable(current.project, target)
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.previous_version_id != target.pk:
            raise ValueError(
                f"Campaign “{locked.name}” changed while rolling back; reload the page and "
                "try again."
            )
        old = locked.version_id
        locked.version_id, locked.previous_version_id = target.pk, old
        locked.save(update_fields=["version", "previous_version", "updated_at"])
        record = CampaignDeployment.objects.create(
            campaign=locked,
            action=CampaignDeployment.Action.ROLLBACK,
            version=target,
            previous_version_id=old,
            user=user if getattr(user, "is_authenticated", False) else None,
        )
    _copy_campaign_state(locked, campaign)
    return record


def _copy_campaign_state(source, target) -> None:
    if source is target:
        return
    for field in ("version_id", "previous_version_id", "updated_at"):
        setattr(target, field, getattr(source, field))
    # Drop cached related objects so ``campaign.version`` reads the new one.
    for cache_name in ("version", "previous_version"):
        target._state.fields_cache.pop(cache_name, None)


_UNCHANGED = object()


def update_campaign(campaign, *, description=_UNCHANGED, solution=_UNCHANGED, auto_deploy=None):
    """Change a campaign's description, solution or auto-deploy flag (what is passed)."""
    if description is not _UNCHANGED:
        campaign.description = (description or "").strip()[:200]
    if solution is not _UNCHANGED:
        campaign.solution = solution
    if auto_deploy is not None:
        campaign.auto_deploy = bool(auto_deploy)
    _check_solution(campaign.project, campaign.solution, campaign.auto_deploy)
    campaign.save(update_fields=["description", "solution", "auto_deploy", "updated_at"])
    return campaign


def delete_campaign(campaign) -> None:
    """Remove a campaign and its history; the model versions it served are kept."""
    campaign.delete()


def auto_deploy_decision(new: ModelVersion, served: ModelVersion | None) -> str:
    """Why ``new`` must NOT replace ``served`` automatically, or ``""`` when it may."""
    if served is None:
        return ""
    new_value = new.metrics.get(AUTO_DEPLOY_METRIC)
    old_value = served.metrics.get(AUTO_DEPLOY_METRIC)
    if not isinstance(new_value, int | float) or not isinstance(old_value, int | float):
        return ""  # nothing to compare: deploy, the history says so
    if old_value > 0 and new_value < old_value * (1 - AUTO_DEPLOY_MAX_DROP):
        drop = 1 - new_value / old_value
        return (
            f"{AUTO_DEPLOY_METRIC_LABEL} of version #{new.pk} is "
            f"{new_value:.4f}, {drop:.0%} below the served version #{served.pk} "
            f"({old_value:.4f}); more than the {AUTO_DEPLOY_MAX_DROP:.0%} allowed, so version "
            f"#{served.pk} is still served. Deploy #{new.pk} by hand if you want it anyway."
        )
    return ""


def auto_deploy(version: ModelVersion) -> list:
    """Deploy a new version to every auto-deploy campaign of its solution; never raises.

    Returns the CampaignDeployment records made (AUTO or SKIPPED). A campaign whose check
    fails keeps serving its current version.
    """
    from models_app.models import Campaign, CampaignDeployment

    records = []
    campaigns = Campaign.objects.filter(
        project_id=version.project_id, solution_id=version.solution_id, auto_deploy=True
    ).select_related("version", "project")
    for campaign in campaigns:
        try:
            if campaign.version_id == version.pk:
                continue
            why_not = auto_deploy_decision(version, campaign.version)
            if not why_not:
                try:
                    _check_deployable(campaign.project, version)
                except ValueError as exc:
                    why_not = str(exc)
            if why_not:
                records.append(
                    CampaignDeployment.objects.create(
                        campaign=campaign,
                        action=CampaignDeployment.Action.SKIPPED,
                        version=version,
                        previous_version=campaign.version,
                        reason=why_not,
                    )
                )
                logger.info("Auto-deploy of version %s to %s skipped: %s", version.pk,
                            campaign, why_not)  # fmt: skip
                continue
            served = campaign.version
            reason = f"New version of solution #{version.solution_id}."
            if served is not None:
                new_value = version.metrics.get(AUTO_DEPLOY_METRIC)
                old_value = served.metrics.get(AUTO_DEPLOY_METRIC)
                if isinstance(new_value, int | float) and isinstance(old_value, int | float):
                    reason += (
                        f" {AUTO_DEPLOY_METRIC_LABEL}: {new_value:.4f} (was {old_value:.4f} "
                        f"with #{served.pk})."
                    )
                else:
                    reason += f" No {AUTO_DEPLOY_METRIC_LABEL} to compare; deployed anyway."
            records.append(
                deploy(
                    campaign,
                    version,
                    action=CampaignDeployment.Action.AUTO,
                    reason=reason,
                    checked=True,
                )
            )
        except Exception:
            logger.exception("Auto-deploy of version %s to campaign %s failed", version.pk,
                             campaign.pk)  # fmt: skip
    return records


def auto_deploy_after_publish(version_id: int) -> None:
    """The ``on_commit`` hook of ``_publish``: a failure here never fails the training run."""
    try:
        version = ModelVersion.objects.select_related("project").get(pk=version_id)
        auto_deploy(version)
    except Exception:
        logger.exception("Auto-deploy after publishing version %s failed", version_id)
