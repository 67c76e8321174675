"""Reads for serving and attribution: a user's recent events, item popularity, saved filters,
active promotions, and what was served joined with the events that came back.

Serving calls these on its hot path, so each is one indexed query (or a cached aggregate).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count, Max, Q
from django.utils import timezone

from datasets.models import EndUser, Interaction, Project
from feeds import history_cache
from feeds.catalog import Catalog
from feeds.models import Promotion, SavedFilter, ServedRecommendation
from models_app.serving import TtlCache
from recsite import prepared

# The newest events read per request for real-time updates, filters and exclusions.
HISTORY_LIMIT = 200
# Item popularity (for cold start and fallbacks) is recomputed at most this often.
POPULARITY_SECONDS = 300.0
# "Trending" compares the last TRENDING_DAYS of events with the whole history.
TRENDING_DAYS = 7


@dataclass(frozen=True)
class History:
    """A user's newest events, newest first (at most HISTORY_LIMIT)."""

    user_pk: int | None  # EndUser.pk, None when the user has no event
    item_ids: np.ndarray  # database item ids
    event_types: np.ndarray  # object
    timestamps: np.ndarray  # int64 epoch seconds
    event_values: np.ndarray  # float64, NaN when absent
    # What serving derives from these events per catalogue and model (feeds.recommending),
    # kept with them: a cached history (feeds.history_cache) serves many requests.
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.item_ids)


_HISTORY_SQL = (
    "SELECT e.user_id, e.item_id, e.event_type, e.timestamp, e.event_value "
    f"FROM {Interaction._meta.db_table} e "
    "WHERE e.project_id = %s AND e.user_id = ("
    f"SELECT u.id FROM {EndUser._meta.db_table} u WHERE u.project_id = %s AND u.external_id = %s"
    ") ORDER BY e.timestamp DESC LIMIT %s"
)

_EMPTY_HISTORY = History(
    None,
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=object),
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.float64),
)


def user_history(project: Project, user_external_id: str | None) -> History:
    """The user's newest events: one query on the (project, user, timestamp) index of the
    events (which also holds the columns read, so PostgreSQL answers from the index alone),
    the user's id found by a sub-query on the (project, external_id) unique index.

    Plain SQL, prepared on PostgreSQL (recsite.prepared): this runs on every request, and
    building it with the ORM cost more time than executing it. Each web process keeps what it
    read until the user's events change (feeds.history_cache).
    """
    if not user_external_id:
        return _EMPTY_HISTORY
    return history_cache.cache.get(
        project.pk, user_external_id, lambda: _read_history(project, user_external_id)
    )


def _read_history(project: Project, user_external_id: str) -> History:
    rows = prepared.fetchall(
        _HISTORY_SQL, [project.pk, project.pk, user_external_id, HISTORY_LIMIT], binary=True
    )
    if not rows:
        return _EMPTY_HISTORY
    user_pks, item_ids, event_types, timestamps, event_values = zip(*rows, strict=True)
    types = np.empty(len(rows), dtype=object)
    types[:] = [sys.intern(t) for t in event_types]  # a few words, one copy each
    return History(
        user_pk=user_pks[0],
        item_ids=np.array(item_ids, dtype=np.int64),
        event_types=types,
        timestamps=np.array(timestamps, dtype=np.int64),
        event_values=np.array([np.nan if v is None else v for v in event_values], dtype=np.float64),
    )


def user_attributes(project: Project, user_external_id: str | None) -> dict | None:
    """The user's stored attributes (for filters with Users conditions); None if unknown."""
    if not user_external_id:
        return None
    row = (
        EndUser.objects.filter(project_id=project.pk, external_id=user_external_id)
        .values_list("attributes", flat=True)
        .first()
    )
    return row if isinstance(row, dict) else None


# Saved filters and active promotions, cached per process for SERVING_CACHE_SECONDS.
_saved_filters = TtlCache()
_active_promotions = TtlCache()


def saved_filter_expression(project: Project, name: str) -> str | None:
    return _saved_filters.get(
        (project.pk, name),
        lambda: (
            SavedFilter.objects.filter(project_id=project.pk, name=name)
            .values_list("expression", flat=True)
            .first()
        ),
    )


def saved_filter_names(project: Project) -> list[str]:
    return list(SavedFilter.objects.filter(project_id=project.pk).values_list("name", flat=True))


def active_promotions(project: Project, campaign_id: int | None) -> list[Promotion]:
    """Promotions applying now to ``campaign_id``'s responses (one query, filter included)."""
    return _active_promotions.get(
        (project.pk, campaign_id), lambda: _query_active_promotions(project, campaign_id)
    )


def _query_active_promotions(project: Project, campaign_id: int | None) -> list[Promotion]:
    now = timezone.now()
    campaigns = Q(campaign__isnull=True)
    if campaign_id is not None:
        campaigns |= Q(campaign_id=campaign_id)
    return list(
        Promotion.objects.filter(project_id=project.pk, is_active=True)
        .filter(campaigns)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .select_related("filter")
        .order_by("name")
    )


# --------------------------------------------------------------------------- popularity


@dataclass(frozen=True)
class Popularity:
    """Event counts per catalogue row: overall and over the last TRENDING_DAYS of data."""

    counts: np.ndarray  # float64 per catalogue row
    recent: np.ndarray  # float64 per catalogue row
    score: np.ndarray  # float64: the cold-start ranking score (higher first)
    trending: np.ndarray  # bool: recent share well above the overall share
    computed_at: float


_popularity: dict[tuple, Popularity] = {}
_popularity_lock = threading.Lock()


