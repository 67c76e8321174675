"""The serving pipeline behind /api/v1/recommendations, /items/{id}/related and /rank.

One request, in order (docs/serving.md tells the story for users):

1. the campaign and the model version it serves (``models_app.serving``, cached per process),
   the project's catalogue (``feeds.catalog``, cached) and the alignment of the model's item
   columns with the catalogue's rows (cached per catalogue and version);
2. the user's newest events (one indexed query, at most ``selectors.HISTORY_LIMIT``);
3. a score per item: the trained user vector when the model knows the user and nothing
   happened since training; otherwise the events are folded in (ALS recipes) or the items
   similar to them are blended (item-based recipes); without any event: cold start (popular
   and trending items, within the ``context`` category when given);
4. the filter (saved or ad hoc, compiled once per expression) and the exclusion of items the
   user already interacted with, as one boolean mask over the catalogue;
5. the relevance list, exploration slots ("new arrival"), the fallback list (popular items)
   and the active promotions are placed with the feed engine's rules (``_assemble``: the
   engine's answer for a one-slot feed, without building one), promotions on their share or
   positions, without duplicates;
6. reasons in words for the items shown, and one ``ServedRecommendation`` row, written off the
   request path (``feeds.served_log``).

Everything per item is numpy over arrays: no per-item query, no logging on the hot path.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from django.db import connection, transaction

from datasets.models import Project
from feeds import selectors, served_log
from feeds.catalog import Catalog, catalog_for
from feeds.engine.feed import Candidate
from feeds.engine.feed import Promotion as FeedPromotion
from feeds.engine.filters import Filter, FilterError, UserInteractions, compile_filter
from feeds.models import ServedRecommendation
from models_app.models import Campaign, ModelVersion
from models_app.serving import (
    CampaignNotFound,
    ServedModel,
    ServingUnavailable,
    campaign_for,
    served_model,
)

DEFAULT_RESULTS = 25
MAX_RESULTS = 500
MAX_RANK_ITEMS = 500
# Distinct recent items blended for item-based recipes, and compared for "because you ...".
BLEND_HISTORY = 20
REASON_HISTORY = 10
# Weight of the "session" (events since the version was trained) against the user's whole
# recent history: what the user does now says a lot about what they want next.
SESSION_WEIGHT = 1.0
# Compiled filters kept per process (by project and expression text).
FILTER_CACHE_SIZE = 512

MODEL, EXPLORATION, POPULAR, PROMOTION, CATEGORY = (
    "model",
    "exploration",
    "popular",
    "promotion",
    "category",
)
GLOBAL_RECIPES = {"popularity-count": "popular", "trending-now": "trending now"}
PURCHASE_WORDS = ("purchase", "buy", "bought", "order", "checkout", "transaction")
CART_WORDS = ("cart", "basket")


# --------------------------------------------------------------------------- errors


class ServingError(Exception):
    """A request serving cannot answer; ``status`` and ``code`` for the API's error body."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, detail: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail


class InvalidRequest(ServingError):
    pass


class InvalidFilter(ServingError):
    """The filter or its values cannot be used; ``detail`` is ``FilterError.to_dict()``."""

    code = "invalid_filter"


class ItemNotFound(ServingError):
    status = 404
    code = "not_found"


class NotDeployed(ServingError):
    """The campaign exists but serves no model version yet."""

    status = 409
    code = "not_deployed"


class Unavailable(ServingError):
    """Nothing can be served: the version could not be loaded and none was before."""

    status = 503
    code = "unavailable"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RequestPromotion:
    """A promotion sent with one request (Personalize's ``promotions``, feeds/personalize):
    items matching ``expression`` (with ``filter_values``) get ``share`` of the positions,
    besides the project's active promotions. Unlike a saved promotion, a filter that does not
    fit is the request's error (InvalidFilter), not skipped."""

    name: str
    expression: str
    filter_values: dict | None = None
    share: float = 0.2
    reason: str = ""
    positions: tuple = ()


@dataclass
class Served:
    """A response: what the API returns, plus what was logged for attribution."""

    recommendation_id: str
    campaign: str
    version: int
    items: list[dict]
    extra: dict = field(default_factory=dict)
    # Item id -> the name of the promotion that placed it (reasons may be shared); not in the
    # API's JSON, read by the Personalize-compatible API (promotionName).
    promoted_by: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "recommendation_id": self.recommendation_id,
            "campaign": self.campaign,
            "version": self.version,
            "items": self.items,
            **self.extra,
        }


# --------------------------------------------------------------------------- per-process caches


@dataclass(frozen=True, eq=False)
class Alignment:
    """Model item columns <-> catalogue rows, for one (catalogue, model version)."""

    col_to_row: np.ndarray  # -1: the model's item is no longer in the catalogue
    row_to_col: np.ndarray  # -1: the catalogue's item is unknown to the model
    trained_at: float  # epoch seconds the version was created: events after it are "new"
    unit_factors: np.ndarray | None = None  # ALS item factors scaled to length 1 (reasons)
    all_known: bool = True  # every model column's item is in the catalogue

    def allowed_cols(self, allowed: np.ndarray) -> np.ndarray:
        """``allowed`` (over catalogue rows) per model column; False for a column whose item
        left the catalogue."""
        if self.all_known:
            return allowed[self.col_to_row]
        return _pad(allowed)[self.col_to_row]

    def relevance(self, cols: np.ndarray, scores: np.ndarray, n_items: int) -> np.ndarray:
        """The ``scores`` of model columns ``cols`` (whose items are in the catalogue) over
        the catalogue's rows; -inf for every other row."""
        relevance = np.full(n_items, -np.inf, dtype=np.float32)
        relevance[self.col_to_row[cols]] = scores
        return relevance


_alignments: dict[tuple, tuple[Catalog, Alignment]] = {}
_filters: OrderedDict = OrderedDict()
_lock = threading.Lock()


def _alignment(catalog: Catalog, model: ServedModel) -> Alignment:
    key = (catalog.project_id, model.version_id)
    cached = _alignments.get(key)
    if cached is not None and cached[0] is catalog:
        return cached[1]
    col_to_row = catalog.rows_for_ids(model.item_ids)
    row_to_col = np.full(catalog.n_items, -1, dtype=np.int64)
    known = col_to_row >= 0
    row_to_col[col_to_row[known]] = np.flatnonzero(known)
    created = (
        ModelVersion.objects.filter(pk=model.version_id)
        .values_list("created_at", flat=True)
        .first()
    )
    trained_at = created.timestamp() if created is not None else 0.0
    factors = getattr(model.recipe, "item_factors_", None)
    unit = None
    if factors is not None:
        norms = np.linalg.norm(factors, axis=1)
        norms[norms == 0] = 1.0
        unit = (factors / norms[:, None]).astype(np.float32)
    alignment = Alignment(col_to_row, row_to_col, trained_at, unit, bool(known.all()))
    with _lock:
        for old in [k for k in _alignments if k[0] == catalog.project_id and k != key]:
            if _alignments[old][0] is not catalog:
                del _alignments[old]
        _alignments[key] = (catalog, alignment)
    return alignment


