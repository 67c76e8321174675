"""Serving's fast paths (docs/serving.md): the served log written off the request path, the
approximate index used by /recommendations when the version has one, the feed endpoint's
cached lookups, and promotions in feeds ranked by the user's relevance."""

import time
from types import SimpleNamespace

import numpy as np
import pytest
from django.test import override_settings
from django.utils import timezone

from datasets.models import Interaction
from feeds import catalog as catalog_module
from feeds import feeds, recommending, selectors, served_log
from feeds.engine.feed import RankedColumns
from feeds.models import Promotion, SavedFilter, ServedRecommendation
from models_app import serving
from tests.feeds.test_serving_api import FAST_ALS, deploy, train
from tests.helpers import committed_shop

SHOP_SIZE = {"n_users": 300, "n_items": 400, "n_interactions": 20_000, "seed": 5}
ITEMS = [{"item_id": "i1", "source": "model"}, {"item_id": "i2", "source": "promotion"}]


@pytest.fixture(autouse=True)
def fresh_caches(fresh_serving):
    """Each test starts and ends with serving's per-process caches empty."""
    served_log.release_connection()  # the writer thread's connection must not outlive the test


def request_for(project):
    return SimpleNamespace(
        project=project, campaign=SimpleNamespace(pk=None), model=SimpleNamespace(version_id=None)
    )


# --------------------------------------------------------------------------- served log


