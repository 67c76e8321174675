"""trending-now: items whose interactions grow fastest between the latest time window and the
one(s) before it, at a trend discovery frequency of 30 min, 1 h, 3 h or 1 day (3 or 7 days for
slow catalogues).

``trend_window="auto"`` (the default) picks the window from the data: the shortest window
whose latest occurrence (the ``width`` seconds before ``now``) holds

* at least ``max(AUTO_MIN_EVENTS, AUTO_MIN_SHARE * X.nnz)`` interactions, so the counts are
  not a handful of events, and
* interactions with at least ``AUTO_MIN_COVERAGE`` (half) of the items active in the longest
  window (7 days), so the growth of most items that have any recent signal is measured
  rather than left to the smoothing pseudo-count.

When no window qualifies the longest one is used. The choice is stored in ``trend_window_``
(and logged), so a shop with hourly traffic gets hourly trends and a small shop gets trends it
has the data for.
"""

from __future__ import annotations

import logging
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
AUTO = "auto"
AUTO_MIN_EVENTS = 50
AUTO_MIN_SHARE = 0.01
AUTO_MIN_COVERAGE = 0.5

logger = logging.getLogger(__name__)


def choose_trend_window(item_rows: np.ndarray, age: np.ndarray, n_stored: int) -> str:
    """The ``auto`` rule (module docstring): shortest window with enough events and coverage.

    ``item_rows`` and ``age`` (seconds before ``now``) are per stored interaction; ``n_stored``
    is the number of interactions the thresholds are relative to.
    """
    longest = max(TREND_WINDOWS.values())
    min_events = max(AUTO_MIN_EVENTS, AUTO_MIN_SHARE * n_stored)
    active = len(np.unique(item_rows[(age >= 0) & (age < longest)]))
    for name, width in sorted(TREND_WINDOWS.items(), key=lambda kv: kv[1]):
        recent = (age >= 0) & (age < width)
        covered = len(np.unique(item_rows[recent]))
        if recent.sum() >= min_events and covered >= AUTO_MIN_COVERAGE * active:
            return name
    return max(TREND_WINDOWS, key=TREND_WINDOWS.get)


class TrendingNow(Recipe):
    name = "trending-now"
    description = "Items with the fastest growth in interactions between consecutive windows."
    param_docs = {
        "trend_window": "Trend discovery frequency: 'auto' (default: the shortest window whose "
        "latest occurrence has at least max(50, 1% of interactions) interactions touching at "
        "least half the items active in the last 7 days), '30min', '1h', '3h', '1d' (or '3d', "
        "'7d' for slow catalogues).",
        "baseline_windows": "How many windows before the latest one form the baseline (their "
        "mean); 1 compares the last two windows, more gives a steadier baseline.",
        "smoothing": "Pseudo-count added to both windows, so an item going from 0 to 2 "
        "interactions does not outrank one going from 20 to 60.",
        "now": "Reference time (unix seconds); None uses fit's `now`, else the latest timestamp "
        "seen in fit.",
    }
    _learned = ("item_scores_", "recent_counts_", "baseline_counts_", "now_", "trend_window_")

    def __init__(
        self,
        *,
        trend_window: str = AUTO,
        baseline_windows: int = 1,
        smoothing: float = 5.0,
        now: float | None = None,
    ):
        self.trend_window = trend_window
        self.baseline_windows = baseline_windows
        self.smoothing = smoothing
        self.now = now

    def _fit(self, X: sp.csr_matrix, **kwargs: Any) -> None:
        if self.trend_window != AUTO and self.trend_window not in TREND_WINDOWS:
            raise ValueError(
                f"trend_window must be one of {AUTO}, {', '.join(TREND_WINDOWS)}, "
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
        if self.now is not None:
            now = float(self.now)
        elif kwargs.get("now") is not None:
            now = float(kwargs["now"])
        else:
            now = float(ts.max())
        age = now - ts
        window = self.trend_window
        if window == AUTO:
            window = choose_trend_window(X.indices, age, X.nnz)
            logger.info("trending-now: trend_window='auto' chose %r.", window)
        self.trend_window_ = window
        width = TREND_WINDOWS[window]
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

    def _after_load(self) -> None:
        if not hasattr(self, "trend_window_"):  # artefacts saved before 'auto' existed
            self.trend_window_ = self.trend_window
