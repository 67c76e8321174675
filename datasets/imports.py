"""Services for CSV imports: upload, mapping, dry run, the atomic load, cancel and retry.

A job's files live in its own folder (``UPLOAD_DIR/<project>/<job>/``): the uploaded
``source.csv``, ``rejected.csv``, and ``progress.json``. Progress and cancel requests go
through that folder rather than the database because the load runs in one long
transaction: on SQLite no other writer may touch the database meanwhile, and on
PostgreSQL rows written inside it are invisible to the web server until it commits.

The load is all-or-nothing: the data, the job's final status and its report commit
together, so readers see the old data until the new data is complete, and a worker
killed midway leaves the old data intact.
"""

from __future__ import annotations

import csv
import errno
import logging
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from datasets import store
from datasets.ingest.content import check_text_content
from datasets.ingest.errors import IngestError
from datasets.ingest.infer import fields_for_mapping, suggest_mapping
from datasets.ingest.reader import Chunk, Rejection, attribute_records, read_chunks
from datasets.ingest.schema import (
    KINDS_WITH_ATTRIBUTES,
    Field,
    SchemaError,
    default_schema,
    reserved_names,
    schema_from_dicts,
)
from datasets.ingest.sniff import Dialect, sniff_csv
from datasets.models import DatasetSchema, ImportJob, Project
from recsite import jobs
from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles
from recsite.uploads import describe_size

logger = logging.getLogger(__name__)

SAMPLE_REJECTIONS = 100
_TABLE_FOR_KIND = {
    "items": store.ITEM_TABLE,
    "users": store.USER_TABLE,
    "interactions": store.INTERACTION_TABLE,
    "relations": store.RELATION_TABLE,
}


class ImportCancelled(Exception):
    pass


# --- schemas ---------------------------------------------------------------------------


def get_schema(project: Project, kind: str) -> list[Field]:
    stored = DatasetSchema.objects.filter(project=project, kind=kind).first()
    if stored is None or not stored.fields:
        return default_schema(kind)
    return schema_from_dicts(kind, stored.fields)


def save_schema(*, project: Project, kind: str, fields: list[Field]) -> list[Field]:
    """Validate and store a project's schema for ``kind``. Raises SchemaError."""
    fields = schema_from_dicts(kind, [f.to_dict() for f in fields])
    DatasetSchema.objects.update_or_create(
        project=project, kind=kind, defaults={"fields": [f.to_dict() for f in fields]}
    )
    return fields


def has_imported(project: Project, kind: str) -> bool:
    return ImportJob.objects.filter(
        project=project, kind=kind, status=ImportJob.Status.SUCCEEDED
    ).exists()


# --- job folders -----------------------------------------------------------------------


def job_dir(job: ImportJob) -> Path:
    return Path(settings.UPLOAD_DIR) / str(job.project_id) / str(job.pk)


def rejected_path(job: ImportJob) -> Path:
    return job_dir(job) / "rejected.csv"


def job_files(job: ImportJob) -> JobFiles:
    return JobFiles(job_dir(job))


def write_progress(job: ImportJob, *, phase: str, fraction: float, rows: int) -> None:
    job_files(job).write_progress(phase=phase, fraction=fraction, rows=rows)


def read_progress(job: ImportJob) -> dict:
    return job_files(job).read_progress()


# --- creating jobs ---------------------------------------------------------------------


def _new_job(*, project, kind, source_name, user) -> ImportJob:
    if kind not in ("interactions", "items", "users", "relations"):
        raise IngestError(f"Unknown dataset kind {kind!r}.")
    job = ImportJob.objects.create(
        project=project, kind=kind, source_name=source_name[:255], file_path="", created_by=user
    )
    job_files(job).reset("rejected.csv")
    return job


def _describe(job: ImportJob, delimiter: str | None = None, has_header: bool | None = None):
    """Sniff the job's file and suggest a mapping; store both on the job."""
    known = set(reserved_names(job.kind)) | {f.name for f in get_schema(job.project, job.kind)}
    dialect = sniff_csv(job.file_path, known)
    if delimiter is not None or has_header is not None:
        dialect = _redescribe(job.file_path, dialect, delimiter, has_header)
    job.dialect = dialect.to_dict()
    job.size_bytes = Path(job.file_path).stat().st_size
    job.mapping = suggest_mapping(
        job.kind, dialect.columns, dialect.preview, get_schema(job.project, job.kind)
    )
    job.save(update_fields=["dialect", "size_bytes", "mapping"])
    return job


