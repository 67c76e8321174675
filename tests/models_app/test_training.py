"""Training runs end to end: service, task, artefacts, command line, pages and a real worker.

The data is a small generated demo shop imported the way users import it.
"""

import time
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import EndUser, Item
from models_app import selectors, services, training
from models_app.models import ModelVersion, Solution, TrainingRun
from tests.helpers import running_worker

SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}
FAST_ALS = {"factors": 32, "iterations": 10}


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **SHOP_SIZE)["files"]


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return tmp_path


@pytest.fixture
def shop(project, shop_files):
    job = imports.import_file(project=project, kind="interactions", path=shop_files["interactions"])
    assert job.status == "succeeded", job.error
    return project


def train_now(project, recipe, params=None, event_types=None) -> TrainingRun:
    solution = services.create_solution(
        project=project, recipe=recipe, params=params or {}, event_types=event_types
    )
    run = services.start_training(solution=solution, enqueue=False)
    return services.run_training(run)


@pytest.mark.django_db
def test_training_creates_versions_and_personalization_beats_popularity(shop):
    als = train_now(shop, "user-personalization", FAST_ALS)
    popular = train_now(shop, "popularity-count")
    for run in (als, popular):
        assert run.status == "succeeded", run.error
        assert run.duration_seconds > 0 and run.peak_memory_bytes > 10 * 2**20
        assert "Created model version" in run.log
        version = run.version
        assert version.n_interactions == SHOP_SIZE["n_interactions"]
        assert version.n_users == SHOP_SIZE["n_users"]
        for k in (5, 10, 25):
            for name in ("precision", "recall", "ndcg", "hit", "coverage", "novelty"):
                assert f"{name}@{k}" in version.metrics
        assert {"mrr@25", "diversity@10", "pop_percentile@10"} <= set(version.metrics)
        assert Path(version.artefact_dir).is_dir()
        assert Path(version.artefact_dir).parent.name == str(shop.pk)
    assert als.version.metrics["ndcg@10"] > 1.3 * popular.version.metrics["ndcg@10"]
    assert als.version.metrics["coverage@10"] > popular.version.metrics["coverage@10"]


@pytest.mark.django_db
def test_artefacts_load_back_and_give_the_same_recommendations(shop):
    run = train_now(shop, "item-knn", {"n_neighbors": 50})
    recipe, user_ids, item_ids = services.load_version(run.version)
    assert set(user_ids.tolist()) <= set(
        EndUser.objects.filter(project=shop).values_list("pk", flat=True)
    )
    assert set(item_ids.tolist()) <= set(
        Item.objects.filter(project=shop).values_list("pk", flat=True)
    )

    data = selectors.interaction_arrays(shop)
    fresh = training.train(
        recipe="item-knn",
        params={"n_neighbors": 50},
        users=data.users,
        items=data.items,
        timestamps=data.timestamps,
        event_types=data.event_types,
    )
    np.testing.assert_array_equal(fresh.user_ids, user_ids)
    rows = np.arange(20)
    expected, _ = fresh.recipe.recommend(rows, k=10)
    got, _ = recipe.recommend(rows, k=10)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.django_db
