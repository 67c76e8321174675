"""After a big import PostgreSQL's planner statistics are refreshed at once (ANALYZE), so the
first serving requests get good plans instead of waiting for autovacuum."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datasets import imports
from tests.feeds.test_serving_api import import_shop

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="planner statistics: PostgreSQL"),
]


def analyzed_tables(queries) -> list[str]:
    return [q["sql"].split()[1] for q in queries if q["sql"].startswith("ANALYZE")]


def test_a_big_import_analyzes_the_tables_it_loaded(project, shop_files, monkeypatch):
    monkeypatch.setattr(imports, "ANALYZE_MIN_ROWS", 1_000)
    with CaptureQueriesContext(connection) as captured:
        import_shop(project, shop_files)  # items, users, interactions
    assert analyzed_tables(captured) == ["datasets_interaction"]  # the other two are small
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'datasets_interaction'")
        assert cursor.fetchone()[0] > 0


def test_a_small_import_leaves_it_to_autovacuum(project, shop_files, monkeypatch):
    monkeypatch.setattr(imports, "ANALYZE_MIN_ROWS", 10**9)
    with CaptureQueriesContext(connection) as captured:
        import_shop(project, shop_files)
    assert analyzed_tables(captured) == []