def _redescribe(path, dialect: Dialect, delimiter, has_header) -> Dialect:
    """Re-read the preview with the delimiter/header the user chose."""
    with open(path, encoding=dialect.encoding, errors="replace", newline="") as handle:
        rows = []
        for row in csv.reader(handle, delimiter=delimiter or dialect.delimiter):
            if row:
                rows.append(row)
            if len(rows) > 10:
                break
    header = dialect.has_header if has_header is None else has_header
    if not rows:
        raise IngestError("The file has no rows.")
    columns = (
        [c.strip() or f"column_{i + 1}" for i, c in enumerate(rows[0])]
        if header
        else [f"column_{i + 1}" for i in range(len(rows[0]))]
    )
    preview = rows[1:] if header else rows[:10]
    return Dialect(dialect.encoding, delimiter or dialect.delimiter, header, columns, preview)


def create_upload(*, project: Project, kind: str, uploaded_file, user=None) -> ImportJob:
    """Save an uploaded file (streamed in chunks) into a new job and describe it."""
    size = getattr(uploaded_file, "size", 0) or 0
    if getattr(uploaded_file, "problem", ""):  # refused while uploading: disk full
        raise IngestError(uploaded_file.problem)
    if size > settings.MAX_UPLOAD_BYTES or getattr(uploaded_file, "refused", False):
        # A RefusedUpload (recsite/uploads.py) has a size but none of its bytes were kept.
        raise IngestError(
            f"The file is {describe_size(size)}; uploads may be at most "
            f"{describe_size(settings.MAX_UPLOAD_BYTES)} (MAX_UPLOAD_MB). Split it into several "
            "files and import them one after the other in incremental mode, or import it "
            "on the server with the import_dataset command (docs/data.md)."
        )
    job = _new_job(project=project, kind=kind, source_name=uploaded_file.name, user=user)
    target = job_dir(job) / "source.csv"
    try:
        if hasattr(uploaded_file, "temporary_file_path"):
            # Large uploads were already streamed to disk by Django: move, don't copy.
            shutil.move(uploaded_file.temporary_file_path(), target)
        else:
            with open(target, "wb") as out:
                for piece in uploaded_file.chunks():
                    out.write(piece)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        target.unlink(missing_ok=True)  # free what was written
        message = (
            f"The server's disk is full ({exc.strerror}): the file could not be stored and "
            "nothing of it was kept. Ask the administrator to free space on the disk holding "
            "DATA_DIR, then upload it again."
        )
        _finish(job, ImportJob.Status.FAILED, error=message)
        raise IngestError(message) from exc
    return _attach_file(job, target)


