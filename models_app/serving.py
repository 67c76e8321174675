"""The serving cache: the model version each campaign serves, loaded once per process.

``served_model(campaign)`` returns a :class:`ServedModel` (the fitted recipe, its id arrays and
fast database id -> row lookups). Versions are loaded lazily on first use and shared by every
campaign that serves them. Each call asks the database which version the campaign serves now
(one query on the primary key, well under a millisecond), so a deploy or a rollback made by
any web process or worker is picked up at the next request, without restarting anything.

When the new version cannot be loaded (artefacts deleted, corrupt, or the disk is gone), the
error is logged and the campaign keeps serving the last version that loaded in this process;
the failed load is retried every ``RETRY_SECONDS``. ``ServingUnavailable`` is raised only when
there is nothing at all to serve.

Thread-safe: gunicorn threads share the cache. A version is loaded by one thread; meanwhile
other threads keep serving the campaign's last good version (or wait when there is none).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.http import Http404
from django.utils import timezone

from datasets.models import Project
from models_app import selectors, services
from models_app.ann import ItemIndex
from models_app.models import Campaign, ModelVersion
from models_app.recipes import Recipe

logger = logging.getLogger(__name__)

# A version that failed to load is not tried again for this many seconds (each try reads the
# artefacts from disk, which must not happen on every request).
RETRY_SECONDS = 30.0
# The campaign a project's API calls use when they name none and the project has several.
DEFAULT_CAMPAIGN_NAME = "default"


class TtlCache:
    """A per-process cache of small database answers on the serving hot path, each kept for
    ``settings.SERVING_CACHE_SECONDS`` (2 s by default; 0: no caching, every call asks the
    database, as the test suite does). With N seconds, a deploy, a rollback, a saved filter's
    new expression or a promotion's change made elsewhere reaches this process within N
    seconds."""

    MAX_ENTRIES = 4096

    def __init__(self):
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key, load):
        ttl = float(getattr(settings, "SERVING_CACHE_SECONDS", 0) or 0)
        if ttl <= 0:
            return load()
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._data) >= self.MAX_ENTRIES:
                self._data.clear()
            self._data[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# Campaign -> (name, version id, recipe, artefact folder); (project, name) -> Campaign.
_campaign_rows = TtlCache()
_campaigns = TtlCache()


class ServingUnavailable(Exception):
    """The campaign has no model version this process can serve (API: 503)."""


class CampaignNotFound(Http404):
    """No such campaign in the project (API and pages: 404 with this message)."""


def _lookup(ids: np.ndarray):
    """(sorted ids, their rows): ``searchsorted`` on these maps database ids to rows."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids, np.arange(len(ids), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    return ids[order], order.astype(np.int64)


def _rows(sorted_ids: np.ndarray, rows: np.ndarray, wanted) -> np.ndarray:
    wanted = np.asarray(wanted, dtype=np.int64).reshape(-1)
    if len(sorted_ids) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    position = np.searchsorted(sorted_ids, wanted)
    position = np.minimum(position, len(sorted_ids) - 1)
    found = sorted_ids[position] == wanted
    return np.where(found, rows[position], -1)


