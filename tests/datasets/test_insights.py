"""The Insights page: statistics and warnings on frames with known answers, charts that Plotly
accepts, the SQL selector against the pandas path on the real database, and the page itself."""

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from datasets import insights, selectors
from datasets.insights import DAY, stats_from_frames
from tests.datasets.insights_data import load_project_data, synthetic_shop

NOW = 1_780_000_000  # 2026-05-28, a fixed "now" for frames built here


@pytest.fixture(autouse=True)
def empty_cache():
    """Insights are cached per project; ids repeat across rolled-back tests."""
    cache.clear()
    yield
    cache.clear()


def interactions(pairs, *, event_type="view", start=NOW - 30 * DAY, step=60):
    """Interactions from (user_id, item_id) pairs, ``step`` seconds apart."""
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    frame["timestamp"] = start + step * np.arange(len(pairs))
    frame["event_type"] = event_type
    return frame


def round_robin(n, *, n_users=100, n_items=100):
    """``n`` interactions spread evenly over users and items."""
    return interactions([(f"u{k % n_users}", f"i{k % n_items}") for k in range(n)])


def catalog(n_items=100, **columns):
    return pd.DataFrame({"item_id": [f"i{k}" for k in range(n_items)], **columns})


def codes(warnings):
    return [warning.code for warning in warnings]


def warnings_for(frame, **kwargs):
    kwargs.setdefault("catalog_items", catalog())
    kwargs.setdefault("now", NOW)
    return insights.quality_warnings(insights.summarize(stats_from_frames(frame, **kwargs)))


# --- numbers -----------------------------------------------------------------------------------


@pytest.fixture
def long_tail():
    """100 interactions: i0 50, i1 20, i2 10, x1 10 (not in the catalog), i3 5, i4 4, i5 1;
    i6-i9 are in the catalog but untouched. 40 users with 2-3 events, 2 catalog-only users."""
    per_item = {"i0": 50, "i1": 20, "i2": 10, "x1": 10, "i3": 5, "i4": 4, "i5": 1}
    items = [item for item, n in per_item.items() for _ in range(n)]
    frame = interactions([(f"u{k % 40}", item) for k, item in enumerate(items)])
    users = [f"u{k}" for k in range(40)] + ["lurker-1", "lurker-2"]
    return stats_from_frames(frame, catalog_items=catalog(10), catalog_users=users, now=NOW)


def test_summary_counts_users_and_items_with_and_without_events(long_tail):
    summary = insights.summarize(long_tail)

    assert summary.interactions == 100
    assert (summary.users_with_events, summary.users_known, summary.active_users) == (40, 42, 40)
    assert (summary.items_known, summary.items_in_catalog, summary.items_with_events) == (11, 10, 7)
    assert summary.items_only_in_events == 1
    assert summary.interactions_on_unknown_items == 10
    assert summary.event_types == ["view"]


def test_long_tail_shares(long_tail):
    summary = insights.summarize(long_tail)

    # Cold: i4 (4), i5 (1) and the four untouched catalog items, out of 11 known items.
    assert summary.cold_items_share == pytest.approx(6 / 11)
    # The top 1% of 11 items is one item: i0 with half of all interactions.
    assert summary.top_percent_items == 1
    assert summary.top_percent_items_share == pytest.approx(0.5)
    assert (summary.top_item_id, summary.top_item_events) == ("i0", 50)
    # Only the two catalog users without events are below 2 events.
    assert summary.users_below_active_share == pytest.approx(2 / 42)


def test_sparsity_is_the_empty_share_of_the_user_item_matrix():
    # 10 users with 2 distinct items each, 20 items: 20 of 200 cells are filled.
    frame = interactions([(f"u{k // 2}", f"i{k}") for k in range(20)])

    summary = insights.summarize(stats_from_frames(frame, now=NOW))

    assert summary.sparsity == pytest.approx(0.9)


def test_sparsity_never_goes_negative_with_repeated_events():
    frame = interactions([("u1", "i1")] * 5)

    assert insights.summarize(stats_from_frames(frame, now=NOW)).sparsity == 0.0


def test_time_span_and_future_interactions():
    frame = round_robin(10)
    frame.loc[9, "timestamp"] = NOW + 2 * DAY

    summary = insights.summarize(stats_from_frames(frame, now=NOW))

    assert summary.future_interactions == 1
    assert summary.span_days == pytest.approx((NOW + 2 * DAY - (NOW - 30 * DAY)) / DAY)


