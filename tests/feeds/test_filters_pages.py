"""Saved filters: the service, the Filters pages and the live preview on an imported demo shop."""

import pandas as pd
import pytest
from django.db.models import ProtectedError
from django.urls import reverse

from datasets import imports
from datasets.models import Membership
from feeds import catalog
from feeds.models import Promotion, SavedFilter
from feeds.promotions import preview_filter
from feeds.services import InvalidInput, create_saved_filter, delete_saved_filter

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 120, "n_items": 150, "n_interactions": 3_000, "seed": 5}


def in_category(items, *names, project) -> int:
    """Items whose category is one of ``names``; when the import found CATEGORY multi-valued
    ("Shoes|Running"), items having one of them among their categories."""
    schema = imports.get_schema(project, "items")
    multi = any(f.multi for f in schema if f.name == "CATEGORY")
    split = items["CATEGORY"].str.split("|") if multi else items["CATEGORY"].map(lambda v: [v])
    return int(split.apply(lambda values: bool(set(values) & set(names))).sum())


@pytest.fixture
def shop(project, shop_files, data_dirs):
    """The project with the demo shop's items, users and interactions imported."""
    for kind in ("items", "users", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=shop_files[kind])
        assert job.status == "succeeded", job.error
    catalog.clear_cache()
    yield project
    catalog.clear_cache()


@pytest.fixture
def items(shop_files):
    return pd.read_csv(shop_files["items"])


@pytest.fixture
def events(shop_files):
    return pd.read_csv(shop_files["interactions"])


def preview_url(project, **params):
    return reverse("filter-preview", args=[project.slug]), params


# --- the service --------------------------------------------------------------------------


def test_a_saved_filter_is_compiled_against_the_catalogue(shop, user):
    saved = create_saved_filter(
        project=shop,
        name="running",
        expression='INCLUDE ItemID WHERE Items.CATEGORY = "Running"',
        user=user,
    )
    assert saved.created_by == user
    with pytest.raises(InvalidInput) as caught:
        create_saved_filter(
            project=shop, name="colour", expression='INCLUDE ItemID WHERE Items.colour = "red"'
        )
    error = caught.value
    assert "Unknown field Items.colour at position 21" in error.errors["expression"]
    assert "CATEGORY" in error.errors["expression"]
    assert error.pointer.splitlines()[1] == " " * 21 + "^"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "Give the filter a name"),
        ("Summer Sale", "not a valid name"),
        ("-x", "not a valid name"),
        ("running", "already has a filter named “running”"),
    ],
)
def test_filter_names_are_slugs_unique_per_project(shop, name, fragment):
    create_saved_filter(
        project=shop, name="running", expression="EXCLUDE ItemID WHERE Items.PRICE > 1"
    )
    with pytest.raises(InvalidInput) as caught:
        create_saved_filter(
            project=shop, name=name, expression="EXCLUDE ItemID WHERE Items.PRICE > 2"
        )
    assert fragment in caught.value.errors["name"]


def test_the_same_name_is_fine_in_another_project(shop, other_user):
    from datasets.services import create_project

    other = create_project(name="Other shop", owner=other_user)
    create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    create_saved_filter(
        project=other,
        name="cheap",
        expression='EXCLUDE ItemID WHERE Interactions.event_type = "buy"',
    )
    assert SavedFilter.objects.filter(name="cheap").count() == 2


def test_a_filter_a_promotion_uses_cannot_be_deleted(shop):
    saved = create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    Promotion.objects.create(project=shop, name="Bargains", filter=saved, share=0.2)
    with pytest.raises(InvalidInput) as caught:
        delete_saved_filter(saved_filter=saved)
    message = caught.value.errors["filter"]
    assert "cannot be deleted" in message and "“Bargains”" in message
    assert SavedFilter.objects.filter(pk=saved.pk).exists()
    with pytest.raises(ProtectedError):  # the database refuses too
        saved.delete()
    Promotion.objects.filter(filter=saved).delete()
    delete_saved_filter(saved_filter=saved)
    assert not SavedFilter.objects.filter(pk=saved.pk).exists()