def _row(sorted_ids: np.ndarray, rows: np.ndarray, wanted: int) -> int | None:
    """One id's row (None when unknown): ``_rows`` without the array overhead (per request)."""
    position = int(sorted_ids.searchsorted(wanted))
    if position < len(sorted_ids) and int(sorted_ids[position]) == int(wanted):
        return int(rows[position])
    return None


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded model version, ready to recommend: read-only, shared between threads."""

    version_id: int
    recipe_name: str
    recipe: Recipe
    user_ids: np.ndarray  # row -> database id of the user (EndUser.pk)
    item_ids: np.ndarray  # column -> database id of the item (Item.pk)
    loaded_at: datetime
    load_seconds: float
    _users: tuple = field(repr=False, default=())
    _items: tuple = field(repr=False, default=())
    # The approximate index over the item factors (models_app.ann), when training built one
    # (catalogues of at least ANN_THRESHOLD_ITEMS items); serving then scores candidates only.
    index: ItemIndex | None = None

    @classmethod
    def build(cls, version: ModelVersion, recipe, user_ids, item_ids, load_seconds=0.0, index=None):
        return cls(
            version_id=version.pk,
            recipe_name=version.recipe,
            recipe=recipe,
            user_ids=user_ids,
            item_ids=item_ids,
            loaded_at=timezone.now(),
            load_seconds=load_seconds,
            _users=_lookup(user_ids),
            _items=_lookup(item_ids),
            index=index,
        )

    def user_rows(self, user_ids) -> np.ndarray:
        """Rows of these database user ids; -1 for users the model does not know."""
        return _rows(*self._users, user_ids)

    def item_rows(self, item_ids) -> np.ndarray:
        """Columns of these database item ids; -1 for items the model does not know."""
        return _rows(*self._items, item_ids)

    def user_row(self, user_id: int) -> int | None:
        return _row(*self._users, user_id)

    def item_row(self, item_id: int) -> int | None:
        return _row(*self._items, item_id)


class ServingCache:
    """Loaded versions by id, and the last version each campaign served successfully."""

    def __init__(self, loader=None):
        self._loader = loader or services.load_version
        self._lock = threading.Lock()
        self._models: dict[int, ServedModel] = {}
        self._last_good: dict[int, int] = {}  # campaign pk -> version pk
        self._failed: dict[int, tuple[float, str]] = {}  # version pk -> (monotonic, error)
        self._loading: dict[int, threading.Lock] = {}

    # -- public -------------------------------------------------------------------------------

    def served_model(self, campaign: Campaign) -> ServedModel:
        """The model ``campaign`` serves now, or the last one that loaded (see module doc)."""
        row = _campaign_rows.get(
            campaign.pk,
            lambda: (
                Campaign.objects.filter(pk=campaign.pk)
                .values_list(
                    "name",
                    "version_id",
                    "version__recipe",
                    "version__artefact_dir",
                    "previous_version_id",
                    "previous_version__recipe",
                    "previous_version__artefact_dir",
                )
                .first()
            ),
        )
        if row is None:
            raise CampaignNotFound(f"Campaign “{campaign.name}” no longer exists.")
        name, version_id, recipe_name, artefact_dir, *previous = row
        with self._lock:
            fallback = self._models.get(self._last_good.get(campaign.pk, -1))
        if version_id is None:
            if fallback is not None:  # the version was deleted under a serving campaign
                return fallback
            raise ServingUnavailable(
                f"Campaign “{name}” serves no model version yet: deploy one on the Campaigns "
                "page (or with the API) first."
            )
        if fallback is not None and fallback.version_id == version_id:
            return fallback
        model = self._get_or_load(
            ModelVersion(pk=version_id, recipe=recipe_name, artefact_dir=artefact_dir),
            waiting_allowed=fallback is None,
        )
        if model is None:
            if fallback is not None:
                return fallback
            with self._lock:
                error = self._failed.get(version_id, (0, "it is being loaded"))[1]
            # A process that never loaded this campaign (a restart after the artefacts broke)
            # serves the campaign's previous version, as a process that had it would.
            if previous[0] is not None:
                model = self._get_or_load(
                    ModelVersion(pk=previous[0], recipe=previous[1], artefact_dir=previous[2]),
                    waiting_allowed=True,
                )
            if model is not None:
                logger.error(
                    "Campaign %s serves its previous model version %s: version %s could not "
                    "be loaded (%s).",
                    name,
                    model.version_id,
                    version_id,
                    error,
                )
                with self._lock:
                    self._last_good[campaign.pk] = model.version_id
                return model
            raise ServingUnavailable(
                f"Campaign “{name}” cannot serve: model version #{version_id} could not be "
                f"loaded ({error}) and neither an earlier version nor the campaign's previous one "
                "could be. Deploy "
                "another version or retrain."
            )
        with self._lock:
            old = self._last_good.get(campaign.pk)
            self._last_good[campaign.pk] = version_id
            if old is not None and old != version_id:
                self._evict_unused()
        if old != version_id:
            logger.info("Campaign %s now serves model version %s.", name, version_id)
        return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._last_good.clear()
            self._failed.clear()
            self._loading.clear()

    def info(self) -> dict:
        """What is loaded: for the health page and tests."""
        with self._lock:
            return {
                "versions": sorted(self._models),
                "campaigns": dict(self._last_good),
                "failed": {pk: error for pk, (_, error) in self._failed.items()},
            }

    # -- loading ------------------------------------------------------------------------------

    def _get_or_load(self, version: ModelVersion, *, waiting_allowed: bool) -> ServedModel | None:
        with self._lock:
            model = self._models.get(version.pk)
            if model is not None:
                return model
            failed = self._failed.get(version.pk)
            if failed is not None and time.monotonic() - failed[0] < RETRY_SECONDS:
                return None
            loading = self._loading.setdefault(version.pk, threading.Lock())
        # One thread loads; the others serve the fallback, or wait when they have none.
        if not loading.acquire(blocking=waiting_allowed):
            return None
        try:
            with self._lock:
                model = self._models.get(version.pk)
                if model is not None:
                    return model
                failed = self._failed.get(version.pk)
                if failed is not None and time.monotonic() - failed[0] < RETRY_SECONDS:
                    return None
            started = time.perf_counter()
            try:
                recipe, user_ids, item_ids = self._loader(version)
                index = _load_index(version, recipe)
                model = ServedModel.build(
                    version, recipe, user_ids, item_ids, time.perf_counter() - started, index
                )
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "Could not load model version %s from %s: %s",
                    version.pk,
                    version.artefact_dir,
                    error,
                )
                with self._lock:
                    self._failed[version.pk] = (time.monotonic(), error)
                return None
            with self._lock:
                self._models[version.pk] = model
                self._failed.pop(version.pk, None)
            logger.info(
                "Loaded model version %s (%s) in %.2f s.",
                version.pk,
                version.recipe,
                model.load_seconds,
            )
            return model
        finally:
            loading.release()

    def _evict_unused(self) -> None:
        """Forget versions no campaign serves any more (called with the lock held)."""
        used = set(self._last_good.values())
        for pk in [pk for pk in self._models if pk not in used]:
            del self._models[pk]
        for pk in [pk for pk in self._loading if pk not in used and not self._loading[pk].locked()]:
            del self._loading[pk]


def _load_index(version: ModelVersion, recipe) -> ItemIndex | None:
    """The version's approximate index, if training saved one; None otherwise, and when it
    cannot be read (logged: the version is then served by brute force, still correctly)."""
    factors = getattr(recipe, "item_factors_", None)
    if factors is None or not version.artefact_dir:
        return None
    try:
        return ItemIndex.load(version.artefact_dir, factors)
    except Exception as exc:  # noqa: BLE001 - brute force still serves the version
        logger.warning(
            "Model version %s: the approximate index could not be loaded (%s: %s); serving "
            "scores every item instead.",
            version.pk,
            type(exc).__name__,
            exc,
        )
        return None


_cache = ServingCache()


def served_model(campaign: Campaign) -> ServedModel:
    """The model ``campaign`` serves, from this process's cache (see the module doc)."""
    return _cache.served_model(campaign)


