"""Fixtures shared by the whole suite. Tests talk to the real database named by DATABASE_URL."""

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """The production hasher (PBKDF2, a million rounds: ~0.2 s a password) was most of the
    setup time of the many tests that create a user; tests hash with MD5. The production
    hashers stay listed, so a password hashed by a subprocess still checks."""
    hashers = ["django.contrib.auth.hashers.MD5PasswordHasher", *django_settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(autouse=True)
def _serving_reads_the_database(settings):
    """Tests change campaigns and promotions and expect the next request to see it at once,
    and find a response's served-log row as soon as the response is back."""
    settings.SERVING_CACHE_SECONDS = 0
    settings.SERVED_LOG_FLUSH_SECONDS = 0
    settings.USER_HISTORY_CACHE_USERS = 0  # tests/feeds/test_history_cache.py turns it on


@pytest.fixture
def make_user(django_user_model):
    def make(username="alice", **extra):
        return django_user_model.objects.create_user(username=username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def project(user):
    return create_project(name="Shoe shop", owner=user)


@pytest.fixture
def logged_in_client(client, user):
    client.force_login(user)
    return client


# A small generated shop; a test module sets ``SHOP_SIZE`` to choose another size.
DEFAULT_SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}


@pytest.fixture(scope="module")
def shop_files(request, tmp_path_factory):
    size = getattr(request.module, "SHOP_SIZE", DEFAULT_SHOP_SIZE)
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **size)["files"]


@pytest.fixture
def data_dirs(settings, tmp_path):
    """Uploads and artefacts of this test in its own temporary folder."""
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return tmp_path


@pytest.fixture
def fresh_serving(settings, data_dirs):
    """Serving's per-process caches empty before and after the test, no API rate limit."""
    from tests.helpers import clear_serving_caches

    settings.API_THROTTLE_RATE = "off"
    clear_serving_caches()
    yield
    clear_serving_caches()


@pytest.fixture
def shop(project, shop_files):
    """``project`` with the generated shop's interactions imported."""
    job = imports.import_file(project=project, kind="interactions", path=shop_files["interactions"])
    assert job.status == "succeeded", job.error
    return project
