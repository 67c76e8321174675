"""Path traversal: hostile names in uploads, and ids in download URLs that try to leave their
folder. tests/security/test_uploads.py covers ``../``, ``..\\`` and absolute upload names and a
batch export whose stored path points outside its folder; this file adds NUL bytes and control
characters in names, the export's user list, and traversal attempts in the URLs themselves."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import imports
from datasets.models import ImportJob
from models_app.models import BatchExport, ModelVersion, Solution, TrainingRun

pytestmark = pytest.mark.django_db

CSV = b"USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu2,i2,1700000100\n"


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


BOUNDARY = "----recsite-traversal-boundary"


def multipart(fields: dict, file_field: str, filename: str, content: bytes) -> bytes:
    """A multipart body written by hand: Django's test client would reduce ``filename`` to its
    basename before sending it, a hostile client sends whatever it likes."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="{quoted}"\r\nContent-Type: text/csv\r\n\r\n'.encode("utf-8", "surrogateescape")
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def post_file(client, url, fields, file_field, filename, content):
    return client.post(
        url,
        multipart(fields, file_field, filename, content),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )


# Name sent -> the name recsite keeps for display (None: no usable name, the upload is refused).
HOSTILE_NAMES = {
    "dotdot-slash": ("../../etc/passwd", "passwd"),
    "backslashes": ("..\\..\\..\\windows\\win.ini", "win.ini"),
    "absolute": ("/etc/cron.d/evil.csv", "evil.csv"),
    "nul": ("evil\x00.csv", "evil.csv"),
    "traversal-nul": ("../../etc/passwd\x00.csv", "passwd.csv"),
    "absolute-nul": ("/etc/passwd\x00", "passwd"),
    "only-nul": ("\x00", None),
    "dotdot": ("..", None),
    "dot": (".", None),
    "control": ("a\x01\x1b[31m.csv", "a[31m.csv"),
    "windows-drive": ("C:\\Windows\\System32\\drivers\\etc\\hosts", "hosts"),
    "long": ("../" * 200 + "x.csv", "x.csv"),
}


@pytest.mark.parametrize("name, kept", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_hostile_upload_names_never_become_paths_nor_500s(
    logged_in_client, project, data_dirs, settings, name, kept
):
    outside_before = files_under(data_dirs.parent) - files_under(data_dirs)
    url = f"/p/{project.slug}/data/upload/"
    response = post_file(logged_in_client, url, {"kind": "interactions"}, "file", name, CSV)
    assert response.status_code == 302, response.content[:500]
    assert files_under(data_dirs.parent) - files_under(data_dirs) == outside_before
    job = ImportJob.objects.filter(project=project).first()
    if kept is None:  # no file name at all: "choose a file", nothing stored
        assert job is None and response["Location"] == f"/p/{project.slug}/data/"
        assert files_under(data_dirs) == set()
        return
    assert response["Location"] == f"/p/{project.slug}/data/imports/{job.pk}/"
    assert Path(job.file_path) == imports.job_dir(job) / "source.csv"
    assert Path(job.file_path).resolve().is_relative_to(Path(settings.UPLOAD_DIR).resolve())
    assert Path(job.file_path).read_bytes() == CSV
    # The name kept for display: the last part only, without NUL or control characters.
    assert job.source_name == kept
    page = logged_in_client.get(response["Location"])
    assert page.status_code == 200


@pytest.fixture
def export(project, data_dirs):
    solution = Solution.objects.create(project=project, name="s", recipe="popularity-count")
    run = TrainingRun.objects.create(project=project, solution=solution, status="succeeded")
    version = ModelVersion.objects.create(project=project, solution=solution, run=run, recipe="x")
    return BatchExport.objects.create(project=project, version=version, status="succeeded")


@pytest.mark.parametrize(
    "tail",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd/download/",
        "%2e%2e/download/",
        "1%00/download/",
        "-1/download/",
        "1/download/..%2F..%2F..%2Fetc%2Fpasswd",
        "1/../../../../etc/passwd",
        "99999999999999999999999/download/",
    ],
)
def test_export_download_urls_that_try_to_escape_are_404(logged_in_client, project, export, tail):
    response = logged_in_client.get(f"/p/{project.slug}/models/exports/{tail}")
    assert response.status_code == 404, (tail, response.status_code)
    assert b"root:" not in response.content


@pytest.mark.parametrize(
    "tail",
    [
        "..%2F..%2Fsource.csv/rejected.csv",
        "1/..%2F..%2F..%2Fetc%2Fpasswd",
        "1/rejected.csv%00.txt",
        "1/rejected.csv/..%2F..%2Fsource.csv",
    ],
)
def test_import_file_urls_that_try_to_escape_are_404(logged_in_client, project, data_dirs, tail):
    job = imports.create_upload(
        project=project, kind="interactions", uploaded_file=SimpleUploadedFile("a.csv", CSV)
    )
    response = logged_in_client.get(
        f"/p/{project.slug}/data/imports/{tail.replace('1', str(job.pk), 1)}"
    )
    assert response.status_code == 404, (tail, response.status_code)
    assert b"USER_ID,ITEM_ID" not in b"".join(
        getattr(response, "streaming_content", [response.content])
    )


def test_a_user_list_with_a_hostile_name_is_read_not_stored_under_that_name(
    logged_in_client, project, export, data_dirs
):
    outside_before = files_under(data_dirs.parent) - files_under(data_dirs)
    response = post_file(
        logged_in_client,
        f"/p/{project.slug}/models/exports/",
        {"version": export.version_id, "format": "csv", "num_results": 5},
        "users",
        "../../../../tmp/x\x00.txt",
        b"user_id\nu1\n",
    )
    assert response.status_code in (200, 302, 400), response.status_code
    assert files_under(data_dirs.parent) - files_under(data_dirs) == outside_before
    for export_row in BatchExport.objects.filter(project=project):
        for path in files_under(Path(data_dirs)):
            assert ".." not in path.parts and "\x00" not in str(path), path
        assert "\x00" not in (export_row.error or "")


def test_the_related_items_path_id_is_an_id_not_a_path(project):
    from django.test import Client

    from datasets import services

    _, key = services.create_api_key(project=project, name="k")
    for item_id in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%00", "/etc/passwd"):
        response = Client().get(
            f"/api/v1/items/{item_id}/related", HTTP_AUTHORIZATION=f"Bearer {key}"
        )
        assert 400 <= response.status_code < 500, (item_id, response.status_code)
        assert b"root:" not in response.content
