"""Tests for the synthetic demo shop: shape, determinism and that every planted signal is
really recoverable from the written files. Django-free; no database needed."""

import hashlib
import json
import time
from pathlib import Path

import community as community_louvain
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from datasets.ingest.demo import (
    CATEGORIES,
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    RELATION_COLUMNS,
    USER_COLUMNS,
    build_demo_shop,
    generate_demo_shop,
)

SMALL = {"n_users": 600, "n_items": 300, "n_interactions": 40_000, "seed": 7}
FILES = ("users.csv", "items.csv", "interactions.csv", "relations.csv", "ground_truth.json")
DAY = 86_400


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = generate_demo_shop(out, **SMALL)
    return out, summary


@pytest.fixture(scope="module")
def shop(shop_dir):
    out, _ = shop_dir

    def read(name):
        return pd.read_csv(
            out / name,
            keep_default_na=False,
            na_values={"EVENT_VALUE": [""]},
            dtype={"IN_STOCK": str},
        )

    interactions = read("interactions.csv")
    truth = json.loads((out / "ground_truth.json").read_text())
    items = read("items.csv")
    items["PRIMARY"] = items["CATEGORY"].str.split("|").str[0]
    interactions["SEGMENT"] = interactions["USER_ID"].map(truth["user_segment"])
    interactions["PRIMARY"] = interactions["ITEM_ID"].map(items.set_index("ITEM_ID")["PRIMARY"])
    return {
        "users": read("users.csv"),
        "items": items,
        "interactions": interactions,
        "relations": read("relations.csv"),
        "truth": truth,
    }


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in FILES}


# --- shape and determinism -------------------------------------------------------------------


def test_counts_match_the_requested_sizes(shop, shop_dir):
    _, summary = shop_dir
    assert len(shop["users"]) == SMALL["n_users"]
    assert len(shop["items"]) == SMALL["n_items"]
    assert len(shop["interactions"]) == SMALL["n_interactions"]
    assert summary["counts"] == {
        "users": SMALL["n_users"],
        "items": SMALL["n_items"],
        "interactions": SMALL["n_interactions"],
        "relations": len(shop["relations"]),
    }
    assert sorted(summary["files"]) == [
        "ground_truth",
        "interactions",
        "items",
        "relations",
        "users",
    ]


def test_columns_are_exactly_as_documented(shop_dir):
    out, _ = shop_dir
    expected = {
        "users.csv": USER_COLUMNS,
        "items.csv": ITEM_COLUMNS,
        "interactions.csv": INTERACTION_COLUMNS,
        "relations.csv": RELATION_COLUMNS,
    }
    for name, columns in expected.items():
        with open(out / name) as handle:
            assert handle.readline() == ",".join(columns) + "\n"


def test_ids_are_formatted_and_unique(shop):
    assert shop["users"]["USER_ID"].iloc[0] == "u00001"
    assert shop["items"]["ITEM_ID"].iloc[0] == "i00001"
    assert shop["users"]["USER_ID"].is_unique
    assert shop["items"]["ITEM_ID"].is_unique


def test_same_seed_gives_byte_identical_files(shop_dir, tmp_path):
    out, _ = shop_dir
    generate_demo_shop(tmp_path, **SMALL)
    assert digests(tmp_path) == digests(out)


def test_different_seed_gives_different_files(shop_dir, tmp_path):
    out, _ = shop_dir
    generate_demo_shop(tmp_path, **{**SMALL, "seed": SMALL["seed"] + 1})
    theirs, ours = digests(tmp_path), digests(out)
    assert all(theirs[name] != ours[name] for name in FILES)


def test_build_returns_the_frames_that_are_written(shop):
    built = build_demo_shop(**SMALL)
    assert len(built.interactions) == SMALL["n_interactions"]
    assert built.interactions["ITEM_ID"].tolist() == shop["interactions"]["ITEM_ID"].tolist()
    assert built.ground_truth == shop["truth"]


@pytest.mark.parametrize(
    "bad",
    [{"n_users": 0}, {"n_items": -5}, {"n_interactions": 0}, {"seed": -1}, {"n_users": 2.5}],
)
def test_invalid_sizes_are_rejected(bad):
    with pytest.raises(ValueError):
        build_demo_shop(**{**SMALL, **bad})


