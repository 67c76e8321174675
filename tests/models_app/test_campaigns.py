"""Campaigns: deploy, switch, roll back, history, auto-deploy, the serving cache and pages.

Model versions come from real training runs on a small generated demo shop.
"""

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import Membership
from datasets.services import create_project
from models_app import selectors, services, serving
from models_app.models import Campaign, CampaignDeployment, ModelVersion, Solution, TrainingRun
from tests.helpers import kill_worker, running_worker

SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}
FAST_ALS = {"factors": 32, "iterations": 10}


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **SHOP_SIZE)["files"]


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    serving.clear_cache()
    yield tmp_path
    serving.clear_cache()


def _import_shop(project, shop_files):
    job = imports.import_file(project=project, kind="interactions", path=shop_files["interactions"])
    assert job.status == "succeeded", job.error
    return project


@pytest.fixture
def shop(project, shop_files):
    return _import_shop(project, shop_files)


def train(solution) -> ModelVersion:
    run = services.start_training(solution=solution, enqueue=False)
    run = services.run_training(run)
    assert run.status == "succeeded", run.error
    return run.version


def train_recipe(project, recipe, params=None) -> ModelVersion:
    return train(services.create_solution(project=project, recipe=recipe, params=params or {}))


@pytest.fixture
def versions(shop):
    """Two versions of different recipes: popularity (v1) and item-knn (v2)."""
    return train_recipe(shop, "popularity-count"), train_recipe(shop, "item-knn")


def actions(campaign):
    return [
        (d.action, d.version_id, d.previous_version_id)
        for d in CampaignDeployment.objects.filter(campaign=campaign).order_by("pk")
    ]


# --- services --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_deploy_switch_roll_back_and_history(shop, versions, user):
    v1, v2 = versions
    campaign = services.create_campaign(shop, "home-page", version=v1, user=user)
    assert (campaign.version_id, campaign.previous_version_id) == (v1.pk, None)

    services.deploy(campaign, v2, user=user)
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v2.pk, v1.pk)

    services.rollback(campaign, user=user)
    assert (campaign.version_id, campaign.previous_version_id) == (v1.pk, v2.pk)
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v1.pk, v2.pk)

    services.rollback(campaign, user=user)  # rolling back a rollback returns to v2
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v2.pk, v1.pk)

    with pytest.raises(ValueError, match=f"already serves version #{v2.pk}"):
        services.deploy(campaign, v2, user=user)

    assert actions(campaign) == [
        ("deploy", v1.pk, None),
        ("deploy", v2.pk, v1.pk),
        ("rollback", v1.pk, v2.pk),
        ("rollback", v2.pk, v1.pk),
    ]
    history = selectors.campaign_history(shop, campaign)
    assert [d.user for d in history] == [user] * 4
    assert history[0].action == "rollback" and history[0].version_id == v2.pk  # newest first


@pytest.mark.django_db
def test_campaign_names_and_solutions_are_checked(shop, versions, other_user):
    services.create_campaign(shop, "home-page")
    for name, message in [
        ("", "needs a name"),
        ("home page", "not a valid campaign name"),
        ("home-page", "already has a campaign named “home-page”"),
        ("x" * 61, "use at most 60"),
    ]:
        with pytest.raises(ValueError, match=message):
            services.create_campaign(shop, name)
    with pytest.raises(ValueError, match="Auto-deploy needs a solution"):
        services.create_campaign(shop, "auto", auto_deploy=True)
    other = create_project(name="Other shop", owner=other_user)
    foreign = Solution.objects.create(project=other, recipe="popularity-count")
    with pytest.raises(ValueError, match="belongs to another project"):
        services.create_campaign(shop, "foreign", solution=foreign)
    assert list(Campaign.objects.values_list("name", flat=True)) == ["home-page"]

    campaign = Campaign.objects.get()
    with pytest.raises(ValueError, match="Auto-deploy needs a solution"):
        services.update_campaign(campaign, auto_deploy=True)
    services.update_campaign(
        campaign, solution=versions[1].solution, auto_deploy=True, description="  Home  "
    )
    campaign.refresh_from_db()
    assert campaign.auto_deploy and campaign.solution == versions[1].solution
    assert campaign.description == "Home"
    services.delete_campaign(campaign)
    assert not Campaign.objects.exists() and ModelVersion.objects.count() == 2


