# ruff: noqa: F811 - the fixtures imported from test_feeds are used as arguments
"""GET /api/v1/feeds/{name} and the Feeds pages (members, viewers, non-members)."""

import pytest
from django.urls import reverse

from datasets.models import Membership
from datasets.services import create_api_key, revoke_api_key
from feeds import feeds
from feeds.models import Feed, FeedSlot, SavedFilter, ServedRecommendation
from tests.feeds.test_feeds import (  # noqa: F401 - fixtures
    PERSONAL,
    POPULAR,
    SHOP_SIZE,
    TRENDING,
    active_user,
    campaigns,
    feed,
    fresh_caches,
    module_shop,
    project,
    user,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(project, settings):
    settings.API_THROTTLE_RATE = "off"
    return create_api_key(project=project, name="tests")[1]


def get(client, name, key, **params):
    return client.get(f"/api/v1/feeds/{name}", params, headers={"authorization": f"Bearer {key}"})


def test_a_page_and_the_next_one(client, feed, key):
    user_id = active_user(feed.project)
    response = get(client, "home", key, user_id=user_id, page_size=10)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"recommendation_id", "feed", "items", "next_cursor", "warnings"}
    assert body["feed"] == "home" and len(body["items"]) == 10
    assert set(body["items"][0]) == {"item_id", "score", "source", "reason", "rank"}
    assert [i["source"] for i in body["items"][:5]] == [PERSONAL] * 3 + [TRENDING, POPULAR]
    served = ServedRecommendation.objects.get(recommendation_id=body["recommendation_id"])
    assert served.kind == "feed" and served.user_external_id == user_id
    second = get(client, "home", key, user_id=user_id, page_size=10, cursor=body["next_cursor"])
    assert second.status_code == 200
    ids = [i["item_id"] for i in body["items"]] + [i["item_id"] for i in second.json()["items"]]
    assert len(set(ids)) == 20
    assert second.json()["items"][0]["rank"] == 11


def test_default_page_size_is_20(client, feed, key):
    body = get(client, "home", key).json()
    assert len(body["items"]) == 20


@pytest.mark.parametrize("size", ["0", "101", "-3", "ten", "1.5"])
def test_page_size_bounds(client, feed, key, size):
    response = get(client, "home", key, page_size=size)
    assert response.status_code == 400
    body = response.json()["error"]
    assert "page_size" in body["message"] and "page_size" in body["fields"]


@pytest.mark.parametrize("size", ["1", "100"])
def test_page_size_limits_are_allowed(client, feed, key, size):
    response = get(client, "home", key, page_size=size)
    assert response.status_code == 200 and len(response.json()["items"]) == int(size)


def test_tampered_or_foreign_cursor_is_400(client, feed, key):
    user_id = active_user(feed.project)
    cursor = get(client, "home", key, user_id=user_id, page_size=5).json()["next_cursor"]
    flipped = cursor[:-3] + ("x" if cursor[-3] != "x" else "y") + cursor[-2:]
    for bad, who in ((flipped, user_id), (cursor, "another-user"), ("hello", user_id)):
        response = get(client, "home", key, user_id=who, cursor=bad)
        assert response.status_code == 400, (bad, response.content)
        error = response.json()["error"]
        assert error["code"] == "invalid_cursor" and "page 1" in error["message"]


def test_unknown_feed_is_404_listing_names(client, feed, key):
    response = get(client, "nope", key)
    assert response.status_code == 404
    assert "home" in response.json()["error"]["message"]


def test_auth_is_required(client, feed, project):
    assert client.get("/api/v1/feeds/home").status_code == 401
    key_obj, key = create_api_key(project=project, name="gone")
    revoke_api_key(api_key=key_obj)
    assert get(client, "home", key).status_code == 401


def test_another_projects_key_does_not_see_the_feed(client, feed, make_user):
    from datasets.services import create_project

    other = create_project(name="Other", owner=make_user("olga"))
    _, other_key = create_api_key(project=other, name="k")
    assert get(client, "home", other_key).status_code == 404


def test_a_deleted_campaign_is_a_warning_not_an_error(client, feed, key):
    from models_app import serving
    from models_app.models import Campaign

    Campaign.objects.filter(project=feed.project, name="trending-now").delete()
    serving.clear_cache()
    body = get(client, "home", key, page_size=5).json()
    assert len(body["items"]) == 5
    assert any(w["source"] == TRENDING for w in body["warnings"])


def test_the_schema_documents_the_feed_endpoint(client, user):
    client.force_login(user)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    op = response.json()["paths"]["/api/v1/feeds/{name}"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"name", "user_id", "cursor", "page_size"} <= names
    assert {"200", "400", "404"} <= set(op["responses"])


# --------------------------------------------------------------------------- pages


