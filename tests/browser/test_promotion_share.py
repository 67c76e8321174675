"""Issue #7: create a promotion in the browser (20% of the slots for a category) and see its
share in the feed preview: the promoted items labelled with the promotion's name, two of every
ten positions, and all of them in the promoted category."""

import pandas as pd
import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import Interaction
from datasets.services import create_project
from feeds import feeds
from feeds.models import SavedFilter
from models_app import services
from tests.helpers import clear_serving_caches

SHOP_SIZE = {"n_users": 120, "n_items": 150, "n_interactions": 3_000, "seed": 7}


@pytest.fixture
def shop(user, tmp_path, settings):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    files = generate_demo_shop(tmp_path / "shop", **SHOP_SIZE)["files"]
    project = create_project(name="Shoe shop", owner=user)
    for kind in ("items", "users", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    solution = services.create_solution(project=project, recipe="popularity-count")
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    services.create_campaign(project=project, name="default", version=run.version)
    feeds.create_feed(project=project, name="home", slots=[("campaign:default", 1)])
    SavedFilter.objects.create(
        project=project,
        name="by-category",
        expression="INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)",
    )
    clear_serving_caches()
    yield project, pd.read_csv(files["items"], dtype=str)
    clear_serving_caches()


def test_a_promotion_takes_its_share_of_the_feed_preview(page, shop, user, log_in, screenshot):
    project, items = shop
    categories = dict(zip(items.ITEM_ID, items.CATEGORY.fillna(""), strict=True))
    audio = {i for i, c in categories.items() if "Audio" in c.split("|")}
    assert len(audio) >= 6
    shopper = (
        Interaction.objects.filter(project=project)
        .values_list("user__external_id", flat=True)
        .first()
    )
    log_in(user)
    page.goto(f"/p/{project.slug}/feeds/home/preview/?user_id={shopper}&page_size=10")
    before = page.locator(".feed-column tr.feed-item")
    expect(before).to_have_count(10)
    assert not page.locator('.feed-column tr.feed-item[data-source^="promotion"]').count()

    page.goto(f"/p/{project.slug}/")
    page.get_by_role("link", name="Promotions", exact=True).click()
    page.get_by_role("link", name="New promotion").click()
    page.fill("#id_name", "Audio week")
    page.select_option("#id_filter", label="by-category")
    page.fill("#id_param_CATS", "Audio")
    page.fill("#id_share_percent", "20")
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_text("Promotion “Audio week” created.")).to_be_visible()
    expect(page.locator("#promotions-active")).to_contain_text("20% of slots")
    expect(page.locator("#promotions-active .match")).to_have_text(str(len(audio)))

    page.goto(f"/p/{project.slug}/feeds/home/preview/?user_id={shopper}&page_size=10")
    rows = page.locator(".feed-column tr.feed-item")
    expect(rows).to_have_count(10)
    promoted = page.locator('.feed-column tr.feed-item[data-source^="promotion"]')
    expect(promoted).to_have_count(2)  # 20% of 10 places
    # Positions 5 and 10 (one in five), labelled with the promotion's name, all Audio items.
    assert [promoted.nth(i).get_attribute("data-rank") for i in range(2)] == ["5", "10"]
    expect(promoted.locator(".reason")).to_have_text(["promoted: Audio week"] * 2)
    expect(promoted.locator("code")).to_have_text(["promotion:Audio week"] * 2)
    assert {promoted.nth(i).get_attribute("data-item") for i in range(2)} <= audio
    screenshot("promotion-share-preview")

    # A longer page gets more promoted items: 20% of 20 = 4.
    page.fill("#id_page_size", "20")
    page.click("#show-preview")
    expect(page.locator(".feed-column tr.feed-item")).to_have_count(20)
    expect(page.locator('.feed-column tr.feed-item[data-source^="promotion"]')).to_have_count(4)
