"""Graph analytics and clustering (graphs/analysis), Django-free, on the demo shop.

The demo shop plants six user segments (category tastes) and follower communities made of the
same segments (about 85% of edges inside one); the tests check that the analyses find them,
with margins, and that bad input is reported or refused with a clear message. No database.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from datasets.ingest.demo import build_demo_shop
from graphs.analysis import (
    behavioural_features,
    build_follower_graph,
    choose_k,
    cluster_profiles,
    compare_partitions,
    follower_graph_features,
    graph_features,
    kmeans,
    louvain,
    modularity_sweep,
    remove_outliers,
    scale_features,
    segment_users,
    select_features,
    spectral_clusters,
)


@pytest.fixture(scope="module")
def shop():
    return build_demo_shop(n_users=600, n_items=300, n_interactions=40_000, seed=1)


@pytest.fixture(scope="module")
def frame(shop):
    events = shop.interactions
    return behavioural_features(
        events.USER_ID,
        events.ITEM_ID,
        events.EVENT_TYPE,
        timestamps=events.TIMESTAMP,
        item_categories=shop.items.set_index("ITEM_ID").CATEGORY,
        user_ids=shop.users.USER_ID,
    )


@pytest.fixture(scope="module")
def segmentation(frame):
    return segment_users(frame, frame["events:purchase"], k_values=range(2, 11))


@pytest.fixture(scope="module")
def graph(shop):
    relations = shop.relations
    graph, _ = build_follower_graph(
        relations.FOLLOWER_ID, relations.FOLLOWEE_ID, users=shop.users.USER_ID
    )
    return graph


@pytest.fixture(scope="module")
def communities(shop):
    return {u: name for name, users in shop.ground_truth["communities"].items() for u in users}


# --- behavioural features and k-means -------------------------------------------------------
def test_behavioural_features_count_what_users_did(shop, frame):
    events = shop.interactions
    user = events.USER_ID.iloc[0]
    mine = events[events["USER_ID"].eq(user)]
    row = frame.loc[user]
    assert row["events"] == len(mine)
    assert row["distinct_items"] == mine.ITEM_ID.nunique()
    assert row["events:purchase"] == (mine.EVENT_TYPE == "purchase").sum()
    assert row["active_days"] >= 1 and row["recency_days"] >= 0
    # A multi-valued category counts for each of its values.
    categories = shop.items.set_index("ITEM_ID").CATEGORY.loc[mine.ITEM_ID].str.split("|")
    assert row["category:Shoes"] == sum("Shoes" in c for c in categories)
    assert list(frame.index) == list(shop.users.USER_ID)


def test_kmeans_recovers_the_planted_segments_and_silhouette_picks_six(shop, segmentation):
    truth = shop.ground_truth["user_segment"]
    agreement = compare_partitions(segmentation.labels, truth)
    assert agreement["users"] == 600
    assert agreement["ari"] >= 0.8 and agreement["nmi"] >= 0.8, agreement
    assert segmentation.k == 6, segmentation.silhouette_by_k
    assert sorted(segmentation.silhouette_by_k) == list(range(2, 11))
    best = segmentation.silhouette_by_k[6]
    assert all(best > v for k, v in segmentation.silhouette_by_k.items() if k != 6)
    # Outliers: 2% by default, reported, left out of the fit and still labelled.
    assert segmentation.report["outliers"]["removed"] == segmentation.outliers.sum() == 12
    assert segmentation.labels.notna().all() and segmentation.labels.between(0, 5).all()
    fit = segmentation.kmeans
    assert len(fit.sample_silhouettes) == len(fit.sample_labels) == 600 - 12
    assert np.isclose(fit.sample_silhouettes.mean(), best)
    assert sum(segmentation.report["sizes"]) == 600


def test_cluster_profiles_name_each_segments_categories(shop, frame, segmentation):
    profiles = cluster_profiles(frame, segmentation.labels, top=2)
    assert profiles["size"].sum() == 600 and np.isclose(profiles["share"].sum(), 1)
    found = {frozenset(top) for top in profiles.top_categories}
    planted = {frozenset(s["categories"]) for s in shop.ground_truth["segments"]}
    assert found == planted


def test_goal_correlation_filter_keeps_related_features_and_reports(frame):
    noisy = frame.copy()
    rng = np.random.default_rng(0)
    noisy["noise"] = rng.normal(size=len(noisy))
    noisy["constant"] = 3.0
    goal = noisy["events:purchase"]
    kept, report = select_features(noisy, goal, min_abs_corr=0.2)
    assert "noise" in report["dropped"] and "constant" in report["constant"]
    assert "noise" not in kept and "constant" not in kept
    assert "category:Shoes" in kept and "events:view" in kept  # activity goes with purchases
    assert abs(report["correlation"]["noise"]) < 0.2
    assert report["correlation"]["events:view"] > 0.5
    # A threshold nothing reaches still keeps the few best-correlated features, and says so.
    kept, report = select_features(noisy, goal, min_abs_corr=0.999, min_features=3)
    assert len(kept) == 3 and "noise" not in kept
    assert "kept the 3 best-correlated" in report["note"]
    # Without a goal there is nothing to judge: everything non-constant stays.
    kept, report = select_features(noisy, None)
    assert "noise" in kept and "constant" not in kept and "No goal" in report["note"]
    with pytest.raises(ValueError, match="one value per user row"):
        select_features(noisy, goal[:10])


def test_scaling_turns_categories_into_a_mix_and_logs_skewed_counts(frame):
    Z, report = scale_features(frame)
    assert Z.shape == frame.shape
    assert np.allclose(Z.mean(axis=0), 0, atol=1e-9)
    assert "category:Toys" in report["mix"] and "events" in report["log1p"]
    inliers, outliers = remove_outliers(Z, share=0.05, seed=1)
    assert outliers["removed"] == (~inliers).sum() == 30
    everyone, off = remove_outliers(Z, share=0)
    assert everyone.all() and off["removed"] == 0
    with pytest.raises(ValueError, match="outlier share"):
        remove_outliers(Z, share=0.7)


def test_silhouette_is_sampled_above_the_sample_size(frame):
    Z, _ = scale_features(frame)
    result = choose_k(Z, [5, 6, 7], silhouette_sample=250, seed=3)
    assert len(result.sample_index) == 250 and len(result.sample_silhouettes) == 250
    assert any("sample of 250" in note for note in result.notes)
    assert result.k == 6


def test_k_larger_than_the_number_of_users_is_refused_clearly():
    Z = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match=r"k=10 is larger than the number of users \(5\)"):
        kmeans(Z, 10)
    with pytest.raises(ValueError, match="No usable k in \\[8, 9\\]: with 5 users"):
        choose_k(Z, [8, 9])
    with pytest.raises(ValueError, match=r"k=10 is larger than the number of users \(5\)"):
        spectral_clusters(Z, 10)
    frame = pd.DataFrame(Z, columns=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"k=7 is larger than the number of users \(5\)"):
        segment_users(frame, k_values=[7])
    # A range partly too large is cut to what the data allows, with a note.
    result = choose_k(Z, range(2, 11))
    assert set(result.silhouette_by_k) == {2, 3, 4}
    assert "skipped" in result.notes[0]


def test_tiny_inputs_are_handled():
    two = pd.DataFrame({"events": [3.0, 9.0]}, index=["a", "b"])
    result = segment_users(two)
    assert result.k == 1 and result.labels.tolist() == [0, 0]
    assert "only 2 user(s)" in result.report["notes"][0]
    with pytest.raises(ValueError, match="at least 3 users"):
        choose_k(np.ones((2, 2)), range(2, 5))
    with pytest.raises(ValueError, match="No events"):
        behavioural_features([], [])
    with pytest.raises(ValueError, match="same value for every user"):
        segment_users(pd.DataFrame({"events": [1.0, 1.0, 1.0, 1.0]}))
    one = behavioural_features(["u"], ["i"], ["view"])
    assert one.loc["u", "events"] == 1 and one.loc["u", "events:view"] == 1


# --- follower graph ----------------------------------------------------------------------------
def test_bad_edges_are_reported_and_handled():
    followers = ["a", "a", "b", "b", "c", "x", "d", None, "c"]
    followees = ["b", "b", "a", "b", "a", "a", "a", "a", "d"]
    graph, report = build_follower_graph(followers, followees, users=["a", "b", "c", "d", "e"])
    assert report["input_edges"] == 9
    assert report["self_loops"] == 1 and report["self_loop_examples"] == ["b"]
    assert report["duplicates"] == 1
    assert report["dangling"] == 1 and report["dangling_examples"] == ["x"]
    assert report["missing_ids"] == 1
    assert report["edges"] == graph.number_of_edges() == 5
    assert sorted(graph.edges) == [("a", "b"), ("b", "a"), ("c", "a"), ("c", "d"), ("d", "a")]
    assert report["isolated_users"] == 1 and "e" in graph  # known user without edges stays
    assert all(graph[u][v]["weight"] == 1 for u, v in graph.edges)  # following twice is once
    text = " ".join(report["messages"])
    for word in ("self-loop", "duplicate", "dangling", "empty follower"):
        assert word in text
    # Weighted duplicates add up; unusable weights are counted, not silently used.
    graph, report = build_follower_graph(
        ["a", "a", "b", "c"], ["b", "b", "c", "a"], [1.5, 2.0, -1, float("nan")]
    )
    assert graph["a"]["b"]["weight"] == 3.5 and report["bad_weights"] == 2
    assert report["duplicates"] == 1 and graph.number_of_edges() == 1


def test_empty_graphs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="graph is empty.*Import a relations file"):
        build_follower_graph([], [])
    with pytest.raises(ValueError, match=r"all 2 were unusable \(2 self-loop"):
        build_follower_graph(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="dangling.*same user ids"):
        build_follower_graph(["a"], ["b"], users=["c"])
    with pytest.raises(ValueError, match="same length"):
        build_follower_graph(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="at least one edge"):
        graph_features(nx.DiGraph())
    lonely = nx.DiGraph()
    lonely.add_nodes_from(["a", "b"])
    with pytest.raises(ValueError, match="no edges"):
        louvain(lonely)


def test_graph_features_on_a_small_graph():
    # a -> b -> c plus a -> c and d -> a: b sits on no shortest path (a reaches c directly).
    graph, _ = build_follower_graph(["a", "b", "a", "d"], ["b", "c", "c", "a"])
    features, report = graph_features(graph)
    assert report["betweenness"] == {
        "method": "exact",
        "k": None,
        "exact_max_nodes": 2000,
        "seed": 0,
    }
    assert features.loc["c", "in_degree"] == 2 and features.loc["a", "out_degree"] == 2
    assert np.isclose(features.loc["c", "in_degree_centrality"], 2 / 3)
    # Betweenness of a: d -> b and d -> c go through a: 2 of (n-1)(n-2) = 6 ordered pairs.
    assert np.isclose(features.loc["a", "betweenness"], 2 / 6)
    assert features.loc["b", "betweenness"] == 0
    assert features.loc["a", "clustering"] == pytest.approx(1 / 3)  # b-c linked, d alone
    assert features.loc["d", "clustering"] == 0
    assert np.isclose(features.pagerank.sum(), 1) and features.pagerank.idxmax() == "c"


def test_graph_features_on_the_demo_follower_graph(shop, graph):
    features, report = follower_graph_features(
        shop.relations.FOLLOWER_ID, shop.relations.FOLLOWEE_ID, users=shop.users.USER_ID
    )
    assert len(features) == 600 and report["input"]["edges"] == len(shop.relations)
    assert features.in_degree.sum() == features.out_degree.sum() == len(shop.relations)
    assert report["isolated_users"] == 60 and report["betweenness"]["method"] == "exact"
    assert features.clustering.between(0, 1).all() and np.isclose(features.pagerank.sum(), 1)
    # The more followers, the higher the PageRank, by and large.
    assert features.in_degree.corr(features.pagerank, method="spearman") > 0.8
    assert features.pagerank.idxmin() in set(features.index[features.in_degree == 0])


def test_betweenness_is_sampled_above_the_threshold_and_says_with_how_many(graph):
    exact, report = graph_features(graph)
    assert report["betweenness"]["method"] == "exact" and report["betweenness"]["k"] is None
    sampled, report = graph_features(
        graph, betweenness_exact_max_nodes=100, betweenness_samples=150, seed=1
    )
    assert report["betweenness"]["method"] == "sampled" and report["betweenness"]["k"] == 150
    assert exact.betweenness.corr(sampled.betweenness, method="spearman") > 0.8
    again, _ = graph_features(
        graph, betweenness_exact_max_nodes=100, betweenness_samples=150, seed=1
    )
    pd.testing.assert_series_equal(sampled.betweenness, again.betweenness)  # seeded


# --- Louvain and spectral -----------------------------------------------------------------------
def test_louvain_recovers_the_planted_communities(graph, communities):
    result = louvain(graph, resolution=1.0, seed=0)
    agreement = compare_partitions(result.labels(), communities)
    assert agreement["users"] == 540  # users with edges
    assert agreement["ari"] >= 0.8 and agreement["nmi"] >= 0.8, agreement
    assert result.singletons == 60  # the isolated users, each alone
    assert result.n_communities - result.singletons == 6
    assert result.sizes == sorted(result.sizes, reverse=True)
    assert result.modularity > 0.5
    assert set(result.partition) == set(graph.nodes)


def test_modularity_sweep_over_resolutions(graph):
    sweep = modularity_sweep(graph, [0.5, 1.0, 10.0])
    assert sweep.resolution.tolist() == [0.5, 1.0, 10.0]
    at_one = sweep.set_index("resolution").loc[1.0]
    assert at_one.communities_2plus == 6
    # Far from 1 the partition is split further and scores a lower modularity.
    assert sweep.set_index("resolution").loc[10.0].communities_2plus > 6
    assert at_one.modularity > sweep.set_index("resolution").loc[10.0].modularity
    with pytest.raises(ValueError, match="resolution must be a positive"):
        louvain(graph, resolution=0)


def test_spectral_clustering_of_the_graph_and_of_features(graph, communities, frame, shop):
    labels, report = spectral_clusters(graph, 6, seed=0)
    assert (labels == -1).sum() == report["unclustered"] == 60
    assert compare_partitions(labels[labels >= 0], communities)["ari"] >= 0.8
    assert report["modularity"] > 0.5 and sum(report["sizes"]) == 540
    Z, _ = scale_features(frame)
    labels, report = spectral_clusters(pd.DataFrame(Z, index=frame.index), 6, seed=0)
    assert compare_partitions(labels, shop.ground_truth["user_segment"])["ari"] >= 0.8
    assert report["silhouette"] > 0.2
