"""Shared fixtures of the Personalize-compatible API tests: a live server, a small shop with a
trained and deployed campaign, and boto3 clients signed with an API key's AWS credentials.

The data is built once per module and committed (the server answers from its own threads
and database connections, so it must see it), then deleted when the module ends. Tests here
run with database access unblocked and no wrapping transaction: what a test writes is
committed at once and visible to the server. Do not mark these tests ``django_db``.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from django.test import override_settings
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import ApiKey, Project
from datasets.services import create_api_key, create_project
from feeds import catalog as catalog_module
from feeds import recommending, selectors
from feeds.personalize.arns import arn_for
from feeds.personalize.auth import aws_credentials
from models_app import services, serving
from models_app.models import Campaign

# Small enough to import and train in a couple of seconds (the demo needs >= 120 items).
PERSONALIZE_SHOP = {"n_users": 150, "n_items": 120, "n_interactions": 6000, "seed": 11}
FAST_ALS = {"factors": 16, "iterations": 10, "exploration_weight": 0.0}


def _flush_served_log():
    from feeds import served_log

    flush = getattr(served_log, "flush", None)
    if flush is not None:
        flush()


def clear_serving_caches():
    serving.clear_cache()
    catalog_module.clear_cache()
    recommending.clear_caches()
    selectors.clear_popularity_cache()


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:<port>

    @property
    def endpoint(self) -> str:
        """What an SDK's ``endpoint_url`` is set to."""
        return f"{self.url}/personalize"


@contextmanager
def _test_database(django_db_blocker):
    """The test database. pytest-django creates it only when some collected test is marked
    ``django_db`` (these are not: see the module docstring); when nothing did, create it here
    for the module and destroy it afterwards."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        ready = connection.settings_dict["NAME"] == connection.creation._get_test_db_name()
        config = None if ready else setup_databases(0, False, aliases={"default"})
        try:
            yield
        finally:
            if config is not None:
                teardown_databases(config, verbosity=0)


@pytest.fixture(scope="module")
def personalize_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A live server for this module (Django's LiveServerThread on a free port), with the
    module's settings: uploads and artefacts in a temporary folder, no rate limit, serving
    caches off."""
    folder = tmp_path_factory.mktemp("personalize")
    with (
        _test_database(django_db_blocker),
        django_db_blocker.unblock(),
        override_settings(
            UPLOAD_DIR=folder / "uploads",
            ARTIFACT_DIR=folder / "artifacts",
            SERVING_CACHE_SECONDS=0,
            API_THROTTLE_RATE="off",
            SERVED_LOG_FLUSH_SECONDS=0,  # served-log rows written inline, before teardown
        ),
    ):
        # The server's threads close their database connection after each request (keep-alive
        # SDK connections would otherwise hold one open, and the test database could not be
        # dropped at the end).
        from django.db import connections

        database = connections.settings["default"]
        max_age = database.get("CONN_MAX_AGE", 0)
        database["CONN_MAX_AGE"] = 0
        thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        clear_serving_caches()
        try:
            yield LiveServer(f"http://127.0.0.1:{thread.port}")
        finally:
            thread.terminate()
            database["CONN_MAX_AGE"] = max_age
            clear_serving_caches()


@pytest.fixture(autouse=True)
def _committed_db(django_db_blocker, personalize_server, settings):
    """Database access for the test itself, in autocommit (see the module docstring)."""
    settings.SERVING_CACHE_SECONDS = 0
    settings.API_THROTTLE_RATE = "off"
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def personalize_shop_files(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("pz-shop"), **PERSONALIZE_SHOP)["files"]


@dataclass
class Shop:
    """A project with the demo shop imported, a campaign and an API key with its AWS pair."""

    project: Project
    api_key: ApiKey
    plaintext: str  # the recsite API key itself (Bearer on /api/v1/)
    access_key: str
    secret: str
    campaign: Campaign | None
    files: dict
    extra: dict = field(default_factory=dict)

    def arn(self, kind: str, name: str) -> str:
        return arn_for(kind, self.project, name)

    @property
    def campaign_arn(self) -> str:
        return self.arn("campaign", self.campaign.name)


@pytest.fixture(scope="module")
def make_personalize_shop(personalize_server, django_db_blocker, personalize_shop_files):
    """``make(name, train=True, campaign="default")`` -> Shop: a new project (own owner) with
    the small demo shop imported; with ``train``, an ALS model trained and deployed to
    ``campaign``. Everything is deleted when the module ends."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    made: list[tuple[Project, object]] = []

    def make(name: str = "pz shop", *, train: bool = True, campaign: str = "default") -> Shop:
        with django_db_blocker.unblock():
            owner = users.create_user(username=f"pz-{uuid.uuid4().hex[:10]}", password="x-pw-123")
            project = create_project(name=f"{name} {uuid.uuid4().hex[:6]}", owner=owner)
            made.append((project, owner))
            for kind in ("items", "users", "interactions"):
                job = imports.import_file(
                    project=project, kind=kind, path=personalize_shop_files[kind]
                )
                assert job.status == "succeeded", job.error
            deployed = None
            if train:
                solution = services.create_solution(
                    project=project, recipe="user-personalization", params=FAST_ALS
                )
                started = services.start_training(solution=solution, enqueue=False)
                run = services.run_training(started)
                assert run.status == "succeeded", run.error
                deployed = services.create_campaign(
                    project=project, name=campaign, version=run.version
                )
            api_key, plaintext = create_api_key(project=project, name="boto3 tests")
            access_key, secret = aws_credentials(api_key)
        return Shop(
            project, api_key, plaintext, access_key, secret, deployed, personalize_shop_files
        )

    yield make
    _flush_served_log()
    with django_db_blocker.unblock():
        for project, owner in made:
            from feeds.models import Experiment

            Experiment.objects.filter(project=project).delete()
            Campaign.objects.filter(project=project).delete()
            project.delete()
            owner.delete()
    clear_serving_caches()


@pytest.fixture(scope="module")
def personalize_shop(make_personalize_shop):
    """The module's main shop: demo data, ALS deployed to campaign ``default``."""
    return make_personalize_shop("pz shop")


@pytest.fixture(scope="module")
def boto3_client(personalize_server):
    """``boto3_client(service, access_key, secret)``: a client of the live server, signing
    with that pair, region ``local``, without retries (an error shows at once)."""
    import boto3
    from botocore.config import Config

    def make(service: str, access_key: str, secret: str, **config):
        return boto3.client(
            service,
            endpoint_url=personalize_server.endpoint,
            region_name="local",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    return make


@pytest.fixture(scope="module")
def runtime(personalize_shop, boto3_client):
    """A personalize-runtime client signed with the main shop's key."""
    return boto3_client("personalize-runtime", personalize_shop.access_key, personalize_shop.secret)
