"""Training runs end to end: service, task, artefacts, command line, pages and a real worker.

The data is a small generated demo shop imported the way users import it.
"""

import time
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from datasets import imports
from datasets.models import EndUser, Item
from models_app import selectors, services, training
from models_app.models import ModelVersion, Solution, TrainingRun
from tests.helpers import running_worker

SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}
FAST_ALS = {"factors": 32, "iterations": 10}


@pytest.fixture(autouse=True)
def _own_data_dirs(data_dirs):
    return data_dirs


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
                assert f"r:{name}@{k}" in version.metrics  # Protocol R, the same metrics
        assert {"mrr@25", "diversity@10", "pop_percentile@10"} <= set(version.metrics)
        assert Path(version.artefact_dir).is_dir()
        assert Path(version.artefact_dir).parent.name == str(shop.pk)
    assert als.version.metrics["ndcg@10"] > 1.3 * popular.version.metrics["ndcg@10"]
    assert als.version.metrics["r:ndcg@10"] > 1.3 * popular.version.metrics["r:ndcg@10"]
    assert "Protocol R evaluated" in als.log
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
    assert "Protocol R: NDCG@10" in out
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


# --- side inputs: item features, sessions, impressions; Protocol R ---------------------------


@pytest.fixture
def shop_with_items(shop, shop_files, tmp_path):
    """The demo shop with its items file imported, plus two catalogue items nobody touched:
    i90001 is described like i00001 (and has no creation time), i90002 is unrelated."""
    import pandas as pd

    items = pd.read_csv(shop_files["items"], dtype=str, keep_default_na=False)
    twin = items.loc[items["ITEM_ID"] == "i00001"].iloc[0]
    cold = pd.DataFrame(
        [
            ["i90001", twin["TITLE"], twin["DESCRIPTION"], twin["CATEGORY"], "9", "true", ""],
            [
                "i90002",
                "Espresso cup",
                "A tiny ceramic cup.",
                "Kitchen|Home",
                "12",
                "true",
                "1700000000",
            ],
        ],
        columns=items.columns,
    )
    path = tmp_path / "items.csv"
    pd.concat([items, cold]).to_csv(path, index=False)
    job = imports.import_file(project=shop, kind="items", path=path)
    assert job.status == "succeeded", job.error
    return shop


@pytest.mark.django_db
def test_item_catalog_and_impressions_are_read_as_stored(shop_with_items, shop_files):
    import pandas as pd

    catalog = selectors.item_catalog(shop_with_items)
    assert catalog.in_catalog.sum() == 202
    features = catalog.features
    assert {"TITLE", "DESCRIPTION", "CATEGORY", "PRICE", "CREATION_TIMESTAMP"} <= set(features)
    cold = catalog.external_ids["i90001"]
    assert features.loc[catalog.external_ids["i90002"], "CATEGORY"] == "Kitchen|Home"
    assert np.isnan(features.loc[cold, "CREATION_TIMESTAMP"])
    assert features.loc[catalog.external_ids["i90002"], "CREATION_TIMESTAMP"] == 1_700_000_000.0
    assert features["CREATION_TIMESTAMP"].dtype == np.float64

    log = selectors.impression_log(shop_with_items, catalog.external_ids)
    raw = pd.read_csv(shop_files["interactions"], dtype=str, keep_default_na=False)
    expected = raw["IMPRESSION"][raw["IMPRESSION"] != ""].str.split("|").explode().value_counts()
    got = pd.Series(log.shown).map({v: k for k, v in catalog.external_ids.items()})
    assert got.value_counts().sort_index().equals(expected.sort_index().rename("count"))
    data = selectors.interaction_arrays(shop_with_items)
    assert (data.sessions != "").sum() == (raw["SESSION_ID"] != "").sum()


class Spy:
    """A recipe that records what every fit receives (registered for one test)."""

    name = "spy"
    fits: list = []

    def __init__(self, **params):
        self.params = params

    @classmethod
    def default_params(cls):
        return {}

    def get_params(self):
        return {}

    def fit(self, X, **kwargs):
        Spy.fits.append((X, kwargs))
        self.n_items_ = X.shape[1]
        return self

    def recommend(self, user_rows, k, exclude=None):
        from models_app.recipes import get_recipe

        popular = get_recipe("popularity-count")().fit(Spy.fits[-1][0])
        return popular.recommend(user_rows, k, exclude=exclude)


