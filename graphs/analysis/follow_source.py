"""The "followed users liked this" source, and a report on whether it (or segments) helps.

Arrays in, arrays out; this module must stay free of Django.

Scoring. For a user ``u`` who follows users ``v`` with weight ``a[u, v]``, an item ``i`` gets

    score(u, i) = sum_v a[u, v] * w[v, i] / sum_v a[u, v]

where ``w[v, i]`` is what ``v`` did with ``i``: the number of events (or their weights), each
multiplied by ``0.5 ** (age / half_life)`` when timestamps and a half-life are given, so last
week's purchases count more than last year's views. Scores are then divided by the user's
best score, so they lie in (0, 1] and blend with other sources. ``count(u, i)`` is the number
of followed users who interacted with the item, for the reason shown to people ("liked by 3
people you follow").

The report (:func:`compare_sources`) splits the events with Protocol R, fits a base recipe
(``user-personalization``), a blend of it with the follow source, the follow source alone
and ``segment-affinity``, and gives each one's NDCG@10 and the share of its recommended items
that followed users interacted with (in the training part).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

DAY = 86_400.0
DEFAULT_HALF_LIFE_DAYS = 30.0
DEFAULT_BLEND_WEIGHT = 0.3


def adjacency_matrix(
    followers: Any, followees: Any, n_users: int, weights: Any = None
) -> sp.csr_matrix:
    """``A[u, v]`` = weight of "``u`` follows ``v``" from aligned row arrays (duplicates summed,
    self-loops dropped)."""
    followers = np.asarray(followers, dtype=np.int64)
    followees = np.asarray(followees, dtype=np.int64)
    if followers.shape != followees.shape or followers.ndim != 1:
        raise ValueError("followers and followees must be 1-D row arrays of the same length.")
    w = np.ones(len(followers)) if weights is None else np.asarray(weights, dtype=float)
    keep = (followers != followees) & np.isfinite(w) & (w > 0)
    A = sp.csr_matrix(
        (w[keep], (followers[keep], followees[keep])), shape=(n_users, n_users), dtype=np.float64
    )
    A.sum_duplicates()
    return A


def _decayed(
    X: sp.csr_matrix, timestamps: Any, half_life_days: float | None, now: float | None
) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    if timestamps is None or not half_life_days:
        return X
    ts = np.asarray(timestamps, dtype=float)
    if ts.shape != X.data.shape:
        raise ValueError(
            f"timestamps must have one value per stored cell of the matrix ({X.nnz}), got "
            f"{ts.shape}."
        )
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}.")
    now = float(ts.max()) if now is None and len(ts) else float(now or 0.0)
    age_days = np.maximum(now - ts, 0.0) / DAY
    X.data *= 0.5 ** (age_days / float(half_life_days))
    return X


def follow_scores(
    adjacency: sp.csr_matrix,
    interactions: sp.csr_matrix,
    *,
    timestamps: Any = None,
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS,
    now: float | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(scores, counts)``, both users x items CSR.

    ``adjacency`` is users x users (row follows column; the rows may be a subset of users, e.g.
    one), ``interactions`` users x items
    (weights, e.g. event counts) with optional ``timestamps`` per stored cell (the cell's
    latest event). ``scores`` are normalised per user to a maximum of 1; ``counts`` is the
    number of followed users who interacted with each item.
    """
    A = sp.csr_matrix(adjacency, dtype=np.float64)
    X = sp.csr_matrix(interactions)
    if A.shape[1] != X.shape[0]:
        raise ValueError(
            "adjacency (users x followed users) must have one column per row of interactions "
            f"(followed users x items); got {A.shape} and {X.shape}."
        )
    out_weight = np.asarray(A.sum(axis=1)).ravel()
    inverse = np.divide(1.0, out_weight, out=np.zeros_like(out_weight), where=out_weight > 0)
    scores = sp.csr_matrix(sp.diags(inverse) @ A @ _decayed(X, timestamps, half_life_days, now))
    best = np.zeros(scores.shape[0])
    has = np.diff(scores.indptr) > 0
    if has.any():
        best[has] = np.maximum.reduceat(scores.data, scores.indptr[:-1][has])
    scale = np.divide(1.0, best, out=np.zeros_like(best), where=best > 0)
    scores = sp.csr_matrix(sp.diags(scale) @ scores)
    binary_a = A.copy()
    binary_a.data[:] = 1.0
    binary_x = X.astype(np.float64, copy=True)
    binary_x.data[:] = 1.0
    counts = sp.csr_matrix(binary_a @ binary_x)
    return scores, counts


