"""The feed service on a generated demo shop: a 3+1+1 feed over three deployed campaigns."""

from collections import Counter

import pytest

from datasets.models import Interaction, Item
from feeds import catalog as catalog_module
from feeds import feeds, recommending, selectors
from feeds.feeds import InvalidFeed, InvalidFeedCursor
from feeds.models import Feed, SavedFilter, ServedRecommendation
from models_app import serving
from models_app.models import Campaign
from tests.feeds.test_serving_api import FAST_ALS, deploy, train
from tests.helpers import committed_shop

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 200, "n_items": 150, "n_interactions": 8_000, "seed": 11}
PERSONAL, TRENDING, POPULAR = (
    "campaign:user-personalization",
    "campaign:trending-now",
    "campaign:popularity-count",
)


@pytest.fixture(autouse=True)
def fresh_caches(fresh_serving):
    """Each test starts and ends with serving's per-process caches empty."""


def deploy_three_campaigns(project):
    for recipe, params in (
        ("user-personalization", FAST_ALS),
        ("trending-now", {}),
        ("popularity-count", {}),
    ):
        deploy(project, train(project, recipe, params), name=recipe)


@pytest.fixture(scope="module")
def module_shop(django_db_setup, django_db_blocker, shop_files, tmp_path_factory):
    """The shop imported and its three campaigns trained and deployed once for the module."""
    folder = tmp_path_factory.mktemp("feeds")
    with committed_shop(
        django_db_blocker, folder, shop_files, build=deploy_three_campaigns
    ) as made:
        yield made


@pytest.fixture
def user(module_shop):
    return module_shop[0]


@pytest.fixture
def project(module_shop):
    return module_shop[1]


@pytest.fixture
def campaigns(project):
    return project


@pytest.fixture
def feed(campaigns, user):
    return feeds.create_feed(
        project=campaigns,
        name="home",
        slots=[(PERSONAL, 3), (TRENDING, 1), (POPULAR, 1)],
        fallback_source="popular",
        user=user,
    )


