"""Batch exports end to end: service, files, fallback, errors, cancel, pages, CLI and a worker.

The data is a small generated demo shop imported and trained the way users do it.
"""

import csv
import io
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client

from datasets.models import EndUser, Interaction, Item
from datasets.services import create_project
from models_app import exports, services
from models_app.models import BatchExport
from tests.helpers import running_worker

SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}


@pytest.fixture(autouse=True)
def _own_data_dirs(data_dirs):
    return data_dirs


def train(project, recipe="item-knn", params=None, event_types=None):
    solution = services.create_solution(
        project=project, recipe=recipe, params=params or {}, event_types=event_types
    )
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    return run.version


@pytest.fixture
def version(shop):
    return train(shop, "item-knn", {"n_neighbors": 50})


def export_now(project, version, **options) -> BatchExport:
    export = exports.start_export(project=project, version=version, enqueue=False, **options)
    return exports.run_export(export)


def read_csv(path) -> dict[str, list[dict]]:
    by_user = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["user_id", "rank", "item_id", "score", "source"]
        for row in reader:
            by_user[row["user_id"]].append(row)
    return by_user


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def seen_by_user(project) -> dict[str, set[str]]:
    seen = defaultdict(set)
    pairs = Interaction.objects.filter(project=project).values_list(
        "user__external_id", "item__external_id"
    )
    for user, item in pairs:
        seen[user].add(item)
    return seen


@pytest.mark.django_db
def test_csv_export_of_every_user(shop, version):
    export = export_now(shop, version, format="csv", num_results=10)
    assert export.status == "succeeded", export.error
    path = Path(export.file_path)
    assert path.is_file() and path.suffix == ".csv"
    assert not list(path.parent.glob("*.part"))
    rows = read_csv(path)
    users = set(EndUser.objects.filter(project=shop).values_list("external_id", flat=True))
    items = set(Item.objects.filter(project=shop).values_list("external_id", flat=True))
    assert set(rows) == users and len(rows) == SHOP_SIZE["n_users"] == version.n_users
    assert export.users_exported == SHOP_SIZE["n_users"] and export.users_unknown == 0
    seen = seen_by_user(shop)
    for user, recs in rows.items():
        assert [int(r["rank"]) for r in recs] == list(range(1, 11))  # exactly once, N items
        assert {r["source"] for r in recs} == {"model"}
        recommended = [r["item_id"] for r in recs]
        assert set(recommended) <= items and len(set(recommended)) == 10
        assert not set(recommended) & seen[user], f"{user} got an item they already saw"
        scores = [float(r["score"]) for r in recs]
        assert scores == sorted(scores, reverse=True)
        assert all(len(r["score"]) <= 12 for r in recs)  # plain floats, not 17 digits
    assert "Wrote 300 users" in exports.read_log(export)


@pytest.mark.django_db
def test_jsonl_export_and_exclude_seen_off(shop, version):
    export = export_now(shop, version, format="jsonl", num_results=5, exclude_seen=False)
    assert export.status == "succeeded", export.error
    assert export.file_path.endswith(".jsonl")
    records = read_jsonl(export.file_path)
    assert len(records) == len({r["user_id"] for r in records}) == SHOP_SIZE["n_users"]
    seen = seen_by_user(shop)
    already_seen = 0
    for record in records:
        assert set(record) == {"user_id", "items", "source"} and record["source"] == "model"
        assert len(record["items"]) == 5
        assert all(set(i) == {"item_id", "score"} for i in record["items"])
        assert all(isinstance(i["score"], float) for i in record["items"])
        scores = [i["score"] for i in record["items"]]
        assert scores == sorted(scores, reverse=True)
        already_seen += sum(i["item_id"] in seen[record["user_id"]] for i in record["items"])
    # item-knn scores the items a user interacted with highly: without the exclusion they show up
    assert already_seen > 100


