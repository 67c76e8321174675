"""After a big import PostgreSQL's planner statistics are refreshed at once (VACUUM (ANALYZE);
ANALYZE inside a transaction), so the first serving requests get good plans and index-only
reads instead of waiting for autovacuum."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datasets import imports
from tests.feeds.test_serving_api import import_shop

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="planner statistics: PostgreSQL"),
]


def analyzed_tables(queries, command="ANALYZE") -> list[str]:
    return [
        q["sql"].removeprefix(command).split()[0]
        for q in queries
        if q["sql"].startswith(command + " ")
    ]


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


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_table_is_vacuumed_too(project, shop_files, monkeypatch):
    monkeypatch.setattr(imports, "ANALYZE_MIN_ROWS", 1_000)
    with CaptureQueriesContext(connection) as captured:
        import_shop(project, shop_files)
    assert analyzed_tables(captured, "VACUUM (ANALYZE)") == ["datasets_interaction"]