def create_from_path(*, project: Project, kind: str, path, user=None) -> ImportJob:
    """A job reading a file already on this machine (the command line)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise IngestError(f"No such file: {path}")
    job = _new_job(project=project, kind=kind, source_name=path.name, user=user)
    return _attach_file(job, path)


def _attach_file(job: ImportJob, path: Path) -> ImportJob:
    """Point the job at its file and describe it; a file that cannot be read fails the job."""
    job.file_path = str(path)
    job.save(update_fields=["file_path"])
    try:
        check_text_content(path)
        return _describe(job)
    except IngestError as exc:
        _finish(job, ImportJob.Status.FAILED, error=str(exc))
        raise


def configure(
    *,
    job: ImportJob,
    mapping: dict[str, str],
    mode: str,
    delimiter: str | None = None,
    has_header: bool | None = None,
    field_types: dict[str, str] | None = None,
) -> ImportJob:
    """Set the column mapping, mode and dialect; extend the schema with new fields."""
    if job.status not in (ImportJob.Status.UPLOADED, ImportJob.Status.VALIDATED):
        raise IngestError("This import has already started; start a new one to change it.")
    if mode not in ImportJob.Mode.values:
        raise IngestError(f"Unknown mode {mode!r}; use full or incremental.")
    if delimiter is not None and len(delimiter) != 1:
        raise IngestError(f"The delimiter must be one character, not {delimiter!r}.")
    dialect = Dialect.from_dict(job.dialect)
    if (delimiter and delimiter != dialect.delimiter) or (
        has_header is not None and has_header != dialect.has_header
    ):
        dialect = _redescribe(job.file_path, dialect, delimiter, has_header)
    unknown = set(mapping) - set(dialect.columns)
    if unknown:
        raise IngestError(f"The file has no column(s) {', '.join(sorted(unknown))}.")
    targets = [t for t in mapping.values() if t]
    repeated = [t for t, n in Counter(targets).items() if n > 1]
    if repeated:
        raise IngestError(f"Several columns are mapped to {', '.join(repeated)}.")
    fields = _fields_with_types(job, dialect, mapping, field_types or {})
    if job.kind in KINDS_WITH_ATTRIBUTES:
        save_schema(project=job.project, kind=job.kind, fields=fields)
    job.dialect = dialect.to_dict()
    job.mapping = {column: mapping.get(column, "") for column in dialect.columns}
    job.mode = mode
    job.status = ImportJob.Status.UPLOADED
    job.validation = {}
    job.save(update_fields=["dialect", "mapping", "mode", "status", "validation"])
    return job


def _fields_with_types(job, dialect, mapping, field_types) -> list[Field]:
    schema = get_schema(job.project, job.kind)
    fields = fields_for_mapping(job.kind, dialect.columns, dialect.preview, mapping, schema)
    reserved = set(reserved_names(job.kind))
    chosen = []
    for f in fields:
        wanted = field_types.get(f.name)
        if wanted and f.name not in reserved:
            f = Field(f.name, wanted, multi=wanted == "categorical" and f.multi)
        chosen.append(f)
    try:
        return schema_from_dicts(job.kind, [f.to_dict() for f in chosen])
    except SchemaError as exc:
        raise IngestError(str(exc)) from exc


def job_fields(job: ImportJob) -> list[Field]:
    dialect = Dialect.from_dict(job.dialect)
    schema = get_schema(job.project, job.kind)
    return fields_for_mapping(job.kind, dialect.columns, dialect.preview, job.mapping, schema)


# --- queueing (the worker runs tasks.*) --------------------------------------------------


def _enqueue(function: str, job: ImportJob) -> None:
    jobs.enqueue(job, function, task_name=f"import-{job.pk}", group="imports")


def queue_dry_run(job: ImportJob) -> None:
    job.validation = {"status": "queued"}
    job.save(update_fields=["validation"])
    write_progress(job, phase="queued", fraction=0, rows=0)
    _enqueue("datasets.tasks.dry_run_import", job)


def queue_import(job: ImportJob) -> None:
    if job.status not in (ImportJob.Status.UPLOADED, ImportJob.Status.VALIDATED):
        raise IngestError(f"This import is {job.get_status_display().lower()}; it cannot start.")
    job.status = ImportJob.Status.QUEUED
    job.save(update_fields=["status"])
    write_progress(job, phase="queued", fraction=0, rows=0)
    _enqueue("datasets.tasks.run_import", job)


def request_cancel(job: ImportJob) -> None:
    """Ask a queued or running import to stop; nothing it wrote is kept."""
    not_started = (ImportJob.Status.UPLOADED, ImportJob.Status.VALIDATED)
    if not jobs.request_cancel(job, job_files(job), waiting=not_started) and not job.is_finished:
        ImportJob.objects.filter(pk=job.pk).update(cancel_requested=True)


def retry(job: ImportJob, user=None) -> ImportJob:
    """A new job for the same file, mapping and mode, queued at once."""
    jobs.ensure_finished(job, "Only a finished import can be retried.", IngestError)
    if not Path(job.file_path).is_file():
        raise IngestError("The uploaded file is gone; upload it again.")
    clone = _new_job(project=job.project, kind=job.kind, source_name=job.source_name, user=user)
    if Path(job.file_path).parent == job_dir(job):
        shutil.copyfile(job.file_path, job_dir(clone) / "source.csv")
        clone.file_path = str(job_dir(clone) / "source.csv")
    else:
        clone.file_path = job.file_path
    clone.dialect, clone.mapping, clone.mode = job.dialect, job.mapping, job.mode
    clone.size_bytes = job.size_bytes
    clone.save()
    queue_import(clone)
    return clone


def fail_stale_jobs(
    project: Project | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Mark running imports whose worker stopped sending progress as failed."""
    return jobs.fail_stale(
        ImportJob,
        files_for=job_files,
        finish=_finish,
        error="The worker stopped during the import (it was killed or crashed). "
        "Nothing was changed; retry the import.",
        project=project,
        stale_after=stale_after,
    )


