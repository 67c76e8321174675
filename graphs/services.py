"""Writes for segments and graphs: graph analyses and clustering runs (start, run, cancel,
retry, fail-stale), saving a clustering as a user field, and the follow source.

A run's files live in ``ARTIFACT_DIR/<project>/graphs/<kind>-<run>/``: ``progress.json``
(fraction, phase, heartbeat), ``log.txt``, the ``cancel`` flag (see ``recsite/jobfiles.py``)
and the results: ``features.parquet`` (graph runs: one row per user) or ``labels.parquet``
(clustering runs: user and cluster). The numbers the pages show are stored on the row when
the run succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from datasets import imports as dataset_imports
from datasets import store
from datasets.ingest.schema import FIELD_NAME_PATTERN, Field, reserved_names
from datasets.models import Project
from graphs import charts, selectors
from graphs.models import AnalysisRun, ClusteringRun, GraphRun
from recsite import jobs
from recsite.jobfiles import STALE_AFTER_SECONDS, JobFiles

logger = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
LABELS_FILE = "labels.parquet"
LOG_FILE = "log.txt"
TOP_USERS = 15
MAX_K = 30
DEFAULT_SEGMENT_FIELD = "SEGMENT"
# Below this many interactions the effect report (Protocol R) is not computed.
EFFECT_MIN_INTERACTIONS = 1_000
GRAPH_DEFAULTS = {"betweenness_samples": 500, "seed": 0, "measure_effect": True}
CLUSTERING_DEFAULTS = {
    "k_min": 2,
    "k_max": 10,
    "goal_event": "",
    "resolution": 1.0,
    "seed": 0,
}


class Cancelled(Exception):
    pass


# --- folders -----------------------------------------------------------------------------------


def run_dir(run: AnalysisRun) -> Path:
    return Path(settings.ARTIFACT_DIR) / str(run.project_id) / "graphs" / f"{run.KIND}-{run.pk}"


def run_files(run: AnalysisRun) -> JobFiles:
    return JobFiles(run_dir(run))


def read_progress(run: AnalysisRun) -> dict:
    return run_files(run).read_progress()


def read_log(run: AnalysisRun) -> str:
    """The live log while the run is going, the stored one once it has finished."""
    if run.is_finished and run.log:
        return run.log
    try:
        return (run_dir(run) / LOG_FILE).read_text(encoding="utf-8")
    except OSError:
        return run.log


# --- checking and starting -----------------------------------------------------------------------


def _int(params: dict, name: str, label: str, low: int, high: int | None = None) -> int:
    value = params.get(name)
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a whole number, got “{value}”.") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{label} must be {bound}, got {number}.")
    return number


def _no_relations_message() -> str:
    return (
        "No relations imported yet: the follower graph is empty. Import a relations file "
        "(FOLLOWER_ID, FOLLOWEE_ID columns, one row per follow) on the Data page first."
    )


def check_graph_params(project: Project, params: dict | None) -> dict:
    """Validated graph-analysis parameters; ``ValueError`` says what to fix."""
    params = {**GRAPH_DEFAULTS, **(params or {})}
    unknown = sorted(set(params) - set(GRAPH_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(GRAPH_DEFAULTS)}."
        )
    out = {
        "betweenness_samples": _int(
            params, "betweenness_samples", "Betweenness sample size", 10, 100_000
        ),
        "seed": _int(params, "seed", "Seed", 0),
        "measure_effect": params["measure_effect"] in (True, "on", "true", "1", 1),
    }
    if selectors.relation_count(project) == 0:
        raise ValueError(_no_relations_message())
    return out


def check_clustering_params(project: Project, method: str, params: dict | None) -> dict:
    """Validated clustering parameters for ``method``; ``ValueError`` says what to fix
    (unknown method, bad numbers, k larger than the users, no relations, no events)."""
    if method not in ClusteringRun.Method.values:
        choices = ", ".join(ClusteringRun.Method.values)
        raise ValueError(f"Unknown clustering method “{method}”; choose one of {choices}.")
    params = {**CLUSTERING_DEFAULTS, **{k: v for k, v in (params or {}).items() if v != ""}}
    unknown = sorted(set(params) - set(CLUSTERING_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(CLUSTERING_DEFAULTS)}."
        )
    out: dict[str, Any] = {"seed": _int(params, "seed", "Seed", 0)}
    graph_based = method != ClusteringRun.Method.KMEANS_BEHAVIOUR
    if graph_based and selectors.relation_count(project) == 0:
        raise ValueError(_no_relations_message())
    if method == ClusteringRun.Method.LOUVAIN:
        try:
            resolution = float(str(params["resolution"]).strip())
        except ValueError:
            raise ValueError(
                f"Resolution must be a number such as 1.0, got “{params['resolution']}”."
            ) from None
        if not 0 < resolution <= 100:
            raise ValueError(
                f"Resolution must be above 0 (1.0 is the usual choice; larger values give more, "
                f"smaller communities), got {resolution:g}."
            )
        out["resolution"] = resolution
        return out
    k_min = _int(params, "k_min", "Smallest k", 2, MAX_K)
    k_max = _int(params, "k_max", "Largest k", 2, MAX_K)
    if k_max < k_min:
        raise ValueError(
            f"Largest k ({k_max}) is smaller than the smallest k ({k_min}); give a range such "
            "as 2 to 10 (the same number twice for a fixed k)."
        )
    if graph_based:
        n, what = selectors.users_with_edges(project), "users with follower edges"
    else:
        if selectors.interaction_count(project) == 0:
            raise ValueError(
                "No interactions imported yet: behavioural segments are built from events. "
                "Import an interactions file on the Data page first."
            )
        n, what = selectors.users_with_events(project), "users with events"
    if k_min >= n:
        raise ValueError(
            f"k = {k_min} is larger than the data supports: the project has {n} {what}, so k "
            f"must be at most {max(n - 1, 1)}. Lower the smallest k or import more data."
        )
    out.update(k_min=k_min, k_max=k_max)
    if method == ClusteringRun.Method.KMEANS_BEHAVIOUR:
        out["goal_event"] = str(params.get("goal_event") or "").strip()[:64]
    return out


def start_graph_run(
    *, project: Project, params: dict | None = None, user=None, enqueue: bool = True
) -> GraphRun:
    """Validate, create a queued graph analysis and (by default) enqueue it after commit."""
    params = check_graph_params(project, params)
    with transaction.atomic():
        run = GraphRun.objects.create(project=project, params=params, created_by=user)
        _prepare(run)
        if enqueue:
            _enqueue(run)
    return run


def start_clustering_run(
    *,
    project: Project,
    method: str,
    params: dict | None = None,
    user=None,
    enqueue: bool = True,
) -> ClusteringRun:
    """Validate, create a queued clustering run and (by default) enqueue it after commit."""
    params = check_clustering_params(project, method, params)
    with transaction.atomic():
        run = ClusteringRun.objects.create(
            project=project, method=method, params=params, created_by=user
        )
        _prepare(run)
        if enqueue:
            _enqueue(run)
    return run


def _prepare(run: AnalysisRun) -> None:
    files = run_files(run)
    files.reset(LOG_FILE)
    files.write_progress(phase="queued", fraction=0)


def _enqueue(run: AnalysisRun) -> None:
    jobs.enqueue(
        run, f"graphs.tasks.run_{run.KIND}", task_name=f"{run.KIND}-{run.pk}", group="graphs"
    )


def request_cancel(run: AnalysisRun) -> None:
    """Stop a queued or running run; nothing it computed is kept."""
    jobs.request_cancel(run, run_files(run))


def retry(run: AnalysisRun, user=None) -> AnalysisRun:
    """A new queued run with the same parameters."""
    jobs.ensure_finished(run, "Only a finished run can be retried; cancel it first.")
    if isinstance(run, GraphRun):
        return start_graph_run(project=run.project, params=run.params, user=user)
    return start_clustering_run(
        project=run.project, method=run.method, params=run.params, user=user
    )


def fail_stale_runs(
    project: Project | None = None, stale_after: float = STALE_AFTER_SECONDS
) -> int:
    """Mark running runs whose worker stopped its heartbeat as failed."""
    error = (
        "The worker stopped during the analysis (it was killed or crashed). Nothing was saved; "
        "retry the run."
    )
    return sum(
        jobs.fail_stale(
            model,
            files_for=run_files,
            finish=_finish,
            error=error,
            project=project,
            stale_after=stale_after,
        )
        for model in (GraphRun, ClusteringRun)
    )


def _finish(run: AnalysisRun, status: str, *, error: str = "", **extra) -> None:
    jobs.finish(run, status, error=error, log=run_files(run).read_text(LOG_FILE), **extra)


def _execute(run: AnalysisRun, body) -> AnalysisRun:
    """Claim the queued ``run``, call ``body(run, log, check_cancel)`` which returns the fields
    to store, and finish the run succeeded / failed / cancelled. Never raises."""
    if not jobs.claim(run):
        return run
    files = run_files(run)
    folder = files.folder
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    heartbeat = jobs.JobHeartbeat(files)
    log = heartbeat.log

    def check_cancel() -> None:
        files.raise_if_cancelled(Cancelled)

    try:
        with heartbeat:
            fields = body(run, log, check_cancel)
            check_cancel()
        log("Done.", 1.0)
        for key, value in fields.items():
            setattr(run, key, value)
        _finish(
            run,
            AnalysisRun.Status.SUCCEEDED,
            progress=1.0,
            duration_seconds=time.perf_counter() - started,
            artefact_dir=str(folder),
            **fields,
        )
    except Cancelled:
        log("Cancelled.")
        _finish(
            run,
            AnalysisRun.Status.CANCELLED,
            error="Cancelled; nothing was saved.",
            duration_seconds=time.perf_counter() - started,
        )
        _remove_results(folder)
    except Exception as exc:  # the run must never stay "running" after an error
        logger.exception("%s failed", run)
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        log(f"Failed: {message}")
        _finish(
            run,
            AnalysisRun.Status.FAILED,
            error=message,
            duration_seconds=time.perf_counter() - started,
        )
        _remove_results(folder)
    finally:
        files.write_outcome(run.status)
    return run


def _remove_results(folder: Path) -> None:
    for name in (FEATURES_FILE, LABELS_FILE):
        with contextlib.suppress(OSError):
            (folder / name).unlink()


# --- data --------------------------------------------------------------------------------------


def _follower_graph(project: Project, log):
    from graphs.analysis import build_follower_graph

    users = selectors.users(project)
    edges = selectors.relation_edges(project)
    if not len(edges):
        raise ValueError(_no_relations_message())
    graph, report = build_follower_graph(
        edges.followers, edges.followees, edges.weights, users=users.known
    )
    log(
        f"Follower graph: {report['nodes']:,} users, {report['edges']:,} edges "
        f"({report['input_edges']:,} relations read, {report['isolated_users']:,} users "
        "without edges)."
    )
    for message in report["messages"]:
        log(message)
    return graph, report, users


def _behaviour(project: Project, users: selectors.Users):
    """Behavioural features per user (indexed by external id) and the event types, or
    ``(None, [])`` when the project has no events."""
    from graphs.analysis import behavioural_features
    from models_app import selectors as model_selectors

    events = model_selectors.interaction_arrays(project)
    if not len(events):
        return None, []
    catalog = model_selectors.item_catalog(project)
    columns = {str(c).lower(): c for c in catalog.features.columns}
    category = columns.get("category")
    categories = None if category is None else catalog.features[category].dropna().astype(str)
    external = pd.Series(users.external_ids, index=users.ids)
    active = np.unique(events.users)
    frame = behavioural_features(
        events.users,
        events.items,
        events.event_types,
        timestamps=events.timestamps,
        item_categories=categories,
        user_ids=active,
    )
    frame.index = pd.Index(external.reindex(frame.index).to_numpy(), name="user_id")
    return frame, sorted({t for t in events.event_types.tolist() if t})


# --- graph analysis ----------------------------------------------------------------------------


def _top_users(features: pd.DataFrame, column: str, n: int = TOP_USERS) -> list[dict]:
    top = features.sort_values(column, ascending=False).head(n)
    return [
        {
            "user": str(user),
            "pagerank": float(row.pagerank),
            "betweenness": float(row.betweenness),
            "in_degree": int(row.in_degree),
            "out_degree": int(row.out_degree),
            "clustering": float(row.clustering),
        }
        for user, row in top.iterrows()
    ]


def _graph_body(run: GraphRun, log, check_cancel) -> dict:
    import networkx as nx

    from graphs.analysis import graph_features, louvain

    params = run.params
    log("Reading the relations.", 0.02)
    graph, report, users = _follower_graph(run.project, log)
    check_cancel()
    log("Computing degree, betweenness, clustering coefficient and PageRank.", 0.1)
    features, info = graph_features(
        graph, betweenness_samples=params["betweenness_samples"], seed=params["seed"]
    )
    between = info["betweenness"]
    log(
        "Betweenness: "
        + (
            f"sampled from k = {between['k']} source users (seed {between['seed']})."
            if between["method"] == "sampled"
            else "exact."
        ),
        0.6,
    )
    check_cancel()
    features.reset_index().astype({"user_id": str}).to_parquet(run_dir(run) / FEATURES_FILE)
    und = graph.to_undirected(as_view=True)
    components = [len(c) for c in nx.connected_components(und) if len(c) > 1]
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    mutual = sum(1 for u, v in graph.edges() if graph.has_edge(v, u))
    communities = louvain(graph, seed=params["seed"])
    log(
        f"Louvain (resolution 1): {communities.n_communities - communities.singletons} "
        f"communities with 2+ users, modularity {communities.modularity:.3f}.",
        0.7,
    )
    check_cancel()
    summary = {
        "users": n,
        "edges": m,
        "isolated_users": report["isolated_users"],
        "density": m / (n * (n - 1)) if n > 1 else 0.0,
        "mean_out_degree": m / n if n else 0.0,
        "reciprocity": mutual / m if m else 0.0,
        "components": len(components),
        "largest_component_share": (max(components) / n) if components else 0.0,
        "mean_clustering": float(features.clustering.mean()),
        "top_pagerank": _top_users(features, "pagerank"),
        "top_betweenness": _top_users(features, "betweenness"),
        "louvain_modularity": communities.modularity,
        "louvain_communities": communities.n_communities - communities.singletons,
        "graph_view": charts.graph_view(graph, communities.partition, seed=params["seed"]),
    }
    if params.get("measure_effect"):
        summary["effect"] = _measure_effect(run.project, graph, users, params["seed"], log)
    return {
        "n_users": n,
        "n_edges": m,
        "report": {"input": report, "betweenness": between},
        "summary": summary,
    }


def _measure_effect(project: Project, graph, users: selectors.Users, seed: int, log) -> dict:
    """The follow source / segment-affinity report, or why it was not computed."""
    from graphs.analysis.follow_source import adjacency_matrix, compare_sources
    from models_app import selectors as model_selectors

    events = model_selectors.interaction_arrays(project)
    if len(events) < EFFECT_MIN_INTERACTIONS:
        note = (
            f"Not measured: the project has {len(events):,} interactions; at least "
            f"{EFFECT_MIN_INTERACTIONS:,} are needed for a Protocol R split."
        )
        log(note)
        return {"skipped": note}
    log("Measuring the follow source and segment-affinity under Protocol R.", 0.75)
    user_index = pd.Index(users.ids)
    external_to_row = pd.Series(np.arange(len(users)), index=users.external_ids)
    item_ids, item_rows = np.unique(events.items, return_inverse=True)
    edges = list(graph.edges(data="weight", default=1.0))
    followers = external_to_row.reindex([a for a, _, _ in edges]).to_numpy()
    followees = external_to_row.reindex([b for _, b, _ in edges]).to_numpy()
    weights = np.array([w for _, _, w in edges], dtype=float)
    ok = ~(np.isnan(followers) | np.isnan(followees))
    adjacency = adjacency_matrix(
        followers[ok].astype(np.int64), followees[ok].astype(np.int64), len(users), weights[ok]
    )
    catalog = model_selectors.item_catalog(project)
    features = catalog.features.reindex(item_ids)
    try:
        result = compare_sources(
            user_index.get_indexer(events.users),
            item_rows,
            len(users),
            len(item_ids),
            adjacency,
            timestamps=events.timestamps,
            event_types=events.event_types,
            item_features=features,
            base_params={"factors": 64, "iterations": 15},
            seed=seed,
            log=log,
        )
    except ValueError as exc:
        log(f"Effect not measured: {exc}")
        return {"skipped": f"Not measured: {exc}"}
    return result


def run_graph(run: GraphRun) -> GraphRun:
    """Run a graph analysis (the task body)."""
    return _execute(run, _graph_body)


# --- clustering ----------------------------------------------------------------------------------


def _graph_feature_matrix(features: pd.DataFrame) -> np.ndarray:
    """Graph features scaled for k-means: log1p of the skewed ones, then standardised."""
    from sklearn.preprocessing import StandardScaler

    columns = ["in_degree", "out_degree", "betweenness", "clustering", "pagerank"]
    data = features[columns].astype(float).copy()
    for column in ("in_degree", "out_degree"):
        data[column] = np.log1p(data[column])
    for column in ("betweenness", "pagerank"):
        data[column] = np.log1p(data[column] * len(data))
    return StandardScaler().fit_transform(data.to_numpy())


def _cluster_graph_stats(graph, labels: pd.Series) -> dict[int, dict]:
    """Per cluster: mean followers / followings, clustering coefficient, and the share of the
    members' edges that stay inside the cluster."""
    import networkx as nx

    und = graph.to_undirected(as_view=False)
    coefficient = nx.clustering(und)
    out: dict[int, dict] = {}
    lookup = labels.to_dict()
    inside: dict[int, int] = {}
    touching: dict[int, int] = {}
    for a, b in graph.edges():
        la, lb = lookup.get(a, -1), lookup.get(b, -1)
        for label in {la, lb}:
            if label >= 0:
                touching[label] = touching.get(label, 0) + 1
        if la == lb and la >= 0:
            inside[la] = inside.get(la, 0) + 1
    for label, members in labels[labels >= 0].groupby(labels[labels >= 0]):
        nodes = [n for n in members.index if n in graph]
        if not nodes:
            continue
        out[int(label)] = {
            "mean_followers": float(np.mean([graph.in_degree(n) for n in nodes])),
            "mean_following": float(np.mean([graph.out_degree(n) for n in nodes])),
            "mean_clustering": float(np.mean([coefficient.get(n, 0.0) for n in nodes])),
            "edges_inside_share": inside.get(int(label), 0) / max(touching.get(int(label), 0), 1),
        }
    return out


