"""The import service and the import_dataset command against the real database.

Files are small: a generated demo shop for the happy paths, inline CSV strings for the rest.
"""

import csv
import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.ingest.errors import IngestError
from datasets.models import EndUser, ImportJob, Interaction, Item, Project, Relation

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 200, "n_items": 150, "n_interactions": 5_000, "seed": 3}


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    """Job folders (progress, cancel flag, rejected.csv) in a fresh folder for each test."""
    settings.UPLOAD_DIR = tmp_path / "uploads"
    return settings.UPLOAD_DIR


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **SHOP_SIZE)


@pytest.fixture
def write(tmp_path):
    def write(content: str, name: str = "data.csv"):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        return path

    return write


def import_csv(project, kind, path, mode="incremental", **extra) -> ImportJob:
    job = imports.import_file(project=project, kind=kind, path=path, mode=mode, **extra)
    job.refresh_from_db()
    return job


def interactions_of(project) -> list[tuple[str, str, int]]:
    rows = Interaction.objects.filter(project=project).order_by("timestamp", "pk")
    return [(i.user.external_id, i.item.external_id, i.timestamp) for i in rows]


def catalog_ids(model, project) -> set[str]:
    return set(
        model.objects.filter(project=project, in_catalog=True).values_list("external_id", flat=True)
    )