def test_member_builds_a_feed_with_the_pages(logged_in_client, campaigns):
    client, slug = logged_in_client, campaigns.slug
    page = client.get(reverse("feeds", args=[slug]))
    assert page.status_code == 200 and "campaign:user-personalization" in page.content.decode()
    bad = client.post(reverse("feeds", args=[slug]), {"name": "x y", "source": "popular"})
    assert bad.status_code == 400 and "letters, digits" in bad.content.decode()
    bad = client.post(reverse("feeds", args=[slug]), {"name": "x", "source": "?", "count": 1})
    assert bad.status_code == 400 and "Unknown source" in bad.content.decode()
    bad = client.post(reverse("feeds", args=[slug]), {"name": "x", "source": "popular", "count": 0})
    assert bad.status_code == 400 and "from 1 to 50" in bad.content.decode()
    created = client.post(
        reverse("feeds", args=[slug]),
        {"name": "home", "source": PERSONAL, "count": 3, "fallback_source": "popular"},
    )
    assert created.status_code == 302
    feed = Feed.objects.get(name="home")
    slots_url = reverse("feed-slots", args=[slug, "home"])
    for source in (TRENDING, POPULAR):
        response = client.post(slots_url, {"action": "add", "source": source, "count": 1})
        assert response.status_code == 200
    assert [(s.source, s.count) for s in feed.slots.order_by("position")] == [
        (PERSONAL, 3),
        (TRENDING, 1),
        (POPULAR, 1),
    ]
    last = feed.slots.get(position=3)
    client.post(slots_url, {"action": "up", "slot": last.pk})
    assert feed.slots.get(position=2).source == POPULAR
    response = client.post(
        slots_url, {"action": "update", "slot": last.pk, f"count_{last.pk}": "99"}
    )
    assert "from 1 to 50" in response.content.decode()
    for slot in list(feed.slots.all())[1:]:
        client.post(slots_url, {"action": "remove", "slot": slot.pk})
    response = client.post(slots_url, {"action": "remove", "slot": feed.slots.get().pk})
    assert "a feed needs at least one slot" in response.content.decode()
    edit = client.post(
        reverse("feed-edit", args=[slug, "home"]),
        {"fallback_source": "popular", "excluded_items": "no-such-item", "pinned_items": ""},
    )
    assert edit.status_code == 400 and "Unknown item id: no-such-item" in edit.content.decode()
    saved = SavedFilter.objects.create(
        project=campaigns, name="cheap", expression="INCLUDE ItemID WHERE Items.PRICE < $MAX"
    )
    params = client.get(reverse("feed-params", args=[slug]), {"filter": saved.pk})
    assert 'name="param_MAX"' in params.content.decode()
    edit_url = reverse("feed-edit", args=[slug, "home"])
    missing = client.post(edit_url, {"fallback_source": "popular", "filter": saved.pk})
    assert missing.status_code == 400 and "give it a value" in missing.content.decode()
    saved_ok = client.post(
        edit_url,
        {"fallback_source": "popular", "filter": saved.pk, "param_MAX": "50", "exclude_seen": "on"},
    )
    assert saved_ok.status_code == 302
    feed.refresh_from_db()
    assert feed.filter == saved and feed.filter_values == {"MAX": "50"} and feed.exclude_seen
    assert 'value="50"' in client.get(edit_url).content.decode()
    preview = client.get(reverse("feed-preview", args=[slug, "home"]), {"user_id": "nobody-x"})
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Unknown user" in html and html.count('class="feed-item"') == 20
    users = client.get(reverse("feed-users", args=[slug]), {"user_id": "u0"})
    assert "<option" in users.content.decode()


def test_viewers_look_and_preview_but_do_not_change(client, feed, make_user):
    viewer = make_user("victor")
    Membership.objects.create(project=feed.project, user=viewer, role=Membership.Role.VIEWER)
    client.force_login(viewer)
    slug = feed.project.slug
    page = client.get(reverse("feeds", args=[slug])).content.decode()
    assert "You are a viewer" in page and 'id="feed-create"' not in page
    assert client.get(reverse("feed-edit", args=[slug, "home"])).status_code == 200
    assert client.get(reverse("feed-preview", args=[slug, "home"])).status_code == 200
    slot = FeedSlot.objects.filter(feed=feed).first()
    for url, data in (
        (reverse("feeds", args=[slug]), {"name": "x", "source": "popular"}),
        (reverse("feed-slots", args=[slug, "home"]), {"action": "remove", "slot": slot.pk}),
        (reverse("feed-delete", args=[slug, "home"]), {}),
        (reverse("feed-edit", args=[slug, "home"]), {"fallback_source": ""}),
    ):
        assert client.post(url, data).status_code == 403
    assert FeedSlot.objects.filter(feed=feed).count() == 3


def test_non_members_get_404(client, feed, make_user):
    client.force_login(make_user("mallory"))
    slug = feed.project.slug
    for url in (
        reverse("feeds", args=[slug]),
        reverse("feed-edit", args=[slug, "home"]),
        reverse("feed-preview", args=[slug, "home"]),
    ):
        assert client.get(url).status_code == 404


def test_side_by_side_preview(logged_in_client, feed):
    feeds.create_feed(project=feed.project, name="plain", slots=[("popular", 1)])
    user_id = active_user(feed.project)
    response = logged_in_client.get(
        reverse("feed-preview", args=[feed.project.slug, "home"]),
        {"user_id": user_id, "compare": "plain", "page_size": 5},
    )
    html = response.content.decode()
    assert html.count('class="card feed-column"') == 2
    assert html.count('class="feed-item"') == 10
    assert 'id="history"' in html