def test_ground_truth_has_every_key(shop):
    truth = shop["truth"]
    assert sorted(truth) == [
        "bundles",
        "communities",
        "params",
        "reference_now",
        "segments",
        "trend_start",
        "trending_items",
        "user_segment",
    ]
    assert len(truth["segments"]) == 6
    assert len(truth["trending_items"]) == 8
    assert len(truth["bundles"]) == 10
    assert truth["params"]["seed"] == SMALL["seed"]
    assert truth["trend_start"] == truth["reference_now"] - 3 * DAY
    favoured = [c for segment in truth["segments"] for c in segment["categories"]]
    assert len(favoured) == len(set(favoured)) == 12
    assert set(truth["user_segment"]) == set(shop["users"]["USER_ID"])


# --- users and items -----------------------------------------------------------------------


def test_demographics_lean_towards_the_segment_without_deciding_it(shop):
    users = shop["users"].assign(
        SEGMENT=shop["users"]["USER_ID"].map(shop["truth"]["user_segment"])
    )
    for column in ("AGE_GROUP", "COUNTRY", "MEMBERSHIP"):
        mix = pd.crosstab(users["SEGMENT"], users[column], normalize="index")
        overall = users[column].value_counts(normalize=True)
        # Some segment is clearly skewed on this attribute...
        assert (mix - overall).abs().max().max() > 0.15
        # ...but no segment is made of one value only.
        assert mix.max().max() < 0.9


def test_items_categories_prices_stock_and_age(shop):
    items = shop["items"]
    parts = items["CATEGORY"].str.split("|")
    assert parts.explode().isin(CATEGORIES).all()
    assert set(items["PRIMARY"]) == set(CATEGORIES)
    assert 0.08 < (parts.str.len() > 1).mean() < 0.22
    assert (items["PRICE"] > 0).all()
    assert (items["PRICE"].round(2) == items["PRICE"]).all()
    by_category = items.groupby("PRIMARY")["PRICE"].median()
    assert by_category["Electronics"] > 4 * by_category["Books"]
    assert set(items["IN_STOCK"]) == {"true", "false"}
    assert 0.85 < (items["IN_STOCK"] == "true").mean() < 0.95
    window_start = shop["truth"]["reference_now"] - 90 * DAY
    is_new = items["CREATION_TIMESTAMP"] >= window_start
    assert 0.05 < is_new.mean() < 0.2


def test_item_text_recovers_the_category(shop):
    items = shop["items"]
    text = items["TITLE"] + " " + items["DESCRIPTION"]
    vectors = TfidfVectorizer().fit_transform(text)
    neighbours = NearestNeighbors(n_neighbors=2, metric="cosine").fit(vectors)
    _, index = neighbours.kneighbors(vectors)
    primary = items["PRIMARY"].to_numpy()
    assert (primary[index[:, 1]] == primary).mean() > 0.9


def test_items_are_not_seen_before_they_exist(shop):
    created = shop["interactions"]["ITEM_ID"].map(
        shop["items"].set_index("ITEM_ID")["CREATION_TIMESTAMP"]
    )
    assert (created <= shop["interactions"]["TIMESTAMP"]).all()


# --- interactions ------------------------------------------------------------------------------


def test_all_interaction_ids_exist(shop):
    events = shop["interactions"]
    assert events["USER_ID"].isin(shop["users"]["USER_ID"]).all()
    assert events["ITEM_ID"].isin(shop["items"]["ITEM_ID"]).all()
    shown = events["IMPRESSION"].str.split("|").explode()
    assert shown[shown != ""].isin(shop["items"]["ITEM_ID"]).all()


def test_timestamps_are_sorted_and_inside_the_window(shop):
    stamps = shop["interactions"]["TIMESTAMP"]
    now = shop["truth"]["reference_now"]
    assert stamps.is_monotonic_increasing
    assert stamps.min() >= now - 90 * DAY
    assert stamps.max() < now
    assert stamps.max() - stamps.min() > 85 * DAY


def test_activity_follows_daily_and_weekly_rhythm(shop):
    stamps = pd.to_datetime(shop["interactions"]["TIMESTAMP"], unit="s")
    per_hour = stamps.dt.hour.value_counts().sort_index()
    assert per_hour.loc[18:22].mean() > 3 * per_hour.loc[1:5].mean()
    per_day = stamps.dt.floor("D").value_counts()
    weekend = per_day[per_day.index.dayofweek >= 5].mean()
    weekday = per_day[per_day.index.dayofweek < 5].mean()
    assert weekend > 1.15 * weekday


