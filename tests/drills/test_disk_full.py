"""Fault drill: the disk fills up while a training run or a batch export writes its file.

A real, small file system is mounted (tmpfs, as root) and made ARTIFACT_DIR (and, for the
upload drill, UPLOAD_DIR); a ballast file then fills it up to a few kilobytes, so the progress
and log files still fit but an artefact does not. Nothing is mocked: numpy, zipfile and the csv
writer hit a real ENOSPC. Where mounting is not allowed, the drill is skipped and says so.

Checked for each: the job fails with a "disk is full" message saying what to do; no half-written
artefact or file is ever published (no model version, no download); the previously published
version keeps serving; the space the failed write used is freed; after space is freed, a retry
succeeds.

Run: ``make drills`` (or ``.venv/bin/pytest tests/drills -s`` to see what each step did).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import ImportJob
from models_app import exports, services, serving
from models_app.models import BatchExport, ModelVersion

pytestmark = pytest.mark.django_db

SHOP = {"n_users": 400, "n_items": 300, "n_interactions": 20_000, "seed": 11}
# EASE keeps a dense item x item matrix: 300 x 300 float32 = 360 KB, far more than we leave.
RECIPE, PARAMS = "ease", {}
DISK_BYTES = 8 * 2**20
LEAVE_FREE = 48 * 1024


def say(kind: str, text: str) -> None:
    print(f"  [{kind}] {text}", flush=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs), unmounted afterwards."""
    mount_point = Path("/tmp") / f"recsite-drill-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    say("set-up", f"mounted a {DISK_BYTES // 2**20} MB tmpfs at {mount_point}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


class Ballast:
    """A file that takes all but ``leave`` bytes of the disk."""

    def __init__(self, disk: Path):
        self.path = disk / "ballast.bin"

    def fill(self, leave: int = LEAVE_FREE) -> int:
        self.path.unlink(missing_ok=True)
        size = max(0, free_bytes(self.path.parent) - leave)
        with self.path.open("wb") as handle:
            block = b"\0" * 2**20
            while size > 0:
                handle.write(block[: min(size, len(block))])
                size -= len(block)
        return free_bytes(self.path.parent)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **SHOP)["files"]