# --- the preview --------------------------------------------------------------------------


def test_preview_counts_match_the_imported_catalogue(shop, items):
    running = in_category(items, "Running", project=shop)
    preview = preview_filter(shop, 'INCLUDE ItemID WHERE Items.CATEGORY = "Running"')
    assert preview.ok and preview.total == len(items)
    assert preview.matched == running
    assert 0 < running < len(items)
    assert all("Running" in row["category"].split(", ") for row in preview.sample)
    assert len(preview.sample) == min(running, 12)

    cheap_in_stock = int(((items["PRICE"] < 30) & items["IN_STOCK"]).sum())
    preview = preview_filter(
        shop,
        "INCLUDE ItemID WHERE Items.PRICE < $MAX | EXCLUDE ItemID WHERE Items.IN_STOCK = false",
        values={"MAX": "30"},
    )
    assert preview.matched == cheap_in_stock


def test_preview_lists_missing_parameters_instead_of_failing(shop, items):
    expression = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORIES)"
    preview = preview_filter(shop, expression)
    assert preview.matched is None and preview.missing_parameters == ("CATEGORIES",)
    preview = preview_filter(shop, expression, values={"CATEGORIES": "Running, Yoga"})
    assert preview.matched == in_category(items, "Running", "Yoga", project=shop)


def test_preview_for_a_user_excludes_what_they_interacted_with(shop, items, events):
    user_id = events["USER_ID"].value_counts().index[0]
    seen = set(events.loc[events["USER_ID"] == user_id, "ITEM_ID"]) & set(items["ITEM_ID"])
    expression = 'EXCLUDE ItemID WHERE Interactions.event_type IN ("*")'
    anonymous = preview_filter(shop, expression)
    assert anonymous.matched == len(items) and anonymous.uses_interactions
    preview = preview_filter(shop, expression, user_id=user_id)
    assert preview.user_found and preview.user_events == int((events["USER_ID"] == user_id).sum())
    assert preview.matched == len(items) - len(seen)
    assert not {row["item_id"] for row in preview.sample} & seen
    unknown = preview_filter(shop, expression, user_id="nobody")
    assert unknown.user_found is False and unknown.matched == len(items)


def test_preview_reports_a_bad_expression_with_a_caret(shop):
    preview = preview_filter(shop, 'INCLUDE ItemID WHERE Items.CATEGORY INN ("Running")')
    assert not preview.ok
    assert preview.error.position == 36
    assert "IN" in preview.error.expected
    assert preview.pointer.splitlines()[1] == " " * 36 + "^"


# --- the pages ----------------------------------------------------------------------------


def test_members_see_the_filters_page_others_get_404(client, shop, user, other_user):
    create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    url = reverse("filters", args=[shop.slug])
    client.force_login(other_user)
    assert client.get(url).status_code == 404
    assert client.get(reverse("filter-create", args=[shop.slug])).status_code == 404
    assert client.get(reverse("filter-preview", args=[shop.slug])).status_code == 404
    client.force_login(user)
    page = client.get(url).content.decode()
    assert "cheap" in page and "Items.PRICE &lt; 20" in page


def test_creating_a_filter_from_the_page(logged_in_client, shop):
    url = reverse("filter-create", args=[shop.slug])
    response = logged_in_client.post(
        url,
        {
            "name": "in-stock",
            "description": "Hide sold-out items",
            "expression": "EXCLUDE ItemID WHERE Items.IN_STOCK = false",
        },
    )
    assert response.status_code == 302
    saved = SavedFilter.objects.get(project=shop, name="in-stock")
    assert saved.description == "Hide sold-out items"
    listing = logged_in_client.get(reverse("filters", args=[shop.slug])).content.decode()
    assert "in-stock" in listing