def segment_name(label: int | str, top_categories: list | None) -> str:
    """ "Segment 2 · Shoes, Sports": the number and the two top categories, for display."""
    tops = [str(c) for c in (top_categories or [])[:2] if str(c)]
    return f"Segment {label}" + (f" · {', '.join(tops)}" if tops else "")


def _profiles(
    labels: pd.Series, behaviour: pd.DataFrame | None, graph_stats: dict[int, dict]
) -> list[dict]:
    from graphs.analysis import cluster_profiles

    clustered = labels[labels >= 0]
    sizes = clustered.value_counts().sort_index()
    table = None
    if behaviour is not None:
        common = behaviour.index.intersection(clustered.index)
        if len(common):
            table = cluster_profiles(behaviour.loc[common], clustered.loc[common].to_numpy())
    rows = []
    for label, size in sizes.items():
        entry: dict[str, Any] = {
            "label": int(label),
            "size": int(size),
            "share": float(size / max(len(clustered), 1)),
        }
        if table is not None and label in table.index:
            row = table.loc[label]
            entry["with_events"] = int(row["size"])
            for column in ("mean_events", "mean_distinct_items", "mean_recency_days"):
                if column in table.columns:
                    entry[column] = float(row[column])
            if "top_categories" in table.columns:
                entry["top_categories"] = [str(c) for c in row["top_categories"]]
        entry.update(graph_stats.get(int(label), {}))
        entry["name"] = segment_name(int(label), entry.get("top_categories"))
        rows.append(entry)
    return rows


