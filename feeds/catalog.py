"""The project's item catalogue as arrays, cached per process, for serving and filter previews.

``catalog_for(project)`` returns a :class:`Catalog`: every item of the project (database ids
sorted ascending; items seen only in events included), their external ids and display titles,
an :class:`~feeds.engine.filters.ItemTable` of their attributes (plus ``CREATION_TIMESTAMP``),
the project's item and user schema for ``compile_filter``, and fast lookups (database id ->
row, external id -> row). Everything a response needs about items comes from these arrays, so
serving never queries items one by one.

Caching and refresh: the catalogue is built once per process and project (one query over the
project's items). At most every ``REFRESH_SECONDS`` (default 2 s) the next caller runs one
cheap aggregate query (item count and latest ``updated_at``, plus the latest schema change);
when it differs from the cached catalogue's fingerprint the catalogue is rebuilt. Because
``updated_at`` can be coarse (whole seconds on SQLite), a catalogue built within
``UNSURE_SECONDS`` of the newest change is rebuilt once more at the next check. An item
added or changed through the API or an import therefore reaches serving within about two
seconds. Building is done by one thread; others keep using the previous catalogue meanwhile.
``refresh(project)`` forces a rebuild now and ``clear_cache()`` forgets everything (tests).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db.models import Count, Max
from django.utils import timezone

from datasets.imports import get_schema
from datasets.ingest.schema import Field
from datasets.models import DatasetSchema, Item, Project
from feeds.engine.filters import ItemTable

# How often (seconds) a cached catalogue checks whether the project's items changed.
REFRESH_SECONDS = 2.0
# A catalogue built less than this long after the newest item change is rebuilt at the next
# check even when the fingerprint is unchanged (see _maybe_stale).
UNSURE_SECONDS = 5.0
# Attribute names (case-insensitive) used as an item's title and category, in this order.
TITLE_FIELDS = ("title", "name", "product_name")
CATEGORY_FIELDS = ("category", "categories", "genre", "genres", "department", "section")
CREATION_FIELD = "CREATION_TIMESTAMP"
# ItemTable column kinds -> schema field types, for attributes the schema does not list.
_KIND_TYPES = {
    "numeric": "numeric",
    "timestamp": "timestamp",
    "boolean": "boolean",
    "string": "categorical",
    "multi": "categorical",
}


@dataclass(frozen=True, eq=False)
class Catalog:
    """A project's items as arrays; read-only and shared between threads (see module doc)."""

    project_id: int
    item_ids: np.ndarray  # int64, sorted ascending: database ids (Item.pk)
    external_ids: np.ndarray  # object: the external id of each row
    titles: np.ndarray  # object: the title attribute, else the external id
    in_catalog: np.ndarray  # bool: imported as an item (False: only seen in events)
    creation_timestamps: np.ndarray  # float64 epoch seconds, NaN when unknown
    attributes: list  # one dict per row, as stored (for CurrentItem and context lookups)
    table: ItemTable  # attribute columns aligned with the rows, for filters
    schema: dict  # {"items": [Field, ...], "users": [Field, ...]} for compile_filter
    category_field: str | None  # the attribute used for "popular in <category>"
    fingerprint: tuple
    built_at: float = 0.0  # time.monotonic()
    built_wall: datetime | None = None  # wall-clock time of the build
    _by_external: dict = field(default_factory=dict, repr=False)
    _categories: dict = field(default_factory=dict, repr=False)
    _recommendable: np.ndarray | None = field(default=None, repr=False)

    @property
    def recommendable(self) -> np.ndarray:
        """Rows that may be recommended: the items in the catalogue (imported or sent as items;
        not ids only seen in events, nor items a full import removed). A project that never
        sent its catalogue (events only) may have all its items recommended."""
        mask = self._recommendable
        if mask is None:
            mask = self.in_catalog.copy() if self.in_catalog.any() else np.ones(self.n_items, bool)
            mask.flags.writeable = False
            object.__setattr__(self, "_recommendable", mask)
        return mask

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def row_of(self, external_id: str) -> int | None:
        """The row of an external item id, or None when the project has no such item."""
        return self._by_external.get(external_id)

    def rows_of(self, external_ids) -> np.ndarray:
        """Rows of these external ids; -1 for unknown ids."""
        get = self._by_external.get
        return np.fromiter(
            (get(e, -1) for e in external_ids), dtype=np.int64, count=len(external_ids)
        )

    def rows_for_ids(self, item_ids) -> np.ndarray:
        """Rows of these database item ids; -1 for ids not in the catalogue."""
        wanted = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        if self.n_items == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        position = np.minimum(np.searchsorted(self.item_ids, wanted), self.n_items - 1)
        return np.where(self.item_ids[position] == wanted, position, -1)

    def attributes_of(self, row: int) -> dict:
        """The item's attributes with ``ITEM_ID`` and ``CREATION_TIMESTAMP`` added."""
        values = dict(self.attributes[row])
        values.setdefault("ITEM_ID", self.external_ids[row])
        stamp = self.creation_timestamps[row]
        if not np.isnan(stamp):
            values.setdefault(CREATION_FIELD, float(stamp))
        return values

    def categories_of(self, row: int) -> list[str]:
        """The category values of an item (several for multi-valued fields like "A|B")."""
        if self.category_field is None:
            return []
        raw = self.attributes[row].get(self.category_field)
        return _split(raw)

    def category_rows(self, category: str) -> np.ndarray:
        """Rows whose category is ``category`` (case-insensitive); empty when none."""
        index = self._categories
        if not index and self.category_field is not None:
            index = _category_index(self)
            object.__setattr__(self, "_categories", index)
        return index.get(str(category).strip().lower(), _EMPTY)


