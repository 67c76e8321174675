"""user-personalization: implicit-feedback matrix factorisation (iALS via ``implicit``).

Weights per cell are built from the interactions matrix, optionally multiplied by a weight per
event type and a recency decay, then confidence-scaled (BM25 by default: it damps heavy users
and very popular items) before ALS. The defaults (128 factors, regularization 20, alpha 1, BM25,
15 iterations) were tuned on the validation part of Protocol R (BENCHMARKS.md) and checked on
its test part, 3 seeds, NDCG@10: ml-100k 0.329 (implicit's defaults 0.214, EASE 0.330),
Last.fm HetRec 0.215 (implicit's defaults 0.124, EASE peer 0.190). implicit's own defaults
(regularization 0.01 on raw weights) overfit badly on catalogues of this size.

Real-time updates: ``fold_in`` recomputes a user vector from a (new) row of events by least
squares against the fixed item factors, exactly the user step of ALS; ``recommend_for_items``
scores from a list of recent events without retraining.

Exploration: ``fit`` also gives every item an exploration priority (``exploration_priority_``,
0 for items that are not exploration candidates). Candidates ("cold" items) are items younger
than ``exploration_item_age_cut_off`` days (by ``CREATION_TIMESTAMP`` in ``item_features``, else
by their first interaction) and items with fewer than ``exploration_min_interactions``
distinct users. The priority is the product of three factors, each in (0, 1]:

* freshness ``1 / (1 + age / cut_off)``: 1 for a brand-new item, 1/2 at the cut-off, 1/2 too
  when the age is unknown;
* scarcity ``1 / (1 + users)``: the fewer users an item has, the more it needs showing;
* promise: an upper confidence bound (mean + one standard deviation) of the item's rate of
  interactions per impression under a Beta posterior whose prior is the catalogue's overall
  rate (strength ``PRIOR_IMPRESSIONS``), divided by the same bound for an item never shown.
  An item shown often without interactions has a low, certain rate and is explored less; an
  item never shown keeps 1. Without ``impressions`` in fit, promise is 1 for every item.

``recommend`` never explores: it is the pure relevance ranking that offline evaluation
measures. ``recommend_with_exploration`` (and ``recommend_for_items(..., explore=True)``) hands
about ``exploration_weight * k`` slots per list to cold items, drawn at random (seeded) with
probability proportional to relevance-among-the-candidates x priority, and says which slots
were exploration.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from models_app.recipes.base import (
    SCORE_BATCH,
    Recipe,
    check_exclude,
    check_k,
    check_per_entry,
    check_rows,
    mask_scores,
    top_k,
)

DAY = 86_400.0
WEIGHTINGS = ("bm25", "log", "none")
# Pseudo-impressions of the Beta prior on an item's interactions-per-impression rate: an item
# needs about this many impressions before its own record outweighs the catalogue's rate.
PRIOR_IMPRESSIONS = 10.0


class ALSRecipe(Recipe):
    name = "user-personalization"
    description = "Implicit-feedback matrix factorisation (tuned iALS) with fold-in updates."
    param_docs = {
        "factors": "Latent dimensions.",
        "regularization": "L2 penalty on the factors (implicit's default 0.01 overfits; ~10-30 "
        "suits BM25 weights on catalogues of thousands of items).",
        "alpha": "Confidence scale: confidence = alpha * weight.",
        "iterations": "ALS sweeps.",
        "weighting": "Confidence scaling of weights: 'bm25' (default), 'log' (log1p) or 'none'.",
        "bm25_k1": "BM25 saturation of repeated interactions.",
        "bm25_b": "BM25 length normalisation (0 = none, 1 = full) for heavy users.",
        "event_weights": "Multiplier per event type, e.g. {'view': 1, 'cart': 2, 'purchase': 4};"
        " needs `event_types` in fit. None weights all types equally.",
        "half_life_days": "Recency decay: a cell's weight halves every this many days before "
        "`now`; needs `timestamps` in fit. None (default) disables decay.",
        "now": "Reference time (unix seconds) for the decay and item ages; None uses fit's `now`"
        " or else the latest timestamp.",
        "exploration_weight": "Share of the slots (0..1) that recommend_with_exploration gives "
        "to new or little-seen items; 0 disables exploration. Never used by recommend.",
        "exploration_item_age_cut_off": "Items younger than this many days (by "
        "CREATION_TIMESTAMP, else by their first interaction) are exploration candidates.",
        "exploration_min_interactions": "Items with fewer distinct users than this are "
        "exploration candidates too, whatever their age.",
        "random_state": "Seed of the factor initialisation.",
        "num_threads": "Threads used by implicit while fitting.",
    }
    _learned = (
        "user_factors_",
        "item_factors_",
        "idf_",
        "avg_length_",
        "exploration_priority_",
        "item_age_days_",
    )

    def __init__(
        self,
        *,
        factors: int = 128,
        regularization: float = 20.0,
        alpha: float = 1.0,
        iterations: int = 15,
        weighting: str = "bm25",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        event_weights: dict[str, float] | None = None,
        half_life_days: float | None = None,
        now: float | None = None,
        exploration_weight: float = 0.1,
        exploration_item_age_cut_off: float = 30.0,
        exploration_min_interactions: int = 5,
        random_state: int = 0,
        num_threads: int = 2,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.event_weights = event_weights
        self.half_life_days = half_life_days
        self.now = now
        self.exploration_weight = exploration_weight
        self.exploration_item_age_cut_off = exploration_item_age_cut_off
        self.exploration_min_interactions = exploration_min_interactions
        self.random_state = random_state
        self.num_threads = num_threads

    # -- fitting -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}.")
        for name in ("factors", "iterations"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        for name in ("regularization", "alpha"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.half_life_days is not None and float(self.half_life_days) <= 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {self.half_life_days}.")
        if not 0.0 <= float(self.exploration_weight) <= 1.0:
            raise ValueError(
                f"exploration_weight must be between 0 and 1, got {self.exploration_weight}."
            )
        if float(self.exploration_item_age_cut_off) <= 0:
            raise ValueError(
                "exploration_item_age_cut_off must be > 0 days, got "
                f"{self.exploration_item_age_cut_off}."
            )
        if int(self.exploration_min_interactions) < 0:
            raise ValueError(
                "exploration_min_interactions must be >= 0, got "
                f"{self.exploration_min_interactions}."
            )

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self._check_params()
        self._fit_exploration(X, **kwargs)
        X = X.copy()
        if self.event_weights is not None:
            types = check_per_entry(kwargs.get("event_types"), X, "event_types", dtype=object)
            if types is None:
                raise ValueError("event_weights is set but fit() got no event_types array.")
            lookup = {str(k): float(v) for k, v in self.event_weights.items()}
            X.data *= np.array([lookup.get(str(t), 1.0) for t in types], dtype=np.float32)
        if self.half_life_days is not None:
            ts = check_per_entry(kwargs.get("timestamps"), X, "timestamps", dtype=float)
            if ts is None:
                raise ValueError("half_life_days is set but fit() got no timestamps array.")
            now = self._reference_now(ts, kwargs.get("now"))
            age_days = np.maximum(now - ts, 0.0) / DAY
            X.data *= (0.5 ** (age_days / float(self.half_life_days))).astype(np.float32)
        X.eliminate_zeros()
        n_users = X.shape[0]
        df = np.bincount(X.indices, minlength=X.shape[1])
        # implicit's bm25_weight idf, floored so items every user has keep a small weight.
        self.idf_ = np.maximum(np.log(n_users) - np.log1p(df), 1e-3).astype(np.float32)
        lengths = np.asarray(X.sum(axis=1)).ravel()
        self.avg_length_ = float(max(lengths.mean(), 1e-12))
        C = self._confidence(X)
        with threadpool_limits(1, "blas"):  # implicit wants single-threaded BLAS
            model = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=1.0,
                iterations=int(self.iterations),
                num_threads=int(self.num_threads),
                random_state=int(self.random_state),
            )
            model.fit(C, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self._after_load()

    def _reference_now(self, timestamps: np.ndarray | None, fit_now: Any) -> float | None:
        """The parameter ``now``, else fit's ``now``, else the latest timestamp, else None."""
        if self.now is not None:
            return float(self.now)
        if fit_now is not None:
            return float(fit_now)
        if timestamps is not None and len(timestamps):
            return float(np.max(timestamps))
        return None

    def _fit_exploration(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        """Learn ``item_age_days_`` and ``exploration_priority_`` (see the module docstring)."""
        n_items = X.shape[1]
        ts = check_per_entry(kwargs.get("timestamps"), X, "timestamps", dtype=float)
        now = self._reference_now(ts, kwargs.get("now"))
        created = item_creation_times(kwargs.get("item_features"), n_items)
        if ts is not None:
            # Items without a creation time are as old as their first (recorded) interaction.
            first = np.full(n_items, np.inf)
            np.minimum.at(first, X.indices, ts)
            first[np.isinf(first)] = np.nan
            created = np.where(np.isnan(created), first, created)
        unknown = np.full(n_items, np.nan)
        age = unknown if now is None else np.maximum(now - created, 0.0) / DAY
        impressions = kwargs.get("impressions")
        if impressions is not None:
            impressions = np.asarray(impressions, dtype=float)
            if impressions.shape != (n_items,):
                raise ValueError(
                    f"impressions must have one value per item column ({n_items}), got shape "
                    f"{impressions.shape}."
                )
            impressions = np.nan_to_num(np.maximum(impressions, 0.0))
        self.item_age_days_ = age.astype(np.float32)
        self.exploration_priority_ = exploration_priority(
            users=np.bincount(X.indices, minlength=n_items),
            impressions=impressions,
            age_days=age,
            cut_off_days=float(self.exploration_item_age_cut_off),
            min_interactions=int(self.exploration_min_interactions),
        )

    def _after_load(self) -> None:
        self._YtY = (self.item_factors_.T @ self.item_factors_).astype(np.float64)
        n_items = self.item_factors_.shape[0]
        if not hasattr(self, "exploration_priority_"):  # artefacts saved before exploration
            self.exploration_priority_ = np.zeros(n_items, dtype=np.float32)
        if not hasattr(self, "item_age_days_"):
            self.item_age_days_ = np.full(n_items, np.nan, dtype=np.float32)

    def _confidence(self, X: sp.csr_matrix) -> sp.csr_matrix:
        """Confidence matrix (alpha * scaled weight) for rows of weights ``X``."""
        C = sp.csr_matrix(X, dtype=np.float32, copy=True)
        if self.weighting == "bm25":
            k1, b = float(self.bm25_k1), float(self.bm25_b)
            lengths = np.asarray(C.sum(axis=1)).ravel()
            norm = (1.0 - b) + b * lengths / self.avg_length_
            row_norm = np.repeat(norm, np.diff(C.indptr))
            C.data = C.data * (k1 + 1.0) / (k1 * row_norm + C.data) * self.idf_[C.indices]
        elif self.weighting == "log":
            C.data = np.log1p(C.data)
        C.data = (C.data * float(self.alpha)).astype(np.float32)
        return C

    # -- scoring -----------------------------------------------------------------------------
    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_rows] @ self.item_factors_.T

    def _score_user_items(self, user_row: int, cols: np.ndarray) -> np.ndarray:
        """``_score_users([user_row])[0][cols]``, equal up to float rounding, computed for
        those item columns only: a filtered request reads a share of the item factors."""
        return self.item_factors_[cols] @ self.user_factors_[user_row]

    def _score_similar(self, item_rows: np.ndarray) -> np.ndarray:
        V = self.item_factors_
        norms = np.linalg.norm(V, axis=1)
        norms[norms == 0] = 1.0
        return (V[item_rows] / norms[item_rows, None]) @ (V / norms[:, None]).T

    # -- real-time updates -------------------------------------------------------------------
    def fold_in(self, user_items_row: Any) -> np.ndarray:
        """User vector(s) for rows of item weights, with the item factors held fixed.

        ``user_items_row`` is a sparse or dense array of shape ``(n_items,)`` or
        ``(n_rows, n_items)`` of weights (the same kind of weights as fit's ``X``, already
        multiplied by event weight or decay if you use them). Solves the ALS user step
        ``(Y^T C_u Y + reg I) x = Y^T C_u p_u``; returns ``(factors,)`` or ``(n_rows, factors)``.
        """
        self._check_fitted()
        one = not sp.issparse(user_items_row) and np.ndim(user_items_row) == 1
        rows = sp.csr_matrix(np.atleast_2d(user_items_row) if one else user_items_row)
        if rows.shape[1] != self.n_items_:
            raise ValueError(
                f"user_items_row must have {self.n_items_} columns (one per item), "
                f"got {rows.shape[1]}."
            )
        if rows.nnz and (rows.data.min() < 0 or not np.all(np.isfinite(rows.data))):
            raise ValueError("user_items_row weights must be finite and >= 0.")
        rows.eliminate_zeros()
        C = self._confidence(rows)
        Y = self.item_factors_.astype(np.float64)
        reg = float(self.regularization) * np.eye(Y.shape[1])
        out = np.zeros((rows.shape[0], Y.shape[1]), dtype=np.float32)
        for r in range(rows.shape[0]):
            idx = C.indices[C.indptr[r] : C.indptr[r + 1]]
            if len(idx) == 0:
                continue
            c = C.data[C.indptr[r] : C.indptr[r + 1]].astype(np.float64)
            Yi = Y[idx]
            A = self._YtY + reg + (Yi.T * (c - 1.0)) @ Yi
            out[r] = np.linalg.solve(A, Yi.T @ c)
        return out[0] if one else out

    def _fold_in_items(self, item_rows: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validated ``item_rows`` and the user vector folded in from them (with ``weights``)."""
        item_rows = np.asarray(item_rows).ravel()
        if item_rows.size and not np.issubdtype(item_rows.dtype, np.integer):
            raise ValueError(f"item_rows must be integer item rows, got dtype {item_rows.dtype}.")
        item_rows = item_rows.astype(np.int64)
        if item_rows.size and (item_rows.min() < 0 or item_rows.max() >= self.n_items_):
            raise ValueError(f"item_rows must be in 0..{self.n_items_ - 1}.")
        w = np.ones(len(item_rows), np.float32) if weights is None else np.asarray(weights)
        if w.shape != item_rows.shape:
            raise ValueError(f"weights must have one value per item row, got {w.shape}.")
        row = sp.csr_matrix(
            (w.astype(np.float32), (np.zeros(len(item_rows), int), item_rows)),
            shape=(1, self.n_items_),
        )
        return item_rows, self.fold_in(row)[0]

    def recommend_for_items(
        self,
        item_rows: Any,
        weights: Any = None,
        k: int = 10,
        exclude: Any = None,
        explore: bool = False,
        seed: int | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Recommend for one (possibly unknown) user from their events, without retraining.

        ``item_rows``: items the user interacted with (repeats add up); ``weights``: one weight
        per entry (default 1). ``exclude``: item rows never to return; by default the given
        items themselves (pass an empty list to allow them). Returns ``(items, scores)`` of shape
        ``(k,)``, best first, padded with -1 / -inf. With ``explore=True`` some slots go to cold
        items as in :meth:`recommend_with_exploration` and a third array ``explored`` (bool,
        ``(k,)``) marks them.
        """
        self._check_fitted()
        k = check_k(k)
        item_rows, vector = self._fold_in_items(item_rows, weights)
        scores = (self.item_factors_ @ vector)[None, :].astype(np.float32)
        drop = item_rows if exclude is None else np.asarray(exclude, dtype=np.int64).ravel()
        if drop.size:
            mask = sp.csr_matrix(
                (np.ones(len(drop)), (np.zeros(len(drop), int), drop)), shape=(1, self.n_items_)
            )
            check_exclude(mask, 1, self.n_items_)
            scores[0, drop] = -np.inf
        if explore:
            items, values, explored = self._mix_exploration(scores, k, np.random.default_rng(seed))
            return items[0], values[0], explored[0]
        items, values = top_k(scores, k)
        return items[0], values[0]

    # -- exploration -------------------------------------------------------------------------
    def recommend_with_exploration(
        self,
        user_rows: Any,
        k: int,
        exclude: sp.csr_matrix | None = None,
        seed: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``recommend``, with about ``exploration_weight * k`` slots given to cold items.

        Per list, the number of exploration slots is ``exploration_weight * k`` rounded up or
        down at random (so its mean is exact), the slots are random positions, and they are
        filled with cold items drawn without replacement with probability proportional to
        (the item's relevance rank among the user's cold candidates) x (its exploration
        priority). The other slots keep the relevance ranking in order. Excluded items and
        items already in the list are never drawn. ``seed`` makes the draw reproducible.

        Returns ``(item_rows, scores, explored)``, each ``(len(user_rows), k)``: ``scores`` are
        relevance scores (so not sorted where exploration slots are), ``explored`` is True for
        the exploration slots (serving can label them "new arrival"). With weight 0, or no cold
        item left to show, this equals ``recommend`` with ``explored`` all False.
        """
        self._check_fitted()
        k = check_k(k)
        user_rows = check_rows(user_rows, self.n_users_, "user")
        exclude = check_exclude(exclude, len(user_rows), self.n_items_)
        rng = np.random.default_rng(seed)
        items = np.full((len(user_rows), k), -1, dtype=np.int64)
        scores = np.full((len(user_rows), k), -np.inf, dtype=np.float32)
        explored = np.zeros((len(user_rows), k), dtype=bool)
        for start in range(0, len(user_rows), SCORE_BATCH):
            batch = slice(start, start + SCORE_BATCH)
            s = np.array(self._score_users(user_rows[batch]), dtype=np.float32)
            if exclude is not None:
                mask_scores(s, exclude[batch])
            items[batch], scores[batch], explored[batch] = self._mix_exploration(s, k, rng)
        return items, scores, explored

    def _mix_exploration(
        self, scores: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Relevance top-k per row of (masked) ``scores``, with exploration slots mixed in.

        Serving calls this for one list per request, so the per-row work is plain numpy on
        small arrays: the cold columns are found once per ``exploration_priority_`` (cached on
        the object), taken items are marked in a boolean array (not ``np.isin``) and ranks are
        computed without scipy. The random draws are the same, in the same order, as ever."""
        weight = float(self.exploration_weight)
        priority = self.exploration_priority_
        cold_all = _cold_columns(self)
        if len(scores) == 1:
            items, values = _top_k_row(np.asarray(scores[0], dtype=np.float32), k)
            items, values = items[None, :], values[None, :]
        else:
            items, values = top_k(scores, k)
        explored = np.zeros(items.shape, dtype=bool)
        if weight <= 0 or len(cold_all) == 0:
            return items, values, explored
        n_cols = scores.shape[1]
        for r in range(len(items)):
            n_explore = min(k, math.floor(weight * k + rng.random()))
            if n_explore == 0:
                continue
            row_scores = scores[r]
            cold = cold_all[np.isfinite(row_scores[cold_all])]
            # Fewer candidates than slots: give fewer slots, which keeps more relevance items,
            # which may hold candidates in turn; shrink until the two agree (no duplicates).
            while n_explore > 0:
                head = items[r, : k - n_explore]
                taken = np.zeros(n_cols, dtype=bool)
                taken[head[head >= 0]] = True
                candidates = cold[~taken[cold]]
                if len(candidates) >= n_explore:
                    break
                n_explore -= 1
            if n_explore == 0:
                continue
            relevance = _average_ranks(row_scores[candidates]) / len(candidates)  # in (0, 1]
            # Weighted sampling without replacement (Gumbel top-k).
            keys = np.log(relevance * priority[candidates]) + rng.gumbel(size=len(candidates))
            chosen = candidates[np.argsort(-keys)[:n_explore]]
            slots = np.zeros(k, dtype=bool)
            slots[rng.choice(k, size=n_explore, replace=False)] = True
            row = np.empty(k, dtype=np.int64)
            row[slots] = chosen
            row[~slots] = items[r, : k - n_explore]
            real = row >= 0  # padding of a short relevance list moves to the end
            n_real = int(np.count_nonzero(real))
            items[r, :n_real] = row[real]
            items[r, n_real:] = -1
            explored[r, :n_real] = slots[real]
            explored[r, n_real:] = False
            values[r] = np.where(items[r] >= 0, row_scores[np.maximum(items[r], 0)], -np.inf)
        return items, values, explored


def _cold_columns(recipe: Any) -> np.ndarray:
    """Columns with an exploration priority above 0, cached on ``recipe`` per priority array."""
    priority = recipe.exploration_priority_
    cached = getattr(recipe, "_cold_columns_cache", None)
    if cached is not None and cached[0] is priority:
        return cached[1]
    cold = np.flatnonzero(np.asarray(priority) > 0)
    with contextlib.suppress(AttributeError):  # an object without a __dict__: no cache
        recipe._cold_columns_cache = (priority, cold)
    return cold


def _top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k`` for one row (1-D scores), same result, less overhead: ``(items, values)``."""
    n = len(scores)
    kk = min(k, n)
    part = np.argpartition(-scores, kk - 1)[:kk] if kk < n else np.arange(n)
    part_scores = scores[part]
    order = np.lexsort((part, -part_scores))
    items = part[order].astype(np.int64)
    values = part_scores[order]
    if kk == k and kk and math.isfinite(values[-1]):
        # Every value finite (-inf and NaN sort last): nothing to mark, nothing to pad.
        return items, values.astype(np.float32, copy=False)
    masked = ~np.isfinite(values) & (values < 0)
    values = np.where(masked, -np.inf, values).astype(np.float32)
    items = np.where(masked | np.isnan(values), -1, items)
    if kk < k:
        items = np.concatenate([items, np.full(k - kk, -1, dtype=np.int64)])
        values = np.concatenate([values, np.full(k - kk, -np.inf, dtype=np.float32)])
    return items, values


# Up to this many values, ranks are computed on Python lists: serving ranks a few cold
# candidates per request, where each numpy call costs more than the whole sort.
SMALL_RANKS = 64


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x)`` (method "average", 1-based, float64) for finite 1-D ``x``."""
    n = len(x)
    if n <= SMALL_RANKS:
        return _average_ranks_small(x.tolist())
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    if first.all():  # no ties (the usual case): ranks are the sorted positions
        ranks = np.empty(n, dtype=np.float64)
        ranks[order] = np.arange(1, n + 1, dtype=np.float64)
        return ranks
    dense = np.cumsum(first)
    starts = np.flatnonzero(np.append(first, True))  # where each run of ties starts, and n
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = 0.5 * (starts[dense] + starts[dense - 1] + 1)
    return ranks


def _average_ranks_small(values: list) -> np.ndarray:
    """``_average_ranks`` for a short list: a stable sort, then each run of equal values gets
    the mean of the 1-based positions it spans."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and values[order[end]] == values[order[start]]:
            end += 1
        rank = 0.5 * (start + 1 + end)  # mean of start+1 .. end
        for position in order[start:end]:
            ranks[position] = rank
        start = end
    return np.array(ranks, dtype=np.float64)


def item_creation_times(item_features: Any, n_items: int) -> np.ndarray:
    """``CREATION_TIMESTAMP`` per item column as float unix seconds (NaN when unknown)."""
    if item_features is None:
        return np.full(n_items, np.nan)
    frame = item_features if isinstance(item_features, pd.DataFrame) else None
    if frame is None:
        frame = pd.DataFrame(list(item_features))
    if len(frame) != n_items:
        raise ValueError(
            f"item_features has {len(frame)} rows but the matrix has {n_items} items; pass one "
            "row per item column, in column order."
        )
    columns = {str(c).upper(): c for c in frame.columns}
    if "CREATION_TIMESTAMP" not in columns:
        return np.full(n_items, np.nan)
    values = pd.to_numeric(frame[columns["CREATION_TIMESTAMP"]], errors="coerce")
    return values.to_numpy(dtype=float)


def exploration_priority(
    *,
    users: np.ndarray,
    impressions: np.ndarray | None,
    age_days: np.ndarray,
    cut_off_days: float,
    min_interactions: int,
) -> np.ndarray:
    """Exploration priority per item (0 = not a candidate); see the module docstring.

    ``users``: distinct users per item; ``impressions``: times each item was shown (None when
    unknown); ``age_days``: item age (NaN when unknown).
    """
    users = np.asarray(users, dtype=float)
    age = np.asarray(age_days, dtype=float)
    with np.errstate(invalid="ignore"):
        young = age <= cut_off_days  # NaN (unknown age) compares False
    cold = young | (users < min_interactions)
    freshness = np.where(np.isnan(age), 0.5, 1.0 / (1.0 + np.nan_to_num(age) / cut_off_days))
    scarcity = 1.0 / (1.0 + users)
    promise = np.ones_like(users)
    if impressions is not None and impressions.sum() > 0:
        rate = float(np.clip(users.sum() / impressions.sum(), 0.01, 0.5))
        a0, b0 = rate * PRIOR_IMPRESSIONS, (1.0 - rate) * PRIOR_IMPRESSIONS

        def upper(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            n = a + b
            return a / n + np.sqrt(a * b / (n * n * (n + 1.0)))

        failures = np.maximum(impressions - users, 0.0)
        promise = upper(a0 + users, b0 + failures) / upper(np.float64(a0), np.float64(b0))
        promise = np.minimum(promise, 1.0)
    return np.where(cold, freshness * scarcity * promise, 0.0).astype(np.float32)