def test_funnel_shares(shop):
    share = shop["interactions"]["EVENT_TYPE"].value_counts(normalize=True)
    assert set(share.index) == {"view", "cart", "purchase"}
    assert share["view"] == pytest.approx(0.80, abs=0.02)
    assert share["cart"] == pytest.approx(0.14, abs=0.02)
    assert share["purchase"] == pytest.approx(0.06, abs=0.01)


def test_every_cart_and_purchase_follows_a_view_of_the_same_item(shop):
    events = shop["interactions"].reset_index()
    first = events.pivot_table(
        index=["USER_ID", "ITEM_ID"], columns="EVENT_TYPE", values="index", aggfunc="min"
    )
    later = first[["cart", "purchase"]].min(axis=1)
    assert not first.loc[later.notna(), "view"].isna().any()
    assert (first.loc[later.notna(), "view"] < later[later.notna()]).all()


def test_event_value_is_the_price_of_purchases_only(shop):
    events = shop["interactions"]
    price = events["ITEM_ID"].map(shop["items"].set_index("ITEM_ID")["PRICE"])
    purchases = events["EVENT_TYPE"] == "purchase"
    assert events.loc[~purchases, "EVENT_VALUE"].isna().all()
    assert np.allclose(events.loc[purchases, "EVENT_VALUE"], price[purchases])


def test_sessions_belong_to_one_user_and_hold_several_events(shop):
    events = shop["interactions"]
    assert (events.groupby("SESSION_ID")["USER_ID"].nunique() == 1).all()
    per_session = events.groupby("SESSION_ID").size()
    assert 2 < per_session.mean() < 8
    span = events.groupby("SESSION_ID")["TIMESTAMP"].agg(lambda s: s.max() - s.min())
    assert span.quantile(0.99) < 3 * 3600


def test_impressions_on_about_a_third_of_views(shop):
    events = shop["interactions"]
    views = events[events["EVENT_TYPE"] == "view"]
    assert (events.loc[events["EVENT_TYPE"] != "view", "IMPRESSION"] == "").all()
    with_list = views[views["IMPRESSION"] != ""]
    assert len(with_list) / len(views) == pytest.approx(0.30, abs=0.03)
    lists = with_list["IMPRESSION"].str.split("|")
    assert lists.str.len().between(5, 10).all()
    assert all(item in shown for item, shown in zip(with_list["ITEM_ID"], lists, strict=True))
    assert (lists.map(lambda shown: len(set(shown))) == lists.str.len()).all()


def test_user_activity_is_long_tailed_with_a_floor(shop):
    per_user = shop["interactions"]["USER_ID"].value_counts()
    assert len(per_user) == SMALL["n_users"]
    assert per_user.min() >= 3
    assert per_user.max() > 8 * per_user.median()


