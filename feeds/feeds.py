"""Feeds: the builder's writes, and serving a page of a feed (docs/feeds.md).

A feed (``feeds.models.Feed``) is an ordered slot pattern over **sources**:

- ``campaign:<name>``: the campaign's deployed model through the serving pipeline
  (``recommending.campaign_ranking``: trained vector, real-time fold-in, cold start,
  reasons in words);
- ``popular``: the pipeline's popularity ranking (cold start and fallbacks);
- ``trending``: the most viewed items over the last days of data;
- ``followed``: items the users this user follows interacted with (``graphs.services``).

Serving a page: the feed's filter, ``exclude_seen`` and exclusion list make one boolean mask
over the catalogue; each source's ranked list is computed once per **scroll session** (page 1
starts one; its id travels in the cursor) and kept in a short-lived per-process cache, so
page 2 reads exactly the lists page 1 read and the engine's no-repeat guarantee holds even if
the user's events or the model change meanwhile; ``feeds.engine.feed.build_page`` mixes them.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, ProtectedError
from django.http import Http404
from django.utils import timezone

from datasets.models import EndUser, Interaction, Project
from feeds import selectors, served_log
from feeds.catalog import Catalog, catalog_for
from feeds.engine.feed import (
    Candidate,
    FeedSpec,
    InvalidCursor,
    RankedColumns,
    Slot,
    build_page,
)
from feeds.engine.feed import Promotion as FeedPromotion
from feeds.models import Experiment, Feed, FeedSlot, Promotion, SavedFilter, ServedRecommendation
from feeds.recommending import (
    InvalidRequest,
    ServingError,
    campaign_ranking,
    feed_allowed,
    promotion_order,
)
from models_app.models import Campaign
from models_app.serving import TtlCache

CAMPAIGN_PREFIX = "campaign:"
POPULAR, TRENDING, FOLLOWED = "popular", "trending", "followed"
BUILTIN_SOURCES = {
    POPULAR: "Popular items (the cold-start ranking)",
    TRENDING: "Trending now (most events over the last days)",
    FOLLOWED: "Followed users liked this",
}
MIN_COUNT, MAX_COUNT = 1, 50
MAX_SLOTS = 20
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
# How many candidates each source offers per scroll session.
SOURCE_DEPTH = 200
# Scroll sessions kept per process, and for how long after their last page.
SESSION_SECONDS = 1800.0
SESSION_CACHE_SIZE = 2048
# ... and at most this many bytes of them (allowed-item bitmaps and candidate lists), so a
# catalogue of millions of items cannot make the cache grow to gigabytes per web process.
SESSION_CACHE_BYTES = 64 * 2**20
# A new session reuses the lists of one started this recently in the same state.
LISTS_SECONDS = 60.0
MAX_PINS = 50
# Path segments of the Feeds pages (feeds/feed_urls.py) that a feed name would shadow.
RESERVED_NAMES = {"params", "users"}
MAX_EXCLUDED = 5000
_SESSION = re.compile(r"^[0-9a-f]{16}$")


# --------------------------------------------------------------------------- errors


class FeedNotFound(ServingError):
    status = 404
    code = "not_found"


class InvalidFeedCursor(ServingError):
    code = "invalid_cursor"


class InvalidFeed(ValueError):
    """The builder's input is wrong: ``errors`` maps a field to a message for humans."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


# --------------------------------------------------------------------------- sources


def followed_available() -> bool:
    """Whether the graph source exists in this installation."""
    try:
        from graphs import services as graph_services
    except ImportError:  # pragma: no cover - graphs is part of the project
        return False
    return callable(getattr(graph_services, "followed_users_liked", None))


def source_choices(project: Project) -> list[tuple[str, str]]:
    """(value, label) for the source pickers: the project's campaigns, then built-ins."""
    choices = [
        (f"{CAMPAIGN_PREFIX}{name}", f"Campaign {name}")
        for name in Campaign.objects.filter(project=project)
        .order_by("name")
        .values_list("name", flat=True)
    ]
    for key, label in BUILTIN_SOURCES.items():
        if key != FOLLOWED or followed_available():
            choices.append((key, label))
    return choices


def check_source(project: Project, source: str, where: str) -> str:
    """The source, trimmed; InvalidFeed naming what is possible otherwise."""
    source = (source or "").strip()
    if source.startswith(CAMPAIGN_PREFIX):
        name = source[len(CAMPAIGN_PREFIX) :]
        if Campaign.objects.filter(project=project, name=name).exists():
            return source
        raise InvalidFeed({where: f"There is no campaign “{name[:60]}” in this project."})
    if source in BUILTIN_SOURCES and (source != FOLLOWED or followed_available()):
        return source
    known = ", ".join(value for value, _ in source_choices(project))
    raise InvalidFeed(
        {where: f"Unknown source “{source[:60]}”; choose one of: {known or 'popular, trending'}."}
    )


