"""Rate limits on the login page: per username and per IP address, with a lockout message."""

import re
import time

import pytest
from django.test import Client

from recsite import login_throttle
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def attempt(client, username, password="wrong password", ip="198.51.100.7"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_ten_failures_lock_the_username_even_for_the_right_password(throttle_cache, user, settings):
    settings.LOGIN_MAX_FAILURES = 10
    client = Client()
    for _ in range(9):
        response = attempt(client, user.username)
        assert response.status_code == 200
        assert b"didn't match" in response.content
    tenth = attempt(client, user.username)
    assert tenth.status_code == 429
    locked = attempt(client, user.username, PASSWORD)  # right password, still refused
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    text = locked.content.decode()
    assert "Too many failed log-ins for this username" in text
    assert re.search(r"paused for 1[45] minutes \(until \d\d:\d\d UTC\)", text), text
    assert 840 <= int(locked["Retry-After"]) <= 900
    # Another user from the same address is not affected by the username's lockout.
    other = attempt(Client(), "bob", "whatever")
    assert other.status_code == 200


def test_the_lockout_ends_when_the_failures_are_older_than_the_window(
    throttle_cache, user, settings
):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        attempt(Client(), user.username)
    assert attempt(Client(), user.username, PASSWORD).status_code == 429
    # The failures as they will look 16 minutes from now: aged out of the 15-minute window.
    key = login_throttle._key("user", user.username)
    throttle_cache.set(key, [t - 16 * 60 for t in throttle_cache.get(key)])
    client = Client()
    response = attempt(client, user.username, PASSWORD)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)


def test_a_successful_login_clears_the_usernames_failures(throttle_cache, user, settings):
    settings.LOGIN_MAX_FAILURES = 3
    attempt(Client(), user.username)
    attempt(Client(), user.username)
    assert attempt(Client(), user.username, PASSWORD).status_code == 302
    attempt(Client(), user.username)
    attempt(Client(), user.username)
    assert attempt(Client(), user.username, PASSWORD).status_code == 302


def test_one_address_trying_many_usernames_is_locked_out(throttle_cache, user, settings):
    settings.LOGIN_MAX_FAILURES = 10
    settings.LOGIN_MAX_FAILURES_PER_IP = 5
    for n in range(5):
        attempt(Client(), f"guess{n}", ip="203.0.113.9")
    response = attempt(Client(), user.username, PASSWORD, ip="203.0.113.9")
    assert response.status_code == 429
    assert "Too many failed log-ins for your network address" in response.content.decode()
    # The user can still log in from elsewhere.
    assert attempt(Client(), user.username, PASSWORD, ip="192.0.2.1").status_code == 302


def test_behind_a_proxy_the_forwarded_address_is_counted(throttle_cache, user, settings):
    settings.LOGIN_MAX_FAILURES_PER_IP = 2
    settings.BEHIND_PROXY = True
    for n in range(2):
        Client().post(
            "/login/",
            {"username": f"x{n}", "password": "no"},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR="spoofed, 203.0.113.50",
        )
    blocked = Client().post(
        "/login/",
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.50",
    )
    assert blocked.status_code == 429
    other_client = Client().post(
        "/login/",
        {"username": user.username, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.51",
    )
    assert other_client.status_code == 302


def test_the_cache_holds_no_username_or_address_in_clear(throttle_cache):
    login_throttle.record_failure("alice@example.com", "198.51.100.23")
    keys = list(throttle_cache._cache.keys())
    assert keys and not any("alice" in k or "198.51.100.23" in k for k in keys)
    assert login_throttle.lockout("alice@example.com", "198.51.100.23") is None
    assert time.time() - throttle_cache.get(login_throttle._key("user", "alice@example.com"))[0] < 5


def test_the_admin_login_form_is_the_throttled_login_page(throttle_cache, user, settings):
    settings.LOGIN_MAX_FAILURES = 2
    client = Client()
    response = client.get("/admin/")
    assert response.status_code == 302
    followed = client.get(response["Location"])
    assert followed.status_code == 302 and followed["Location"] == "/login/?next=/admin/"
    # A POST to the admin's login URL cannot check a password either.
    posted = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert posted.status_code in (301, 302) and "_auth_user_id" not in client.session
    for _ in range(2):
        attempt(client, user.username)
    assert attempt(client, user.username, PASSWORD).status_code == 429