@pytest.mark.django_db
def test_nothing_to_roll_back_to(shop, versions):
    campaign = services.create_campaign(shop, "empty")
    with pytest.raises(ValueError, match="nothing to roll back to"):
        services.rollback(campaign)
    services.deploy(campaign, versions[0])
    with pytest.raises(ValueError, match="nothing to roll back to"):
        services.rollback(campaign)
    campaign.refresh_from_db()
    assert campaign.version == versions[0]


@pytest.mark.django_db
def test_deploy_refuses_another_projects_version(shop, versions, shop_files, other_user):
    other = _import_shop(create_project(name="Other shop", owner=other_user), shop_files)
    foreign = train_recipe(other, "popularity-count")
    campaign = services.create_campaign(shop, "home-page", version=versions[0])
    with pytest.raises(ValueError, match=f"#{foreign.pk} belongs to another project"):
        services.deploy(campaign, foreign)
    with pytest.raises(ValueError, match="belongs to another project"):
        services.create_campaign(shop, "second", version=foreign)
    campaign.refresh_from_db()
    assert campaign.version == versions[0] and campaign.previous_version is None
    assert len(actions(campaign)) == 1 and Campaign.objects.count() == 1


@pytest.mark.django_db
def test_deploy_refuses_a_version_whose_artefacts_are_gone_or_corrupt(shop, versions):
    v1, v2 = versions
    campaign = services.create_campaign(shop, "home-page", version=v1)
    shutil.rmtree(v2.artefact_dir)
    with pytest.raises(ValueError, match=f"#{v2.pk} cannot be served.*Nothing was changed"):
        services.deploy(campaign, v2)
    v3 = train_recipe(shop, "ease")
    (Path(v3.artefact_dir) / services.RECIPE_FILE).write_bytes(b"not a model")
    with pytest.raises(ValueError, match=f"#{v3.pk} cannot be served"):
        services.deploy(campaign, v3)
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v1.pk, None)
    assert len(actions(campaign)) == 1

    # Rolling back to a version that has since lost its artefacts is refused the same way.
    v4 = train_recipe(shop, "popularity-count")
    services.deploy(campaign, v4)
    shutil.rmtree(v1.artefact_dir)
    with pytest.raises(ValueError, match=f"#{v1.pk} cannot be served"):
        services.rollback(campaign)
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v4.pk, v1.pk)


# --- serving cache -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_serving_loads_lazily_and_maps_ids(shop, versions):
    v1, v2 = versions
    campaign = services.create_campaign(shop, "home-page", version=v2)
    assert serving.cache_info()["versions"] == []  # deploying loads nothing into the cache

    model = serving.served_model(campaign)
    assert model.version_id == v2.pk and model.recipe_name == "item-knn"
    assert serving.cache_info()["versions"] == [v2.pk]
    assert serving.served_model(campaign) is model  # loaded once

    recipe, user_ids, item_ids = services.load_version(v2)
    np.testing.assert_array_equal(model.user_ids, user_ids)
    rows = np.array([0, 5, len(user_ids) - 1])
    np.testing.assert_array_equal(model.user_rows(user_ids[rows]), rows)
    assert model.user_row(int(user_ids[7])) == 7 and model.item_row(int(item_ids[3])) == 3
    unknown = int(max(user_ids.max(), item_ids.max()) + 1)
    assert model.user_row(unknown) is None and model.item_row(-5) is None
    np.testing.assert_array_equal(model.item_rows([item_ids[2], unknown]), [2, -1])
    got, _ = model.recipe.recommend(rows, k=10)
    expected, _ = recipe.recommend(rows, k=10)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.django_db
