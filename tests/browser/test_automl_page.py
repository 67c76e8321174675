"""AutoML from the Models page with a real worker: the leaderboard marks the chosen trial."""

import re

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project
from tests.helpers import running_worker


@pytest.fixture
def shop(user, tmp_path):
    project = create_project(name="AutoML shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=300, n_items=200, n_interactions=20_000)["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    return project


def test_automl_from_the_page_shows_the_leaderboard(
    page, live_server, user, log_in, shop, screenshot
):
    log_in(user)
    page.goto(f"/p/{shop.slug}/models/")
    page.select_option("#id_recipe", "automl")
    page.select_option("#id_automl_metric", "recall@10")
    page.fill(
        "#id_params", '{"recipes": ["item-knn", "popularity-count", "ease"], "max_trials": 5}'
    )
    screenshot("automl-form")
    with running_worker():
        page.locator("#train-form").get_by_role("button", name="Train").click()
        expect(page).to_have_url(re.compile(r"/models/runs/\d+/$"))
        expect(page.locator("#run-summary")).to_be_visible(timeout=120_000)
    expect(page.locator("#run-status")).to_contain_text("Succeeded")
    board = page.locator("#leaderboard")
    expect(board).to_contain_text("Validation recall@10")
    expect(board.locator("tbody tr")).to_have_count(5)
    expect(board.locator("tbody tr").first).to_contain_text("chosen")
    expect(page.locator("#run-metrics")).to_contain_text("Protocol R")
    expect(page.locator("#run-log")).to_contain_text("AutoML chose")
    screenshot("automl-run")

    page.get_by_role("link", name="all models").click()
    expect(page.locator("#versions tbody tr").first).to_contain_text("(automl)")