def _clustering_body(run: ClusteringRun, log, check_cancel) -> dict:
    from graphs.analysis import (
        choose_k,
        graph_features,
        louvain,
        modularity_sweep,
        segment_users,
        spectral_clusters,
    )
    from graphs.analysis.clustering import DEFAULT_RESOLUTIONS

    params, method = run.params, run.method
    seed = params.get("seed", 0)
    Method = ClusteringRun.Method
    quality: dict[str, Any] = {"notes": []}
    users = selectors.users(run.project)
    graph = None
    if method != Method.KMEANS_BEHAVIOUR:
        log("Reading the relations.", 0.02)
        graph, report, users = _follower_graph(run.project, log)
        quality["input"] = report
        check_cancel()
    log("Reading the events for the cluster profiles.", 0.05)
    behaviour, event_types = _behaviour(run.project, users)
    check_cancel()
    silhouette = modularity = None
    k_values = list(range(params.get("k_min", 2), params.get("k_max", 2) + 1))

    if method == Method.KMEANS_BEHAVIOUR:
        if behaviour is None:
            raise ValueError("No interactions: import an interactions file first.")
        goal_event = params.get("goal_event") or ("purchase" if "purchase" in event_types else "")
        goal = None
        if goal_event:
            column = f"events:{goal_event}"
            if column in behaviour.columns:
                goal = behaviour[column]
            else:
                quality["notes"].append(
                    f"goal event “{goal_event}” does not occur (event types: "
                    f"{', '.join(event_types[:10])}); every feature was kept"
                )
        log(
            f"k-means on {behaviour.shape[1]} behavioural features of {len(behaviour):,} users, "
            f"k from {k_values[0]} to {k_values[-1]} (goal: {goal_event or 'none'}).",
            0.15,
        )
        segmentation = segment_users(behaviour, goal, k_values=k_values, seed=seed)
        labels = segmentation.labels.astype(np.int64)
        k = segmentation.k
        silhouette = segmentation.report.get("silhouette")
        quality["silhouette_by_k"] = {str(k_): v for k_, v in segmentation.silhouette_by_k.items()}
        quality["features"] = segmentation.features
        quality["goal_event"] = goal_event
        quality["outliers"] = int(segmentation.outliers.sum())
        quality["notes"] += segmentation.report.get("notes", [])
        if segmentation.kmeans is not None:
            quality["silhouettes"] = charts.silhouette_summary(
                segmentation.kmeans.sample_labels, segmentation.kmeans.sample_silhouettes
            )
    elif method == Method.KMEANS_GRAPH:
        features, info = graph_features(graph, seed=seed)
        quality["betweenness"] = info["betweenness"]
        connected = features[(features.in_degree + features.out_degree) > 0]
        log(
            f"k-means on the graph features of {len(connected):,} users with edges, k from "
            f"{k_values[0]} to {k_values[-1]}.",
            0.4,
        )
        check_cancel()
        result = choose_k(_graph_feature_matrix(connected), k_values, seed=seed)
        labels = pd.Series(-1, index=features.index, dtype=np.int64)
        labels.loc[connected.index] = result.labels
        k, silhouette = result.k, result.silhouette
        quality["silhouette_by_k"] = {str(k_): v for k_, v in result.silhouette_by_k.items()}
        quality["silhouettes"] = charts.silhouette_summary(
            result.sample_labels, result.sample_silhouettes
        )
        quality["notes"] += result.notes
        quality["unclustered"] = int(len(features) - len(connected))
    elif method == Method.SPECTRAL_GRAPH:
        by_k: dict[str, float] = {}
        best = None
        for step, k_try in enumerate(k_values):
            check_cancel()
            try:
                candidate, report = spectral_clusters(graph, k_try, seed=seed)
            except ValueError as exc:
                quality["notes"].append(str(exc))
                continue
            by_k[str(k_try)] = report["modularity"]
            log(f"Spectral k = {k_try}: modularity {report['modularity']:.3f}.")
            if best is None or report["modularity"] > best[1]["modularity"] + 1e-12:
                best = (candidate, report)
            heartbeat_fraction = 0.15 + 0.6 * (step + 1) / len(k_values)
            log(f"{step + 1} of {len(k_values)} k values done.", heartbeat_fraction)
        if best is None:
            raise ValueError(
                "Spectral clustering found no usable k; " + "; ".join(quality["notes"])
            )
        labels, report = best
        labels = labels.astype(np.int64)
        k, modularity = report["k"], report["modularity"]
        quality["modularity_by_k"] = by_k
        quality["unclustered"] = report["unclustered"]
        quality["notes"] += report["notes"]
    else:  # Louvain
        resolution = float(params.get("resolution", 1.0))
        log(f"Louvain communities at resolution {resolution:g}.", 0.2)
        result = louvain(graph, resolution=resolution, seed=seed)
        labels = result.labels().astype(np.int64)
        # Users alone in their community are not a segment.
        singles = labels.map(labels.value_counts()) == 1
        labels[singles] = -1
        k, modularity = result.n_communities - result.singletons, result.modularity
        quality["resolution"] = resolution
        quality["unclustered"] = int(singles.sum())
        check_cancel()
        resolutions = sorted({*DEFAULT_RESOLUTIONS, resolution})
        log(f"Modularity sweep over resolutions {', '.join(f'{r:g}' for r in resolutions)}.", 0.5)
        quality["sweep"] = modularity_sweep(graph, resolutions, seed=seed).to_dict("records")
    check_cancel()
    log(f"Found {k} clusters; computing the profiles.", 0.8)
    graph_stats = _cluster_graph_stats(graph, labels) if graph is not None else {}
    profiles = _profiles(labels, behaviour, graph_stats)
    if graph is not None:
        quality["graph_view"] = charts.graph_view(
            graph, {u: int(v) for u, v in labels.items() if v >= 0}, seed=seed
        )
    check_cancel()
    frame = pd.DataFrame({"user_id": labels.index.astype(str), "label": labels.to_numpy()})
    frame.to_parquet(run_dir(run) / LABELS_FILE)
    sizes = [p["size"] for p in profiles]
    log(f"Cluster sizes: {sizes}.")
    return {
        "n_users": int((labels >= 0).sum()),
        "k": int(k),
        "silhouette": None if silhouette is None else float(silhouette),
        "modularity": None if modularity is None else float(modularity),
        "sizes": sizes,
        "profiles": profiles,
        "quality": quality,
    }


