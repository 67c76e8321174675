"""Django-free graph analytics and clustering: follower-graph features, behavioural segments
(k-means with k by silhouette), spectral clustering, Louvain communities and their quality.

>>> graph, report = build_follower_graph(followers, followees, users=user_ids)
>>> features, info = graph_features(graph)  # info["betweenness"]["k"]: sampled sources
>>> frame = behavioural_features(users, items, event_types, item_categories=categories)
>>> segments = segment_users(frame, goal=frame["events:purchase"])
>>> communities = louvain(graph, resolution=1.0)

This package must stay free of Django.
"""

from graphs.analysis.clustering import (
    KMeansResult,
    LouvainResult,
    Segmentation,
    behavioural_features,
    choose_k,
    cluster_profiles,
    compare_partitions,
    kmeans,
    louvain,
    modularity_sweep,
    remove_outliers,
    scale_features,
    segment_users,
    select_features,
    spectral_clusters,
    undirected_weighted,
)
from graphs.analysis.graph import build_follower_graph, follower_graph_features, graph_features

__all__ = [
    "KMeansResult",
    "LouvainResult",
    "Segmentation",
    "behavioural_features",
    "build_follower_graph",
    "choose_k",
    "cluster_profiles",
    "compare_partitions",
    "follower_graph_features",
    "graph_features",
    "kmeans",
    "louvain",
    "modularity_sweep",
    "remove_outliers",
    "scale_features",
    "segment_users",
    "select_features",
    "spectral_clusters",
    "undirected_weighted",
]
