"""Batch exports: top-N recommendations for every user of a model version, or a list of users.

An export's files live in ``ARTIFACT_DIR/<project>/exports/<export>/``: the uploaded list of
user ids (``users.txt``, cleaned, one id per line), ``progress.json`` (fraction, counts and a
heartbeat), ``log.txt``, the ``cancel`` flag, and the result. The result is written to a
``.part`` file and renamed when it is complete, and ``BatchExport.file_path`` is set only then,
so a failed, cancelled or killed export never offers a half-written file for download.

Users the model does not know (listed ids absent from the version, including ids that are not
in the project at all) get the most-interacted items of the project among the version's items,
marked with the source ``popular``. Ids that are not in the project at all are listed in the
log and in ``summary.json`` (count and the first few).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import logging
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.shortcuts import get_object_or_404

from datasets.models import EndUser, Interaction, Item, Project
from models_app import services
from models_app.models import BatchExport, ModelVersion
from models_app.recipes import get_recipe
from recsite import jobs
from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles

logger = logging.getLogger(__name__)

MAX_RESULTS = 500
BATCH_USERS = 2_048
# An uploaded list is read in the web request: bound it (one million ids, 64 MB).
MAX_LIST_USERS = 1_000_000
MAX_LIST_BYTES = 64 * 2**20
MAX_ID_LENGTH = 256  # EndUser.external_id
HEADER_NAMES = {"user_id", "userid", "user", "users", "user id", "id", "external_id"}
SAMPLE_IDS = 10
FETCH_ROWS = 50_000
LIST_FILE = "users.txt"
LOG_FILE = "log.txt"
SUMMARY_FILE = "summary.json"
CSV_HEADER = ["user_id", "rank", "item_id", "score", "source"]


class ExportCancelled(Exception):
    pass


# --- folders and files ----------------------------------------------------------------------


def export_dir(export: BatchExport) -> Path:
    return Path(settings.ARTIFACT_DIR) / str(export.project_id) / "exports" / str(export.pk)


def export_files(export: BatchExport) -> JobFiles:
    return JobFiles(export_dir(export))


def read_progress(export: BatchExport) -> dict:
    return export_files(export).read_progress()


def read_log(export: BatchExport) -> str:
    try:
        return (export_dir(export) / LOG_FILE).read_text(encoding="utf-8")
    except OSError:
        return ""


def read_summary(export: BatchExport) -> dict:
    try:
        return json.loads((export_dir(export) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def download_path(export: BatchExport) -> Path | None:
    """The finished file, or None when there is nothing (complete) to download."""
    if export.status != BatchExport.Status.SUCCEEDED or not export.file_path:
        return None
    path = Path(export.file_path).resolve()
    # Only ever a file inside the export's own folder, whatever file_path says.
    if not path.is_relative_to(export_dir(export).resolve()):
        logger.error("Batch export %s points outside its folder: %s", export.pk, path)
        return None
    return path if path.is_file() else None


def download_name(export: BatchExport) -> str:
    """``<project>-version<id>-top<N>-export<id>.<csv|jsonl>``."""
    return (
        f"{export.project.slug}-version{export.version_id}-top{export.num_results}"
        f"-export{export.pk}.{export.format}"
    )


# --- reads for pages ------------------------------------------------------------------------


def recent_exports(project: Project, limit: int = 50) -> list[BatchExport]:
    return list(
        BatchExport.objects.filter(project=project)
        .select_related("version")
        .order_by("-created_at", "-pk")[:limit]
    )


def export_in_project(project: Project, export_id: int) -> BatchExport:
    return get_object_or_404(
        BatchExport.objects.select_related("version", "project"), pk=export_id, project=project
    )


def exportable_versions(project: Project, limit: int = 50) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(project=project).order_by("-created_at", "-pk")[:limit])


# --- validation -----------------------------------------------------------------------------


def check_num_results(num_results) -> int:
    try:
        value = int(num_results)
    except (TypeError, ValueError):
        raise ValueError(
            f"Number of results must be a whole number from 1 to {MAX_RESULTS}, "
            f"got {num_results!r}."
        ) from None
    if isinstance(num_results, float) and num_results != value:
        raise ValueError(f"Number of results must be a whole number, got {num_results}.")
    if not 1 <= value <= MAX_RESULTS:
        raise ValueError(f"Number of results must be from 1 to {MAX_RESULTS}, got {value}.")
    return value


def check_version(project: Project, version: ModelVersion) -> None:
    """The version belongs to ``project`` and its artefacts are on disk and readable."""
    if version.project_id != project.pk:
        raise ValueError(
            f"Model version #{version.pk} belongs to another project; pick a version of "
            f"“{project.name}”."
        )
    folder = Path(version.artefact_dir or "")
    recipe_file, ids_file = folder / services.RECIPE_FILE, folder / services.IDS_FILE
    problem = None
    if not version.artefact_dir or not recipe_file.is_file() or not ids_file.is_file():
        problem = f"its files are missing from {folder}"
    else:
        try:
            with np.load(recipe_file, allow_pickle=False) as data:
                meta = json.loads(str(data["__recipe_meta__"]))
            get_recipe(meta["recipe"])
            with np.load(ids_file, allow_pickle=False) as ids:
                missing = {"user_ids", "item_ids"} - set(ids.files)
            if missing:
                problem = f"{ids_file} lacks {', '.join(sorted(missing))}"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            problem = f"its files cannot be read ({type(exc).__name__}: {exc})"
    if problem:
        raise ValueError(
            f"Model version #{version.pk} cannot be loaded: {problem}. Train a new version "
            "(or restore the artefacts directory) and export that one."
        )


def _read_bytes(user_list) -> tuple[bytes, str]:
    """The raw bytes and a name for messages, from an uploaded file or a path."""
    if isinstance(user_list, str | os.PathLike):
        path = Path(user_list)
        if not path.is_file():
            raise ValueError(f"User list {path} does not exist or is not a file.")
        if path.stat().st_size > MAX_LIST_BYTES:
            raise ValueError(_too_big(path.name, path.stat().st_size))
        return path.read_bytes(), path.name
    name = getattr(user_list, "name", "") or "the user list"
    size = getattr(user_list, "size", None)
    if size is not None and size > MAX_LIST_BYTES:
        raise ValueError(_too_big(name, size))
    data = b"".join(user_list.chunks()) if hasattr(user_list, "chunks") else user_list.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_LIST_BYTES:
        raise ValueError(_too_big(name, len(data)))
    return data, Path(name).name


def _too_big(name: str, size: int) -> str:
    return (
        f"{name} is {size / 2**20:.0f} MB; a user list may be at most "
        f"{MAX_LIST_BYTES // 2**20} MB ({MAX_LIST_USERS:,} ids). Split it into several exports "
        "or export every user (no list)."
    )


def parse_user_list(user_list) -> tuple[list[str], int]:
    """``(ids, duplicates)`` from a file with one user id per line.

    An optional header (``user_id``, ``USER_ID``, ``id``...) and blank lines are skipped, ids are
    stripped of spaces and of surrounding double quotes, and repeated ids are kept once (first
    position). Raises ``ValueError`` naming the line for anything else.
    """
    data, name = _read_bytes(user_list)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{name} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} cannot be "
            "decoded. Save the list as UTF-8 (one user id per line) and upload it again."
        ) from None
    ids: list[str] = []
    seen: set[str] = set()
    duplicates = 0
    first = True
    for number, raw in enumerate(text.splitlines(), start=1):
        value = raw.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].strip()
        if not value:
            continue
        if first:
            first = False
            if value.lower() in HEADER_NAMES:
                continue
        problem = None
        if "\x00" in value or any(ord(c) < 32 and c != "\t" for c in value):
            problem = "contains control characters (is this a binary file?)"
        elif "," in value or "\t" in value or ";" in value:
            problem = (
                f"has several columns ({_short(value)}); the list must have one user id per "
                "line and nothing else"
            )
        elif len(value) > MAX_ID_LENGTH:
            problem = f"is {len(value)} characters long; user ids have at most {MAX_ID_LENGTH}"
        if problem:
            raise ValueError(f"{name}, line {number}: the line {problem}.")
        if value in seen:
            duplicates += 1
            continue
        seen.add(value)
        ids.append(value)
        if len(ids) > MAX_LIST_USERS:
            raise ValueError(
                f"{name} has more than {MAX_LIST_USERS:,} user ids; split it into several "
                "exports or export every user (no list)."
            )
    if not ids:
        raise ValueError(
            f"{name} has no user ids (it is empty, or only blank lines and a header). Upload a "
            "file with one user id per line."
        )
    return ids, duplicates


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _short(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


# --- starting, cancelling, stale workers ----------------------------------------------------


def start_export(
    *,
    project: Project,
    version: ModelVersion,
    format: str = BatchExport.Format.CSV,
    num_results: int = 25,
    exclude_seen: bool = True,
    user_list=None,
    user=None,
    enqueue: bool = True,
) -> BatchExport:
    """Validate, create a queued export and (by default) enqueue it after commit.

    ``user_list`` is an uploaded file or a path with one user id per line; ``None`` exports
    every user the version knows. Raises ``ValueError`` before creating anything when an input
    is wrong. With ``enqueue=False`` the caller runs it (``run_export``).
    """
    if format not in BatchExport.Format.values:
        raise ValueError(f"Unknown format {format!r}; choose csv or jsonl.")
    num_results = check_num_results(num_results)
    check_version(project, version)
    ids = duplicates = None
    if user_list is not None:
        ids, duplicates = parse_user_list(user_list)
    with transaction.atomic():
        export = BatchExport.objects.create(
            project=project,
            version=version,
            format=format,
            num_results=num_results,
            exclude_seen=bool(exclude_seen),
            created_by=user,
        )
        folder = export_dir(export)
        shutil.rmtree(folder, ignore_errors=True)  # left by an export with this id (restored DB)
        export_files(export).reset()
        if ids is not None:
            list_path = folder / LIST_FILE
            list_path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
            export.user_list_path = str(list_path)
            export.save(update_fields=["user_list_path"])
        _log(export, _describe(export, ids, duplicates))
        export_files(export).write_progress(phase="queued", fraction=0)
        if enqueue:
            _enqueue(export)
    return export


def _describe(export: BatchExport, ids, duplicates) -> str:
    who = "every user of the model" if ids is None else f"{len(ids):,} listed users"
    if duplicates:
        who += f" ({_plural(duplicates, 'repeated id', 'repeated ids')} skipped)"
    seen = (
        "excluding items they already interacted with" if export.exclude_seen else "seen included"
    )
    return (
        f"Queued: top {export.num_results} of model version #{export.version_id} "
        f"({export.version.recipe}) for {who}, {seen}, as {export.get_format_display()}."
    )


def _enqueue(export: BatchExport) -> None:
    jobs.enqueue(
        export, "models_app.tasks.run_export", task_name=f"export-{export.pk}", group="exports"
    )


def request_cancel(export: BatchExport) -> None:
    """Stop a queued or running export; no file is kept."""
    if jobs.request_cancel(export, export_files(export)):
        _log(export, "Cancelled before it started.")


def fail_stale_exports(
    project: Project | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Mark running exports whose worker stopped its heartbeat as failed."""
    return jobs.fail_stale(
        BatchExport,
        files_for=export_files,
        finish=_finish,
        error="The worker stopped during the export (it was killed or crashed). No file "
        "was produced; start the export again.",
        project=project,
        stale_after=stale_after,
        before_finish=_remove_partial,
    )