def reason(count: int) -> str:
    """The sentence shown next to an item from this source."""
    return f"liked by {count} {'person' if count == 1 else 'people'} you follow"


def top_followed_items(
    followee_weights: Any,
    event_followees: Any,
    event_items: Any,
    *,
    event_weights: Any = None,
    timestamps: Any = None,
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS,
    now: float | None = None,
    exclude_items: Any = (),
    k: int = 10,
) -> list[tuple[Any, float, int]]:
    """For ONE user: the ``k`` best items their followed users interacted with.

    ``followee_weights`` maps each followed user to the weight of the follow (a dict, or a
    sequence of followed users with weight 1); the events (``event_followees``,
    ``event_items``, optional ``event_weights`` and ``timestamps`` in unix seconds) are those
    of the followed users. Items in ``exclude_items`` (what the user already knows) are left
    out. Returns ``(item, score, count)`` best first; score in (0, 1], count = followed users
    who interacted with the item. Ties go to the item more followed users interacted with.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if not isinstance(followee_weights, dict):
        followee_weights = dict.fromkeys(followee_weights, 1.0)
    event_followees = np.asarray(event_followees, dtype=object)
    event_items = np.asarray(event_items, dtype=object)
    if not followee_weights or len(event_items) == 0:
        return []
    followees = list(followee_weights)
    f_index = {f: n for n, f in enumerate(followees)}
    rows = np.array([f_index.get(f, -1) for f in event_followees], dtype=np.int64)
    known = rows >= 0
    excluded = set(exclude_items)
    keep_item = np.array([i not in excluded for i in event_items], dtype=bool)
    keep = known & keep_item
    if not keep.any():
        return []
    items, columns = np.unique(event_items[keep], return_inverse=True)
    w = np.ones(keep.sum()) if event_weights is None else np.asarray(event_weights, float)[keep]
    if timestamps is not None and half_life_days:
        ts = np.asarray(timestamps, dtype=float)
        now = float(ts.max()) if now is None else float(now)
        w = w * 0.5 ** (np.maximum(now - ts[keep], 0.0) / DAY / float(half_life_days))
    X = sp.csr_matrix((w, (rows[keep], columns)), shape=(len(followees), len(items)))
    X.sum_duplicates()
    A = sp.csr_matrix(np.array([[float(followee_weights[f]) for f in followees]]))
    scores, counts = follow_scores(A, X, half_life_days=None)
    s = scores.toarray().ravel()
    c = counts.toarray().ravel().astype(np.int64)
    order = np.lexsort((-c, -s))[: int(k)]
    return [(items[j], float(s[j]), int(c[j])) for j in order if s[j] > 0]


# --- recipe-like wrappers for the evaluation harness ---------------------------------------------
def _minmax_rows(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    out = np.where(finite, (scores - low) / span, 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _top(scores: np.ndarray, k: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    scores = scores.astype(np.float64, copy=True)
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        r, c = ex.nonzero()
        scores[r, c] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(part_scores, order, axis=1)
    items = np.where(np.isfinite(values), items, -1)
    return items, values


class FollowSource:
    """The follow source alone as a recipe for :func:`evaluate_recipe`: items ranked by
    :func:`follow_scores`, then by popularity for users whose followed users did nothing."""

    def __init__(self, adjacency, *, timestamps=None, half_life_days=DEFAULT_HALF_LIFE_DAYS):
        self.adjacency = adjacency
        self.timestamps = timestamps
        self.half_life_days = half_life_days

    def fit(self, X, **_):
        X = sp.csr_matrix(X)
        self.scores_, _counts = follow_scores(
            self.adjacency, X, timestamps=self.timestamps, half_life_days=self.half_life_days
        )
        popularity = np.asarray((X > 0).sum(axis=0)).ravel().astype(float)
        self.popularity_ = popularity / max(popularity.max(), 1.0) * 1e-3
        return self

    def _score_users(self, rows):
        return self.scores_[rows].toarray() + self.popularity_

    def recommend(self, rows, k, exclude=None):
        return _top(self._score_users(np.asarray(rows)), int(k), exclude)


class FollowBlend:
    """A fitted-on-fit base recipe blended with the follow source:
    ``(1 - weight) * base (min-max per user) + weight * follow score``."""

    def __init__(
        self,
        base,
        adjacency,
        *,
        weight: float = DEFAULT_BLEND_WEIGHT,
        timestamps=None,
        half_life_days=DEFAULT_HALF_LIFE_DAYS,
        fit_kwargs: dict | None = None,
    ):
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must be between 0 and 1, got {weight}.")
        self.base = base
        self.weight = weight
        self.follow = FollowSource(adjacency, timestamps=timestamps, half_life_days=half_life_days)
        self.fit_kwargs = fit_kwargs or {}

    def fit(self, X, **kwargs):
        self.base.fit(X, **{**kwargs, **self.fit_kwargs})
        self.follow.fit(X)
        return self

    def recommend(self, rows, k, exclude=None):
        rows = np.asarray(rows)
        base = _minmax_rows(np.asarray(self.base._score_users(rows), dtype=np.float64))
        follow = self.follow.scores_[rows].toarray()
        return _top((1 - self.weight) * base + self.weight * follow, int(k), exclude)


class _WithKwargs:
    def __init__(self, recipe, fit_kwargs):
        self.recipe, self.fit_kwargs = recipe, fit_kwargs

    def fit(self, X, **kwargs):
        self.recipe.fit(X, **{**kwargs, **self.fit_kwargs})
        return self

    def recommend(self, rows, k, exclude=None):
        return self.recipe.recommend(rows, k, exclude=exclude)


def followed_share(lists: np.ndarray, counts: sp.csr_matrix, users: np.ndarray, k: int) -> float:
    """Share of the recommended items (top ``k`` of ``users``' lists) that at least one followed
    user interacted with, according to ``counts`` (from :func:`follow_scores`)."""
    top = lists[users, :k]
    rows = np.repeat(users, top.shape[1])
    flat = top.ravel()
    real = flat >= 0
    if not real.any():
        return 0.0
    hits = np.asarray(counts[rows[real], flat[real]]).ravel() > 0
    return float(hits.mean())


@dataclass
class SourceResult:
    name: str
    ndcg: float
    recall: float
    followed_share: float
    seconds: float

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "ndcg": self.ndcg,
            "recall": self.recall,
            "followed_share": self.followed_share,
            "seconds": self.seconds,
        }


def compare_sources(
    user_rows: Any,
    item_rows: Any,
    n_users: int,
    n_items: int,
    adjacency: sp.csr_matrix,
    *,
    timestamps: Any = None,
    event_types: Any = None,
    item_features: Any = None,
    base_params: dict | None = None,
    blend_weight: float = DEFAULT_BLEND_WEIGHT,
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS,
    include_segments: bool = True,
    segment_params: dict | None = None,
    seed: int = 0,
    k: int = 10,
    log=None,
) -> dict:
    """Does the follow source or segment-affinity help? One Protocol R split (seed ``seed``),
    and for each candidate its NDCG@k, recall@k and the share of its top-k items that followed
    users interacted with in the training part.

    Candidates: ``user-personalization`` (the base, ``base_params``), the base blended with
    the follow source (``blend_weight``), the follow source alone, and ``segment-affinity``
    (when ``include_segments``; it needs event types and item categories to be useful).
    Only users with follow edges AND test items are scored in the "followed users" rows;
    the ``all users`` numbers cover every test user. Returns a dict ready to store as JSON.
    """
    from models_app.evaluation.harness import recommend_all
    from models_app.evaluation.metrics import evaluate_rankings
    from models_app.evaluation.splits import protocol_r_split
    from models_app.recipes import aggregate_events
    from models_app.recipes.als import ALSRecipe
    from models_app.recipes.segment_affinity import SegmentAffinity

    say = log or (lambda message: None)
    user_rows = np.asarray(user_rows, dtype=np.int64)
    item_rows = np.asarray(item_rows, dtype=np.int64)
    split = protocol_r_split(user_rows, item_rows, n_users, n_items, seed)
    keys = np.sort(split.train.tocoo().row.astype(np.int64) * n_items + split.train.tocoo().col)
    cells = user_rows * np.int64(n_items) + item_rows
    pos = np.minimum(np.searchsorted(keys, cells), max(len(keys) - 1, 0))
    keep = keys[pos] == cells if len(keys) else np.zeros(len(cells), dtype=bool)
    X_train, fit_kwargs = aggregate_events(
        user_rows[keep],
        item_rows[keep],
        (n_users, n_items),
        timestamps=None if timestamps is None else np.asarray(timestamps, float)[keep],
        event_types=None if event_types is None else np.asarray(event_types, object)[keep],
    )
    if timestamps is not None:
        fit_kwargs["now"] = float(np.asarray(timestamps, float)[keep].max())
    if item_features is not None:
        fit_kwargs["item_features"] = item_features
    train_ts = fit_kwargs.get("timestamps")
    # The binary train matrix and X_train have the same cells in the same (CSR) order.
    if X_train.nnz != split.train.nnz:
        raise ValueError("internal: train cells do not line up with the split")
    _scores, counts = follow_scores(adjacency, split.train, half_life_days=None)
    exclude = split.train + split.valid
    test_users = split.users_with("test")
    has_follows = np.diff(sp.csr_matrix(adjacency).indptr) > 0
    followed_users = test_users[has_follows[test_users]]
    base_params = {"random_state": seed, **(base_params or {})}
    als_kwargs = {k_: v for k_, v in fit_kwargs.items() if k_ in ("now",)}

    candidates: list[tuple[str, Any]] = [
        ("user-personalization", lambda: _WithKwargs(ALSRecipe(**base_params), als_kwargs)),
        (
            f"user-personalization + follow source (weight {blend_weight:g})",
            lambda: FollowBlend(
                ALSRecipe(**base_params),
                adjacency,
                weight=blend_weight,
                timestamps=train_ts,
                half_life_days=half_life_days,
                fit_kwargs=als_kwargs,
            ),
        ),
        (
            "follow source alone",
            lambda: FollowSource(adjacency, timestamps=train_ts, half_life_days=half_life_days),
        ),
    ]
    if include_segments:
        seg_params = {"seed": seed, **(segment_params or {})}
        seg_kwargs = {
            k_: v
            for k_, v in fit_kwargs.items()
            if k_ in ("timestamps", "event_types", "item_features", "now")
        }
        candidates.append(
            ("segment-affinity", lambda: _WithKwargs(SegmentAffinity(**seg_params), seg_kwargs))
        )
    rows_all, rows_followed = [], []
    for name, factory in candidates:
        started = time.perf_counter()
        model = factory().fit(split.train)
        lists = recommend_all(model, test_users, k, exclude, n_users=n_users)
        seconds = time.perf_counter() - started
        for users, out in ((test_users, rows_all), (followed_users, rows_followed)):
            if len(users) == 0:
                continue
            target = split.test.copy()
            mask = np.zeros(n_users, dtype=bool)
            mask[users] = True
            target = sp.csr_matrix(sp.diags(mask.astype(np.float32)) @ target)
            target.eliminate_zeros()
            metrics = evaluate_rankings(lists, target, split.train, ks=(k,))
            out.append(
                SourceResult(
                    name,
                    float(metrics[f"ndcg@{k}"]),
                    float(metrics[f"recall@{k}"]),
                    followed_share(lists, counts, users, k),
                    seconds,
                ).as_dict()
            )
        say(f"{name}: NDCG@{k} {rows_all[-1]['ndcg']:.4f} ({seconds:.1f} s)")
    return {
        "protocol": f"Protocol R (random 80/10/10 per user, seed {seed})",
        "k": k,
        "blend_weight": blend_weight,
        "half_life_days": half_life_days,
        "test_users": int(len(test_users)),
        "test_users_with_follows": int(len(followed_users)),
        "all_users": rows_all,
        "followed_users": rows_followed,
    }