def run_clustering(run: ClusteringRun) -> ClusteringRun:
    """Run a clustering (the task body)."""
    return _execute(run, _clustering_body)


def load_labels(run: ClusteringRun) -> pd.Series:
    """External user id -> cluster (``-1``: not clustered) of a finished run."""
    path = Path(run.artefact_dir or run_dir(run)) / LABELS_FILE
    if run.status != AnalysisRun.Status.SUCCEEDED or not path.exists():
        raise ValueError(
            f"Clustering run #{run.pk} has no labels (status: {run.get_status_display()}); "
            "only a succeeded run can be used."
        )
    frame = pd.read_parquet(path)
    return pd.Series(frame["label"].to_numpy(), index=frame["user_id"].astype(str), name="label")


def load_features(run: GraphRun) -> pd.DataFrame:
    path = Path(run.artefact_dir or run_dir(run)) / FEATURES_FILE
    if run.status != AnalysisRun.Status.SUCCEEDED or not path.exists():
        raise ValueError(f"Graph analysis #{run.pk} has no features; it did not succeed.")
    return pd.read_parquet(path).set_index("user_id")


# --- segments on users ---------------------------------------------------------------------------


def check_field_name(project: Project, field: str) -> str:
    """The users' field ``field`` may receive segments: a valid name, not reserved, and not a
    field that an imported users file filled (only segment fields are overwritten)."""
    field = (field or "").strip()
    if not FIELD_NAME_PATTERN.match(field) or len(field) > 64:
        raise ValueError(
            f"“{field}” is not a valid field name: start with a letter or underscore and use only "
            "letters, digits and underscores, e.g. SEGMENT."
        )
    if field.upper() in reserved_names("users"):
        raise ValueError(f"{field} is a reserved users field; choose another name, e.g. SEGMENT.")
    existing = {f.name.upper(): f for f in dataset_imports.get_schema(project, "users")}
    ours = {name.upper() for name in selectors.segment_fields(project)}
    if field.upper() in existing and field.upper() not in ours:
        kind = existing[field.upper()].type
        raise ValueError(
            f"The users already have a field {existing[field.upper()].name} ({kind}, from the "
            "users file); saving segments there would overwrite it. Choose another name, e.g. "
            "SEGMENT."
        )
    if field.upper() in existing:
        field = existing[field.upper()].name  # keep the stored spelling
    return field