@pytest.mark.django_db
def test_train_passes_aligned_side_inputs_restricted_to_what_each_fit_may_see(
    shop_with_items, monkeypatch
):
    from models_app import recipes

    monkeypatch.setitem(recipes.RECIPES, "spy", Spy)
    monkeypatch.setattr(Spy, "fits", [])
    data = selectors.interaction_arrays(shop_with_items)
    catalog = selectors.item_catalog(shop_with_items)
    shown = selectors.impression_log(shop_with_items, catalog.external_ids)
    result = training.train(
        recipe="spy",
        params={},
        users=data.users,
        items=data.items,
        timestamps=data.timestamps,
        event_types=data.event_types,
        sessions=data.sessions,
        item_features=catalog.features,
        catalog_items=catalog.ids[catalog.in_catalog],
        impressions=training.Impressions(shown.users, shown.items, shown.shown),
    )
    assert len(Spy.fits) == 3  # Personalize evaluation, Protocol R evaluation, final fit
    (X_p, p), (X_r, r), (X, final) = Spy.fits
    n_items = len(result.item_ids)
    # A matrix-only recipe: items without events (catalogue only) are no columns.
    assert n_items == len(np.unique(data.items)) < catalog.in_catalog.sum()
    for matrix, kwargs in Spy.fits:
        features = kwargs["item_features"]
        assert len(features) == n_items == matrix.shape[1]
        assert kwargs["sessions"].shape[1] == n_items and kwargs["impressions"].shape == (n_items,)
        assert len(kwargs["timestamps"]) == matrix.nnz
    # Column j's features are item_ids[j]'s.
    j = 17
    assert (
        final["item_features"].loc[j, "TITLE"] == catalog.features.loc[result.item_ids[j], "TITLE"]
    )
    # The final fit sees everything; the evaluations less (held-out sessions and impressions).
    assert final["impressions"].sum() == len(shown)
    assert p["impressions"].sum() < final["impressions"].sum()
    assert r["impressions"].sum() < p["impressions"].sum()  # Protocol R holds out ~20%
    assert final["sessions"].shape[0] == len(set(data.sessions) - {""})
    assert final["sessions"].nnz > r["sessions"].nnz
    assert final["now"] == data.timestamps.max() and p["now"] <= final["now"]
    assert X.nnz > X_p.nnz > X_r.nnz
    assert {"r:ndcg@10", "r:recall@10", "r:coverage@10", "r:mrr@25"} <= set(result.metrics)
    assert not any(key.startswith("r:") and "seconds" in key for key in result.metrics)


@pytest.mark.django_db
def test_content_based_trains_with_catalogue_items_and_serves_cold_ones(shop_with_items):
    run = train_now(shop_with_items, "content-based")
    assert run.status == "succeeded", run.error
    version = run.version
    # Every catalogue item is a column, touched or not.
    n_touched = len(np.unique(selectors.interaction_arrays(shop_with_items).items))
    assert version.n_items == 202 > n_touched
    assert f"{202 - n_touched:,} of them from the catalogue only" in run.log
    assert version.metrics["ndcg@10"] > 0 and version.metrics["r:ndcg@10"] > 0
    recipe, _, item_ids = services.load_version(version)
    pk = {i.external_id: i.pk for i in Item.objects.filter(project=shop_with_items)}
    column = {item_id: c for c, item_id in enumerate(item_ids.tolist())}
    cold = column[pk["i90001"]]  # same text as i00001, nobody interacted with it
    neighbours, _ = recipe.similar_items([cold], k=3)
    assert column[pk["i00001"]] == neighbours[0][0]

    popular = train_now(shop_with_items, "popularity-count")
    # Coverage is not diluted by columns a matrix-only recipe can never recommend.
    assert popular.version.n_items == n_touched


@pytest.mark.django_db
def test_content_based_without_items_says_to_import_them(shop):
    run = train_now(shop, "content-based")
    assert run.status == "failed"
    assert "content-based needs item attributes" in run.error


@pytest.mark.django_db
def test_frequently_bought_together_finds_the_planted_bundles_from_sessions(
    shop_with_items, shop_files
):
    import json

    run = train_now(shop_with_items, "frequently-bought-together", event_types=["purchase"])
    assert run.status == "succeeded", run.error
    assert "r:ndcg@10" in run.version.metrics
    recipe, _, item_ids = services.load_version(run.version)
    pk = {i.external_id: i.pk for i in Item.objects.filter(project=shop_with_items)}
    bundles = json.loads(Path(shop_files["ground_truth"]).read_text())["bundles"]

    def partners_found(recipe, item_ids):
        column = {item_id: c for c, item_id in enumerate(item_ids.tolist())}
        best = recipe.similar_items([column[pk[a]] for a, _ in bundles], k=1)[0][:, 0]
        return sum(int(c == column[pk[b]]) for c, (_, b) in zip(best, bundles, strict=True))

    found = partners_found(recipe, item_ids)
    assert found >= 0.9 * len(bundles), f"{found} of {len(bundles)} bundles found"
    # Without sessions each user's purchases are one basket, and the bundles blur.
    data = selectors.interaction_arrays(shop_with_items, ["purchase"])
    baskets = training.train(
        recipe="frequently-bought-together",
        params={},
        users=data.users,
        items=data.items,
        timestamps=data.timestamps,
    )
    assert partners_found(baskets.recipe, baskets.item_ids) < found


@pytest.mark.django_db
def test_user_attributes_reach_the_recipes(shop, shop_files):
    # The users file's MEMBERSHIP (or a saved SEGMENT field) is a feature segment-affinity uses.
    job = imports.import_file(project=shop, kind="users", path=shop_files["users"])
    assert job.status == "succeeded", job.error
    features = selectors.user_attributes(shop)
    assert {"MEMBERSHIP", "GENDER"} <= set(features.columns)
    run = train_now(shop, "segment-affinity", {"user_fields": ["MEMBERSHIP"]})
    assert run.status == "succeeded", run.error
    recipe, _, _ = services.load_version(run.version)
    # The one-hot MEMBERSHIP columns were among the features considered (kept or filtered out).
    considered = set(recipe.features_) | set(map(str, recipe.report_.get("dropped", [])))
    assert any("MEMBERSHIP" in name for name in considered), (recipe.features_, recipe.report_)

    EndUser.objects.filter(project=shop).update(attributes={})
    assert selectors.user_attributes(shop) is None
    run = train_now(shop, "segment-affinity", {"user_fields": ["MEMBERSHIP"], "k_max": 7})
    assert run.status == "failed" and "user_features" in run.error
