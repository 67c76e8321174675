"""The hot read queries of every API request, as server-side prepared statements.

Django's psycopg cursors bind parameters on the client, so PostgreSQL parses and plans each
execution anew. The queries every request runs (the API key lookup, the user's newest events)
are instead prepared once per connection and then only executed: measured on the demo shop,
the history query went from 0.25 to 0.15 ms per request (with its covering index), and the
database server spends less CPU on the 2-core machines we serve from (docs/benchmarks.md).

The statement runs on Django's own connection, in its transaction, with Django's error
translation (an outage still raises ``django.db.OperationalError``) and, when queries are
being recorded (DEBUG, ``CaptureQueriesContext``), it is recorded like any other. Other
databases (SQLite) run the same SQL through an ordinary cursor.

A connection pooler in transaction mode (PgBouncer < 1.21) does not keep prepared statements
per client: point recsite at PostgreSQL directly or use a pooler that supports them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.db import connection

_ONLY_WHEN_ASKED = 2**62


def fetchall(sql: str, params: Sequence, *, binary: bool = False) -> list[tuple]:
    """The rows of one read query (``%s`` placeholders), prepared on PostgreSQL; ``binary``:
    results in PostgreSQL's binary format (numbers arrive without text parsing)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    import psycopg

    # What Django's cursor() does first (health check of a reused connection, connect, the
    # thread check), without making a Django cursor this query does not use.
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = connection.connection
        if raw.prepare_threshold is None:
            # Django turns psycopg's preparing off (None); a threshold no query count reaches
            # keeps automatic preparing off while prepare=True works.
            raw.prepare_threshold = _ONLY_WHEN_ASKED
        began = time.monotonic()
        with psycopg.Cursor(raw) as cursor:
            cursor.execute(sql, params, prepare=True, binary=binary)
            rows = cursor.fetchall()
        if connection.queries_logged:
            seconds = time.monotonic() - began
            connection.queries_log.append(
                {"sql": f"{sql} -- prepared, {list(params)!r}", "time": f"{seconds:.3f}"}
            )
    return rows