def test_serving_picks_up_a_switch_and_keeps_the_last_good_version(shop, versions, caplog):
    v1, v2 = versions
    campaign = services.create_campaign(shop, "home-page", version=v1)
    assert serving.served_model(campaign).version_id == v1.pk

    stale = Campaign.objects.get(pk=campaign.pk)  # an object loaded before the switch
    services.deploy(campaign, v2)
    assert serving.served_model(stale).version_id == v2.pk  # no restart, no cache clearing
    services.rollback(campaign)
    assert serving.served_model(stale).version_id == v1.pk

    # v3 is deployed fine, then its artefacts disappear before this process loaded it.
    v3 = train_recipe(shop, "ease")
    services.deploy(campaign, v3)
    hidden = Path(v3.artefact_dir).with_name("moved-away")
    Path(v3.artefact_dir).rename(hidden)
    with caplog.at_level("ERROR", logger="models_app.serving"):
        assert serving.served_model(campaign).version_id == v1.pk  # the last good one
    assert f"Could not load model version {v3.pk}" in caplog.text
    assert v3.pk in serving.cache_info()["failed"]

    # Once the files are back, the next attempt (after RETRY_SECONDS) serves v3.
    hidden.rename(v3.artefact_dir)
    assert serving.served_model(campaign).version_id == v1.pk  # not retried on every call
    serving._cache._failed[v3.pk] = (time.monotonic() - serving.RETRY_SECONDS - 1, "old")
    assert serving.served_model(campaign).version_id == v3.pk
    assert serving.cache_info()["versions"] == [v3.pk]  # v1 is no longer served: evicted


@pytest.mark.django_db
def test_serving_unavailable_only_when_there_is_nothing_to_serve(shop, versions):
    v1, _ = versions
    empty = services.create_campaign(shop, "empty")
    with pytest.raises(serving.ServingUnavailable, match="serves no model version yet"):
        serving.served_model(empty)

    campaign = services.create_campaign(shop, "home-page", version=v1)
    shutil.rmtree(v1.artefact_dir)  # deleted after the deploy, before any request
    with pytest.raises(serving.ServingUnavailable, match=f"version #{v1.pk} could not be loaded"):
        serving.served_model(campaign)


