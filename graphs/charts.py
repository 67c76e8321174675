"""Plotly figures of the Segments pages, and the small graph view's layout.

Django-free. Inputs are the plain numbers a run stores (``ClusteringRun.quality``,
``GraphRun.summary``); outputs are Plotly figure dicts (``{"data": [...], "layout": {...}}``)
that are JSON-serialisable as they are. :func:`graph_view` computes the sampled subgraph and
its spring layout while the run works, so the page only draws stored points.
"""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import numpy as np

from models_app.charts import PALETTE, _layout

_GRID = "#eef0f4"
# The graph view draws at most this many users and this many edges.
GRAPH_VIEW_NODES = 300
GRAPH_VIEW_EDGES = 1_500
GRAPH_VIEW_COMMUNITIES = 6
# Per-cluster silhouette plot: at most this many bars per cluster (evenly spaced quantiles).
SILHOUETTE_POINTS = 150


def _colour(index: int) -> str:
    return PALETTE[int(index) % len(PALETTE)]


def _finite(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def silhouette_by_k_chart(
    silhouette_by_k: dict, chosen_k: int | None, y_title: str = "mean silhouette"
) -> dict:
    """Line of a quality score (mean silhouette by default) against k; the chosen k is a
    larger, labelled marker."""
    pairs = sorted((int(k), _finite(v)) for k, v in silhouette_by_k.items())
    ks = [k for k, _ in pairs]
    values = [v for _, v in pairs]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": y_title,
            "x": ks,
            "y": values,
            "line": {"color": PALETTE[0], "width": 2},
            "marker": {"size": 7},
            "hovertemplate": "k = %{x}: %{y:.3f}<extra></extra>",
        }
    ]
    if chosen_k is not None and int(chosen_k) in ks:
        best = values[ks.index(int(chosen_k))]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": f"chosen k = {chosen_k}",
                "x": [int(chosen_k)],
                "y": [best],
                "text": [f"chosen k = {chosen_k}"],
                "textposition": "top center",
                "marker": {"size": 15, "color": PALETTE[1], "symbol": "star"},
                "hovertemplate": "chosen k = %{x}: %{y:.3f}<extra></extra>",
            }
        )
    layout = _layout(
        xaxis={"title": {"text": "k (number of clusters)"}, "dtick": 1, "gridcolor": _GRID},
        yaxis={"title": {"text": y_title}, "gridcolor": _GRID},
        showlegend=True,
    )
    return {"data": traces, "layout": layout}


def silhouette_summary(labels: Any, silhouettes: Any, points: int = SILHOUETTE_POINTS) -> dict:
    """Per cluster, its silhouettes sorted high to low and thinned to at most ``points``
    evenly spaced quantiles, plus the cluster's mean and count: what the silhouette plot
    needs, small enough to store with the run."""
    labels = np.asarray(labels)
    silhouettes = np.asarray(silhouettes, dtype=float)
    out = {}
    for label in np.unique(labels):
        values = np.sort(silhouettes[labels == label])[::-1]
        if len(values) > points:
            values = values[np.linspace(0, len(values) - 1, points).round().astype(int)]
        out[str(int(label))] = {
            "values": [round(float(v), 4) for v in values],
            "mean": float(silhouettes[labels == label].mean()),
            "n": int((labels == label).sum()),
        }
    return out


def silhouette_plot(summary: dict, overall: float | None, names: dict | None = None) -> dict:
    """The classic silhouette plot: one horizontal band per cluster, users sorted by their
    silhouette inside it; the dashed line is the overall mean."""
    names = names or {}
    traces = []
    y = 0
    ticks, tick_text = [], []
    for index, (label, entry) in enumerate(sorted(summary.items(), key=lambda kv: int(kv[0]))):
        values = entry["values"]
        ys = list(range(y, y + len(values)))
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": names.get(label, f"Segment {label}"),
                "x": values,
                "y": ys,
                "marker": {"color": _colour(index)},
                "width": 1,
                "hovertemplate": (
                    f"{names.get(label, 'Segment ' + label)}: mean {entry['mean']:.3f}, "
                    f"{entry['n']} users<extra></extra>"
                ),
            }
        )
        ticks.append(y + len(values) / 2)
        tick_text.append(names.get(label, f"Segment {label}"))
        y += len(values) + 6
    shapes = []
    if _finite(overall) is not None:
        shapes.append(
            {
                "type": "line",
                "x0": overall,
                "x1": overall,
                "y0": 0,
                "y1": 1,
                "yref": "paper",
                "line": {"color": "#c43d5a", "dash": "dash", "width": 2},
            }
        )
    layout = _layout(
        height=max(300, min(700, 40 + y)),
        bargap=0,
        showlegend=False,
        xaxis={"title": {"text": "silhouette (−1 … 1)"}, "gridcolor": _GRID, "zeroline": True},
        yaxis={"tickvals": ticks, "ticktext": tick_text, "showgrid": False, "automargin": True},
        shapes=shapes,
        margin={"l": 150, "r": 16, "t": 16, "b": 56},
    )
    return {"data": traces, "layout": layout}


