"""The database is unreachable: API and pages answer 503 with Retry-After, never a 500.

No server is killed here: the connection's target is swapped for one that really refuses
(PostgreSQL: a closed port on 127.0.0.1; SQLite: a file in a folder that does not exist), so
the driver raises its real OperationalError. The end-to-end drill that stops and restarts
PostgreSQL under load is tests/drills/test_database_restart.py.
"""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager

import pytest
from django.db import connections

from datasets.models import Interaction
from datasets.services import create_api_key

pytestmark = pytest.mark.django_db(transaction=True)  # the connection is closed and reopened


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens once the socket is closed


@contextmanager
def database_unreachable():
    connection = connections["default"]
    connection.close()
    saved = dict(connection.settings_dict)
    if connection.vendor == "postgresql":
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
    else:
        connection.settings_dict["NAME"] = "/nonexistent-recsite-folder/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.fixture
def api_key(project, user):
    return create_api_key(project=project, name="outage", created_by=user)[1]


def post_events(client, key, session_id, n=3):
    events = [
        {"user_id": f"u{i}", "item_id": f"i{i}", "event_type": "view", "session_id": session_id}
        for i in range(n)
    ]
    return client.post(
        "/api/v1/events",
        data=json.dumps({"events": events}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def assert_api_503(response):
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "database_unavailable"
    assert "database is unavailable" in error["message"] and "Retry" in error["message"]
    assert int(response["Retry-After"]) > 0


def assert_page_503(response):
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    page = response.content.decode()
    assert "The database is unavailable" in page and "Reload this page" in page


def test_api_answers_503_json_while_the_database_is_unreachable_and_recovers(client, api_key):
    with database_unreachable():
        write = post_events(client, api_key, "during-outage")
        read = client.get(
            "/api/v1/recommendations",
            {"user_id": "u1"},
            HTTP_AUTHORIZATION=f"Bearer {api_key}",
        )
        health = client.get("/healthz")
    assert_api_503(write)
    assert_api_503(read)
    assert health.status_code == 503

    again = post_events(client, api_key, "after-outage")
    assert again.status_code == 200, again.content
    assert again.json()["accepted"] == 3
    assert Interaction.objects.filter(session_id="after-outage").count() == 3
    assert not Interaction.objects.filter(session_id="during-outage").exists()


def test_an_unknown_key_cannot_be_checked_either_so_it_is_503_not_401(client, api_key):
    well_formed_but_unknown = api_key.rsplit("_", 1)[0] + "_" + "A" * 43
    with database_unreachable():
        response = client.get(
            "/api/v1/feeds/home", HTTP_AUTHORIZATION=f"Bearer {well_formed_but_unknown}"
        )
    assert_api_503(response)


def test_a_page_answers_a_503_page_when_the_session_cannot_be_loaded(logged_in_client):
    # The logged-in user's session is read by middleware, before any view runs.
    logged_in_client.raise_request_exception = False
    with database_unreachable():
        response = logged_in_client.get("/")
    assert_page_503(response)
    assert logged_in_client.get("/").status_code == 200


def test_a_page_view_that_reads_the_database_answers_503(client):
    client.raise_request_exception = False
    with database_unreachable():
        response = client.post("/login/", {"username": "alice", "password": "whatever"})
    assert_page_503(response)


def test_other_server_errors_are_still_500(client, api_key, monkeypatch):
    from datasets import authentication

    def broken(presented):
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(authentication, "matching_api_key", broken)
    response = client.get("/api/v1/recommendations", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"


def test_a_program_asking_for_json_outside_api_gets_the_json_error(logged_in_client):
    logged_in_client.raise_request_exception = False
    with database_unreachable():
        response = logged_in_client.get("/", HTTP_ACCEPT="application/json")
    assert_api_503(response)
