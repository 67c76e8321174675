"""Start a batch export from the page with a real worker, watch it finish and download the file."""

import csv
import json
import re

import pytest
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.services import create_project
from models_app import services
from models_app.models import BatchExport
from tests.helpers import running_worker


@pytest.fixture
def worker_dirs(settings, tmp_path, monkeypatch):
    """The worker (a subprocess) and the live server share one artefacts folder."""
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)  # django-q signs tasks with it
    settings.ARTIFACT_DIR = tmp_path / "data" / "artifacts"
    return tmp_path


@pytest.fixture
def version(user, tmp_path, worker_dirs):
    project = create_project(name="Export shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=300, n_items=200, n_interactions=20_000)["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    solution = services.create_solution(
        project=project, recipe="item-knn", params={"n_neighbors": 50}
    )
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    return run.version


def test_export_every_user_and_download_the_csv(
    page, live_server, user, log_in, version, screenshot, tmp_path
):
    project = version.project
    log_in(user)
    page.goto(f"/p/{project.slug}/models/")
    page.locator("#exports-link").click()
    expect(page).to_have_url(re.compile(r"/models/exports/$"))
    expect(page.locator("#id_version")).to_contain_text(f"#{version.pk} · item-knn · NDCG@10")
    expect(page.locator("#exports")).to_contain_text("No export yet")
    page.select_option("#id_format", "csv")
    page.fill("#id_num_results", "5")
    screenshot("exports-form")

    with running_worker():
        page.get_by_role("button", name="Start export").click()
        expect(page).to_have_url(re.compile(r"/models/exports/\d+/$"))
        expect(page.locator("#export-summary")).to_be_visible(timeout=90_000)
    expect(page.locator("#export-status")).to_contain_text("Succeeded")
    expect(page.locator("#export-summary")).to_contain_text("300")
    expect(page.locator("#export-log")).to_contain_text("Wrote 300 users")
    screenshot("export-succeeded")

    with page.expect_download() as info:
        page.locator("#export-download").click()
    download = info.value
    export = BatchExport.objects.get()
    assert download.suggested_filename == (
        f"{project.slug}-version{version.pk}-top5-export{export.pk}.csv"
    )
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with open(saved, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 300 * 5
    assert len({r["user_id"] for r in rows}) == 300
    assert {r["source"] for r in rows} == {"model"}
    assert all(r["item_id"].startswith("i") for r in rows)  # external ids, not database keys

    page.get_by_role("link", name="all exports").click()
    table = page.locator("#exports tbody tr")
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text("Succeeded")
    expect(table.first.get_by_role("link", name="Download")).to_be_visible()
    screenshot("exports-list")


def test_a_list_with_unknown_users_and_a_bad_list(
    page, live_server, user, log_in, version, screenshot, tmp_path
):
    project = version.project
    log_in(user)
    page.goto(f"/p/{project.slug}/models/exports/?version={version.pk}")

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"u00001\nu00002;u00003\n")
    page.set_input_files("#id_users", str(bad))
    page.get_by_role("button", name="Start export").click()
    expect(page.get_by_role("alert")).to_contain_text("bad.txt, line 2")
    expect(page.locator("#exports")).to_contain_text("No export yet")
    screenshot("exports-bad-list")

    listing = tmp_path / "users.txt"
    listing.write_text("user_id\nu00001\nsomeone-new\nu00002\n")
    page.select_option("#id_format", "jsonl")
    page.fill("#id_num_results", "3")
    page.set_input_files("#id_users", str(listing))
    with running_worker():
        page.get_by_role("button", name="Start export").click()
        expect(page.locator("#export-summary")).to_be_visible(timeout=90_000)
    summary = page.locator("#export-summary")
    expect(summary).to_contain_text("with the popularity fallback")
    expect(page.locator("#not-in-project")).to_contain_text("someone-new")
    screenshot("export-list-fallback")

    with page.expect_download() as info:
        page.locator("#export-download").click()
    saved = tmp_path / "out.jsonl"
    info.value.save_as(saved)
    records = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(r["user_id"], r["source"]) for r in records] == [
        ("u00001", "model"),
        ("someone-new", "popular"),
        ("u00002", "model"),
    ]
    assert all(len(r["items"]) == 3 for r in records)
