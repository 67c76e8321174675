"""Fixtures shared by the whole suite. Tests talk to the real database named by DATABASE_URL."""

import pytest

from datasets.services import create_project

PASSWORD = "correct-horse-battery-staple"


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