def _finish(job: ImportJob, status: str, *, error: str = "", report: dict | None = None):
    jobs.finish(job, status, error=error, **({} if report is None else {"report": report}))


# --- the work ---------------------------------------------------------------------------


@dataclass
class _Tally:
    started: float = field(default_factory=time.perf_counter)
    rows_read: int = 0
    accepted: int = 0
    blank_lines: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    samples: list = field(default_factory=list)
    user_catalog: dict = field(default_factory=dict)
    item_catalog: dict = field(default_factory=dict)
    rows_with_unknown_items: int = 0

    def add_chunk(self, chunk: Chunk, writer) -> None:
        self.rows_read += chunk.rows_read
        self.accepted += len(chunk.frame) - chunk.superseding
        self.blank_lines += chunk.blank_lines
        self.duplicates += chunk.duplicates
        self.rejected += len(chunk.rejected)
        for rejection in chunk.rejected:
            self.reasons[rejection.reason] += 1
            if len(self.samples) < SAMPLE_REJECTIONS:
                self.samples.append(rejection.__dict__)
            writer.writerow([rejection.line, rejection.column, rejection.reason, rejection.value])

    def report(self, kind: str, **extra) -> dict:
        report = {
            "kind": kind,
            "rows_read": self.rows_read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "blank_lines": self.blank_lines,
            "rejections_by_reason": dict(self.reasons.most_common()),
            "sample_rejections": self.samples,
            "seconds": round(time.perf_counter() - self.started, 2),
        }
        if kind == "interactions":
            report["unknown_items"] = sum(not known for known in self.item_catalog.values())
            report["unknown_users"] = sum(not known for known in self.user_catalog.values())
            report["rows_with_unknown_items"] = self.rows_with_unknown_items
        report.update(extra)
        return report


def _check_cancel(job: ImportJob) -> None:
    job_files(job).raise_if_cancelled(ImportCancelled)


def _chunks(job: ImportJob):
    dialect = Dialect.from_dict(job.dialect)
    chunks = read_chunks(job.file_path, dialect, job.kind, job.mapping, job_fields(job))
    return prefetch(_parse_errors_explained(chunks))


def _parse_errors_explained(chunks):
    """The CSV parser's own errors (found by fuzzing, e.g. an unclosed quote) as IngestErrors."""
    try:
        yield from chunks
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip()
        if "EOF inside string" in detail:
            raise IngestError(
                'A double quote (") opens a field that is never closed, so the rest of the file '
                f"reads as one value ({detail}). Fix or remove the quote and upload the file "
                "again."
            ) from exc
        raise IngestError(f"The file could not be parsed as CSV: {detail}") from exc


def prefetch(iterator, depth: int = 1):
    """Run ``iterator`` one step ahead in a thread.

    Parsing the next chunk (pandas/Arrow, mostly outside the GIL) then overlaps with the
    database loading the current one on the other core.
    """
    done = object()
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for element in iterator:
                if stop.is_set():
                    return
                queue.put(element)
            queue.put(done)
        except BaseException as exc:  # re-raised in the consumer
            queue.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (element := queue.get()) is not done:
            if isinstance(element, BaseException):
                raise element
            yield element
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                queue.get_nowait()
            except Empty:
                thread.join(timeout=0.05)


def _note_catalog(tally: _Tally, job: ImportJob, frame: pd.DataFrame) -> None:
    """Remember which user/item ids of this chunk are in the catalog (for the report)."""
    for column, table, known in (
        ("USER_ID", store.USER_TABLE, tally.user_catalog),
        ("ITEM_ID", store.ITEM_TABLE, tally.item_catalog),
    ):
        new_ids = [i for i in frame[column].unique().tolist() if i not in known]
        if new_ids:
            in_catalog = store.catalog_ids(table, job.project_id, new_ids)
            known.update((i, i in in_catalog) for i in new_ids)
    unknown = [i for i, known in tally.item_catalog.items() if not known]
    if unknown:
        tally.rows_with_unknown_items += int(frame["ITEM_ID"].isin(unknown).sum())


