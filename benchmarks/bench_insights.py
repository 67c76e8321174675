"""How long the Insights page takes for the default demo shop (675k interactions).

Loads the demo shop into a throw-away project of the database named by DATABASE_URL (through
datasets.store, as an import does), times the page cold and cached plus the selectors behind
it, prints a table, then deletes the project.

    .venv/bin/python benchmarks/bench_insights.py
    DATABASE_URL=postgres://... .venv/bin/python benchmarks/bench_insights.py
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

import django  # noqa: E402

django.setup()

import pandas as pd  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from datasets import selectors, store  # noqa: E402
from datasets.ingest.demo import build_demo_shop  # noqa: E402
from datasets.services import create_project  # noqa: E402

REPEATS = 3


def load_demo_shop(project) -> int:
    shop = build_demo_shop()
    items, interactions = shop.items, shop.interactions
    with transaction.atomic():
        store.upsert_catalog(
            store.ITEM_TABLE,
            project.id,
            items["ITEM_ID"].tolist(),
            [{"CATEGORY": category.split("|")} for category in items["CATEGORY"]],
        )
        store.upsert_catalog(
            store.USER_TABLE, project.id, shop.users["USER_ID"].tolist(), [{}] * len(shop.users)
        )
        user_ids = store.ensure_ids(
            store.USER_TABLE, project.id, interactions["USER_ID"].unique().tolist()
        )
        item_ids = store.ensure_ids(
            store.ITEM_TABLE, project.id, interactions["ITEM_ID"].unique().tolist()
        )
        rows = pd.DataFrame(
            {
                "user_id": store.map_ids(interactions["USER_ID"], user_ids),
                "item_id": store.map_ids(interactions["ITEM_ID"], item_ids),
                "timestamp": interactions["TIMESTAMP"],
                "event_type": interactions["EVENT_TYPE"],
                "event_value": interactions["EVENT_VALUE"],
                "impression": interactions["IMPRESSION"],
                "session_id": interactions["SESSION_ID"],
                "recommendation_id": "",
            }
        )
        return store.insert_interactions(project.id, rows)


def best_of(action) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main():
    owner, _ = get_user_model().objects.get_or_create(username="bench-insights")
    project = create_project(name="Insights benchmark", owner=owner)
    try:
        started = time.perf_counter()
        n = load_demo_shop(project)
        load_seconds = time.perf_counter() - started
        print(f"{connection.vendor}: loaded {n:,} interactions in {load_seconds:.1f} s")

        client = Client()
        client.force_login(owner)
        url = f"/p/{project.slug}/insights/"

        def cold_page():
            cache.clear()
            assert client.get(url).status_code == 200

        def cached_page():
            assert client.get(url).status_code == 200

        with override_settings(ALLOWED_HOSTS=["testserver"]):
            rows = [
                ("page, cold (SQL aggregates + charts)", best_of(cold_page)),
                ("page, cached", best_of(cached_page)),
            ]
        now = int(time.time())
        rows += [
            (
                "selectors.interaction_stats",
                best_of(lambda: selectors.interaction_stats(project, now=now)),
            ),
            (
                "selectors.insights_fingerprint",
                best_of(lambda: selectors.insights_fingerprint(project)),
            ),
            (
                "selectors.interactions_frame (every row)",
                best_of(lambda: selectors.interactions_frame(project)),
            ),
        ]
        print(f"\n| {connection.vendor}, {n:,} interactions | seconds (best of {REPEATS}) |")
        print("|---|---:|")
        for name, seconds in rows:
            print(f"| {name} | {seconds:.2f} |")
    finally:
        store.delete_interactions(project.id)
        project.delete()
        owner.delete()


if __name__ == "__main__":
    main()
