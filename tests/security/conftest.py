"""Fixtures of the security tests."""

import uuid

import pytest


@pytest.fixture
def throttle_cache(settings):
    """A throttle cache of this test's own, so counts from other tests or runs never leak in."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-{uuid.uuid4()}",
        },
    }
    from django.core.cache import caches

    return caches["throttle"]
