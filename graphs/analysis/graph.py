"""Follower graphs: building one from edge arrays, with the input problems reported, and the
per-user graph features (degree centrality, betweenness, clustering coefficient, PageRank).

Arrays in, a ``networkx.DiGraph`` / ``pandas.DataFrame`` and a plain ``dict`` report out. The
report is meant to be shown to a person as it is: every edge that was not used is counted and
explained. This module must stay free of Django.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

# Betweenness is exact (every node a source) up to this many nodes, sampled above it.
BETWEENNESS_EXACT_MAX_NODES = 2_000
# Number of source nodes sampled for betweenness on graphs above the threshold.
BETWEENNESS_SAMPLES = 500
# How many offending ids a report quotes.
EXAMPLES = 5

FEATURE_COLUMNS = [
    "in_degree",
    "out_degree",
    "in_degree_centrality",
    "out_degree_centrality",
    "betweenness",
    "clustering",
    "pagerank",
]


def _missing(values: pd.Series) -> np.ndarray:
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()


def build_follower_graph(
    followers: Any,
    followees: Any,
    weights: Any = None,
    *,
    users: Any = None,
) -> tuple[nx.DiGraph, dict[str, Any]]:
    """A directed follower -> followee graph from three aligned arrays, and what was done.

    ``followers`` / ``followees`` hold user ids (any hashable: strings, integers); ``weights``
    (optional) one positive number per edge. ``users`` (optional) is the list of known users:
    edges that name anyone else ("dangling" edges) are left out, and known users without
    edges become isolated nodes, so every user gets graph features.

    Nothing is dropped silently. The report counts, with a few example ids each:

    * ``missing_ids``: rows with an empty follower or followee (left out);
    * ``bad_weights``: rows whose weight is missing, not finite or not positive (left out);
    * ``self_loops``: users following themselves (left out);
    * ``dangling``: edges naming a user not in ``users`` (left out);
    * ``duplicates``: repeated follower -> followee rows, merged into one edge. Without
      ``weights`` every edge keeps weight 1 (following twice is still following); with
      ``weights`` the merged edge carries the sum.

    ``messages`` says the same in sentences. Raises ``ValueError`` when the arrays do not line
    up or when no usable edge is left (the message says why).
    """
    followers = np.asarray(followers, dtype=object)
    followees = np.asarray(followees, dtype=object)
    if followers.ndim != 1 or followees.ndim != 1 or len(followers) != len(followees):
        raise ValueError(
            "followers and followees must be 1-D arrays of the same length (one row per edge), "
            f"got shapes {followers.shape} and {followees.shape}."
        )
    frame = pd.DataFrame({"follower": followers, "followee": followees})
    weighted = weights is not None
    if weighted:
        w = pd.to_numeric(pd.Series(np.asarray(weights, dtype=object)), errors="coerce")
        if len(w) != len(frame):
            raise ValueError(
                f"weights must have one value per edge: {len(w)} weights for {len(frame)} edges."
            )
        frame["weight"] = w.to_numpy(dtype=float)
    else:
        frame["weight"] = 1.0
    report: dict[str, Any] = {"input_edges": int(len(frame)), "weighted": weighted}
    messages: list[str] = []

    missing = _missing(frame.follower) | _missing(frame.followee)
    report["missing_ids"] = int(missing.sum())
    if missing.any():
        messages.append(
            f"{missing.sum()} edge(s) with an empty follower or followee id were left out "
            f"(rows {np.flatnonzero(missing)[:EXAMPLES].tolist()})."
        )
    frame = frame[~missing]

    bad = ~np.isfinite(frame.weight.to_numpy()) | (frame.weight.to_numpy() <= 0)
    report["bad_weights"] = int(bad.sum())
    if bad.any():
        messages.append(
            f"{bad.sum()} edge(s) had a missing, infinite, zero or negative weight and were left "
            "out; weights must be positive numbers."
        )
    frame = frame[~bad]

    loops = (frame.follower == frame.followee).to_numpy()
    report["self_loops"] = int(loops.sum())
    report["self_loop_examples"] = frame.follower[loops].head(EXAMPLES).tolist()
    if loops.any():
        messages.append(
            f"{loops.sum()} self-loop(s) (a user following themselves) were left out, e.g. "
            f"{report['self_loop_examples']}."
        )
    frame = frame[~loops]

    known: pd.Index | None = None
    report["dangling"] = 0
    report["dangling_examples"] = []
    if users is not None:
        known = pd.Index(pd.unique(np.asarray(users, dtype=object)))
        out = ~(frame.follower.isin(known) & frame.followee.isin(known)).to_numpy()
        ends = pd.concat([frame.follower, frame.followee])
        unknown = pd.unique(ends[~ends.isin(known)])
        report["dangling"] = int(out.sum())
        report["dangling_examples"] = list(unknown[:EXAMPLES])
        if out.any():
            messages.append(
                f"{out.sum()} edge(s) name a user who is not in the users list and were left "
                f"out (dangling), e.g. {report['dangling_examples']}; import those users first "
                "if they should count."
            )
        frame = frame[~out]

    before = len(frame)
    merged = frame.groupby(["follower", "followee"], sort=False, as_index=False)["weight"]
    frame = merged.sum() if weighted else merged.first()
    report["duplicates"] = int(before - len(frame))
    if report["duplicates"]:
        how = "their weights summed" if weighted else "each kept once with weight 1"
        messages.append(f"{report['duplicates']} duplicate edge row(s) were merged, {how}.")

    if frame.empty:
        reasons = [
            f"{report[key]} {label}"
            for key, label in (
                ("missing_ids", "with an empty id"),
                ("bad_weights", "with a bad weight"),
                ("self_loops", "self-loop(s)"),
                ("dangling", "dangling (unknown users)"),
            )
            if report[key]
        ]
        why = (
            f": all {report['input_edges']} were unusable ({', '.join(reasons)})" if reasons else ""
        )
        raise ValueError(
            f"The follower graph is empty: no usable edge{why}. "
            + (
                "Import a relations file with FOLLOWER_ID and FOLLOWEE_ID columns first."
                if not report["input_edges"]
                else "Check that the relations use the same user ids as the users file."
            )
        )

    graph = nx.DiGraph()
    if known is not None:
        graph.add_nodes_from(known)
    graph.add_weighted_edges_from(
        zip(frame.follower.tolist(), frame.followee.tolist(), frame.weight.tolist(), strict=True)
    )
    report["edges"] = graph.number_of_edges()
    report["nodes"] = graph.number_of_nodes()
    report["isolated_users"] = int(sum(1 for _ in nx.isolates(graph)))
    report["messages"] = messages
    return graph, report


def graph_features(
    graph: nx.DiGraph,
    *,
    betweenness_exact_max_nodes: int = BETWEENNESS_EXACT_MAX_NODES,
    betweenness_samples: int = BETWEENNESS_SAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-user features of a follower graph, one row per node, indexed by user id.

    Columns: ``in_degree`` / ``out_degree`` (followers / followings, counts),
    ``in_degree_centrality`` / ``out_degree_centrality`` (the same divided by ``n - 1``),
    ``betweenness`` (share of shortest paths through the user, unweighted, normalised),
    ``clustering`` (clustering coefficient of the undirected view: how many of the user's
    contacts know each other) and ``pagerank`` (weighted, sums to 1).

    Betweenness is exact up to ``betweenness_exact_max_nodes`` nodes; above that it is
    estimated from ``betweenness_samples`` source nodes drawn with ``seed``. The report's
    ``betweenness`` entry says which (``method``, and ``k``: the number of sampled sources,
    ``None`` when exact) so a page can show it.
    """
    n = graph.number_of_nodes()
    if n == 0 or graph.number_of_edges() == 0:
        raise ValueError(
            "graph_features needs a graph with at least one edge; build it with "
            "build_follower_graph from the relations."
        )
    if betweenness_samples < 1:
        raise ValueError(f"betweenness_samples must be at least 1, got {betweenness_samples}.")
    nodes = list(graph.nodes)
    undirected = graph.to_undirected(as_view=False)
    if n > betweenness_exact_max_nodes:
        k = min(int(betweenness_samples), n)
        method = "sampled" if k < n else "exact"
    else:
        k, method = None, "exact"
    between = nx.betweenness_centrality(
        graph, k=k if method == "sampled" else None, normalized=True, seed=seed
    )
    scale = 1.0 / (n - 1) if n > 1 else 0.0
    in_deg = dict(graph.in_degree())
    out_deg = dict(graph.out_degree())
    frame = pd.DataFrame(
        {
            "in_degree": [in_deg[v] for v in nodes],
            "out_degree": [out_deg[v] for v in nodes],
            "in_degree_centrality": [in_deg[v] * scale for v in nodes],
            "out_degree_centrality": [out_deg[v] * scale for v in nodes],
            "betweenness": [between[v] for v in nodes],
            "clustering": pd.Series(nx.clustering(undirected)).reindex(nodes).to_numpy(),
            "pagerank": pd.Series(nx.pagerank(graph, weight="weight")).reindex(nodes).to_numpy(),
        },
        index=pd.Index(nodes, name="user_id"),
        columns=FEATURE_COLUMNS,
    )
    report = {
        "nodes": n,
        "edges": graph.number_of_edges(),
        "isolated_users": int(sum(1 for _ in nx.isolates(graph))),
        "betweenness": {
            "method": method,
            "k": k if method == "sampled" else None,
            "exact_max_nodes": int(betweenness_exact_max_nodes),
            "seed": seed,
        },
    }
    return frame, report


def follower_graph_features(
    followers: Any,
    followees: Any,
    weights: Any = None,
    *,
    users: Any = None,
    betweenness_exact_max_nodes: int = BETWEENNESS_EXACT_MAX_NODES,
    betweenness_samples: int = BETWEENNESS_SAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`build_follower_graph` then :func:`graph_features`; the reports merged
    (``report["input"]`` for the edges, ``report["betweenness"]`` for the sampling)."""
    graph, built = build_follower_graph(followers, followees, weights, users=users)
    frame, report = graph_features(
        graph,
        betweenness_exact_max_nodes=betweenness_exact_max_nodes,
        betweenness_samples=betweenness_samples,
        seed=seed,
    )
    return frame, {**report, "input": built}
