"""Schedule retraining from the Models page, then compare two versions side by side."""

import re

import pytest
from django_q.models import Schedule
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project
from models_app import services


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def shop(user, tmp_path):
    project = create_project(name="Compare shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=200, n_items=120, n_interactions=8_000)["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    return project


def train_now(project, recipe, params=None):
    solution = services.create_solution(project=project, recipe=recipe, params=params or {})
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    return run.version


def test_schedule_retraining_and_compare_two_versions(
    page, live_server, user, log_in, shop, screenshot
):
    popular = train_now(shop, "popularity-count")
    knn = train_now(shop, "item-knn", {"n_neighbors": 30})
    train_now(shop, "item-knn", {"n_neighbors": 10})  # a third version, not compared
    log_in(user)
    page.goto(f"/p/{shop.slug}/models/")

    row = page.locator(f"#solution-{knn.solution_id}")
    expect(row).to_contain_text("item-knn")
    expect(row).to_contain_text(f"{knn.metrics['ndcg@10']:.4f}")
    row.get_by_label("Retrain item-knn").select_option(label="every 2 hours")
    row.get_by_role("button", name="Set").click()
    expect(page.locator(".message.success")).to_contain_text(
        "“item-knn” will be retrained every 2 hours; next run"
    )
    row = page.locator(f"#solution-{knn.solution_id}")
    expect(row.locator(".next-run")).to_contain_text(
        re.compile(r"Next run \S+ \S+ UTC \(in (1\s+hour,\s+5\d\s+minutes|2\s+hours)\)")
    )
    expect(row.get_by_label("Retrain item-knn")).to_have_value("2")
    assert Schedule.objects.get(name=f"retrain-solution-{knn.solution_id}").minutes == 120
    screenshot("models-solutions-scheduled")

    versions = page.locator("#versions")
    versions.get_by_label(f"Compare version #{popular.pk}").check()
    versions.get_by_label(f"Compare version #{knn.pk}").check()
    versions.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(re.compile(r"/models/compare/\?versions=\d+&versions=\d+$"))
    expect(page.locator("h1")).to_have_text("Compare model versions")
    expect(page.locator("#compared tbody tr")).to_have_count(2)
    chart = page.locator("#chart-metrics")
    expect(chart.locator(".main-svg").first).to_be_visible()  # Plotly drew it
    expect(chart.locator(".legendtext")).to_have_text(
        [f"#{popular.pk} popularity-count", f"#{knn.pk} item-knn"]
    )
    expect(page.locator("#chart-resources .main-svg").first).to_be_visible()
    best = page.locator("#metrics-table td.best")
    assert best.count() >= 5
    screenshot("models-compare")
