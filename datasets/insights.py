"""Statistics, data-quality warnings and Plotly charts for a project's Insights page.

Django-free: the input is an :class:`InteractionStats` (interactions already reduced to
counts per day, per user and per item), built either from SQL aggregates by
``datasets.selectors.interaction_stats`` or from raw DataFrames by :func:`stats_from_frames`
(handy in a notebook). The output is plain data: numbers, warnings and Plotly figure dicts
that are JSON-serialisable as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

DAY = 86_400

# Amazon Personalize's minimums for training; our recipes learn little below them either.
MIN_INTERACTIONS = 1_000
MIN_ACTIVE_USERS = 25
ACTIVE_USER_EVENTS = 2
# Items with fewer events than this have too little signal for collaborative recipes.
COLD_ITEM_EVENTS = 5
# Share of all interactions on one item above which it drowns everything else out.
DOMINANT_ITEM_SHARE = 0.20
# Below this share, interactions on items missing from the Items dataset are only noted.
UNKNOWN_ITEMS_WARNING_SHARE = 0.05
# Clock skew we tolerate before calling a timestamp "in the future".
FUTURE_TOLERANCE_SECONDS = 10 * 60
# Epoch seconds this large are after the year 5000: almost surely milliseconds.
MILLISECONDS_LIKELY_ABOVE = 10**11

TOP_ITEMS = 20
TOP_CATEGORIES = 25
# Enough points to draw a smooth log-log curve without shipping a million of them.
RANK_CURVE_POINTS = 300
# Longer spans are charted per week, then per month, so the chart stays readable.
DAILY_BUCKET_MAX_DAYS = 2 * 366
WEEKLY_BUCKET_MAX_DAYS = 10 * 366

NO_EVENT_TYPE = "(no event type)"
NO_CATEGORY = "(no category)"


@dataclass(frozen=True)
class InteractionStats:
    """A project's interactions reduced to what the Insights page needs.

    ``daily`` has one row per (day, event_type) with columns ``day`` (days since 1970-01-01
    UTC), ``event_type`` ("" when missing) and ``interactions``. ``user_events`` holds the
    event count of every user with at least one event. ``items`` has one row per known item
    (in the Items dataset or seen in events): ``item_id``, ``in_catalog``, ``categories``
    (a list of strings) and ``events`` (0 for catalog items nobody touched).
    """

    daily: pd.DataFrame
    user_events: np.ndarray
    items: pd.DataFrame
    users_known: int
    users_in_catalog: int
    first_timestamp: int | None
    last_timestamp: int | None
    future_interactions: int
    as_of: int

    @property
    def interactions(self) -> int:
        return int(self.daily["interactions"].sum())


@dataclass(frozen=True)
class Summary:
    interactions: int
    event_type_counts: dict[str, int]
    users_with_events: int
    users_known: int
    users_in_catalog: int
    active_users: int
    items_with_events: int
    items_known: int
    items_in_catalog: int
    items_only_in_events: int
    interactions_on_unknown_items: int
    first_timestamp: int
    last_timestamp: int
    future_interactions: int
    sparsity: float
    users_below_active_share: float
    cold_items_share: float
    top_percent_items: int
    top_percent_items_share: float
    top_item_id: str
    top_item_events: int

    @property
    def event_types(self) -> list[str]:
        return [name for name in self.event_type_counts if name]

    @property
    def span_days(self) -> float:
        return (self.last_timestamp - self.first_timestamp) / DAY


@dataclass(frozen=True)
class DataWarning:
    severity: str  # "error" | "warning" | "info"
    code: str
    title: str
    message: str


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    detail: str


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    caption: str
    figure: dict
    wide: bool = False

    @property
    def element_id(self) -> str:
        return f"chart-{self.key}"


@dataclass(frozen=True)
class Insights:
    """Everything the Insights page shows; empty when the project has no interactions."""

    summary: Summary | None = None
    cards: list[Card] = field(default_factory=list)
    warnings: list[DataWarning] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)

    @property
    def has_interactions(self) -> bool:
        return self.summary is not None


# --- building the stats ----------------------------------------------------------------------


def parse_categories(value) -> list[str]:
    """An item's CATEGORY attribute as a list: a list of strings, or one `|`-separated string."""
    if isinstance(value, list):
        values = value
    elif value is None or (isinstance(value, float) and math.isnan(value)):  # NaN: from a CSV
        return []
    else:
        values = str(value).split("|")
    return [name for name in (str(v).strip() for v in values if v is not None) if name]


