"""The django-q2 worker really runs tasks: a ping enqueued here comes back from a qcluster."""

import os
import time

import pytest
from django_q.tasks import async_task, fetch

from tests.helpers import running_worker


@pytest.mark.django_db(transaction=True)
def test_a_task_round_trips_through_a_real_worker():
    with running_worker():
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