_finish = jobs.finish


def _log(export: BatchExport, message: str) -> None:
    export_files(export).append_log(message, LOG_FILE)


def _part_path(export: BatchExport) -> Path:
    return export_dir(export) / f"{download_name(export)}.part"


def _remove_partial(export: BatchExport) -> None:
    with contextlib.suppress(OSError):
        _part_path(export).unlink(missing_ok=True)


# --- running --------------------------------------------------------------------------------


@dataclass
class Targets:
    """The users to export, in output order."""

    external_ids: np.ndarray  # object array of external ids
    model_rows: np.ndarray  # row in the model, -1 when the model does not know the user
    db_ids: np.ndarray  # EndUser pk, -1 when the id is not in the project
    not_in_project: list[str]

    def __len__(self) -> int:
        return len(self.external_ids)


def _project_users(project_id: int) -> tuple[np.ndarray, list[str]]:
    """Every EndUser of the project as (pk array, external ids), in one query."""
    sql, params = (
        EndUser.objects.filter(project_id=project_id)
        .values_list("pk", "external_id")
        .query.sql_with_params()
    )
    pks: list[int] = []
    names: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            for pk, name in rows:
                pks.append(pk)
                names.append(name)
    return np.asarray(pks, dtype=np.int64), names


def _targets(export: BatchExport, user_ids: np.ndarray) -> Targets:
    pks, names = _project_users(export.project_id)
    if not export.user_list_path:
        order = np.argsort(pks)
        pks_sorted = pks[order]
        pos = np.minimum(np.searchsorted(pks_sorted, user_ids), max(len(pks_sorted) - 1, 0))
        if len(user_ids) and (not len(pks_sorted) or not np.all(pks_sorted[pos] == user_ids)):
            raise ValueError(
                "Some users of the model version are no longer in the project (deleted since "
                "training); train a new version and export that."
            )
        external = np.asarray(names, dtype=object)[order][pos]
        return Targets(external, np.arange(len(user_ids)), user_ids.astype(np.int64), [])
    listed = Path(export.user_list_path).read_text(encoding="utf-8").splitlines()
    by_name = dict(zip(names, pks.tolist(), strict=True))
    db_ids = np.fromiter((by_name.get(i, -1) for i in listed), dtype=np.int64, count=len(listed))
    rows = np.full(len(listed), -1, dtype=np.int64)
    if len(user_ids):
        pos = np.minimum(np.searchsorted(user_ids, db_ids), len(user_ids) - 1)
        known = (db_ids >= 0) & (user_ids[pos] == db_ids)
        rows[known] = pos[known]
    not_in_project = [listed[i] for i in np.flatnonzero(db_ids < 0)]
    return Targets(np.asarray(listed, dtype=object), rows, db_ids, not_in_project)