@pytest.mark.django_db
def test_uploaded_list_with_unknown_ids_gets_the_popularity_fallback(shop, version):
    newcomer = EndUser.objects.create(project=shop, external_id="newcomer")
    top_items = list(
        Interaction.objects.filter(project=shop)
        .values_list("item__external_id", flat=True)
        .order_by()
    )
    counts = defaultdict(int)
    for item in top_items:
        counts[item] += 1
    most_popular = sorted(counts, key=lambda i: (-counts[i], i))[:3]
    # the newcomer has already bought the most popular item (after the model was trained)
    Interaction.objects.create(
        project=shop,
        user=newcomer,
        item=Item.objects.get(project=shop, external_id=most_popular[0]),
        timestamp=1_800_000_000,
        event_type="purchase",
    )
    listing = 'USER_ID\nu00001\n\n  u00002  \nghost-1\nnewcomer\nu00001\n"ghost-2"\n'
    upload = SimpleUploadedFile("people.csv", listing.encode("utf-8"), content_type="text/csv")
    export = export_now(shop, version, format="csv", num_results=4, user_list=upload)
    assert export.status == "succeeded", export.error
    rows = read_csv(export.file_path)
    assert list(rows) == ["u00001", "u00002", "ghost-1", "newcomer", "ghost-2"]
    assert export.users_exported == 5 and export.users_unknown == 3
    for user in ("u00001", "u00002"):
        assert {r["source"] for r in rows[user]} == {"model"}
    ghost = [r["item_id"] for r in rows["ghost-1"]]
    assert {r["source"] for r in rows["ghost-1"]} == {"popular"}
    assert ghost[:3] == most_popular
    # the score of a popular item is its number of interactions (the newcomer's one included)
    assert [float(r["score"]) for r in rows["ghost-1"]][0] == counts[most_popular[0]] + 1
    newcomer_items = [r["item_id"] for r in rows["newcomer"]]
    assert most_popular[0] not in newcomer_items and newcomer_items[:2] == most_popular[1:3]
    summary = exports.read_summary(export)
    assert summary["not_in_project"] == 2 and summary["not_in_project_sample"] == [
        "ghost-1",
        "ghost-2",
    ]
    log = exports.read_log(export)
    assert "2 listed ids are not in the project at all (first ones: ghost-1, ghost-2)" in log
    assert "1 repeated id skipped" in log


@pytest.mark.django_db
def test_users_outside_a_filtered_model_get_the_fallback_in_jsonl(shop):
    version = train(shop, "popularity-count", event_types=["purchase"])
    everyone = list(EndUser.objects.filter(project=shop).values_list("external_id", flat=True))
    assert version.n_users < len(everyone)  # some users never purchased
    export = export_now(
        shop,
        version,
        format="jsonl",
        num_results=3,
        user_list=io.BytesIO("\n".join(everyone).encode()),
    )
    assert export.status == "succeeded", export.error
    records = read_jsonl(export.file_path)
    assert [r["user_id"] for r in records] == everyone
    sources = [r["source"] for r in records]
    assert sources.count("model") == version.n_users
    assert sources.count("popular") == export.users_unknown == len(everyone) - version.n_users
    assert all(len(r["items"]) == 3 for r in records)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "has no user ids"),
        (b"user_id\n\n  \n", "has no user ids"),
        (b"u1\n\xff\xfeu2\n", "not UTF-8 text: byte 0xff on line 2"),
        (b"u1\nu2,3\n", "line 2: the line has several columns"),
        (b"u1\n" + b"x" * 300 + b"\n", "line 2: the line is 300 characters long"),
        (b"u1\x00\x01\n", "line 1: the line contains control characters"),
    ],
)
def test_bad_lists_are_refused_before_queueing(shop, version, content, message):
    upload = SimpleUploadedFile("list.txt", content)
    with pytest.raises(ValueError, match=message):
        exports.start_export(project=shop, version=version, format="csv", user_list=upload)
    assert not BatchExport.objects.exists()


@pytest.mark.django_db
def test_bad_options_are_refused_before_queueing(shop, version, user, tmp_path):
    for n in (0, 501, "ten", None):
        with pytest.raises(ValueError, match="Number of results"):
            exports.start_export(project=shop, version=version, num_results=n)
    with pytest.raises(ValueError, match="Unknown format 'xlsx'"):
        exports.start_export(project=shop, version=version, format="xlsx")
    other = create_project(name="Other shop", owner=user)
    with pytest.raises(ValueError, match="belongs to another project"):
        exports.start_export(project=other, version=version)
    with pytest.raises(ValueError, match="does not exist"):
        exports.start_export(project=shop, version=version, user_list=tmp_path / "nope.txt")
    (Path(version.artefact_dir) / services.IDS_FILE).unlink()
    with pytest.raises(ValueError, match="cannot be loaded: its files are missing"):
        exports.start_export(project=shop, version=version)
    assert not BatchExport.objects.exists()