def dry_run(job: ImportJob) -> dict:
    """Validate the whole file without writing; store and return the report."""
    tally = _Tally()
    try:
        with open(rejected_path(job), "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "column", "reason", "value"])
            for chunk in _chunks(job):
                tally.add_chunk(chunk, writer)
                if job.kind == "interactions" and not chunk.frame.empty:
                    _note_catalog(tally, job, chunk.frame)
                write_progress(
                    job,
                    phase="validating",
                    fraction=_fraction(chunk, job),
                    rows=tally.rows_read,
                )
        report = tally.report(job.kind, status="done")
    except IngestError as exc:
        report = {"status": "failed", "error": str(exc)}
    job.validation = report
    job.save(update_fields=["validation"])
    if report["status"] == "done":
        # Conditional: the user may have started the import meanwhile; never step it back.
        ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.UPLOADED).update(
            status=ImportJob.Status.VALIDATED
        )
        job.refresh_from_db(fields=["status"])
    write_progress(job, phase="validated", fraction=1, rows=tally.rows_read)
    return report


def _fraction(chunk: Chunk, job: ImportJob) -> float:
    if not job.size_bytes:
        return 0.0
    return min(chunk.bytes_read / job.size_bytes, 0.99)


# After a big load PostgreSQL works from stale statistics until autovacuum gets to the table
# (minutes later), and the serving queries' index-only scans still visit the table for rows not
# yet marked all-visible: VACUUM (ANALYZE) it at once so the first requests get good plans and
# index-only reads. Inside a transaction (tests) VACUUM cannot run; ANALYZE does.
ANALYZE_MIN_ROWS = 10_000


def _refresh_planner_statistics(kind: str, rows: int) -> None:
    table = _TABLE_FOR_KIND.get(kind)
    if connection.vendor != "postgresql" or rows < ANALYZE_MIN_ROWS or table is None:
        return
    command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"{command} {table}")
    except DatabaseError:  # statistics are an optimisation; the import itself succeeded
        logger.warning("%s after the %s import failed", command, kind, exc_info=True)


def run(job: ImportJob) -> ImportJob:
    """Load the file. All or nothing: data, status and report commit together."""
    waiting = (ImportJob.Status.QUEUED, ImportJob.Status.UPLOADED, ImportJob.Status.VALIDATED)
    if not jobs.claim(job, waiting=waiting):
        return job
    write_progress(job, phase="loading", fraction=0, rows=0)
    try:
        with transaction.atomic():
            report = _load(job)
            job.status = ImportJob.Status.SUCCEEDED
            job.report = report
            job.finished_at = timezone.now()
            job.progress = 1.0
            job.rows_processed = report["rows_read"]
            job.save(
                update_fields=["status", "report", "finished_at", "progress", "rows_processed"]
            )
        _refresh_planner_statistics(job.kind, report["rows_read"])
        write_progress(job, phase="done", fraction=1, rows=report["rows_read"])
    except ImportCancelled:
        _finish(job, ImportJob.Status.CANCELLED, error="Cancelled; no data was changed.")
    except IngestError as exc:
        _finish(job, ImportJob.Status.FAILED, error=f"{exc} No data was changed.")
    except Exception as exc:  # the job must never stay "running" after an unexpected error
        logger.exception("Import %s failed", job.pk)
        _finish(
            job,
            ImportJob.Status.FAILED,
            error=f"Unexpected error: {exc.__class__.__name__}: {exc}. No data was changed.",
        )
    return job


