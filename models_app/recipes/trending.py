"""trending-now: items whose interactions grow fastest between the latest time window and the
one(s) before it, at a trend discovery frequency of 30 min, 1 h, 3 h or 1 day."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from models_app.recipes.base import Recipe, check_per_entry

TREND_WINDOWS = {
    "30min": 1_800,
    "1h": 3_600,
    "3h": 10_800,
    "1d": 86_400,
    "3d": 3 * 86_400,
    "7d": 7 * 86_400,
}


class TrendingNow(Recipe):
    name = "trending-now"
    description = "Items with the fastest growth in interactions between consecutive windows."
    param_docs = {
        "trend_window": "Trend discovery frequency: '30min', '1h', '3h', '1d' (or '3d', '7d' "
        "for slow catalogues).",
        "baseline_windows": "How many windows before the latest one form the baseline (their "
        "mean); 1 compares the last two windows, more gives a steadier baseline.",
        "smoothing": "Pseudo-count added to both windows, so an item going from 0 to 2 "
        "interactions does not outrank one going from 20 to 60.",
        "now": "Reference time (unix seconds); None uses the latest timestamp seen in fit.",
    }
    _learned = ("item_scores_", "recent_counts_", "baseline_counts_", "now_")

    def __init__(
        self,
        *,
        trend_window: str = "1h",
        baseline_windows: int = 1,
        smoothing: float = 5.0,
        now: float | None = None,
    ):
        self.trend_window = trend_window
        self.baseline_windows = baseline_windows
        self.smoothing = smoothing
        self.now = now

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        if self.trend_window not in TREND_WINDOWS:
            raise ValueError(
                f"trend_window must be one of {', '.join(TREND_WINDOWS)}, "
                f"got {self.trend_window!r}."
            )
        if int(self.baseline_windows) < 1:
            raise ValueError(f"baseline_windows must be >= 1, got {self.baseline_windows}.")
        if float(self.smoothing) <= 0:
            raise ValueError(f"smoothing must be > 0, got {self.smoothing}.")
        ts = check_per_entry(kwargs.get("timestamps"), X, "timestamps", dtype=float)
        if ts is None:
            raise ValueError(
                "trending-now needs timestamps: call fit(X, timestamps=...) with one timestamp "
                "per stored entry of X (see models_app.recipes.base.aggregate_events)."
            )
        width = TREND_WINDOWS[self.trend_window]
        now = float(ts.max() if self.now is None else self.now)
        age = now - ts
        recent = (age >= 0) & (age < width)
        baseline = (age >= width) & (age < width * (1 + int(self.baseline_windows)))
        n = X.shape[1]
        self.recent_counts_ = np.bincount(X.indices[recent], minlength=n).astype(np.float32)
        base = np.bincount(X.indices[baseline], minlength=n) / int(self.baseline_windows)
        self.baseline_counts_ = base.astype(np.float32)
        s = float(self.smoothing)
        growth = (self.recent_counts_ + s) / (self.baseline_counts_ + s) - 1.0
        # Among equal growth, more recent activity first.
        tie = self.recent_counts_ / (1.0 + self.recent_counts_.max()) * 1e-3
        self.item_scores_ = (growth + tie).astype(np.float32)
        self.now_ = now

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(user_rows), self.n_items_))