def test_item_popularity_is_long_tailed(shop):
    per_item = shop["interactions"]["ITEM_ID"].value_counts()
    per_item = per_item.reindex(shop["items"]["ITEM_ID"], fill_value=0).sort_values()
    top_decile = per_item.iloc[-len(per_item) // 10 :].sum()
    assert top_decile / per_item.sum() > 0.4
    # Many items are rarely touched: the less popular half gets a small slice.
    assert per_item.iloc[: len(per_item) // 2].sum() / per_item.sum() < 0.2
    assert per_item.median() < 0.6 * per_item.mean()


# --- planted signals ---------------------------------------------------------------------------


def test_segments_favour_their_categories(shop):
    events = shop["interactions"]
    for segment in shop["truth"]["segments"]:
        top = segment["categories"][0]
        ours = events["SEGMENT"] == segment["name"]
        own_share = (events.loc[ours, "PRIMARY"] == top).mean()
        other_share = (events.loc[~ours, "PRIMARY"] == top).mean()
        assert own_share > 2 * other_share
        favoured_share = events.loc[ours, "PRIMARY"].isin(segment["categories"]).mean()
        assert favoured_share > 0.6


def growth_by_item(shop) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(smoothed growth, daily rate in the trend window, daily rate before) per old item."""
    truth, events, items = shop["truth"], shop["interactions"], shop["items"]
    window_start = truth["reference_now"] - 90 * DAY
    old_items = items.loc[items["CREATION_TIMESTAMP"] < window_start, "ITEM_ID"]
    recent = events["TIMESTAMP"] >= truth["trend_start"]
    after = events[recent]["ITEM_ID"].value_counts().reindex(old_items, fill_value=0) / 3
    before = events[~recent]["ITEM_ID"].value_counts().reindex(old_items, fill_value=0) / 87
    return (after + 0.5) / (before + 0.5), after, before


def test_trending_items_jump_in_the_last_days(shop):
    trending = shop["truth"]["trending_items"]
    growth, after, before = growth_by_item(shop)
    raw = after[trending] / before[trending].clip(lower=1 / 87)
    assert (raw >= 5).all()
    top = growth.sort_values(ascending=False).index[: len(trending)]
    assert set(top) == set(trending)


def test_bundles_are_bought_together_in_a_session(shop):
    purchases = shop["interactions"]
    purchases = purchases[purchases["EVENT_TYPE"] == "purchase"]
    baskets = purchases.groupby("SESSION_ID")["ITEM_ID"].agg(set)
    n_sessions = shop["interactions"]["SESSION_ID"].nunique()
    for first, second in shop["truth"]["bundles"]:
        with_first = baskets.map(lambda basket, item=first: item in basket)
        with_second = baskets.map(lambda basket, item=second: item in basket)
        together = (with_first & with_second).sum()
        assert with_first.sum() >= 5
        assert together / with_first.sum() > 0.4
        lift = together * n_sessions / (with_first.sum() * with_second.sum())
        assert lift > 20


def test_bundle_second_item_is_carted_and_viewed_in_that_session(shop):
    events = shop["interactions"]
    first, second = shop["truth"]["bundles"][0]
    sessions = events.loc[
        (events["ITEM_ID"] == first) & (events["EVENT_TYPE"] == "purchase"), "SESSION_ID"
    ]
    follow = events[events["SESSION_ID"].isin(sessions) & (events["ITEM_ID"] == second)]
    assert {"view", "cart", "purchase"} <= set(follow["EVENT_TYPE"])


# --- relations ---------------------------------------------------------------------------------


def test_relations_are_clean_and_long_tailed(shop):
    edges = shop["relations"]
    user_ids = set(shop["users"]["USER_ID"])
    assert edges["FOLLOWER_ID"].isin(user_ids).all()
    assert edges["FOLLOWEE_ID"].isin(user_ids).all()
    assert (edges["FOLLOWER_ID"] != edges["FOLLOWEE_ID"]).all()
    assert not edges.duplicated(["FOLLOWER_ID", "FOLLOWEE_ID"]).any()
    assert edges["TIMESTAMP"].max() < shop["truth"]["reference_now"]
    connected = set(edges["FOLLOWER_ID"]) | set(edges["FOLLOWEE_ID"])
    assert 1 - len(connected) / len(user_ids) == pytest.approx(0.10, abs=0.03)
    in_degree = edges["FOLLOWEE_ID"].value_counts()
    assert in_degree.max() > 5 * in_degree.mean()


def test_relations_stay_mostly_within_a_segment(shop):
    segment_of = shop["truth"]["user_segment"]
    edges = shop["relations"]
    within = edges["FOLLOWER_ID"].map(segment_of) == edges["FOLLOWEE_ID"].map(segment_of)
    assert within.mean() > 0.75


def test_louvain_recovers_the_communities(shop):
    edges = shop["relations"]
    graph = nx.from_pandas_edgelist(edges, "FOLLOWER_ID", "FOLLOWEE_ID", create_using=nx.DiGraph)
    partition = community_louvain.best_partition(graph.to_undirected(), random_state=0)
    users = sorted(partition)
    segment_of = shop["truth"]["user_segment"]
    score = adjusted_rand_score([segment_of[u] for u in users], [partition[u] for u in users])
    assert score > 0.6
    communities = shop["truth"]["communities"]
    assert sorted(u for members in communities.values() for u in members) == users


# --- size -------------------------------------------------------------------------------------


def test_default_size_generates_within_a_minute(tmp_path):
    started = time.perf_counter()
    summary = generate_demo_shop(tmp_path)
    elapsed = time.perf_counter() - started
    assert elapsed < 60
    assert summary["counts"]["users"] == 6000
    assert summary["counts"]["items"] == 2465
    assert summary["counts"]["interactions"] == 675_000