@pytest.mark.django_db(transaction=True)
def test_serving_cache_loads_once_under_concurrent_requests(project):
    solution = Solution.objects.create(project=project, recipe="popularity-count")
    made = []
    for _ in range(2):
        run = TrainingRun.objects.create(solution=solution, project=project, status="succeeded")
        made.append(
            ModelVersion.objects.create(
                project=project, solution=solution, run=run, recipe="popularity-count"
            )
        )
    campaign = Campaign.objects.create(project=project, name="busy", version=made[0])
    calls = []

    def slow_loader(version):
        calls.append(version.pk)
        time.sleep(0.3)
        return object(), np.arange(5, dtype=np.int64) * 10, np.arange(3, dtype=np.int64)

    cache = serving.ServingCache(loader=slow_loader)
    results, errors = [], []

    def request():
        try:
            results.append(cache.served_model(campaign).version_id)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def burst():
        threads = [threading.Thread(target=request) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    burst()
    assert not errors and results == [made[0].pk] * 8 and calls == [made[0].pk]

    Campaign.objects.filter(pk=campaign.pk).update(version=made[1], previous_version=made[0])
    results.clear()
    burst()  # while one thread loads the new version, the others keep serving the old one
    assert not errors and set(results) <= {made[0].pk, made[1].pk} and len(results) == 8
    assert calls == [made[0].pk, made[1].pk]
    assert cache.served_model(campaign).version_id == made[1].pk
    assert cache.served_model(campaign).user_row(30) == 3


@pytest.mark.django_db
def test_campaign_for_picks_the_named_only_or_default_campaign(shop):
    with pytest.raises(serving.CampaignNotFound, match="has no campaign yet"):
        serving.campaign_for(shop)
    first = services.create_campaign(shop, "home-page")
    assert serving.campaign_for(shop) == first
    assert serving.campaign_for(shop, "home-page") == first
    second = services.create_campaign(shop, "emails")
    with pytest.raises(serving.CampaignNotFound, match="2 campaigns.*name one with campaign="):
        serving.campaign_for(shop)
    assert serving.campaign_for(shop, "emails") == second
    with pytest.raises(serving.CampaignNotFound, match="no campaign named “nope”.*emails, home"):
        serving.campaign_for(shop, "nope")
    default = services.create_campaign(shop, "default")
    assert serving.campaign_for(shop) == default


# --- auto-deploy ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_auto_deploy_after_a_real_training_run(shop, django_capture_on_commit_callbacks):
    solution = services.create_solution(
        project=shop, recipe="user-personalization", params=FAST_ALS
    )
    unrelated = services.create_solution(project=shop, recipe="popularity-count")
    auto = services.create_campaign(shop, "auto", solution=solution, auto_deploy=True)
    manual = services.create_campaign(shop, "manual", solution=solution, auto_deploy=False)

    with django_capture_on_commit_callbacks(execute=True):
        first = train(solution)
        train(unrelated)  # another solution's version is not deployed
    auto.refresh_from_db()
    manual.refresh_from_db()
    assert auto.version == first and manual.version is None
    assert actions(auto) == [("auto", first.pk, None)]

    with django_capture_on_commit_callbacks(execute=True):
        second = train(solution)  # same data, same seed: the metric did not drop
    auto.refresh_from_db()
    assert (auto.version_id, auto.previous_version_id) == (second.pk, first.pk)
    record = CampaignDeployment.objects.filter(campaign=auto).first()
    assert record.action == "auto" and "NDCG@10" in record.reason and record.user is None
    assert serving.served_model(auto).version_id == second.pk


@pytest.mark.django_db
def test_auto_deploy_is_skipped_when_the_metric_drops(shop, django_capture_on_commit_callbacks):
    als = train_recipe(shop, "user-personalization", FAST_ALS)
    popularity = services.create_solution(project=shop, recipe="popularity-count")
    campaign = services.create_campaign(
        shop, "home-page", version=als, solution=popularity, auto_deploy=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        worse = train(popularity)  # popularity ranks far below ALS on this shop
    old, new = als.metrics["ndcg@10"], worse.metrics["ndcg@10"]
    assert new < (1 - services.AUTO_DEPLOY_MAX_DROP) * old
    campaign.refresh_from_db()
    assert campaign.version == als and campaign.previous_version is None
    skipped = CampaignDeployment.objects.filter(campaign=campaign).first()
    assert skipped.action == "skipped" and skipped.version == worse
    assert f"{new:.4f}" in skipped.reason and f"{old:.4f}" in skipped.reason
    assert "still served" in skipped.reason
    # The skipped version can still be deployed by hand.
    services.deploy(campaign, worse)
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (worse.pk, als.pk)


@pytest.mark.django_db
def test_a_failing_auto_deploy_never_fails_the_training_run(
    shop, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    solution = services.create_solution(project=shop, recipe="popularity-count")
    campaign = services.create_campaign(shop, "auto", solution=solution, auto_deploy=True)

    def broken(version):
        raise RuntimeError("the deploy machinery is broken")

    monkeypatch.setattr(services, "auto_deploy", broken)
    with django_capture_on_commit_callbacks(execute=True), caplog.at_level("ERROR"):
        run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded" and run.version is not None
    assert "Auto-deploy after publishing" in caplog.text
    campaign.refresh_from_db()
    assert campaign.version is None


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_run_fails_the_run_and_the_campaign_keeps_serving(
    shop, monkeypatch, settings, tmp_path
):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "worker"))  # the worker's ARTIFACT_DIR
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)  # django-q signs tasks with it
    settings.ARTIFACT_DIR = tmp_path / "worker" / "artifacts"
    slow = services.create_solution(
        project=shop, recipe="user-personalization", params={"factors": 256, "iterations": 5000}
    )
    good = train_recipe(shop, "item-knn")
    campaign = services.create_campaign(
        shop, "home-page", version=good, solution=slow, auto_deploy=True
    )
    assert serving.served_model(campaign).version_id == good.pk

    run = services.start_training(solution=slow)
    with running_worker() as worker:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status == "running" and services.read_progress(run).get("fraction", 0) > 0:
                break
            assert not run.is_finished, run.error
            time.sleep(0.2)
        assert run.status == "running", "the worker did not start the run within 90 s"
        time.sleep(1)  # well into fitting
        assert services.fail_stale_runs(shop, stale_after=30) == 0  # its heartbeat is alive
        kill_worker(worker)
    time.sleep(3)  # the heartbeat (every 2 s) has stopped
    assert services.fail_stale_runs(shop, stale_after=2.5) == 1
    run.refresh_from_db()
    assert run.status == "failed" and "worker stopped" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()

    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (good.pk, None)
    assert actions(campaign) == [("deploy", good.pk, None)]
    serving.clear_cache()  # a freshly started web process still loads the served version
    model = serving.served_model(campaign)
    assert model.version_id == good.pk and len(model.item_ids) == good.n_items


