"""The feed builder and the per-user preview in a real browser, on a generated demo shop with
three deployed campaigns (user-personalization, trending-now, popularity-count)."""

from collections import Counter

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import Interaction
from datasets.services import create_project
from feeds import feeds
from models_app import services
from tests.helpers import clear_serving_caches

SHOP_SIZE = {"n_users": 120, "n_items": 120, "n_interactions": 4_000, "seed": 9}
PERSONAL, TRENDING, POPULAR = (
    "campaign:user-personalization",
    "campaign:trending-now",
    "campaign:popularity-count",
)


@pytest.fixture
def shop(user, tmp_path, settings):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    files = generate_demo_shop(tmp_path / "shop", **SHOP_SIZE)["files"]
    project = create_project(name="Shoe shop", owner=user)
    for kind in ("items", "users", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    for recipe, params in (
        ("user-personalization", {"factors": 16, "iterations": 8, "exploration_weight": 0.0}),
        ("trending-now", {}),
        ("popularity-count", {}),
    ):
        solution = services.create_solution(project=project, recipe=recipe, params=params)
        run = services.run_training(services.start_training(solution=solution, enqueue=False))
        assert run.status == "succeeded", run.error
        services.create_campaign(project=project, name=recipe, version=run.version)
    clear_serving_caches()
    yield project
    clear_serving_caches()


def rows(page):
    items = page.locator(".feed-column").first.locator("tr.feed-item")
    return [
        (items.nth(i).get_attribute("data-item"), items.nth(i).get_attribute("data-source"))
        for i in range(items.count())
    ]


def test_build_a_3_1_1_feed_and_preview_a_user(page, shop, user, log_in, screenshot):
    counts = Counter(
        Interaction.objects.filter(project=shop).values_list("user__external_id", flat=True)
    )
    demo_user = counts.most_common(5)[-1][0]
    log_in(user)
    page.goto(f"/p/{shop.slug}/")
    page.get_by_role("link", name="Feeds", exact=True).click()
    expect(page.get_by_role("heading", name="Feeds")).to_be_visible()

    # A feed without a name is refused with a message; then the real one.
    page.click("text=Create feed")
    expect(page.locator("#feed-create .error")).to_contain_text("letters, digits")
    page.fill("#id_name", "home")
    page.select_option("#id_source", PERSONAL)
    page.fill("#id_count", "3")
    page.select_option("#id_fallback_source", "popular")
    page.click("text=Create feed")
    expect(page.get_by_role("heading", name="Feed “home”")).to_be_visible()

    # Add the two other slots with htmx, in the wrong order, then move one up.
    for source in (POPULAR, TRENDING):
        before = page.locator("tr.slot-row").count()
        page.select_option("#id_new_source", source)
        page.fill("#id_new_count", "1")
        page.click("#add-slot-button")
        expect(page.locator("tr.slot-row")).to_have_count(before + 1)
    page.click("button[aria-label='Move slot 3 up']")
    expect(page.locator("#pattern-summary .chip")).to_have_text(
        [f"3 × {PERSONAL}", f"1 × {TRENDING}", f"1 × {POPULAR}"]
    )
    # A bad count is refused next to the table.
    page.fill("input[aria-label='Count of slot 2']", "60")
    page.locator("input[aria-label='Count of slot 2']").dispatch_event("change")
    expect(page.locator("#slot-error")).to_contain_text("from 1 to 50")
    screenshot("feed-builder")

    # An unknown excluded id gets a clear message.
    page.fill("#id_excluded_items", "no-such-item")
    page.click("text=Save settings")
    expect(page.locator("#excluded-error")).to_contain_text("Unknown item id: no-such-item")
    page.fill("#id_excluded_items", "")
    page.click("text=Save settings")
    expect(page.locator(".messages")).to_contain_text("saved")

    # Preview the demo user, five items per page.
    feeds.create_feed(project=shop, name="popular-only", slots=[("popular", 1)])
    page.click("#preview-link")
    page.fill("#id_user_id", demo_user)
    page.fill("#id_page_size", "5")
    page.click("#show-preview")
    expect(page.locator(".feed-column tr.feed-item")).to_have_count(5)
    first = rows(page)
    assert [source for _, source in first] == [PERSONAL] * 3 + [TRENDING, POPULAR]
    assert len({item for item, _ in first}) == 5
    expect(page.locator("#history tbody tr")).to_have_count(20)
    expect(page.locator(".feed-column .reason").first).not_to_be_empty()
    screenshot("feed-preview-page-1")

    page.click("a.next-page")
    expect(page.locator(".feed-column tr.feed-item").first).to_have_attribute("data-rank", "6")
    second = rows(page)
    assert [source for _, source in second] == [PERSONAL] * 3 + [TRENDING, POPULAR]
    assert not {item for item, _ in first} & {item for item, _ in second}
    screenshot("feed-preview-page-2")

    # Side by side with another feed, for the same user.
    page.select_option("#id_compare", "popular-only")
    page.click("#show-preview")
    expect(page.locator(".feed-column")).to_have_count(2)
    expect(page.locator(".feed-column").nth(1).locator("tr.feed-item")).to_have_count(5)
    screenshot("feed-preview-side-by-side")

    # An unknown user: cold start, said so.
    page.fill("#id_user_id", "someone-new")
    page.click("#show-preview")
    expect(page.locator("#unknown-user")).to_be_visible()
    expect(page.locator(".feed-column").first.locator("tr.feed-item")).to_have_count(5)
    screenshot("feed-preview-unknown-user")
