"""Plotly figures and the side-by-side table of the version comparison page.

Django-free: the input is a list of plain dicts, one per model version, oldest first::

    {"label": "#5 item-knn", "metrics": {"ndcg@10": 0.21, "r:ndcg@10": 0.18, ...},
     "duration_seconds": 12.5, "peak_memory_bytes": 350_000_000}

The output is plain data: Plotly figure dicts (``{"data": [...], "layout": {...}}``) that are
JSON-serialisable as they are, and table rows. Missing metrics are ``None`` (a gap in a chart,
a dash in the table), never zero.
"""

from __future__ import annotations

import math
import re

# Protocol R metrics (RecBole's random per-user split) share the dict under this prefix.
PROTOCOL_R_PREFIX = "r:"
CHART_K = 10
# Bar order in the metric charts: accuracy first, then beyond-accuracy.
METRIC_ORDER = [
    "precision",
    "recall",
    "ndcg",
    "hit",
    "mrr",
    "coverage",
    "diversity",
    "novelty",
    "pop_percentile",
    "arp",
]
HIGHER_IS_BETTER = {"precision", "recall", "ndcg", "hit", "mrr", "coverage", "diversity", "novelty"}
# Popularity bias (arp, pop_percentile) has no "best": it depends on what the list is for.
LOWER_IS_BETTER_SUFFIX = "_seconds"

