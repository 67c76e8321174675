"""The per-process item catalogue: arrays, lookups, schema for filters, and refresh."""

import pytest

from datasets.services import upsert_items
from feeds import catalog as catalog_module
from feeds.engine.filters import compile_filter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh():
    catalog_module.clear_cache()
    yield
    catalog_module.clear_cache()


def add(project, *items):
    result = upsert_items(project=project, items=list(items))
    assert result.accepted == len(items), result.rejected


def test_catalog_arrays_lookups_and_filters(project):
    add(
        project,
        {"item_id": "b", "properties": {"TITLE": "Blue shoe", "CATEGORY": "Shoes", "PRICE": 30}},
        {"item_id": "a", "properties": {"CATEGORY": "Bags", "PRICE": 80}},
    )
    catalog = catalog_module.catalog_for(project)
    assert len(catalog) == 2
    assert list(catalog.item_ids) == sorted(catalog.item_ids)
    row_b, row_a = catalog.row_of("b"), catalog.row_of("a")
    assert catalog.row_of("zzz") is None
    assert list(catalog.rows_of(["a", "nope", "b"])) == [row_a, -1, row_b]
    assert list(catalog.rows_for_ids(catalog.item_ids[::-1])) == [1, 0]
    assert catalog.titles[row_b] == "Blue shoe" and catalog.titles[row_a] == "a"
    assert catalog.category_field == "CATEGORY"
    assert catalog.categories_of(row_b) == ["Shoes"]
    assert list(catalog.category_rows("shoes")) == [row_b]
    assert catalog.attributes_of(row_b)["ITEM_ID"] == "b"
    # Attributes sent through the API without a schema field can be filtered on.
    flt = compile_filter("INCLUDE ItemID WHERE Items.PRICE < 50", schema=catalog.schema)
    assert list(flt.mask(catalog.table)) == [row == row_b for row in range(2)]


def test_the_cached_catalogue_refreshes_when_items_change(project, monkeypatch):
    add(project, {"item_id": "a", "properties": {"CATEGORY": "Bags"}})
    first = catalog_module.catalog_for(project)
    assert catalog_module.catalog_for(project) is first  # within REFRESH_SECONDS: no query
    monkeypatch.setattr(catalog_module, "REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(catalog_module, "UNSURE_SECONDS", 0.0)
    assert catalog_module.catalog_for(project) is first  # checked, nothing changed
    add(project, {"item_id": "b", "properties": {"CATEGORY": "Shoes"}})
    second = catalog_module.catalog_for(project)
    assert second is not first and len(second) == 2
    # An update in the same second leaves count and updated_at as they were; a catalogue
    # built so soon after a change is rebuilt at the next check anyway.
    monkeypatch.setattr(catalog_module, "UNSURE_SECONDS", 3600.0)
    add(project, {"item_id": "b", "properties": {"CATEGORY": "Toys"}})
    third = catalog_module.catalog_for(project)
    assert third.categories_of(third.row_of("b")) == ["Toys"]


def test_an_empty_project_has_an_empty_catalogue(project):
    catalog = catalog_module.catalog_for(project)
    assert len(catalog) == 0 and catalog.row_of("a") is None
    assert list(catalog.rows_for_ids([1, 2])) == [-1, -1]