def _item_external_ids(project_id: int, item_ids: np.ndarray) -> np.ndarray:
    """External ids aligned with the model's item columns, in one query."""
    found = dict(Item.objects.filter(project_id=project_id).values_list("pk", "external_id"))
    missing = [int(i) for i in item_ids if int(i) not in found]
    if missing:
        raise ValueError(
            f"{len(missing):,} items of the model version are no longer in the project (deleted "
            "since training); train a new version and export that."
        )
    return np.asarray([found[int(i)] for i in item_ids], dtype=object)


def _seen_matrix(project_id: int, users: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """Rows: ``users`` (sorted EndUser pks); columns: the model's items; every event type.

    All the project's (user, item) pairs are read in one streamed query and filtered here.
    """
    sql, params = (
        Interaction.objects.filter(project_id=project_id)
        .values_list("user_id", "item_id")
        .query.sql_with_params()
    )
    rows_parts, cols_parts = [], []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(FETCH_ROWS):
            pairs = np.asarray(chunk, dtype=np.int64).reshape(-1, 2)
            u, i = pairs[:, 0], pairs[:, 1]
            if not len(users) or not len(item_ids):
                continue
            upos = np.minimum(np.searchsorted(users, u), len(users) - 1)
            ipos = np.minimum(np.searchsorted(item_ids, i), len(item_ids) - 1)
            keep = (users[upos] == u) & (item_ids[ipos] == i)
            rows_parts.append(upos[keep])
            cols_parts.append(ipos[keep])
    shape = (len(users), len(item_ids))
    if not rows_parts:
        return sp.csr_matrix(shape, dtype=np.float32)
    r, c = np.concatenate(rows_parts), np.concatenate(cols_parts)
    seen = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=shape)
    seen.sum_duplicates()
    return seen