def sizes_chart(sizes: list, names: list[str]) -> dict:
    """Bar per cluster: how many users it has."""
    trace = {
        "type": "bar",
        "x": names,
        "y": [int(s) for s in sizes],
        "marker": {"color": [_colour(i) for i in range(len(sizes))]},
        "hovertemplate": "%{x}: %{y:,} users<extra></extra>",
    }
    layout = _layout(
        xaxis={"type": "category", "automargin": True},
        yaxis={"title": {"text": "users"}, "gridcolor": _GRID, "rangemode": "tozero"},
        showlegend=False,
    )
    return {"data": [trace], "layout": layout}


def modularity_chart(sweep: list[dict], chosen_resolution: float | None) -> dict:
    """Modularity (left axis) and number of communities with 2+ users (right axis) against
    Louvain's resolution; the run's resolution is marked."""
    sweep = sorted(sweep, key=lambda row: row["resolution"])
    x = [row["resolution"] for row in sweep]
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "modularity",
            "x": x,
            "y": [row["modularity"] for row in sweep],
            "line": {"color": PALETTE[0], "width": 2},
            "hovertemplate": "resolution %{x}: modularity %{y:.3f}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "communities (2+ users)",
            "x": x,
            "y": [row["communities_2plus"] for row in sweep],
            "yaxis": "y2",
            "line": {"color": PALETTE[2], "width": 2, "dash": "dot"},
            "hovertemplate": "resolution %{x}: %{y} communities<extra></extra>",
        },
    ]
    if chosen_resolution is not None:
        chosen = [row for row in sweep if math.isclose(row["resolution"], chosen_resolution)]
        if chosen:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": f"this run (resolution {chosen_resolution:g})",
                    "x": [chosen_resolution],
                    "y": [chosen[0]["modularity"]],
                    "text": [f"resolution {chosen_resolution:g}"],
                    "textposition": "top center",
                    "marker": {"size": 15, "color": PALETTE[1], "symbol": "star"},
                    "hoverinfo": "skip",
                }
            )
    layout = _layout(
        xaxis={"title": {"text": "resolution"}, "gridcolor": _GRID},
        yaxis={"title": {"text": "modularity"}, "gridcolor": _GRID},
        yaxis2={"title": {"text": "communities"}, "overlaying": "y", "side": "right",
                "showgrid": False, "rangemode": "tozero", "tickformat": ",d"},
        margin={"l": 60, "r": 64, "t": 16, "b": 56},
    )  # fmt: skip
    return {"data": traces, "layout": layout}


def graph_view(
    graph: nx.Graph,
    labels: dict,
    *,
    max_nodes: int = GRAPH_VIEW_NODES,
    max_edges: int = GRAPH_VIEW_EDGES,
    communities: int = GRAPH_VIEW_COMMUNITIES,
    seed: int = 0,
) -> dict:
    """A sampled subgraph of the largest communities with a spring layout, as plain data.

    Takes the ``communities`` largest clusters of ``labels`` (user -> cluster), samples up to
    ``max_nodes`` users from them in proportion to their sizes (the best-connected first, so the
    picture shows structure, not isolated dots), keeps up to ``max_edges`` edges among them and
    lays them out with networkx's spring layout (seeded). Returns ``{"nodes": [[id, x, y,
    cluster], ...], "edges": [[i, j], ...], "shown": n, "of": total}``.
    """
    und = graph.to_undirected(as_view=True) if graph.is_directed() else graph
    by_cluster: dict[int, list] = {}
    for node, cluster in labels.items():
        if cluster is None or int(cluster) < 0 or node not in und:
            continue
        by_cluster.setdefault(int(cluster), []).append(node)
    largest = sorted(by_cluster, key=lambda c: -len(by_cluster[c]))[:communities]
    total = sum(len(by_cluster[c]) for c in largest)
    if total == 0:
        return {"nodes": [], "edges": [], "shown": 0, "of": 0}
    rng = np.random.default_rng(seed)
    chosen = []
    for cluster in largest:
        members = by_cluster[cluster]
        quota = max(1, round(max_nodes * len(members) / total))
        degree = np.array([und.degree(m) for m in members], dtype=float)
        if len(members) > quota:
            # Connected users first, with a little randomness so ties do not pick by id order.
            order = np.lexsort((rng.random(len(members)), -degree))
            members = [members[i] for i in order[:quota]]
        chosen.extend(members)
    chosen = chosen[:max_nodes]
    sub = nx.Graph(und.subgraph(chosen))
    edges = list(sub.edges())
    if len(edges) > max_edges:
        pick = rng.choice(len(edges), size=max_edges, replace=False)
        edges = [edges[i] for i in np.sort(pick)]
        sub = nx.Graph()
        sub.add_nodes_from(chosen)
        sub.add_edges_from(edges)
    positions = nx.spring_layout(sub, seed=seed, iterations=50)
    index = {node: n for n, node in enumerate(chosen)}
    return {
        "nodes": [
            [
                str(node),
                round(float(positions[node][0]), 4),
                round(float(positions[node][1]), 4),
                int(labels[node]),
            ]
            for node in chosen
        ],  # fmt: skip
        "edges": [[index[a], index[b]] for a, b in edges],
        "shown": len(chosen),
        "of": int(sum(len(v) for v in by_cluster.values())),
    }


