"""Bulk reads and writes of the data stores (items, end users, interactions, relations).

The import path and the write API both come through here. It speaks SQL directly because
the ORM's per-object paths are 10-100x too slow for bulk data: on PostgreSQL it streams rows
with COPY (psycopg 3), on SQLite it uses batched ``executemany``. Callers own the transaction.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection, transaction

from datasets.signals import events_changed

ITEM_TABLE = "datasets_item"
USER_TABLE = "datasets_enduser"
INTERACTION_TABLE = "datasets_interaction"
RELATION_TABLE = "datasets_relation"

INTERACTION_COLUMNS = (
    "user_id",
    "item_id",
    "timestamp",
    "event_type",
    "event_value",
    "impression",
    "session_id",
    "recommendation_id",
)
_TEXT_INTERACTION_COLUMNS = ("event_type", "impression", "session_id", "recommendation_id")
_LOOKUP_BATCH = 5000


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _raw_cursor(cursor):
    """The driver's cursor under Django's wrapper (psycopg's has ``copy``)."""
    return cursor.cursor


def _copy_csv(table: str, columns: Sequence[str], frame: pd.DataFrame, force_not_null=()):
    """Stream a DataFrame into ``table`` with PostgreSQL COPY (CSV format).

    Arrow's CSV writer is C++ and about 5x faster than ``DataFrame.to_csv``. It writes
    nulls as empty fields (NULL to COPY) and quotes every string, so "" stays ''.
    """
    buffer = io.BytesIO()
    table_data = pa.Table.from_pandas(frame, preserve_index=False)
    pa_csv.write_csv(table_data, buffer, pa_csv.WriteOptions(include_header=False))
    options = "FORMAT csv"
    if force_not_null:
        options += f", FORCE_NOT_NULL ({', '.join(force_not_null)})"
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH ({options})"
    with connection.cursor() as cursor, _raw_cursor(cursor).copy(sql) as copy:
        copy.write(buffer.getvalue())


def _python_rows(frame: pd.DataFrame) -> list[tuple]:
    """Rows of plain Python values (None for missing), column by column for speed."""
    columns = []
    for name in frame.columns:
        values = frame[name]
        if values.isna().any():
            values = values.astype(object).where(values.notna(), None)
        columns.append(values.tolist())
    return list(zip(*columns, strict=True))


def _executemany(sql: str, rows: Iterable[tuple], batch: int = 20_000):
    rows = list(rows)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch):
            cursor.executemany(sql, rows[start : start + batch])


# --- id maps ---------------------------------------------------------------------------


def lookup_ids(table: str, project_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    """Internal ids of the given external ids that exist (missing ones are absent)."""
    found: dict[str, int] = {}
    ids = list(dict.fromkeys(external_ids))
    with connection.cursor() as cursor:
        for start in range(0, len(ids), _LOOKUP_BATCH):
            batch = ids[start : start + _LOOKUP_BATCH]
            if is_postgres():
                cursor.execute(
                    f"SELECT external_id, id FROM {table} "
                    "WHERE project_id = %s AND external_id = ANY(%s)",
                    [project_id, batch],
                )
            else:
                marks = ",".join(["%s"] * len(batch))
                cursor.execute(
                    f"SELECT external_id, id FROM {table} "
                    f"WHERE project_id = %s AND external_id IN ({marks})",
                    [project_id, *batch],
                )
            found.update(cursor.fetchall())
    return found


def ensure_ids(table: str, project_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    """Internal ids for ``external_ids``, creating rows (not in catalog) for unseen ones."""
    ids = list(dict.fromkeys(external_ids))
    known = lookup_ids(table, project_id, ids)
    missing = [external_id for external_id in ids if external_id not in known]
    if missing:
        if is_postgres():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} "
                    "(project_id, external_id, in_catalog, attributes, updated_at) "
                    "SELECT %s, unnest(%s::text[]), false, '{}', now() "
                    "ON CONFLICT (project_id, external_id) DO NOTHING",
                    [project_id, missing],
                )
        else:
            _executemany(
                f"INSERT INTO {table} "
                "(project_id, external_id, in_catalog, attributes, updated_at) "
                "VALUES (%s, %s, 0, '{}', datetime('now')) "
                "ON CONFLICT (project_id, external_id) DO NOTHING",
                ((project_id, external_id) for external_id in missing),
            )
        known.update(lookup_ids(table, project_id, missing))
    return known