def cache_info() -> dict:
    return _cache.info()


def clear_cache() -> None:
    """Forget everything loaded (tests; a process that wants to free memory)."""
    _cache.clear()
    _campaign_rows.clear()
    _campaigns.clear()


def campaign_for(project: Project, name: str | None = None) -> Campaign:
    """The campaign named ``name``; without a name, the project's only or ``default`` one.

    ``CampaignNotFound`` (a 404) with a message saying what to do otherwise.
    """
    return _campaigns.get((project.pk, name or ""), lambda: _campaign_for(project, name))


def _campaign_for(project: Project, name: str | None) -> Campaign:
    if name:
        try:
            return selectors.campaign_by_name(project, name)
        except Http404 as exc:
            raise CampaignNotFound(str(exc)) from None
    campaigns = list(
        Campaign.objects.filter(project=project).order_by("name").only("pk", "name", "project")
    )
    if len(campaigns) == 1:
        return campaigns[0]
    for campaign in campaigns:
        if campaign.name == DEFAULT_CAMPAIGN_NAME:
            return campaign
    if not campaigns:
        raise CampaignNotFound(
            f"Project “{project.slug}” has no campaign yet: create one on the Campaigns page "
            "and deploy a model version to it."
        )
    raise CampaignNotFound(
        f"Project “{project.slug}” has {len(campaigns)} campaigns "
        f"({', '.join(c.name for c in campaigns)}) and none is called "
        f"“{DEFAULT_CAMPAIGN_NAME}”: name one with campaign=<name>."
    )