@pytest.mark.django_db
def test_too_large_list_is_refused(shop, version, monkeypatch):
    monkeypatch.setattr(exports, "MAX_LIST_USERS", 10)
    upload = SimpleUploadedFile("list.txt", "\n".join(f"u{i}" for i in range(20)).encode())
    with pytest.raises(ValueError, match="more than 10 user ids"):
        exports.start_export(project=shop, version=version, user_list=upload)
    assert not BatchExport.objects.exists()


@pytest.mark.django_db
def test_cancel_before_start_and_while_running(shop, version, monkeypatch):
    export = exports.start_export(project=shop, version=version, enqueue=False)
    exports.request_cancel(export)
    assert export.status == "cancelled"
    export = exports.run_export(export)  # the worker picks it up later: it must not run
    assert export.status == "cancelled" and not export.file_path

    monkeypatch.setattr(exports, "BATCH_USERS", 50)
    export = exports.start_export(project=shop, version=version, enqueue=False)
    original = exports._Writer.write
    written = []

    def write_then_cancel(self, *args):  # a user presses Cancel once some users are written
        original(self, *args)
        written.append(args[0])
        if len(written) == 120:
            exports.export_files(export).request_cancel()

    monkeypatch.setattr(exports._Writer, "write", write_then_cancel)
    export = exports.run_export(export)
    assert export.status == "cancelled" and "Cancelled" in export.error
    assert 120 <= export.users_exported < SHOP_SIZE["n_users"]
    assert not export.file_path and exports.download_path(export) is None
    assert not [p for p in exports.export_dir(export).iterdir() if p.suffix in {".part", ".csv"}]


@pytest.mark.django_db
def test_a_failure_midway_leaves_no_file(shop, version, monkeypatch):
    monkeypatch.setattr(exports, "BATCH_USERS", 64)
    export = exports.start_export(project=shop, version=version, enqueue=False)
    calls = []

    def flaky(self, user_rows, k, exclude=None):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("out of memory while scoring")
        return original(self, user_rows, k, exclude=exclude)

    recipe_class = type(services.load_version(version)[0])
    original = recipe_class.recommend
    monkeypatch.setattr(recipe_class, "recommend", flaky)
    export = exports.run_export(export)
    assert export.status == "failed"
    assert "MemoryError: out of memory while scoring" in export.error
    assert "No file was produced" in export.error
    assert not export.file_path and exports.download_path(export) is None
    assert not [p for p in exports.export_dir(export).iterdir() if p.suffix in {".part", ".csv"}]
    assert "Failed" in exports.read_log(export)


@pytest.mark.django_db
def test_an_export_whose_worker_died_is_marked_failed(shop, version):
    export = exports.start_export(project=shop, version=version, enqueue=False)
    BatchExport.objects.filter(pk=export.pk).update(status="running")
    assert exports.fail_stale_exports(shop) == 0  # its heartbeat is fresh
    part = exports._part_path(export)
    part.write_text("user_id,rank\nu1,1\n")
    exports.export_files(export).progress_path.write_text('{"phase": "running", "at": 0}')
    assert exports.fail_stale_exports(shop) == 1
    export.refresh_from_db()
    assert export.status == "failed" and "worker stopped" in export.error
    assert not part.exists() and exports.download_path(export) is None


