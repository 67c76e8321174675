"""popularity-count: the items with the most distinct users, optionally for one event type and a
recent time window ("best sellers" from purchases, "most viewed" from views)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.recipes.base import Recipe, check_per_entry


class PopularityCount(Recipe):
    name = "popularity-count"
    description = "Most popular items by number of distinct users (optionally one event type)."
    param_docs = {
        "event_types": "Only count cells whose (latest) event type is one of these, e.g. "
        "['purchase'] for best sellers; None counts every interaction. Needs `event_types` in fit.",
        "window_seconds": "Only count interactions in the last this many seconds before `now`; "
        "None counts all time. Needs `timestamps` in fit.",
        "now": "Reference time (unix seconds) for the window; None uses the latest timestamp.",
    }
    _learned = ("item_scores_",)

    def __init__(
        self,
        *,
        event_types: list[str] | None = None,
        window_seconds: float | None = None,
        now: float | None = None,
    ):
        self.event_types = event_types
        self.window_seconds = window_seconds
        self.now = now

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        keep = np.ones(X.nnz, dtype=bool)
        if self.event_types is not None:
            types = check_per_entry(kwargs.get("event_types"), X, "event_types", dtype=object)
            if types is None:
                raise ValueError("event_types filter is set but fit() got no event_types array.")
            keep &= np.isin(types.astype(str), [str(t) for t in self.event_types])
        if self.window_seconds is not None:
            ts = check_per_entry(kwargs.get("timestamps"), X, "timestamps", dtype=float)
            if ts is None:
                raise ValueError("window_seconds is set but fit() got no timestamps array.")
            now = ts.max() if self.now is None else float(self.now)
            keep &= (ts > now - float(self.window_seconds)) & (ts <= now)
        counts = np.bincount(X.indices[keep], minlength=X.shape[1]).astype(np.float32)
        # Tiny tie-breaker by total weight, so equal counts still have a stable, sensible order.
        weight = np.bincount(X.indices[keep], weights=X.data[keep], minlength=X.shape[1])
        self.item_scores_ = counts + (1e-3 * weight / (1.0 + weight.max())).astype(np.float32)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(user_rows), self.n_items_))
