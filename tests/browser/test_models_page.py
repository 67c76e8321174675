"""Train a recipe from the Models page with a real worker and read the new version's metrics."""

import re

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project
from tests.helpers import running_worker


@pytest.fixture
def shop(user, tmp_path):
    project = create_project(name="Model shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=300, n_items=200, n_interactions=20_000)["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    return project


def test_train_from_the_page_and_see_the_version(page, live_server, user, log_in, shop, screenshot):
    log_in(user)
    page.goto(f"/p/{shop.slug}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    expect(page.locator("#recipes")).to_contain_text("user-personalization")

    page.select_option("#id_recipe", "item-knn")
    page.fill("#id_params", '{"n_neighbors": 50}')
    with running_worker():
        page.locator("#train-form").get_by_role("button", name="Train").click()
        expect(page).to_have_url(re.compile(r"/models/runs/\d+/$"))
        expect(page.locator("#run-summary")).to_be_visible(timeout=90_000)
    expect(page.locator("#run-status")).to_contain_text("Succeeded")
    expect(page.locator("#run-log")).to_contain_text("item-knn")
    screenshot("training-run")

    page.get_by_role("link", name="all models").click()
    versions = page.locator("#versions tbody tr")
    expect(versions).to_have_count(1)
    expect(versions.first).to_contain_text("item-knn")
    screenshot("models-page")


def test_bad_parameters_are_refused_on_the_page(page, live_server, user, log_in, shop):
    log_in(user)
    page.goto(f"/p/{shop.slug}/models/")
    page.select_option("#id_recipe", "user-personalization")
    page.fill("#id_params", '{"factors": "many"}')
    page.locator("#train-form").get_by_role("button", name="Train").click()
    expect(page.get_by_role("alert")).to_contain_text("factors")
    expect(page.locator("#runs tbody tr")).to_have_count(0)