def graph_view_chart(view: dict, names: dict | None = None) -> dict:
    """The stored graph view as a Plotly scatter: grey edges, one colour per cluster."""
    names = names or {}
    nodes = view.get("nodes", [])
    edge_x: list = []
    edge_y: list = []
    for a, b in view.get("edges", []):
        edge_x += [nodes[a][1], nodes[b][1], None]
        edge_y += [nodes[a][2], nodes[b][2], None]
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": edge_x,
            "y": edge_y,
            "line": {"color": "rgba(120,130,150,0.25)", "width": 0.7},
            "hoverinfo": "skip",
            "showlegend": False,
        }
    ]
    clusters = sorted({node[3] for node in nodes})
    for cluster in clusters:
        members = [node for node in nodes if node[3] == cluster]
        label = names.get(str(cluster), f"Segment {cluster}")
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": label,
                "x": [m[1] for m in members],
                "y": [m[2] for m in members],
                "text": [m[0] for m in members],
                "marker": {"size": 7, "color": _colour(cluster), "line": {"width": 0.5,
                                                                          "color": "#fff"}},
                "hovertemplate": "user %{text}<extra>" + label + "</extra>",
            }
        )  # fmt: skip
    hidden = {"visible": False, "showgrid": False, "zeroline": False}
    layout = _layout(
        height=460, xaxis=hidden, yaxis=hidden, margin={"l": 8, "r": 8, "t": 8, "b": 8}
    )
    return {"data": traces, "layout": layout}


def effect_chart(rows: list[dict]) -> dict:
    """Grouped bars per candidate: NDCG@10 and the share of recommended items that followed
    users interacted with."""
    names = [row["name"] for row in rows]
    traces = [
        {
            "type": "bar",
            "name": "NDCG@10",
            "x": names,
            "y": [row["ndcg"] for row in rows],
            "marker": {"color": PALETTE[0]},
            "hovertemplate": "%{x}: NDCG@10 %{y:.4f}<extra></extra>",
        },
        {
            "type": "bar",
            "name": "share of items followed users interacted with",
            "x": names,
            "y": [row["followed_share"] for row in rows],
            "marker": {"color": PALETTE[1]},
            "hovertemplate": "%{x}: %{y:.1%}<extra></extra>",
        },
    ]
    layout = _layout(
        barmode="group",
        xaxis={"type": "category", "automargin": True},
        yaxis={"gridcolor": _GRID, "rangemode": "tozero"},
    )
    return {"data": traces, "layout": layout}


def top_users_chart(rows: list[dict], column: str) -> dict:
    """Horizontal bars of the top users by ``column`` (``pagerank`` or ``betweenness``)."""
    rows = rows[::-1]
    trace = {
        "type": "bar",
        "orientation": "h",
        "x": [row[column] for row in rows],
        "y": [str(row["user"]) for row in rows],
        "marker": {"color": PALETTE[0]},
        "hovertemplate": "%{y}: %{x:.4g}<extra></extra>",
    }
    layout = _layout(
        height=max(260, 22 * len(rows) + 60),
        xaxis={"title": {"text": column}, "gridcolor": _GRID},
        yaxis={"type": "category", "automargin": True},
        showlegend=False,
    )
    return {"data": [trace], "layout": layout}