def _popular(version: ModelVersion, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The version's items by number of interactions (of the version's event types), best first.

    Returns ``(columns, counts)``; ties go to the lower column.
    """
    queryset = Interaction.objects.filter(project_id=version.project_id)
    if version.solution.event_types:
        queryset = queryset.filter(event_type__in=list(version.solution.event_types))
    counts = np.zeros(len(item_ids), dtype=np.float64)
    for item, n in queryset.values_list("item_id").annotate(n=Count("id")).order_by():
        pos = np.searchsorted(item_ids, item)
        if pos < len(item_ids) and item_ids[pos] == item:
            counts[pos] = n
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0]
    return order, counts[order]


def _top_popular(cols: np.ndarray, counts: np.ndarray, k: int, excluded: np.ndarray | None):
    """The first ``k`` of the popularity ranking that are not in ``excluded`` (item columns)."""
    if excluded is None or not len(excluded):
        return cols[:k], counts[:k]
    head = slice(0, k + len(excluded))  # enough candidates whatever is excluded
    keep = ~np.isin(cols[head], excluded)
    return cols[head][keep][:k], counts[head][keep][:k]


def _format_score(score: float) -> float:
    return float(f"{float(score):.6g}")


class _Writer:
    """Writes one user's list at a time as CSV rows or a JSON line."""

    def __init__(self, handle, format: str):
        self.handle = handle
        self.format = format
        if format == BatchExport.Format.CSV:
            self.csv = csv.writer(handle, lineterminator="\n")
            self.csv.writerow(CSV_HEADER)

    def write(self, user_id: str, items: list[str], scores: list[float], source: str) -> None:
        if self.format == BatchExport.Format.CSV:
            self.csv.writerows(
                (user_id, rank, item, _format_score(score), source)
                for rank, (item, score) in enumerate(zip(items, scores, strict=True), start=1)
            )
        else:
            record = {
                "user_id": user_id,
                "items": [
                    {"item_id": item, "score": _format_score(score)}
                    for item, score in zip(items, scores, strict=True)
                ],
                "source": source,
            }
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def run_export(export: BatchExport) -> BatchExport:
    """Write ``export``'s file (the task body). Never raises: it ends succeeded/failed/cancelled."""
    if not jobs.claim(export):
        return export
    files = export_files(export)
    files.folder.mkdir(parents=True, exist_ok=True)
    counts = {"exported": 0, "unknown": 0}
    try:
        with jobs.JobHeartbeat(files) as heartbeat:
            final = _write(export, heartbeat, counts)
        _finish(
            export,
            BatchExport.Status.SUCCEEDED,
            file_path=str(final),
            progress=1.0,
            users_exported=counts["exported"],
            users_unknown=counts["unknown"],
        )
    except ExportCancelled:
        _remove_partial(export)
        _log(export, "Cancelled; no file was kept.")
        _finish(
            export,
            BatchExport.Status.CANCELLED,
            error="Cancelled; no file was produced.",
            users_exported=counts["exported"],
            users_unknown=counts["unknown"],
        )
    except Exception as exc:  # the export must never stay "running" after an error
        logger.exception("Batch export %s failed", export.pk)
        _remove_partial(export)
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            message = services.disk_full_message(exc, settings.ARTIFACT_DIR, "the export file")
        _log(export, f"Failed: {message}")
        _finish(
            export,
            BatchExport.Status.FAILED,
            error=f"{message} No file was produced.",
            users_exported=counts["exported"],
            users_unknown=counts["unknown"],
        )
    finally:
        files.write_outcome(export.status, exported=counts["exported"], unknown=counts["unknown"])
    return export


