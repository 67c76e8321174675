"""Find segments from the Segments page with a real worker, read the silhouette chart with the
chosen k, and save the segments as a user field."""

import re

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import EndUser
from datasets.services import create_project
from graphs import services
from tests.helpers import running_worker


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path, monkeypatch):
    # The worker subprocess reads DATA_DIR; the live server reads these settings: the same place.
    # (and the same SECRET_KEY, which signs the queued tasks).
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def shop(user, tmp_path):
    project = create_project(name="Segment shop", owner=user)
    files = generate_demo_shop(
        tmp_path / "shop", n_users=300, n_items=150, n_interactions=15_000, seed=3
    )["files"]
    for kind in ("users", "items", "interactions", "relations"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    return project


def test_find_segments_and_save_them(page, live_server, user, log_in, shop, screenshot):
    log_in(user)
    page.goto(f"/p/{shop.slug}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Segments").click()
    expect(page.locator("h1")).to_have_text("Segments")
    page.select_option("#id_method", "kmeans-behaviour")
    page.fill("#id_k_min", "2")
    page.fill("#id_k_max", "8")
    screenshot("segments-page")
    with running_worker():
        page.locator("#clustering-form").get_by_role("button", name="Start clustering").click()
        expect(page).to_have_url(re.compile(r"/segments/clustering/\d+/$"))
        expect(page.locator("#run-summary")).to_be_visible(timeout=120_000)
    expect(page.locator("#run-status")).to_contain_text("Succeeded")
    expect(page.locator("#chosen-k")).to_have_text("6")
    chart = page.locator("#chart-silhouette-k")
    expect(chart.locator(".main-svg").first).to_be_visible()  # Plotly drew it
    expect(chart).to_contain_text("chosen k = 6")
    expect(page.locator("#chart-silhouette-clusters .main-svg").first).to_be_visible()
    expect(page.locator("#profiles tbody tr")).to_have_count(6)
    screenshot("segments-clustering-run")

    page.fill("#id_field", "SEGMENT")
    page.get_by_role("button", name="Save as segment field").click()
    expect(page.locator(".message.success")).to_contain_text("300 users now have SEGMENT")
    expect(page.locator("#saved-fields")).to_contain_text("SEGMENT")
    assert EndUser.objects.filter(project=shop, attributes__has_key="SEGMENT").count() == 300


def test_graph_run_page_draws_the_graph(page, live_server, user, log_in, shop, screenshot):
    run = services.run_graph(services.start_graph_run(project=shop, enqueue=False))
    louvain = services.run_clustering(
        services.start_clustering_run(project=shop, method="louvain", enqueue=False)
    )
    log_in(user)
    page.goto(f"/p/{shop.slug}/segments/graph/{run.pk}/")
    expect(page.locator("#betweenness-note")).to_contain_text("exact")
    expect(page.locator("#chart-graph .main-svg").first).to_be_visible()
    expect(page.locator("#effect-table tbody tr")).to_have_count(4)
    screenshot("segments-graph-run")
    page.goto(f"/p/{shop.slug}/segments/clustering/{louvain.pk}/")
    expect(page.locator("#chart-modularity .main-svg").first).to_be_visible()
    expect(page.locator("#chart-graph .main-svg").first).to_be_visible()
    screenshot("segments-louvain-run")
