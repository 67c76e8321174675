"""Reads for the marketer tools: saved filters, promotions, live filter previews.

The serving code calls :func:`active_promotions` for the promotions that apply to a response;
the Filters and Promotions pages use the rest. Writes live in ``feeds/services.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from datasets.models import EndUser, Interaction, Project
from feeds.catalog import Catalog, catalog_for
from feeds.engine.filters import (
    Filter,
    FilterError,
    UserInteractions,
    compile_filter,
)
from feeds.models import Promotion, SavedFilter
from models_app.models import Campaign

# Rows shown under "N of M items match".
SAMPLE_SIZE = 12
# The latest events of a preview user that Interactions conditions look at.
MAX_PREVIEW_EVENTS = 20_000

ACTIVE, SCHEDULED, ENDED, PAUSED = "active", "scheduled", "ended", "paused"
STATUS_LABELS = {ACTIVE: "Active now", SCHEDULED: "Scheduled", ENDED: "Ended", PAUSED: "Paused"}
STATUS_ORDER = (ACTIVE, SCHEDULED, PAUSED, ENDED)


# --------------------------------------------------------------------------- serving


def active_promotions(project: Project, campaign: Campaign | None = None, now=None) -> list:
    """The promotions to apply to a response of ``project`` at ``now`` (default: now).

    A promotion applies when it is not paused, ``starts_at <= now < ends_at`` (a missing end
    means open-ended), and it is either for every campaign (``campaign`` empty) or for this
    ``campaign``. A request without a campaign gets only the project-wide promotions. The
    saved filter comes with each promotion (``promotion.filter``, no extra query), ordered by
    name so that responses are stable. One query.
    """
    now = now or timezone.now()
    queryset = Promotion.objects.filter(project=project, is_active=True).filter(
        Q(starts_at__isnull=True) | Q(starts_at__lte=now),
        Q(ends_at__isnull=True) | Q(ends_at__gt=now),
    )
    if campaign is None:
        queryset = queryset.filter(campaign__isnull=True)
    else:
        queryset = queryset.filter(Q(campaign__isnull=True) | Q(campaign=campaign))
    return list(queryset.select_related("filter").order_by("name", "pk"))


def promotion_status(promotion: Promotion, now=None) -> str:
    """``paused``, ``scheduled`` (starts later), ``ended`` or ``active`` at ``now``."""
    now = now or timezone.now()
    if not promotion.is_active:
        return PAUSED
    if promotion.ends_at is not None and promotion.ends_at <= now:
        return ENDED
    if promotion.starts_at is not None and promotion.starts_at > now:
        return SCHEDULED
    return ACTIVE


# --------------------------------------------------------------------------- filters


def filter_schema(project: Project, catalog: Catalog | None = None) -> dict:
    """The item and user fields that saved filters of ``project`` are checked against.

    The catalogue's schema, the same the serving code compiles request filters with: the
    project's schemas plus item attributes that arrived without a schema field.
    """
    return (catalog or catalog_for(project)).schema


def compile_for_project(project: Project, expression: str, catalog: Catalog | None = None):
    """``compile_filter(expression)`` against the project's fields. Raises FilterError."""
    return compile_filter(expression, schema=filter_schema(project, catalog))


def saved_filters_for_project(project: Project):
    """The project's saved filters with ``promotion_count`` (one query)."""
    return SavedFilter.objects.filter(project=project).annotate(promotion_count=Count("promotions"))


def saved_filter_in_project(project: Project, filter_id: int) -> SavedFilter:
    return get_object_or_404(SavedFilter, project=project, pk=filter_id)


def item_field_names(project: Project) -> list[str]:
    """Item attribute names, for the help next to the expression box."""
    return [f.name for f in filter_schema(project)["items"] if f.name != "ITEM_ID"]


@dataclass
class Preview:
    """What a filter lets through, for the live preview and the promotion list."""

    expression: str
    total: int = 0
    matched: int | None = None
    sample: list[dict] = field(default_factory=list)
    parameters: tuple[str, ...] = ()
    missing_parameters: tuple[str, ...] = ()
    error: FilterError | None = None
    pointer: str = ""
    uses_interactions: bool = False
    uses_users: bool = False
    uses_current_item: bool = False
    user_id: str = ""
    user_found: bool | None = None
    user_events: int = 0
    item_id: str = ""
    item_found: bool | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.matched is not None