def test_summary_cards_are_formatted_for_people(long_tail):
    cards = {card.label: card for card in insights.summary_cards(insights.summarize(long_tail))}

    assert cards["Interactions"].value == "100"
    assert cards["Cold items (< 5 events)"].value == "54.5%"
    assert cards["Top 1% of items"].value == "50.0%"
    assert cards["Sparsity"].value == "64.29%"
    assert "1 seen only in events" in cards["Items"].detail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["Shoes", "Running"], ["Shoes", "Running"]),
        ("Shoes|Running", ["Shoes", "Running"]),
        ("Shoes", ["Shoes"]),
        (" Shoes | ", ["Shoes"]),
        (None, []),
        (float("nan"), []),
        ([], []),
        (7, ["7"]),
    ],
)
def test_parse_categories(value, expected):
    assert insights.parse_categories(value) == expected


def test_multi_valued_categories_count_for_each_category():
    frame = interactions([("u1", "a")] * 10 + [("u1", "b")] * 5 + [("u1", "c")] * 2)
    items = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "CATEGORY": [["Shoes", "Running"], "Shoes", None, "Toys"]}
    )

    stats = stats_from_frames(frame, catalog_items=items, now=NOW)
    counts = insights.category_counts(stats.items)

    # "d" (Toys) has no events, so Toys does not appear.
    assert counts.to_dict() == {"Shoes": 15, "Running": 10, insights.NO_CATEGORY: 2}


# --- warnings ----------------------------------------------------------------------------------


def test_clean_data_has_no_warnings():
    assert warnings_for(round_robin(1000)) == []


@pytest.mark.parametrize(("n", "warned"), [(999, True), (1000, False)])
def test_fewer_than_1000_interactions_is_an_error(n, warned):
    found = warnings_for(round_robin(n))

    assert ("too-few-interactions" in codes(found)) is warned
    if warned:
        assert found[0].severity == "error"
        assert "1,000" in found[0].message and "/api/v1/events" in found[0].message


@pytest.mark.parametrize(("active", "warned"), [(24, True), (25, False)])
def test_fewer_than_25_users_with_two_interactions_is_an_error(active, warned):
    # ``active`` users with 2 interactions each, everyone else with exactly one.
    pairs = [(f"active{k}", f"i{k % 100}") for k in range(active) for _ in range(2)]
    pairs += [(f"once{k}", f"i{k % 100}") for k in range(1000 - len(pairs))]

    found = warnings_for(interactions(pairs))

    assert codes(found) == (["too-few-active-users"] if warned else [])


def test_missing_event_types_are_flagged():
    frame = round_robin(1000)
    frame["event_type"] = ""

    assert codes(warnings_for(frame)) == ["no-event-types"]


def test_no_items_dataset_is_flagged_instead_of_unknown_items():
    found = warnings_for(round_robin(1000), catalog_items=None)

    assert codes(found) == ["no-items-dataset"]
    assert "Items CSV" in found[0].message


@pytest.mark.parametrize(("on_unknown", "severity"), [(49, "info"), (50, "warning")])
def test_interactions_on_items_missing_from_the_catalog(on_unknown, severity):
    frame = round_robin(1000)
    frame.loc[: on_unknown - 1, "item_id"] = "ghost"

    found = warnings_for(frame)

    assert codes(found) == ["unknown-items"]
    assert found[0].severity == severity
    assert f"{on_unknown} interactions" in found[0].message


def test_future_timestamps_beyond_the_clock_skew_tolerance():
    frame = round_robin(1000)
    last = int(frame["timestamp"].max())

    assert warnings_for(frame, now=last - insights.FUTURE_TOLERANCE_SECONDS) == []
    found = warnings_for(frame, now=last - insights.FUTURE_TOLERANCE_SECONDS - 1)
    assert codes(found) == ["future-timestamps"]
    assert "UTC epoch seconds" in found[0].message


def test_millisecond_timestamps_are_recognised():
    frame = round_robin(1000)
    frame["timestamp"] *= 1000

    found = warnings_for(frame)

    assert codes(found) == ["future-timestamps"]
    assert "milliseconds" in found[0].message


@pytest.mark.parametrize(("hot", "warned"), [(199, False), (200, True)])
def test_one_item_with_a_fifth_of_all_interactions(hot, warned):
    frame = round_robin(1000)
    frame["item_id"] = ["i0"] * hot + [f"i{1 + k % 99}" for k in range(1000 - hot)]

    found = warnings_for(frame)

    assert codes(found) == (["dominant-item"] if warned else [])
    if warned:
        assert "i0" in found[0].message


