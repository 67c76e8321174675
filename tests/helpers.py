"""Helpers for tests that start subprocesses against the test database."""

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_subprocess() -> str:
    """A URL for the database the tests are using, for subprocesses (workers, servers)."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or ""
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    host = conf.get("HOST") or "localhost"
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{conf['NAME']}"


@contextmanager
def running_worker():
    """A real django-q2 cluster (``manage.py qcluster``) on the test database."""
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "Q_WORKERS": "1"}
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the whole cluster can be killed
        )
        try:
            yield worker
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    kill_worker(worker)


def kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL the cluster and every process it forked, as an OOM killer or a crash would."""
    with suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


@contextmanager
def committed_shop(django_db_blocker, folder, files, build=None):
    """Owner "shop-owner" (not "alice": the module's tests may still make her) and the project
    "Shoe shop" with the generated shop ``files`` (items, users, interactions) imported, plus
    whatever ``build(project)`` adds (trained models, campaigns), committed outside the tests'
    transactions: a module-scoped fixture builds it once instead of once per test, and each
    test's own changes are still rolled back. Uploads and artefacts go to ``folder``. Yields
    ``(owner, project, built)``; both are deleted at exit."""
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from datasets import imports
    from datasets.services import create_project
    from tests.conftest import PASSWORD

    with django_db_blocker.unblock():
        owner = get_user_model().objects.create_user(username="shop-owner", password=PASSWORD)
        project = create_project(name="Shoe shop", owner=owner)
    try:
        with (
            django_db_blocker.unblock(),
            override_settings(UPLOAD_DIR=folder / "uploads", ARTIFACT_DIR=folder / "artifacts"),
        ):
            for kind in ("items", "users", "interactions"):
                job = imports.import_file(project=project, kind=kind, path=files[kind])
                assert job.status == "succeeded", (kind, job.error)
            built = build(project) if build else None
        yield owner, project, built
    finally:
        with django_db_blocker.unblock():
            project.delete()
            owner.delete()


def clear_serving_caches() -> None:
    """Forget what serving keeps per process: loaded models, catalogues, compiled filters,
    popularity and feed scroll sessions (a test then sees the database as a new process would)."""
    from feeds import catalog, feeds, recommending, selectors
    from models_app import serving

    serving.clear_cache()
    catalog.clear_cache()
    recommending.clear_caches()
    selectors.clear_popularity_cache()
    feeds.clear_sessions()
