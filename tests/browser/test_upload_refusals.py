"""The data page refuses oversized and binary uploads with a message, in a real browser."""

from playwright.sync_api import expect

from datasets.models import ImportJob
from datasets.services import create_project


def test_an_oversized_and_a_binary_upload_are_refused_with_a_message(
    page, user, log_in, screenshot, settings, tmp_path
):
    settings.MAX_UPLOAD_BYTES = 50_000
    project = create_project(name="Upload limits", owner=user)
    big = tmp_path / "events.csv"
    big.write_bytes(b"USER_ID,ITEM_ID,TIMESTAMP\n" + b"u1,i1,1700000000\n" * 10_000)
    workbook = tmp_path / "events.xlsx.csv"
    workbook.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 8)

    log_in(user)
    page.goto(f"/p/{project.slug}/data/")
    page.select_option("#id_kind", "interactions")
    page.set_input_files("#id_file", str(big))
    page.get_by_role("button", name="Upload and map columns").click()
    error = page.locator(".message.error")
    expect(error).to_contain_text("events.csv: The file is 166 KB; uploads may be at most 49 KB")
    expect(error).to_contain_text("MAX_UPLOAD_MB")
    screenshot("upload-too-large")
    assert not ImportJob.objects.filter(project=project).exists()

    page.select_option("#id_kind", "interactions")
    page.set_input_files("#id_file", str(workbook))
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.locator(".message.error")).to_contain_text(
        "This file is a ZIP archive or an Excel .xlsx workbook"
    )
    screenshot("upload-binary")
    assert ImportJob.objects.get(project=project).status == ImportJob.Status.FAILED