@pytest.mark.django_db
def test_pages_download_for_members_and_404_for_others(shop, version, logged_in_client, other_user):
    base = f"/p/{shop.slug}/models/exports/"
    page = logged_in_client.get(base)
    assert page.status_code == 200
    text = page.content.decode()
    assert f"#{version.pk} · item-knn · NDCG@10" in text and "No export yet" in text
    assert "Batch exports" in logged_in_client.get(f"/p/{shop.slug}/models/").content.decode()

    response = logged_in_client.post(
        base, {"version": version.pk, "format": "jsonl", "num_results": "600"}
    )
    assert response.status_code == 400 and "from 1 to 500" in response.content.decode()
    response = logged_in_client.post(
        base,
        {
            "version": version.pk,
            "format": "jsonl",
            "num_results": "3",
            "users": SimpleUploadedFile("l.txt", b"u1\xe9\n"),
        },
    )
    assert response.status_code == 400 and "not UTF-8" in response.content.decode()
    assert not BatchExport.objects.exists()

    response = logged_in_client.post(
        base,
        {
            "version": version.pk,
            "format": "jsonl",
            "num_results": "3",
            "exclude_seen": "1",
            "users": SimpleUploadedFile("l.txt", b"u00003\nu00004\n"),
        },
    )
    export = BatchExport.objects.get()
    assert response.status_code == 302 and response.url == f"{base}{export.pk}/"
    assert export.status == "queued" and export.exclude_seen and export.user_list_path
    progress = logged_in_client.get(f"{base}{export.pk}/progress/")
    assert "Waiting for a worker" in progress.content.decode()
    assert logged_in_client.get(f"{base}{export.pk}/download/").status_code == 404  # not yet

    exports.run_export(export)
    detail = logged_in_client.get(f"{base}{export.pk}/").content.decode()
    assert "Download" in detail and "users exported" in detail
    download = logged_in_client.get(f"{base}{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == (
        f'attachment; filename="{shop.slug}-version{version.pk}-top3-export{export.pk}.jsonl"'
    )
    records = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert [r["user_id"] for r in records] == ["u00003", "u00004"]

    urls = [
        base,
        f"{base}{export.pk}/",
        f"{base}{export.pk}/progress/",
        f"{base}{export.pk}/download/",
    ]
    client = Client()
    client.force_login(other_user)
    for url in urls:
        assert client.get(url).status_code == 404
    assert client.post(f"{base}{export.pk}/cancel/").status_code == 404
    client.logout()
    assert client.get(urls[-1]).status_code in (302, 404)  # anonymous: to the login page

    queued = exports.start_export(project=shop, version=version, enqueue=False)
    logged_in_client.post(f"{base}{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert queued.status == "cancelled"


@pytest.mark.django_db
def test_command_exports_and_prints_the_file(shop, version, capsys, tmp_path):
    target = tmp_path / "out" / "recs.csv"
    call_command(
        "export_recommendations", "--project", shop.slug, "--version", str(version.pk),
        "--num-results", "2", "--output", str(target),
    )  # fmt: skip
    out = capsys.readouterr().out
    assert str(target) in out and "300 users" in out
    rows = read_csv(target)
    assert len(rows) == 300 and all(len(r) == 2 for r in rows.values())

    listing = tmp_path / "users.txt"
    listing.write_text("u00010\nstranger\n")
    call_command(
        "export_recommendations", "--project", shop.slug, "--version", str(version.pk),
        "--format", "jsonl", "--users", str(listing),
    )  # fmt: skip
    out = capsys.readouterr().out
    export = BatchExport.objects.order_by("-pk").first()
    assert export.file_path in out and "1 with the popularity fallback" in out
    assert [r["source"] for r in read_jsonl(export.file_path)] == ["model", "popular"]

    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call_command("export_recommendations", "--project", "nope", "--version", "1")
    with pytest.raises(CommandError, match="No model version #999999"):
        call_command("export_recommendations", "--project", shop.slug, "--version", "999999")
    with pytest.raises(CommandError, match="from 1 to 500"):
        call_command(
            "export_recommendations", "--project", shop.slug, "--version", str(version.pk),
            "--num-results", "0",
        )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_queued_export(shop, monkeypatch, settings, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "worker"))  # the worker's ARTIFACT_DIR
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)  # django-q signs tasks with it
    settings.ARTIFACT_DIR = tmp_path / "worker" / "artifacts"
    version = train(shop, "popularity-count")
    export = exports.start_export(project=shop, version=version, format="jsonl", num_results=7)
    with running_worker():
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            export.refresh_from_db()
            if export.is_finished:
                break
            time.sleep(0.5)
    assert export.status == "succeeded", export.error or "the worker did not finish within 90 s"
    assert export.task_id
    records = read_jsonl(exports.download_path(export))
    assert len(records) == SHOP_SIZE["n_users"]
    assert all(len(r["items"]) == 7 for r in records)
