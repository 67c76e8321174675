"""Promotions: validation in the service, active_promotions for serving, the Promotions pages."""

import re
from datetime import timedelta

import pandas as pd
import pytest
from django.urls import reverse
from django.utils import timezone

from datasets import imports
from datasets.models import Membership
from datasets.services import create_project
from feeds import catalog
from feeds.models import Promotion
from feeds.promotions import active_promotions, promotion_status, with_match_counts
from feeds.services import (
    InvalidInput,
    create_promotion,
    create_saved_filter,
    set_promotion_active,
    update_promotion,
)
from models_app.models import Campaign

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 120, "n_items": 150, "n_interactions": 2_000, "seed": 9}


def in_category(items, *names, project) -> int:
    """Items whose category is one of ``names``; when the import found CATEGORY multi-valued
    ("Shoes|Running"), items having one of them among their categories."""
    schema = imports.get_schema(project, "items")
    multi = any(f.multi for f in schema if f.name == "CATEGORY")
    split = items["CATEGORY"].str.split("|") if multi else items["CATEGORY"].map(lambda v: [v])
    return int(split.apply(lambda values: bool(set(values) & set(names))).sum())


@pytest.fixture
def shop(project, shop_files, data_dirs):
    """The project with the demo shop's items imported (the catalogue promotions select from)."""
    job = imports.import_file(project=project, kind="items", path=shop_files["items"])
    assert job.status == "succeeded", job.error
    catalog.clear_cache()
    yield project
    catalog.clear_cache()


@pytest.fixture
def items(shop_files):
    return pd.read_csv(shop_files["items"])


@pytest.fixture
def by_category(shop):
    return create_saved_filter(
        project=shop,
        name="by-category",
        expression="INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)",
    )


@pytest.fixture
def cheap(shop):
    return create_saved_filter(
        project=shop, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < $MAX"
    )


def promote(project, saved_filter, **overrides):
    arguments = {
        "project": project,
        "name": "Summer sale",
        "saved_filter": saved_filter,
        "filter_values": {"CATS": "Running"},
        "share": 0.2,
    }
    arguments.update(overrides)
    return create_promotion(**arguments)


def errors_of(call) -> dict:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value.errors


# --- validation ---------------------------------------------------------------------------


def test_a_valid_promotion_is_stored(shop, by_category, user):
    promotion = promote(shop, by_category, reason="Summer deals", user=user)
    promotion.refresh_from_db()
    assert promotion.filter_values == {"CATS": "Running"}
    assert promotion.share == 0.2 and promotion.positions == []
    assert promotion.is_active and promotion.created_by == user


@pytest.mark.parametrize("share", [0, -0.1, 0.51, 1.0])
def test_the_share_must_be_above_0_and_at_most_half(shop, by_category, share):
    errors = errors_of(lambda: promote(shop, by_category, share=share))
    assert "more than 0% and at most 50%" in errors["share"]
    assert f"got {share * 100:g}%" in errors["share"]


def test_a_share_or_positions_is_needed(shop, by_category):
    errors = errors_of(lambda: promote(shop, by_category, share=None))
    assert "or explicit positions" in errors["share"]


@pytest.mark.parametrize(
    ("positions", "fragment"),
    [
        ("0, 3", "“0” is not"),
        ("1, two", "“two” is not"),
        ("-1", "“-1” is not"),
        ("2.5", "“2.5” is not"),
        ("1, 1", "only once"),
        ("501", "at most 500 items"),
    ],
)
def test_positions_must_be_distinct_positive_integers(shop, by_category, positions, fragment):
    errors = errors_of(lambda: promote(shop, by_category, positions=positions))
    assert fragment in errors["positions"]


def test_positions_replace_the_share(shop, by_category):
    promotion = promote(shop, by_category, positions="10, 1,5", share=None)
    assert promotion.positions == [1, 5, 10]


def test_the_end_must_be_after_the_start(shop, by_category):
    start = timezone.now()
    errors = errors_of(
        lambda: promote(shop, by_category, starts_at=start, ends_at=start - timedelta(days=1))
    )
    assert "must be after the start" in errors["ends_at"]


def test_every_filter_parameter_needs_a_value(shop, by_category, cheap):
    errors = errors_of(lambda: promote(shop, by_category, filter_values={"CATS": "  "}))
    assert "The filter uses $CATS: give it a value" in errors["param_CATS"]
    errors = errors_of(lambda: promote(shop, cheap, filter_values={"MAX": "cheap"}))
    assert "$MAX" in errors["filter_values"] and "number" in errors["filter_values"]
    assert promote(shop, cheap, filter_values={"MAX": "25"}).filter_values == {"MAX": "25"}