@pytest.mark.django_db(transaction=True)
def test_the_served_log_is_written_after_the_response_by_the_writer(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 60  # the writer thread will not wake up by itself
    served_log.flush()
    rec_id = recommending._log(request_for(project), "recommendations", ITEMS, user_id="u1")
    # The request returned without writing: the row waits in this process's buffer.
    assert not ServedRecommendation.objects.filter(recommendation_id=rec_id).exists()
    assert served_log.pending() == 1
    assert served_log.flush() == 1
    row = ServedRecommendation.objects.get(recommendation_id=rec_id)
    assert (row.user_external_id, row.items, row.sources) == (
        "u1",
        ["i1", "i2"],
        ["model", "promotion"],
    )


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_within_the_flush_interval(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 0.05
    ids = [recommending._log(request_for(project), "rank", ITEMS) for _ in range(5)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if ServedRecommendation.objects.filter(recommendation_id__in=ids).count() == 5:
            break
        time.sleep(0.05)
    assert ServedRecommendation.objects.filter(recommendation_id__in=ids).count() == 5


@pytest.mark.django_db(transaction=True)
def test_one_bad_row_does_not_lose_the_batch(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 60
    served_log.flush()
    good = recommending._log(request_for(project), "rank", ITEMS)
    duplicate = recommending._log(request_for(project), "rank", ITEMS, recommendation_id=good)
    other = recommending._log(request_for(project), "rank", ITEMS)
    assert duplicate == good
    assert served_log.flush() == 2  # the duplicate id is refused, the others are written
    assert ServedRecommendation.objects.filter(recommendation_id__in=[good, other]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_written_with_every_field(project, settings, monkeypatch):
    """One COPY on PostgreSQL, several multi-row INSERTs elsewhere (INSERT_ROWS 3)."""
    settings.SERVED_LOG_FLUSH_SECONDS = 60
    served_log.flush()
    monkeypatch.setattr(served_log, "INSERT_ROWS", 3)
    before = timezone.now()
    n = 10  # four INSERTs
    ids = [
        recommending._log(request_for(project), "related", ITEMS, user_id=f"u{k}", item_id="i9")
        for k in range(n)
    ]
    assert served_log.flush() == n
    rows = ServedRecommendation.objects.filter(recommendation_id__in=ids)
    assert rows.count() == n
    row = rows.get(user_external_id="u3")
    assert (row.kind, row.item_external_id, row.items, row.sources, row.variant) == (
        "related",
        "i9",
        ["i1", "i2"],
        ["model", "promotion"],
        "",
    )
    assert before <= row.created_at <= timezone.now()  # when served, not a default


@pytest.mark.django_db(transaction=True)
def test_text_that_copy_escapes_is_stored_unchanged(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 60
    served_log.flush()
    awkward = 'tab\there, new\nline, back\\slash \\N "quoted" \u00e9\u4e2d'
    items = [{"item_id": awkward, "source": "model"}, {"item_id": "\\N", "source": "popular"}]
    rec_id = recommending._log(request_for(project), "related", items, user_id=awkward, item_id="")
    assert served_log.flush() == 1
    row = ServedRecommendation.objects.get(recommendation_id=rec_id)
    assert (row.user_external_id, row.item_external_id) == (awkward, "")
    assert (row.items, row.sources) == ([awkward, "\\N"], ["model", "popular"])


@pytest.mark.django_db
def test_inside_a_transaction_the_row_is_written_at_once(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 60
    rec_id = recommending._log(request_for(project), "rank", ITEMS)
    assert ServedRecommendation.objects.filter(recommendation_id=rec_id).exists()


# --------------------------------------------------------------------------- approximate index


def train_both(project):
    """user-personalization trained above a tiny ANN threshold (the version has an approximate
    index) and as usual (it has none)."""
    with override_settings(ANN_THRESHOLD_ITEMS=100):
        indexed = train(project, "user-personalization", FAST_ALS)
    return SimpleNamespace(indexed=indexed, plain=train(project, "user-personalization", FAST_ALS))


@pytest.fixture(scope="module")
def trained_shop(django_db_setup, django_db_blocker, shop_files, tmp_path_factory):
    """(owner, project, versions) built once for the module: importing and training took most
    of each test's time. Nothing is deployed here; each test deploys what it serves."""
    folder = tmp_path_factory.mktemp("fast-paths")
    with committed_shop(django_db_blocker, folder, shop_files, build=train_both) as made:
        yield made


@pytest.fixture
def indexed(trained_shop, settings):
    """The shop serving the version with an approximate index."""
    settings.ANN_THRESHOLD_ITEMS = 100
    _, project, versions = trained_shop
    deploy(project, versions.indexed)
    return project


def users_with_history(project, n=12):
    return sorted(
        set(
            Interaction.objects.filter(project=project)
            .order_by("user__external_id")
            .values_list("user__external_id", flat=True)[:4000]
        )
    )[:n]


def served(project, user_id, ann: bool, monkeypatch, **kwargs):
    monkeypatch.setattr(recommending, "USE_ANN", ann)
    result = recommending.recommend(project, user_id=user_id, num_results=10, **kwargs)
    return [i["item_id"] for i in result.items if i["source"] == "model"], result


@pytest.mark.django_db
def test_the_index_serves_the_same_items_as_brute_force(indexed, monkeypatch):
    from feeds.recommending import campaign_for

    model = serving.served_model(campaign_for(indexed, None))
    assert model.index is not None
    used = []
    original = recommending._approximate_choice

    def spy(*args):
        chosen = original(*args)
        used.append(chosen is not None)
        return chosen

    monkeypatch.setattr(recommending, "_approximate_choice", spy)
    overlaps = []
    for user_id in users_with_history(indexed):
        approximate, _ = served(indexed, user_id, True, monkeypatch)
        exact, _ = served(indexed, user_id, False, monkeypatch)
        assert len(approximate) == len(exact) == 10
        overlaps.append(len(set(approximate) & set(exact)) / 10)
    assert used and all(used)  # every request went through the index
    assert np.mean(overlaps) >= 0.9
    assert min(overlaps) >= 0.6


@pytest.mark.django_db
def test_filters_and_exclusions_hold_with_the_index(indexed, monkeypatch):
    cat = catalog_module.catalog_for(indexed)
    field = cat.category_field
    counts = sorted(
        (
            (len(cat.category_rows(c)), c)
            for c in {c for r in range(cat.n_items) for c in cat.categories_of(r)}
        ),
        reverse=True,
    )
    big = counts[0][1]
    inside = {cat.external_ids[r] for r in cat.category_rows(big).tolist()}
    expression = f'INCLUDE ItemID WHERE Items.{field} IN ("{big}")'
    for user_id in users_with_history(indexed, 6):
        seen = set(
            Interaction.objects.filter(project=indexed, user__external_id=user_id).values_list(
                "item__external_id", flat=True
            )
        )
        approximate, result = served(indexed, user_id, True, monkeypatch, filter=expression)
        exact, _ = served(indexed, user_id, False, monkeypatch, filter=expression)
        shown = [i["item_id"] for i in result.items]
        assert shown and set(shown) <= inside
        assert not set(shown) & seen
        assert len(set(approximate) & set(exact)) >= 0.6 * len(exact)


@pytest.mark.django_db
def test_a_selective_filter_falls_back_to_brute_force(indexed, monkeypatch):
    cat = catalog_module.catalog_for(indexed)
    prices = sorted(float(a["PRICE"]) for a in cat.attributes if a.get("PRICE") is not None)
    cut = prices[int(0.97 * len(prices))]  # the dearest 3 % of the catalogue
    few = {cat.external_ids[r] for r, a in enumerate(cat.attributes) if a.get("PRICE", 0) >= cut}
    assert 3 <= len(few) <= 0.04 * cat.n_items
    expression = "INCLUDE ItemID WHERE Items.PRICE >= $MIN"
    user_id = users_with_history(indexed, 1)[0]
    calls = []
    original = recommending._approximate_choice
    monkeypatch.setattr(
        recommending, "_approximate_choice", lambda *a: calls.append(original(*a)) or calls[-1]
    )
    approximate, result = served(
        indexed, user_id, True, monkeypatch, filter=expression, filter_values={"MIN": cut}
    )
    exact, _ = served(
        indexed, user_id, False, monkeypatch, filter=expression, filter_values={"MIN": cut}
    )
    assert calls == [None]  # the index declined: brute force served it
    assert approximate == exact
    assert approximate and {i["item_id"] for i in result.items} <= few


@pytest.mark.django_db
def test_scores_of_the_filtered_items_only_give_the_same_answers(trained_shop, monkeypatch):
    """A known user's filtered request scores only the items the filter leaves (fewer item
    factors read): the same items, sources, reasons and exploration draws as scoring the
    whole catalogue with the rest masked."""
    _, project, _ = trained_shop
    deploy(project, train(project, "user-personalization", {**FAST_ALS, "exploration_weight": 0.3}))
    cat = catalog_module.catalog_for(project)
    categories = sorted({c for r in range(cat.n_items) for c in cat.categories_of(r)})
    expression = f"INCLUDE ItemID WHERE Items.{cat.category_field} IN ($CATEGORIES)"
    generator = recommending.exploration_generator
    # The same exploration draws on both sides, whatever each response's id.
    monkeypatch.setattr(recommending, "exploration_generator", lambda _: generator("5eed" * 8))
    compact = []
    score_items = type(recommending.served_model(recommending.campaign_for(project, None)).recipe)
    original = score_items._score_user_items
    monkeypatch.setattr(
        score_items,
        "_score_user_items",
        lambda self, row, cols: compact.append(len(cols)) or original(self, row, cols),
    )
    answers = {}
    for share in (0.0, 1.0):  # never, always scored by the filtered items only
        monkeypatch.setattr(recommending, "COMPACT_SCORING_SHARE", share)
        for user_id in users_with_history(project, 8):
            for chosen in (categories[:1], categories[1:3]):
                result = recommending.recommend(
                    project,
                    user_id=user_id,
                    num_results=20,
                    filter=expression,
                    filter_values={"CATEGORIES": chosen},
                )
                answers.setdefault((user_id, tuple(chosen)), []).append(
                    [(i["item_id"], i["source"], i["reason"]) for i in result.items]
                )
    assert len(compact) == 16  # every request of the second round, none of the first
    explored = 0
    for full, filtered in answers.values():
        assert filtered == full
        explored += sum(source == "exploration" for _, source, _ in filtered)
    assert explored > 0  # exploration slots were compared too


@pytest.mark.django_db
def test_exploration_still_shows_new_arrivals_with_the_index(indexed, monkeypatch):
    from feeds.recommending import campaign_for

    version = train(indexed, "user-personalization", {**FAST_ALS, "exploration_weight": 0.3})
    campaign = campaign_for(indexed, None)
    campaign.version = version
    campaign.save()
    serving.clear_cache()
    recipe = serving.served_model(campaign).recipe
    if not np.any(recipe.exploration_priority_ > 0):
        pytest.skip("the generated shop has no cold item to explore")
    sources = []
    for user_id in users_with_history(indexed, 10):
        _, result = served(indexed, user_id, True, monkeypatch)
        ids = [i["item_id"] for i in result.items]
        assert len(ids) == len(set(ids)) == 10
        sources += [i["source"] for i in result.items]
    assert "exploration" in sources and "model" in sources


# --------------------------------------------------------------------------- feeds


@pytest.fixture
def feed_shop(trained_shop):
    user, project, versions = trained_shop
    deploy(project, versions.plain, name="personal")
    feed = feeds.create_feed(
        project=project,
        name="home",
        slots=[("campaign:personal", 3), ("trending", 1), ("popular", 1)],
        fallback_source="popular",
        user=user,
    )
    cat = catalog_module.catalog_for(project)
    counts = sorted(
        (
            (len(cat.category_rows(c)), c)
            for c in {c for r in range(cat.n_items) for c in cat.categories_of(r)}
        ),
        reverse=True,
    )
    category = counts[0][1]
    saved = SavedFilter.objects.create(
        project=project,
        name="one-category",
        expression=f"INCLUDE ItemID WHERE Items.{cat.category_field} IN ($CATS)",
    )
    Promotion.objects.create(
        project=project,
        name="Sale",
        filter=saved,
        filter_values={"CATS": [category]},
        positions=[2, 4, 6],
    )
    return SimpleNamespace(project=project, feed=feed, catalog=cat, category=category)


@pytest.mark.django_db
def test_feed_promotions_follow_the_users_relevance(feed_shop):
    project, cat = feed_shop.project, feed_shop.catalog
    inside = cat.category_rows(feed_shop.category)
    popularity = selectors.item_popularity(project, cat)
    by_popularity = [cat.external_ids[r] for r in inside[np.argsort(-popularity.score[inside])]]
    differs = 0
    for user_id in users_with_history(project, 10):
        history = selectors.user_history(project, user_id)
        allowed = recommending.feed_allowed(project, cat, history, user_id=user_id)
        seen = cat.rows_for_ids(history.item_ids)
        allowed[seen[seen >= 0]] = False
        ranking = recommending.campaign_ranking(
            project, "personal", user_id=user_id, allowed=allowed, k=10, history=history
        )
        rows = [r for r in inside.tolist() if allowed[r]]
        by_relevance = [
            cat.external_ids[r] for r in sorted(rows, key=lambda r: -ranking.relevance[r])
        ]
        result = feeds.serve(project, "home", user_id=user_id, page_size=10, log=False)
        promoted = [i["item_id"] for i in result.items if i["source"] == "promotion:Sale"]
        assert [i["rank"] for i in result.items if i["source"] == "promotion:Sale"] == [2, 4, 6]
        others = {i["item_id"] for i in result.items} - set(promoted)
        # The user's best-scored matches that the slots did not already show, in order.
        assert promoted == [i for i in by_relevance if i not in others][:3]
        visible_popular = [i for i in by_popularity if i in set(by_relevance) - others][:3]
        differs += promoted != visible_popular
    assert differs >= 3  # relevance, not popularity, decides (for most users they differ)


@pytest.mark.django_db
def test_feed_promotions_for_a_cold_user_are_the_most_popular(feed_shop):
    project, cat = feed_shop.project, feed_shop.catalog
    inside = cat.category_rows(feed_shop.category)
    popularity = selectors.item_popularity(project, cat)
    by_popularity = [
        cat.external_ids[r] for r in inside[np.argsort(-popularity.score[inside], kind="stable")]
    ]
    result = feeds.serve(project, "home", user_id="nobody-knows-me", page_size=10, log=False)
    promoted = [i["item_id"] for i in result.items if i["source"] == "promotion:Sale"]
    others = {i["item_id"] for i in result.items} - set(promoted)
    assert promoted == [i for i in by_popularity if i not in others][:3]


@pytest.mark.django_db
def test_the_feed_lookups_are_cached_for_serving_cache_seconds(feed_shop, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    project = feed_shop.project
    settings.SERVING_CACHE_SECONDS = 60
    feeds.serve(project, "home", user_id="u-cold-1", page_size=10, log=False)
    with CaptureQueriesContext(connection) as queries:
        result = feeds.serve(project, "home", user_id="u-cold-2", page_size=10, log=False)
    assert len(result.items) == 10
    # Only the user's events: the feed, experiment, campaigns and promotions come from the
    # per-process cache.
    assert len(queries) == 1, [q["sql"][:80] for q in queries]
    # With caching off (the test suite's default), an edit shows at once.
    settings.SERVING_CACHE_SECONDS = 0
    Promotion.objects.update(is_active=False)
    result = feeds.serve(project, "home", user_id="u-cold-3", page_size=10, log=False)
    assert not [i for i in result.items if i["source"].startswith("promotion")]


# --------------------------------------------------------------------------- worker start


@pytest.mark.django_db
def test_warm_up_loads_every_deployed_campaign_before_requests(feed_shop, monkeypatch):
    serving.clear_cache()
    catalog_module.clear_cache()
    assert recommending.warm_up() == 1
    # Loaded: the first request neither loads the model nor builds the catalogue.
    monkeypatch.setattr(serving._cache, "_loader", fail_if_called)
    monkeypatch.setattr(catalog_module, "build_catalog", fail_if_called)
    served = recommending.recommend(feed_shop.project, user_id=None, campaign="personal")
    assert len(served.items) == recommending.DEFAULT_RESULTS


def fail_if_called(*args, **kwargs):
    raise AssertionError("loaded on the request path")


@pytest.mark.django_db
def test_the_gunicorn_worker_hook_warms_up_and_freezes(feed_shop):
    import gc

    from recsite import gunicorn_conf

    serving.clear_cache()
    try:
        gunicorn_conf.post_worker_init(SimpleNamespace(pid=1))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
    assert serving._cache._models  # the model stayed loaded for the requests to come


@pytest.mark.django_db
def test_feed_sessions_hold_no_object_per_candidate(feed_shop):
    """Sessions are cached per process by the thousand: their lists must not be made of
    objects Python's garbage collector tracks one by one (full collections got slow)."""
    import gc

    project = feed_shop.project
    feeds.serve(project, "home", user_id=users_with_history(project, 1)[0], page_size=10)
    session = next(iter(feeds._sessions.values()))  # (stored twice: lists and scroll)
    assert any(isinstance(ranked, RankedColumns) for ranked in session.lists.values())
    for ranked in session.lists.values():
        if isinstance(ranked, RankedColumns):
            assert len(ranked) > 10
            assert not any(gc.is_tracked(x) for x in (*ranked.ids, *ranked.scores))
    assert session.promotions  # the Sale
    for promo in session.promotions:
        assert isinstance(promo.candidates, RankedColumns)
        assert not any(gc.is_tracked(x) for x in promo.candidates.ids)