def test_bad_params_are_refused_before_any_run(shop):
    with pytest.raises(ValueError, match="no parameter 'factorz'"):
        services.create_solution(project=shop, recipe="user-personalization", params={"factorz": 1})
    with pytest.raises(ValueError, match="Unknown recipe 'nope'"):
        services.create_solution(project=shop, recipe="nope")
    solution = Solution.objects.create(project=shop, recipe="item-knn", params={"k": 3})
    with pytest.raises(ValueError, match="valid parameters: n_neighbors"):
        services.start_training(solution=solution)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_too_little_data_is_refused(project, tmp_path):
    rows = "\n".join(f"u{i % 40},i{i % 7},{1_700_000_000 + i}" for i in range(300))
    path = tmp_path / "small.csv"
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + rows + "\n")
    imports.import_file(project=project, kind="interactions", path=path)
    solution = services.create_solution(project=project, recipe="popularity-count")
    with pytest.raises(ValueError, match="300 interactions; at least 1,000 are needed"):
        services.start_training(solution=solution)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_run_failing_midway_ends_failed_and_keeps_the_previous_version(shop):
    good = train_now(shop, "popularity-count")
    failed = train_now(shop, "item-knn", {"n_neighbors": 0})  # only checked at fit time
    assert failed.status == "failed"
    assert "n_neighbors must be >= 1" in failed.error
    assert "Failed" in failed.log
    assert failed.finished_at is not None and failed.duration_seconds is not None
    assert list(ModelVersion.objects.all()) == [good.version]
    assert not (Path(services.run_dir(failed)) / "model").exists()


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_marked_failed(shop):
    solution = services.create_solution(project=shop, recipe="popularity-count")
    run = services.start_training(solution=solution, enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status="running")
    assert services.fail_stale_runs(shop) == 0  # its heartbeat is fresh
    progress = services.run_dir(run) / "progress.json"
    progress.write_text('{"phase": "running", "fraction": 0.5, "at": 0}')
    assert services.fail_stale_runs(shop) == 1
    run.refresh_from_db()
    assert run.status == "failed" and "worker stopped" in run.error
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_cancel_before_start(shop):
    solution = services.create_solution(project=shop, recipe="popularity-count")
    run = services.start_training(solution=solution, enqueue=False)
    services.request_cancel(run)
    assert run.status == "cancelled"
    run = services.run_training(run)  # the worker picks it up later: it must not train
    assert run.status == "cancelled"
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_cancel_while_running_creates_no_version(shop, monkeypatch):
    solution = services.create_solution(project=shop, recipe="popularity-count")
    run = services.start_training(solution=solution, enqueue=False)
    original = training.check_enough_data

    def check_then_cancel(users, items=None):  # a user presses Cancel after the data is read
        original(users)
        (services.run_dir(run) / "cancel").touch()

    monkeypatch.setattr(training, "check_enough_data", check_then_cancel)
    run = services.run_training(run)
    assert run.status == "cancelled"
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_command_trains_and_prints_metrics(shop, capsys):
    call_command(
        "train", "--project", shop.slug, "--recipe", "user-personalization",
        "--param", "factors=16", "--param", "iterations=5", "--event-types", "view,purchase",
        "--wait",
    )  # fmt: skip
    out = capsys.readouterr().out
    version = ModelVersion.objects.get()
    assert f"Model version #{version.pk}" in out
    assert "NDCG@10" in out and "recall@10" in out and "coverage@10" in out and "fit time" in out
    assert version.params["factors"] == 16 and version.solution.event_types == ["view", "purchase"]
    assert version.n_interactions < SHOP_SIZE["n_interactions"]

    with pytest.raises(CommandError, match="has no parameter 'nope'"):
        call_command("train", "--project", shop.slug, "--recipe", "ease", "--param", "nope=1")
    with pytest.raises(CommandError, match="Unknown recipe"):
        call_command("train", "--project", shop.slug, "--recipe", "magic", "--wait")
    call_command("train", "--project", shop.slug, "--recipe", "popularity-count")
    assert "Queued training run #" in capsys.readouterr().out


@pytest.mark.django_db
def test_pages_for_members_and_404_for_others(shop, logged_in_client, client, other_user):
    run = train_now(shop, "popularity-count")
    urls = [f"/p/{shop.slug}/models/", f"/p/{shop.slug}/models/runs/{run.pk}/"]
    for url in urls:
        response = logged_in_client.get(url)
        assert response.status_code == 200
    page = logged_in_client.get(urls[0]).content.decode()
    assert "user-personalization" in page and "NDCG@10" in page and ">Models<" in page
    assert "Created model version" in logged_in_client.get(urls[1]).content.decode()

    response = logged_in_client.post(urls[0], {"recipe": "item-knn", "params": "{oops"})
    assert response.status_code == 400 and "not valid JSON" in response.content.decode()
    response = logged_in_client.post(
        urls[0], {"recipe": "item-knn", "params": '{"n_neighbors": 20}'}
    )
    new = TrainingRun.objects.order_by("-pk").first()
    assert response.status_code == 302 and response.url.endswith(f"/models/runs/{new.pk}/")
    progress = logged_in_client.get(f"/p/{shop.slug}/models/runs/{new.pk}/progress/")
    assert progress.status_code == 200 and "Cancel training" in progress.content.decode()
    logged_in_client.post(f"/p/{shop.slug}/models/runs/{new.pk}/cancel/")
    new.refresh_from_db()
    assert new.status == "cancelled"
    logged_in_client.post(f"/p/{shop.slug}/models/runs/{new.pk}/retry/")
    assert TrainingRun.objects.filter(status="queued").count() == 1

    client.force_login(other_user)
    for url in [*urls, f"/p/{shop.slug}/models/runs/{run.pk}/progress/"]:
        assert client.get(url).status_code == 404
    assert client.post(f"/p/{shop.slug}/models/runs/{run.pk}/retry/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_trains_a_queued_run(shop, monkeypatch, settings, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "worker"))  # the worker's ARTIFACT_DIR
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)  # django-q signs tasks with it
    settings.ARTIFACT_DIR = tmp_path / "worker" / "artifacts"
    solution = services.create_solution(project=shop, recipe="item-knn")
    run = services.start_training(solution=solution)
    with running_worker():
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.is_finished:
                break
            time.sleep(0.5)
    assert run.status == "succeeded", run.error or "the worker did not finish within 90 s"
    assert run.task_id
    recipe, _, item_ids = services.load_version(run.version)
    assert recipe.n_items_ == len(item_ids)
