"""Users' newest events kept per process (feeds/history_cache.py), forgotten on PostgreSQL's
notices: against the real database, with the real listener thread."""

import time

import psycopg
import pytest
from django.db import connection

from datasets import services as dataset_services
from datasets import store
from feeds import history_cache, selectors
from feeds.history_cache import cache

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"
)


@pytest.fixture(autouse=True)
def history_cache_on(settings):
    settings.USER_HISTORY_CACHE_USERS = 100
    settings.USER_HISTORY_CACHE_SECONDS = 300
    cache.stop()
    yield
    cache.stop()  # its connection must not outlive the test database


def send_events(project, *users):
    result = dataset_services.record_events(
        project=project,
        events=[
            {"user_id": u, "item_id": f"i{n}", "event_type": "view"} for n, u in enumerate(users)
        ],
    )
    assert result.accepted == len(users), result.rejected


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def listening(project, user="u1"):
    """Start the listener (the first read does) and wait until it listens."""
    selectors.user_history(project, user)
    assert wait_until(lambda: cache._listening), "the listener did not start"


def database_connection():
    return psycopg.connect(**history_cache.listener_connection_params(), autocommit=True)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_returning_user_is_answered_from_memory_until_their_events_change(project):
    send_events(project, "u1", "u1")
    listening(project)
    first = selectors.user_history(project, "u1")
    hits = cache.hits
    again = selectors.user_history(project, "u1")
    assert again is first and cache.hits == hits + 1 and len(first) == 2
    with pytest.raises(ValueError):
        first.item_ids[0] = 0  # shared by requests: read-only

    send_events(project, "u1")  # this process forgets u1 as the transaction commits
    after = selectors.user_history(project, "u1")
    assert after is not first and len(after) == 3


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_notice_from_another_process_makes_every_process_forget_the_user(project):
    send_events(project, "u1", "u2")
    listening(project)
    u1 = selectors.user_history(project, "u1")
    u2 = selectors.user_history(project, "u2")
    assert selectors.user_history(project, "u1") is u1
    # Another web process wrote u1's events: only the notice reaches this one.
    with database_connection() as other:
        other.execute(
            "SELECT pg_notify(%s, %s)", [store.EVENTS_CHANGED_CHANNEL, f"{project.pk}:{u1.user_pk}"]
        )
    assert wait_until(lambda: selectors.user_history(project, "u1") is not u1)
    assert selectors.user_history(project, "u2") is u2  # the others stay

    with database_connection() as other:
        other.execute("SELECT pg_notify(%s, %s)", [store.EVENTS_CHANGED_CHANNEL, f"{project.pk}:*"])
    assert wait_until(lambda: len(cache) == 0)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_writes_announce_the_users_whose_events_changed(project, monkeypatch):
    send_events(project, "u1")
    with database_connection() as listener:
        listener.execute(f"LISTEN {store.EVENTS_CHANGED_CHANNEL}")
        send_events(project, "u1", "u2")
        monkeypatch.setattr(store, "NOTIFY_MAX_USERS", 1)
        send_events(project, "u1", "u3")  # more users than a notice names: all of them
        store.delete_interactions(project.pk)
        notices = [n.payload for n in listener.notifies(timeout=2, stop_after=3)]
    user_pks = dict(project.end_users.values_list("external_id", "pk"))
    u1, u2 = sorted([user_pks["u1"], user_pks["u2"]])
    assert notices == [f"{project.pk}:{u1},{u2}", f"{project.pk}:*", f"{project.pk}:*"]


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_read_overtaken_by_a_notice_is_not_kept(project):
    send_events(project, "u1")
    listening(project, "u2")
    user_pk = project.end_users.get(external_id="u1").pk

    def slow_read():
        history = selectors._read_history(project, "u1")
        cache.forget(project.pk, [user_pk])  # a notice arrives while the query runs
        return history

    cache.get(project.pk, "u1", slow_read)
    assert len(cache) == 0
    kept = cache.get(project.pk, "u1", lambda: selectors._read_history(project, "u1"))
    assert len(cache) == 1 and cache.get(project.pk, "u1", None) is kept


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_without_its_notices_the_cache_is_not_used_until_it_listens_again(project, caplog):
    send_events(project, "u1")
    listening(project)
    selectors.user_history(project, "u1")
    assert len(cache) == 1
    with database_connection() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
            [f"LISTEN {store.EVENTS_CHANGED_CHANNEL}"],
        )
    assert wait_until(lambda: not cache._listening)
    assert len(cache) == 0
    assert selectors.user_history(project, "u1") is not selectors.user_history(project, "u1")
    assert "Lost the events-changed notices" in caplog.text
    assert wait_until(lambda: cache._listening)  # it listens again, from an empty cache
    first = selectors.user_history(project, "u1")
    assert selectors.user_history(project, "u1") is first


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_cache_keeps_the_most_recently_used_users_for_a_while(project, settings):
    settings.USER_HISTORY_CACHE_USERS = 2
    send_events(project, "u1", "u2", "u3")
    listening(project, "u0")  # unknown users (no events) are not kept
    assert len(cache) == 0
    u1 = selectors.user_history(project, "u1")
    selectors.user_history(project, "u2")
    assert selectors.user_history(project, "u1") is u1  # u1 used last: u2 goes first
    selectors.user_history(project, "u3")
    assert len(cache) == 2 and selectors.user_history(project, "u1") is u1
    settings.USER_HISTORY_CACHE_SECONDS = 0.05
    time.sleep(0.1)
    assert selectors.user_history(project, "u1") is not u1  # expired


@pytest.mark.django_db
def test_inside_a_transaction_and_on_sqlite_every_read_asks_the_database(project):
    send_events(project, "u1")
    reads = []

    def read():
        reads.append(1)
        return selectors._read_history(project, "u1")

    cache.get(project.pk, "u1", read)
    cache.get(project.pk, "u1", read)
    assert len(reads) == 2 and len(cache) == 0


@pytest.mark.django_db
def test_a_malformed_notice_is_ignored(caplog):
    cache.forget_payload("not a notice")
    assert "malformed" in caplog.text
    assert history_cache.capacity() == 100
