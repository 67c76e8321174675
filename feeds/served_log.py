"""The served log (``ServedRecommendation``, the attribution record) written off the request path.

Every answer of the serving endpoints and of the feed endpoint is logged, one row each. Written
inline, that INSERT was the largest single cost of a request (about 1 ms of a 3 ms
recommendation: a round trip plus the commit). So each web process buffers the rows in
memory and a background thread writes them in bulk: every ``SERVED_LOG_FLUSH_SECONDS``
(setting, default 0.2 s) or as soon as ``FLUSH_ROWS`` rows are waiting, one multi-row INSERT
in one short transaction (on PostgreSQL with ``synchronous_commit`` off for it). The buffer is
also written when the process exits normally (gunicorn's graceful stop and restart, ``atexit``).

What can be lost, honestly: the rows of the last fraction of a second of a process that is
killed without a normal exit (``kill -9``, the kernel's out-of-memory killer, a gunicorn
worker timing out), and, if the database refuses a batch (it is down, the disk is full),
those rows (each is retried once on its own, and the error is logged). Responses are never
delayed or failed by the log. An event that arrives with a ``recommendation_id`` before its
row is written is still attributed: attribution joins on the id when it is read, not when the
event is stored.

Inside a transaction (``ATOMIC_REQUESTS``, the test suite) and with
``SERVED_LOG_FLUSH_SECONDS = 0``, rows are written at once, in the caller's transaction.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from feeds.models import ServedRecommendation

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_SECONDS = 0.2
# A batch is written as soon as this many rows wait; more than MAX_BUFFERED waiting (the
# database is down) drops the oldest, so memory stays bounded.
FLUSH_ROWS = 200
MAX_BUFFERED = 50_000
# The writer thread closes its database connection after this long without rows.
IDLE_CLOSE_SECONDS = 2.0


def flush_seconds() -> float:
    return float(getattr(settings, "SERVED_LOG_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS) or 0)


class ServedLogWriter:
    """The per-process buffer and its writer thread (started on first use, after a fork)."""

    def __init__(self):
        self._rows: list[dict] = []  # ServedRecommendation fields
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._release_requested = threading.Event()
        self._released = threading.Event()
        self.written = 0
        self.dropped = 0

    def add(self, row: dict) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._rows = []
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="served-log-writer", daemon=True
                )
                self._thread.start()
            self._rows.append(row)
            if len(self._rows) > MAX_BUFFERED:
                del self._rows[: len(self._rows) - MAX_BUFFERED]
                self.dropped += 1
            full = len(self._rows) >= FLUSH_ROWS
        if full:
            self._wake.set()

    def release_connection(self, timeout: float = 5.0) -> None:
        """Write what waits, then have the writer thread close its database connection (it
        opens a new one when needed): tests, before their database is dropped."""
        self.flush()
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        self._released.clear()
        self._release_requested.set()
        self._wake.set()
        self._released.wait(timeout)

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write every buffered row now (the writer thread, process exit, tests)."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                _bulk_insert(rows)
                self.written += len(rows)
                return len(rows)
            except Exception:  # noqa: BLE001 - the log must never break serving
                connection.close()  # a broken connection is replaced below
            # One bad row (its project was deleted meanwhile) must not lose the batch, and a
            # database that is down loses it once, with an error in the log.
            written, error = 0, None
            for row in rows:
                try:
                    _bulk_insert([row])
                    written += 1
                except Exception as exc:  # noqa: BLE001
                    error = exc
                    connection.close()
            self.written += written
            if error is not None:
                self.dropped += len(rows) - written
                logger.error(
                    "Could not write %s of %s served-log rows (%s: %s); they are lost.",
                    len(rows) - written,
                    len(rows),
                    type(error).__name__,
                    error,
                )
            return written

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            # Short waits, so a changed SERVED_LOG_FLUSH_SECONDS applies at once.
            woken = self._wake.wait(min(max(flush_seconds(), 0.01), 0.25))
            self._wake.clear()
            if self._release_requested.is_set():
                connection.close()
                self._release_requested.clear()
                self._released.set()
                continue
            if not woken and time.monotonic() - last < flush_seconds():
                continue
            if not self.pending():
                if time.monotonic() - last > IDLE_CLOSE_SECONDS:
                    connection.close()  # an idle process holds no connection for its log
                continue
            last = time.monotonic()
            try:
                close_old_connections()
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any error
                logger.exception("The served-log writer failed; it retries at the next flush.")


_FIELDS = [f for f in ServedRecommendation._meta.concrete_fields if not f.primary_key]
_COLUMNS = [f.column for f in _FIELDS]  # the same as the attribute names callers pass
_DEFAULTS = {f.column: f.get_default() for f in _FIELDS}
_JSON_POSITIONS = [i for i, f in enumerate(_FIELDS) if f.get_internal_type() == "JSONField"]
_TABLE = ServedRecommendation._meta.db_table
_COPY = f"COPY {_TABLE} ({', '.join(_COLUMNS)}) FROM STDIN"
_ROW = f"({', '.join(['%s'] * len(_COLUMNS))})"
_INSERT = f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES "
# Rows per INSERT statement, fewer where the database takes fewer parameters (SQLite).
INSERT_ROWS = 500


def _bulk_insert(rows: list[dict]) -> None:
    """Write ``rows`` in one short transaction: on PostgreSQL one COPY (with
    ``synchronous_commit`` off), elsewhere multi-row INSERTs of INSERT_ROWS rows.

    Measured per row (docs/benchmarks.md): model instances and the ORM's bulk_create cost
    ~0.1 ms of the web process's CPU; the multi-row INSERT, whose parameters psycopg's client
    cursor interpolates in Python and PostgreSQL then parses and plans, about as much again
    on each side; COPY rows are encoded in C and parsed by PostgreSQL's COPY reader.
    One statement per row (executemany) made the writer thread wait on the socket once per
    row, taking the interpreter lock back from the request thread every time."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            _copy(cursor.cursor, rows)
            return
        values = [
            [
                f.get_db_prep_save(row.get(f.column, _DEFAULTS[f.column]), connection)
                for f in _FIELDS
            ]
            for row in rows
        ]
        max_params = connection.features.max_query_params or len(_COLUMNS) * INSERT_ROWS
        per_insert = max(1, min(INSERT_ROWS, max_params // len(_COLUMNS)))
        for start in range(0, len(values), per_insert):
            batch = values[start : start + per_insert]
            cursor.execute(
                _INSERT + ", ".join([_ROW] * len(batch)), [v for row in batch for v in row]
            )


def _copy(cursor, rows: list[dict]) -> None:
    """COPY ``rows`` (text format: a JSON column goes as its JSON text, None as NULL)."""
    with cursor.copy(_COPY) as copy:
        for row in rows:
            values = [row.get(column, _DEFAULTS[column]) for column in _COLUMNS]
            for i in _JSON_POSITIONS:
                if values[i] is not None:
                    values[i] = json.dumps(values[i], separators=(",", ":"))
            copy.write_row(values)


_writer = ServedLogWriter()


def buffered() -> bool:
    """Whether a row written now goes to the buffer (else: at once, in the caller's
    transaction)."""
    return flush_seconds() > 0 and not connection.in_atomic_block


def write(**fields) -> None:
    """Log one response (``ServedRecommendation`` fields): buffered (see module doc), or at
    once inside a transaction or when buffering is off."""
    if not buffered():
        ServedRecommendation.objects.create(**fields)
        return
    add(fields)


def add(fields: dict) -> None:
    """Buffer one response's row (the caller checked ``buffered()``)."""
    fields["created_at"] = timezone.now()  # when it was served, not when it is written
    _writer.add(fields)


def flush() -> int:
    """Write the buffered rows of this process now; how many were written."""
    return _writer.flush()


def release_connection() -> None:
    _writer.release_connection()


def pending() -> int:
    return _writer.pending()


@atexit.register
def _flush_at_exit() -> None:
    if _writer.pending() and _writer._pid == os.getpid():
        try:
            _writer.flush()
        finally:
            connection.close()