def test_errors_come_before_warnings_and_info():
    frame = interactions([("u1", "i1"), ("u1", "i2")], event_type="")

    severities = [warning.severity for warning in warnings_for(frame)]

    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert severities[:2] == ["error", "error"]


# --- charts ------------------------------------------------------------------------------------


def plotly_accepts(figure):
    """Plotly validates every attribute name and value; the page gets plain JSON."""
    go.Figure(figure)
    json.dumps(figure)
    return True


def test_activity_is_daily_stacked_by_event_type_with_gaps_filled():
    frame = pd.concat(
        [
            interactions([("u1", "i1")] * 3, event_type="view", start=NOW - 10 * DAY),
            interactions([("u1", "i1")], event_type="purchase", start=NOW - DAY),
        ]
    )

    figure = insights.activity_chart(stats_from_frames(frame, now=NOW))

    view, purchase = figure["data"]
    assert (view["name"], purchase["name"]) == ("view", "purchase")  # biggest at the bottom
    assert len(view["x"]) == 10 and view["y"] == [3] + [0] * 9
    assert purchase["y"][-1] == 1
    assert {trace["stackgroup"] for trace in figure["data"]} == {"events"}
    assert "per day" in figure["layout"]["yaxis"]["title"]["text"]
    assert plotly_accepts(figure)


@pytest.mark.parametrize(("days", "bucket"), [(700, "day"), (1500, "week"), (5000, "month")])
def test_long_spans_are_bucketed_coarser(days, bucket):
    frame = interactions([("u1", "i1"), ("u1", "i2")], start=NOW - days * DAY, step=days * DAY - 1)

    figure = insights.activity_chart(stats_from_frames(frame, now=NOW))

    assert f"per {bucket}" in figure["layout"]["yaxis"]["title"]["text"]


def test_activity_leaves_out_future_dated_interactions():
    frame = interactions([("u1", "i1"), ("u1", "i2")], start=NOW - DAY, step=100 * DAY)

    figure = insights.activity_chart(stats_from_frames(frame, now=NOW))

    assert len(figure["data"][0]["x"]) == 1


def test_rank_frequency_curve_is_log_log_and_light():
    counts = np.arange(1, 100_001)

    figure = insights.rank_frequency_chart(counts, noun="item", threshold=5, label="cold")

    curve, reference = figure["data"]
    assert len(curve["x"]) <= insights.RANK_CURVE_POINTS
    assert (curve["x"][0], curve["y"][0]) == (1, 100_000)
    assert (curve["x"][-1], curve["y"][-1]) == (100_000, 1)
    assert all(a >= b for a, b in zip(curve["y"], curve["y"][1:], strict=False))
    assert reference["y"] == [5, 5]
    assert figure["layout"]["xaxis"]["type"] == figure["layout"]["yaxis"]["type"] == "log"
    assert plotly_accepts(figure)


def test_top_items_are_the_20_most_popular_by_id():
    frame = interactions([("u1", f"i{k}") for k in range(30) for _ in range(k + 1)])

    figure = insights.top_items_chart(stats_from_frames(frame, now=NOW))

    bars = figure["data"][0]
    assert bars["y"] == [f"i{k}" for k in range(29, 9, -1)]
    assert bars["x"][0] == 30
    assert figure["layout"]["yaxis"]["type"] == "category"  # "123" stays an id, not a number
    assert plotly_accepts(figure)


def test_many_categories_are_capped_with_an_other_bar():
    frame = interactions([("u1", f"i{k}") for k in range(30)])
    items = catalog(30, CATEGORY=[f"cat{k}" for k in range(30)])

    figure = insights.category_chart(stats_from_frames(frame, catalog_items=items, now=NOW).items)

    names = figure["data"][0]["y"]
    assert len(names) == insights.TOP_CATEGORIES
    assert names[-1] == "Other (6 categories)"
    assert sum(figure["data"][0]["x"]) == 30
    assert plotly_accepts(figure)


def test_no_category_chart_without_categories():
    stats = stats_from_frames(round_robin(10), catalog_items=catalog(), now=NOW)

    assert insights.category_chart(stats.items) is None


def test_build_insights_for_an_empty_and_a_busy_project():
    assert not insights.build_insights(stats_from_frames(round_robin(0), now=NOW)).has_interactions

    frame, items, users = synthetic_shop(now=NOW)
    stats = stats_from_frames(frame, catalog_items=items, catalog_users=users, now=NOW)
    page = insights.build_insights(stats)

    assert page.has_interactions and page.warnings == []
    keys = [chart.key for chart in page.charts]
    assert keys == ["activity", "user-tail", "item-tail", "top-items", "categories"]
    assert all(plotly_accepts(chart.figure) for chart in page.charts)


