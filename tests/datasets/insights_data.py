"""Synthetic shop data for the Insights tests, loaded the way imports do (via datasets.store)."""

import numpy as np
import pandas as pd
from django.db import transaction

from datasets import store

DAY = 86_400
CATEGORIES = ["Shoes", "Running", "Outdoor", "Audio", "Books", "Kitchen", "Home", "Toys"]


def synthetic_shop(*, n_users=300, n_items=150, n_interactions=4000, days=60, now, seed=0):
    """A small shop with a long tail: Zipf item popularity, lognormal user activity, busier
    weekends, view/cart/purchase events and some multi-valued categories (a list or "A|B").

    Returns (interactions, items, user ids); every timestamp is before ``now``.
    """
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, n_items + 1) ** 0.9
    activity = rng.lognormal(0, 1, n_users)
    # Busier weekends and a growing shop, so the activity chart has a shape.
    calendar = np.arange(days)
    day_weight = (1 + 0.4 * (calendar % 7 >= 5)) * (1 + calendar / days)
    day = rng.choice(days, n_interactions, p=day_weight / day_weight.sum())
    interactions = pd.DataFrame(
        {
            "user_id": [
                f"u{k:04d}"
                for k in rng.choice(n_users, n_interactions, p=activity / activity.sum())
            ],
            "item_id": [
                f"i{k:04d}"
                for k in rng.choice(n_items, n_interactions, p=popularity / popularity.sum())
            ],
            "timestamp": now - days * DAY + day * DAY + rng.integers(0, DAY, n_interactions),
            "event_type": rng.choice(
                ["view", "cart", "purchase"], n_interactions, p=[0.8, 0.14, 0.06]
            ),
        }
    )
    primary = rng.choice(CATEGORIES, n_items).tolist()
    secondary = rng.choice(CATEGORIES, n_items).tolist()
    categories = []
    for k in range(n_items):
        if k % 7 == 0 and primary[k] != secondary[k]:
            categories.append([primary[k], secondary[k]])
        elif k % 11 == 0 and primary[k] != secondary[k]:
            categories.append(f"{primary[k]}|{secondary[k]}")
        else:
            categories.append(primary[k])
    items = pd.DataFrame({"item_id": [f"i{k:04d}" for k in range(n_items)], "CATEGORY": categories})
    users = [f"u{k:04d}" for k in range(n_users)]
    return interactions, items, users


def load_project_data(project, interactions: pd.DataFrame, *, items=None, users=()) -> None:
    """Write interactions (user_id, item_id, timestamp[, event_type, event_value], external
    ids), an optional Items dataset (item_id[, CATEGORY]) and Users dataset (a list of ids)."""
    interactions = interactions.reset_index(drop=True)
    with transaction.atomic():
        if items is not None:
            attributes = [
                {"CATEGORY": category} if category is not None else {}
                for category in items.get("CATEGORY", [None] * len(items))
            ]
            store.upsert_catalog(
                store.ITEM_TABLE, project.id, items["item_id"].astype(str).tolist(), attributes
            )
        if len(users):
            store.upsert_catalog(store.USER_TABLE, project.id, list(users), [{}] * len(users))
        user_ids = store.ensure_ids(
            store.USER_TABLE, project.id, interactions["user_id"].astype(str).unique().tolist()
        )
        item_ids = store.ensure_ids(
            store.ITEM_TABLE, project.id, interactions["item_id"].astype(str).unique().tolist()
        )
        rows = pd.DataFrame(
            {
                "user_id": store.map_ids(interactions["user_id"].astype(str), user_ids),
                "item_id": store.map_ids(interactions["item_id"].astype(str), item_ids),
                "timestamp": interactions["timestamp"].astype("int64"),
                "event_type": interactions.get("event_type", ""),
                "event_value": interactions.get("event_value", float("nan")),
                "impression": "",
                "session_id": "",
                "recommendation_id": "",
            }
        )
        store.insert_interactions(project.id, rows)
