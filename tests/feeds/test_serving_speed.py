"""The serving hot path's speed measures: the served-log INSERT in one round trip without
waiting for the WAL flush (PostgreSQL), and the short-lived per-process caches of campaigns,
saved filters and promotions (SERVING_CACHE_SECONDS)."""

import time
from types import SimpleNamespace

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from feeds import recommending, selectors
from feeds.models import SavedFilter, ServedRecommendation
from models_app import serving

ITEMS = [{"item_id": "i1", "source": "model"}, {"item_id": "i2", "source": "promotion"}]


def request_for(project):
    return SimpleNamespace(
        project=project, campaign=SimpleNamespace(pk=None), model=SimpleNamespace(version_id=None)
    )


@pytest.mark.django_db(transaction=True)
def test_the_served_log_row_is_committed_in_one_statement(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 0  # written inline (test_serving_fast_paths: buffered)
    req = request_for(project)
    with CaptureQueriesContext(connection) as queries:
        rec_id = recommending._log(req, "recommendations", ITEMS, user_id="u1")
    row = ServedRecommendation.objects.get(recommendation_id=rec_id)
    assert (row.project_id, row.user_external_id, row.items, row.sources) == (
        project.pk,
        "u1",
        ["i1", "i2"],
        ["model", "promotion"],
    )
    assert row.created_at is not None
    if connection.vendor == "postgresql":
        assert len(queries) == 1
        assert "synchronous_commit" in queries[0]["sql"]


@pytest.mark.django_db(transaction=True)
def test_a_failed_insert_leaves_the_connection_usable(project, settings):
    settings.SERVED_LOG_FLUSH_SECONDS = 0
    req = request_for(project)
    rec_id = recommending._log(req, "recommendations", ITEMS)
    with pytest.raises(IntegrityError):
        recommending._log(req, "recommendations", ITEMS, recommendation_id=rec_id)
    # No transaction left open or aborted: the next statements work and commit.
    other = recommending._log(req, "recommendations", ITEMS)
    assert ServedRecommendation.objects.filter(recommendation_id__in=[rec_id, other]).count() == 2


@pytest.mark.django_db
def test_inside_a_transaction_the_row_is_part_of_it(project):
    rec_id = recommending._log(request_for(project), "rank", ITEMS)
    assert ServedRecommendation.objects.filter(recommendation_id=rec_id, kind="rank").exists()


@pytest.mark.django_db
def test_without_cache_seconds_changes_apply_at_once(project, settings):
    settings.SERVING_CACHE_SECONDS = 0
    selectors.clear_popularity_cache()
    SavedFilter.objects.create(project=project, name="f", expression="EXCLUDE ItemID WHERE 1")
    assert selectors.saved_filter_expression(project, "f") == "EXCLUDE ItemID WHERE 1"
    SavedFilter.objects.filter(name="f").update(expression="changed")
    assert selectors.saved_filter_expression(project, "f") == "changed"


@pytest.mark.django_db
def test_with_cache_seconds_answers_are_reused_until_they_expire(project, settings):
    settings.SERVING_CACHE_SECONDS = 0.5
    selectors.clear_popularity_cache()
    serving.clear_cache()
    try:
        SavedFilter.objects.create(project=project, name="f", expression="first")
        assert selectors.saved_filter_expression(project, "f") == "first"
        SavedFilter.objects.filter(name="f").update(expression="second")
        with CaptureQueriesContext(connection) as queries:
            assert selectors.saved_filter_expression(project, "f") == "first"
            assert selectors.active_promotions(project, None) == []
            assert selectors.active_promotions(project, None) == []
        assert len(queries) == 1  # the promotions, once
        time.sleep(0.6)
        assert selectors.saved_filter_expression(project, "f") == "second"
    finally:
        selectors.clear_popularity_cache()
        serving.clear_cache()


def test_the_cache_forgets_everything_when_full(settings):
    settings.SERVING_CACHE_SECONDS = 60
    cache = serving.TtlCache()
    cache.MAX_ENTRIES = 3
    for n in range(3):
        assert cache.get(n, lambda n=n: n * 10) == n * 10
    assert cache.get(0, lambda: "reloaded") == 0
    cache.get(3, lambda: 30)  # the fourth entry: the old ones are dropped
    assert cache.get(0, lambda: "reloaded") == "reloaded"