def csv_rows(path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


ITEMS = "item_id,category,price,in_stock\ni1,Shoes|Running,59.90,yes\ni2,Books,12.50,no\n"
EVENTS = "user_id,item_id,timestamp\nu1,i1,1700000000\nu2,i2,1700000100\nu1,i2,1700000200\n"


# --- the demo shop ----------------------------------------------------------------------


def test_the_four_kinds_of_the_demo_shop_import_and_the_database_matches_the_reports(project, shop):
    files, counts = shop["files"], shop["counts"]
    jobs = {
        kind: import_csv(project, kind, files[kind])
        for kind in ("items", "users", "interactions", "relations")
    }
    for kind, job in jobs.items():
        assert job.status == ImportJob.Status.SUCCEEDED, job.error
        assert job.report["rows_read"] == counts[kind]
        assert job.report["rejected"] == 0
        assert job.report["duplicates"] == 0
        assert job.report["accepted"] == counts[kind]
    assert Item.objects.filter(project=project, in_catalog=True).count() == counts["items"]
    assert EndUser.objects.filter(project=project, in_catalog=True).count() == counts["users"]
    assert Interaction.objects.filter(project=project).count() == counts["interactions"]
    assert Relation.objects.filter(project=project).count() == counts["relations"]
    # Items and users were imported first, so every id in the events is known.
    assert jobs["interactions"].report["unknown_items"] == 0
    assert jobs["interactions"].report["rows_with_unknown_items"] == 0


def test_items_import_extends_the_schema_and_stores_attributes_with_json_types(project, shop):
    job = import_csv(project, "items", shop["files"]["items"])
    assert job.status == ImportJob.Status.SUCCEEDED, job.error
    schema = {f.name: f for f in imports.get_schema(project, "items")}
    assert (schema["CATEGORY"].type, schema["CATEGORY"].multi) == ("categorical", True)
    assert schema["PRICE"].type == "numeric"
    assert schema["IN_STOCK"].type == "boolean"
    assert schema["TITLE"].type in ("categorical", "text")
    assert schema["DESCRIPTION"].type == "text"
    for item in Item.objects.filter(project=project):
        attributes = item.attributes
        assert isinstance(attributes["CATEGORY"], list)
        assert all(isinstance(c, str) for c in attributes["CATEGORY"])
        assert isinstance(attributes["PRICE"], float)
        assert isinstance(attributes["IN_STOCK"], bool)
        assert isinstance(item.creation_timestamp, int)
    multi = Item.objects.filter(project=project, attributes__CATEGORY__1__isnull=False)
    assert multi.exists()  # some demo items have two categories


# --- reports and unknown ids ------------------------------------------------------------


def test_the_report_counts_accepted_rejected_duplicate_and_unknown_rows(project, write):
    import_csv(project, "items", write(ITEMS, "items.csv"))
    job = import_csv(
        project,
        "interactions",
        write(
            "user_id,item_id,timestamp\n"
            "u1,i1,1700000000\n"
            "u1,i1,1700000000\n"  # duplicate of line 2
            "u2,ghost,1700000001\n"  # item not in the Items dataset
            "u3,ghost,1700000002\n"
            "u3,phantom,1700000003\n"
            "u4,i2,yesterday\n"  # rejected
            "\n"
        ),
    )
    report = job.report
    assert job.status == ImportJob.Status.SUCCEEDED
    assert report["rows_read"] == 7
    assert report["accepted"] == 4
    assert report["rejected"] == 1
    assert report["duplicates"] == 1
    assert report["blank_lines"] == 1
    assert report["unknown_items"] == 2
    assert report["rows_with_unknown_items"] == 3
    assert report["unknown_users"] == 3  # no users were imported
    [(reason, count)] = report["rejections_by_reason"].items()
    assert "TIMESTAMP is not a timestamp" in reason and count == 1
    assert report["sample_rejections"] == [
        {"line": 7, "column": "timestamp", "reason": reason, "value": "yesterday"}
    ]
    assert isinstance(report["seconds"], float | int) and report["seconds"] >= 0


def test_interactions_with_items_missing_from_the_catalog_are_kept_like_personalize(project, write):
    import_csv(project, "items", write(ITEMS, "items.csv"))
    job = import_csv(project, "interactions", write(EVENTS + "u3,i9,1700000300\n"))
    assert job.report["accepted"] == 4
    assert job.report["unknown_items"] == 1
    assert ("u3", "i9", 1_700_000_300) in interactions_of(project)
    unknown = Item.objects.get(project=project, external_id="i9")
    assert not unknown.in_catalog
    assert catalog_ids(Item, project) == {"i1", "i2"}


# --- incremental and full modes ---------------------------------------------------------


def test_incremental_interactions_are_appended(project, write):
    import_csv(project, "interactions", write(EVENTS, "first.csv"))
    job = import_csv(project, "interactions", write(EVENTS.replace("17000", "17001"), "second.csv"))
    assert job.report["accepted"] == 3
    assert Interaction.objects.filter(project=project).count() == 6


def test_incremental_items_are_upserted_and_keep_their_ids(project, write):
    import_csv(project, "items", write(ITEMS, "items.csv"))
    import_csv(project, "interactions", write(EVENTS))
    first_ids = dict(Item.objects.filter(project=project).values_list("external_id", "pk"))
    job = import_csv(
        project,
        "items",
        write("item_id,category,price,in_stock\ni1,Sale,49.00,no\ni3,Toys,5.00,yes\n", "more.csv"),
    )
    assert job.status == ImportJob.Status.SUCCEEDED
    items = {item.external_id: item for item in Item.objects.filter(project=project)}
    assert items["i1"].pk == first_ids["i1"]
    assert items["i1"].attributes == {"CATEGORY": ["Sale"], "PRICE": 49.0, "IN_STOCK": False}
    assert items["i2"].attributes["CATEGORY"] == ["Books"]  # not in the file: untouched
    assert catalog_ids(Item, project) == {"i1", "i2", "i3"}
    # The old interactions still point at the same (updated) items.
    assert Interaction.objects.filter(project=project, item_id=first_ids["i1"]).count() == 1
    assert Interaction.objects.filter(project=project, item_id=first_ids["i2"]).count() == 2


def test_a_full_interactions_import_replaces_all_earlier_interactions(project, write):
    import_csv(project, "interactions", write(EVENTS, "old.csv"))
    job = import_csv(
        project, "interactions", write("user_id,item_id,timestamp\nu9,i9,1800000000\n"), "full"
    )
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.report["replaced_rows"] == 3
    assert interactions_of(project) == [("u9", "i9", 1_800_000_000)]


def test_a_full_items_import_takes_missing_items_out_of_the_catalog_but_keeps_their_ids(
    project, write
):
    import_csv(project, "items", write(ITEMS, "items.csv"))
    import_csv(project, "interactions", write(EVENTS))
    old_i2 = Item.objects.get(project=project, external_id="i2")
    job = import_csv(
        project,
        "items",
        write("item_id,category,price,in_stock\ni1,Sale,49.00,no\ni3,Toys,5.00,yes\n", "new.csv"),
        "full",
    )
    assert job.status == ImportJob.Status.SUCCEEDED
    assert catalog_ids(Item, project) == {"i1", "i3"}
    gone = Item.objects.get(project=project, external_id="i2")
    assert gone.pk == old_i2.pk
    assert gone.attributes == {}
    assert Interaction.objects.filter(project=project, item=gone).count() == 2


def test_a_failing_full_import_leaves_the_old_data_and_fails_the_job_with_a_reason(project, write):
    import_csv(project, "items", write(ITEMS, "items.csv"))
    import_csv(project, "interactions", write(EVENTS))
    before_events = interactions_of(project)
    before_items = {i.external_id: i.attributes for i in Item.objects.filter(project=project)}

    bad_items = write("item_id,created\ni7,soon\ni8,later\n", "bad-items.csv")
    bad_events = write("user_id,item_id,timestamp\nu1,i1,soon\nu2,i2,later\n", "bad-events.csv")
    item_job = import_csv(project, "items", bad_items, "full")
    event_job = import_csv(project, "interactions", bad_events, "full")

    for job in (item_job, event_job):
        assert job.status == ImportJob.Status.FAILED
        assert "None of the 2 rows could be imported" in job.error
        assert "No data was changed" in job.error
        assert job.finished_at is not None
    assert interactions_of(project) == before_events
    assert {i.external_id: i.attributes for i in Item.objects.filter(project=project)} == (
        before_items
    )
    assert catalog_ids(Item, project) == {"i1", "i2"}


# --- cancel, crashed workers and retry --------------------------------------------------


def configured_job(project, kind, path, mode="incremental") -> ImportJob:
    job = imports.create_from_path(project=project, kind=kind, path=path)
    return imports.configure(job=job, mapping=job.mapping, mode=mode)


def test_cancelling_a_queued_import_stops_it_before_it_changes_anything(project, write):
    import_csv(project, "interactions", write(EVENTS, "old.csv"))
    before = interactions_of(project)
    job = configured_job(
        project, "interactions", write("user_id,item_id,timestamp\nu9,i9,1800000000\n"), "full"
    )
    imports.queue_import(job)
    imports.request_cancel(job)
    assert (imports.job_dir(job) / "cancel").exists()
    job.refresh_from_db()
    assert job.cancel_requested
    assert job.status == ImportJob.Status.QUEUED

    imports.run(job)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    assert "no data was changed" in job.error
    assert interactions_of(project) == before


def test_cancelling_an_import_that_was_not_queued_finishes_it_at_once(project, write):
    job = configured_job(project, "interactions", write(EVENTS))
    imports.request_cancel(job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.CANCELLED
    imports.run(job)  # a cancelled job is not run
    assert Interaction.objects.filter(project=project).count() == 0


def make_stale(job) -> None:
    """A job whose worker died while loading: running, last progress long ago."""
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)
    imports.write_progress(job, phase="loading", fraction=0.4, rows=2)
    progress = imports.job_dir(job) / "progress.json"
    stale = json.loads(progress.read_text())
    stale["at"] = time.time() - imports.STALE_AFTER_SECONDS - 60
    progress.write_text(json.dumps(stale))


def test_an_import_whose_worker_died_is_failed_and_a_retry_succeeds(project, write):
    import_csv(project, "interactions", write(EVENTS, "old.csv"))
    before = interactions_of(project)
    job = configured_job(
        project, "interactions", write("user_id,item_id,timestamp\nu9,i9,1800000000\n"), "full"
    )
    make_stale(job)
    alive = configured_job(project, "interactions", write(EVENTS, "alive.csv"))
    ImportJob.objects.filter(pk=alive.pk).update(status=ImportJob.Status.RUNNING)
    imports.write_progress(alive, phase="loading", fraction=0.1, rows=1)

    assert imports.fail_stale_jobs(project) == 1

    job.refresh_from_db()
    assert job.status == ImportJob.Status.FAILED
    assert "worker stopped" in job.error
    assert ImportJob.objects.get(pk=alive.pk).status == ImportJob.Status.RUNNING
    assert interactions_of(project) == before

    retried = imports.retry(job)
    assert retried.pk != job.pk
    assert retried.status == ImportJob.Status.QUEUED
    assert (retried.mapping, retried.mode) == (job.mapping, job.mode)
    imports.run(retried)
    retried.refresh_from_db()
    assert retried.status == ImportJob.Status.SUCCEEDED, retried.error
    assert interactions_of(project) == [("u9", "i9", 1_800_000_000)]


def test_only_finished_imports_can_be_retried(project, write):
    job = configured_job(project, "interactions", write(EVENTS))
    with pytest.raises(IngestError, match="finished"):
        imports.retry(job)


# --- dry run and rejected rows ----------------------------------------------------------

MESSY_EVENTS = (
    "user_id,item_id,timestamp,event_value\n"
    "u1,i1,1700000000,1\n"
    "u1,i1,1700000000,1\n"
    "u2,i2,2023-02-30,1\n"
    "u3,i3,1700000000,-4\n"
    "u4,i4,1700000000,2,extra\n"
    "u5,i5,1700000000,3\n"
)


def test_a_dry_run_writes_nothing_and_reports_what_the_real_run_then_does(project, write):
    job = configured_job(project, "interactions", write(MESSY_EVENTS))
    validation = imports.dry_run(job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.VALIDATED
    assert job.validation == validation
    assert Interaction.objects.filter(project=project).count() == 0
    assert not Item.objects.filter(project=project).exists()
    assert not EndUser.objects.filter(project=project).exists()

    imports.run(job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    for key in ("rows_read", "accepted", "rejected", "duplicates", "blank_lines", "unknown_items"):
        assert job.report[key] == validation[key], key
    assert (validation["accepted"], validation["rejected"], validation["duplicates"]) == (2, 3, 1)
    assert Interaction.objects.filter(project=project).count() == validation["accepted"]


def test_rejected_rows_are_written_to_rejected_csv_with_line_column_reason_and_value(
    project, write
):
    job = import_csv(project, "interactions", write(MESSY_EVENTS))
    path = imports.rejected_path(job)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "column", "reason", "value"]
    assert [row[:2] for row in rows[1:]] == [["4", "timestamp"], ["5", "event_value"], ["6", ""]]
    assert rows[1][3] == "2023-02-30"
    assert "not a timestamp" in rows[1][2]
    assert rows[2][2:] == ["EVENT_VALUE must not be negative", "-4"]
    assert rows[3][2] == "has 5 fields, expected 4"
    assert [r.line for r in imports.rejection_rows(job)] == [4, 5, 6]
    assert [r.line for r in imports.rejection_rows(job, limit=2)] == [4, 5]


# --- configure --------------------------------------------------------------------------


def test_configure_refuses_two_columns_mapped_to_the_same_field(project, write):
    job = imports.create_from_path(
        project=project, kind="interactions", path=write("user,buyer,item,time\nu,b,i,1\n")
    )
    mapping = {"user": "USER_ID", "buyer": "USER_ID", "item": "ITEM_ID", "time": "TIMESTAMP"}
    with pytest.raises(IngestError, match="Several columns are mapped to USER_ID"):
        imports.configure(job=job, mapping=mapping, mode="incremental")


def test_configure_refuses_columns_the_file_does_not_have(project, write):
    job = imports.create_from_path(project=project, kind="interactions", path=write(EVENTS))
    mapping = {**job.mapping, "colour": "EVENT_TYPE"}
    with pytest.raises(IngestError, match="no column.*colour"):
        imports.configure(job=job, mapping=mapping, mode="incremental")


def test_configure_refuses_an_unknown_mode(project, write):
    job = imports.create_from_path(project=project, kind="interactions", path=write(EVENTS))
    with pytest.raises(IngestError, match="Unknown mode"):
        imports.configure(job=job, mapping=job.mapping, mode="replace")


# --- the import_dataset command ---------------------------------------------------------


def run_command(path, **options) -> str:
    out = io.StringIO()
    call_command("import_dataset", str(path), stdout=out, **options)
    return out.getvalue()


def test_the_command_creates_the_project_and_prints_counts_and_rejected_lines(write):
    path = write(
        "user_id,item_id,timestamp\n"
        "u1,i1,1700000000\n"
        "u2,i2,someday\n"
        "u3,i3,1700000002\n"
        "u4,,1700000003\n"
    )
    output = run_command(path, project="cli", kind="interactions")
    project = Project.objects.get(slug="cli")
    assert "Created project 'cli'" in output
    assert "Succeeded" in output
    lines = output.splitlines()
    assert any(line.split()[:2] == ["accepted", "2"] for line in lines)
    assert any(line.split()[:2] == ["rejected", "2"] for line in lines)
    assert any(line.strip().startswith("line 3 [timestamp]") for line in lines)
    assert any(line.strip().startswith("line 5 [item_id]") for line in lines)
    assert Interaction.objects.filter(project=project).count() == 2


def test_the_command_uses_an_existing_project(project, write):
    output = run_command(write(EVENTS), project=project.slug, kind="interactions")
    assert "Created project" not in output
    assert Interaction.objects.filter(project=project).count() == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "The file is empty"),
        ("user_id,item_id,timestamp\n", "header but no rows"),
        ("user_id,item_id,timestamp\nu1,i1,never\nu2,,1700000000\n", "None of the 2 rows"),
    ],
    ids=["empty", "header-only", "all-rejected"],
)
def test_the_command_fails_when_nothing_can_be_imported(write, content, message):
    with pytest.raises(CommandError, match=message) as failure:
        run_command(write(content), project="cli", kind="interactions")
    assert failure.value.returncode == 1  # manage.py exits with it
    assert not Interaction.objects.exists()


def test_the_command_takes_a_json_mapping_for_custom_column_names(write):
    path = write("who,what,when,how\nu1,i1,1700000000,view\nu2,i2,1700000001,buy\n")
    mapping = {"who": "USER_ID", "what": "ITEM_ID", "when": "TIMESTAMP", "how": "EVENT_TYPE"}
    run_command(path, project="cli", kind="interactions", mapping=json.dumps(mapping))
    events = Interaction.objects.filter(project__slug="cli").order_by("timestamp")
    assert [(e.user.external_id, e.event_type) for e in events] == [("u1", "view"), ("u2", "buy")]


@pytest.mark.parametrize("mapping", ['{"who": USER_ID}', '["USER_ID"]'])
def test_the_command_refuses_a_mapping_that_is_not_a_json_object(write, mapping):
    with pytest.raises(CommandError, match="--mapping"):
        run_command(write(EVENTS), project="cli", kind="interactions", mapping=mapping)
    assert not Project.objects.filter(slug="cli").exists()
