"""The Filters and Promotions pages in a real browser, on an imported demo shop."""

import pandas as pd
import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project
from feeds import catalog
from feeds.models import Promotion, SavedFilter

SHOP_SIZE = {"n_users": 120, "n_items": 150, "n_interactions": 2_000, "seed": 4}


def in_category(items, *names, project) -> int:
    """Items whose category is one of ``names``; when the import found CATEGORY multi-valued
    ("Shoes|Running"), items having one of them among their categories."""
    schema = imports.get_schema(project, "items")
    multi = any(f.multi for f in schema if f.name == "CATEGORY")
    split = items["CATEGORY"].str.split("|") if multi else items["CATEGORY"].map(lambda v: [v])
    return int(split.apply(lambda values: bool(set(values) & set(names))).sum())


@pytest.fixture
def shop(user, tmp_path, settings):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    files = generate_demo_shop(tmp_path / "shop", **SHOP_SIZE)["files"]
    project = create_project(name="Shoe shop", owner=user)
    for kind in ("items", "users", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    catalog.clear_cache()
    yield project, pd.read_csv(files["items"])
    catalog.clear_cache()


def test_create_a_filter_with_the_live_preview(page, shop, user, log_in, screenshot):
    project, items = shop
    running = in_category(items, "Running", project=project)
    cheap = int((items["PRICE"] < 30).sum())
    assert running != cheap
    log_in(user)
    page.goto(f"/p/{project.slug}/")
    page.get_by_role("link", name="Filters", exact=True).click()
    expect(page.get_by_role("heading", name="Filters")).to_be_visible()
    page.get_by_role("link", name="New filter").click()

    page.fill("#id_name", "running")
    box = page.locator("#id_expression")
    box.press_sequentially('INCLUDE ItemID WHERE Items.CATEGORY = "Running"', delay=5)
    expect(page.locator("#match-count")).to_have_text(str(running))
    expect(page.locator("#total-count")).to_have_text(str(len(items)))
    expect(page.locator("#match-sample tbody tr").first).to_contain_text("Running")

    box.fill("INCLUDE ItemID WHERE Items.PRICE < 3")
    box.press_sequentially("0")  # the count follows the typing
    expect(page.locator("#match-count")).to_have_text(str(cheap))

    # A mistake: the message and a caret under it, live, while typing.
    box.fill('INCLUDE ItemID WHERE Items.CATEGORY INN ("Running")')
    box.press("End")
    expect(page.locator("#expression-message")).to_contain_text("at position 36")
    pointer = page.locator("#expression-pointer").inner_text()
    assert pointer.splitlines()[1] == " " * 36 + "^"
    expect(page.locator("#match-summary")).to_contain_text("has a mistake")
    screenshot("filter-bad-expression")

    # A parameter: its input appears, and the count follows its value.
    box.fill("INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)")
    box.press("End")
    param = page.locator("#id_param_CATS")
    expect(param).to_be_visible()
    expect(page.locator("#expression-message")).to_have_count(0)
    param.press_sequentially("Running", delay=5)
    expect(page.locator("#match-count")).to_have_text(str(running))
    expect(param).to_be_focused()  # the input was not replaced while typing in it
    screenshot("filter-live-preview")

    page.get_by_role("button", name="Save filter").click()
    expect(page.get_by_text("Filter “running” saved.")).to_be_visible()
    row = page.locator("#filter-table tbody tr", has_text="running")
    expect(row).to_contain_text("depends on $CATS")
    assert SavedFilter.objects.get(project=project).expression.endswith("IN ($CATS)")
    screenshot("filters-list")


def test_create_pause_and_list_a_promotion(page, shop, user, log_in, screenshot):
    project, items = shop
    SavedFilter.objects.create(
        project=project,
        name="by-category",
        expression="INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)",
    )
    running = in_category(items, "Running", project=project)
    log_in(user)
    page.goto(f"/p/{project.slug}/")
    page.get_by_role("link", name="Promotions", exact=True).click()
    expect(page.locator("#no-promotions")).to_be_visible()
    page.get_by_role("link", name="New promotion").click()

    page.fill("#id_name", "Running week")
    page.select_option("#id_filter", label="by-category")
    expect(page.locator("#id_param_CATS")).to_be_visible()  # swapped in for the picked filter
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_text("The filter uses $CATS: give it a value")).to_be_visible()

    page.fill("#id_param_CATS", "Running")
    page.fill("#id_share_percent", "70")
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_text("at most 50% (got 70%)")).to_be_visible()
    screenshot("promotion-form-errors")

    page.fill("#id_share_percent", "20")
    page.fill("#id_reason", "Running week deals")
    page.get_by_role("button", name="Create promotion").click()
    expect(page.get_by_text("Promotion “Running week” created.")).to_be_visible()
    active = page.locator("#promotions-active")
    expect(active).to_contain_text("Running week")
    expect(active).to_contain_text("20% of slots")
    expect(active.locator(".match")).to_have_text(str(running))
    screenshot("promotions-list")

    active.get_by_role("button", name="Pause").click()
    expect(page.locator("#promotions-paused")).to_contain_text("Running week")
    assert not Promotion.objects.get(project=project).is_active