def test_names_are_unique_and_filters_and_campaigns_belong_to_the_project(
    shop, by_category, other_user
):
    promote(shop, by_category)
    assert "already has a promotion" in errors_of(lambda: promote(shop, by_category))["name"]
    other = create_project(name="Other", owner=other_user)
    foreign_campaign = Campaign.objects.create(project=other, name="home")
    errors = errors_of(lambda: promote(shop, by_category, name="B", campaign=foreign_campaign))
    assert "another project" in errors["campaign"]
    foreign_filter = create_saved_filter(
        project=other, name="f", expression='EXCLUDE ItemID WHERE Interactions.event_type = "x"'
    )
    errors = errors_of(lambda: promote(other, by_category, name="C"))
    assert "Pick the saved filter" in errors["filter"]
    assert foreign_filter.project == other


def test_update_keeps_the_rules(shop, by_category):
    promotion = promote(shop, by_category)
    errors = errors_of(
        lambda: update_promotion(
            promotion=promotion,
            name="Summer sale",
            saved_filter=by_category,
            filter_values={"CATS": "Yoga"},
            share=0.7,
        )
    )
    assert "at most 50%" in errors["share"]
    update_promotion(
        promotion=promotion,
        name="Summer sale",
        saved_filter=by_category,
        filter_values={"CATS": "Yoga"},
        share=0.3,
    )
    promotion.refresh_from_db()
    assert promotion.share == 0.3 and promotion.filter_values == {"CATS": "Yoga"}


# --- for serving --------------------------------------------------------------------------