_EMPTY = np.zeros(0, dtype=np.int64)


def _split(raw) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, list | tuple):
        return [str(v).strip() for v in raw if str(v).strip()]
    return [part.strip() for part in str(raw).split("|") if part.strip()]


def _category_index(catalog: Catalog) -> dict[str, np.ndarray]:
    buckets: dict[str, list[int]] = {}
    name = catalog.category_field
    for row, attributes in enumerate(catalog.attributes):
        for value in _split(attributes.get(name)):
            buckets.setdefault(value.lower(), []).append(row)
    return {key: np.asarray(rows, dtype=np.int64) for key, rows in buckets.items()}


def _pick_field(names, wanted: tuple[str, ...]) -> str | None:
    lowered = {str(name).lower(): name for name in names}
    for candidate in wanted:
        if candidate in lowered:
            return lowered[candidate]
    return None


def _fingerprint(project_id: int) -> tuple:
    items = Item.objects.filter(project_id=project_id).aggregate(
        count=Count("pk"), changed=Max("updated_at")
    )
    schema_changed = DatasetSchema.objects.filter(project_id=project_id).aggregate(
        changed=Max("updated_at")
    )["changed"]
    return (items["count"], items["changed"], schema_changed)


def _maybe_stale(catalog: Catalog) -> bool:
    """Whether an item may have changed unseen: ``updated_at`` has whole-second resolution on
    SQLite (and is the transaction's start on PostgreSQL), so a change made within
    UNSURE_SECONDS of the newest one before the build can leave the fingerprint as it was."""
    changed = catalog.fingerprint[1]
    if changed is None:
        return False
    return (catalog.built_wall - changed).total_seconds() < UNSURE_SECONDS


