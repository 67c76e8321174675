"""Users' newest events, kept in each web process and forgotten as soon as they change.

Every recommendation reads the user's newest events (real-time updates, exclusions, reasons):
one round trip that cost about a sixth of the request's CPU in the web process and the
database together (docs/benchmarks.md). Returning users are common (an app asks for its home
feed, then a product page's related items, then a cart's re-ranking), so each process keeps
the histories it read, up to ``USER_HISTORY_CACHE_USERS`` users (least recently used first
out), and PostgreSQL tells it whose events changed:

- every write of events (the events API, PutEvents, imports, deletions: datasets/store.py)
  sends a NOTIFY naming the users, delivered to every process when the transaction commits;
- a thread per process LISTENs on its own connection and forgets those users at once (the
  writing process also forgets them right after its commit, by the ``events_changed`` signal);
- a history read while a change was being announced is not kept (a generation counter), so a
  slow read cannot put back what a notice just removed.

So an event changes that user's next recommendation in every process within the notice's
delivery time (milliseconds), as without the cache. When the listening connection is down,
nothing is cached or served from the cache (every request asks the database, as before) until
it listens again, with an empty cache. Entries also expire after ``USER_HISTORY_CACHE_SECONDS``
(default 300), a bound on staleness if events are written around recsite (psql straight into
the table sends no notice).

Only PostgreSQL has LISTEN/NOTIFY: on SQLite, inside a transaction (tests, ATOMIC_REQUESTS)
and with ``USER_HISTORY_CACHE_USERS = 0`` every call reads the database. Users without events
are not kept (their first event could not be matched: notices carry internal user ids).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from datasets.signals import events_changed
from datasets.store import EVENTS_CHANGED_CHANNEL

logger = logging.getLogger(__name__)

DEFAULT_USERS = 5000
DEFAULT_SECONDS = 300.0
# The listener wakes up this often to see whether it should stop, checks its connection this
# often, and waits this long before listening again after losing it.
WAKE_SECONDS = 0.5
CHECK_SECONDS = 5.0
RETRY_SECONDS = 1.0


def capacity() -> int:
    return int(getattr(settings, "USER_HISTORY_CACHE_USERS", DEFAULT_USERS) or 0)


def max_age() -> float:
    return float(getattr(settings, "USER_HISTORY_CACHE_SECONDS", DEFAULT_SECONDS) or 0)


class HistoryCache:
    """(project id, user's external id) -> History, in one process."""

    def __init__(self):
        self._entries: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (history, stored at)
        self._keys_of_user: dict[tuple, tuple] = {}  # (project id, user pk) -> key
        self._lock = threading.Lock()
        self._generation = 0  # +1 at every forgetting
        self._listening = False
        self._pid = None
        self._token: object | None = None
        self._thread: threading.Thread | None = None
        self.hits = 0

    # -- reading ------------------------------------------------------------------------------
    def get(self, project_id: int, external_id: str, load: Callable):
        """The history, from memory when it is there and still valid, else ``load()``."""
        if not self._usable():
            return load()
        key = (project_id, external_id)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[1] < max_age():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            generation = self._generation
        history = load()
        if history.user_pk is None:
            return history
        _freeze(history)
        with self._lock:
            if self._generation == generation and self._listening:
                self._entries[key] = (history, now)
                self._entries.move_to_end(key)
                self._keys_of_user[(project_id, history.user_pk)] = key
                while len(self._entries) > capacity():
                    old_key, (old, _) = self._entries.popitem(last=False)
                    self._keys_of_user.pop((old_key[0], old.user_pk), None)
        return history

    def _usable(self) -> bool:
        if capacity() <= 0 or connection.vendor != "postgresql" or connection.in_atomic_block:
            return False
        if self._pid != os.getpid():  # first use in this process (or after a fork)
            self._start_listening()
        return self._listening

    # -- forgetting ---------------------------------------------------------------------------
    def forget(self, project_id: int, user_ids: list[int] | None) -> None:
        """Forget these users (internal ids) of the project; None: all its users."""
        with self._lock:
            self._generation += 1
            if user_ids is None:
                for key in [k for k in self._keys_of_user if k[0] == project_id]:
                    self._entries.pop(self._keys_of_user.pop(key), None)
                return
            for user_id in user_ids:
                key = self._keys_of_user.pop((project_id, user_id), None)
                if key is not None:
                    self._entries.pop(key, None)

    def forget_payload(self, payload: str) -> None:
        """A notice's payload: "<project id>:<user id>,..." or "<project id>:*"."""
        project, _, users = payload.partition(":")
        try:
            self.forget(int(project), None if users == "*" else [int(u) for u in users.split(",")])
        except ValueError:
            logger.warning("Ignored a malformed events-changed notice %r.", payload[:100])

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._keys_of_user.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # -- listening ----------------------------------------------------------------------------
    def _start_listening(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._listening = False
        self.clear()  # what a parent process kept
        self._token = token = object()  # this listener runs while it is the current one
        self._thread = threading.Thread(
            target=self._listen,
            args=(listener_connection_params(), token),
            name="history-cache-listener",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and forget everything (tests, before their database is dropped);
        the next use starts listening again."""
        self._pid = self._token = None
        self._listening = False
        self.clear()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)

    def _listen(self, params: dict, token: object) -> None:
        import psycopg

        while self._token is token:
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANGED_CHANNEL}")
                    self.clear()  # whatever changed while nobody listened
                    self._listening = self._token is token
                    checked = time.monotonic()
                    while self._token is token:
                        for notice in conn.notifies(timeout=WAKE_SECONDS):
                            self.forget_payload(notice.payload)
                        if time.monotonic() - checked > CHECK_SECONDS:
                            conn.execute("SELECT 1")  # still connected (raises if not)
                            checked = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the listener must outlive any error
                if self._listening:
                    logger.warning(
                        "Lost the events-changed notices (%s: %s); reading users' events "
                        "from the database until listening again.",
                        type(exc).__name__,
                        exc,
                    )
                if self._token is token:
                    self._listening = False
                    self.clear()
                time.sleep(RETRY_SECONDS)


def listener_connection_params() -> dict:
    """psycopg.connect() arguments for a connection of its own to Django's database (read in
    the calling thread): Django's own cursor class and adapters are for its connection."""
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if k not in ("cursor_factory", "context")}


def _freeze(history) -> None:
    """Kept histories are shared by requests: make their arrays read-only."""
    for array in (history.item_ids, history.event_types, history.timestamps, history.event_values):
        array.flags.writeable = False


cache = HistoryCache()


def _forget_after_commit(sender, project_id, user_ids, **kwargs):
    cache.forget(project_id, user_ids)


events_changed.connect(_forget_after_commit, dispatch_uid="feeds.history_cache")
