"""Behavioural segments and graph communities: features from events, goal-correlation
filtering, scaling, outlier removal, k-means with k chosen by silhouette, spectral clustering,
Louvain communities, and the quality numbers the charts show.

The behavioural pipeline follows the one Amplitude describes for its Recommend product:

1. :func:`behavioural_features`: per user, events per event type and per category, recency,
   frequency (events, active days) and distinct items;
2. :func:`select_features`: keep the features whose rank correlation with the user's goal
   count (e.g. purchases) reaches a threshold, always at least a few;
3. :func:`scale_features`: category counts become the user's category mix (so a heavy and a
   light user with the same taste look alike), skewed counts get ``log1p``, then every
   column is standardised;
4. :func:`remove_outliers`: the most isolated users (isolation forest) are left out of the
   k-means fit and assigned to their nearest segment afterwards;
5. :func:`choose_k`: k-means for every k of a range, the k with the best silhouette wins.

:func:`segment_users` runs all five and returns labels for every user plus a report.
Arrays in, arrays / DataFrames out; this module must stay free of Django.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import community as community_louvain
import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.ensemble import IsolationForest
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_samples,
    silhouette_score,
)
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

DAY = 86_400
CATEGORY_PREFIX = "category:"
EVENT_PREFIX = "events:"
DEFAULT_K_VALUES = tuple(range(2, 11))
# Silhouette is O(n^2): above this many users it is computed on a seeded sample of this size.
SILHOUETTE_SAMPLE = 2_000
# Below this many users outlier removal is skipped: every user counts.
MIN_USERS_FOR_OUTLIERS = 20
SKEW_FOR_LOG = 1.0
# Below this many users k-means runs single-threaded: OpenMP start-up and spinning cost more
# than they save on small inputs, a lot more on a busy machine.
SINGLE_THREAD_MAX_ROWS = 50_000
DEFAULT_RESOLUTIONS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


# --- 1. features ------------------------------------------------------------------------------
def _category_lookup(item_categories: Any) -> pd.Series:
    """Item key -> category string; a plain array is indexed by position (item row)."""
    if isinstance(item_categories, pd.Series):
        return item_categories
    if isinstance(item_categories, dict):
        return pd.Series(item_categories, dtype=object)
    return pd.Series(np.asarray(item_categories, dtype=object))


def behavioural_features(
    users: Any,
    items: Any,
    event_types: Any = None,
    *,
    weights: Any = None,
    timestamps: Any = None,
    item_categories: Any = None,
    now: float | None = None,
    user_ids: Any = None,
) -> pd.DataFrame:
    """One row per user, indexed by user id, describing what they do.

    Inputs are aligned per event (or per aggregated cell, with ``weights`` = its event count):
    ``users`` and ``items`` (ids or rows), optional ``event_types``, ``timestamps`` (unix
    seconds) and ``item_categories`` (item -> category, a dict or Series keyed like ``items``,
    or an array indexed by item row; ``"Shoes|Running"`` counts for both). ``user_ids`` fixes
    the rows (users without events get zeros); by default every user seen, in sorted order.

    Columns: ``events`` (frequency), ``distinct_items``, ``events:<type>`` per event type,
    ``category:<name>`` per category, and with timestamps ``active_days`` and ``recency_days``
    (days from the user's last event to ``now``, default the latest timestamp).
    """
    users = np.asarray(users, dtype=object)
    items = np.asarray(items, dtype=object)
    if users.ndim != 1 or users.shape != items.shape:
        raise ValueError(
            "users and items must be 1-D arrays of the same length (one per event), got shapes "
            f"{users.shape} and {items.shape}."
        )
    if len(users) == 0:
        raise ValueError("No events: behavioural features need at least one event per user.")
    w = np.ones(len(users)) if weights is None else np.asarray(weights, dtype=float)
    for name, values in (("weights", w), ("event_types", event_types), ("timestamps", timestamps)):
        if values is not None and len(values) != len(users):
            raise ValueError(
                f"{name} must have one value per event: {len(values)} for {len(users)} events."
            )
    events = pd.DataFrame({"user": users, "item": items, "w": w})
    index = (
        pd.Index(pd.unique(np.asarray(user_ids, dtype=object)), name="user_id")
        if user_ids is not None
        else pd.Index(np.sort(pd.unique(users)), name="user_id")
    )
    by_user = events.groupby("user", sort=False)
    out = {
        "events": by_user.w.sum(),
        "distinct_items": by_user.item.nunique(),
    }
    if event_types is not None:
        events["type"] = np.asarray(event_types, dtype=object).astype(str)
        per_type = events.pivot_table(
            index="user", columns="type", values="w", aggfunc="sum", fill_value=0.0
        )
        for t in sorted(per_type.columns):
            out[EVENT_PREFIX + t] = per_type[t]
    if item_categories is not None:
        lookup = _category_lookup(item_categories)
        cats = lookup.reindex(events.item.to_numpy()).fillna("").astype(str).str.split("|")
        exploded = pd.DataFrame(
            {"user": np.repeat(events.user.to_numpy(), cats.str.len()), "cat": cats.explode()}
        )
        exploded["w"] = np.repeat(events.w.to_numpy(), cats.str.len())
        exploded["cat"] = exploded.cat.str.strip()
        exploded = exploded[exploded.cat != ""]
        if not exploded.empty:
            per_cat = exploded.pivot_table(
                index="user", columns="cat", values="w", aggfunc="sum", fill_value=0.0
            )
            for c in sorted(per_cat.columns):
                out[CATEGORY_PREFIX + c] = per_cat[c]
    frame = pd.DataFrame(out).reindex(index).fillna(0.0).astype(float)
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=float)
        reference = float(np.nanmax(ts)) if now is None else float(now)
        events["day"] = np.floor(ts / DAY)
        events["ts"] = ts
        frame["active_days"] = events.groupby("user").day.nunique().reindex(index).fillna(0)
        last = events.groupby("user").ts.max().reindex(index)
        # Users without events count as long gone: as old as the oldest event.
        recency = (reference - last) / DAY
        frame["recency_days"] = recency.fillna((reference - np.nanmin(ts)) / DAY).clip(lower=0)
    frame.index.name = "user_id"
    return frame


# --- 2. goal-correlation filter ----------------------------------------------------------------
def select_features(
    frame: pd.DataFrame,
    goal: Any = None,
    *,
    min_abs_corr: float = 0.05,
    min_features: int = 3,
) -> tuple[list[str], dict[str, Any]]:
    """The columns of ``frame`` worth clustering on, judged against the goal.

    A feature is kept when the absolute Spearman (rank) correlation between it and ``goal``
    (the user's goal-event count, aligned with the rows) is at least ``min_abs_corr``. When
    fewer than ``min_features`` pass, the best-correlated ones are kept up to that number.
    Constant columns are always dropped. Without a goal (``None``, or the same count for
    everyone) nothing can be judged: every non-constant feature is kept and the report says so.

    Returns ``(kept_columns, report)`` with ``correlation`` per feature, ``kept``, ``dropped``,
    ``constant`` and ``note``.
    """
    constant = [c for c in frame.columns if frame[c].nunique(dropna=True) <= 1]
    candidates = [c for c in frame.columns if c not in constant]
    report: dict[str, Any] = {
        "min_abs_corr": float(min_abs_corr),
        "min_features": int(min_features),
        "constant": constant,
        "correlation": {},
        "note": "",
    }
    if not candidates:
        raise ValueError(
            "Every behavioural feature has the same value for every user, so there is nothing "
            "to cluster on; the users need more varied activity (or more users)."
        )
    goal_values = None if goal is None else pd.Series(np.asarray(goal, dtype=float))
    if goal_values is not None and len(goal_values) != len(frame):
        raise ValueError(
            f"goal must have one value per user row: {len(goal_values)} values, {len(frame)} users."
        )
    if goal_values is None or goal_values.nunique() <= 1:
        report["note"] = (
            "No goal to correlate with (no goal events, or the same count for every user): "
            "all non-constant features were kept."
        )
        report.update(kept=candidates, dropped=[])
        return candidates, report
    ranks = frame[candidates].rank().to_numpy()
    goal_rank = goal_values.rank().to_numpy()
    ranks = ranks - ranks.mean(axis=0)
    goal_rank = goal_rank - goal_rank.mean()
    denominator = np.sqrt((ranks**2).sum(axis=0) * (goal_rank**2).sum())
    corr = (ranks * goal_rank[:, None]).sum(axis=0) / np.where(denominator > 0, denominator, 1)
    correlation = dict(zip(candidates, np.round(corr, 4).tolist(), strict=True))
    order = sorted(candidates, key=lambda c: -abs(correlation[c]))
    kept = [c for c in order if abs(correlation[c]) >= min_abs_corr]
    if len(kept) < min_features:
        kept = order[: max(min_features, len(kept))]
        report["note"] = (
            f"Only {sum(abs(correlation[c]) >= min_abs_corr for c in order)} feature(s) reach "
            f"|correlation| >= {min_abs_corr}; kept the {len(kept)} best-correlated."
        )
    kept = [c for c in candidates if c in set(kept)]  # original column order
    report.update(
        correlation=correlation,
        kept=kept,
        dropped=[c for c in candidates if c not in set(kept)],
    )
    return kept, report


# --- 3. scaling -------------------------------------------------------------------------------
def scale_features(frame: pd.DataFrame, columns: list[str] | None = None):
    """``(Z, report)``: the chosen columns as a standardised float matrix, one row per user.

    Category counts become each user's category mix (share of their events among the chosen
    categories); other non-negative columns with skewness above 1 get ``log1p``; then every
    column is standardised (mean 0, variance 1). ``report`` lists ``mix`` and ``log1p``.
    """
    columns = list(frame.columns) if columns is None else list(columns)
    if not columns:
        raise ValueError("No features to scale: select at least one column.")
    data = frame[columns].astype(float).copy()
    data = data.fillna(data.median())
    mix = [c for c in columns if c.startswith(CATEGORY_PREFIX)]
    if mix:
        totals = data[mix].sum(axis=1).to_numpy()
        data[mix] = data[mix].to_numpy() / np.where(totals > 0, totals, 1.0)[:, None]
    logged = [
        c
        for c in columns
        if c not in mix and data[c].min() >= 0 and float(data[c].skew() or 0.0) > SKEW_FOR_LOG
    ]
    data[logged] = np.log1p(data[logged])
    Z = StandardScaler().fit_transform(data.to_numpy())
    return Z, {"mix": mix, "log1p": logged}


# --- 4. outliers --------------------------------------------------------------------------------
def remove_outliers(Z: np.ndarray, *, share: float = 0.02, seed: int = 0):
    """``(inlier_mask, report)``: the ``share`` most isolated rows flagged by an isolation
    forest. ``share=0`` or fewer than 20 rows keeps everyone."""
    Z = np.asarray(Z, dtype=float)
    n = len(Z)
    if not 0 <= share < 0.5:
        raise ValueError(f"outlier share must be in [0, 0.5), got {share}.")
    report = {"method": "isolation forest", "share": float(share), "removed": 0}
    if share == 0 or n < MIN_USERS_FOR_OUTLIERS:
        report["note"] = (
            "outlier removal is off"
            if share == 0
            else f"fewer than {MIN_USERS_FOR_OUTLIERS} users: outlier removal skipped"
        )
        return np.ones(n, dtype=bool), report
    forest = IsolationForest(contamination=share, random_state=seed).fit(Z)
    inliers = forest.predict(Z) == 1
    report["removed"] = int((~inliers).sum())
    return inliers, report


# --- 5. k-means with k by silhouette -------------------------------------------------------------
@dataclass
class KMeansResult:
    """k-means over a range of k, the best by silhouette.

    ``labels`` per row of the input; ``silhouette_by_k`` the curve for the chart;
    ``sample_index`` the rows the silhouette was computed on (all of them below the sample
    size), with ``sample_silhouettes`` / ``sample_labels`` at the chosen k for the per-cluster
    silhouette plot.
    """

    k: int
    labels: np.ndarray
    centers: np.ndarray
    silhouette: float
    silhouette_by_k: dict[int, float]
    sample_index: np.ndarray
    sample_silhouettes: np.ndarray
    sample_labels: np.ndarray
    notes: list[str] = field(default_factory=list)
    model: KMeans | None = None


def _check_k(k: Any, n: int, what: str = "users") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k > n:
        raise ValueError(
            f"k={k} is larger than the number of {what} ({n}): there cannot be more clusters "
            f"than {what}. Choose k <= {n}."
        )
    return int(k)


def _fit_kmeans(Z: np.ndarray, k: int, seed: int, n_init: int) -> KMeans:
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    if len(Z) <= SINGLE_THREAD_MAX_ROWS:
        with threadpool_limits(1, "openmp"):
            return model.fit(Z)
    return model.fit(Z)


def kmeans(Z: np.ndarray, k: int, *, seed: int = 0, n_init: int = 10) -> KMeans:
    """A fitted k-means for one ``k``; ``ValueError`` when ``k`` exceeds the number of rows."""
    Z = np.asarray(Z, dtype=float)
    k = _check_k(k, len(Z))
    return _fit_kmeans(Z, k, seed, n_init)


def choose_k(
    Z: np.ndarray,
    k_values: Any = DEFAULT_K_VALUES,
    *,
    seed: int = 0,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    n_init: int = 10,
) -> KMeansResult:
    """k-means for each ``k`` in ``k_values``; the k with the highest silhouette wins.

    Silhouette needs 2 <= k <= n - 1: values outside are dropped with a note, and a
    ``ValueError`` says so when none is left (e.g. k larger than the number of users). Above
    ``silhouette_sample`` rows the silhouette is computed on a sample drawn with ``seed``.
    """
    Z = np.asarray(Z, dtype=float)
    n = len(Z)
    if Z.ndim != 2 or n == 0:
        raise ValueError(f"Z must be a non-empty 2-D matrix (users x features), got {Z.shape}.")
    if isinstance(k_values, int | np.integer):
        k_values = [k_values]
    try:
        wanted = sorted({int(k) for k in k_values})
    except (TypeError, ValueError):
        raise ValueError(f"k_values must be integers, got {k_values!r}.") from None
    if not wanted:
        raise ValueError("k_values is empty: give a range such as 2..10.")
    if n < 3:
        raise ValueError(
            f"Choosing k by silhouette needs at least 3 users, got {n}: with so few users "
            "there is nothing to segment."
        )
    usable = [k for k in wanted if 2 <= k <= n - 1]
    notes = []
    if not usable:
        raise ValueError(
            f"No usable k in {wanted}: with {n} users k must be between 2 and {n - 1} (k cannot "
            "be larger than the number of users, and silhouette needs at least one user more "
            "than clusters)."
        )
    if len(usable) < len(wanted):
        notes.append(
            f"k values {[k for k in wanted if k not in usable]} skipped: with {n} users k must "
            f"be between 2 and {n - 1}."
        )
    rng = np.random.default_rng(seed)
    if n > silhouette_sample:
        sample = np.sort(rng.choice(n, size=int(silhouette_sample), replace=False))
        notes.append(f"silhouette computed on a sample of {len(sample)} of {n} users")
    else:
        sample = np.arange(n)
    by_k: dict[int, float] = {}
    models: dict[int, KMeans] = {}
    for k in usable:
        model = _fit_kmeans(Z, k, seed, n_init)
        labels = model.labels_[sample]
        n_labels = len(np.unique(labels))
        by_k[k] = float(silhouette_score(Z[sample], labels)) if 1 < n_labels < len(sample) else -1.0
        models[k] = model
    best = max(by_k, key=lambda k: (by_k[k], -k))  # ties: the smaller k
    model = models[best]
    labels = model.labels_
    n_labels = len(np.unique(labels[sample]))
    per_sample = (
        silhouette_samples(Z[sample], labels[sample])
        if 1 < n_labels < len(sample)
        else np.zeros(len(sample))
    )
    return KMeansResult(
        k=best,
        labels=labels.astype(np.int64),
        centers=model.cluster_centers_,
        silhouette=by_k[best],
        silhouette_by_k=by_k,
        sample_index=sample,
        sample_silhouettes=per_sample,
        sample_labels=labels[sample].astype(np.int64),
        notes=notes,
        model=model,
    )


# --- the whole behavioural pipeline ------------------------------------------------------------
@dataclass
class Segmentation:
    """Result of :func:`segment_users`. ``labels`` covers every user (outliers included,
    assigned to their nearest segment); ``outliers`` marks who was left out of the fit."""

    labels: pd.Series
    k: int
    silhouette_by_k: dict[int, float]
    features: list[str]
    outliers: pd.Series
    report: dict[str, Any]
    kmeans: KMeansResult | None = None


def _single_k(k_values: Any) -> int | None:
    values = list(k_values) if not isinstance(k_values, int | np.integer) else [k_values]
    return int(values[0]) if len(values) == 1 else None


def segment_users(
    frame: pd.DataFrame,
    goal: Any = None,
    *,
    k_values: Any = DEFAULT_K_VALUES,
    min_abs_corr: float = 0.05,
    min_features: int = 3,
    outlier_share: float = 0.02,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    seed: int = 0,
) -> Segmentation:
    """Behavioural segments for the users of ``frame`` (from :func:`behavioural_features`).

    ``goal``: per-user goal counts aligned with ``frame`` (e.g. ``frame["events:purchase"]``),
    or ``None``. Runs filter -> scale -> outliers -> k by silhouette (see the module docstring)
    and assigns the outliers to their nearest segment. Fewer than 3 users get one segment
    (nothing to compare), with a note in the report.
    """
    if len(frame) == 0:
        raise ValueError("No users to segment.")
    notes: list[str] = []
    one_k = _single_k(k_values)
    if one_k is not None and one_k > len(frame):
        _check_k(one_k, len(frame))
    if len(frame) < 3 or one_k == 1:
        notes.append(
            "one segment asked for: everyone is in it"
            if one_k == 1
            else f"only {len(frame)} user(s): everyone is in one segment"
        )
        return Segmentation(
            labels=pd.Series(0, index=frame.index, dtype=np.int64),
            k=1,
            silhouette_by_k={},
            features=list(frame.columns),
            outliers=pd.Series(False, index=frame.index),
            report={"notes": notes},
        )
    kept, selection = select_features(
        frame, goal, min_abs_corr=min_abs_corr, min_features=min_features
    )
    Z, scaling = scale_features(frame, kept)
    inliers, outlier_report = remove_outliers(Z, share=outlier_share, seed=seed)
    result = choose_k(Z[inliers], k_values, seed=seed, silhouette_sample=silhouette_sample)
    labels = np.empty(len(Z), dtype=np.int64)
    labels[inliers] = result.labels
    if (~inliers).any():
        labels[~inliers] = result.model.predict(Z[~inliers])
    notes += result.notes
    report = {
        "selection": selection,
        "scaling": scaling,
        "outliers": outlier_report,
        "k": result.k,
        "silhouette": result.silhouette,
        "silhouette_by_k": result.silhouette_by_k,
        "sizes": np.bincount(labels, minlength=result.k).tolist(),
        "notes": notes,
    }
    return Segmentation(
        labels=pd.Series(labels, index=frame.index, name="segment"),
        k=result.k,
        silhouette_by_k=result.silhouette_by_k,
        features=kept,
        outliers=pd.Series(~inliers, index=frame.index, name="outlier"),
        report=report,
        kmeans=result,
    )


def cluster_profiles(frame: pd.DataFrame, labels: Any, *, top: int = 3) -> pd.DataFrame:
    """One row per cluster: ``size``, ``share``, mean ``events`` / ``distinct_items`` (when
    present) and ``top_categories`` (the categories with the largest share of the cluster's
    events), for the cluster-profile table."""
    labels = pd.Series(np.asarray(labels), index=frame.index, name="cluster")
    grouped = frame.groupby(labels)
    out = pd.DataFrame({"size": grouped.size()})
    out["share"] = out["size"] / out["size"].sum()
    for column in ("events", "distinct_items", "recency_days"):
        if column in frame.columns:
            out["mean_" + column] = grouped[column].mean()
    cats = [c for c in frame.columns if c.startswith(CATEGORY_PREFIX)]
    if cats:
        sums = grouped[cats].sum()
        shares = sums.div(sums.sum(axis=1).replace(0, 1), axis=0)
        out["top_categories"] = [
            [c[len(CATEGORY_PREFIX) :] for c in row.sort_values(ascending=False).index[:top]]
            for _, row in shares.iterrows()
        ]
    return out


# --- graphs: spectral and Louvain ----------------------------------------------------------------
def undirected_weighted(graph: nx.Graph) -> nx.Graph:
    """The undirected view of a follower graph: one edge per pair of users, weighted by the sum
    of both directions (mutual follows count twice). Isolated users stay as nodes."""
    if not graph.is_directed():
        return graph
    out = nx.Graph()
    out.add_nodes_from(graph.nodes)
    for u, v, w in graph.edges(data="weight", default=1.0):
        if out.has_edge(u, v):
            out[u][v]["weight"] += w
        else:
            out.add_edge(u, v, weight=w)
    return out


def spectral_clusters(
    data: Any, k: int, *, seed: int = 0, n_neighbors: int = 10
) -> tuple[pd.Series, dict[str, Any]]:
    """Spectral clustering into ``k`` clusters, of a graph or of a feature matrix.

    * a ``networkx`` graph: the (undirected, weighted) adjacency is the affinity; users
      without edges cannot be placed and get label ``-1`` (counted in the report);
    * a DataFrame / 2-D array of scaled features: a ``n_neighbors`` nearest-neighbour graph.

    Returns labels (a Series indexed by node or by the frame's index) and a report with the
    quality: modularity for a graph, silhouette for features.
    """
    report: dict[str, Any] = {"k": k, "notes": []}
    if isinstance(data, nx.Graph):
        graph = undirected_weighted(data)
        nodes = [v for v in graph.nodes if graph.degree(v) > 0]
        if not nodes:
            raise ValueError("The graph has no edges: spectral clustering needs connections.")
        k = _check_k(k, len(nodes), "users with edges")
        adjacency = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight="weight", format="csr")
        affinity = sp.csr_matrix(adjacency, dtype=np.float64)
        affinity.indices = affinity.indices.astype(np.int32)  # sklearn wants 32-bit indices
        affinity.indptr = affinity.indptr.astype(np.int32)
        model = SpectralClustering(
            n_clusters=k, affinity="precomputed", assign_labels="cluster_qr", random_state=seed
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = model.fit_predict(affinity)
        report["notes"] += [str(w.message) for w in caught if "connected" in str(w.message)]
        out = pd.Series(-1, index=pd.Index(list(graph.nodes), name="user_id"), dtype=np.int64)
        out.loc[nodes] = labels
        partition = {v: int(c) for v, c in zip(nodes, labels, strict=True)}
        sub = graph.subgraph(nodes)
        report.update(
            clustered=len(nodes),
            unclustered=int(graph.number_of_nodes() - len(nodes)),
            modularity=float(community_louvain.modularity(partition, sub, weight="weight")),
            sizes=np.bincount(labels, minlength=k).tolist(),
        )
        return out, report
    index = data.index if isinstance(data, pd.DataFrame) else None
    Z = np.asarray(data, dtype=float)
    if Z.ndim != 2 or len(Z) == 0:
        raise ValueError(f"features must be a non-empty 2-D matrix, got shape {Z.shape}.")
    k = _check_k(k, len(Z))
    model = SpectralClustering(
        n_clusters=k,
        affinity="nearest_neighbors",
        n_neighbors=max(1, min(n_neighbors, len(Z) - 1)),
        assign_labels="cluster_qr",
        random_state=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = model.fit_predict(Z)
    report["notes"] += [str(w.message) for w in caught if "connected" in str(w.message)]
    n_labels = len(np.unique(labels))
    report.update(
        clustered=len(Z),
        silhouette=float(silhouette_score(Z, labels)) if 1 < n_labels < len(Z) else None,
        sizes=np.bincount(labels, minlength=k).tolist(),
    )
    return pd.Series(labels.astype(np.int64), index=index, name="cluster"), report


@dataclass
class LouvainResult:
    """Louvain communities. ``partition`` maps every user to a community number, numbered by
    size (0 = largest); ``modularity`` is the standard (resolution 1) modularity of that
    partition, comparable across resolutions; ``sizes`` is sorted, largest first."""

    partition: dict[Any, int]
    modularity: float
    sizes: list[int]
    resolution: float
    singletons: int

    @property
    def n_communities(self) -> int:
        return len(self.sizes)

    def labels(self) -> pd.Series:
        return pd.Series(self.partition, name="community").rename_axis("user_id")


def louvain(graph: nx.Graph, *, resolution: float = 1.0, seed: int = 0) -> LouvainResult:
    """Louvain communities (python-louvain) of the undirected, weighted view of ``graph``.

    ``resolution`` is python-louvain's: values above 1 split communities into more, smaller
    ones (like networkx's ``louvain_communities``). python-louvain 0.16 also applies it to its
    stopping rule, so values well below 1 stop merging early and give many small communities
    too; 1 is the standard choice and :func:`modularity_sweep` shows the effect on a graph.
    Users without edges end up alone (counted in ``singletons``). ``ValueError`` for a graph
    without edges or a resolution that is not positive.
    """
    if not resolution > 0:
        raise ValueError(f"resolution must be a positive number, got {resolution!r}.")
    und = undirected_weighted(graph)
    if und.number_of_edges() == 0:
        raise ValueError(
            "The graph has no edges: Louvain needs follower edges to find communities."
        )
    raw = community_louvain.best_partition(
        und, weight="weight", resolution=float(resolution), random_state=seed
    )
    counts = pd.Series(raw).value_counts()
    renumber = {old: new for new, old in enumerate(counts.index)}
    partition = {node: renumber[c] for node, c in raw.items()}
    return LouvainResult(
        partition=partition,
        modularity=float(community_louvain.modularity(partition, und, weight="weight")),
        sizes=counts.to_numpy().tolist(),
        resolution=float(resolution),
        singletons=int((counts == 1).sum()),
    )


def modularity_sweep(
    graph: nx.Graph, resolutions: Any = DEFAULT_RESOLUTIONS, *, seed: int = 0
) -> pd.DataFrame:
    """Louvain at each resolution: one row each with ``resolution``, ``communities``,
    ``communities_2plus`` (with at least two users), ``modularity`` and ``largest_share``,
    for the modularity-against-resolution chart."""
    rows = []
    for r in resolutions:
        result = louvain(graph, resolution=float(r), seed=seed)
        total = sum(result.sizes)
        rows.append(
            {
                "resolution": float(r),
                "communities": result.n_communities,
                "communities_2plus": result.n_communities - result.singletons,
                "modularity": result.modularity,
                "largest_share": result.sizes[0] / total,
            }
        )
    return pd.DataFrame(rows)


# --- quality -------------------------------------------------------------------------------------
def compare_partitions(a: Any, b: Any) -> dict[str, float]:
    """Agreement of two labelings of the same users (Series or dicts keyed by user id), on the
    users both label: adjusted Rand index and normalised mutual information (1 = identical up
    to renaming, about 0 = chance)."""
    a = pd.Series(a)
    b = pd.Series(b)
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ValueError("The two labelings have no user in common.")
    x, y = a.loc[common].astype(str), b.loc[common].astype(str)
    return {
        "ari": float(adjusted_rand_score(x, y)),
        "nmi": float(normalized_mutual_info_score(x, y)),
        "users": int(len(common)),
    }