def test_active_promotions_respect_pause_dates_and_campaign(shop, by_category):
    now = timezone.now()
    home = Campaign.objects.create(project=shop, name="home")
    email = Campaign.objects.create(project=shop, name="email")
    everywhere = promote(shop, by_category, name="everywhere")
    home_only = promote(shop, by_category, name="home-only", campaign=home)
    promote(shop, by_category, name="later", starts_at=now + timedelta(hours=1))
    promote(shop, by_category, name="over", ends_at=now - timedelta(minutes=1))
    window = promote(
        shop,
        by_category,
        name="window",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    paused = promote(shop, by_category, name="paused")
    set_promotion_active(promotion=paused, active=False)

    def names(**kwargs):
        return [p.name for p in active_promotions(shop, **kwargs)]

    assert names() == ["everywhere", "window"]
    assert names(campaign=home) == ["everywhere", "home-only", "window"]
    assert names(campaign=email) == ["everywhere", "window"]
    assert names(now=now + timedelta(hours=2)) == ["everywhere", "later"]
    assert names(now=now - timedelta(days=1)) == ["everywhere", "over"]
    assert active_promotions(shop)[0].filter.expression == by_category.expression
    set_promotion_active(promotion=paused, active=True)
    assert "paused" in names()
    assert promotion_status(home_only, now) == "active"
    assert promotion_status(window, now + timedelta(hours=2)) == "ended"
    assert promotion_status(window, now - timedelta(hours=2)) == "scheduled"
    other = create_project(name="Other", owner=shop.memberships.first().user)
    assert active_promotions(other) == []
    assert everywhere.pk in [p.pk for p in active_promotions(shop)]


def test_active_promotions_is_one_query(shop, by_category, django_assert_num_queries):
    for name in ("a", "b", "c"):
        promote(shop, by_category, name=name)
    with django_assert_num_queries(1):
        promotions = active_promotions(shop)
        assert [p.filter.name for p in promotions] == ["by-category"] * 3


def test_match_counts_use_the_promotion_values(shop, by_category, items):
    promotion = promote(shop, by_category, filter_values={"CATS": "Running, Yoga"})
    [counted] = with_match_counts(shop, [promotion])
    assert counted.preview.matched == in_category(items, "Running", "Yoga", project=shop)


# --- the pages ----------------------------------------------------------------------------


def test_creating_a_promotion_from_the_page(logged_in_client, shop, by_category, items):
    url = reverse("promotion-create", args=[shop.slug])
    form = logged_in_client.get(url).content.decode()
    assert "by-category" in form
    params = logged_in_client.get(
        reverse("promotion-params", args=[shop.slug]), {"filter": by_category.pk}
    ).content.decode()
    assert 'name="param_CATS"' in params
    response = logged_in_client.post(
        url,
        {
            "name": "Running week",
            "filter": by_category.pk,
            "param_CATS": "Running",
            "mode": "share",
            "share_percent": "25",
            "positions": "",
            "starts_at": "2026-01-01T09:00",
            "ends_at": "2099-01-01T09:00",
            "reason": "Running week",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    promotion = Promotion.objects.get(project=shop, name="Running week")
    assert promotion.share == 0.25 and promotion.filter_values == {"CATS": "Running"}
    assert promotion.starts_at.year == 2026
    listing = logged_in_client.get(reverse("promotions", args=[shop.slug])).content.decode()
    assert "Active now" in listing and "25% of slots" in listing
    running = in_category(items, "Running", project=shop)
    assert f'<span class="match">{running}</span>' in listing


def test_the_form_shows_each_mistake_next_to_its_field(logged_in_client, shop, by_category):
    response = logged_in_client.post(
        reverse("promotion-create", args=[shop.slug]),
        {
            "name": "Bad",
            "filter": by_category.pk,
            "param_CATS": "",
            "mode": "share",
            "share_percent": "60",
            "starts_at": "2026-02-01T09:00",
            "ends_at": "2026-01-01T09:00",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "at most 50% (got 60%)" in page
    assert "must be after the start" in page
    assert "The filter uses $CATS: give it a value" in page
    assert not Promotion.objects.filter(name="Bad").exists()
    positions = logged_in_client.post(
        reverse("promotion-create", args=[shop.slug]),
        {
            "name": "Bad",
            "filter": by_category.pk,
            "param_CATS": "Yoga",
            "mode": "positions",
            "positions": "1, x",
        },
    )
    assert positions.status_code == 400
    assert "“x” is not" in positions.content.decode()


def test_editing_a_promotion_shows_and_keeps_its_values(logged_in_client, shop, by_category):
    promotion = promote(shop, by_category, positions="1, 4", share=None, reason="Deals")
    url = reverse("promotion-edit", args=[shop.slug, promotion.pk])
    page = logged_in_client.get(url).content.decode()
    assert 'value="1, 4"' in page and 'value="Running"' in page and 'value="Deals"' in page
    assert re.search(r'value="positions"[^>]*checked', page)
    response = logged_in_client.post(
        url,
        {
            "name": "Summer sale",
            "filter": by_category.pk,
            "param_CATS": "Yoga, Running",
            "mode": "share",
            "share_percent": "12.5",
            "positions": "1, 4",  # ignored: the share was picked
        },
    )
    assert response.status_code == 302
    promotion.refresh_from_db()
    assert promotion.share == 0.125 and promotion.positions == []
    assert promotion.filter_values == {"CATS": "Yoga, Running"}


def test_pause_resume_and_delete(logged_in_client, shop, by_category):
    promotion = promote(shop, by_category)
    toggle = reverse("promotion-toggle", args=[shop.slug, promotion.pk])
    logged_in_client.post(toggle)
    promotion.refresh_from_db()
    assert not promotion.is_active
    listing = logged_in_client.get(reverse("promotions", args=[shop.slug])).content.decode()
    assert 'id="promotions-paused"' in listing and "Resume" in listing
    logged_in_client.post(toggle)
    promotion.refresh_from_db()
    assert promotion.is_active
    logged_in_client.post(reverse("promotion-delete", args=[shop.slug, promotion.pk]))
    assert not Promotion.objects.filter(pk=promotion.pk).exists()


def test_viewers_look_non_members_get_404(client, shop, by_category, make_user, other_user):
    promotion = promote(shop, by_category)
    viewer = make_user("victor")
    Membership.objects.create(project=shop, user=viewer, role=Membership.Role.VIEWER)
    client.force_login(viewer)
    listing = client.get(reverse("promotions", args=[shop.slug])).content.decode()
    assert "Summer sale" in listing and "You are a viewer" in listing
    assert 'id="new-promotion"' not in listing and "Pause" not in listing
    for name in ("promotion-toggle", "promotion-delete"):
        assert client.post(reverse(name, args=[shop.slug, promotion.pk])).status_code == 403
    create = client.post(
        reverse("promotion-create", args=[shop.slug]),
        {"name": "V", "filter": by_category.pk, "param_CATS": "Yoga", "share_percent": "10"},
    )
    assert create.status_code == 403
    assert Promotion.objects.filter(project=shop).count() == 1
    client.force_login(other_user)
    assert client.get(reverse("promotions", args=[shop.slug])).status_code == 404
    edit = reverse("promotion-edit", args=[shop.slug, promotion.pk])
    assert client.get(edit).status_code == 404
