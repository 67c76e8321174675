"""Fault drill: the worker is killed in the middle of a large import.

The old data must stay exactly as it was, the job must end up failed with a reason, and a
retry must succeed. The worker is a real ``qcluster`` and is killed with SIGKILL.
"""

import time

import pytest

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import ImportJob, Interaction
from datasets.services import create_project
from tests.helpers import kill_worker, running_worker


@pytest.fixture
def shop_files(tmp_path):
    return generate_demo_shop(tmp_path / "shop", n_users=3000, n_items=1000, n_interactions=400_000)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_killing_the_worker_mid_import_loses_nothing_and_retry_works(user, shop_files, tmp_path):
    project = create_project(name="Drill", owner=user)
    old = tmp_path / "old.csv"
    old.write_text("USER_ID,ITEM_ID,TIMESTAMP\nold-user,old-item,1700000000\n")
    assert imports.import_file(project=project, kind="interactions", path=old).status == "succeeded"

    job = imports.create_from_path(
        project=project, kind="interactions", path=shop_files["files"]["interactions"]
    )
    imports.configure(job=job, mapping=job.mapping, mode="full")
    with running_worker() as worker:
        imports.queue_import(job)
        # Wait until the worker is inside the load transaction and has written rows.
        wait_for(
            lambda: (
                imports.read_progress(job).get("phase") == "loading"
                and imports.read_progress(job).get("rows", 0) > 0
            ),
            timeout=120,
            what="the import to start loading",
        )
        kill_worker(worker)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING  # nobody has noticed yet
    assert list(
        Interaction.objects.filter(project=project).values_list("timestamp", flat=True)
    ) == [1700000000], "the killed full import must not have replaced or added anything"

    assert imports.fail_stale_jobs(project, stale_after=0) == 1
    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "worker stopped" in job.error and "Nothing was changed" in job.error

    with running_worker():
        retried = imports.retry(job, user=user)
        wait_for(
            lambda: ImportJob.objects.get(pk=retried.pk).is_finished,
            timeout=180,
            what="the retried import to finish",
        )
    retried.refresh_from_db()
    assert retried.status == ImportJob.Status.SUCCEEDED, retried.error
    report = retried.report
    assert report["accepted"] + report["duplicates"] == 400_000
    assert Interaction.objects.filter(project=project).count() == report["accepted"]
