"""The data pages through Django's test client: upload, mapping, schema, access control."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from datasets import imports
from datasets.models import ImportJob, Item

pytestmark = pytest.mark.django_db

ITEMS_CSV = (
    b"item,title,category,price,in_stock\n"
    b"a1,Red trail shoe,Shoes|Running,59.90,yes\n"
    b"a2,Blue kettle,Kitchen,24.50,no\n"
)


def upload(client, project, content=ITEMS_CSV, kind="items", name="items.csv"):
    return client.post(
        reverse("import-upload", args=[project.slug]),
        {"kind": kind, "file": SimpleUploadedFile(name, content, content_type="text/csv")},
    )


def test_upload_shows_the_mapping_with_guessed_fields(logged_in_client, project):
    response = upload(logged_in_client, project)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("import-job", args=[project.slug, job.pk])
    page = logged_in_client.get(response["Location"]).content.decode()
    assert "Map the columns" in page
    assert job.mapping == {
        "item": "ITEM_ID",
        "title": "TITLE",
        "category": "CATEGORY",
        "price": "PRICE",
        "in_stock": "IN_STOCK",
    }


def test_posting_the_mapping_and_importing_runs_with_the_chosen_types(logged_in_client, project):
    upload(logged_in_client, project)
    job = ImportJob.objects.get()
    form = {"mode": "full", "delimiter": ",", "has_header": "yes", "action": "save"}
    for index, field in enumerate(["ITEM_ID", "TITLE", "CATEGORY", "PRICE", "IN_STOCK"]):
        form[f"map_{index}"] = field
    form["type_2"] = "categorical"
    form["type_3"] = "numeric"
    form["type_4"] = "boolean"
    url = reverse("import-job", args=[project.slug, job.pk])
    assert logged_in_client.post(url, form).status_code == 302
    job.refresh_from_db()
    assert job.mode == "full"
    imports.run(job)
    item = Item.objects.get(project=project, external_id="a1")
    assert item.attributes == {
        "TITLE": "Red trail shoe",
        "CATEGORY": ["Shoes", "Running"],
        "PRICE": 59.9,
        "IN_STOCK": True,
    }
    page = logged_in_client.get(url).content.decode()
    assert 'id="report"' in page


def test_mapping_two_columns_to_one_field_is_refused_on_the_page(logged_in_client, project):
    upload(logged_in_client, project)
    job = ImportJob.objects.get()
    form = {"mode": "incremental", "action": "import", "map_0": "ITEM_ID", "map_1": "ITEM_ID"}
    response = logged_in_client.post(reverse("import-job", args=[project.slug, job.pk]), form)
    assert response.status_code == 200
    assert "Several columns are mapped to ITEM_ID" in response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportJob.Status.UPLOADED


def test_an_empty_upload_is_refused_with_a_message(logged_in_client, project):
    response = upload(logged_in_client, project, content=b"", name="empty.csv")
    assert response.status_code == 302
    page = logged_in_client.get(response["Location"]).content.decode()
    assert "empty.csv: The file is empty." in page


def test_progress_partial_and_rejected_download(logged_in_client, project):
    upload(logged_in_client, project, content=ITEMS_CSV + b",no id,Shoes,1,yes\n")
    job = ImportJob.objects.get()
    imports.configure(job=job, mapping=job.mapping, mode="incremental")
    imports.queue_import(job)
    progress = logged_in_client.get(reverse("import-progress", args=[project.slug, job.pk]))
    assert "Waiting for a worker" in progress.content.decode()
    imports.run(job)
    download = logged_in_client.get(reverse("import-rejected", args=[project.slug, job.pk]))
    body = b"".join(download.streaming_content).decode()
    assert body.splitlines()[0] == "line,column,reason,value"
    assert body.splitlines()[1].startswith("4,item,ITEM_ID is missing")


def test_schema_can_be_edited_until_the_first_import(logged_in_client, project):
    url = reverse("schema-edit", args=[project.slug, "items"])
    response = logged_in_client.post(url, {"new_name": "brand", "new_type": "categorical"})
    assert response.status_code == 302
    assert [f.name for f in imports.get_schema(project, "items")][-1] == "BRAND"
    logged_in_client.post(url, {"type_BRAND": "text"})
    assert imports.get_schema(project, "items")[-1].type == "text"

    upload(logged_in_client, project)
    job = ImportJob.objects.get()
    imports.configure(job=job, mapping=job.mapping, mode="incremental")
    imports.run(job)
    logged_in_client.post(url, {"type_BRAND": "numeric"})
    assert imports.get_schema(project, "items")[2].type == "text"
    assert "field types are fixed" in logged_in_client.get(url).content.decode()


def test_reserved_field_names_cannot_be_reused(logged_in_client, project):
    url = reverse("schema-edit", args=[project.slug, "items"])
    response = logged_in_client.post(url, {"new_name": "item_id", "new_type": "numeric"})
    assert response.status_code == 200
    assert "reserved" in response.content.decode()


def test_data_pages_are_404_for_non_members(client, project, other_user):
    upload_job = ImportJob.objects.create(
        project=project, kind="items", source_name="x.csv", file_path="/nonexistent"
    )
    client.force_login(other_user)
    for url in [
        reverse("data", args=[project.slug]),
        reverse("import-job", args=[project.slug, upload_job.pk]),
        reverse("import-progress", args=[project.slug, upload_job.pk]),
        reverse("import-rejected", args=[project.slug, upload_job.pk]),
        reverse("schema-edit", args=[project.slug, "items"]),
    ]:
        assert client.get(url).status_code == 404, url
    response = upload(client, project)
    assert response.status_code == 404
    assert not ImportJob.objects.exclude(pk=upload_job.pk).exists()


def test_a_dry_run_finishing_after_the_import_started_does_not_reset_its_status(
    logged_in_client, project
):
    upload(logged_in_client, project)
    job = ImportJob.objects.get()
    imports.configure(job=job, mapping=job.mapping, mode="incremental")
    stale_copy = ImportJob.objects.get(pk=job.pk)  # what a dry-run task loaded earlier
    imports.queue_import(job)
    imports.run(job)
    imports.dry_run(stale_copy)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.validation["status"] == "done"