# --- selectors on the real database ------------------------------------------------------------


def test_interactions_frame_round_trips_what_was_stored(project):
    frame, items, users = synthetic_shop(n_interactions=500, now=NOW)
    frame["event_value"] = np.where(frame["event_type"] == "purchase", 19.99, np.nan)
    load_project_data(project, frame, items=items, users=users)

    loaded = selectors.interactions_frame(project)

    columns = ["user_id", "item_id", "timestamp", "event_type", "event_value"]
    order = ["timestamp", "user_id", "item_id"]
    got = loaded.astype({"user_id": str, "item_id": str, "event_type": str})[columns]
    pd.testing.assert_frame_equal(
        got.sort_values(order).reset_index(drop=True),
        frame[columns].sort_values(order).reset_index(drop=True),
        check_dtype=False,
    )


def test_interactions_frame_of_an_empty_project(project):
    loaded = selectors.interactions_frame(project)

    assert loaded.empty
    assert list(loaded.columns) == ["user_id", "item_id", "timestamp", "event_type", "event_value"]


def test_sql_aggregates_match_the_pandas_path(project):
    frame, items, users = synthetic_shop(now=NOW)
    frame.loc[:2, "timestamp"] = NOW + DAY  # three future-dated events
    frame.loc[3:9, "item_id"] = "not-in-catalog"
    frame.loc[10:12, "event_type"] = ""
    load_project_data(project, frame, items=items, users=users[:250])

    from_sql = selectors.interaction_stats(project, now=NOW)
    from_frames = stats_from_frames(
        selectors.interactions_frame(project),
        catalog_items=items,
        catalog_users=users[:250],
        now=NOW,
    )

    assert insights.summarize(from_sql) == insights.summarize(from_frames)
    assert from_sql.future_interactions == 3
    for stats in (from_sql, from_frames):
        assert insights.summarize(stats).items_only_in_events == 1
    by_item = from_sql.items.set_index("item_id").sort_index()
    expected = from_frames.items.set_index("item_id").sort_index()
    assert by_item["categories"].to_dict() == expected["categories"].to_dict()
    assert by_item["events"].to_dict() == expected["events"].to_dict()


# --- the page ----------------------------------------------------------------------------------


def insights_url(project):
    return reverse("insights", args=[project.slug])


def test_member_sees_numbers_and_charts(logged_in_client, project):
    frame, items, users = synthetic_shop(now=NOW)
    load_project_data(project, frame, items=items, users=users)

    response = logged_in_client.get(insights_url(project))

    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{insights_url(project)}"' in page and 'aria-current="page">Insights' in page
    assert "4,000" in page  # interactions card
    for key in ("activity", "user-tail", "item-tail", "top-items", "categories"):
        assert f'id="chart-{key}"' in page
        assert f'id="chart-{key}-data" type="application/json"' in page
    assert "/static/vendor/plotly.min.js" in page
    assert "cdn" not in page.lower()
    assert "No problems found" in page


def test_non_member_gets_404(client, other_user, project):
    client.force_login(other_user)

    assert client.get(insights_url(project)).status_code == 404


def test_anonymous_visitor_is_sent_to_log_in(client, project):
    response = client.get(insights_url(project))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_empty_project_shows_an_empty_state(logged_in_client, project):
    page = logged_in_client.get(insights_url(project)).content.decode()

    assert (
        "No interactions yet — import a CSV or post events to <code>/api/v1/events</code>" in page
    )
    assert 'id="chart-' not in page
    assert "plotly.min.js" in page  # loaded, but nothing is drawn


def test_warnings_appear_below_the_thresholds(logged_in_client, project):
    load_project_data(project, round_robin(30, n_users=10, n_items=5))

    page = logged_in_client.get(insights_url(project)).content.decode()

    assert "Too few interactions to train a model" in page
    assert "Too few users with 2 or more interactions" in page  # 10 users, 3 events each
    assert "No Items dataset" in page
    assert 'class="data-warning severity-error"' in page


def test_insights_are_cached_until_the_data_changes(logged_in_client, project):
    load_project_data(project, round_robin(1200))
    url = insights_url(project)
    assert "1,200" in logged_in_client.get(url).content.decode()

    with CaptureQueriesContext(connection) as queries:
        logged_in_client.get(url)
    assert not [q for q in queries.captured_queries if "GROUP BY" in q["sql"]]

    load_project_data(project, round_robin(30))
    assert "1,230" in logged_in_client.get(url).content.decode()