def _write_labels(project_id: int, field: str, external_ids: list[str], values: list[str]) -> int:
    """Set ``attributes[field]`` of the listed users and remove it from every other user of the
    project, in three set-based statements (a staging table, no per-user ORM save)."""
    table = store.USER_TABLE
    staging = "staging_graphs_segment"
    frame = pd.DataFrame({"external_id": external_ids, "label": values})
    with connection.cursor() as cursor:
        if store.is_postgres():
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {staging} (external_id text, label text) "
                "ON COMMIT DROP"
            )
            cursor.execute(f"TRUNCATE {staging}")
        else:
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (external_id, label)")
            cursor.execute(f"DELETE FROM {staging}")
    if store.is_postgres():
        store._copy_csv(staging, ["external_id", "label"], frame)
        clear = (
            f"UPDATE {table} SET attributes = attributes - %s "
            "WHERE project_id = %s AND attributes ? %s"
        )
        update = (
            f"UPDATE {table} AS u "
            "SET attributes = u.attributes || jsonb_build_object(%s, s.label), "
            f"updated_at = now() FROM {staging} AS s "
            "WHERE u.project_id = %s AND u.external_id = s.external_id"
        )
        clear_params = [field, project_id, field]
        update_params = [field, project_id]
    else:
        store._executemany(
            f"INSERT INTO {staging} (external_id, label) VALUES (%s, %s)",
            list(zip(external_ids, values, strict=True)),
        )
        path = f'$."{field}"'
        clear = (
            f"UPDATE {table} SET attributes = json_remove(attributes, %s) "
            "WHERE project_id = %s AND json_type(attributes, %s) IS NOT NULL"
        )
        update = (
            f"UPDATE {table} SET attributes = json_set(attributes, %s, s.label), "
            f"updated_at = datetime('now') FROM {staging} AS s "
            f"WHERE {table}.project_id = %s AND {table}.external_id = s.external_id"
        )
        clear_params = [path, project_id, path]
        update_params = [path, project_id]
    with connection.cursor() as cursor:
        cursor.execute(clear, clear_params)
        cursor.execute(update, update_params)
        written = cursor.rowcount
        cursor.execute(f"DELETE FROM {staging}")
    return written