def _check_count(raw, where: str) -> int:
    try:
        count = int(str(raw).strip())
    except (TypeError, ValueError):
        raise InvalidFeed(
            {where: f"The count must be a whole number from {MIN_COUNT} to {MAX_COUNT}."}
        ) from None
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise InvalidFeed(
            {where: f"The count is {count}; it must be from {MIN_COUNT} to {MAX_COUNT}."}
        )
    return count


# --------------------------------------------------------------------------- reads


def feeds_for_project(project: Project):
    return Feed.objects.filter(project=project).prefetch_related("slots").select_related("filter")


def feed_names(project: Project) -> list[str]:
    return list(Feed.objects.filter(project=project).values_list("name", flat=True))


def feed_in_project(project: Project, name: str) -> Feed:
    """The feed (slots prefetched); FeedNotFound listing the project's feeds otherwise."""
    feed = (
        Feed.objects.filter(project=project, name=name)
        .select_related("filter")
        .prefetch_related("slots")
        .first()
    )
    if feed is None:
        names = feed_names(project)
        known = f"its feeds: {', '.join(names)}" if names else "it has no feed yet"
        raise FeedNotFound(
            f"No feed “{str(name)[:60]}” in this project ({known}). Create feeds on the Feeds page."
        )
    return feed


def search_users(project: Project, query: str, limit: int = 10) -> list[str]:
    """External ids of the project's users starting with (then containing) ``query``."""
    users = EndUser.objects.filter(project=project)
    query = (query or "").strip()
    if not query:
        return list(users.order_by("external_id").values_list("external_id", flat=True)[:limit])
    found = list(
        users.filter(external_id__istartswith=query)
        .order_by("external_id")
        .values_list("external_id", flat=True)[:limit]
    )
    if len(found) < limit:
        found += [
            e
            for e in users.filter(external_id__icontains=query)
            .order_by("external_id")
            .values_list("external_id", flat=True)[: limit * 2]
            if e not in found
        ][: limit - len(found)]
    return found


def user_exists(project: Project, user_id: str) -> bool:
    return bool(user_id) and EndUser.objects.filter(project=project, external_id=user_id).exists()


def user_recent_history(project: Project, user_id: str, limit: int = 20) -> list[dict]:
    """The user's newest events with item titles and categories (one query + the catalogue)."""
    if not user_id:
        return []
    events = list(
        Interaction.objects.filter(project=project, user__external_id=user_id)
        .order_by("-timestamp")
        .values_list("item_id", "event_type", "timestamp")[:limit]
    )
    if not events:
        return []
    catalog = catalog_for(project)
    rows = catalog.rows_for_ids([e[0] for e in events])
    out = []
    for (_, event_type, stamp), row in zip(events, rows.tolist(), strict=True):
        out.append(
            {
                "item_id": catalog.external_ids[row] if row >= 0 else "?",
                "title": catalog.titles[row] if row >= 0 else "(not in the catalogue)",
                "category": ", ".join(catalog.categories_of(row)) if row >= 0 else "",
                "event_type": event_type,
                "when": datetime.fromtimestamp(stamp, tz=UTC),
            }
        )
    return out


def user_segment(project: Project, user_id: str) -> str | None:
    attributes = selectors.user_attributes(project, user_id) or {}
    for key, value in attributes.items():
        if str(key).upper() == "SEGMENT":
            return str(value)
    return None


def item_details(project: Project, item_ids: list[str]) -> dict[str, dict]:
    """Title and category of each item id (from the cached catalogue: no query)."""
    catalog = catalog_for(project)
    out = {}
    for item_id in item_ids:
        row = catalog.row_of(item_id)
        if row is not None:
            out[item_id] = {
                "title": catalog.titles[row],
                "category": ", ".join(catalog.categories_of(row)),
            }
    return out


# --------------------------------------------------------------------------- writes


def _touch(feed: Feed) -> None:
    """Mark the feed edited (cursors of readers scrolling it start again)."""
    Feed.objects.filter(pk=feed.pk).update(updated_at=timezone.now())


