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