def preview_filter(
    project: Project,
    expression: str,
    *,
    values: dict | None = None,
    user_id: str = "",
    item_id: str = "",
    sample_size: int = SAMPLE_SIZE,
    compiled: Filter | None = None,
    only_if_included: bool = False,
) -> Preview:
    """How many of the project's items ``expression`` allows, and a sample of them.

    ``values`` fill the ``$PARAMETERS`` (missing ones are listed, not an error);
    ``user_id`` is the user whose events and attributes Interactions and Users conditions
    test (none: a user without history); ``item_id`` the current item for CurrentItem
    conditions. Filter mistakes are returned in ``error`` with a caret ``pointer``.
    ``only_if_included``: count as a promotion does (see ``Filter.mask``).
    """
    values = {k: v for k, v in (values or {}).items() if str(v).strip() != ""}
    catalog = catalog_for(project)
    preview = Preview(expression=expression, total=int(catalog.in_catalog.sum()))
    preview.user_id, preview.item_id = user_id.strip(), item_id.strip()
    if not expression.strip():
        return preview
    try:
        flt = compiled or compile_for_project(project, expression, catalog)
    except FilterError as error:
        return _with_error(preview, error)
    preview.parameters = flt.parameters
    preview.uses_interactions = flt.uses_interactions
    preview.uses_users = flt.uses_users
    preview.uses_current_item = flt.uses_current_item
    preview.missing_parameters = tuple(p for p in flt.parameters if p not in values)
    if preview.missing_parameters:
        return preview
    interactions, user = None, None
    if preview.user_id:
        interactions, user, preview.user_events = _user_history(project, catalog, preview.user_id)
        preview.user_found = user is not None
    current_item = None
    if flt.uses_current_item:
        row = catalog.row_of(preview.item_id) if preview.item_id else None
        preview.item_found = row is not None if preview.item_id else None
        current_item = catalog.attributes_of(row) if row is not None else {}
    try:
        allowed = flt.mask(
            catalog.table,
            values=values,
            interactions=interactions,
            user=user or {},
            current_item=current_item,
            only_if_included=only_if_included,
        )
    except FilterError as error:
        return _with_error(preview, error)
    allowed &= catalog.in_catalog  # ids only seen in events are not recommendable items
    rows = np.flatnonzero(allowed)
    preview.matched = len(rows)
    preview.sample = [_sample_row(catalog, int(row)) for row in rows[:sample_size]]
    return preview


def _with_error(preview: Preview, error: FilterError) -> Preview:
    preview.error = error
    if error.position is not None:
        preview.pointer = error.pointer(preview.expression)
    return preview


def _sample_row(catalog: Catalog, row: int) -> dict:
    categories = catalog.categories_of(row)
    return {
        "item_id": catalog.external_ids[row],
        "title": catalog.titles[row],
        "category": ", ".join(categories),
    }


def _user_history(project: Project, catalog: Catalog, user_id: str):
    """(UserInteractions, attributes, event count) of a user; (None, None, 0) if unknown."""
    user = EndUser.objects.filter(project=project, external_id=user_id).first()
    if user is None:
        return None, None, 0
    events = list(
        Interaction.objects.filter(project=project, user=user)
        .order_by("-timestamp")
        .values_list("item_id", "event_type", "timestamp", "event_value")[:MAX_PREVIEW_EVENTS]
    )
    item_rows = catalog.rows_for_ids([e[0] for e in events])
    interactions = UserInteractions(
        item_rows=item_rows,
        event_types=np.array([e[1] for e in events], dtype=object),
        timestamps=np.array([e[2] for e in events], dtype=np.float64),
        event_values=np.array([np.nan if e[3] is None else e[3] for e in events], dtype=np.float64),
    )
    return interactions, dict(user.attributes or {}), len(events)


# --------------------------------------------------------------------------- promotions


def promotions_for_project(project: Project, now=None) -> list[Promotion]:
    """The project's promotions with ``status``, ``status_label``, the filter and campaign."""
    now = now or timezone.now()
    promotions = list(
        Promotion.objects.filter(project=project).select_related("filter", "campaign")
    )
    for promotion in promotions:
        promotion.status = promotion_status(promotion, now)
        promotion.status_label = STATUS_LABELS[promotion.status]
    return promotions


def promotions_by_status(promotions: list[Promotion]) -> list[tuple[str, str, list]]:
    """[(status, label, promotions)] in the page's order, empty groups left out."""
    groups = []
    for status in STATUS_ORDER:
        members = [p for p in promotions if p.status == status]
        if members:
            groups.append((status, STATUS_LABELS[status], members))
    return groups


def with_match_counts(project: Project, promotions: list[Promotion]) -> list[Promotion]:
    """Sets ``preview`` on each promotion: the items its filter and values match now.

    Interactions conditions are evaluated for a user without history (they depend on the
    requesting user when serving), CurrentItem ones for an item without attributes.
    """
    compiled: dict[int, Filter | FilterError] = {}
    for promotion in promotions:
        saved = promotion.filter
        if saved.pk not in compiled:
            try:
                compiled[saved.pk] = compile_for_project(project, saved.expression)
            except FilterError as error:
                compiled[saved.pk] = error
        flt = compiled[saved.pk]
        if isinstance(flt, FilterError):
            promotion.preview = _with_error(Preview(expression=saved.expression), flt)
            continue
        promotion.preview = preview_filter(
            project,
            saved.expression,
            values=dict(promotion.filter_values or {}),
            sample_size=0,
            compiled=flt,
            only_if_included=True,
        )
    return promotions


def promotion_in_project(project: Project, promotion_id: int) -> Promotion:
    return get_object_or_404(
        Promotion.objects.select_related("filter", "campaign"), project=project, pk=promotion_id
    )