def check_name(project: Project, name: str, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,60}", name):
        raise InvalidFeed(
            {
                "name": "A feed name is 1 to 60 letters, digits, hyphens or underscores, "
                "e.g. home-feed; it is the {name} of /api/v1/feeds/{name}."
            }
        )
    if name in RESERVED_NAMES:
        raise InvalidFeed(
            {"name": f"“{name}” is reserved by the Feeds pages; choose another name."}
        )
    clash = Feed.objects.filter(project=project, name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise InvalidFeed({"name": f"A feed called “{name}” already exists in this project."})
    return name


def create_feed(
    *,
    project: Project,
    name: str,
    description: str = "",
    slots: list[tuple[str, int]] | None = None,
    fallback_source: str = POPULAR,
    user=None,
) -> Feed:
    """A new feed. ``slots`` (source, count) pairs; at least one is needed."""
    name = check_name(project, name)
    slots = list(slots or [])
    if not slots:
        raise InvalidFeed({"slots": "a feed needs at least one slot"})
    if len(slots) > MAX_SLOTS:
        raise InvalidFeed({"slots": f"A feed has at most {MAX_SLOTS} slots."})
    clean = [
        (check_source(project, s, f"slot {n}"), _check_count(c, f"slot {n}"))
        for n, (s, c) in enumerate(slots, start=1)
    ]
    fallback = check_source(project, fallback_source, "fallback_source") if fallback_source else ""
    with transaction.atomic():
        feed = Feed.objects.create(
            project=project,
            name=name,
            description=(description or "").strip()[:200],
            fallback_source=fallback,
            created_by=user,
        )
        FeedSlot.objects.bulk_create(
            FeedSlot(feed=feed, position=n, source=s, count=c)
            for n, (s, c) in enumerate(clean, start=1)
        )
    return feed


def parse_excluded(project: Project, text: str) -> list[str]:
    """Item ids, one per line; InvalidFeed naming the ids the catalogue does not have."""
    ids = list(dict.fromkeys(line.strip() for line in (text or "").splitlines() if line.strip()))
    if len(ids) > MAX_EXCLUDED:
        raise InvalidFeed({"excluded_items": f"At most {MAX_EXCLUDED} excluded items."})
    catalog = catalog_for(project)
    unknown = [i for i in ids if catalog.row_of(i) is None]
    if unknown:
        shown = ", ".join(unknown[:10]) + (
            f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        )
        raise InvalidFeed(
            {
                "excluded_items": f"Unknown item id{'s' if len(unknown) > 1 else ''}: {shown}. "
                "Item ids are case-sensitive; check them on the Data page."
            }
        )
    return ids


def parse_pinned(project: Project, text: str) -> dict[str, str]:
    """Lines ``position item-id`` (or ``position: item-id``) -> {"position": item id}."""
    pins: dict[str, str] = {}
    seen: dict[str, int] = {}
    catalog = catalog_for(project)
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = re.fullmatch(r"(\d+)\s*[:=,\s]\s*(\S+)", line)
        if not match:
            raise InvalidFeed(
                {
                    "pinned_items": f"Line {number} (“{line[:60]}”) is not “position item-id”, "
                    "e.g. 1 welcome-pack."
                }
            )
        position, item_id = int(match.group(1)), match.group(2)
        if position < 1:
            raise InvalidFeed({"pinned_items": f"Line {number}: positions start at 1."})
        if str(position) in pins:
            raise InvalidFeed(
                {"pinned_items": f"Line {number}: position {position} is pinned twice."}
            )
        if item_id in seen:
            raise InvalidFeed(
                {
                    "pinned_items": f"Line {number}: item {item_id} is already pinned at "
                    f"position {seen[item_id]}; an item appears once in a feed."
                }
            )
        if catalog.row_of(item_id) is None:
            raise InvalidFeed({"pinned_items": f"Line {number}: unknown item id “{item_id[:60]}”."})
        seen[item_id] = position
        pins[str(position)] = item_id
    if len(pins) > MAX_PINS:
        raise InvalidFeed({"pinned_items": f"At most {MAX_PINS} pinned items."})
    return dict(sorted(pins.items(), key=lambda kv: int(kv[0])))


def pinned_text(feed: Feed) -> str:
    return "\n".join(
        f"{p} {i}" for p, i in sorted(feed.pinned_items.items(), key=lambda kv: int(kv[0]))
    )


def update_feed(
    *,
    feed: Feed,
    description: str = "",
    fallback_source: str = "",
    saved_filter: SavedFilter | None = None,
    filter_values: dict | None = None,
    exclude_seen: bool = True,
    excluded_text: str = "",
    pinned: str = "",
) -> Feed:
    """Save the feed's settings; InvalidFeed with every problem found."""
    from feeds.services import InvalidInput, _clean_values

    project = feed.project
    errors: dict[str, str] = {}
    values: dict = {}
    fallback = ""
    if fallback_source:
        try:
            fallback = check_source(project, fallback_source, "fallback_source")
        except InvalidFeed as exc:
            errors.update(exc.errors)
    if saved_filter is not None:
        if saved_filter.project_id != project.pk:
            errors["filter"] = "That filter belongs to another project."
        else:
            try:
                values = _clean_values(project, saved_filter, filter_values or {}, errors)
            except InvalidInput as exc:  # pragma: no cover - _clean_values collects errors
                errors.update(exc.errors)
    for key, parse, text in (
        ("excluded_items", parse_excluded, excluded_text),
        ("pinned_items", parse_pinned, pinned),
    ):
        try:
            parsed = parse(project, text)
        except InvalidFeed as exc:
            errors.update(exc.errors)
            continue
        if key == "excluded_items":
            excluded = parsed
        else:
            pins = parsed
    if errors:
        raise InvalidFeed(errors)
    feed.description = (description or "").strip()[:200]
    feed.fallback_source = fallback
    feed.filter = saved_filter
    feed.filter_values = values
    feed.exclude_seen = bool(exclude_seen)
    feed.excluded_items = excluded
    feed.pinned_items = pins
    feed.save()
    return feed


def add_slot(*, feed: Feed, source: str, count=1) -> FeedSlot:
    slots = list(feed.slots.all())
    if len(slots) >= MAX_SLOTS:
        raise InvalidFeed({"slots": f"A feed has at most {MAX_SLOTS} slots."})
    source = check_source(feed.project, source, "new slot")
    count = _check_count(count, "new slot")
    position = max((s.position for s in slots), default=0) + 1
    slot = FeedSlot.objects.create(feed=feed, position=position, source=source, count=count)
    _touch(feed)
    return slot


def update_slot(*, slot: FeedSlot, source: str, count) -> FeedSlot:
    where = f"slot {slot_number(slot)}"
    slot.source = check_source(slot.feed.project, source, where)
    slot.count = _check_count(count, where)
    slot.save(update_fields=["source", "count"])
    _touch(slot.feed)
    return slot


def slot_number(slot: FeedSlot) -> int:
    return FeedSlot.objects.filter(feed_id=slot.feed_id, position__lt=slot.position).count() + 1


def remove_slot(*, slot: FeedSlot) -> None:
    if FeedSlot.objects.filter(feed_id=slot.feed_id).count() <= 1:
        raise InvalidFeed(
            {"slots": "a feed needs at least one slot: add another slot before removing this one."}
        )
    slot.delete()
    _renumber(slot.feed)


def move_slot(*, slot: FeedSlot, offset: int) -> None:
    """Move a slot one place up (-1) or down (+1); no-op at either end."""
    slots = list(FeedSlot.objects.filter(feed_id=slot.feed_id).order_by("position"))
    index = next(i for i, s in enumerate(slots) if s.pk == slot.pk)
    target = index + (1 if offset > 0 else -1)
    if not 0 <= target < len(slots):
        return
    slots[index], slots[target] = slots[target], slots[index]
    _renumber(slot.feed, slots)


def _renumber(feed: Feed, slots: list[FeedSlot] | None = None) -> None:
    slots = slots if slots is not None else list(feed.slots.order_by("position"))
    with transaction.atomic():
        # Two passes so the unique (feed, position) constraint holds at every step.
        for n, s in enumerate(slots, start=1):
            FeedSlot.objects.filter(pk=s.pk).update(position=1000 + n)
        for n, s in enumerate(slots, start=1):
            FeedSlot.objects.filter(pk=s.pk).update(position=n)
    _touch(feed)


def delete_feed(*, feed: Feed) -> None:
    try:
        feed.delete()
    except ProtectedError as exc:
        users = sorted({str(v) for v in exc.protected_objects})
        raise InvalidFeed(
            {
                "feed": f"The feed “{feed.name}” is a variant of experiment "
                f"{', '.join(users)}; stop and delete the experiment (or change its variant) "
                "first."
            }
        ) from None


# --------------------------------------------------------------------------- serving


@dataclass
class FeedResult:
    """A page of a feed, as the API returns it (``as_dict``)."""

    recommendation_id: str
    feed: str
    items: list[dict]
    next_cursor: str | None
    warnings: list[dict]
    variant: str | None = None
    sources_used: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {
            "recommendation_id": self.recommendation_id,
            "feed": self.feed,
            "items": self.items,
            "next_cursor": self.next_cursor,
            "warnings": self.warnings,
        }
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass
class _Session:
    # Built-in sources' lists share the per-process rankings' Candidates; campaign and
    # followed sources, and promotions, are RankedColumns: plain lists of ids, scores and
    # reasons, so thousands of cached sessions hold no object per candidate for the garbage
    # collector to walk (a full collection over 2,000 sessions of Candidate lists stalled a
    # worker ~150 ms), and a page makes Candidates only for the items it reads.
    lists: dict[str, list[Candidate] | RankedColumns]
    allowed_bits: np.ndarray  # np.packbits of the allowed-rows mask: 1 bit per catalogue item
    warnings: list[dict]
    campaign_id: int | None
    version_id: int | None
    used: float
    promotions: tuple[FeedPromotion, ...] = ()

    def allows(self, row: int) -> bool:
        return bool((self.allowed_bits[row >> 3] >> (7 - (row & 7))) & 1)

    @property
    def nbytes(self) -> int:
        """About what the session holds in memory (a candidate costs ~150 bytes)."""
        candidates = sum(len(v) for v in self.lists.values())
        candidates += sum(len(p.candidates) for p in self.promotions)
        return self.allowed_bits.nbytes + 150 * candidates + 500


_sessions: OrderedDict = OrderedDict()
_sessions_lock = threading.Lock()
_sessions_bytes = 0


def clear_sessions() -> None:
    global _sessions_bytes
    with _sessions_lock:
        _sessions.clear()
        _sessions_bytes = 0
    clear_caches()


def _session_get(key, max_age: float = SESSION_SECONDS) -> _Session | None:
    with _sessions_lock:
        found = _sessions.get(key)
        if found is None:
            return None
        if time.monotonic() - found.used > max_age:
            _session_drop(key)
            return None
        if max_age == SESSION_SECONDS:
            found.used = time.monotonic()
        _sessions.move_to_end(key)
        return found


def _session_put(key, session: _Session) -> None:
    global _sessions_bytes
    with _sessions_lock:
        if key in _sessions:
            _session_drop(key)
        _sessions[key] = session
        _sessions_bytes += session.nbytes
        while len(_sessions) > 1 and (
            len(_sessions) > SESSION_CACHE_SIZE or _sessions_bytes > SESSION_CACHE_BYTES
        ):
            _session_drop(next(iter(_sessions)))


def _session_drop(key) -> None:
    """Forget one session; the caller holds ``_sessions_lock``."""
    global _sessions_bytes
    _sessions_bytes -= _sessions.pop(key).nbytes


def check_page_size(raw) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise InvalidRequest(
            f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE}; got {str(raw)[:40]!r}.",
            field="page_size",
        ) from None
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise InvalidRequest(
            f"page_size must be from 1 to {MAX_PAGE_SIZE}; got {value}.", field="page_size"
        )
    return value