def _write(export: BatchExport, heartbeat: jobs.JobHeartbeat, counts: dict) -> Path:
    """Stream the recommendations to the ``.part`` file, then rename it; returns the file."""
    started = time.perf_counter()

    def check_cancel() -> None:
        export_files(export).raise_if_cancelled(ExportCancelled)

    check_cancel()
    version = export.version
    recipe, user_ids, item_ids = services.load_version(version)
    user_ids, item_ids = np.asarray(user_ids, np.int64), np.asarray(item_ids, np.int64)
    _log(export, f"Loaded model version #{version.pk} ({version.recipe}).")
    heartbeat.update(phase="reading", fraction=0.01)
    targets = _targets(export, user_ids)
    item_names = _item_external_ids(export.project_id, item_ids)
    known = targets.model_rows >= 0
    unknown_total = int((~known).sum())
    if export.user_list_path:
        _log(
            export,
            f"{len(targets):,} listed users: {int(known.sum()):,} known to the model, "
            f"{unknown_total:,} not (they get the most popular items).",
        )
    if targets.not_in_project:
        sample = ", ".join(targets.not_in_project[:SAMPLE_IDS])
        more = "" if len(targets.not_in_project) <= SAMPLE_IDS else ", …"
        _log(
            export,
            f"{_plural(len(targets.not_in_project), 'listed id is', 'listed ids are')} not in the "
            "project at all "
            f"(first ones: {sample}{more}).",
        )
    (export_dir(export) / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "users": len(targets),
                "known_to_model": int(known.sum()),
                "unknown_to_model": unknown_total,
                "not_in_project": len(targets.not_in_project),
                "not_in_project_sample": targets.not_in_project[:SAMPLE_IDS],
            }
        ),
        encoding="utf-8",
    )
    check_cancel()

    seen = None
    seen_users = np.unique(targets.db_ids[targets.db_ids >= 0])
    if export.exclude_seen:
        seen = _seen_matrix(export.project_id, seen_users, item_ids)
        _log(export, f"Read {seen.nnz:,} (user, item) pairs to exclude.")
    popular_cols, popular_counts = (
        _popular(version, item_ids) if unknown_total else (np.zeros(0, np.int64), np.zeros(0))
    )
    check_cancel()

    k = min(export.num_results, len(item_ids))
    part = _part_path(export)
    total = len(targets)
    with part.open("w", encoding="utf-8", newline="") as handle:
        writer = _Writer(handle, export.format)
        for start in range(0, total, BATCH_USERS):
            check_cancel()
            batch = slice(start, min(start + BATCH_USERS, total))
            names = targets.external_ids[batch]
            rows = targets.model_rows[batch]
            db_ids = targets.db_ids[batch]
            seen_rows = None
            if seen is not None:
                pos = np.searchsorted(seen_users, db_ids)
                seen_rows = np.where(db_ids >= 0, np.minimum(pos, len(seen_users) - 1), -1)
            model_mask = rows >= 0
            results: dict[int, tuple[list[str], list[float], str]] = {}
            if model_mask.any():
                picked = np.flatnonzero(model_mask)
                exclude = seen[seen_rows[picked]] if seen is not None else None
                top, scores = recipe.recommend(rows[picked], k, exclude=exclude)
                for j, user_items, user_scores in zip(picked, top, scores, strict=True):
                    ok = (user_items >= 0) & np.isfinite(user_scores)
                    results[int(j)] = (
                        item_names[user_items[ok]].tolist(),
                        user_scores[ok].tolist(),
                        "model",
                    )
            for j in np.flatnonzero(~model_mask):
                excluded = None
                if seen is not None and seen_rows[j] >= 0:
                    r = seen_rows[j]
                    excluded = seen.indices[seen.indptr[r] : seen.indptr[r + 1]]
                cols, values = _top_popular(popular_cols, popular_counts, k, excluded)
                results[int(j)] = (item_names[cols].tolist(), values.tolist(), "popular")
            for j, name in enumerate(names):
                items, scores_, source = results[j]
                writer.write(name, items, scores_, source)
            counts["exported"] += len(names)
            counts["unknown"] += int((~model_mask).sum())
            heartbeat.update(
                phase="writing",
                fraction=0.05 + 0.95 * counts["exported"] / total,
                exported=counts["exported"],
                unknown=counts["unknown"],
            )
        handle.flush()
        os.fsync(handle.fileno())
    check_cancel()
    final = part.with_suffix("")  # drop ".part"
    part.replace(final)  # atomic: the complete file appears at once
    _log(
        export,
        f"Wrote {counts['exported']:,} users ({counts['unknown']:,} with the popularity "
        f"fallback) to {final.name} ({_size(final.stat().st_size)}) in "
        f"{time.perf_counter() - started:.1f} s.",
    )
    return final