def _load(job: ImportJob) -> dict:
    project_id = job.project_id
    tally = _Tally()
    replaced = 0
    kept_segments = _saved_segments(job)
    if job.mode == ImportJob.Mode.FULL:
        replaced = _clear_for_full_import(job)
    attribute_fields = [f for f in job_fields(job) if f.name in set(job.mapping.values())]
    attribute_fields = [f for f in attribute_fields if f.name not in reserved_names(job.kind)]
    with open(rejected_path(job), "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "column", "reason", "value"])
        for chunk in _chunks(job):
            _check_cancel(job)
            tally.add_chunk(chunk, writer)
            frame = chunk.frame
            if not frame.empty:
                if job.kind == "interactions":
                    _note_catalog(tally, job, frame)
                    _load_interactions(project_id, frame)
                elif job.kind == "relations":
                    _load_relations(project_id, frame)
                else:
                    _load_catalog(job.kind, project_id, frame, attribute_fields)
            write_progress(
                job, phase="loading", fraction=_fraction(chunk, job), rows=tally.rows_read
            )
    _check_cancel(job)
    if kept_segments:
        from graphs.services import restore_segment_values

        restore_segment_values(project_id, kept_segments)
    if tally.rows_read > 0 and tally.blank_lines == tally.rows_read:
        raise IngestError("The file has a header but only blank lines below it.")
    if tally.accepted == 0 and tally.rows_read > 0:
        raise IngestError(
            f"None of the {tally.rows_read} rows could be imported "
            f"(first problem: {next(iter(tally.reasons), 'unknown')})."
        )
    if tally.rows_read == 0:
        raise IngestError("The file has a header but no rows.")
    return tally.report(job.kind, mode=job.mode, replaced_rows=replaced)


def _saved_segments(job: ImportJob) -> dict:
    """A users import keeps the segment fields saved on the Segments page ("Save as segment
    field") that the file has no column for: their values, read before loading, to put back
    after it. A column mapped to such a field replaces it like any attribute."""
    if job.kind != "users":
        return {}
    from graphs.services import saved_segment_values

    return saved_segment_values(job.project, exclude=[t for t in job.mapping.values() if t])


def _clear_for_full_import(job: ImportJob) -> int:
    if job.kind == "interactions":
        return store.delete_interactions(job.project_id)
    if job.kind == "relations":
        return store.delete_relations(job.project_id)
    return store.clear_catalog(_TABLE_FOR_KIND[job.kind], job.project_id)


def _load_interactions(project_id: int, frame: pd.DataFrame) -> None:
    users = store.ensure_ids(store.USER_TABLE, project_id, frame["USER_ID"].unique().tolist())
    items = store.ensure_ids(store.ITEM_TABLE, project_id, frame["ITEM_ID"].unique().tolist())
    rows = pd.DataFrame(
        {
            "user_id": store.map_ids(frame["USER_ID"], users),
            "item_id": store.map_ids(frame["ITEM_ID"], items),
            "timestamp": frame["TIMESTAMP"].to_numpy(dtype=np.int64),
            "event_type": frame["EVENT_TYPE"],
            "event_value": frame["EVENT_VALUE"],
            "impression": frame["IMPRESSION"],
            "session_id": frame["SESSION_ID"],
            "recommendation_id": frame["RECOMMENDATION_ID"],
        }
    )
    store.insert_interactions(project_id, rows)


def _load_catalog(kind: str, project_id: int, frame: pd.DataFrame, attribute_fields) -> None:
    id_column = "ITEM_ID" if kind == "items" else "USER_ID"
    creation = None
    if kind == "items":
        creation = [None if pd.isna(v) else int(v) for v in frame["CREATION_TIMESTAMP"].array]
    store.upsert_catalog(
        _TABLE_FOR_KIND[kind],
        project_id,
        frame[id_column].tolist(),
        attribute_records(frame, attribute_fields),
        creation,
    )


def _load_relations(project_id: int, frame: pd.DataFrame) -> None:
    ids = pd.concat([frame["FOLLOWER_ID"], frame["FOLLOWEE_ID"]]).unique().tolist()
    users = store.ensure_ids(store.USER_TABLE, project_id, ids)
    edges = pd.DataFrame(
        {
            "follower_id": store.map_ids(frame["FOLLOWER_ID"], users),
            "followee_id": store.map_ids(frame["FOLLOWEE_ID"], users),
            "weight": np.nan_to_num(frame["WEIGHT"].to_numpy(dtype=float), nan=1.0),
            "timestamp": frame["TIMESTAMP"],
        }
    )
    store.upsert_relations(project_id, edges)


def import_file(
    *,
    project: Project,
    kind: str,
    path,
    mode: str = ImportJob.Mode.INCREMENTAL,
    mapping: dict[str, str] | None = None,
    delimiter: str | None = None,
    user=None,
) -> ImportJob:
    """Import a local file synchronously (command line, demo set-up, tests)."""
    job = create_from_path(project=project, kind=kind, path=path, user=user)
    configure(
        job=job,
        mapping=mapping if mapping is not None else job.mapping,
        mode=mode,
        delimiter=delimiter,
    )
    job.status = ImportJob.Status.QUEUED
    job.save(update_fields=["status"])
    return run(job)


def rejection_rows(job: ImportJob, limit: int = 1000) -> list[Rejection]:
    path = rejected_path(job)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return [
            Rejection(int(row["line"]), row["column"], row["reason"], row["value"])
            for _, row in zip(range(limit), reader, strict=False)
        ]