# Serving answers kept per process for SERVING_CACHE_SECONDS (models_app.serving.TtlCache),
# like the campaign and promotion lookups of /recommendations: whether a name is an
# experiment's, the feed called so (slots and filter read with it), the feed's campaigns and
# the promotions' state. An edit made elsewhere reaches this process within that time.
_experiment_names = TtlCache()
_feeds_by_name = TtlCache()
_feed_campaigns = TtlCache()
_promotion_states = TtlCache()


def clear_caches() -> None:
    """Forget the cached lookups and built-in source rankings (tests)."""
    for cache in (_experiment_names, _feeds_by_name, _feed_campaigns, _promotion_states):
        cache.clear()
    with _rankings_lock:
        _rankings.clear()


def _is_experiment_name(project: Project, name: str) -> bool:
    return _experiment_names.get(
        (project.pk, name),
        lambda: Experiment.objects.filter(project_id=project.pk, name=name).exists(),
    )


def _feed_by_name(project: Project, name: str) -> Feed | None:
    def load():
        feed = (
            Feed.objects.filter(project_id=project.pk, name=name)
            .select_related("filter")
            .prefetch_related("slots")
            .first()
        )
        if feed is not None:
            feed.project = project
        return feed

    return _feeds_by_name.get((project.pk, name), load)