# --- pages -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_campaigns_page_create_deploy_roll_back(shop, versions, logged_in_client, user):
    v1, v2 = versions
    url = f"/p/{shop.slug}/campaigns/"
    page = logged_in_client.get(url)
    assert page.status_code == 200 and "No campaign yet" in page.content.decode()
    assert ">Campaigns</a>" in page.content.decode()

    response = logged_in_client.post(url, {"name": "home page", "version": str(v1.pk)})
    assert response.status_code == 400 and "not a valid campaign name" in response.content.decode()
    response = logged_in_client.post(url, {"name": "home-page", "version": str(v1.pk)})
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.version == v1

    base = f"{url}{campaign.pk}/"
    logged_in_client.post(f"{base}deploy/", {"version": str(v2.pk)})
    campaign.refresh_from_db()
    assert (campaign.version_id, campaign.previous_version_id) == (v2.pk, v1.pk)
    logged_in_client.post(f"{base}rollback/")
    campaign.refresh_from_db()
    assert campaign.version_id == v1.pk

    shutil.rmtree(v2.artefact_dir)
    response = logged_in_client.post(f"{base}deploy/", {"version": str(v2.pk)}, follow=True)
    assert "could not be loaded" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.version_id == v1.pk

    logged_in_client.post(
        f"{base}settings/", {"solution": str(v1.solution_id), "auto_deploy": "on"}
    )
    campaign.refresh_from_db()
    assert campaign.auto_deploy and campaign.solution_id == v1.solution_id

    html = logged_in_client.get(url).content.decode()
    assert "NDCG@10" in html and "Rolled back" in html and "auto-deploy on" in html
    assert f"{v1.metrics['ndcg@10']:.4f}" in html
    assert html.count(user.username) >= 3  # who did it, in the history

    logged_in_client.post(f"{base}delete/")
    assert not Campaign.objects.exists()


@pytest.mark.django_db
def test_viewers_look_but_cannot_change_and_strangers_get_404(
    shop, versions, client, make_user, other_user
):
    campaign = services.create_campaign(shop, "home-page", version=versions[0])
    viewer = make_user("victor")
    Membership.objects.create(project=shop, user=viewer, role=Membership.Role.VIEWER)
    client.force_login(viewer)
    url = f"/p/{shop.slug}/campaigns/"
    html = client.get(url).content.decode()
    assert "home-page" in html and "you are a viewer" in html.lower()
    assert "Roll back" not in html and "create-campaign" not in html
    assert client.post(url, {"name": "sneaky"}).status_code == 403
    for action in ("deploy", "rollback", "settings", "delete"):
        response = client.post(f"{url}{campaign.pk}/{action}/", {"version": versions[1].pk})
        assert response.status_code == 403
    campaign.refresh_from_db()
    assert campaign.version == versions[0] and Campaign.objects.count() == 1

    client.force_login(other_user)
    assert client.get(url).status_code == 404
    assert client.post(f"{url}{campaign.pk}/rollback/").status_code == 404


@pytest.mark.django_db
def test_a_fresh_process_serves_the_previous_version_when_the_new_one_is_corrupt(
    shop, versions, caplog
):
    v1, v2 = versions
    campaign = services.create_campaign(shop, "home-page", version=v1)
    services.deploy(campaign, v2)
    (Path(v2.artefact_dir) / services.RECIPE_FILE).write_bytes(b"not a model")
    serving.clear_cache()  # a process started after the files broke: it never loaded v2
    with caplog.at_level("ERROR", logger="models_app.serving"):
        assert serving.served_model(campaign).version_id == v1.pk
    assert f"serves its previous model version {v1.pk}" in caplog.text
    assert serving.served_model(campaign).version_id == v1.pk  # and keeps doing so

    shutil.rmtree(v1.artefact_dir)  # the previous version is gone too: nothing to serve
    serving.clear_cache()
    with pytest.raises(serving.ServingUnavailable, match="previous one"):
        serving.served_model(campaign)
