"""How long a filter takes per request: compile once, mask a 100k-item catalogue per request.

Builds a synthetic catalogue (category with 200 values, price, in-stock flag, multi-valued
tags, launch date) and a user with 200 events, then times ``Filter.mask`` for typical filters
(median and 95th percentile over many calls) and the one-off costs (compiling the expression,
encoding the item table). Django-free; no database.

    .venv/bin/python benchmarks/bench_filters.py [--items 100000] [--repeats 500]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds.engine.filters import ItemTable, UserInteractions, compile_filter  # noqa: E402

SCHEMA = {
    "items": {
        "category": "categorical",
        "price": "numeric",
        "in_stock": "boolean",
        "tags": {"type": "categorical", "multi": True},
        "launched": "timestamp",
    }
}
FILTERS = [
    ("out of stock", "EXCLUDE ItemID WHERE Items.in_stock = false", {}, None),
    (
        "category parameter",
        "INCLUDE ItemID WHERE Items.category IN ($CATS)",
        {"CATS": '"c1","c2","c3"'},
        None,
    ),
    (
        "already purchased",
        'EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase")',
        {},
        None,
    ),
    (
        "3 statements",
        "EXCLUDE ItemID WHERE Items.in_stock = false "
        "| INCLUDE ItemID WHERE Items.category IN ($CATS) AND Items.price < $MAX "
        '| EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase")',
        {"CATS": '"c1","c2","c3"', "MAX": "50"},
        None,
    ),
    (
        "broad category (half the items)",
        "INCLUDE ItemID WHERE Items.category IN ($CATS)",
        {"CATS": [f"c{i}" for i in range(100)]},
        None,
    ),
    (
        "multi-valued tags",
        'INCLUDE ItemID WHERE Items.tags IN ("sale", "eco") AND Items.launched > "2024-06-01"',
        {},
        None,
    ),
    (
        "same category, cheaper (related)",
        "INCLUDE ItemID WHERE Items.category IN (CurrentItem.category) "
        "AND Items.price < CurrentItem.price",
        {},
        {"category": "c7", "price": 80.0},
    ),
]


def build(n_items: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    categories = np.array([f"c{i}" for i in range(200)], dtype=object)
    tag_words = np.array(["red", "blue", "green", "sale", "new", "eco", "kids", "gift"])
    columns = {
        "category": categories[rng.integers(0, 200, n_items)],
        "price": np.round(rng.lognormal(3.5, 0.8, n_items), 2),
        "in_stock": rng.random(n_items) > 0.1,
        "tags": [
            list(rng.choice(tag_words, rng.integers(0, 4), replace=False)) for _ in range(n_items)
        ],
        "launched": rng.integers(1_640_000_000, 1_730_000_000, n_items),
    }
    events = UserInteractions(
        item_rows=rng.integers(0, n_items, 200),
        event_types=rng.choice(np.array(["view", "cart", "purchase"], dtype=object), 200),
        timestamps=rng.integers(1_700_000_000, 1_730_000_000, 200),
    )
    return columns, events


def timed(function, repeats: int) -> tuple[float, float]:
    function()  # warm the column caches
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    micro = np.asarray(samples) * 1e6
    return float(np.median(micro)), float(np.percentile(micro, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()

    columns, events = build(args.items)
    start = time.perf_counter()
    table = ItemTable(columns, schema=SCHEMA)
    for name in columns:
        table.column(name)
    build_ms = (time.perf_counter() - start) * 1e3

    print(f"{args.items:,} items, user with {len(events.item_rows)} events\n")
    print("| filter | allowed items | median µs | p95 µs | compile µs |")
    print("|---|---|---|---|---|")
    for label, expression, values, current in FILTERS:
        start = time.perf_counter()
        flt = compile_filter(expression, schema=SCHEMA)
        compile_us = (time.perf_counter() - start) * 1e6
        kwargs = {"values": values, "interactions": events, "current_item": current}
        allowed = int(flt.mask(table, **kwargs).sum())
        median, p95 = timed(lambda flt=flt, kwargs=kwargs: flt.mask(table, **kwargs), args.repeats)
        print(f"| {label} | {allowed:,} | {median:.0f} | {p95:.0f} | {compile_us:.0f} |")
    print(f"\nItem table: encoding all {len(columns)} columns once took {build_ms:.0f} ms")


if __name__ == "__main__":
    main()
