"""frequently-bought-together: item pairs that co-occur in the same session (or order) more
often than chance, ranked by lift with a minimum support, confidence as tie-breaker."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.recipes.base import Recipe, top_n_sparse

_BLOCK = 2048


class FrequentlyBoughtTogether(Recipe):
    name = "frequently-bought-together"
    description = "Items co-occurring in the same sessions or orders, ranked by lift."
    param_docs = {
        "min_support": "Minimum number of sessions containing both items for a pair to count.",
        "n_neighbors": "Partners kept per item.",
        "metric": "'lift' (P(i,j) / P(i) P(j); surfaces specific pairings) or 'confidence' "
        "(P(j | i); favours popular partners).",
    }
    _learned = ("association_", "user_items_")

    def __init__(self, *, min_support: int = 3, n_neighbors: int = 50, metric: str = "lift"):
        self.min_support = min_support
        self.n_neighbors = n_neighbors
        self.metric = metric

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        """``sessions``: optional sparse (n_sessions x n_items) matrix of session (or order)
        contents, e.g. purchases grouped by order; without it each user's items are a basket."""
        if self.metric not in ("lift", "confidence"):
            raise ValueError(f"metric must be 'lift' or 'confidence', got {self.metric!r}.")
        if int(self.min_support) < 1 or int(self.n_neighbors) < 1:
            raise ValueError("min_support and n_neighbors must be >= 1.")
        baskets = kwargs.get("sessions")
        if baskets is None:
            baskets = X
        elif not sp.issparse(baskets) or baskets.shape[1] != X.shape[1]:
            raise ValueError(
                f"sessions must be a scipy.sparse (n_sessions, n_items={X.shape[1]}) matrix, got "
                f"{getattr(baskets, 'shape', type(baskets).__name__)}."
            )
        B = sp.csr_matrix(baskets, dtype=np.float32)
        B.sum_duplicates()
        B.data[:] = 1.0
        B.eliminate_zeros()
        n_baskets, n_items = B.shape
        Bt = sp.csr_matrix(B.T)
        counts = np.asarray(Bt.sum(axis=1)).ravel()
        kk = min(int(self.n_neighbors), n_items - 1)

        def blocks():
            for start in range(0, n_items, _BLOCK):
                stop = min(start + _BLOCK, n_items)
                co = (Bt[start:stop] @ B).toarray()
                co[np.arange(stop - start), np.arange(start, stop)] = 0.0
                support = co >= int(self.min_support)
                conf = co / np.maximum(counts[start:stop, None], 1.0)
                if self.metric == "lift":
                    score = conf * n_baskets / np.maximum(counts[None, :], 1.0)
                    score = score + 1e-6 * conf  # equal lift: the more reliable pair first
                else:
                    score = conf
                yield start, np.where(support, score, 0.0)

        self.association_ = top_n_sparse(blocks(), (n_items, n_items), kk)
        self.user_items_ = sp.csr_matrix(X, copy=True)
        self.user_items_.data[:] = 1.0

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        s = (self.user_items_[user_rows] @ self.association_).toarray()
        # Users with no associated items still get a full list: popularity as a tiny prior.
        return s + 1e-9 * self._popularity()[None, :]

    def _popularity(self) -> np.ndarray:
        pop = np.asarray(self.user_items_.sum(axis=0)).ravel()
        return pop / max(pop.max(), 1.0)

    def _score_similar(self, item_rows: np.ndarray) -> np.ndarray:
        s = self.association_[item_rows].toarray()
        s[s == 0] = -np.inf
        return s