def _compiled(catalog: Catalog, expression: str) -> Filter:
    """The compiled filter (cached by project, schema and text); InvalidFilter if it is bad."""
    key = (catalog.project_id, catalog.fingerprint[2], expression)
    with _lock:
        cached = _filters.get(key)
        if cached is not None:
            _filters.move_to_end(key)
    if cached is None:
        try:
            cached = compile_filter(expression, schema=catalog.schema)
        except FilterError as exc:
            cached = exc
        with _lock:
            _filters[key] = cached
            while len(_filters) > FILTER_CACHE_SIZE:
                _filters.popitem(last=False)
    if isinstance(cached, FilterError):
        raise _filter_error(cached, expression)
    return cached


# Masks of filters that read only item attributes (no Interactions, Users or CurrentItem),
# kept per process by catalogue, expression and values: a saved filter or a promotion asked
# with the same values costs no array pass. At most MASK_CACHE_BYTES of masks.
MASK_CACHE_BYTES = 32_000_000
_masks: OrderedDict = OrderedDict()


def _mask(
    catalog: Catalog,
    flt: Filter,
    *,
    values,
    interactions,
    user=None,
    current_item=None,
    only_if_included=False,
):
    """``flt.mask`` over the catalogue; read-only (and cached) when it depends on item
    attributes only. FilterError as ``flt.mask``. ``only_if_included``: as ``flt.mask``
    (promotions); it changes nothing for a filter without ``Users`` conditions.
    ``interactions``: a function giving the user's ``UserInteractions``, called only when the
    filter reads them."""
    if flt.uses_interactions or flt.uses_users or flt.uses_current_item:
        return flt.mask(
            catalog.table,
            interactions=interactions() if flt.uses_interactions else None,
            user=user,
            current_item=current_item,
            values=values,
            only_if_included=only_if_included,
        )
    key = _values_key(values)
    if key is not None:
        key = (id(catalog), flt.expression, key)
    with _lock:
        cached = _masks.get(key) if key is not None else None
        if cached is not None and cached[0] is catalog:
            _masks.move_to_end(key)
            return cached[1]
    mask = flt.mask(catalog.table, values=values)
    if key is None:
        return mask
    mask.flags.writeable = False
    with _lock:
        _masks[key] = (catalog, mask)
        limit = max(4, MASK_CACHE_BYTES // max(1, catalog.n_items))
        while len(_masks) > limit:
            _masks.popitem(last=False)
    return mask


def _values_key(values) -> tuple | str | None:
    """A hashable key of ``filter_values`` (None: none can be made): text and lists of text,
    the usual values, without serialising them; anything else as canonical JSON."""
    if not values:
        return ()
    try:
        if all(
            type(v) is str or (type(v) is list and all(type(x) is str for x in v))
            for v in values.values()
        ):
            return tuple(
                sorted((str(k), v if type(v) is str else tuple(v)) for k, v in values.items())
            )
        return json.dumps(values, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None


def _filter_error(exc: FilterError, expression: str | None) -> InvalidFilter:
    detail = exc.to_dict()
    if expression is not None:
        detail["expression"] = expression
        if exc.position is not None:
            detail["pointer"] = exc.pointer(expression)
    return InvalidFilter(f"Filter: {exc.message}", field="filter", detail=detail)


def clear_caches() -> None:
    """Forget alignments and compiled filters (tests)."""
    with _lock:
        _alignments.clear()
        _filters.clear()
        _masks.clear()


def warm_up(seconds: float = 30.0) -> int:
    """Load every deployed campaign's model, its project's catalogue and their alignment into
    this process (a web worker about to take requests), for at most about ``seconds``; returns
    how many campaigns are ready. The first requests then do not wait for loading, and what
    was loaded can be set aside from garbage collection (recsite/gunicorn_conf.py)."""
    deadline = time.monotonic() + seconds
    ready = 0
    campaigns = Campaign.objects.filter(version__isnull=False).select_related("project")
    for campaign in campaigns.order_by("project_id", "name"):
        if time.monotonic() > deadline:
            break
        try:
            model = served_model(campaign)
            _alignment(catalog_for(campaign.project), model)
        except (ServingUnavailable, CampaignNotFound):
            continue  # logged by the loader; requests will say what is wrong
        ready += 1
    return ready


# --------------------------------------------------------------------------- request context


@dataclass
class _Request:
    project: Project
    campaign: Campaign
    model: ServedModel
    catalog: Catalog
    align: Alignment
    history: selectors.History
    history_rows: np.ndarray  # catalogue rows of the history events (-1: unknown)
    history_cols: np.ndarray  # model columns of the history events (-1: unknown)
    user_row: int | None  # the model's row of the user
    is_new: bool  # events since the version was trained

    @property
    def recipe(self):
        return self.model.recipe

    @property
    def trained_user(self) -> bool:
        """The model's trained vector stands for the user: it knows them, and nothing
        happened since the version was trained (else their events are folded in)."""
        return self.user_row is not None and not self.is_new


def _open(
    project: Project,
    campaign_name: str | None,
    user_id: str | None,
    *,
    campaign: Campaign | None = None,
    history: selectors.History | None = None,
) -> _Request:
    """The request context; ``campaign`` and ``history`` when the caller already has them
    (a feed reads several campaigns for one user)."""
    if campaign is None:
        campaign = _campaign(project, campaign_name)
    try:
        model = served_model(campaign)
    except ServingUnavailable as exc:
        deployed = Campaign.objects.filter(pk=campaign.pk).values_list("version_id", flat=True)
        if deployed.first() is None:
            raise NotDeployed(str(exc)) from None
        raise Unavailable(str(exc)) from None
    catalog = catalog_for(project)
    align = _alignment(catalog, model)
    if history is None:
        history = selectors.user_history(project, user_id)
    rows, cols = _placed_history(history, catalog, align)
    user_row, is_new = _derived(history, "user", align, lambda: _user_place(history, model, align))
    return _Request(project, campaign, model, catalog, align, history, rows, cols, user_row, is_new)


def _placed_history(
    history: selectors.History, catalog: Catalog, align: Alignment
) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue rows and model columns of the history's events (-1: unknown), read-only,
    kept on the history for the alignment they were worked out with (an alignment belongs to
    one catalogue and one model version)."""

    def place():
        rows = catalog.rows_for_ids(history.item_ids)
        cols = np.where(rows >= 0, align.row_to_col[np.maximum(rows, 0)], -1)
        rows.flags.writeable = cols.flags.writeable = False
        return rows, cols

    return _derived(history, "placed", align, place)


def _user_place(
    history: selectors.History, model: ServedModel, align: Alignment
) -> tuple[int | None, bool]:
    """The model's row of the user (None: unknown to it) and whether the user has events
    since the version was trained."""
    user_row = model.user_row(history.user_pk) if history.user_pk is not None else None
    return user_row, bool(len(history) and history.timestamps[0] >= int(align.trained_at))


def _derived(history: selectors.History, name: str, align: Alignment, compute):
    """``compute()``, kept on the history (``history.memo[name]``) for ``align``: a cached
    history serves many requests, and what is derived from it depends only on the alignment
    (one catalogue and one model version)."""
    memo = history.memo.get(name)
    if memo is None or memo[0] is not align:
        memo = (align, compute())
        history.memo[name] = memo
    return memo[1]


def _campaign(project: Project, name: str | None) -> Campaign:
    """The campaign; CampaignNotFound (404) naming the project's campaigns otherwise."""
    return campaign_for(project, name or None)


# --------------------------------------------------------------------------- parsing helpers


def check_num_results(raw, default: int = DEFAULT_RESULTS) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise InvalidRequest(
            f"num_results must be a whole number from 1 to {MAX_RESULTS}; got {str(raw)[:40]!r}.",
            field="num_results",
        ) from None
    if not 1 <= value <= MAX_RESULTS:
        raise InvalidRequest(
            f"num_results must be from 1 to {MAX_RESULTS}; got {value}.", field="num_results"
        )
    return value


def parse_filter_values(raw) -> dict | None:
    """``filter_values`` from a JSON text (query string) or an object (JSON body)."""
    import json

    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(
                f"filter_values is not valid JSON ({exc.msg} at character {exc.pos}); send an "
                'object such as {"CATEGORIES": ["Shoes", "Bags"]}.',
                field="filter_values",
            ) from None
    if not isinstance(raw, dict):
        raise InvalidRequest(
            'filter_values must be a JSON object such as {"CATEGORIES": ["Shoes", "Bags"]}.',
            field="filter_values",
        )
    return {str(k).lstrip("$"): v for k, v in raw.items()}


def parse_context(raw) -> dict | None:
    import json

    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise InvalidRequest(
                f"context is not valid JSON ({exc.msg} at character {exc.pos}); send an object "
                'such as {"category": "Shoes"}.',
                field="context",
            ) from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, str | int | float | bool) for v in raw.values()
    ):
        raise InvalidRequest(
            'context must be a JSON object of names to text or numbers, e.g. {"category": '
            '"Shoes"}.',
            field="context",
        )
    return raw