def resolve_feed(project: Project, name: str, user_id: str | None) -> tuple[Feed, str | None]:
    """The feed to serve for ``name`` and the experiment variant, if any.

    Experiments (``feeds.experiments.resolve_feed``) may assign this user another feed of the
    experiment; without that module, the feed called ``name``. A name that is no experiment's
    is answered from the per-process cache (no query)."""
    try:
        from feeds import experiments
    except ImportError:  # the experiments module is optional
        experiments = None
    resolver = getattr(experiments, "resolve_feed", None)
    if resolver is not None:
        if not _is_experiment_name(project, name):
            feed = _feed_by_name(project, name)
            if feed is not None:
                return feed, None
        try:
            feed, variant = resolver(project, name, user_id or "")
        except (LookupError, Http404) as exc:
            raise FeedNotFound(getattr(exc, "message", None) or str(exc)) from None
        return feed, variant or None
    feed = _feed_by_name(project, name)
    if feed is None:
        feed = feed_in_project(project, name)  # raises FeedNotFound naming the feeds
    return feed, None


def _split_cursor(cursor: str) -> tuple[str, str]:
    session, dot, engine_cursor = cursor.partition(".")
    if not dot or not _SESSION.match(session) or not engine_cursor:
        raise InvalidFeedCursor(
            "The cursor is not one this server issued (it was altered or truncated); pass "
            "next_cursor exactly as returned, or leave cursor out to start from page 1.",
            field="cursor",
        )
    return session, engine_cursor


