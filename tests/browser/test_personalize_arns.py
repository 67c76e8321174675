"""Campaigns, filters, datasets and the event tracker show their Personalize ARN, copyable."""

from playwright.sync_api import expect

from datasets.services import create_project
from feeds.models import SavedFilter
from feeds.personalize.arns import arn_for
from feeds.personalize.events import tracking_id
from models_app.services import create_campaign


def _copy_and_check(page, row, expected: str):
    """The ARN shown in ``row`` is ``expected`` and its Copy button puts it on the clipboard."""
    code = row.locator("code.arn")
    expect(code).to_have_text(expected)
    button = row.locator("button[data-copy]")
    expect(button).to_have_text("Copy")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected


def test_arns_on_the_campaign_filter_data_and_api_key_pages(page, user, log_in, screenshot):
    project = create_project(name="Shoe shop", owner=user)
    create_campaign(project=project, name="home-page")
    SavedFilter.objects.create(
        project=project, name="in-stock", expression="EXCLUDE ItemID WHERE Items.IN_STOCK = false"
    )
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(user)

    page.goto(f"/p/{project.slug}/campaigns/")
    card = page.locator("#campaign-home-page")
    _copy_and_check(page, card, arn_for("campaign", project, "home-page"))
    expect(card.locator("button[data-copy]")).to_have_text("Copy", timeout=5000)  # label back
    assert arn_for("campaign", project, "home-page") == (
        f"arn:aws:personalize:local:{project.slug}:campaign/home-page"
    )
    screenshot("personalize-arn-campaigns")

    page.goto(f"/p/{project.slug}/filters/")
    row = page.locator('#filter-table tr[data-filter="in-stock"]')
    _copy_and_check(page, row, arn_for("filter", project, "in-stock"))
    screenshot("personalize-arn-filters")

    page.goto(f"/p/{project.slug}/data/")
    for kind in ("interactions", "items", "users"):
        card = page.locator(f'article.dataset[data-kind="{kind}"]')
        expect(card.locator("code.arn")).to_have_text(arn_for("dataset", project, kind))
    _copy_and_check(
        page,
        page.locator('article.dataset[data-kind="items"]'),
        arn_for("dataset", project, "items"),
    )
    expect(page.locator('article.dataset[data-kind="relations"] code.arn')).to_have_count(0)
    screenshot("personalize-arn-data")

    page.goto(f"/p/{project.slug}/api-keys/")
    tracker = page.locator("#event-tracker")
    expect(tracker.locator("#tracking-id")).to_have_text(tracking_id(project))
    _copy_and_check(
        page,
        tracker.locator(".arn-row[data-arn-kind=event-tracker]"),
        arn_for("event-tracker", project, "default"),
    )
    page.locator("#copy-tracking-id").click()
    assert page.evaluate("navigator.clipboard.readText()") == tracking_id(project)
    screenshot("personalize-arn-api-keys")


def test_arns_name_only_this_project(page, user, other_user, log_in):
    mine = create_project(name="Shoe shop", owner=user)
    theirs = create_project(name="Hat shop", owner=other_user)
    create_campaign(project=mine, name="home-page")
    create_campaign(project=theirs, name="home-page")
    log_in(user)
    page.goto(f"/p/{mine.slug}/campaigns/")
    shown = page.locator("#campaign-home-page code.arn").inner_text()
    assert shown == arn_for("campaign", mine, "home-page")
    assert shown != arn_for("campaign", theirs, "home-page")
    page.goto(f"/p/{mine.slug}/api-keys/")
    assert page.locator("#tracking-id").inner_text() == tracking_id(mine) != tracking_id(theirs)