def stats_from_frames(
    interactions: pd.DataFrame,
    *,
    catalog_items: pd.DataFrame | None = None,
    catalog_users=(),
    now: int,
) -> InteractionStats:
    """Reduce raw frames to :class:`InteractionStats` (the pandas twin of the SQL selector).

    ``interactions`` needs user_id, item_id, timestamp and optionally event_type;
    ``catalog_items`` (the Items dataset) needs item_id and optionally CATEGORY;
    ``catalog_users`` lists the ids in the Users dataset.
    """
    timestamps = interactions["timestamp"].to_numpy(dtype=np.int64)
    event_types = (
        interactions["event_type"].astype(str).to_numpy()
        if "event_type" in interactions
        else np.full(len(interactions), "", dtype=object)
    )
    daily = (
        pd.DataFrame({"day": timestamps // DAY, "event_type": event_types})
        .groupby(["day", "event_type"])
        .size()
        .rename("interactions")
        .reset_index()
    )
    user_ids = interactions["user_id"].astype(str)
    item_events = interactions.groupby(interactions["item_id"].astype(str), observed=True).size()

    catalog = _catalog_items_frame(catalog_items)
    seen_only = item_events.index.difference(catalog["item_id"])
    items = pd.concat(
        [
            catalog,
            pd.DataFrame(
                {"item_id": seen_only, "in_catalog": False, "categories": [[]] * len(seen_only)}
            ),
        ],
        ignore_index=True,
    )
    items["events"] = items["item_id"].map(item_events).fillna(0).astype(np.int64)

    catalog_users = {str(user_id) for user_id in catalog_users}
    return InteractionStats(
        daily=daily,
        user_events=user_ids.value_counts().to_numpy(dtype=np.int64),
        items=items,
        users_known=len(catalog_users | set(user_ids.unique())),
        users_in_catalog=len(catalog_users),
        first_timestamp=int(timestamps.min()) if len(timestamps) else None,
        last_timestamp=int(timestamps.max()) if len(timestamps) else None,
        future_interactions=int((timestamps > now + FUTURE_TOLERANCE_SECONDS).sum()),
        as_of=now,
    )


def _catalog_items_frame(catalog_items: pd.DataFrame | None) -> pd.DataFrame:
    if catalog_items is None or catalog_items.empty:
        return pd.DataFrame({"item_id": pd.Series(dtype=str), "in_catalog": True, "categories": []})
    categories = catalog_items.get("CATEGORY", [None] * len(catalog_items))
    return pd.DataFrame(
        {
            "item_id": catalog_items["item_id"].astype(str).to_numpy(),
            "in_catalog": True,
            "categories": [parse_categories(value) for value in categories],
        }
    )


# --- numbers ---------------------------------------------------------------------------------


def summarize(stats: InteractionStats) -> Summary:
    """The headline numbers. Shares of users and items count those without any event too."""
    interactions = stats.interactions
    user_events = stats.user_events
    items = stats.items
    events = items["events"].to_numpy(dtype=np.int64)
    in_catalog = items["in_catalog"].to_numpy(dtype=bool)

    users_with_events = len(user_events)
    users_known = stats.users_known
    items_with_events = int((events > 0).sum())
    # Sparsity of the user x item matrix that collaborative recipes factorise.
    cells = users_with_events * items_with_events
    sparsity = max(0.0, 1.0 - interactions / cells) if cells else 1.0

    users_without_events = users_known - users_with_events
    users_below_active = int((user_events < ACTIVE_USER_EVENTS).sum()) + users_without_events

    by_popularity = np.sort(events)[::-1]
    top_percent_items = math.ceil(0.01 * len(events))
    top_item = _most_popular(items).iloc[0]

    event_type_counts = (
        stats.daily.groupby("event_type")["interactions"].sum().sort_values(ascending=False)
    )
    unknown = ~in_catalog & (events > 0)
    return Summary(
        interactions=interactions,
        event_type_counts={str(k): int(v) for k, v in event_type_counts.items()},
        users_with_events=users_with_events,
        users_known=users_known,
        users_in_catalog=stats.users_in_catalog,
        active_users=int((user_events >= ACTIVE_USER_EVENTS).sum()),
        items_with_events=items_with_events,
        items_known=len(items),
        items_in_catalog=int(in_catalog.sum()),
        items_only_in_events=int(unknown.sum()),
        interactions_on_unknown_items=int(events[unknown].sum()),
        first_timestamp=int(stats.first_timestamp),
        last_timestamp=int(stats.last_timestamp),
        future_interactions=stats.future_interactions,
        sparsity=sparsity,
        users_below_active_share=users_below_active / users_known,
        cold_items_share=float((events < COLD_ITEM_EVENTS).mean()),
        top_percent_items=top_percent_items,
        top_percent_items_share=float(by_popularity[:top_percent_items].sum() / interactions),
        top_item_id=str(top_item["item_id"]),
        top_item_events=int(top_item["events"]),
    )


def summary_cards(summary: Summary) -> list[Card]:
    event_mix = " · ".join(
        f"{name or NO_EVENT_TYPE} {_percent(n / summary.interactions)}"
        for name, n in summary.event_type_counts.items()
    )
    return [
        Card(
            "Interactions",
            f"{summary.interactions:,}",
            f"{summary.interactions / summary.users_with_events:,.1f} per user on average",
        ),
        Card(
            "Users",
            f"{summary.users_with_events:,}",
            f"with events · {summary.users_in_catalog:,} in the Users dataset",
        ),
        Card(
            "Items",
            f"{summary.items_in_catalog:,}",
            f"in catalog · {summary.items_with_events:,} with events · "
            f"{summary.items_only_in_events:,} seen only in events",
        ),
        Card("Event types", str(len(summary.event_types)), event_mix),
        Card(
            "Time span",
            _duration(summary.span_days),
            f"{_date(summary.first_timestamp)} – {_date(summary.last_timestamp)}",
        ),
        Card(
            "Sparsity",
            _sparsity(summary.sparsity),
            f"of the {summary.users_with_events:,} × {summary.items_with_events:,} "
            "user × item matrix is empty",
        ),
        Card(
            f"Users with < {ACTIVE_USER_EVENTS} events",
            _percent(summary.users_below_active_share),
            f"of {summary.users_known:,} users; too few events to personalise",
        ),
        Card(
            f"Cold items (< {COLD_ITEM_EVENTS} events)",
            _percent(summary.cold_items_share),
            f"of {summary.items_known:,} items",
        ),
        Card(
            "Top 1% of items",
            _percent(summary.top_percent_items_share),
            f"of interactions go to the {summary.top_percent_items:,} most popular items",
        ),
    ]


# --- data-quality warnings -------------------------------------------------------------------

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def quality_warnings(summary: Summary) -> list[DataWarning]:
    """What is wrong with the data for training, and what to do about it; errors first."""
    found = []
    if summary.interactions < MIN_INTERACTIONS:
        found.append(
            DataWarning(
                "error",
                "too-few-interactions",
                "Too few interactions to train a model",
                f"The project has {summary.interactions:,} interactions; recipes need at least "
                f"{MIN_INTERACTIONS:,} (Amazon Personalize's minimum) to learn more than "
                "popularity. Import more history or send events to /api/v1/events.",
            )
        )
    if summary.active_users < MIN_ACTIVE_USERS:
        found.append(
            DataWarning(
                "error",
                "too-few-active-users",
                f"Too few users with {ACTIVE_USER_EVENTS} or more interactions",
                f"{summary.active_users:,} users have {ACTIVE_USER_EVENTS} or more interactions; "
                f"personalised recipes and offline evaluation need at least {MIN_ACTIVE_USERS} "
                "(Amazon Personalize's minimum). Import a longer history of events per user.",
            )
        )
    if not summary.event_types:
        found.append(
            DataWarning(
                "warning",
                "no-event-types",
                "No event types",
                "No interaction has an EVENT_TYPE, so purchases cannot weigh more than views and "
                "best sellers cannot be told from most viewed. Map an event type column when "
                "you import, or send event_type with each event.",
            )
        )
    if summary.items_in_catalog == 0:
        found.append(
            DataWarning(
                "warning",
                "no-items-dataset",
                "No Items dataset",
                "Only the item ids found in interactions are known. Content-based recipes, "
                "cold-start for new items, filters and promotions on item fields and the "
                "category chart need item metadata: import an Items CSV (ITEM_ID plus fields "
                "such as CATEGORY and PRICE).",
            )
        )
    elif summary.interactions_on_unknown_items:
        share = summary.interactions_on_unknown_items / summary.interactions
        found.append(
            DataWarning(
                "warning" if share >= UNKNOWN_ITEMS_WARNING_SHARE else "info",
                "unknown-items",
                "Interactions on items missing from the Items dataset",
                f"{summary.interactions_on_unknown_items:,} interactions ({_percent(share)}) "
                f"reference {summary.items_only_in_events:,} item ids that are not in the "
                "Items dataset, so filters and content-based recipes know nothing about them. "
                "Check that the ids match (case, leading zeros) or import the missing items.",
            )
        )
    if summary.future_interactions:
        milliseconds = (
            " They look like milliseconds: timestamps must be epoch seconds."
            if summary.last_timestamp > MILLISECONDS_LIKELY_ABOVE
            else " Check that they are UTC epoch seconds, not local time."
        )
        found.append(
            DataWarning(
                "warning",
                "future-timestamps",
                "Timestamps in the future",
                f"{summary.future_interactions:,} interactions are dated after now (the latest "
                f"is {_date(summary.last_timestamp)}). Trending, recency weighting and "
                "time-based evaluation splits will be wrong." + milliseconds,
            )
        )
    top_share = summary.top_item_events / summary.interactions
    if top_share >= DOMINANT_ITEM_SHARE:
        found.append(
            DataWarning(
                "warning",
                "dominant-item",
                f"One item has {_percent(top_share)} of all interactions",
                f"Item {summary.top_item_id} has {summary.top_item_events:,} of "
                f"{summary.interactions:,} interactions, so popularity recipes will show it to "
                "everyone and it will dominate training. If it is a placeholder (a home page, "
                "an empty or test id), remove it; otherwise consider excluding it with a filter.",
            )
        )
    return sorted(found, key=lambda w: _SEVERITY_ORDER[w.severity])


# --- charts ----------------------------------------------------------------------------------

_FONT = {"family": 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', "size": 12}
_ACCENT = "#2757d6"
_MUTED = "#8a94a3"


def _layout(**overrides) -> dict:
    layout = {
        "height": 320,
        "margin": {"l": 60, "r": 16, "t": 16, "b": 48},
        "font": _FONT,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#fff",
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    }
    layout.update(overrides)
    return layout


def activity_chart(stats: InteractionStats) -> dict:
    """Interactions per day (per week or month over long spans) stacked by event type.

    Future-dated and pre-1970 interactions are left out: they would stretch the time axis
    over decades; the warnings report them instead.
    """
    today = stats.as_of // DAY
    daily = stats.daily[(stats.daily["day"] >= 0) & (stats.daily["day"] <= today)]
    table = daily.pivot_table(
        index="day", columns="event_type", values="interactions", aggfunc="sum", fill_value=0
    )
    if table.empty:
        return {"data": [], "layout": _layout()}
    table = table.reindex(range(table.index.min(), table.index.max() + 1), fill_value=0)
    table.index = pd.to_datetime(table.index, unit="D")
    span_days = len(table)
    if span_days <= DAILY_BUCKET_MAX_DAYS:
        bucket = "day"
    elif span_days <= WEEKLY_BUCKET_MAX_DAYS:
        bucket, table = "week", table.resample("W-MON", label="left", closed="left").sum()
    else:
        bucket, table = "month", table.resample("MS").sum()
    # Largest event type at the bottom of the stack, where its shape is easiest to read.
    order = table.sum().sort_values(ascending=False).index
    dates = table.index.strftime("%Y-%m-%d").to_list()
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "stackgroup": "events",
            "name": event_type or NO_EVENT_TYPE,
            "x": dates,
            "y": table[event_type].astype(int).to_list(),
            "line": {"width": 1},
            "hovertemplate": "%{y:,}<extra>%{fullData.name}</extra>",
        }
        for event_type in order
    ]
    layout = _layout(
        hovermode="x unified",
        xaxis={"type": "date", "gridcolor": "#eef0f4"},
        yaxis={"title": {"text": f"interactions per {bucket}"}, "gridcolor": "#eef0f4"},
    )
    return {"data": traces, "layout": layout}


def rank_frequency_chart(counts: np.ndarray, *, noun: str, threshold: int, label: str) -> dict:
    """Events per ``noun`` by popularity rank on log-log axes: the long tail at a glance.

    ``threshold`` draws a dashed reference line (e.g. the cold-item limit) named ``label``.
    """
    ordered = np.sort(np.asarray(counts, dtype=np.int64))[::-1]
    # Log-spaced ranks keep the curve's shape while sending a few hundred points at most.
    ranks = np.unique(np.geomspace(1, len(ordered), num=RANK_CURVE_POINTS).round().astype(int))
    curve = {
        "type": "scatter",
        "mode": "lines",
        "name": f"events per {noun}",
        "x": ranks.tolist(),
        "y": ordered[ranks - 1].tolist(),
        "line": {"color": _ACCENT, "width": 2},
        "hovertemplate": f"{noun} #%{{x:,}}: %{{y:,}} events<extra></extra>",
    }
    reference = {
        "type": "scatter",
        "mode": "lines",
        "name": label,
        "x": [1, int(max(len(ordered), 2))],
        "y": [threshold, threshold],
        "line": {"color": _MUTED, "dash": "dash", "width": 1},
        "hoverinfo": "skip",
    }
    layout = _layout(
        xaxis=_log_axis(len(ordered), f"{noun} rank (most active first)"),
        yaxis=_log_axis(max(int(ordered[0]), threshold), "events"),
    )
    return {"data": [curve, reference], "layout": layout}


def _log_axis(largest: int, title: str) -> dict:
    """A log axis labelled 1, 2, 5, 10, 20, ... (powers of ten only over many decades).

    Plotly's default log ticks label 2 and 5 inside each decade without their magnitude,
    which reads as noise.
    """
    steps = (1, 2, 5) if largest < 10**4 else (1,)
    ticks = [
        step * 10**power
        for power in range(len(str(max(largest, 1))))
        for step in steps
        if step * 10**power <= largest
    ]
    return {
        "type": "log",
        "title": {"text": title},
        "tickvals": ticks,
        "ticktext": [f"{tick:,}" for tick in ticks],
        "gridcolor": "#eef0f4",
    }


def _most_popular(items: pd.DataFrame) -> pd.DataFrame:
    """Items by events, ties by id, so the order never depends on how rows were read."""
    return items.sort_values(["events", "item_id"], ascending=[False, True])


def top_items_chart(stats: InteractionStats, *, n: int = TOP_ITEMS) -> dict:
    top = _most_popular(stats.items[stats.items["events"] > 0]).head(n)
    share = top["events"] / stats.interactions
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": top["events"].astype(int).to_list(),
        "y": top["item_id"].to_list(),
        "customdata": share.round(4).to_list(),
        "marker": {"color": _ACCENT},
        "hovertemplate": "%{y}: %{x:,} events (%{customdata:.1%})<extra></extra>",
    }
    layout = _layout(
        height=90 + 22 * len(top),
        margin={"l": 110, "r": 16, "t": 8, "b": 44},
        xaxis={"title": {"text": "interactions"}, "gridcolor": "#eef0f4"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        bargap=0.25,
    )
    return {"data": [trace], "layout": layout}


def category_counts(items: pd.DataFrame) -> pd.Series:
    """Interactions per category; an item in several categories counts for each of them."""
    touched = items.loc[items["events"] > 0, ["categories", "events"]]
    exploded = touched.explode("categories")
    names = exploded["categories"].fillna(NO_CATEGORY)
    return exploded["events"].groupby(names).sum().sort_values(ascending=False).astype(np.int64)


def category_chart(items: pd.DataFrame, *, n: int = TOP_CATEGORIES) -> dict | None:
    """A bar per category (the top ``n``, the rest as "Other"); None when no item has one."""
    counts = category_counts(items)
    if counts.index.difference([NO_CATEGORY]).empty:
        return None
    if len(counts) > n:
        rest = counts.iloc[n - 1 :]
        counts = pd.concat(
            [counts.iloc[: n - 1], pd.Series({f"Other ({len(rest)} categories)": rest.sum()})]
        )
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": counts.astype(int).to_list(),
        "y": [str(name) for name in counts.index],
        "marker": {"color": [_MUTED if name == NO_CATEGORY else _ACCENT for name in counts.index]},
        "hovertemplate": "%{y}: %{x:,} interactions<extra></extra>",
    }
    layout = _layout(
        height=90 + 22 * len(counts),
        margin={"l": 110, "r": 16, "t": 8, "b": 44},
        xaxis={"title": {"text": "interactions"}, "gridcolor": "#eef0f4"},
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        bargap=0.25,
    )
    return {"data": [trace], "layout": layout}