# Built-in sources' rankings, per process and project: the catalogue rows best first and the
# candidates of the first RANKING_CANDIDATES of them, computed once per popularity snapshot
# (selectors.item_popularity, refreshed every few minutes), not per request.
RANKING_CANDIDATES = 5000
_rankings: dict = {}
_rankings_lock = threading.Lock()


def _ranking(catalog: Catalog, popularity, source: str) -> tuple[np.ndarray, list[Candidate]]:
    key = (catalog.project_id, source)
    cached = _rankings.get(key)
    if cached is not None and cached[0] is popularity and cached[1] is catalog:
        return cached[2], cached[3]
    if source == TRENDING:
        score = np.where(popularity.recent > 0, popularity.recent, -np.inf)
    else:
        score = popularity.score.astype(np.float64, copy=True)
    order = np.argsort(-score, kind="stable")
    order = order[np.isfinite(score[order])]
    candidates = _candidates(catalog, popularity, source, score, order[:RANKING_CANDIDATES])
    with _rankings_lock:
        _rankings[key] = (popularity, catalog, order, candidates)
    return order, candidates


def _candidates(catalog, popularity, source, score, rows: np.ndarray) -> list[Candidate]:
    external = catalog.external_ids
    values = score[rows].tolist()
    if source == TRENDING:
        return [
            Candidate(external[r], v, "trending now")
            for r, v in zip(rows.tolist(), values, strict=True)
        ]
    trending = popularity.trending
    return [
        Candidate(external[r], v, "trending now" if trending[r] else "popular")
        for r, v in zip(rows.tolist(), values, strict=True)
    ]


def _builtin(catalog: Catalog, popularity, source: str, allowed: np.ndarray, k: int):
    """The ``k`` best of the built-in source's ranking among ``allowed``."""
    order, candidates = _ranking(catalog, popularity, source)
    positions = np.flatnonzero(allowed[order])[:k]
    if len(positions) == 0 or positions[-1] < len(candidates):
        return [candidates[p] for p in positions.tolist()]
    if source == TRENDING:
        score = np.where(popularity.recent > 0, popularity.recent, -np.inf)
    else:
        score = popularity.score
    return _candidates(catalog, popularity, source, score, order[positions])


def _campaign_warning(source: str, exc: Exception) -> str:
    name = source[len(CAMPAIGN_PREFIX) :]
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, Http404):
        message = f"the campaign “{name}” no longer exists (it was deleted or renamed)"
    return f"Source {source}: {message.rstrip('.')}; its slots are filled from the fallback."


def _campaigns(project: Project, sources: list[str]) -> dict[str, Campaign]:
    wanted = tuple(s[len(CAMPAIGN_PREFIX) :] for s in sources if s.startswith(CAMPAIGN_PREFIX))
    if not wanted:
        return {}
    return _feed_campaigns.get(
        (project.pk, wanted),
        lambda: {c.name: c for c in Campaign.objects.filter(project=project, name__in=wanted)},
    )


def _promotions_state(project: Project) -> tuple:
    def load():
        row = Promotion.objects.filter(project_id=project.pk).aggregate(
            latest=Max("updated_at"), n=Count("pk")
        )
        return (row["latest"], row["n"])

    return _promotion_states.get(project.pk, load)


def _lists_key(project, feed, user_id, history, campaigns, catalog) -> tuple:
    """What a session's lists depend on: the feed, the user's events, the deployed versions,
    the catalogue and the promotions. Equal keys give equal lists."""
    newest = (
        (len(history), int(history.timestamps[0]), int(history.item_ids[0])) if len(history) else ()
    )
    versions = tuple(sorted((c.name, c.version_id) for c in campaigns.values()))
    return (
        "lists",
        project.pk,
        feed.pk,
        feed.updated_at,
        user_id or "",
        newest,
        versions,
        catalog.fingerprint,
        _promotions_state(project),
    )