_EXPRESSION = re.compile(r"^\s*(INCLUDE|EXCLUDE)\b", re.IGNORECASE)


def _resolve_filter(req: _Request, text: str | None, values: dict | None) -> Filter | None:
    if not text or not text.strip():
        if values:
            raise InvalidRequest(
                "filter_values were sent without a filter; name a saved filter or send an "
                "expression in filter.",
                field="filter_values",
            )
        return None
    text = text.strip()
    if _EXPRESSION.match(text):
        expression = text
    else:
        expression = selectors.saved_filter_expression(req.project, text)
        if expression is None:
            names = selectors.saved_filter_names(req.project)
            known = f"saved filters: {', '.join(names)}" if names else "no saved filter yet"
            raise InvalidRequest(
                f"No saved filter named “{text[:80]}” in this project ({known}). Pass a saved "
                "filter's name or an expression starting with INCLUDE or EXCLUDE.",
                field="filter",
            )
    flt = _compiled(req.catalog, expression)
    unknown = sorted(set(values or {}) - set(flt.parameters))
    if unknown:
        wanted = ", ".join(f"${p}" for p in flt.parameters) or "none"
        raise InvalidRequest(
            f"filter_values has {', '.join(unknown)}, which the filter does not use "
            f"(its parameters: {wanted}).",
            field="filter_values",
        )
    return flt


def _interactions(req: _Request) -> UserInteractions:
    h = req.history
    return UserInteractions(
        item_rows=req.history_rows,
        event_types=h.event_types,
        timestamps=h.timestamps,
        event_values=h.event_values,
    )


def _filter_mask(
    req: _Request,
    flt: Filter | None,
    values: dict | None,
    user_id: str | None,
    current_item: dict | None = None,
    expression: str | None = None,
) -> np.ndarray | None:
    if flt is None:
        return None
    user = selectors.user_attributes(req.project, user_id) if flt.uses_users else None
    try:
        return _mask(
            req.catalog,
            flt,
            interactions=lambda: _interactions(req),
            user=user,
            current_item=current_item,
            values=values,
        )
    except FilterError as exc:
        raise _filter_error(exc, expression or flt.expression) from None


# --------------------------------------------------------------------------- scoring


def _global_scores(recipe) -> np.ndarray | None:
    for name in ("item_scores_", "global_scores_"):
        value = getattr(recipe, name, None)
        if value is not None:
            return np.asarray(value, dtype=np.float32)
    return None


def _distinct_recent(cols: np.ndarray, limit: int) -> np.ndarray:
    return _distinct_recent_positions(cols, limit)[0]