_FONT = {"family": 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', "size": 12}
_GRID = "#eef0f4"
# Enough distinct colours for the versions of one comparison.
PALETTE = [
    "#2757d6",
    "#e8772e",
    "#2a9d5c",
    "#c43d5a",
    "#7b55c7",
    "#1d9bb2",
    "#b8901c",
    "#6b7280",
    "#d04fb0",
    "#4f7d2a",
]
_METRIC_KEY = re.compile(r"^(?P<prefix>r:)?(?P<name>[a-z_]+)@(?P<k>\d+)$")


def _layout(**overrides) -> dict:
    layout = {
        "height": 340,
        "margin": {"l": 60, "r": 16, "t": 16, "b": 56},
        "font": _FONT,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#fff",
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    }
    layout.update(overrides)
    return layout


def _number(value) -> float | None:
    """A finite float, or ``None`` for anything missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _sort_key(key: str) -> tuple:
    match = _METRIC_KEY.match(key)
    if not match:
        return (2, 0, 0, key)
    name = match["name"]
    rank = METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER)
    return (1 if match["prefix"] else 0, int(match["k"]), rank, key)


def metric_keys(versions: list[dict], *, protocol_r: bool, k: int = CHART_K) -> list[str]:
    """The ``name@k`` metric keys present in any version, Personalize's or Protocol R's."""
    found = set()
    for version in versions:
        for key, value in version.get("metrics", {}).items():
            match = _METRIC_KEY.match(key)
            if not match or int(match["k"]) != k or bool(match["prefix"]) != protocol_r:
                continue
            if _number(value) is not None:
                found.add(key)
    return sorted(found, key=_sort_key)


def _bounded(versions: list[dict], key: str) -> bool:
    values = [_number(v.get("metrics", {}).get(key)) for v in versions]
    return all(value is None or 0.0 <= value <= 1.0 for value in values)


def metrics_chart(versions: list[dict], *, protocol_r: bool = False) -> dict:
    """Grouped bars: one group per metric at @10, one bar per version.

    Only metrics between 0 and 1 share the axis; others (novelty, in bits, and the average
    popularity ``arp``, a count) would flatten every other bar, so they stay in the table.
    ``layout.meta.left_out`` lists them for the caption.
    """
    keys = metric_keys(versions, protocol_r=protocol_r)
    shown = [key for key in keys if _bounded(versions, key)]
    left_out = [key for key in keys if key not in shown]
    labels = [key.removeprefix(PROTOCOL_R_PREFIX) for key in shown]
    traces = [
        {
            "type": "bar",
            "name": version["label"],
            "x": labels,
            "y": [_number(version.get("metrics", {}).get(key)) for key in shown],
            "marker": {"color": PALETTE[index % len(PALETTE)]},
            "hovertemplate": "%{x}: %{y:.4f}<extra>%{fullData.name}</extra>",
        }
        for index, version in enumerate(versions)
    ]
    layout = _layout(
        barmode="group",
        bargap=0.2,
        yaxis={"title": {"text": "score"}, "gridcolor": _GRID, "rangemode": "tozero"},
        xaxis={"type": "category"},
        meta={"left_out": left_out},
    )  # fmt: skip
    return {"data": traces, "layout": layout}


def resources_chart(versions: list[dict]) -> dict:
    """Training duration (bars, seconds) and peak memory (line, MB) of each version's run."""
    labels = [version["label"] for version in versions]
    durations = [_number(version.get("duration_seconds")) for version in versions]
    memory = [
        None if (value := _number(version.get("peak_memory_bytes"))) is None else value / 2**20
        for version in versions
    ]
    duration = {
        "type": "bar",
        "name": "duration (s)",
        "x": labels,
        "y": durations,
        "marker": {"color": PALETTE[0]},
        "hovertemplate": "%{x}: %{y:.1f} s<extra></extra>",
    }
    peak = {
        "type": "scatter",
        "mode": "lines+markers",
        "name": "peak memory (MB)",
        "x": labels,
        "y": memory,
        "yaxis": "y2",
        "line": {"color": PALETTE[1], "width": 2},
        "marker": {"size": 8},
        "hovertemplate": "%{x}: %{y:,.0f} MB<extra></extra>",
    }
    layout = _layout(
        xaxis={"type": "category"},
        yaxis={"title": {"text": "duration (s)"}, "gridcolor": _GRID, "rangemode": "tozero"},
        yaxis2={"title": {"text": "peak memory (MB)"}, "overlaying": "y", "side": "right",
                "rangemode": "tozero", "showgrid": False},
        margin={"l": 60, "r": 64, "t": 16, "b": 56},
    )  # fmt: skip
    return {"data": [duration, peak], "layout": layout}


def _direction(key: str) -> int:
    """+1 when a higher value is better, -1 when lower is, 0 when neither is "best"."""
    if key.endswith(LOWER_IS_BETTER_SUFFIX):
        return -1
    match = _METRIC_KEY.match(key)
    if match and match["name"] in HIGHER_IS_BETTER:
        return 1
    return 0


def best_indexes(values: list, direction: int) -> set[int]:
    """Positions of the best value (all of them on a tie); none when fewer than two values."""
    numbers = [(i, v) for i, v in enumerate(_number(v) for v in values) if v is not None]
    if direction == 0 or len(numbers) < 2:
        return set()
    pick = max if direction > 0 else min
    best = pick(value for _, value in numbers)
    if all(value == best for _, value in numbers):
        return set()  # everyone ties: nothing stands out
    return {i for i, value in numbers if math.isclose(value, best, rel_tol=1e-12, abs_tol=0)}


def metrics_table(versions: list[dict]) -> list[dict]:
    """Every metric of any version as a row: ``{"key", "cells": [{"value", "best"}, ...]}``.

    Personalize's protocol first, then Protocol R (``r:``), then the other numbers (timings),
    then the run's duration and peak memory. ``best`` marks the best value of the row when
    the metric has a direction (higher for accuracy and beyond-accuracy metrics, lower for
    times and memory) and the versions differ.
    """
    keys = set()
    for version in versions:
        keys.update(k for k, v in version.get("metrics", {}).items() if _number(v) is not None)
    rows = []
    for key in sorted(keys, key=_sort_key):
        values = [_number(version.get("metrics", {}).get(key)) for version in versions]
        rows.append(_row(key, values, _direction(key)))
    durations = [_number(version.get("duration_seconds")) for version in versions]
    memory = [_number(version.get("peak_memory_bytes")) for version in versions]
    rows.append(_row("run duration (s)", durations, -1))
    row = _row("peak memory (MB)", [None if m is None else m / 2**20 for m in memory], -1)
    rows.append(row)
    return rows


def _row(key: str, values: list, direction: int) -> dict:
    best = best_indexes(values, direction)
    return {
        "key": key,
        "direction": direction,
        "cells": [{"value": value, "best": i in best} for i, value in enumerate(values)],
    }