def catalog_ids(table: str, project_id: int, external_ids: Sequence[str]) -> set[str]:
    """Which of ``external_ids`` are in the catalog (imported as items/users, not just seen)."""
    ids = list(dict.fromkeys(external_ids))
    in_catalog: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(ids), _LOOKUP_BATCH):
            batch = ids[start : start + _LOOKUP_BATCH]
            marks = ",".join(["%s"] * len(batch))
            cursor.execute(
                f"SELECT external_id FROM {table} WHERE project_id = %s "
                f"AND in_catalog AND external_id IN ({marks})",
                [project_id, *batch],
            )
            in_catalog.update(row[0] for row in cursor.fetchall())
    return in_catalog


# --- interactions ----------------------------------------------------------------------


def insert_interactions(project_id: int, rows: pd.DataFrame) -> int:
    """Append interactions. ``rows`` has INTERACTION_COLUMNS with internal user/item ids."""
    if rows.empty:
        return 0
    _announce_events_changed(project_id, rows["user_id"].unique().tolist())
    frame = rows.loc[:, list(INTERACTION_COLUMNS)].copy()
    frame.insert(0, "project_id", project_id)
    columns = ("project_id", *INTERACTION_COLUMNS)
    if is_postgres():
        _copy_csv(INTERACTION_TABLE, columns, frame, force_not_null=_TEXT_INTERACTION_COLUMNS)
    else:
        marks = ", ".join(["%s"] * len(columns))
        _executemany(
            f"INSERT INTO {INTERACTION_TABLE} ({', '.join(columns)}) VALUES ({marks})",
            _python_rows(frame),
        )
    return len(frame)


def delete_interactions(project_id: int) -> int:
    _announce_events_changed(project_id, None)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {INTERACTION_TABLE} WHERE project_id = %s", [project_id])
        return cursor.rowcount


# Web processes keep users' newest events in memory (feeds/history_cache.py). Every write of
# events tells them whose changed: on PostgreSQL by NOTIFY on this channel (delivered to every
# process when the transaction commits, never when it rolls back), with the payload
# "<project id>:<user id>,<user id>,..." or "<project id>:*" (every user of the project: a
# deletion, or more than NOTIFY_MAX_USERS users at once); in this process also by the
# ``events_changed`` signal after the commit.
EVENTS_CHANGED_CHANNEL = "recsite_events_changed"
NOTIFY_MAX_USERS = 500


def _announce_events_changed(project_id: int, user_ids: list[int] | None) -> None:
    if user_ids is not None and len(user_ids) > NOTIFY_MAX_USERS:
        user_ids = None
    if is_postgres():
        payload = f"{project_id}:" + ("*" if user_ids is None else ",".join(map(str, user_ids)))
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [EVENTS_CHANGED_CHANNEL, payload])
    transaction.on_commit(
        lambda: events_changed.send(sender=None, project_id=project_id, user_ids=user_ids)
    )


# --- catalog upserts -------------------------------------------------------------------


def _attributes_json(attributes: Sequence[dict]) -> list[str]:
    return [json.dumps(a, separators=(",", ":"), ensure_ascii=False) for a in attributes]


