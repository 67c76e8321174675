"""Create a campaign, deploy a second version, roll back and read the history on the page."""

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import Membership
from datasets.services import create_project
from models_app import services


@pytest.fixture
def shop(user, tmp_path, settings):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    project = create_project(name="Campaign shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=300, n_items=200, n_interactions=20_000)["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    return project


def train(project, recipe):
    solution = services.create_solution(project=project, recipe=recipe)
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    return run.version


def test_create_deploy_roll_back_and_history(page, live_server, user, log_in, shop, screenshot):
    first = train(shop, "popularity-count")
    second = train(shop, "item-knn")
    log_in(user)
    page.goto(f"/p/{shop.slug}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    expect(page.locator("#campaigns")).to_contain_text("No campaign yet")

    form = page.locator("#create-campaign")
    form.get_by_label("Name").fill("home-page")
    form.get_by_label("Description (optional)").fill("Shown on the home page")
    form.get_by_label("Serve version (optional)").select_option(str(first.pk))
    form.get_by_role("button", name="Create campaign").click()
    expect(page.locator(".message.success")).to_contain_text("serving version #")
    card = page.locator("#campaign-home-page")
    expect(card.locator("tr.served")).to_contain_text(f"#{first.pk}")
    expect(card.locator("tr.served")).to_contain_text("popularity-count")
    expect(card.locator("tr.previous")).to_contain_text("nothing to roll back to")
    expect(card.get_by_role("button", name="Roll back")).to_be_disabled()

    card.get_by_label("Deploy a version").select_option(str(second.pk))
    card.get_by_role("button", name="Deploy").click()
    expect(page.locator(".message.success")).to_contain_text(f"now serves version #{second.pk}")
    expect(card.locator("tr.served")).to_contain_text("item-knn")
    expect(card.locator("tr.previous")).to_contain_text(f"#{first.pk}")
    screenshot("campaigns-deployed")

    card.get_by_role("button", name=f"Roll back to #{first.pk}").click()
    expect(page.locator(".message.success")).to_contain_text("Rolled back")
    expect(card.locator("tr.served")).to_contain_text("popularity-count")
    expect(card.locator("tr.previous")).to_contain_text(f"#{second.pk}")

    history = page.locator("#history tbody tr")
    expect(history).to_have_count(3)
    expect(history.nth(0)).to_contain_text("Rolled back")
    expect(history.nth(0)).to_contain_text(user.username)
    expect(history.nth(1)).to_contain_text("Deployed")
    expect(history.nth(1)).to_contain_text(f"#{second.pk} item-knn")
    screenshot("campaigns-page")

    form = page.locator("#create-campaign")
    form.get_by_label("Name").fill("home page")
    form.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid campaign name")
    expect(page.locator("article.campaign")).to_have_count(1)


def test_a_viewer_sees_campaigns_without_controls(page, live_server, make_user, log_in, shop):
    version = train(shop, "popularity-count")
    services.create_campaign(shop, "home-page", version=version)
    viewer = make_user("victor")
    Membership.objects.create(project=shop, user=viewer, role=Membership.Role.VIEWER)
    log_in(viewer)
    page.goto(f"/p/{shop.slug}/campaigns/")
    expect(page.locator("#campaign-home-page tr.served")).to_contain_text(f"#{version.pk}")
    expect(page.locator("#viewer-note")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    expect(page.locator("#create-campaign")).to_have_count(0)