def build_insights(stats: InteractionStats) -> Insights:
    if stats.interactions == 0:
        return Insights()
    summary = summarize(stats)
    items_with_events = stats.items.loc[stats.items["events"] > 0, "events"].to_numpy()
    charts = [
        Chart(
            "activity",
            "Interactions over time",
            "Stacked by event type, in UTC days. A sudden drop or gap usually means a broken "
            "event feed or a partial import.",
            activity_chart(stats),
            wide=True,
        ),
        Chart(
            "user-tail",
            "Events per user",
            f"Every user with events, most active first (log-log). "
            f"Users below {ACTIVE_USER_EVENTS} events get popular or trending items.",
            rank_frequency_chart(
                stats.user_events,
                noun="user",
                threshold=ACTIVE_USER_EVENTS,
                label=f"{ACTIVE_USER_EVENTS} events",
            ),
        ),
        Chart(
            "item-tail",
            "Events per item",
            "Every item with events, most popular first (log-log). Below the dashed line items "
            f"are cold: fewer than {COLD_ITEM_EVENTS} events.",
            rank_frequency_chart(
                items_with_events,
                noun="item",
                threshold=COLD_ITEM_EVENTS,
                label=f"{COLD_ITEM_EVENTS} events (cold below)",
            ),
        ),
        Chart(
            "top-items",
            f"Top {TOP_ITEMS} items",
            "Items with the most interactions of any event type.",
            top_items_chart(stats),
        ),
    ]
    categories = category_chart(stats.items)
    if categories is not None:
        charts.append(
            Chart(
                "categories",
                "Category mix",
                "Interactions per item category; an item in several categories counts in each.",
                categories,
            )
        )
    return Insights(
        summary=summary,
        cards=summary_cards(summary),
        warnings=quality_warnings(summary),
        charts=charts,
    )


# --- formatting ------------------------------------------------------------------------------


def _percent(share: float) -> str:
    if 0 < share < 0.001:
        return "< 0.1%"
    return f"{share:.1%}"


def _sparsity(sparsity: float) -> str:
    # Real data is 99.9x% sparse; the digits after the point are what tells data sets apart.
    if sparsity < 1 and f"{sparsity:.2%}" == "100.00%":
        return "> 99.99%"
    return f"{sparsity:.2%}"


def _date(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%-d %b %Y")
    except (ValueError, OverflowError, OSError):  # far outside the calendar: show it raw
        return f"timestamp {timestamp:,}"


def _duration(days: float) -> str:
    if days < 1:
        return f"{days * 24:.1f} hours"
    if days < 365 * 2:
        return f"{days:,.0f} days"
    return f"{days / 365.25:,.1f} years"
