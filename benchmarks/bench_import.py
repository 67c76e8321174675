"""CSV import speed: recsite's import path against a plain COPY of the same file, same run.

    .venv/bin/python benchmarks/bench_import.py [--database-url URL] [--interactions N]

Generates the demo shop's interactions file (675,000 rows by default), imports it through
the product path (sniff, validate, map ids, load, index; one transaction) into a fresh
benchmark database, and then streams the same file with COPY into a bare table with no
indexes (what `psql \\copy` does), and the already-mapped rows with COPY into a table shaped
and indexed like the real one (the database's own floor for this schema). ml-100k from
../shared/data is added when present. Prints rows/s, the ratios, and the import's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.servers import recreate_database  # noqa: E402

ML_100K = ROOT.parent / "shared" / "data" / "ml-100k" / "original" / "u.data"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/recsite_bench_import"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--interactions", type=int, default=675_000)
    return parser.parse_args()


class PeakRss:
    """Samples this process's resident memory in a thread; reports the peak."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.peak = self.process.memory_info().rss
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def product_import(project, path, kind, mapping=None, delimiter=None):
    from datasets import imports

    with PeakRss() as memory:
        started = time.perf_counter()
        job = imports.import_file(
            project=project, kind=kind, path=path, mode="full", mapping=mapping,
            delimiter=delimiter,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    if job.status != "succeeded":
        raise SystemExit(f"import failed: {job.error}")
    return job.report["accepted"], seconds, memory.peak


def timed_copy(table: str, create_sql: str, copy_sql: str, blocks) -> tuple[int, float]:
    """Create ``table``, time COPYing ``blocks`` of data into it, count the rows, drop it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(create_sql)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(copy_sql) as cp:
            for block in blocks:
                cp.write(block)
        cursor.execute(f"SELECT count(*) FROM {table}")
        rows = cursor.fetchone()[0]
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {table}")
    return rows, seconds


def plain_copy(path, columns: list[str], options: str) -> tuple[int, float]:
    """The file as it is, into text columns with no keys or indexes (``psql \\copy``)."""
    table = "bench_bare_interactions"
    with open(path, "rb") as handle:
        return timed_copy(
            table,
            f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in columns)})",
            f"COPY {table} FROM STDIN WITH ({options})",
            iter(lambda: handle.read(1 << 20), b""),
        )


def shaped_copy(project_id: int) -> tuple[int, float]:
    """COPY the imported, already-mapped rows into a table shaped and indexed like
    datasets_interaction: the database's own floor for loading into this schema."""
    from django.db import connection

    columns = ("project_id, user_id, item_id, timestamp, event_type, event_value, "
               "impression, session_id, recommendation_id")  # fmt: skip
    buffer = io.BytesIO()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY (SELECT {columns} FROM datasets_interaction WHERE project_id = {project_id})"
            " TO STDOUT WITH (FORMAT csv)"
        ) as cp,
    ):
        for block in cp:
            buffer.write(block)
    table = "bench_shaped_interactions"
    return timed_copy(
        table,
        f"CREATE TABLE {table} (LIKE datasets_interaction INCLUDING ALL)",
        f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)",
        [buffer.getvalue()],
    )


def main():
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    if args.database_url.startswith("postgres"):
        recreate_database(args.database_url)
    else:
        raise SystemExit("The plain COPY peer needs PostgreSQL; pass a postgres:// URL.")
    # Uploads and job folders of this run stay out of the real data folder.
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="recsite-bench-")
    import django

    django.setup()
    from django.core.management import call_command

    from datasets.ingest.demo import generate_demo_shop
    from datasets.models import Project

    call_command("migrate", verbosity=0)
    project = Project.objects.create(slug="bench-import", name="Bench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generate_demo_shop(tmp, n_interactions=args.interactions)
        print(f"generated demo shop in {time.perf_counter() - started:.1f} s", flush=True)
        path = Path(tmp) / "interactions.csv"
        header = path.open().readline().strip().split(",")
        accepted, seconds, peak = product_import(project, path, "interactions")
        copied, copy_seconds = plain_copy(path, header, "FORMAT csv, HEADER true")
        shaped, shaped_seconds = shaped_copy(project.pk)
        rows.append(
            ("demo shop", accepted, seconds, copied, copy_seconds, shaped, shaped_seconds, peak)
        )
    if ML_100K.exists():
        mapping = {"column_1": "USER_ID", "column_2": "ITEM_ID", "column_3": "EVENT_VALUE",
                   "column_4": "TIMESTAMP"}  # fmt: skip
        accepted, seconds, peak = product_import(
            project, ML_100K, "interactions", mapping=mapping, delimiter="\t"
        )
        columns = ["user_id", "item_id", "rating", "ts"]
        copied, copy_seconds = plain_copy(ML_100K, columns, "FORMAT text")
        shaped, shaped_seconds = shaped_copy(project.pk)
        rows.append(
            ("ml-100k", accepted, seconds, copied, copy_seconds, shaped, shaped_seconds, peak)
        )
    else:
        print(f"({ML_100K} not present: ml-100k skipped)")

    print()
    print("| data | rows | recsite import s | recsite rows/s | bare COPY rows/s | recsite / bare "
          "| indexed COPY rows/s | recsite / indexed | peak RSS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, accepted, seconds, copied, copy_s, shaped, shaped_s, peak in rows:
        rate, copy_rate, shaped_rate = accepted / seconds, copied / copy_s, shaped / shaped_s
        print(
            f"| {name} | {accepted:,} | {seconds:.2f} | {rate:,.0f} | {copy_rate:,.0f} "
            f"| {rate / copy_rate:.2f}x | {shaped_rate:,.0f} | {rate / shaped_rate:.2f}x "
            f"| {peak / 2**20:,.0f} MiB |"
        )


if __name__ == "__main__":
    main()