def _compute_session(
    project: Project,
    feed: Feed,
    sources: list[str],
    user_id: str | None,
    history,
    catalog,
    campaigns: dict[str, Campaign],
) -> _Session:
    expression = feed.filter.expression if feed.filter_id else None
    allowed = feed_allowed(
        project,
        catalog,
        history,
        user_id=user_id,
        filter_expression=expression,
        filter_values=feed.filter_values,
    )
    excluded_rows = catalog.rows_of(feed.excluded_items or [])
    allowed[excluded_rows[excluded_rows >= 0]] = False
    if feed.exclude_seen and len(history):
        seen = catalog.rows_for_ids(history.item_ids)
        allowed[seen[seen >= 0]] = False
    lists: dict[str, list[Candidate]] = {}
    warnings: list[dict] = []
    campaign_id = version_id = None
    relevance = None  # the first campaign source's scores: the order of promoted items
    popularity = None
    for source in sources:
        if source.startswith(CAMPAIGN_PREFIX):
            name = source[len(CAMPAIGN_PREFIX) :]
            try:
                if name not in campaigns:
                    raise Http404(name)
                ranking = campaign_ranking(
                    project,
                    campaigns[name],
                    user_id=user_id,
                    allowed=allowed,
                    k=SOURCE_DEPTH,
                    history=history,
                )
            except (ServingError, Http404) as exc:
                warnings.append(
                    {
                        "code": "source-unavailable",
                        "source": source,
                        "message": _campaign_warning(source, exc),
                    }
                )
                continue
            if campaign_id is None:
                campaign_id, version_id = ranking.campaign.pk, ranking.version_id
                relevance = ranking.relevance
            names = catalog.external_ids[np.asarray(ranking.rows, dtype=np.int64)].tolist()
            lists[source] = RankedColumns(names, list(ranking.scores), list(ranking.reasons))
        elif source in (POPULAR, TRENDING):
            if popularity is None:
                popularity = selectors.item_popularity(project, catalog)
            lists[source] = _builtin(catalog, popularity, source, allowed, SOURCE_DEPTH)
        elif source == FOLLOWED and followed_available():
            from graphs.services import followed_users_liked

            ranked = followed_users_liked(project, user_id or "", SOURCE_DEPTH) if user_id else []
            rows = catalog.rows_of([r[0] for r in ranked])
            kept = [
                (item, float(score), reason)
                for (item, score, reason), row in zip(ranked, rows.tolist(), strict=True)
                if row >= 0 and allowed[row]
            ]
            columns = [list(column) for column in zip(*kept, strict=True)] or [[], [], []]
            lists[source] = RankedColumns(*columns)
        else:
            warnings.append(
                {
                    "code": "source-unavailable",
                    "source": source,
                    "message": f"Source {source} is not available in this installation; its "
                    "slots are filled from the fallback.",
                }
            )
    promotions = _promotions(
        project, catalog, history, user_id, allowed, campaigns, warnings, relevance
    )
    return _Session(
        lists,
        np.packbits(allowed),
        warnings,
        campaign_id,
        version_id,
        time.monotonic(),
        promotions,
    )


def _active_promotions(project: Project, campaigns: dict[str, Campaign]) -> list[Promotion]:
    """The project's active promotions for every campaign and for the feed's campaigns, by
    name (the per-process cached answers of ``selectors.active_promotions``)."""
    found: dict[int, Promotion] = {}
    for campaign_id in [None] + sorted(c.pk for c in campaigns.values()):
        for promo in selectors.active_promotions(project, campaign_id):
            found.setdefault(promo.pk, promo)
    return sorted(found.values(), key=lambda p: (p.name, p.pk))


def _promotions(
    project, catalog, history, user_id, allowed, campaigns, warnings, relevance=None
) -> tuple:
    """The active promotions of the project (those for every campaign, and those of the
    feed's campaigns) as engine promotions: their filter's matches among ``allowed``, in this
    user's relevance order (``relevance``: the feed's first campaign's scores), then by
    popularity (items the model does not know; every item for a cold user). Frozen for the
    scroll session, like the sources."""
    active = _active_promotions(project, campaigns)
    if not active:
        return ()
    popularity = selectors.item_popularity(project, catalog)
    out = []
    for promo in active:
        try:
            mask = feed_allowed(
                project,
                catalog,
                history,
                user_id=user_id,
                filter_expression=promo.filter.expression,
                filter_values=promo.filter_values or {},
                only_if_included=True,
            )
        except ServingError as exc:
            warnings.append(
                {
                    "code": "promotion-skipped",
                    "source": None,
                    "message": f"Promotion “{promo.name}” is skipped: {exc.message}",
                }
            )
            continue
        mask &= allowed
        if not mask.any():
            continue
        rows = promotion_order(mask, relevance, popularity.score, SOURCE_DEPTH)
        names = catalog.external_ids[rows].tolist()
        positions = [p for p in (promo.positions or []) if isinstance(p, int) and p >= 1]
        try:
            out.append(
                FeedPromotion(
                    promo.name,
                    candidates=RankedColumns(names),
                    share=None if positions else float(promo.share),
                    positions=positions or None,
                    reason=promo.reason or f"promoted: {promo.name}",
                )
            )
        except ValueError:
            continue
    return tuple(out)