def build_catalog(project: Project) -> Catalog:
    """Read the project's items into a :class:`Catalog` (one query)."""
    built_wall = timezone.now()
    fingerprint = _fingerprint(project.pk)
    rows = list(
        Item.objects.filter(project_id=project.pk)
        .order_by("pk")
        .values_list("pk", "external_id", "in_catalog", "attributes", "creation_timestamp")
    )
    n = len(rows)
    item_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    external_ids = np.empty(n, dtype=object)
    external_ids[:] = [r[1] for r in rows]
    in_catalog = np.fromiter((bool(r[2]) for r in rows), dtype=bool, count=n)
    attributes = [r[3] if isinstance(r[3], dict) else {} for r in rows]
    created = np.fromiter(
        (np.nan if r[4] is None else float(r[4]) for r in rows), dtype=np.float64, count=n
    )
    item_fields = get_schema(project, "items")
    user_fields = get_schema(project, "users")
    schema = {"items": item_fields, "users": user_fields}
    attribute_names = [f.name for f in item_fields if f.name != "ITEM_ID"]
    seen = {name.lower() for name in attribute_names}
    for attrs in attributes:  # attributes stored without a schema field still filter
        for name in attrs:
            if name.lower() not in seen:
                seen.add(name.lower())
                attribute_names.append(name)
    columns = {}
    for name in attribute_names:
        if name == CREATION_FIELD:
            columns[name] = created
            continue
        column = np.empty(n, dtype=object)
        column[:] = [attrs.get(name) for attrs in attributes]
        columns[name] = column
    columns.setdefault(CREATION_FIELD, created)
    table = ItemTable(columns, schema=schema, n_items=n)
    # Attributes sent without a schema field (e.g. through POST /api/v1/items) get the type
    # their values suggest, so filters can use them too.
    known = {f.name.lower() for f in item_fields}
    extra = []
    for name in attribute_names:
        if name.lower() not in known:
            kind = table.column(name).kind
            extra.append(Field(name, _KIND_TYPES.get(kind, "categorical"), multi=kind == "multi"))
    if extra:
        schema = {"items": [*item_fields, *extra], "users": user_fields}
    title_field = _pick_field(attribute_names, TITLE_FIELDS)
    titles = external_ids.copy()
    if title_field is not None:
        for row, attrs in enumerate(attributes):
            title = attrs.get(title_field)
            if title not in (None, ""):
                titles[row] = str(title)
    categorical = [f.name for f in item_fields if f.type == "categorical" and f.name != "ITEM_ID"]
    category_field = _pick_field(attribute_names, CATEGORY_FIELDS) or (
        categorical[0] if categorical else None
    )
    return Catalog(
        project_id=project.pk,
        item_ids=item_ids,
        external_ids=external_ids,
        titles=titles,
        in_catalog=in_catalog,
        creation_timestamps=created,
        attributes=attributes,
        table=table,
        schema=schema,
        category_field=category_field,
        fingerprint=fingerprint,
        built_at=time.monotonic(),
        built_wall=built_wall,
        _by_external={external: row for row, external in enumerate(external_ids)},
    )


class CatalogCache:
    """Catalogues by project, refreshed when the items change (see the module doc)."""

    def __init__(self):
        self._lock = threading.Lock()
        # (project pk, project created_at) -> [catalog, monotonic time of the last check]
        self._entries: dict[tuple, list] = {}
        self._building: dict[tuple, threading.Lock] = {}

    def get(self, project: Project) -> Catalog:
        key = (project.pk, getattr(project, "created_at", None))
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[1] < REFRESH_SECONDS:
                return entry[0]
            building = self._building.setdefault(key, threading.Lock())
        if entry is not None:
            if not building.acquire(blocking=False):
                return entry[0]  # someone else is checking; serve what we have
        else:
            building.acquire()
        try:
            with self._lock:
                current = self._entries.get(key)
                if current is not None and time.monotonic() - current[1] < REFRESH_SECONDS:
                    return current[0]
            if (
                current is not None
                and _fingerprint(project.pk) == current[0].fingerprint
                and not _maybe_stale(current[0])
            ):
                with self._lock:
                    current[1] = time.monotonic()
                return current[0]
            catalog = build_catalog(project)
            with self._lock:
                self._entries[key] = [catalog, time.monotonic()]
            return catalog
        finally:
            building.release()

    def refresh(self, project: Project) -> Catalog:
        catalog = build_catalog(project)
        with self._lock:
            key = (project.pk, getattr(project, "created_at", None))
            self._entries[key] = [catalog, time.monotonic()]
        return catalog

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._building.clear()


_cache = CatalogCache()


def catalog_for(project: Project) -> Catalog:
    """The project's catalogue from this process's cache, refreshed as described above."""
    return _cache.get(project)


def refresh(project: Project) -> Catalog:
    """Rebuild the project's catalogue now (after a change that must show immediately)."""
    return _cache.refresh(project)


def clear_cache() -> None:
    """Forget every cached catalogue (tests; freeing memory)."""
    _cache.clear()