def save_segment_field(*, run: ClusteringRun, field: str = DEFAULT_SEGMENT_FIELD, user=None) -> int:
    """Write each clustered user's segment number (as text, e.g. "3") into their attributes
    under ``field`` and add ``field`` to the users' schema as a categorical field, so filters
    (``Users.SEGMENT = "3"``), promotions and recipes can use it. Users the run did not
    cluster lose the field. Returns the number of users written. ``ValueError`` for a run
    without labels or a field name that cannot be used."""
    field = check_field_name(run.project, field)
    labels = load_labels(run)
    labels = labels[labels >= 0]
    with transaction.atomic():
        written = _write_labels(
            run.project_id, field, labels.index.tolist(), [str(int(v)) for v in labels]
        )
        schema = dataset_imports.get_schema(run.project, "users")
        if field.upper() not in {f.name.upper() for f in schema}:
            dataset_imports.save_schema(
                project=run.project,
                kind="users",
                fields=[*schema, Field(field, "categorical")],
            )
        else:  # touch it, so caches keyed on the schema's update time refresh
            from datasets.models import DatasetSchema

            DatasetSchema.objects.filter(project=run.project, kind="users").update(
                updated_at=timezone.now()
            )
        run.saved_fields = [
            *[e for e in run.saved_fields if e.get("field") != field],
            {
                "field": field,
                "users": written,
                "at": timezone.now().isoformat(timespec="seconds"),
                "by": getattr(user, "username", "") if user else "",
            },
        ]
        run.save(update_fields=["saved_fields"])
        # Another run that wrote the same field no longer describes it.
        for other in ClusteringRun.objects.filter(project=run.project).exclude(pk=run.pk):
            kept = [e for e in other.saved_fields if e.get("field") != field]
            if len(kept) != len(other.saved_fields):
                other.saved_fields = kept + [{"field": field, "replaced_by": run.pk}]
                other.save(update_fields=["saved_fields"])
    return written