def _slots(feed: Feed) -> list[Slot]:
    slots = [Slot(s.source, s.count) for s in feed.slots.all()]
    if not slots:
        raise FeedNotFound(
            f"The feed “{feed.name}” has no slot (a feed needs at least one slot); add one on "
            "the Feeds page.",
            field="name",
        )
    return slots


def _sources(feed: Feed, slots: list[Slot]) -> list[str]:
    sources = list(dict.fromkeys(s.source for s in slots))
    if feed.fallback_source and feed.fallback_source not in sources:
        sources.append(feed.fallback_source)
    return sources


def serve(
    project: Project,
    name: str,
    *,
    user_id: str | None,
    cursor: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    log: bool = True,
    feed: Feed | None = None,
) -> FeedResult:
    """One page of the feed ``name`` for ``user_id`` (the feed endpoint and the preview).

    Raises FeedNotFound (404), InvalidFeedCursor (400), InvalidFilter (400: the feed's filter
    no longer fits the catalogue) or InvalidRequest."""
    variant = None
    if feed is None:
        feed, variant = resolve_feed(project, name, user_id)
    if cursor:
        session_id, engine_cursor = _split_cursor(cursor)
    else:
        session_id, engine_cursor = uuid.uuid4().hex[:16], None
    catalog = catalog_for(project)
    history = selectors.user_history(project, user_id)
    key = (project.pk, feed.pk, feed.updated_at, user_id or "", session_id)
    slots = _slots(feed)
    session = _session_get(key)
    if session is None:
        # A new scroll session: its lists are those of a recent one in the same state (same
        # events, versions, feed and promotions), else computed now.
        sources = _sources(feed, slots)
        campaigns = _campaigns(project, sources)
        lists_key = _lists_key(project, feed, user_id, history, campaigns, catalog)
        session = _session_get(lists_key, LISTS_SECONDS)
        if session is None:
            session = _compute_session(project, feed, sources, user_id, history, catalog, campaigns)
            _session_put(lists_key, session)
        session = replace(session, used=time.monotonic())  # its own age
        _session_put(key, session)
    # Items seen since the session began are left out too (exclusions may change per page).
    exclude = set(feed.excluded_items or ())
    if feed.exclude_seen and len(history):
        rows = catalog.rows_for_ids(history.item_ids)
        exclude.update(catalog.external_ids[rows[rows >= 0]].tolist())
    row_of = catalog.row_of

    def allowed(item_id) -> bool:
        row = row_of(item_id)
        return row is not None and session.allows(row)

    pinned = {int(p): i for p, i in (feed.pinned_items or {}).items() if str(p).isdigit()}
    spec = FeedSpec(
        slots=slots,
        fallback=feed.fallback_source or None,
        pinned=pinned,
        promotions=session.promotions,
        exclude=exclude,
        # The session's lists and promotions hold only rows of ``allowed_rows`` already: the
        # hook is needed for pinned items only (and costs a lookup per candidate).
        allowed=allowed if pinned else None,
    )
    try:
        page = build_page(
            spec,
            session.lists,
            page_size,
            engine_cursor,
            secret_key=settings.SECRET_KEY,
            context=f"{project.pk}:{feed.pk}:{user_id or ''}:{session_id}",
        )
    except InvalidCursor as exc:
        raise InvalidFeedCursor(
            f"The cursor cannot be used: {exc} Leave cursor out to start from page 1.",
            field="cursor",
        ) from None
    warned = {w["source"] for w in session.warnings}
    warnings = list(session.warnings) + [
        {"code": w.code, "source": w.source, "message": w.message}
        for w in page.warnings
        if not (w.code == "source-missing" and w.source in warned)
    ]
    items = [
        {
            "item_id": item.item_id,
            "score": None if item.score is None else round(float(item.score), 6),
            "source": item.source,
            "reason": item.reason,
            "rank": item.rank,
        }
        for item in page.items
    ]
    recommendation_id = uuid.uuid4().hex
    if log:
        served_log.write(  # buffered: written off the request path (feeds.served_log)
            project_id=project.pk,
            recommendation_id=recommendation_id,
            kind=ServedRecommendation.Kind.FEED,
            user_external_id=user_id or "",
            campaign_id=session.campaign_id,
            version_id=session.version_id,
            items=[i["item_id"] for i in items],
            sources=[i["source"] for i in items],
            variant=variant or "",
        )
    next_cursor = f"{session_id}.{page.next_cursor}" if page.next_cursor else None
    return FeedResult(recommendation_id, feed.name, items, next_cursor, warnings, variant)