@pytest.fixture
def shop(project, shop_files, settings, small_disk, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = small_disk / "artifacts"
    serving.clear_cache()
    job = imports.import_file(project=project, kind="interactions", path=shop_files["interactions"])
    assert job.status == "succeeded", job.error
    yield project
    serving.clear_cache()


def train(solution):
    return services.run_training(services.start_training(solution=solution, enqueue=False))


def recommend(campaign, k=10):
    model = serving.served_model(campaign)
    items, _ = model.recipe.recommend(np.arange(5), k)
    return model.version_id, items


def test_disk_full_while_writing_a_models_artefacts(shop, small_disk, settings):
    print()
    solution = services.create_solution(project=shop, recipe=RECIPE, params=PARAMS)
    first = train(solution)
    assert first.status == "succeeded", first.error
    v1 = first.version
    campaign = services.create_campaign(shop, "home", version=v1)
    say("set-up", f"trained {RECIPE} version #{v1.pk} and deployed it to campaign 'home'")
    served_before = recommend(campaign)
    artefacts = sorted(p.name for p in Path(v1.artefact_dir).iterdir())
    size = sum(p.stat().st_size for p in Path(v1.artefact_dir).iterdir())
    say("set-up", f"its artefacts: {artefacts}, {size / 1024:.0f} KB")

    ballast = Ballast(small_disk)
    free = ballast.fill()
    say(
        "fault",
        f"filled the disk: {free / 1024:.0f} KB left, the artefacts need ~{size // 1024} KB",
    )
    versions_before = ModelVersion.objects.filter(project=shop).count()
    folders_before = sorted(p.name for p in (Path(settings.ARTIFACT_DIR) / str(shop.pk)).iterdir())

    run = train(solution)
    say("tried", f"training run #{run.pk} on the full disk -> {run.status}")
    say("result", f"error: {run.error}")
    assert run.status == "failed"
    assert "the disk is full" in run.error and "No space left on device" in run.error
    assert "Free space on the disk holding" in run.error and "ARTIFACT_DIR" in run.error
    assert "Failed: Could not write the model's files: the disk is full" in run.log
    say("checked", "the run failed with a 'disk is full' message saying what to do")

    assert ModelVersion.objects.filter(project=shop).count() == versions_before
    assert not ModelVersion.objects.filter(run=run).exists()
    folders_after = sorted(p.name for p in (Path(settings.ARTIFACT_DIR) / str(shop.pk)).iterdir())
    assert folders_after == folders_before, (folders_before, folders_after)
    assert not (services.run_dir(run) / "model").exists()
    say("checked", "no model version was created and no half-written artefact folder remains")

    campaign.refresh_from_db()
    assert campaign.version_id == v1.pk
    serving.clear_cache()  # a fresh process: v1 must load from the (full) disk
    version_id, items = recommend(campaign)
    assert version_id == v1.pk and np.array_equal(items, served_before[1])
    say("checked", f"campaign 'home' still serves version #{v1.pk}, loaded from disk afresh")

    leftover = free - free_bytes(small_disk)
    assert leftover <= 16 * 1024, f"{leftover} bytes were not freed"
    say("checked", f"space released: {leftover / 1024:.0f} KB held afterwards (log and progress)")

    ballast.remove()
    retry = services.run_training(services.retry(run))
    assert retry.status == "succeeded", retry.error
    assert Path(retry.version.artefact_dir).is_dir()
    say(
        "checked", f"after freeing space, the retry #{retry.pk} created version #{retry.version.pk}"
    )


def test_disk_full_while_writing_a_batch_export(shop, small_disk):
    print()
    solution = services.create_solution(project=shop, recipe=RECIPE, params=PARAMS)
    version = train(solution).version
    good = exports.run_export(exports.start_export(project=shop, version=version, enqueue=False))
    assert good.status == "succeeded", good.error
    good_size = Path(good.file_path).stat().st_size
    say("set-up", f"export #{good.pk} written: {good_size / 1024:.0f} KB")

    ballast = Ballast(small_disk)
    free = ballast.fill(leave=max(16 * 1024, good_size // 4))
    say(
        "fault",
        f"filled the disk: {free / 1024:.0f} KB left, an export needs {good_size // 1024} KB",
    )
    export = exports.run_export(exports.start_export(project=shop, version=version, enqueue=False))
    say("tried", f"export #{export.pk} on the full disk -> {export.status}")
    say("result", f"error: {export.error}")
    assert export.status == BatchExport.Status.FAILED
    assert "the disk is full" in export.error and "No file was produced" in export.error
    assert not export.file_path and exports.download_path(export) is None
    leftovers = [p.name for p in exports.export_dir(export).iterdir() if p.suffix != ".txt"]
    assert not [n for n in leftovers if n.endswith((".part", ".csv", ".jsonl"))], leftovers
    say("checked", "failed with a 'disk is full' message; no .part or result file remains")

    assert exports.download_path(good) == Path(good.file_path)
    assert Path(good.file_path).stat().st_size == good_size
    say("checked", f"the earlier export #{good.pk} is still complete and downloadable")
    leftover = free - free_bytes(small_disk)
    assert leftover <= 16 * 1024, f"{leftover} bytes were not freed"
    say("checked", f"space released: {leftover / 1024:.0f} KB held afterwards (log, summary)")

    ballast.remove()
    again = exports.run_export(exports.start_export(project=shop, version=version, enqueue=False))
    assert again.status == "succeeded", again.error
    say("checked", f"after freeing space, export #{again.pk} succeeded")


@pytest.mark.parametrize(
    "rows", [120_000, 200_000], ids=["held-in-memory-then-stored", "streamed-to-a-temporary-file"]
)
def test_disk_full_while_receiving_an_upload(project, logged_in_client, settings, small_disk, rows):
    print()
    settings.UPLOAD_DIR = small_disk / "uploads"
    settings.FILE_UPLOAD_TEMP_DIR = str(small_disk / "uploads" / "tmp")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir(parents=True)
    ballast = Ballast(small_disk)
    free = ballast.fill(leave=512 * 1024)
    content = b"USER_ID,ITEM_ID,TIMESTAMP\n" + b"u1,i1,1700000000\n" * rows  # 2 or 3.2 MB
    response = logged_in_client.post(
        f"/p/{project.slug}/data/upload/",
        {"kind": "interactions", "file": SimpleUploadedFile("events.csv", content)},
    )
    say("tried", f"uploading a {len(content) / 2**20:.1f} MB CSV with {free // 1024} KB free")
    assert response.status_code == 302 and response["Location"] == f"/p/{project.slug}/data/"
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    say("result", f"message: {message}")
    assert "The server's disk is full" in message and "nothing of it was kept" in message
    assert not ImportJob.objects.filter(project=project, status="uploaded").exists()
    leftover = free - free_bytes(small_disk)
    assert leftover <= 16 * 1024, f"{leftover} bytes were not freed"
    assert not list(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())
    say("checked", "no 500: the page says the disk is full; no partial file is left")
    ballast.remove()
    shutil.rmtree(small_disk / "uploads", ignore_errors=True)