def upsert_catalog(
    table: str,
    project_id: int,
    external_ids: Sequence[str],
    attributes: Sequence[dict],
    creation_timestamps: Sequence[int | None] | None = None,
) -> int:
    """Insert or replace catalog rows (items or users), marking them ``in_catalog``.

    An existing row keeps its internal id, so interactions that point at it stay valid.
    """
    if len(external_ids) == 0:
        return 0
    with_creation = table == ITEM_TABLE
    frame = pd.DataFrame(
        {
            "project_id": project_id,
            "external_id": list(external_ids),
            "attributes": _attributes_json(attributes),
        }
    )
    if with_creation:
        stamps = creation_timestamps if creation_timestamps is not None else [None] * len(frame)
        frame["creation_timestamp"] = pd.array(stamps, dtype="Int64")
    columns = list(frame.columns)
    update = "in_catalog = true, attributes = EXCLUDED.attributes, updated_at = EXCLUDED.updated_at"
    if with_creation:
        update += ", creation_timestamp = EXCLUDED.creation_timestamp"
    if is_postgres():
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS staging_{table} (project_id bigint, "
                "external_id text, attributes jsonb, creation_timestamp bigint) ON COMMIT DROP"
            )
            cursor.execute(f"TRUNCATE staging_{table}")
        _copy_csv(f"staging_{table}", columns, frame)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}, in_catalog, updated_at) "
                f"SELECT {', '.join(columns)}, true, now() FROM staging_{table} "
                f"ON CONFLICT (project_id, external_id) DO UPDATE SET {update}"
            )
    else:
        marks = ", ".join(["%s"] * len(columns))
        _executemany(
            f"INSERT INTO {table} ({', '.join(columns)}, in_catalog, updated_at) "
            f"VALUES ({marks}, 1, datetime('now')) "
            f"ON CONFLICT (project_id, external_id) DO UPDATE SET {update}",
            _python_rows(frame),
        )
    return len(frame)


def clear_catalog(table: str, project_id: int) -> int:
    """Take every row out of the catalog (a full import then puts back what the file has).

    Rows stay, so their internal ids and the interactions that use them survive.
    """
    extra = ", creation_timestamp = NULL" if table == ITEM_TABLE else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET in_catalog = false, attributes = '{{}}'{extra} "
            "WHERE project_id = %s AND in_catalog",
            [project_id],
        )
        return cursor.rowcount


# --- relations -------------------------------------------------------------------------


def upsert_relations(project_id: int, edges: pd.DataFrame) -> int:
    """Insert or update follower -> followee edges (internal ids, weight, timestamp)."""
    if edges.empty:
        return 0
    frame = edges.loc[:, ["follower_id", "followee_id", "weight", "timestamp"]].copy()
    frame["timestamp"] = frame["timestamp"].astype("Int64")
    frame.insert(0, "project_id", project_id)
    columns = ", ".join(frame.columns)
    on_conflict = (
        "ON CONFLICT (project_id, follower_id, followee_id) "
        "DO UPDATE SET weight = EXCLUDED.weight, timestamp = EXCLUDED.timestamp"
    )
    if is_postgres():
        staging = f"staging_{RELATION_TABLE}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} (project_id bigint, "
                "follower_id bigint, followee_id bigint, weight double precision, "
                "timestamp bigint) ON COMMIT DROP"
            )
            cursor.execute(f"TRUNCATE {staging}")
        _copy_csv(staging, list(frame.columns), frame)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {RELATION_TABLE} ({columns}) SELECT {columns} FROM {staging} "
                + on_conflict
            )
    else:
        marks = ", ".join(["%s"] * len(frame.columns))
        _executemany(
            f"INSERT INTO {RELATION_TABLE} ({columns}) VALUES ({marks}) {on_conflict}",
            _python_rows(frame),
        )
    return len(frame)


def delete_relations(project_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {RELATION_TABLE} WHERE project_id = %s", [project_id])
        return cursor.rowcount


def map_ids(values: pd.Series, id_map: dict[str, int]) -> np.ndarray:
    """Vectorised external -> internal id mapping (every value must be in ``id_map``)."""
    return values.map(id_map).to_numpy(dtype=np.int64)
