"""The CSV import wizard end to end: upload, map, dry run, import with a real worker, report."""

import re

import pytest
from playwright.sync_api import expect

from datasets.ingest.demo import build_demo_shop
from datasets.models import Interaction
from datasets.services import create_project
from tests.helpers import running_worker


@pytest.fixture
def interactions_csv(tmp_path):
    """A small demo-shop interactions file with three broken rows appended."""
    shop = build_demo_shop(n_users=120, n_items=150, n_interactions=3000, seed=7)
    path = tmp_path / "shop events.csv"
    shop.interactions.to_csv(path, index=False, lineterminator="\n")
    with open(path, "a") as out:
        out.write("u00001,i00001,yesterday,view,,s1,\n")  # line 3002: bad timestamp
        out.write(",i00002,1775001674,view,,s1,\n")  # line 3003: missing user
        out.write("u00002,i00003,1775001674,view,-5,s1,\n")  # line 3004: negative value
    return path


def test_upload_map_dry_run_import_and_read_the_report(
    page, live_server, user, log_in, screenshot, interactions_csv
):
    project = create_project(name="Wizard shop", owner=user)
    log_in(user)
    page.goto(f"/p/{project.slug}/data/")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    page.select_option("#id_kind", "interactions")
    page.set_input_files("#id_file", str(interactions_csv))
    page.get_by_role("button", name="Upload and map columns").click()

    expect(page.get_by_role("heading", name="Map the columns")).to_be_visible()
    expect(page.get_by_label("Field for column USER_ID")).to_have_value("USER_ID")
    expect(page.get_by_label("Field for column TIMESTAMP")).to_have_value("TIMESTAMP")
    expect(page.locator("#preview tbody tr")).to_have_count(10)
    screenshot("import-mapping")

    with running_worker():
        page.get_by_role("button", name="Check the whole file (dry run)").click()
        dry_run = page.locator("#dry-run")
        expect(dry_run).to_be_visible(timeout=60_000)
        expect(dry_run).to_contain_text("3,000 of 3,003 rows would be imported")
        expect(page.locator("#rejections")).to_contain_text("3002")
        assert Interaction.objects.count() == 0, "the dry run must not write"

        page.select_option("#id_mode", "full")
        page.get_by_role("button", name="Import", exact=True).click()
        expect(page.locator("#report")).to_be_visible(timeout=60_000)

    expect(page.locator("#job-status")).to_have_text("Succeeded")
    report = page.locator("#report")
    expect(report).to_contain_text("3,000")
    rejections = page.locator("#rejections tbody tr")
    expect(rejections).to_have_count(3)
    expect(rejections.nth(0)).to_contain_text("3002")
    expect(rejections.nth(0)).to_contain_text("TIMESTAMP is not a timestamp")
    expect(rejections.nth(1)).to_contain_text("USER_ID is missing")
    expect(rejections.nth(2)).to_contain_text("must not be negative")
    screenshot("import-report")
    assert Interaction.objects.filter(project=project).count() == 3000

    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download all rejected rows")).click()
    assert "3004" in download.value.path().read_text()

    page.get_by_role("link", name="See insights").click()
    expect(page.locator(".js-plotly-plot .main-svg").first).to_be_visible(timeout=20_000)
    screenshot("import-insights")

    page.get_by_role("link", name="Data", exact=True).click()
    expect(page.locator("#imports tbody tr")).to_have_count(1)
    expect(page.locator(".dataset[data-kind=interactions] .big-number")).to_have_text("3,000")
