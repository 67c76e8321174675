"""Scheduled retraining: the django-q2 Schedule row, the task's decisions, a real scheduler.

The data is a small generated demo shop imported the way users import it.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from datasets import imports
from models_app import services, tasks
from models_app.models import ModelVersion, Solution, TrainingRun
from tests.helpers import running_worker

SHOP_SIZE = {"n_users": 200, "n_items": 120, "n_interactions": 8_000, "seed": 11}


@pytest.fixture(autouse=True)
def _own_data_dirs(data_dirs):
    return data_dirs


@pytest.fixture
def solution(shop):
    return services.create_solution(project=shop, recipe="popularity-count", name="Best sellers")


def schedules_of(solution):
    return list(Schedule.objects.filter(name=f"retrain-solution-{solution.pk}"))


def assert_close(when, expected, tolerance=timedelta(minutes=1)):
    assert abs(when - expected) < tolerance, f"{when} is not about {expected}"


@pytest.mark.django_db
def test_the_schedule_is_created_updated_and_removed(solution):
    schedule = services.set_retraining(solution, 2)
    [stored] = schedules_of(solution)
    assert stored.pk == schedule.pk
    assert stored.func == "models_app.tasks.retrain_solution"
    assert stored.args == str(solution.pk)
    assert stored.schedule_type == Schedule.MINUTES and stored.minutes == 120
    assert stored.repeats == -1
    assert_close(stored.next_run, timezone.now() + timedelta(hours=2))
    solution.refresh_from_db()
    assert solution.retrain_every_hours == 2

    services.set_retraining(solution, 24)
    [stored] = schedules_of(solution)
    assert stored.pk == schedule.pk, "the schedule is updated, not duplicated"
    assert stored.minutes == 24 * 60
    assert_close(stored.next_run, timezone.now() + timedelta(hours=24))

    # Setting the interval it already has keeps the next run where it was.
    Schedule.objects.filter(pk=stored.pk).update(next_run=timezone.now() + timedelta(hours=5))
    services.set_retraining(solution, "24")
    [again] = schedules_of(solution)
    assert_close(again.next_run, timezone.now() + timedelta(hours=5))

    assert services.set_retraining(solution, None) is None
    assert schedules_of(solution) == []
    solution.refresh_from_db()
    assert solution.retrain_every_hours is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "every 5 hours is not offered; choose one of 1, 2, 3, 6, 12, 24, 168"),
        (0, "every 0 hours is not offered"),
        ("soon", "'soon' is not a number of hours"),
    ],
)
def test_intervals_that_are_not_offered_are_refused(solution, value, message):
    services.set_retraining(solution, 6)
    with pytest.raises(ValueError, match=message):
        services.set_retraining(solution, value)
    [stored] = schedules_of(solution)
    assert stored.minutes == 360, "a refused change leaves the schedule as it was"
    solution.refresh_from_db()
    assert solution.retrain_every_hours == 6


@pytest.mark.django_db
def test_each_solution_has_its_own_schedule_and_deleting_one_removes_it(shop, solution):
    other = services.create_solution(project=shop, recipe="item-knn")
    services.set_retraining(solution, 1)
    services.set_retraining(other, 168)
    assert schedules_of(other)[0].minutes == 168 * 60
    services.delete_solution(solution)
    assert schedules_of(solution) == []
    assert len(schedules_of(other)) == 1


@pytest.mark.django_db
def test_the_task_queues_a_run_and_skips_while_one_is_queued_or_running(
    solution, django_capture_on_commit_callbacks
):
    services.set_retraining(solution, 2)
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.retrain_solution(solution.pk)
    run = TrainingRun.objects.get(solution=solution)
    assert f"training run #{run.pk} queued" in result
    assert run.status == "queued" and run.created_by is None
    assert "Scheduled retraining (every 2 h)" in services.read_log(run)
    assert OrmQ.objects.count() == 1, "the run was handed to the worker queue"

    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.retrain_solution(solution.pk)
    assert f"training run #{run.pk} is still queued" in result
    assert TrainingRun.objects.filter(solution=solution).count() == 1

    TrainingRun.objects.filter(pk=run.pk).update(status="running")  # heartbeat is fresh
    result = tasks.retrain_solution(solution.pk)
    assert f"training run #{run.pk} is still running" in result
    assert TrainingRun.objects.filter(solution=solution).count() == 1

    TrainingRun.objects.filter(pk=run.pk).update(status="queued")
    finished = services.run_training(run)
    assert finished.status == "succeeded", finished.error
    assert "Scheduled retraining" in finished.log, "the mark survives into the stored log"
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.retrain_solution(solution.pk)
    assert TrainingRun.objects.filter(solution=solution).count() == 2
    assert "queued" in result


@pytest.mark.django_db
def test_a_run_whose_worker_died_does_not_block_the_schedule(
    solution, django_capture_on_commit_callbacks
):
    services.set_retraining(solution, 1)
    dead = services.start_training(solution=solution, enqueue=False)
    TrainingRun.objects.filter(pk=dead.pk).update(status="running")
    (services.run_dir(dead) / "progress.json").write_text('{"phase": "running", "at": 0}')
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.retrain_solution(solution.pk)
    dead.refresh_from_db()
    assert dead.status == "failed"
    assert "queued" in result and "skipped" not in result
    assert TrainingRun.objects.filter(solution=solution, status="queued").count() == 1


@pytest.mark.django_db
def test_the_task_skips_when_the_data_check_fails(project, tmp_path):
    rows = "\n".join(f"u{i % 40},i{i % 7},{1_700_000_000 + i}" for i in range(300))
    path = tmp_path / "small.csv"
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + rows + "\n")
    imports.import_file(project=project, kind="interactions", path=path)
    solution = services.create_solution(project=project, recipe="popularity-count")
    services.set_retraining(solution, 3)
    result = tasks.retrain_solution(solution.pk)
    assert "skipped: Not enough data to train: the project has 300 interactions" in result
    assert not TrainingRun.objects.exists()
    assert len(schedules_of(solution)) == 1, "the schedule stays: data may arrive later"


@pytest.mark.django_db
def test_the_task_removes_the_schedule_of_a_solution_that_is_gone_or_turned_off(solution):
    services.set_retraining(solution, 2)
    Solution.objects.filter(pk=solution.pk).update(retrain_every_hours=None)
    result = tasks.retrain_solution(solution.pk)
    assert "has retraining turned off; schedule removed" in result
    assert schedules_of(solution) == []

    services.set_retraining(solution, 2)
    pk = solution.pk
    Solution.objects.filter(pk=pk).delete()  # e.g. its project was deleted
    result = tasks.retrain_solution(pk)
    assert f"solution {pk} no longer exists" in result
    assert not Schedule.objects.filter(name=f"retrain-solution-{pk}").exists()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_of_a_real_worker_retrains_the_solution(
    shop, monkeypatch, settings, tmp_path
):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "worker"))  # the worker's ARTIFACT_DIR
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)  # django-q signs tasks with it
    settings.ARTIFACT_DIR = tmp_path / "worker" / "artifacts"
    solution = services.create_solution(project=shop, recipe="popularity-count")
    schedule = services.set_retraining(solution, 1)
    # Due a minute ago: the cluster's scheduler (it looks every ~30 s) fires it at once.
    Schedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(minutes=1))
    version = None
    with running_worker():
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and version is None:
            version = ModelVersion.objects.filter(solution=solution).first()
            time.sleep(0.5)
    assert version is not None, "the scheduler did not retrain the solution within 150 s"
    run = version.run
    assert run.status == "succeeded" and run.created_by is None
    assert "Scheduled retraining (every 1 h)" in run.log
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now() + timedelta(minutes=55), "next run moved on"
    assert schedule.task, "django-q2 recorded the task it created"
    assert TrainingRun.objects.filter(solution=solution).count() == 1