def item_popularity(project: Project, catalog: Catalog) -> Popularity:
    """Popularity aligned with ``catalog``'s rows, cached for POPULARITY_SECONDS per process.

    Two grouped counts over the project's events (all of them, and the last TRENDING_DAYS
    before the newest event), so "trending" works on historical data too.
    """
    key = (project.pk, getattr(project, "created_at", None), catalog.fingerprint)
    cached = _popularity.get(key)
    if (
        cached is not None
        and len(cached.counts) == catalog.n_items
        and time.monotonic() - cached.computed_at < POPULARITY_SECONDS
    ):
        return cached
    events = Interaction.objects.filter(project_id=project.pk)
    latest = events.aggregate(latest=Max("timestamp"))["latest"]
    counts = np.zeros(catalog.n_items, dtype=np.float64)
    recent = np.zeros(catalog.n_items, dtype=np.float64)
    if latest is not None:
        for target, queryset in (
            (counts, events),
            (recent, events.filter(timestamp__gte=latest - TRENDING_DAYS * 86400)),
        ):
            grouped = list(
                queryset.order_by()
                .values("item_id")
                .annotate(n=Count("pk"))
                .values_list("item_id", "n")
            )
            if grouped:
                ids = np.fromiter((g[0] for g in grouped), dtype=np.int64, count=len(grouped))
                values = np.fromiter((g[1] for g in grouped), dtype=np.float64, count=len(grouped))
                rows = catalog.rows_for_ids(ids)
                ok = rows >= 0
                target[rows[ok]] = values[ok]
    score = np.zeros(catalog.n_items, dtype=np.float64)
    if counts.max(initial=0) > 0:
        score += counts / counts.max()
    if recent.max(initial=0) > 0:
        score += recent / recent.max()
    total, total_recent = counts.sum(), recent.sum()
    trending = np.zeros(catalog.n_items, dtype=bool)
    if total > 0 and total_recent > 0:
        share, share_recent = counts / total, recent / total_recent
        trending = (recent >= 3) & (share_recent >= 2.0 * np.maximum(share, 1e-12))
    result = Popularity(counts, recent, score, trending, time.monotonic())
    with _popularity_lock:
        for old in [k for k in _popularity if k[0] == project.pk]:
            del _popularity[old]
        _popularity[key] = result
    return result


def clear_popularity_cache() -> None:
    with _popularity_lock:
        _popularity.clear()
    _saved_filters.clear()
    _active_promotions.clear()


# --------------------------------------------------------------------------- attribution


def served_recommendation(project: Project, recommendation_id: str) -> ServedRecommendation:
    """The logged response with this id in the project (ServedRecommendation.DoesNotExist)."""
    return ServedRecommendation.objects.get(project=project, recommendation_id=recommendation_id)


def attributed_events(project: Project, recommendation_id: str) -> list[dict]:
    """The events sent back with ``recommendation_id``, oldest first, with whether the item
    was among the served ones."""
    served = served_recommendation(project, recommendation_id)
    shown = set(served.items)
    rows = (
        Interaction.objects.filter(project_id=project.pk, recommendation_id=recommendation_id)
        .order_by("timestamp", "pk")
        .values_list("user__external_id", "item__external_id", "event_type", "timestamp")
    )
    return [
        {
            "user_id": user,
            "item_id": item,
            "event_type": event_type,
            "timestamp": timestamp,
            "served": item in shown,
        }
        for user, item, event_type, timestamp in rows
    ]


def attribution_by_campaign(
    project: Project, *, since=None, click_event: str = "click"
) -> list[dict]:
    """Per campaign: responses, impressions (items shown) and the events that came back.

    An event counts for a campaign when it carries the recommendation_id of one of the
    campaign's responses and its item was among the items shown. ``events`` maps event type ->
    count, ``rates`` event type -> count / impressions; ``ctr`` is the rate of
    ``click_event``. Two queries; the join runs in Python over the responses of the period.
    """
    served = ServedRecommendation.objects.filter(project=project)
    if since is not None:
        served = served.filter(created_at__gte=since)
    responses: dict[str, tuple] = {}
    stats: dict = defaultdict(
        lambda: {"responses": 0, "impressions": 0, "events": defaultdict(int)}
    )
    names: dict = {}
    for rec_id, campaign_id, campaign_name, items in served.values_list(
        "recommendation_id", "campaign_id", "campaign__name", "items"
    ):
        shown = set(items or [])
        responses[rec_id] = (campaign_id, shown)
        names[campaign_id] = campaign_name or ""
        entry = stats[campaign_id]
        entry["responses"] += 1
        entry["impressions"] += len(shown)
    if responses:
        events = Interaction.objects.filter(project_id=project.pk).exclude(recommendation_id="")
        if since is not None:  # events cannot come back before their response was served
            events = events.filter(timestamp__gte=int(since.timestamp()) - 86400)
        for rec_id, item, event_type in events.values_list(
            "recommendation_id", "item__external_id", "event_type"
        ):
            found = responses.get(rec_id)
            if found is None or item not in found[1]:
                continue
            stats[found[0]]["events"][event_type or "event"] += 1
    result = []
    for campaign_id, entry in stats.items():
        impressions = entry["impressions"]
        events = dict(entry["events"])
        rates = {k: (v / impressions if impressions else 0.0) for k, v in events.items()}
        result.append(
            {
                "campaign_id": campaign_id,
                "campaign": names.get(campaign_id, ""),
                "responses": entry["responses"],
                "impressions": impressions,
                "events": events,
                "rates": rates,
                "ctr": rates.get(click_event, 0.0),
            }
        )
    result.sort(key=lambda r: r["campaign"])
    return result