def active_user(project) -> str:
    counts = Counter(
        Interaction.objects.filter(project=project).values_list("user__external_id", flat=True)
    )
    # The most active user within the history window (exclusions read the newest 200 events).
    return max((n, u) for u, n in counts.items() if n <= selectors.HISTORY_LIMIT // 2)[1]


def test_pattern_3_1_1_by_position_without_duplicates(feed):
    user_id = active_user(feed.project)
    result = feeds.serve(feed.project, "home", user_id=user_id, page_size=20)
    sources = [i["source"] for i in result.items]
    assert sources[:10] == [PERSONAL] * 3 + [TRENDING, POPULAR] + [PERSONAL] * 3 + [
        TRENDING,
        POPULAR,
    ]
    assert len({i["item_id"] for i in result.items}) == 20
    assert [i["rank"] for i in result.items] == list(range(1, 21))
    assert all(i["reason"] for i in result.items)
    assert result.next_cursor
    # Seen items are left out by default.
    seen = set(
        Interaction.objects.filter(project=feed.project, user__external_id=user_id).values_list(
            "item__external_id", flat=True
        )
    )
    assert not seen & {i["item_id"] for i in result.items}
    logged = ServedRecommendation.objects.get(recommendation_id=result.recommendation_id)
    assert logged.kind == "feed" and logged.items == [i["item_id"] for i in result.items]
    assert logged.sources == sources


def test_page_two_continues_without_repeats(feed):
    user_id = active_user(feed.project)
    first = feeds.serve(feed.project, "home", user_id=user_id, page_size=15)
    second = feeds.serve(
        feed.project, "home", user_id=user_id, cursor=first.next_cursor, page_size=15
    )
    ids1 = [i["item_id"] for i in first.items]
    ids2 = [i["item_id"] for i in second.items]
    assert len(ids2) == 15 and not set(ids1) & set(ids2)
    assert [i["rank"] for i in second.items] == list(range(16, 31))
    # Exactly positions 16..30 of one long feed.
    whole = feeds.serve(feed.project, "home", user_id=user_id, page_size=30, log=False)
    assert [i["item_id"] for i in whole.items] == ids1 + ids2
    # The pattern carries over the page boundary: position 16 is personal (16 = 3*5 + 1).
    assert second.items[0]["source"] == PERSONAL


def test_page_two_holds_even_when_the_user_acts_meanwhile(feed):
    user_id = active_user(feed.project)
    first = feeds.serve(feed.project, "home", user_id=user_id, page_size=10)
    # New events between pages change the real-time scores; the session keeps the lists.
    recommending.clear_caches()
    second = feeds.serve(
        feed.project, "home", user_id=user_id, cursor=first.next_cursor, page_size=10
    )
    assert not {i["item_id"] for i in first.items} & {i["item_id"] for i in second.items}
    assert not [w for w in second.warnings if w["code"] == "source-changed"]


def test_deleted_campaign_falls_back_with_a_warning(feed):
    Campaign.objects.filter(project=feed.project, name="trending-now").delete()
    serving.clear_cache()
    result = feeds.serve(feed.project, "home", user_id=active_user(feed.project), page_size=10)
    assert len(result.items) == 10
    assert TRENDING not in {i["source"] for i in result.items}
    assert result.items[3]["source"] == "popular"  # the fallback filled trending's slot
    messages = [w["message"] for w in result.warnings if w["source"] == TRENDING]
    assert messages and "no longer exists" in messages[0] and "fallback" in messages[0]


def test_undeployed_campaign_warns(feed):
    Campaign.objects.filter(project=feed.project, name="popularity-count").update(version=None)
    serving.clear_cache()
    result = feeds.serve(feed.project, "home", user_id=None, page_size=5)
    assert len(result.items) == 5
    assert any("serves no model version" in w["message"] for w in result.warnings)


def test_cold_start_for_an_unknown_user(feed):
    result = feeds.serve(feed.project, "home", user_id="never-seen-42", page_size=10)
    assert len(result.items) == 10
    assert len({i["item_id"] for i in result.items}) == 10


def test_filter_exclusions_and_pins_apply(feed):
    project = feed.project
    cat = catalog_module.catalog_for(project)
    field = cat.category_field
    assert field
    category = cat.categories_of(0)[0]
    saved = SavedFilter.objects.create(
        project=project,
        name="one-category",
        expression=f"INCLUDE ItemID WHERE Items.{field} IN ($CATS)",
    )
    inside = {cat.external_ids[r] for r in cat.category_rows(category).tolist()}
    outside = sorted(set(cat.external_ids.tolist()) - inside)
    excluded = sorted(inside)[:3]
    feeds.update_feed(
        feed=feed,
        fallback_source="popular",
        saved_filter=saved,
        filter_values={"CATS": category},
        exclude_seen=False,
        excluded_text="\n".join(excluded),
        pinned=f"2 {outside[0]}\n4 {sorted(inside)[5]}",
    )
    feed = feeds.feed_in_project(project, "home")
    result = feeds.serve(project, "home", user_id=active_user(project), page_size=20, log=False)
    ids = [i["item_id"] for i in result.items]
    assert ids and set(ids) <= inside
    assert not set(excluded) & set(ids)
    # The pin outside the filter is skipped (with a warning); the other is at position 4.
    assert result.items[3]["item_id"] == sorted(inside)[5]
    assert result.items[3]["source"] == "pinned"
    assert any(w["code"] == "pin-skipped" for w in result.warnings)


def test_cursor_tampering_is_refused(feed):
    user_id = active_user(feed.project)
    first = feeds.serve(feed.project, "home", user_id=user_id, page_size=5)
    session, _, rest = first.next_cursor.partition(".")
    tampered = [
        first.next_cursor[:-2] + ("AA" if not first.next_cursor.endswith("AA") else "BB"),
        "0123456789abcdef." + rest,  # another session
        "garbage",
    ]
    for cursor in tampered:
        with pytest.raises(InvalidFeedCursor):
            feeds.serve(feed.project, "home", user_id=user_id, cursor=cursor, page_size=5)
    with pytest.raises(InvalidFeedCursor):  # another user's cursor
        feeds.serve(feed.project, "home", user_id="someone-else", cursor=first.next_cursor)


def test_editing_the_feed_invalidates_cursors(feed):
    first = feeds.serve(feed.project, "home", user_id=None, page_size=5)
    feeds.add_slot(feed=feed, source="trending", count=2)
    with pytest.raises(InvalidFeedCursor, match="start"):
        feeds.serve(feed.project, "home", user_id=None, cursor=first.next_cursor, page_size=5)


def test_builtin_sources(campaigns):
    feeds.create_feed(project=campaigns, name="builtins", slots=[("trending", 1), ("popular", 1)])
    result = feeds.serve(campaigns, "builtins", user_id=None, page_size=6)
    assert [i["source"] for i in result.items] == ["trending", "popular"] * 3
    assert result.items[0]["reason"] == "trending now"


def test_validation_messages(campaigns):
    with pytest.raises(InvalidFeed, match="a feed needs at least one slot"):
        feeds.create_feed(project=campaigns, name="empty", slots=[])
    with pytest.raises(InvalidFeed, match="from 1 to 50"):
        feeds.create_feed(project=campaigns, name="big", slots=[("popular", 51)])
    with pytest.raises(InvalidFeed, match="reserved"):
        feeds.create_feed(project=campaigns, name="users", slots=[("popular", 1)])
    with pytest.raises(InvalidFeed, match="Unknown source"):
        feeds.create_feed(project=campaigns, name="bad", slots=[("nonsense", 1)])
    with pytest.raises(InvalidFeed, match="no campaign"):
        feeds.create_feed(project=campaigns, name="bad", slots=[("campaign:gone", 1)])
    feed = feeds.create_feed(project=campaigns, name="ok", slots=[("popular", 1)])
    with pytest.raises(InvalidFeed, match="already exists"):
        feeds.create_feed(project=campaigns, name="ok", slots=[("popular", 1)])
    with pytest.raises(InvalidFeed, match="at least one slot"):
        feeds.remove_slot(slot=feed.slots.get())
    with pytest.raises(InvalidFeed) as excinfo:
        feeds.update_feed(feed=feed, excluded_text="nope-1\nnope-2", pinned="x y")
    assert "Unknown item ids: nope-1, nope-2" in excinfo.value.errors["excluded_items"]
    assert "not “position item-id”" in excinfo.value.errors["pinned_items"]


def test_reorder_and_remove_slots(campaigns):
    feed = feeds.create_feed(
        project=campaigns, name="f", slots=[("popular", 1), ("trending", 2), (PERSONAL, 3)]
    )
    third = feed.slots.get(position=3)
    feeds.move_slot(slot=third, offset=-1)
    assert [s.source for s in feed.slots.order_by("position")] == ["popular", PERSONAL, "trending"]
    feeds.move_slot(slot=feed.slots.get(position=1), offset=-1)  # already first: no-op
    feeds.remove_slot(slot=feed.slots.get(position=1))
    assert [(s.position, s.source) for s in feed.slots.order_by("position")] == [
        (1, PERSONAL),
        (2, "trending"),
    ]


def test_unknown_feed_lists_names(feed):
    with pytest.raises(feeds.FeedNotFound, match="home"):
        feeds.serve(feed.project, "nope", user_id=None)
    assert Feed.objects.count() == 1


def test_active_promotions_take_their_share(feed):
    from feeds.models import Promotion

    project = feed.project
    cat = catalog_module.catalog_for(project)
    category = cat.categories_of(0)[0]
    saved = SavedFilter.objects.create(
        project=project,
        name="one-category",
        expression=f"INCLUDE ItemID WHERE Items.{cat.category_field} IN ($CATS)",
    )
    Promotion.objects.create(
        project=project,
        name="Summer sale",
        filter=saved,
        filter_values={"CATS": category},
        share=0.2,
    )
    Promotion.objects.create(  # paused: not applied
        project=project,
        name="Old",
        filter=saved,
        filter_values={"CATS": category},
        share=0.5,
        is_active=False,
    )
    inside = {cat.external_ids[r] for r in cat.category_rows(category).tolist()}
    result = feeds.serve(project, "home", user_id=active_user(project), page_size=10, log=False)
    promoted = [i for i in result.items if i["source"] == "promotion:Summer sale"]
    assert [i["rank"] for i in promoted] == [5, 10]
    assert all(i["reason"] == "promoted: Summer sale" and i["item_id"] in inside for i in promoted)
    # The slot pattern goes on around them: 3 personal, 1 trending, then the promotion.
    assert [i["source"] for i in result.items[:4]] == [PERSONAL] * 3 + [TRENDING]
    assert result.items[5]["source"] == POPULAR


def test_a_new_session_reuses_lists_only_while_nothing_changed(feed):
    project = feed.project
    user_id = active_user(project)

    def list_entries():
        return [k for k in feeds._sessions if k[0] == "lists"]

    first = feeds.serve(project, "home", user_id=user_id, page_size=10, log=False)
    again = feeds.serve(project, "home", user_id=user_id, page_size=10, log=False)
    assert [i["item_id"] for i in again.items] == [i["item_id"] for i in first.items]
    assert len(list_entries()) == 1
    # The user views the first item: a new page 1 is computed from the new state.
    last = Interaction.objects.filter(project=project, user__external_id=user_id).latest(
        "timestamp"
    )
    shown = first.items[0]["item_id"]
    item = Item.objects.get(project=project, external_id=shown)
    Interaction.objects.create(
        project=project, user=last.user, item=item, timestamp=last.timestamp + 60, event_type="view"
    )
    fresh = feeds.serve(project, "home", user_id=user_id, page_size=10, log=False)
    assert len(list_entries()) == 2
    assert shown not in [i["item_id"] for i in fresh.items]


def test_followed_source_gives_what_followed_users_did(campaigns):
    from datasets.models import EndUser, Relation

    project = campaigns
    assert feeds.followed_available()
    counts = Counter(
        Interaction.objects.filter(project=project).values_list("user__external_id", flat=True)
    )
    reader_id, followee_id = [u for u, n in counts.most_common()[-2:]]
    reader = EndUser.objects.get(project=project, external_id=reader_id)
    followee = EndUser.objects.get(project=project, external_id=followee_id)
    Relation.objects.create(project=project, follower=reader, followee=followee)
    followee_items = set(
        Interaction.objects.filter(project=project, user=followee).values_list(
            "item__external_id", flat=True
        )
    )
    feeds.create_feed(project=project, name="social", slots=[("followed", 2), ("popular", 1)])
    result = feeds.serve(project, "social", user_id=reader_id, page_size=6, log=False)
    social = [i for i in result.items if i["source"] == "followed"]
    assert social and {i["item_id"] for i in social} <= followee_items
    assert "follow" in social[0]["reason"]
    # A user who follows nobody: the popular source fills the slots, with a warning.
    lonely = feeds.serve(project, "social", user_id=followee_id, page_size=3, log=False)
    assert [i["source"] for i in lonely.items] == ["popular"] * 3
    assert any(w["code"] == "source-dry" for w in lonely.warnings)


def test_scroll_sessions_stay_within_their_memory_budget(monkeypatch):
    """A million-item catalogue costs 125 kB of bitmap per session, and the cache drops the
    oldest sessions beyond SESSION_CACHE_BYTES."""
    import numpy as np

    from feeds.engine.feed import Candidate

    monkeypatch.setattr(feeds, "SESSION_CACHE_BYTES", 1_000_000)
    allowed = np.zeros(1_000_000, dtype=bool)
    allowed[[3, 999_999]] = True
    lists = {"popular": [Candidate(f"i{n}") for n in range(200)]}

    def session():
        return feeds._Session(lists, np.packbits(allowed), [], None, None, 0.0)

    assert session().allows(3) and session().allows(999_999) and not session().allows(4)
    assert 125_000 <= session().nbytes < 200_000
    for n in range(20):
        feeds._session_put(("session", n), session())
    kept = [key[1] for key in feeds._sessions]
    assert kept == list(range(20 - len(kept), 20)) and 4 <= len(kept) <= 6
    assert feeds._sessions_bytes == sum(s.nbytes for s in feeds._sessions.values())
    feeds._session_put(("session", 19), session())  # replacing one keeps the count right
    assert feeds._sessions_bytes == sum(s.nbytes for s in feeds._sessions.values())
