"""Uploads: the size limit, binary files, hostile file names, and file downloads' paths."""

import io
import os
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import imports
from datasets.models import ImportJob, Interaction
from models_app import exports
from models_app.models import BatchExport

pytestmark = pytest.mark.django_db

CSV = b"USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu2,i2,1700000100\n"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def upload(client, project, name, content, kind="interactions"):
    response = client.post(
        f"/p/{project.slug}/data/upload/",
        {"kind": kind, "file": SimpleUploadedFile(name, content, content_type="text/csv")},
    )
    return response, [str(m) for m in get_messages(response.wsgi_request)]


@pytest.mark.parametrize("size", [1_500, 4 * 2**20], ids=["counted-while-reading", "declared"])
def test_a_file_over_the_limit_is_refused_and_nothing_of_it_is_kept(
    logged_in_client, project, data_dirs, settings, size
):
    settings.MAX_UPLOAD_BYTES = 1_000
    before = files_under(data_dirs)
    temp_before = set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))
    content = CSV + b"u3,i3,1700000200\n" * (size // 17)
    response, messages = upload(logged_in_client, project, "big.csv", content)
    assert response.status_code == 302 and response["Location"] == f"/p/{project.slug}/data/"
    assert len(messages) == 1
    assert "big.csv: The file is " in messages[0]
    assert "uploads may be at most 1 KB (MAX_UPLOAD_MB)" in messages[0]
    assert not ImportJob.objects.filter(project=project).exists()
    assert files_under(data_dirs) == before
    assert set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR)) <= temp_before


def test_a_file_of_exactly_the_limit_is_accepted(logged_in_client, project, data_dirs, settings):
    content = CSV + b"u3,i3,1700000200\n" * 500
    settings.MAX_UPLOAD_BYTES = len(content)
    response, messages = upload(logged_in_client, project, "small.csv", content)
    job = ImportJob.objects.get(project=project)
    assert response["Location"] == f"/p/{project.slug}/data/imports/{job.pk}/", messages
    assert Path(job.file_path).read_bytes() == content


def test_max_upload_mb_sets_the_limit(tmp_path):
    import subprocess
    import sys

    code = "from django.conf import settings; print(settings.MAX_UPLOAD_BYTES)"
    env = {**os.environ, "MAX_UPLOAD_MB": "5", "DJANGO_SETTINGS_MODULE": "recsite.settings"}
    env.pop("MAX_UPLOAD_BYTES", None)
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert out.strip() == str(5 * 2**20)


ZIP = b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


@pytest.mark.parametrize(
    "content, message",
    [
        (ZIP, "a ZIP archive or an Excel .xlsx workbook"),
        (PNG, "a PNG image"),
        (b"\x1f\x8b\x08\x00" + os.urandom(300), "gzip-compressed"),
        (b"USER_ID,ITEM_ID\nu1,i1\nu2\x00,i2\n", "NUL bytes (the first at byte 25, line 3)"),
        ("USER_ID,ITEM_ID\nu1,i1\n".encode("utf-16-le"), "UTF-16"),
        (bytes(range(1, 9)) * 200, "control characters"),
    ],
    ids=["xlsx", "png", "gzip", "nul", "utf16-no-bom", "controls"],
)
def test_binary_files_are_refused_with_what_they_look_like(
    logged_in_client, project, data_dirs, content, message
):
    response, messages = upload(logged_in_client, project, "data.csv", content)
    assert response["Location"] == f"/p/{project.slug}/data/"
    assert len(messages) == 1 and message in messages[0], messages
    job = ImportJob.objects.get(project=project)
    assert job.status == ImportJob.Status.FAILED and message in job.error
    assert not Interaction.objects.filter(project=project).exists()


# Hostile upload file names: tests/security/test_path_traversal.py sends them in raw multipart
# bodies (the test client's SimpleUploadedFile would strip them to a basename first).


def test_the_export_download_never_serves_a_file_outside_the_exports_folder(
    logged_in_client, project, data_dirs
):
    from models_app.models import ModelVersion, Solution, TrainingRun

    secret = data_dirs / "secret.txt"
    secret.write_text("not for download")
    solution = Solution.objects.create(project=project, name="s", recipe="popularity-count")
    run = TrainingRun.objects.create(project=project, solution=solution, status="succeeded")
    version = ModelVersion.objects.create(project=project, solution=solution, run=run, recipe="x")
    export = BatchExport.objects.create(project=project, version=version, status="succeeded")
    folder = exports.export_dir(export)
    folder.mkdir(parents=True)
    url = f"/p/{project.slug}/models/exports/{export.pk}/download/"
    for path in (secret, folder / ".." / ".." / ".." / "secret.txt", Path("/etc/passwd")):
        BatchExport.objects.filter(pk=export.pk).update(file_path=str(path))
        response = logged_in_client.get(url)
        assert response.status_code == 404, path
    inside = folder / "result.csv"
    inside.write_text("user_id,rank,item_id,score,source\n")
    BatchExport.objects.filter(pk=export.pk).update(file_path=str(inside))
    response = logged_in_client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"user_id,rank")


def test_the_rejected_rows_download_serves_only_the_jobs_own_file(
    logged_in_client, project, data_dirs, other_user
):
    job = imports.create_upload(
        project=project,
        kind="interactions",
        uploaded_file=SimpleUploadedFile("a.csv", CSV + b"u4,i4,not-a-time\n"),
    )
    imports.configure(job=job, mapping=job.mapping, mode="incremental")
    job.status = ImportJob.Status.QUEUED
    job.save()
    imports.run(job)
    url = f"/p/{project.slug}/data/imports/{job.pk}/rejected.csv"
    response = logged_in_client.get(url)
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and body.startswith(b"line,column,reason,value")
    assert Path(imports.rejected_path(job)).parent == imports.job_dir(job)
    assert io.BytesIO(body).read().count(b"\n") == 2  # header and the one rejected row


def test_a_refused_user_list_explains_the_limit_instead_of_looking_empty(settings):
    from recsite.uploads import RefusedUpload

    settings.MAX_UPLOAD_BYTES = 1_000
    with pytest.raises(ValueError, match=r"users\.txt is 5 KB; uploads may be at most 1 KB"):
        exports.parse_user_list(RefusedUpload("users.txt", 5_000))