def saved_segment_values(project: Project, exclude=()) -> dict[str, tuple[list, list]]:
    """The current values of the project's saved segment fields, ``{field: (user ids,
    values)}``, leaving out the fields named in ``exclude`` (any case). A users import reads
    them before it replaces the users' attributes and puts them back afterwards
    (:func:`restore_segment_values`), so re-importing users keeps their segments."""
    from django.db.models.fields.json import KeyTextTransform

    from datasets.models import EndUser

    skip = {name.upper() for name in exclude}
    kept = {}
    for field in selectors.segment_fields(project):
        if field.upper() in skip:
            continue
        rows = list(
            EndUser.objects.filter(project=project)
            .annotate(_segment=KeyTextTransform(field, "attributes"))
            .exclude(_segment__isnull=True)
            .values_list("external_id", "_segment")
        )
        if rows:
            kept[field] = ([r[0] for r in rows], [str(r[1]) for r in rows])
    return kept


def restore_segment_values(project_id: int, kept: dict[str, tuple[list, list]]) -> None:
    """Write back what :func:`saved_segment_values` read (set-based, like saving them)."""
    for field, (external_ids, values) in kept.items():
        _write_labels(project_id, field, external_ids, values)


def segment_names(run: ClusteringRun) -> dict[str, str]:
    """Cluster number (as text) -> display name such as "Segment 2 · Shoes, Sports"."""
    return {str(p["label"]): p.get("name") or f"Segment {p['label']}" for p in run.profiles}


# --- the follow source -------------------------------------------------------------------------


def followed_users_liked(
    project: Project, user_external_id: str, k: int = 10
) -> list[tuple[str, float, str]]:
    """Items the users ``user_external_id`` follows interacted with, for a feed:
    ``[(item_external_id, score, reason), ...]`` best first. Score in (0, 1] (recent events
    and heavier follows count more, see ``graphs.analysis.follow_source``); reason like
    "liked by 3 people you follow". Items the user already interacted with are left out.
    An unknown user, or one who follows nobody, gets an empty list."""
    from graphs.analysis.follow_source import reason, top_followed_items

    user_pk = selectors.end_user_pk(project, str(user_external_id))
    if user_pk is None:
        return []
    activity = selectors.followed_activity(project, user_pk)
    ranked = top_followed_items(
        activity.followee_weights,
        activity.event_users,
        activity.event_items,
        timestamps=activity.timestamps,
        exclude_items=activity.seen_items,
        k=k,
    )
    names = selectors.item_external_ids(project, [item for item, _, _ in ranked])
    return [
        (names[int(item)], score, reason(count))
        for item, score, count in ranked
        if int(item) in names
    ]
