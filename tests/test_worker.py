"""The django-q2 worker really runs tasks: a ping enqueued here comes back from a qcluster."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django_q.tasks import async_task, fetch

from tests.helpers import database_url_for_subprocess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_a_task_round_trips_through_a_real_worker():
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "Q_WORKERS": "1"}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        task_id = async_task("recsite.tasks.ping", "hello")
        deadline = time.monotonic() + 90
        task = None
        while time.monotonic() < deadline and task is None:
            task = fetch(task_id)
            time.sleep(0.5)
        assert task is not None, "the worker did not run the task within 90 s"
        assert task.success
        assert task.result["payload"] == "hello"
        assert task.result["worker_pid"] != os.getpid()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