def _distinct_recent_positions(cols: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` distinct known columns of ``cols`` (newest first) and the position
    in ``cols`` of each one's newest event."""
    valid = np.flatnonzero(cols >= 0)
    if len(valid) == 0:
        return valid, valid
    known = cols[valid]
    _, first = np.unique(known, return_index=True)
    first = np.sort(first)[:limit]
    return known[first], valid[first]


def _normalized(scores: np.ndarray) -> np.ndarray:
    top = float(np.max(np.abs(scores))) if len(scores) else 0.0
    return scores / top if top > 0 else scores


def _scores(req: _Request) -> tuple[np.ndarray | None, str]:
    """Scores over the model's columns (a fresh array), and how they were made.

    Kinds: "personal" (from the user's history), "global" (popularity-like recipes, or
    segment averages), "cold" (nothing to go on: scores is None).
    """
    recipe = req.recipe
    cols = req.history_cols[req.history_cols >= 0]
    if req.recipe.name in GLOBAL_RECIPES:
        return np.array(_global_scores(recipe), dtype=np.float32), "global"
    if req.trained_user:
        scores = np.asarray(recipe._score_users(np.array([req.user_row])))[0]
        return np.array(scores, dtype=np.float32), "personal"
    if len(cols):
        if hasattr(recipe, "_fold_in_items"):
            # The whole recent history, plus a "session" vector of only the events since the
            # version was trained, so what the user does now shows at once.
            _, vector = recipe._fold_in_items(cols, None)
            scores = _normalized((recipe.item_factors_ @ vector).astype(np.float64))
            new = req.history.timestamps[req.history_cols >= 0] >= int(req.align.trained_at)
            if new.any() and not new.all():
                _, session = recipe._fold_in_items(cols[new], None)
                session_scores = (recipe.item_factors_ @ session).astype(np.float64)
                scores = scores + SESSION_WEIGHT * _normalized(session_scores)
            return scores.astype(np.float32), "personal"
        if hasattr(recipe, "_score_similar"):
            recent = _distinct_recent(req.history_cols, BLEND_HISTORY)
            weights = 0.9 ** np.arange(len(recent), dtype=np.float64)
            similar = np.asarray(recipe._score_similar(recent), dtype=np.float64)
            similar[~np.isfinite(similar)] = 0.0  # sparse recipes mark non-neighbours -inf
            blended = _normalized(weights @ similar / weights.sum())
            if req.user_row is not None:
                base = np.asarray(recipe._score_users(np.array([req.user_row])))[0]
                blended = blended + 0.5 * _normalized(np.asarray(base, dtype=np.float64))
            blended[blended <= 0] = -np.inf  # no evidence: left to the popular fallback
            return blended.astype(np.float32), "personal"
    if req.user_row is not None:
        scores = np.asarray(recipe._score_users(np.array([req.user_row])))[0]
        return np.array(scores, dtype=np.float32), "global"
    scores = _global_scores(recipe)
    if scores is not None:
        return np.array(scores, dtype=np.float32), "global"
    return None, "cold"


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite scores, best first; of equal scores the lower index
    first, also at the cut (popularity counts tie often, and the answer must not depend on
    how the array was laid out)."""
    n = int(np.count_nonzero(np.isfinite(scores)))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(k, n)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        cut = scores[part].min()
        above = part[scores[part] > cut]
        part = np.concatenate([above, np.flatnonzero(scores == cut)[: k - len(above)]])
    else:
        part = np.flatnonzero(np.isfinite(scores))
    return part[np.lexsort((part, -scores[part]))]


def _pad(mask: np.ndarray) -> np.ndarray:
    """``mask`` with a False appended, so indexing with -1 gives False."""
    return np.append(mask, False)


# --------------------------------------------------------------------------- reasons


@functools.lru_cache(maxsize=256)
def _verb(event_type: str) -> str:
    word = (event_type or "").lower()
    if any(w in word for w in PURCHASE_WORDS):
        return "bought"
    if any(w in word for w in CART_WORDS):
        return "added to your cart"
    return "viewed"


def _because(req: _Request, rec_cols: np.ndarray) -> list[str | None]:
    """For each recommended column, "because you viewed <title>" naming the most similar of
    the user's recent items; None where nothing similar is known."""
    if len(rec_cols) == 0:
        return []
    recent, recent_unit, phrases = _derived(
        req.history, "reasons", req.align, lambda: _recent_reasons(req)
    )
    if len(recent) == 0:
        return [None] * len(rec_cols)
    if recent_unit is not None:
        sims = req.align.unit_factors[rec_cols] @ recent_unit
    elif hasattr(req.recipe, "_score_similar"):
        sims = np.asarray(req.recipe._score_similar(recent), dtype=np.float32)[:, rec_cols].T
    else:
        return [None] * len(rec_cols)
    best = np.argmax(sims, axis=1)
    best[~(sims[np.arange(len(rec_cols)), best] > 0)] = len(recent)  # nothing similar: None
    return [phrases[j] for j in best.tolist()]


def _recent_reasons(req: _Request) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """What ``_because`` compares with, kept per history and alignment: the user's distinct
    recent model columns, their unit factors (columns of a matrix; None without factors) and
    one phrase per recent item with the verb of its newest event, then None."""
    recent, positions = _distinct_recent_positions(req.history_cols, REASON_HISTORY)
    unit = req.align.unit_factors
    recent_unit = np.ascontiguousarray(unit[recent].T) if unit is not None else None
    titles = req.catalog.titles
    event_types = req.history.event_types
    phrases: list[str | None] = [
        f"because you {_verb(event_types[position])} {titles[row]}"
        for position, row in zip(
            positions.tolist(), req.align.col_to_row[recent].tolist(), strict=True
        )
    ]
    phrases.append(None)
    return recent, recent_unit, phrases


# --------------------------------------------------------------------------- lists


def _popular_candidates(
    req: _Request, allowed: np.ndarray, k: int, context: dict | None, exclude_row: int = -1
) -> list[Candidate]:
    """Popular items (catalogue rows) among ``allowed``: within the context first."""
    popularity = selectors.item_popularity(req.project, req.catalog)
    candidates: list[Candidate] = []
    taken: set[int] = set()
    if exclude_row >= 0:
        taken.add(exclude_row)
    for label, mask in _context_masks(req.catalog, context):
        score = np.where(allowed & mask, popularity.score, -np.inf)
        for row in _top(score, k + len(taken)).tolist():
            if row not in taken:
                taken.add(row)
                candidates.append(Candidate(row, None, f"popular in {label}"))
    score = np.where(allowed, popularity.score, -np.inf)
    for row in _top(score, k + len(taken)).tolist():
        if row not in taken:
            taken.add(row)
            reason = "trending now" if popularity.trending[row] else "popular"
            candidates.append(Candidate(row, None, reason))
    return candidates


def _context_masks(catalog: Catalog, context: dict | None) -> list[tuple[str, np.ndarray]]:
    """(label, rows matching) for each context entry naming an item attribute value."""
    masks = []
    for name, value in (context or {}).items():
        column = catalog.table.column(str(name))
        if column is None or column.vocabulary is None:
            continue  # context entries that are not item attributes (device, page...) are ignored
        text = str(value).strip()
        code = column.vocabulary.get(text)
        if code is None:
            lowered = text.lower()
            code = next((c for v, c in column.vocabulary.items() if v.lower() == lowered), None)
        if code is None:
            continue
        label = next(v for v, c in column.vocabulary.items() if c == code)
        masks.append((label, column.rows_with([code], catalog.n_items)))
    return masks


def _promotions(
    req: _Request,
    allowed: np.ndarray,
    relevance_rows: np.ndarray | None,
    k: int,
    user_id: str | None,
    current_item: dict | None,
    extra: list[RequestPromotion] | None = None,
) -> list[_PlacedPromotion]:
    """The active promotions (then ``extra``, the request's) as feed-engine promotions with
    their candidate items chosen by relevance (then popularity) among the matches of their
    filter."""
    promos = selectors.active_promotions(req.project, req.campaign.pk)
    if extra:
        taken = {p.name for p in promos}
        for promo in extra:
            if promo.name in taken:
                raise InvalidRequest(
                    f"A promotion named “{promo.name}” is already active in this project; give "
                    "the request's promotion another name.",
                    field="promotions",
                )
        promos = [*promos, *extra]
    if not promos:
        return []
    popularity = None
    user: dict | None = None
    result = []
    for promo in promos:
        strict = isinstance(promo, RequestPromotion)
        try:
            flt = _compiled(req.catalog, promo.expression if strict else promo.filter.expression)
            if flt.uses_users and user is None:
                user = selectors.user_attributes(req.project, user_id) or {}
            mask = _mask(
                req.catalog,
                flt,
                interactions=lambda: _interactions(req),
                user=user,
                current_item=current_item,
                values=promo.filter_values or {},
                only_if_included=True,
            )
        except (InvalidFilter, FilterError) as exc:
            if strict:
                raise exc if isinstance(exc, InvalidFilter) else _filter_error(exc, None) from None
            continue  # a promotion whose filter no longer fits the data is skipped
        mask = mask & allowed
        if not mask.any():
            continue
        positions = [p for p in (promo.positions or []) if isinstance(p, int) and p >= 1]
        reason = promo.reason or f"promoted: {promo.name}"
        share = None if positions else float(promo.share)
        rule = _promotion_rule(promo.name, [], share, positions or None, reason, k)
        if rule is None:
            continue
        wanted = len(rule.claimed)
        if wanted == 0:
            continue
        if popularity is None:
            popularity = selectors.item_popularity(req.project, req.catalog)
        rows = promotion_order(mask, relevance_rows, popularity.score, 2 * wanted + 2)
        scores = [
            float(relevance_rows[r])
            if relevance_rows is not None and np.isfinite(relevance_rows[r])
            else None
            for r in rows.tolist()
        ]
        candidates = [Candidate(r, s) for r, s in zip(rows.tolist(), scores, strict=True)]
        result.append(_PlacedPromotion(promo.name, candidates, rule.claimed, reason))
    return result


@dataclass(frozen=True)
class _PlacedPromotion:
    """A promotion of one response: its candidates (best first), the positions 1..k it
    claims and its reason."""

    name: str
    candidates: list[Candidate]
    claimed: frozenset
    reason: str


_claims: dict = {}


def _promotion_rule(name, candidates, share, positions, reason, k) -> _PlacedPromotion | None:
    """A promotion placed as the feed engine would place it (``feeds.engine.feed.Promotion``:
    a share or positions), with the positions it claims among the first ``k`` worked out once
    per rule; None when the engine would refuse the rule (no name, a share outside (0, 1],
    a position below 1)."""
    typed = tuple((type(p), p) for p in positions) if positions is not None else None
    key = (share, typed, k)
    claimed = _claims.get(key)
    if claimed is None:
        try:
            probe = FeedPromotion("probe", candidates=[], share=share, positions=positions)
        except ValueError:
            return None
        claimed = frozenset(q for q in range(1, k + 1) if probe.claims(q))
        if len(_claims) >= 1024:
            _claims.clear()
        _claims[key] = claimed
    if not isinstance(name, str) or not name.strip():
        return None
    return _PlacedPromotion(name, list(candidates), claimed, reason or f"promoted: {name}")


def _assemble(
    req: _Request | None,
    k: int,
    model_list: list[Candidate],
    fallback: list[Candidate],
    promotions: list[_PlacedPromotion],
    explored: set[int],
    model_source: str = MODEL,
    promoted_by: dict[int, str] | None = None,
) -> list[tuple[int, float | None, str, str]]:
    """(row, score, source, reason) for the first ``k`` positions: the feed engine's rules
    (``feeds.engine.feed``) for the one-slot feed of a response, without building a feed.

    Position by position: the first promotion claiming it that has an item left, else the
    model's next item, else the fallback's; when both have run dry, the promotions' items
    left; every row at most once. The same answer as ``iter_feed`` on ``FeedSpec([Slot(
    model_source)], fallback=POPULAR, promotions=...)`` (tests/feeds/test_serving_shortcuts.py)
    at a fraction of its cost. ``promoted_by``, when given, is filled with row -> the name of
    the promotion that placed it."""
    shown: set[int] = set()
    out: list[tuple[int, float | None, str, str]] = []
    lists = [(model_list, model_source)]
    if fallback:
        lists.append((fallback, POPULAR))
    offsets = [0] * len(lists)
    promo_offsets = [0] * len(promotions)

    def take(candidates, offsets, i):
        n = offsets[i]
        while n < len(candidates):
            cand = candidates[n]
            n += 1
            if cand.item_id not in shown:
                offsets[i] = n
                return cand
        offsets[i] = n
        return None

    def take_promoted(position: int | None):
        """The next item of the first promotion claiming ``position`` (None: any) that has
        one left."""
        for j, promo in enumerate(promotions):
            if position is None or position in promo.claimed:
                cand = take(promo.candidates, promo_offsets, j)
                if cand is not None:
                    if promoted_by is not None:
                        promoted_by[cand.item_id] = promo.name
                    return (cand.item_id, cand.score, PROMOTION, promo.reason)
        return None

    for q in range(1, k + 1):
        placed = take_promoted(q)
        if placed is None:
            for i, (candidates, source) in enumerate(lists):
                cand = take(candidates, offsets, i)
                if cand is not None:
                    reason = cand.reason or f"from {source}"
                    if source == model_source and cand.item_id in explored:
                        source = EXPLORATION
                    placed = (cand.item_id, cand.score, source, reason)
                    break
        if placed is None:
            placed = take_promoted(None)
        if placed is None:
            break
        shown.add(placed[0])
        out.append(placed)
    return out


def _items_json(req: _Request, placed, model_reasons: dict[int, str] | None = None) -> list[dict]:
    """The response's items; ``model_reasons``: the reasons of the model's rows (which then
    replace the placement's), exploration slots then say "new arrival"."""
    external = req.catalog.external_ids
    items = []
    for row, score, source, reason in placed:
        if model_reasons is not None:
            if source == MODEL:
                reason = model_reasons.get(row, reason)
            elif source == EXPLORATION:
                reason = "new arrival"
        items.append(
            {
                "item_id": external[row],
                "score": None
                if score is None or not math.isfinite(score)
                else round(float(score), 6),
                "source": source,
                "reason": reason,
            }
        )
    return items


def _log(
    req: _Request,
    kind: str,
    items: list[dict],
    *,
    user_id: str = "",
    item_id: str = "",
    recommendation_id: str | None = None,
) -> str:
    """Log the response (one ``ServedRecommendation`` row); returns the recommendation id.

    Normally the row is buffered and written in bulk by a background thread
    (``feeds.served_log``: off the request path). With ``SERVED_LOG_FLUSH_SECONDS = 0``, on
    PostgreSQL, the row commits without waiting for the WAL flush (``synchronous_commit``
    off for this one transaction), in one round trip: a database crash may lose the last
    fraction of a second of served-log rows, never corrupt anything, and the request does not
    wait for the disk.
    """
    recommendation_id = recommendation_id or uuid.uuid4().hex
    fields = {
        "project_id": req.project.pk,
        "recommendation_id": recommendation_id,
        "kind": kind,
        "user_external_id": user_id or "",
        "item_external_id": item_id or "",
        "campaign_id": req.campaign.pk,
        "version_id": req.model.version_id,
        "items": [i["item_id"] for i in items],
        "sources": [i["source"] for i in items],
    }
    if served_log.buffered():
        served_log.add(fields)  # written by a background thread (feeds.served_log)
    elif connection.vendor == "postgresql" and not connection.in_atomic_block:
        _insert_without_flush_wait(ServedRecommendation(**fields))
    else:
        ServedRecommendation.objects.create(**fields)
    return recommendation_id


def _insert_without_flush_wait(row: ServedRecommendation) -> None:
    from django.db.models.sql import InsertQuery
    from psycopg import ClientCursor

    meta = ServedRecommendation._meta
    query = InsertQuery(ServedRecommendation)
    query.insert_values([f for f in meta.concrete_fields if not f.primary_key], [row])
    [(insert, params)] = query.get_compiler(connection=connection).as_sql()
    with connection.cursor() as cursor:
        if not isinstance(cursor.cursor, ClientCursor):  # server-side binding: 1 statement
            with transaction.atomic():
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                cursor.execute(insert, params)
            return
        try:
            cursor.execute(f"BEGIN; SET LOCAL synchronous_commit TO OFF; {insert}; COMMIT", params)
        except Exception:
            cursor.execute("ROLLBACK")  # the failed statement left the transaction open
            raise


def _served(
    req: _Request,
    kind: str,
    items: list[dict],
    rec_id: str,
    promoted_by: dict[int, str] | None = None,
    **extra,
) -> Served:
    external = req.catalog.external_ids
    names = {external[row]: name for row, name in (promoted_by or {}).items()}
    return Served(rec_id, req.campaign.name, req.model.version_id, items, extra, names)


def _model_reasons(req: _Request, rows: list[int], kind: str) -> dict[int, str]:
    """Reasons for model-sourced rows."""
    return dict(zip(rows, _model_reason_list(req, rows, kind), strict=True))


def _model_reason_list(req: _Request, rows: list[int], kind: str) -> list[str]:
    """The reason of each model-sourced row, in order."""
    if not rows:
        return []
    recipe_name = req.recipe.name
    if recipe_name in GLOBAL_RECIPES:
        return [GLOBAL_RECIPES[recipe_name]] * len(rows)
    if recipe_name == "segment-affinity" or kind == "global":
        word = "popular with shoppers like you" if req.user_row is not None else "popular"
        return [word] * len(rows)
    cols = req.align.row_to_col[np.asarray(rows, dtype=np.int64)]
    return [reason or "recommended for you" for reason in _because(req, cols)]


# --------------------------------------------------------------------------- the model's list


@dataclass
class _Choice:
    """The model's part of a response: catalogue rows best first (exploration slots mixed
    in), their scores, which are exploration slots, and every row's relevance for promotions
    (-inf: not scored); ``rows`` is None for a cold start."""

    kind: str
    rows: np.ndarray | None = None
    values: np.ndarray | None = None
    flags: np.ndarray | None = None
    relevance: np.ndarray | None = None
    approximate: bool = False


def _explores(req: _Request, kind: str) -> bool:
    recipe = req.recipe
    return (
        kind == "personal"
        and float(getattr(recipe, "exploration_weight", 0) or 0) > 0
        and hasattr(recipe, "_mix_exploration")
    )


_generators = threading.local()


def exploration_generator(rec_id: str) -> np.random.Generator:
    """The random generator of a response's exploration draws, reproducible from its logged
    recommendation id (32 hex digits): a PCG64 whose 128-bit state and increment are read
    from the id. One generator per thread, set to that state for each response: building one
    with ``default_rng`` (SeedSequence hashing) cost ~0.08 ms of a 2 ms request."""
    generator = getattr(_generators, "generator", None)
    if generator is None:
        generator = _generators.generator = np.random.Generator(np.random.PCG64(0))
    value = int(rec_id, 16) % (1 << 128)
    generator.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": value, "inc": (value >> 64) | 1},
        "has_uint32": 0,
        "uinteger": 0,
    }
    return generator


def _exact_choice(req: _Request, allowed: np.ndarray, want: int, rec_id: str) -> _Choice:
    """Brute force: a score for every item the model knows and ``allowed`` leaves."""
    cols, scores, kind = _allowed_scores(req, allowed)
    if scores is None:
        return _Choice(kind)
    # The list length as over the whole catalogue: the exploration draws depend on it.
    want = min(want, len(req.align.col_to_row))
    if _explores(req, kind):
        chosen, values, flags = _explore_among(req.recipe, cols, scores, want, rec_id)
    else:
        top = _top(scores, want)
        chosen, values = cols[top], scores[top]
        flags = np.zeros(len(top), dtype=bool)
    relevance = req.align.relevance(cols, scores, req.catalog.n_items)
    return _Choice(kind, req.align.col_to_row[chosen], values, flags, relevance)


# Below this share of the model's items left by a filter and the exclusions, a known user's
# scores are computed for those items only (fewer item factors read); above it, for every
# item (one product over the whole matrix costs less than gathering most of it).
COMPACT_SCORING_SHARE = 0.5


def _allowed_scores(
    req: _Request, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The model columns ``allowed`` leaves (ascending), their scores (a fresh float32 array;
    -inf: no evidence) and the kind of scores (``_scores``); scores None for a cold start.

    Everything after scoring (top-k, exploration, the relevance promotions read) works on
    these columns only, as it would over the whole catalogue with the rest at -inf."""
    cols = np.flatnonzero(req.align.allowed_cols(allowed))
    recipe = req.recipe
    score_items = getattr(recipe, "_score_user_items", None)
    if (
        score_items is not None
        and req.trained_user
        and recipe.name not in GLOBAL_RECIPES
        and len(cols) < COMPACT_SCORING_SHARE * len(req.align.col_to_row)
    ):
        return cols, np.asarray(score_items(req.user_row, cols), dtype=np.float32), "personal"
    scores, kind = _scores(req)
    return cols, (None if scores is None else scores[cols]), kind


def _explore_among(
    recipe, cols: np.ndarray, scores: np.ndarray, want: int, rec_id: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recipe's exploration mixing (``_mix_exploration``) over the model columns ``cols``
    scored ``scores``, as over the whole catalogue with every other column at -inf (those
    are never drawn): (columns best first, their scores, which are exploration slots)."""
    view = SimpleNamespace(
        exploration_weight=recipe.exploration_weight,
        exploration_priority_=np.asarray(recipe.exploration_priority_)[cols],
    )
    picked, values, flags = type(recipe)._mix_exploration(
        view, scores[None, :], want, exploration_generator(rec_id)
    )
    picked, values, flags = picked[0], values[0], flags[0]
    keep = picked >= 0
    return cols[picked[keep]], values[keep], flags[keep]


# The approximate index (models_app.ann; built by training for catalogues of at least
# ANN_THRESHOLD_ITEMS items) is asked for ANN_OVERFETCH x the items wanted, divided by the
# share of the catalogue the filter and exclusions leave, plus the excluded items; at most
# ANN_MAX_FETCH. A filter leaving less than ANN_MIN_SHARE of the catalogue, or fewer allowed
# candidates than wanted, is served by brute force (exact, and cheap for so few items).
USE_ANN = True
ANN_OVERFETCH = 4
ANN_MIN_SHARE = 0.05
ANN_MAX_FETCH = 5000


def _query_vector(req: _Request, index) -> tuple[np.ndarray, bool] | None:
    """The user's vector in the item-factor space (the scores are its inner products with the
    item factors) and whether scores are rescaled (fold-in: the best about 1); None when the
    scores are not one inner product (item-based recipes, global scores, cold start)."""
    recipe = req.recipe
    if recipe.name in GLOBAL_RECIPES or getattr(recipe, "user_factors_", None) is None:
        return None
    if req.trained_user:
        return np.asarray(recipe.user_factors_[req.user_row], dtype=np.float32), False
    cols = req.history_cols[req.history_cols >= 0]
    if not len(cols) or not hasattr(recipe, "_fold_in_items"):
        return None
    _, vector = recipe._fold_in_items(cols, None)
    vector = np.asarray(vector, dtype=np.float32)
    new = req.history.timestamps[req.history_cols >= 0] >= int(req.align.trained_at)
    if new.any() and not new.all():
        # As in _scores: history and session vectors, each scaled so its best item scores 1
        # (the best found by the index stands for the catalogue's best).
        _, session = recipe._fold_in_items(cols[new], None)
        session = np.asarray(session, dtype=np.float32)
        best = [index.search(v, 1)[1] for v in (vector, session)]
        if all(len(b) and b[0] > 0 for b in best):
            vector = vector / best[0][0] + SESSION_WEIGHT * session / best[1][0]
    return vector, True


def _approximate_choice(req: _Request, allowed: np.ndarray, want: int, rec_id: str):
    """The model's list through the approximate index: candidates from the index, exact
    scores for them, the filter and exclusions applied to them. None: use brute force."""
    index = req.model.index
    if index is None:
        return None
    query = _query_vector(req, index)
    if query is None:
        return None
    vector, rescale = query
    n_allowed = int(np.count_nonzero(allowed))
    share = n_allowed / max(1, len(allowed))
    if share < ANN_MIN_SHARE:
        return None  # a selective filter: brute force over few items is exact and cheap
    excluded = int(np.count_nonzero(req.history_rows >= 0))
    fetch = int(np.ceil(want * ANN_OVERFETCH / share)) + excluded
    if fetch > ANN_MAX_FETCH:
        return None
    cols, values = index.search(vector, fetch)
    rows = req.align.col_to_row[cols]
    ok = rows >= 0
    ok[ok] = allowed[rows[ok]]
    cols, values = cols[ok], values[ok].astype(np.float32)
    if len(cols) < min(want, n_allowed):
        return None  # the index found too few allowed items
    kind = "personal"
    top = float(np.max(np.abs(values))) if len(values) else 0.0
    if rescale and top > 0:
        values = values / top
    # Relevance for promotions: the candidates' exact scores (a promotion's items are the best
    # of them, then the most popular).
    scored_cols, scored_values = cols, values
    if _explores(req, kind):
        # Exploration draws among the cold items (exploration_priority_ > 0) the filter
        # allows, scored exactly, next to the index's candidates: the recipe's own mixing on
        # that sub-catalogue (every other item would score -inf anyway).
        recipe = req.recipe
        priority = np.asarray(recipe.exploration_priority_)
        cold = np.flatnonzero(priority > 0)
        cold_rows = req.align.col_to_row[cold]
        keep = cold_rows >= 0
        keep[keep] = allowed[cold_rows[keep]]
        cold = np.setdiff1d(cold[keep], cols)
        cold_values = (req.recipe.item_factors_[cold] @ vector).astype(np.float32)
        if rescale and top > 0:
            cold_values = cold_values / top
        scored_cols = np.concatenate([cols, cold])
        scored_values = np.concatenate([values, cold_values])
        chosen_cols, chosen_values, flags = _explore_among(
            recipe, scored_cols, scored_values, min(want, len(scored_cols)), rec_id
        )
    else:
        chosen_cols, chosen_values = cols[:want], values[:want]
        flags = np.zeros(len(chosen_cols), dtype=bool)
    relevance = req.align.relevance(scored_cols, scored_values, req.catalog.n_items)
    return _Choice(
        kind,
        req.align.col_to_row[chosen_cols],
        chosen_values,
        flags,
        relevance,
        approximate=True,
    )


# --------------------------------------------------------------------------- endpoints


def recommend(
    project: Project,
    *,
    user_id: str | None,
    num_results: int = DEFAULT_RESULTS,
    campaign: str | None = None,
    filter: str | None = None,  # noqa: A002 - the API's parameter name
    filter_values: dict | None = None,
    context: dict | None = None,
    exclude_interacted: bool = True,
    promotions: list[RequestPromotion] | None = None,
) -> Served:
    """Recommendations for one user (known, known only by recent events, or unknown);
    ``promotions``: the request's own, placed like the project's active ones."""
    req = _open(project, campaign, user_id)
    rec_id = uuid.uuid4().hex
    k = num_results
    flt = _resolve_filter(req, filter, filter_values)
    catalog = req.catalog
    allowed = catalog.recommendable.copy()
    mask = _filter_mask(req, flt, filter_values, user_id)
    if mask is not None:
        allowed &= mask
    if exclude_interacted:
        seen = req.history_rows[req.history_rows >= 0]
        allowed[seen] = False
    model_list: list[Candidate] = []
    explored: set[int] = set()
    relevance_rows = None
    want = k + 10
    chosen = _approximate_choice(req, allowed, want, rec_id) if USE_ANN else None
    if chosen is None:
        chosen = _exact_choice(req, allowed, want, rec_id)
    kind = chosen.kind
    if chosen.rows is not None:
        rows, values, flags = chosen.rows, chosen.values, chosen.flags
        valid = rows >= 0
        model_list = [
            Candidate(int(r), float(v))
            for r, v in zip(rows[valid].tolist(), values[valid].tolist(), strict=True)
        ]
        explored = {int(r) for r in rows[valid & flags].tolist()}
        relevance_rows = chosen.relevance
    promotions = _promotions(req, allowed, relevance_rows, k, user_id, None, promotions)
    fallback: list[Candidate] = []
    if len(model_list) < k:
        fallback = _popular_candidates(req, allowed, k, context)
    promoted_by: dict[int, str] = {}
    placed = _assemble(req, k, model_list, fallback, promotions, explored, promoted_by=promoted_by)
    model_rows = [row for row, _, source, _ in placed if source == MODEL]
    items = _items_json(req, placed, _model_reasons(req, model_rows, kind))
    _log(
        req,
        ServedRecommendation.Kind.RECOMMENDATIONS,
        items,
        user_id=user_id or "",
        recommendation_id=rec_id,
    )
    return _served(req, "recommendations", items, rec_id, promoted_by)


def related(
    project: Project,
    *,
    item_id: str,
    num_results: int = DEFAULT_RESULTS,
    campaign: str | None = None,
    filter: str | None = None,  # noqa: A002
    filter_values: dict | None = None,
    user_id: str | None = None,
    exclude_interacted: bool = True,
    promotions: list[RequestPromotion] | None = None,
) -> Served:
    """Items related to ``item_id``: the model's similar items, else its category's popular;
    ``promotions`` as for ``recommend``."""
    req = _open(project, campaign, user_id)
    catalog = req.catalog
    row = catalog.row_of(item_id)
    if row is None:
        raise ItemNotFound(
            f"No item “{item_id[:100]}” in this project. Send it with POST /api/v1/items or "
            "an import first; ids are case-sensitive."
        )
    k = num_results
    current = catalog.attributes_of(row)
    flt = _resolve_filter(req, filter, filter_values)
    allowed = catalog.recommendable.copy()
    mask = _filter_mask(req, flt, filter_values, user_id, current_item=current)
    if mask is not None:
        allowed &= mask
    if user_id and exclude_interacted:
        allowed[req.history_rows[req.history_rows >= 0]] = False
    allowed[row] = False
    col = int(req.align.row_to_col[row])
    recipe = req.recipe
    title = catalog.titles[row]
    model_list: list[Candidate] = []
    relevance_rows = None
    source = MODEL
    if col >= 0 and hasattr(recipe, "_score_similar"):
        scores = np.array(recipe._score_similar(np.array([col]))[0], dtype=np.float32)
        scores[col] = -np.inf
        if getattr(recipe, "item_factors_", None) is None:
            scores[scores <= 0] = -np.inf  # sparse neighbours: zero means "not related"
        scores[~_pad(allowed)[req.align.col_to_row]] = -np.inf
        cols = _top(scores, min(k + 10, len(scores)))
        rows = req.align.col_to_row[cols]
        valid = rows >= 0
        word = "often bought with" if recipe.name == "frequently-bought-together" else "similar to"
        model_list = [
            Candidate(int(r), float(v), f"{word} {title}")
            for r, v in zip(rows[valid].tolist(), scores[cols][valid].tolist(), strict=True)
        ]
        relevance_rows = np.full(catalog.n_items, -np.inf, dtype=np.float32)
        known = req.align.col_to_row >= 0
        relevance_rows[req.align.col_to_row[known]] = scores[known]
    else:
        # Unknown to the model (a new item) or a recipe without item similarity: the most
        # popular items sharing its category.
        source = CATEGORY
        popularity = selectors.item_popularity(project, catalog)
        for category in catalog.categories_of(row):
            same = np.zeros(catalog.n_items, dtype=bool)
            same[catalog.category_rows(category)] = True
            same &= allowed
            taken = {c.item_id for c in model_list}
            for r in _top(np.where(same, popularity.score, -np.inf), k + len(taken)).tolist():
                if r not in taken:
                    taken.add(r)
                    model_list.append(Candidate(r, None, f"popular in {category}"))
    promotions = _promotions(req, allowed, relevance_rows, k, user_id, current, promotions)
    fallback = _popular_candidates(req, allowed, k, None, row) if len(model_list) < k else []
    promoted_by: dict[int, str] = {}
    placed = _assemble(
        req,
        k,
        model_list,
        fallback,
        promotions,
        set(),
        model_source=source,
        promoted_by=promoted_by,
    )
    items = _items_json(req, placed)
    rec_id = _log(
        req, ServedRecommendation.Kind.RELATED, items, user_id=user_id or "", item_id=item_id
    )
    return _served(req, "related", items, rec_id, promoted_by)


def rank(
    project: Project,
    *,
    user_id: str | None,
    item_ids: list[str],
    campaign: str | None = None,
    filter: str | None = None,  # noqa: A002
    filter_values: dict | None = None,
) -> Served:
    """``item_ids`` re-ranked for the user; items the model does not know go last, in the
    given order, and are listed in ``unknown_items``; filtered items are removed and listed in
    ``filtered_items``."""
    req = _open(project, campaign, user_id)
    catalog = req.catalog
    ids = list(dict.fromkeys(item_ids))  # duplicates collapse to the first
    rows = catalog.rows_of(ids)
    flt = _resolve_filter(req, filter, filter_values)
    mask = _filter_mask(req, flt, filter_values, user_id)
    filtered: list[str] = []
    keep = np.ones(len(ids), dtype=bool)
    if mask is not None:
        keep = ~((rows >= 0) & ~_pad(mask)[rows])
        filtered = [ids[i] for i in np.flatnonzero(~keep).tolist()]
    cols = np.where(rows >= 0, req.align.row_to_col[np.maximum(rows, 0)], -1)
    known = keep & (cols >= 0)
    unknown = [ids[i] for i in np.flatnonzero(keep & (cols < 0)).tolist()]
    scores, kind = _scores(req)
    known_idx = np.flatnonzero(known)
    if scores is not None:
        values = scores[cols[known_idx]]
        order = np.argsort(-values, kind="stable")
        source = MODEL
    else:
        popularity = selectors.item_popularity(project, catalog)
        values = popularity.score[rows[known_idx]]
        order = np.argsort(-values, kind="stable")
        source = POPULAR
    ranked_rows = rows[known_idx][order].tolist()
    ranked_values = values[order].tolist()
    if source == MODEL:
        reasons = _model_reasons(req, ranked_rows, kind)
        score_list = ranked_values
    else:
        reasons = dict.fromkeys(ranked_rows, "popular")
        score_list = [None] * len(ranked_rows)
    placed = [
        (r, s, source, reasons.get(r, "")) for r, s in zip(ranked_rows, score_list, strict=True)
    ]
    items = _items_json(req, placed)
    items.extend(
        {"item_id": item, "score": None, "source": "unknown", "reason": "unknown to the model"}
        for item in unknown
    )
    rec_id = _log(req, ServedRecommendation.Kind.RANK, items, user_id=user_id or "")
    return _served(req, "rank", items, rec_id, unknown_items=unknown, filtered_items=filtered)


# --------------------------------------------------------------------------- feeds (sources)


def feed_allowed(
    project: Project,
    catalog: Catalog,
    history: selectors.History,
    *,
    user_id: str | None,
    filter_expression: str | None = None,
    filter_values: dict | None = None,
    only_if_included: bool = False,
) -> np.ndarray:
    """Rows a feed may show this user: recommendable items matching the feed's filter
    (``only_if_included=True`` for a promotion's filter, see ``Filter.mask``).

    ``InvalidFilter`` when the expression does not compile or its values do not fit."""
    allowed = catalog.recommendable.copy()
    if filter_expression:
        flt = _compiled(catalog, filter_expression)
        user = selectors.user_attributes(project, user_id) if flt.uses_users else None

        def interactions():
            return UserInteractions(
                item_rows=catalog.rows_for_ids(history.item_ids),
                event_types=history.event_types,
                timestamps=history.timestamps,
                event_values=history.event_values,
            )

        try:
            mask = _mask(
                catalog,
                flt,
                interactions=interactions,
                user=user,
                values=filter_values or {},
                only_if_included=only_if_included,
            )
        except FilterError as exc:
            raise _filter_error(exc, filter_expression) from None
        allowed &= mask
    return allowed


@dataclass
class CampaignRanking:
    """A campaign's ranked list for a feed source (``campaign_ranking``)."""

    rows: list[int]  # catalogue rows among ``allowed``, best first
    scores: list  # the model's score of each row; None for cold-start popular items
    reasons: list[str]
    campaign: Campaign
    version_id: int
    # The model's score of every catalogue row for this user (-inf: not allowed or unknown to
    # the model); None for a cold user. Promotions take their items in this order.
    relevance: np.ndarray | None = None


def campaign_ranking(
    project: Project,
    campaign: str | Campaign,
    *,
    user_id: str | None,
    allowed: np.ndarray,
    k: int,
    history: selectors.History | None = None,
) -> CampaignRanking:
    """The campaign's ranked list for a feed source: the best ``k`` catalogue rows among
    ``allowed`` with scores and reasons, and the relevance of every row.

    The same scoring as ``recommend`` (trained vector, real-time fold-in, cold start) without
    exploration (a feed's lists must stay the same between pages), promotions or logging.
    Raises ``CampaignNotFound``, ``NotDeployed`` or ``Unavailable`` like ``recommend``.
    ``campaign`` is a name or a Campaign already read; ``history`` the user's, if read."""
    if isinstance(campaign, Campaign):
        req = _open(project, campaign.name, user_id, campaign=campaign, history=history)
    else:
        req = _open(project, campaign, user_id, history=history)
    cols, scores, kind = _allowed_scores(req, allowed)
    if scores is None:
        cold = _popular_candidates(req, allowed, k, None)
        return CampaignRanking(
            [c.item_id for c in cold],
            [None] * len(cold),
            [c.reason for c in cold],
            req.campaign,
            req.model.version_id,
        )
    top = _top(scores, k)
    ranked = req.align.col_to_row[cols[top]].tolist()
    return CampaignRanking(
        ranked,
        scores[top].tolist(),
        _model_reason_list(req, ranked, kind),
        req.campaign,
        req.model.version_id,
        req.align.relevance(cols, scores, req.catalog.n_items),
    )


def promotion_order(
    mask: np.ndarray, relevance: np.ndarray | None, popularity: np.ndarray, limit: int
) -> np.ndarray:
    """Rows of ``mask`` in the user's relevance order (rows the model scored), then by
    popularity (items the model does not know, and every item for a cold user)."""
    rows = np.flatnonzero(mask)  # a promotion's matches: usually a small share of the rows
    key = popularity[rows].astype(np.float64)
    if relevance is not None:
        scored = relevance[rows]
        relevant = np.isfinite(scored)
        key[relevant] = 1e12 + scored[relevant].astype(np.float64)
    return rows[_top(key, limit)]