def test_a_bad_expression_is_shown_under_the_box_with_a_caret(logged_in_client, shop):
    url = reverse("filter-create", args=[shop.slug])
    expression = 'INCLUDE ItemID WHERE Items.CATEGORY INN ("Running")'
    response = logged_in_client.post(url, {"name": "bad", "expression": expression})
    assert response.status_code == 400
    page = response.content.decode()
    assert "after Items.CATEGORY at position 36 (found &quot;INN&quot;)" in page
    pointer = " " * 36 + "^"
    assert pointer in page
    assert "Expected here" in page
    assert not SavedFilter.objects.filter(name="bad").exists()


def test_the_preview_endpoint_renders_counts_and_parameter_inputs(logged_in_client, shop, items):
    url = reverse("filter-preview", args=[shop.slug])
    expression = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)"
    page = logged_in_client.get(url, {"expression": expression}).content.decode()
    assert 'name="param_CATS"' in page  # the new parameter's input, swapped in out of band
    assert "Fill in" in page
    page = logged_in_client.get(
        url, {"expression": expression, "param_CATS": "Running", "shown_params": "CATS"}
    ).content.decode()
    expected = in_category(items, "Running", project=shop)
    assert f'<span id="match-count">{expected}</span>' in page
    assert 'name="param_CATS"' not in page  # unchanged parameters keep their input (and focus)


def test_editing_and_deleting_a_filter(logged_in_client, shop):
    saved = create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    url = reverse("filter-edit", args=[shop.slug, saved.pk])
    assert "Items.PRICE &lt; 20" in logged_in_client.get(url).content.decode()
    response = logged_in_client.post(
        url, {"name": "cheap", "expression": "INCLUDE ItemID WHERE Items.PRICE < 25"}
    )
    assert response.status_code == 302
    saved.refresh_from_db()
    assert saved.expression.endswith("< 25")
    Promotion.objects.create(project=shop, name="Bargains", filter=saved)
    delete_url = reverse("filter-delete", args=[shop.slug, saved.pk])
    response = logged_in_client.post(delete_url, follow=True)
    assert "cannot be deleted" in response.content.decode()
    assert SavedFilter.objects.filter(pk=saved.pk).exists()
    Promotion.objects.all().delete()
    response = logged_in_client.post(delete_url)
    assert response.status_code == 302
    assert not SavedFilter.objects.filter(pk=saved.pk).exists()


def test_editing_refuses_a_new_parameter_a_promotion_has_no_value_for(logged_in_client, shop):
    saved = create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    Promotion.objects.create(project=shop, name="Bargains", filter=saved)
    response = logged_in_client.post(
        reverse("filter-edit", args=[shop.slug, saved.pk]),
        {"name": "cheap", "expression": "INCLUDE ItemID WHERE Items.PRICE < $MAX"},
    )
    assert response.status_code == 400
    assert "“Bargains” uses this filter but has no value for $MAX" in response.content.decode()


def test_viewers_can_look_and_preview_but_not_change(client, shop, make_user):
    viewer = make_user("victor")
    Membership.objects.create(project=shop, user=viewer, role=Membership.Role.VIEWER)
    saved = create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < 20"
    )
    client.force_login(viewer)
    page = client.get(reverse("filters", args=[shop.slug])).content.decode()
    assert "You are a viewer" in page and 'id="new-filter"' not in page
    edit = client.get(reverse("filter-edit", args=[shop.slug, saved.pk])).content.decode()
    assert 'id="save-filter"' not in edit and 'id="delete-filter"' not in edit
    preview = client.get(
        reverse("filter-preview", args=[shop.slug]), {"expression": saved.expression}
    )
    assert preview.status_code == 200
    create = client.post(
        reverse("filter-create", args=[shop.slug]),
        {"name": "x", "expression": "INCLUDE ItemID WHERE Items.PRICE < 2"},
    )
    assert create.status_code == 403
    assert client.post(reverse("filter-delete", args=[shop.slug, saved.pk])).status_code == 403
    assert SavedFilter.objects.filter(project=shop).count() == 1
