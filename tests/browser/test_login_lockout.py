"""The login page in a real browser: after too many failures it says when to try again."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD


@pytest.fixture
def throttle_cache(settings):
    """A throttle cache of this test's own (as in tests/security/conftest.py)."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-{uuid.uuid4()}",
        },
    }


def test_the_lockout_message_says_when_to_retry(page, user, screenshot, throttle_cache, settings):
    settings.LOGIN_MAX_FAILURES = 3
    page.goto("/login/")
    for _ in range(2):
        page.fill("#id_username", user.username)
        page.fill("#id_password", "wrong password")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_contain_text("didn't match")
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    alert = page.locator("#login-lockout")
    expect(alert).to_contain_text("Too many failed log-ins for this username")
    expect(alert).to_have_text(re.compile(r"paused for 1[45] minutes \(until \d\d:\d\d UTC\)"))
    expect(page.locator("#id_username")).to_have_value(user.username)
    path = screenshot("login-lockout")
    assert path.stat().st_size > 5_000

    # Even the right password is refused until then.
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#login-lockout")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login/$"))
